"""jinja2 rendering of scripts and units. Quoting happens here, once: the `q` filter quotes a
string for the shell, `qa` quotes and joins a list of arguments.

Templates are compiled to Python modules when the package is built, not at each start and not
in the repository: the wheel's build step (setup.py, which the Nix package's build runs too)
writes them into the built package as microvm/_templates (tools/compile_templates.py), where
the installer byte-compiles them with the rest of the package. A compiled template is used only
when it was made by the running jinja2 version from the template's current source (their SHA-256
is recorded beside them); otherwise, as in an editable checkout, which has none, the template is
compiled from source, in memory. Nothing is ever written at run time: there is no cache another
user could write and root would then run.

Why compiled modules rather than a jinja2 bytecode cache filled at build time: a bytecode cache
entry is keyed by the template's absolute file name, which is not known until the wheel is
installed, and holds marshalled code of the one Python that wrote it (a wheel is for any
Python 3), whereas a compiled module is Python source that the installer byte-compiles for the
interpreter it installs for, wherever it installs.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shlex
from collections.abc import Iterable, MutableMapping
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).with_name("templates")  # the sources (package data)
COMPILED = Path(__file__).with_name("_templates")  # made by the build, absent in a checkout


def _quote_element(value: object) -> str:
    """A word as one element of a one-line bash array literal: quoted as `q` quotes it, and
    also when it holds a comma (`(a,b)` reads as the mistake shellcheck's SC2054 reports)."""
    text = shlex.quote(str(value))
    return f"'{text}'" if text == str(value) and "," in text else text


def _quote_all(args: Iterable[str]) -> str:
    return " ".join(shlex.quote(str(a)) for a in args)


def _tojson(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def source_digest(source: str) -> str:
    """What a compiled template records of the source it was made from."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


class _Loader(jinja2.PackageLoader):
    """The package's templates: compiled ones where they are current, else from source."""

    def __init__(self) -> None:
        super().__init__("microvm", "templates")
        self._compiled: jinja2.ModuleLoader | None = None
        self._sources: dict[str, str] = {}
        try:  # made by the build: absent in a checkout
            compiled = importlib.import_module(f"{__package__}._templates")
        except ImportError:
            return
        if getattr(jinja2, "__version__", None) == compiled.JINJA2:
            self._compiled = jinja2.ModuleLoader(COMPILED)
            self._sources = dict(compiled.SOURCES)

    def load(self, environment: jinja2.Environment, name: str,
             globals: MutableMapping[str, Any] | None = None) -> jinja2.Template:
        digest = self._sources.get(name)
        if self._compiled is not None and digest is not None:
            source, _, _ = self.get_source(environment, name)
            if source_digest(source) == digest:
                return self._compiled.load(environment, name, globals)
        return super().load(environment, name, globals)


def make_environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    """The one configuration of jinja2 (templates are compiled with it too)."""
    env = jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        # bash uses "{#" (${#array[@]}); jinja comments are spelled {## ... ##} here
        comment_start_string="{##",
        comment_end_string="##}",
        # templates never change while a process runs: no stat() per get_template
        auto_reload=False,
    )
    env.filters["q"] = lambda s: shlex.quote(str(s))
    env.filters["qa"] = _quote_all
    env.filters["qe"] = _quote_element
    env.filters["tojson"] = _tojson
    return env


@cache
def environment() -> jinja2.Environment:
    return make_environment(_Loader())


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
