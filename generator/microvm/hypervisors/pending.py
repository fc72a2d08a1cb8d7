"""Placeholder for hypervisors whose backend has not landed: generation refuses clearly."""

from __future__ import annotations

from ..capabilities import Hypervisor
from ..config import MicroVM
from ..errors import Problem, ValidationError
from .base import Backend, Launch, RunContext


class Pending(Backend):
    def __init__(self, hv: Hypervisor) -> None:
        self.hypervisor = hv

    def launch(self, vm: MicroVM, ctx: RunContext) -> Launch:
        raise ValidationError([Problem(
            "microvm.hypervisor",
            f"runners for {self.hypervisor} are not implemented yet; use \"qemu\"")])
