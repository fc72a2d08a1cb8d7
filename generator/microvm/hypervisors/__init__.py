"""One backend per hypervisor; `backend()` dispatches exhaustively on the Hypervisor enum."""

from __future__ import annotations

from typing import assert_never

from ..capabilities import Hypervisor
from .base import Accel, Backend, Control, ControlKind, Launch, RunContext


def backend(hv: Hypervisor) -> Backend:
    match hv:
        case Hypervisor.QEMU:
            from .qemu import Qemu

            return Qemu()
        case Hypervisor.CLOUD_HYPERVISOR:
            from .cloud_hypervisor import CloudHypervisor

            return CloudHypervisor()
        case Hypervisor.FIRECRACKER:
            from .firecracker import Firecracker

            return Firecracker()
        case Hypervisor.CROSVM:
            from .crosvm import Crosvm

            return Crosvm()
        case Hypervisor.KVMTOOL:
            from .kvmtool import Kvmtool

            return Kvmtool()
        case Hypervisor.STRATOVIRT:
            from .stratovirt import Stratovirt

            return Stratovirt()
        case Hypervisor.ALIOTH:
            from .alioth import Alioth

            return Alioth()
        case Hypervisor.VFKIT:
            from .vfkit import Vfkit

            return Vfkit()
        case _:
            assert_never(hv)


__all__ = ["Accel", "Backend", "Control", "ControlKind", "Launch", "RunContext", "backend"]
