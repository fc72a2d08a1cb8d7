"""The Nix calls of the host commands: build a flake's runner, evaluate it, diff closures."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .. import process

NIX = ("nix", "--extra-experimental-features", "nix-command flakes")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_'-]*")


def runner_attr(flake: str, name: str) -> str:
    """REF#nixosConfigurations.NAME.config.microvm.declaredRunner (NAME quoted when needed)."""
    attr = name if _IDENT.fullmatch(name) else f'"{name}"'
    return f"{flake}#nixosConfigurations.{attr}.config.microvm.declaredRunner"


def build_runner(flake: str, name: str, out_link: Path) -> Path:
    """nix build the VM's declaredRunner with a GC root at out_link; the store path."""
    process.run([*NIX, "build", "--out-link", out_link, runner_attr(flake, name)],
                capture=True)
    return Path(os.readlink(out_link))


def eval_runner(flake: str, name: str) -> str:
    """The store path the flake would build now (no build)."""
    return process.run([*NIX, "eval", "--raw", f"{runner_attr(flake, name)}.outPath"]).stdout


def diff_closures(old: Path, new: Path) -> str:
    """`nix store diff-closures` of two store paths ('' when nix cannot tell)."""
    result = process.run([*NIX, "store", "diff-closures", old, new], check=False)
    return result.stdout if result.returncode == 0 else ""
