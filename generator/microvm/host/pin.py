"""Pinning a VM's flake: the git revision and NAR hash its source resolved to.

`create --flake git+URL` records {url, ref, rev, sha256, date} in <state>/<name>/pin.json (from
microvm-prefetch-git, which the package ships in microvm/libexec/) and builds
`git+URL?rev=REV`; `update` resolves the reference again and reports whether the revision or
the content hash changed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from .. import process
from ..errors import HostError

SCRIPT = "microvm-prefetch-git"
SCRIPT_ENV = "MICROVM_PREFETCH_GIT"
# the script as the package ships it (package data: pyproject.toml, nix/pkgs/microvm-generator.nix)
PACKAGED = Path(__file__).resolve().parent.parent / "libexec" / SCRIPT
_HEX40 = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class GitFlake:
    """A git flake reference `git+URL[?ref=..&rev=..&...]`."""

    url: str
    ref: str | None = None
    rev: str | None = None
    params: tuple[tuple[str, str], ...] = ()

    def with_rev(self, rev: str) -> str:
        """The reference pinned to rev (other parameters kept)."""
        query = [*self.params, *([("ref", self.ref)] if self.ref else []), ("rev", rev)]
        return f"git+{self.url}?{urlencode(query, safe='/:')}"

    @property
    def wanted(self) -> str:
        """What to resolve: the given rev, else the ref, else HEAD."""
        return self.rev or self.ref or "HEAD"


def parse_git_flake(flake: str) -> GitFlake | None:
    """A `git+...` reference, or None for any other kind (path:, github:, ...)."""
    if not flake.startswith("git+"):
        return None
    rest = flake[len("git+"):].split("#", 1)[0]
    url, _, query = rest.partition("?")
    params = parse_qsl(query, keep_blank_values=True)
    ref = next((v for k, v in params if k == "ref"), None)
    rev = next((v for k, v in params if k == "rev"), None)
    others = tuple((k, v) for k, v in params if k not in ("ref", "rev"))
    return GitFlake(url=url, ref=ref, rev=rev, params=others)


@dataclass(frozen=True)
class Pin:
    url: str
    rev: str
    sha256: str
    ref: str | None = None
    date: str | None = None
    hash: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "rev": self.rev, "sha256": self.sha256}
        for k in ("ref", "date", "hash"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pin:
        return cls(url=str(data["url"]), rev=str(data["rev"]), sha256=str(data["sha256"]),
                   ref=data.get("ref"), date=data.get("date"), hash=data.get("hash"))


def script_argv() -> list[str]:
    """How to run microvm-prefetch-git: $MICROVM_PREFETCH_GIT (an executable), else the copy
    this package ships, run by `sh` (so the file's mode inside a wheel does not matter). Not
    looked up on PATH: the script that runs is the one installed and tested with this code."""
    explicit = os.environ.get(SCRIPT_ENV)
    if explicit:
        return [explicit]
    if PACKAGED.is_file():
        return ["sh", str(PACKAGED)]
    raise HostError(f"{SCRIPT} not found: {PACKAGED} is missing (an incomplete installation of "
                    + f"the microvm package: reinstall it), or set {SCRIPT_ENV}")


def prefetch(url: str, wanted: str) -> Pin:
    """Resolve `wanted` (a ref, or a 40-hex rev) of the git repository at url and hash it."""
    result = process.run([*script_argv(), "--quiet", "--rev", wanted, url])
    try:
        data = json.loads(result.stdout)
        pin = Pin.from_json(data)
    except (json.JSONDecodeError, KeyError, TypeError):
        raise HostError(f"{SCRIPT} printed no pin for {url}: {result.stdout[:200]!r}") \
            from None
    if not _HEX40.fullmatch(pin.rev):
        raise HostError(f"{SCRIPT} resolved {wanted} of {url} to a bad revision {pin.rev!r}")
    return Pin(url=pin.url, rev=pin.rev, sha256=pin.sha256, hash=pin.hash, date=pin.date,
               ref=None if _HEX40.fullmatch(wanted) else wanted)


def describe_change(old: Pin | None, new: Pin) -> str:
    """One line on what re-resolving the pin found."""
    if old is None:
        return f"pinned {new.url} at {new.rev[:12]} (sha256 {new.sha256})"
    if old.rev == new.rev and old.sha256 == new.sha256:
        return f"pin unchanged: {new.url} at {new.rev[:12]}"
    parts = []
    if old.rev != new.rev:
        parts.append(f"rev {old.rev[:12]} -> {new.rev[:12]}")
    if old.sha256 != new.sha256:
        parts.append(f"sha256 {old.sha256} -> {new.sha256}")
    return f"pin changed: {new.url}: " + ", ".join(parts)
