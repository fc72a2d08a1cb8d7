"""Shared fixtures. Boot tests use the Debian-kernel + busybox guest from examples/testguest.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import vmtest


@pytest.fixture(scope="session")
def guest_kernel() -> vmtest.testguest.Kernel:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    try:
        return vmtest.guest_kernel()
    except vmtest.testguest.GuestBuildError as e:
        pytest.skip(f"no Debian guest kernel could be fetched: {e}")


@pytest.fixture
def make_initrd(guest_kernel: vmtest.testguest.Kernel, tmp_path: Path):  # type: ignore[no-untyped-def]
    def build(script: str, name: str = "initrd.gz") -> Path:
        return vmtest.testguest.build_initramfs(guest_kernel, tmp_path / name, script)

    return build


@pytest.fixture
def root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, tap devices)")
