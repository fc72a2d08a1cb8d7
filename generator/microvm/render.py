"""jinja2 rendering of scripts and units. Quoting happens here, once: the `q` filter quotes a
string for the shell, `qa` quotes and joins a list of arguments."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from functools import cache
from typing import Any

import jinja2


def _quote_all(args: Iterable[str]) -> str:
    return " ".join(shlex.quote(str(a)) for a in args)


def _tojson(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("microvm", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        # bash uses "{#" (${#array[@]}); jinja comments are spelled {## ... ##} here
        comment_start_string="{##",
        comment_end_string="##}",
    )
    env.filters["q"] = lambda s: shlex.quote(str(s))
    env.filters["qa"] = _quote_all
    env.filters["tojson"] = _tojson
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
