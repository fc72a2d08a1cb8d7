"""Shared fixtures. Boot tests use the Debian-kernel + busybox guest from examples/testguest.py."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest
from support import machine, vmtest


@pytest.fixture(scope="session")
def guest_kernel() -> vmtest.testguest.Kernel:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    try:
        return vmtest.guest_kernel()
    except vmtest.testguest.GuestBuildError as e:
        pytest.skip(f"no Debian guest kernel could be fetched: {e}")


@pytest.fixture
def make_initrd(guest_kernel: vmtest.testguest.Kernel, tmp_path: Path) -> Callable[..., Path]:
    def build(script: str, name: str = "initrd.gz") -> Path:
        return vmtest.testguest.build_initramfs(guest_kernel, tmp_path / name, script)

    return build


@pytest.fixture
def root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, tap devices)")


# -- under CI=true, only what this machine cannot give may skip (tests/support/machine.py) ---

def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if (machine.ci() and report.skipped and not hasattr(report, "wasxfail")
            and not machine.allowed(reason := _skip_reason(report))):
        report.outcome = "failed"
        report.longrepr = (f"CI=true: this test skipped ({reason}), but only what " +
                           "tests/support/machine.py lists may be missing on a CI machine; " +
                           "install what it needs in scripts/setup instead")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    why = Counter(_skip_reason(r) for r in skipped)
    terminalreporter.write_sep("-", f"{len(skipped)} skipped, and why")
    for reason, n in why.most_common():
        terminalreporter.write_line(f"{n:5d}  {reason}")
