"""Every generated file in the repository is current: made again from its sources, it is the
same text (the list and the sources: tools/regen.py). A stale file fails naming itself and the
one command that makes them all, scripts/regen."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

sys.path.insert(0, str(REPO / "tools"))

import regen


@pytest.mark.parametrize("generated", regen.FILES, ids=[g.path for g in regen.FILES])
def test_generated_file_is_current(generated: regen.Generated) -> None:
    if generated.needs_nix and shutil.which("nix-instantiate") is None:
        pytest.skip(f"nix is not installed ({generated.path} evaluates the Nix module)")
    path = REPO / generated.path
    assert path.exists(), f"{generated.path} is missing: {regen.REGENERATE}"
    assert generated.fresh(path.read_text("utf-8")) == path.read_text("utf-8"), (
        f"{generated.path} is stale (made from {generated.source}): {regen.REGENERATE}")


def test_check_names_the_stale_file_and_the_command(tmp_path: Path) -> None:
    """`scripts/regen --check` on a copy of the tree with one stale file: exit 1, that file
    named with "run scripts/regen"; `scripts/regen` then rewrites it."""
    copy = tmp_path / "repo"
    for d in ("tools", "generator", "nix/lib", "docs"):
        shutil.copytree(REPO / d, copy / d, ignore=shutil.ignore_patterns("__pycache__"))
    # docs/microvm-nix-differences.md: tests/support/upstream_diff.py
    shutil.copytree(REPO / "tests" / "support", copy / "tests" / "support",
                    ignore=shutil.ignore_patterns("__pycache__"))
    page = copy / "docs" / "hypervisors.md"
    page.write_text(page.read_text().replace("| `qemu` |", "| `qemu (edited)` |", 1))
    # the files made without Nix (scripts/regen runs the checkout's venv, absent in the copy)
    files = [g.path for g in regen.FILES if not g.needs_nix]
    assert "docs/hypervisors.md" in files
    argv = [sys.executable, str(copy / "tools" / "regen.py")]
    p = subprocess.run([*argv, "--check", *files], capture_output=True, text=True)
    assert p.returncode == 1, p.stderr
    assert p.stderr.splitlines() == [line for line in p.stderr.splitlines()
                                     if line.startswith("docs/hypervisors.md is stale")]
    assert "run scripts/regen" in p.stderr
    p = subprocess.run([*argv, *files], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout == "rewrote docs/hypervisors.md\n", p.stderr
    assert page.read_text() == (REPO / "docs" / "hypervisors.md").read_text()
    p = subprocess.run([*argv, "--check", *files], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
