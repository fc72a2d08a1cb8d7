"""Every file in the repository that is generated, what it is made from, and the one way to
make it again: `scripts/regen` (this module) rewrites the stale ones, `scripts/regen --check`
lists them and exits 1; `scripts/regen [--check] PATH...` does that for the named files only.
tests/test_regen.py fails naming each stale file.

The compiled templates are not here: they are made when the package is built (setup.py), never
kept in the repository (generator/microvm/render.py).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
for _d in ("generator", "tools", "nix/lib", "tests"):
    if str(REPO / _d) not in sys.path:
        sys.path.insert(0, str(REPO / _d))

REGENERATE = "run scripts/regen"


@dataclass(frozen=True)
class Generated:
    path: str  # relative to the repository
    source: str  # what it is made from, and by which module
    module: str  # the module that renders it (imported when it is made)
    render: Callable[[ModuleType, str], str]  # (that module, the file's text) -> its new text
    needs_nix: bool = False  # evaluates the Nix module (nix-instantiate, <nixpkgs/lib>)

    def fresh(self, current: str) -> str:
        return self.render(importlib.import_module(self.module), current)


def _call(name: str) -> Callable[[ModuleType, str], str]:
    """A renderer that makes the whole file (the current text is not needed)."""
    return lambda module, _current: str(getattr(module, name)())


FILES: tuple[Generated, ...] = (
    Generated("nix/lib/capabilities.json",
              "generator/microvm/capabilities.py, by nix/lib/export_capabilities.py",
              "export_capabilities", _call("render")),
    Generated("nix/lib/units.json",
              "generator/microvm/templates/units (the units every VM uses, for the NixOS host " +
              "module), by generator/microvm/units.py", "microvm.units", _call("nixos_json")),
    Generated("docs/hypervisors.md",
              "its BEGIN/END blocks: generator/microvm/capabilities.py, by " +
              "tools/gen_hypervisors.py", "gen_hypervisors",
              lambda module, current: str(module.render_page(current))),
    Generated("docs/options.md",
              "generator/microvm/schema/vm.schema.json, the capability table and the Nix " +
              "module, by tools/gen_options.py", "gen_options", _call("render"),
              needs_nix=True),
    Generated("docs/migrating.md",
              "its BEGIN/END blocks: the Nix module's options, the capability table and the " +
              "reviewed differences, by tools/gen_migrating.py", "gen_migrating",
              lambda module, current: str(module.render_page(current)), needs_nix=True),
    Generated("docs/microvm-nix-differences.md",
              "the reviewed differences from microvm.nix, by tests/support/upstream_diff.py",
              "support.upstream_diff", _call("render")),
)

BY_PATH = {g.path: g for g in FILES}


def stale(files: Sequence[Generated] = FILES) -> list[tuple[Generated, str]]:
    """The files whose text differs from what they are made from, with their new text."""
    out = []
    for g in files:
        path = REPO / g.path
        current = path.read_text("utf-8") if path.exists() else ""
        new = g.fresh(current)
        if new != current:
            out.append((g, new))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/regen", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; list the stale files and exit 1 if there are any")
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="only these generated files (default: all)")
    args = parser.parse_args(argv)
    for p in args.paths:
        if p not in BY_PATH:
            parser.error(f"{p} is not a generated file (they are: {', '.join(BY_PATH)})")
    changed = stale([BY_PATH[p] for p in args.paths] if args.paths else FILES)
    for g, new in changed:
        if args.check:
            print(f"{g.path} is stale (made from {g.source}): {REGENERATE}", file=sys.stderr)
        else:
            (REPO / g.path).write_text(new, "utf-8")
            print(f"rewrote {g.path}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
