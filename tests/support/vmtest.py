"""Helpers for tests that boot real guests under QEMU TCG with generated runners."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from support import REPO

sys.path.insert(0, str(REPO / "examples"))

import testguest as testguest  # re-exported: vmtest.testguest

# Boots are serialised across every test process of this machine (2 cores).
BOOT_LOCK = Path(os.environ.get("MICROVM_BOOT_LOCK", "/tmp/microvm-tests-boot.lock"))
BOOT_TIMEOUT = 90.0


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (made with its directory when missing), across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def boot_lock() -> contextlib.AbstractContextManager[None]:
    return locked(BOOT_LOCK)


def document(host_name: str, kernel: Path, initrd: Path, **microvm: Any) -> dict[str, Any]:
    """A VM document for the test guest: no store disk, serial console, TCG-friendly."""
    m: dict[str, Any] = {"kernel": str(kernel), "initrdPath": str(initrd),
                         "storeOnDisk": False, "mem": 256, "kernelParams": ["quiet"]}
    m.update(microvm)
    return {"hostName": host_name, "runtimePath": ["/usr/lib/qemu"], "microvm": m}


def generate(doc: Mapping[str, Any], work: Path, name: str = "runner") -> Path:
    """Write doc to work/vm.json and generate its runner with the real CLI."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "vm.json").write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    out = work / name
    subprocess.run([sys.executable, "-m", "microvm.cli", "generate", str(work / "vm.json"),
                    "--out", str(out), "--force"], check=True)
    return out


class VM:
    """A runner's bin/microvm-run (or `argv`) started in `cwd`, its console collected line by
    line. `started`: the monotonic time it was started, after the boot lock was taken."""

    def __init__(self, runner: Path, cwd: Path, env: Mapping[str, str] | None = None,
                 wrap: list[str] | None = None, argv: Sequence[str] | None = None, *,
                 lock: bool = True) -> None:
        """lock=False: the caller holds boot_lock() (a test that runs two VMs at once)."""
        self.runner = runner
        self.cwd = cwd
        self.lines: list[str] = []
        self._lock = boot_lock() if lock else contextlib.nullcontext()
        self._lock.__enter__()
        full_env = {**os.environ, "MICROVM_ACCEL": "tcg", **(env or {})}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [*(wrap or []), *(argv or [str(runner / "bin" / "microvm-run")])], cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self._buf = b""

    def _pump(self, timeout: float) -> bool:
        """Read what is there; False at EOF."""
        assert self.proc.stdout is not None
        for _ in self._sel.select(timeout):
            data = self.proc.stdout.read()
            if not data:
                return False
            self._buf += data
            *done, self._buf = self._buf.split(b"\n")
            self.lines += [d.decode("utf-8", "replace").rstrip("\r") for d in done]
        return True

    @property
    def console(self) -> str:
        return "\n".join(self.lines) + "\n" + self._buf.decode("utf-8", "replace")

    def wait_for(self, marker: str, timeout: float = BOOT_TIMEOUT) -> str:
        """Wait for a console line containing marker; return that line."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                if marker in line:
                    return line
            seen = len(self.lines)
            if not self._pump(0.2) and self.proc.poll() is not None:
                break
        raise AssertionError(f"no {marker!r} on the console; it said:\n{self.console[-4000:]}")

    def wait_exit(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._pump(0.2)
            if self.proc.poll() is not None:
                while self._pump(0.05):
                    pass
                return self.proc.returncode
        raise AssertionError(f"VM did not exit; console:\n{self.console[-4000:]}")

    def run_tool(self, name: str, *args: str, check: bool = True,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.runner / "bin" / name), *args], cwd=self.cwd,
                              capture_output=True, text=True, check=check, timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
            self.proc.wait(10)
        self._sel.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._lock.__exit__(None, None, None)

    def __enter__(self) -> VM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def guest_kernel() -> testguest.Kernel:
    return testguest.kernel()


def initrd(work: Path, script: str) -> Path:
    return testguest.build_initramfs(guest_kernel(), work / "initrd.gz", script)
