"""Trees on disk compared before and after a run, and a run stopped at its n-th file system
step (`crash_at`): the fault injection the managed-tree tests own."""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from microvm import managed
from microvm.errors import HostError

Snapshot = dict[str, tuple[Any, ...]]


def snapshot(root: Path) -> Snapshot:
    """Every entry below root: kind, content or target, mode, and mtime for files."""
    out: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("f", p.read_bytes(), stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return out


def contents(snap: Snapshot) -> Snapshot:
    """A snapshot without mtimes."""
    return {k: v[:3] for k, v in snap.items()}


# the file system steps crash_at counts
STEPS = ("replace", "unlink", "fsync", "symlink", "mkdir", "rmdir", "write", "rename")


def crash_at(n: int, action: Callable[[], object], *, kill: bool) -> bool:
    """Run action in a child whose n-th file system step (os.replace, unlink, fsync, ...)
    kills it with SIGKILL (kill=True) or raises OSError(ENOSPC); True when it got there."""
    pid = os.fork()
    if pid == 0:  # the child: never returns to pytest
        code = 0
        try:
            count = 0

            def hook(real: Callable[..., Any]) -> Callable[..., Any]:
                def step(*args: Any, **kwargs: Any) -> Any:
                    nonlocal count
                    count += 1
                    if count == n:
                        if kill:
                            os.kill(os.getpid(), signal.SIGKILL)
                        raise OSError(28, "No space left on device (injected)")
                    return real(*args, **kwargs)
                return step

            for name in STEPS:
                setattr(os, name, hook(getattr(os, name)))
            try:
                action()
            except (OSError, HostError):
                code = 3  # the injected failure, reported
        except BaseException:
            code = 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) in (0, 3), os.WEXITSTATUS(status)
    return os.WEXITSTATUS(status) == 3


def no_leftovers(out: Path) -> None:
    names = [str(p) for p in out.rglob("*") if p.name.endswith(managed.TEMP_SUFFIX)
             or p.name.endswith(managed.PENDING_SUFFIX)]
    assert not names
