"""Fault injection, owned by the tests: `python tests/support/faults.py ARGS...` runs the
`microvm` command (microvm.cli.main) with an observer at its checkpoints
(microvm.host.state.checkpoint, the points between two steps of a change). What the observer
does is set by these variables, read here only (the package knows none of them):

    MICROVM_TEST_STEPS=FILE       append the name of every checkpoint reached to FILE
    MICROVM_TEST_CRASH_AT=STEP    SIGKILL the process at STEP (no cleanup runs)
    MICROVM_TEST_FILL_AT=STEP     at STEP, use up the file system MICROVM_TEST_FILL_PATH is on
    MICROVM_TEST_FILL_PATH=FILE   (a test's small tmpfs), so that the next write fails: ENOSPC
    MICROVM_TEST_ENOSPC_FROM=STEP from STEP on, every call that changes a file (os.open to
                                  create or write, os.write, os.fsync, os.replace, os.rename,
                                  os.symlink, os.link, os.mkdir) fails with ENOSPC: a
                                  directory fsync or a rename fails too, which a full tmpfs
                                  never makes them
    MICROVM_TEST_OUTPUT_FULL_FROM=STEP  from STEP on, the command's output (stdout, stderr)
                                  goes to /dev/full: every message written after it fails

support.host_cli.cli() runs the command this way when it is given one of them."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

TRACE_ENV = "MICROVM_TEST_STEPS"
CRASH_ENV = "MICROVM_TEST_CRASH_AT"
FILL_ENV = "MICROVM_TEST_FILL_AT"
FILL_PATH_ENV = "MICROVM_TEST_FILL_PATH"
ENOSPC_ENV = "MICROVM_TEST_ENOSPC_FROM"
OUTPUT_FULL_ENV = "MICROVM_TEST_OUTPUT_FULL_FROM"
ENV = (TRACE_ENV, CRASH_ENV, FILL_ENV, FILL_PATH_ENV, ENOSPC_ENV, OUTPUT_FULL_ENV)
SCRIPT = Path(__file__).resolve()


def wanted(env: Mapping[str, str]) -> bool:
    """Does `env` ask for a fault (or a trace)?"""
    return any(name in env for name in ENV)


def fill(path: Path) -> None:
    """Use up the blocks and inodes of the file system `path` is on, so the next write there
    fails with ENOSPC."""
    with contextlib.suppress(OSError), open(path, "ab") as f:
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    with contextlib.suppress(OSError):
        for i in range(1 << 20):
            (path.parent / f"{path.name}.{i}").touch()


def _no_space(*args: object, **kwargs: object) -> NoReturn:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fail_writes() -> None:
    """From now on every call of this process that would change a file fails: ENOSPC."""
    real_open, real_write = os.open, os.write
    changing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & changing:
            _no_space()
        return real_open(path, flags, *args, **kwargs)

    def write(fd: int, data: Any) -> int:
        if fd > 2:  # the command's output is not the file system's
            _no_space()
        return real_write(fd, data)

    os.open, os.write = open_, write
    for name in ("fsync", "replace", "rename", "symlink", "link", "mkdir"):
        setattr(os, name, _no_space)


def observer(env: Mapping[str, str]) -> Callable[[str], None]:
    """The checkpoint observer the variables in `env` ask for."""
    trace, crash, fill_at = env.get(TRACE_ENV), env.get(CRASH_ENV), env.get(FILL_ENV)
    enospc, output_full = env.get(ENOSPC_ENV), env.get(OUTPUT_FULL_ENV)

    def observe(step: str) -> None:
        if trace:
            with open(trace, "a", encoding="utf-8") as f:
                f.write(step + "\n")
        if crash == step:
            os.kill(os.getpid(), signal.SIGKILL)
        if fill_at == step:
            fill(Path(env[FILL_PATH_ENV]))
        if enospc == step:
            fail_writes()
        if output_full == step:
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, 1)
            os.dup2(full, 2)
            os.close(full)

    return observe


def main() -> None:
    from microvm import cli
    from microvm.host import state

    state.observer = observer(dict(os.environ))
    sys.argv[0] = "microvm"
    cli.main()


if __name__ == "__main__":
    main()
