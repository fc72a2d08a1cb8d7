"""The probe host/access.py runs as the VM's user: `python -I -S - NEED PATH [NEED PATH ...]`
with this file's text on stdin (so the user needs no access to this package, only to the
interpreter). For each pair it asks the kernel whether this process may do NEED on PATH and
prints one JSON object per line:

    {"ok": true}
    {"missing": P}                          P (a component of PATH) does not exist
    {"denied": P, "need": N, "error": E}    the kernel refused N on P with E (strerror)

NEED is one of `search` (a directory), `read`, `run` (read and execute: a script),
`execute` (a binary) and `open` (open read-write: a device). PATH is resolved component by
component as the kernel does, links followed, and every directory passed through must be
searchable: the first one that is not is the P reported with need `search`.

Standalone on purpose (the standard library only, nothing of `microvm`); it changes nothing.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from collections import deque

MODES = {"search": os.X_OK, "read": os.R_OK, "run": os.R_OK | os.X_OK, "execute": os.X_OK}
MAX_LINKS = 40  # the kernel's limit of links followed while resolving one path


def _strerror(code: int) -> str:
    return os.strerror(code)


def check(path: str, need: str) -> dict[str, object]:
    """Whether this process may do `need` on `path` (see the module docstring)."""
    if not os.path.isabs(path):
        return {"denied": path, "need": need, "error": "not an absolute path"}
    parts = deque(p for p in path.split("/") if p)
    current = "/"
    links = 0
    while parts:
        if not os.access(current, os.X_OK):
            return {"denied": current, "need": "search", "error": _strerror(errno.EACCES)}
        name = parts.popleft()
        if name == ".":
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        step = os.path.join(current, name)
        try:
            st = os.lstat(step)
        except FileNotFoundError:
            return {"missing": step}
        except OSError as e:
            return {"denied": step, "need": need, "error": _strerror(e.errno or errno.EIO)}
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                return {"denied": step, "need": need, "error": _strerror(errno.ELOOP)}
            target = os.readlink(step)
            parts.extendleft(reversed([p for p in target.split("/") if p]))
            if target.startswith("/"):
                current = "/"
            continue
        if parts and not stat.S_ISDIR(st.st_mode):
            return {"missing": os.path.join(step, *parts)}
        current = step
    if need == "open":
        try:
            fd = os.open(current, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            return {"denied": current, "need": need, "error": _strerror(e.errno or errno.EIO)}
        os.close(fd)
        return {"ok": True}
    if not os.access(current, MODES[need]):
        return {"denied": current, "need": need, "error": _strerror(errno.EACCES)}
    return {"ok": True}


def main(argv: list[str]) -> None:
    for need, path in zip(argv[::2], argv[1::2], strict=True):
        print(json.dumps(check(path, need)))


if __name__ == "__main__":
    main(sys.argv[1:])
