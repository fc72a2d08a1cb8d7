"""Compile the package's jinja2 templates to Python modules: the build step of the wheel and
of the Nix package (setup.py runs it into the build directory). Not part of the installed
package, and nothing it writes is kept in the repository; generator/microvm/render.py says how
the compiled templates are used and why they are made this way.

    python tools/compile_templates.py DIR    # write DIR/tmpl_*.py and DIR/__init__.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jinja2

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "generator") not in sys.path:
    sys.path.insert(0, str(REPO / "generator"))

from microvm import render  # noqa: E402


def compile_templates(target: Path, templates: Path = render.TEMPLATES) -> list[str]:
    """Compile every template of `templates` into `target` (tmpl_*.py, jinja2's ModuleLoader
    layout) with an __init__.py recording the jinja2 version and each source's digest; returns
    the names. Stale tmpl_*.py files in `target` are removed. The output is deterministic."""
    source_loader = jinja2.FileSystemLoader(templates)
    env = render.make_environment(source_loader)
    target.mkdir(parents=True, exist_ok=True)
    names = sorted(n for n in env.list_templates() if n.endswith(".j2"))
    wanted: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name in names:
        source, filename, _ = source_loader.get_source(env, name)
        code = env.compile(source, name, filename, raw=True, defer_init=True)
        wanted[jinja2.ModuleLoader.get_module_filename(name)] = code
        sources[name] = render.source_digest(source)
    for old in target.glob("tmpl_*.py"):
        if old.name not in wanted:
            old.unlink()
    for filename, code in wanted.items():
        (target / filename).write_text(code, "utf-8")
    lines = ['"""microvm/templates compiled by jinja2 when the package was built',
             "(tools/compile_templates.py). render.py uses a compiled template only with this",
             'jinja2 version and a source of this SHA-256."""', "",
             f"JINJA2 = {json.dumps(jinja2.__version__)}", "SOURCES: dict[str, str] = {"]
    lines += [f"    {json.dumps(name)}:\n        {json.dumps(digest)},"
              for name, digest in sources.items()]
    lines += ["}", ""]
    (target / "__init__.py").write_text("\n".join(lines), "utf-8")
    return names


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} DIR")
    for n in compile_templates(Path(sys.argv[1])):
        print(f"compiled {n}")
