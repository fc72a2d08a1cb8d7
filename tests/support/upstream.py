"""Upstream microvm.nix as a test oracle: where its source is (`$MICROVM_NIX_SRC`, else
/opt/microvm.nix), why it cannot be evaluated here (`problem`), nix's environment."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path


def upstream_src() -> Path:
    return Path(os.environ.get("MICROVM_NIX_SRC", "/opt/microvm.nix"))


@cache
def problem() -> str | None:
    src = upstream_src()
    if not (src / "lib" / "runners" / "qemu.nix").is_file():
        return (
            f"upstream microvm.nix source not found at {src} (set MICROVM_NIX_SRC to a "
            + "checkout of github.com/microvm-nix/microvm.nix)"
        )
    if shutil.which("nix-instantiate") is None:
        return "nix is not installed"
    r = subprocess.run(
        ["nix-instantiate", "--eval", "-E", "(import <nixpkgs/lib>).version"],
        capture_output=True,
        text=True,
        env=nix_env(),
    )
    if r.returncode != 0:
        return "<nixpkgs/lib> is not on NIX_PATH (set NIX_PATH=nixpkgs=/path/to/nixpkgs-lib)"
    return None


def nix_env() -> dict[str, str]:
    env = dict(os.environ)
    if "nixpkgs=" not in env.get("NIX_PATH", "") and Path("/opt/nixpkgs-lib").is_dir():
        env["NIX_PATH"] = "nixpkgs=/opt/nixpkgs-lib"
    return env
