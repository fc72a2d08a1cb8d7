"""How VMs run on this host: as systemd units (microvm@NAME.service) where systemd is the service
manager, and in the foreground under `microvm run` (which holds the VM's run lock)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from .. import process
from ..errors import HostError, escape
from ..layout import Program
from . import access
from .state import Runner, VMDir, pinned_sockets, unit

MANAGER_ENV = "MICROVM_SERVICE_MANAGER"  # systemd | none: overrides the detection
# the units microvm@NAME requires (each PartOf= it: stopped and restarted with it)
HELPER_UNITS = ("microvm-set-booted", "microvm-tap-interfaces", "microvm-macvtap-interfaces",
                "microvm-pci-devices", "microvm-virtiofsd")


def all_units(name: str) -> list[str]:
    """The VM's unit and its helpers'. `systemctl stop` waits only for the jobs it was asked
    for, not for those PartOf= adds, so whoever must see everything stopped names them all."""
    return [unit(name), *(f"{h}@{name}.service" for h in HELPER_UNITS)]


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

    def failed(self, vm: VMDir) -> bool:
        """systemd gave up on the VM (it kept failing: its journal says why)."""
        if not self.systemd:
            return False
        result = process.run(["systemctl", "is-failed", "--quiet", unit(vm.name)], check=False)
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

    def reset_failed(self, vm: VMDir) -> None:
        """Forget a failure (and the start limit a VM that kept failing hit): asked to start,
        it gets a new chance; removed, it leaves no failed unit behind."""
        if self.systemd:
            process.run(["systemctl", "reset-failed", *all_units(vm.name)], check=False)

    def start(self, vm: VMDir) -> None:
        if not self.systemd:
            raise self._no_manager(vm, "start")
        self.reset_failed(vm)
        process.run(["systemctl", "start", unit(vm.name)], capture=False)

    def restart(self, vm: VMDir) -> None:
        how = self.running(vm)
        if how == "foreground":
            raise HostError(f"{vm.name} runs in the foreground (`microvm run`); stop it " +
                            f"(`microvm shutdown {vm.name}`) and run it again")
        if not self.systemd:
            raise self._no_manager(vm, "restart")
        self.reset_failed(vm)
        process.run(["systemctl", "restart", unit(vm.name)], capture=False)

    def enabled(self, vm: VMDir) -> bool:
        """Started at boot: `systemctl enable microvm@NAME` (microvm create --autostart)."""
        if not self.systemd:
            return False
        # not `static` (exit code 0 too): NixOS declares microvm@ without [Install], so every
        # instance of it is static there; only a link (microvm.autostart) enables one
        state = process.run(["systemctl", "is-enabled", unit(vm.name)], check=False).stdout
        return state.strip() in ("enabled", "enabled-runtime")

    def set_enabled(self, vm: VMDir, on: bool) -> None:
        """Start the VM at boot (through microvms.target), or no longer."""
        if not self.systemd:
            raise self._no_manager(vm, "enable" if on else "disable")
        verb = "enable" if on else "disable"
        result = process.run(["systemctl", verb, unit(vm.name)], check=False)
        if result.returncode != 0:
            why = result.stderr.strip() or f"exit code {result.returncode}"
            raise HostError(f"cannot {verb} {unit(vm.name)}: {why}" + (
                " (on NixOS /etc/systemd/system is read-only: list the VM in " +
                "microvm.autostart instead)" if "Read-only" in why else ""))

    def stop(self, vm: VMDir, timeout: int = 60) -> None:
        """Stop the VM however it runs: systemctl stop, or microvm-shutdown and then signals to
        the `microvm run` process."""
        if self.unit_active(vm):
            process.run(["systemctl", "stop", *all_units(vm.name)], capture=False)
            return
        record = vm.run_record()
        if record is None:
            return
        runner = vm.trusted_active_runner()
        if runner is not None and runner.bin(Program.SHUTDOWN).is_file():
            result = self._shutdown_script(vm, runner, timeout)
            if result.returncode != 0:
                self.echo(f"{vm.name}: microvm-shutdown failed: " +
                          f"{result.stderr.strip() or result.returncode}")
        if _wait_released(vm, 10.0):
            return
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            # only the process that took the run lock (its pid and start time), never another
            # one that has its pid now
            if not record.alive():
                self.echo(f"{vm.name}: not signalling pid {record.pid}: it is not the " +
                          "`microvm run` that holds the run lock (no start time recorded, " +
                          "or the pid belongs to another process now)")
                break
            self.echo(f"{vm.name}: still running; sending {sig.name} to {record.pid}")
            if not record.signal(sig):
                break
            if _wait_released(vm, grace):
                return
        if vm.run_pid() is not None:
            raise HostError(f"{vm.name} did not stop")

    def _shutdown_script(self, vm: VMDir, runner: Runner, timeout: int) -> process.Result:
        """bin/microvm-shutdown (control_script()); a socket that fails the check is
        reported as its failure."""
        try:
            return control_script(vm, runner, Program.SHUTDOWN, timeout=timeout + 10,
                                  extra_env={"MICROVM_SHUTDOWN_TIMEOUT": str(timeout)})
        except HostError as e:
            return process.Result(1, "", str(e))


def control_script(vm: VMDir, runner: Runner, program: Program, *args: str,
                   capture: bool = True, timeout: float | None = None,
                   extra_env: Mapping[str, str] | None = None) -> process.Result:
    """Run the runner's bin/microvm-shutdown or bin/microvm-balloon so that it reaches no
    socket through a link the VM's user planted: as root in pinned_sockets() of its control
    socket (the socket it names, by the same name), or, for a runner whose control socket is
    not one in the VM's directory (kvmtool: lkvm finds its own below .lkvm/ and the script
    keeps a file there), in the VM's directory as the VM's user (VMDir.account), reaching and
    writing only what that user could."""
    argv: list[str | os.PathLike[str]] = [runner.bin(program), *args]
    model = runner.model()
    if model is not None and model.socket is None and vm.user_uid() != 0:
        user, group = vm.account()
        try:
            who = access.account(user, group)[0].identity
        except HostError:
            raise HostError(f"{vm.name}: cannot run {program.path} as the VM's user " +
                            f"{escape(user)}: no such user") from None
        return process.run(argv, cwd=vm.path, check=False, capture=capture, timeout=timeout,
                           extra_env=extra_env, as_user=who)
    with pinned_sockets(vm, runner.control_sockets()) as where:
        return process.run(argv, cwd=where, check=False, capture=capture, timeout=timeout,
                           extra_env=extra_env)


def _wait_released(vm: VMDir, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if vm.run_pid() is None:
            return True
        time.sleep(0.1)
    return vm.run_pid() is None
