"""Nix evaluation for the tests: whether nix and <nixpkgs/lib> are here (`nix_problem`),
`nix-instantiate --eval` in tests/nix with the Python and checkout under test (`nix_eval`,
`nix_json`), and `microvm validate` on a document to compare with it (`validate`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from support import REPO

NIXDIR = REPO / "tests" / "nix"
NIX_OPTS = ["--option", "sandbox", "false", "--option", "build-users-group", "",
            "--option", "substituters", ""]


@cache
def nix_problem() -> str | None:
    if shutil.which("nix-instantiate") is None:
        return "nix is not installed"
    r = subprocess.run(["nix-instantiate", "--eval", "-E", "(import <nixpkgs/lib>).version"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return "<nixpkgs/lib> is not on NIX_PATH (set NIX_PATH=nixpkgs=/path/to/nixpkgs-lib)"
    return None


def nix_args() -> list[str]:
    return ["--arg", "python", json.dumps(sys.executable), "--arg", "repo", json.dumps(str(REPO))]


def nix_eval(expr: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", *nix_args(),
                        "-E", expr], cwd=NIXDIR, capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"nix evaluation failed:\n{r.stderr[-4000:]}")
    return r


def nix_json(expr: str) -> Any:
    return json.loads(nix_eval(f"{{ python, repo }}: {expr}").stdout)


def guest_inline(tmp_path: Path, module: str, attr: str) -> str:
    """An expression for `attr` of a guest evaluated from `module` (Nix text) by eval.nix."""
    config = tmp_path / f"c{len(list(tmp_path.glob('c*.nix')))}.nix"
    config.write_text(f"{{ module = {module}; }}\n")
    return (f"(import ./eval.nix {{ configuration = {config}; " +
            f"python = {json.dumps(sys.executable)}; repo = {json.dumps(str(REPO))}; }}).{attr}")


def validate(doc: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "vm.json"
    f.write_text(doc)
    return subprocess.run([sys.executable, "-m", "microvm.cli", "validate", str(f)],
                          capture_output=True, text=True, env={**os.environ,
                          "PYTHONPATH": str(REPO / "generator")})
