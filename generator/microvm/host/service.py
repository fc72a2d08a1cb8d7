"""How VMs run on this host: as systemd units (microvm@NAME.service) where systemd is the service
manager, and in the foreground under `microvm run` (which holds the VM's run lock)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from .. import process
from ..errors import HostError
from ..layout import Program
from .state import VMDir

MANAGER_ENV = "MICROVM_SERVICE_MANAGER"  # systemd | none: overrides the detection


def unit(name: str) -> str:
    return f"microvm@{name}.service"


def systemd_present() -> bool:
    forced = os.environ.get(MANAGER_ENV)
    if forced in ("systemd", "none"):
        return forced == "systemd"
    return Path("/run/systemd/system").is_dir()  # sd_booted()


class Service:
    """Start, stop and query VMs, through systemctl when systemd runs the host."""

    def __init__(self, use_systemd: bool | None = None,
                 echo: Callable[[str], None] = lambda _: None) -> None:
        self.systemd = systemd_present() if use_systemd is None else use_systemd
        self.echo = echo

    # -- queries ---------------------------------------------------------------------------
    def unit_active(self, vm: VMDir) -> bool:
        if not self.systemd:
            return False
        result = process.run(["systemctl", "is-active", "--quiet", unit(vm.name)], check=False)
        return result.returncode == 0

    def running(self, vm: VMDir) -> str | None:
        """'systemd', 'foreground' (microvm run) or None."""
        if self.unit_active(vm):
            return "systemd"
        if vm.run_pid() is not None:
            return "foreground"
        return None

    # -- actions ---------------------------------------------------------------------------
    def _no_manager(self, vm: VMDir, what: str) -> HostError:
        return HostError(f"cannot {what} {vm.name}: systemd is not running here; " +
                         f"run it in the foreground with `microvm run {vm.name}`")

    def start(self, vm: VMDir) -> None:
        if not self.systemd:
            raise self._no_manager(vm, "start")
        process.run(["systemctl", "start", unit(vm.name)], capture=False)

    def restart(self, vm: VMDir) -> None:
        how = self.running(vm)
        if how == "foreground":
            raise HostError(f"{vm.name} runs in the foreground (`microvm run`); stop it " +
                            f"(`microvm shutdown {vm.name}`) and run it again")
        if not self.systemd:
            raise self._no_manager(vm, "restart")
        process.run(["systemctl", "restart", unit(vm.name)], capture=False)

    def stop(self, vm: VMDir, timeout: int = 60) -> None:
        """Stop the VM however it runs: systemctl stop, or microvm-shutdown and then signals to
        the `microvm run` process."""
        if self.unit_active(vm):
            process.run(["systemctl", "stop", unit(vm.name)], capture=False)
            return
        pid = vm.run_pid()
        if pid is None:
            return
        runner = vm.trusted_active_runner()
        if runner is not None and runner.bin(Program.SHUTDOWN).is_file():
            result = process.run([runner.bin(Program.SHUTDOWN)], cwd=vm.path, check=False,
                                 extra_env={"MICROVM_SHUTDOWN_TIMEOUT": str(timeout)},
                                 timeout=timeout + 10)
            if result.returncode != 0:
                self.echo(f"{vm.name}: microvm-shutdown failed: " +
                          f"{result.stderr.strip() or result.returncode}")
        if _wait_released(vm, 10.0):
            return
        if pid > 0:
            for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
                self.echo(f"{vm.name}: still running; sending {sig.name} to {pid}")
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                if _wait_released(vm, grace):
                    return
        if vm.run_pid() is not None:
            raise HostError(f"{vm.name} did not stop")


def _wait_released(vm: VMDir, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if vm.run_pid() is None:
            return True
        time.sleep(0.1)
    return vm.run_pid() is None
