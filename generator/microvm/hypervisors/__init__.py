"""One backend per hypervisor; `backend()` dispatches exhaustively on the Hypervisor enum."""

from __future__ import annotations

from typing import assert_never

from ..capabilities import Hypervisor
from .base import Accel, Backend, Control, Launch, RunContext


def backend(hv: Hypervisor) -> Backend:
    match hv:
        case Hypervisor.QEMU:
            from .qemu import Qemu

            return Qemu()
        case (Hypervisor.CLOUD_HYPERVISOR | Hypervisor.FIRECRACKER | Hypervisor.CROSVM
              | Hypervisor.KVMTOOL | Hypervisor.STRATOVIRT | Hypervisor.ALIOTH
              | Hypervisor.VFKIT):
            from .pending import Pending

            return Pending(hv)
        case _:
            assert_never(hv)


__all__ = ["Accel", "Backend", "Control", "Launch", "RunContext", "backend"]
