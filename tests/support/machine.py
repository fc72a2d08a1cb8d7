"""The one list of what this kind of machine cannot give the tests, with the reason.

Under CI=true a test may skip only through `cannot(KEY, detail)` with a KEY listed here; any
other skip (a missing tool, a missing oracle, not being root) fails the run, so CI never goes
green while part of the project went unchecked (tests/conftest.py enforces this and prints how
many were skipped and why).
"""

from __future__ import annotations

import os

import pytest

CANNOT: dict[str, str] = {
    "kvm": "no working hardware-assisted KVM (kvm_intel/kvm_amd): guests boot under TCG only",
    "vhost": "no /dev/vhost-net or /dev/vhost-vsock: vhost acceleration and vsock peers",
    # systemd runs as PID 1 in a container (tests/support/hostsys.py); what it cannot give:
    "passthrough": "no PCI or USB devices to pass through (vfio, IOMMU groups, libusb)",
    "cgroup2": "the container runs under cgroup v1: the device cgroup rules (DeviceAllow=) " +
               "of a cgroup v2 host are not exercised",
    "hypervisor": "only QEMU runs here; cloud-hypervisor, firecracker, crosvm, kvmtool, " +
                  "stratovirt, alioth and vfkit cannot",
}
PREFIX = "machine cannot: "


def ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def cannot(key: str, detail: str = "") -> None:
    """Skip because this machine cannot give KEY (one of CANNOT)."""
    __tracebackhide__ = True  # report the caller's line
    reason = f"{PREFIX}{key}: {CANNOT[key]}"
    pytest.skip(f"{reason} ({detail})" if detail else reason)


def allowed(reason: str) -> bool:
    """A skip reason that CI accepts: one of CANNOT, given through `cannot`."""
    if not reason.startswith(PREFIX):
        return False
    return reason[len(PREFIX):].split(":", 1)[0] in CANNOT
