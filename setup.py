"""The one build step pyproject.toml cannot declare: the jinja2 templates are compiled into the
built package (microvm/_templates, by tools/compile_templates.py), so the installed `microvm`
does not compile them at every start. The wheel and the Nix package both build through here;
an editable install skips it (render.py then compiles templates in memory). Why this way:
generator/microvm/render.py."""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        sys.path[:0] = [str(ROOT / "generator"), str(ROOT / "tools")]
        from compile_templates import compile_templates

        package = Path(self.build_lib) / "microvm"
        compile_templates(package / "_templates", package / "templates")


setup(cmdclass={"build_py": BuildPy})
