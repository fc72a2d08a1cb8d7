"""The `microvm` host commands: create, update, run, list, shutdown, balloon, console, ssh,
remove and reconcile. Messages go through `echo`; errors are raised (HostError, UsageError) and
turned into exit codes by cli.py."""

from __future__ import annotations

import contextlib
import difflib
import grp
import os
import pwd
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import netplan, process
from ..config import InterfaceType, MicroVM
from ..document import read_json
from ..errors import HostError, Problem, ProcessError, UsageError, ValidationError, escape
from ..hostwide import host_problems
from ..layout import META_DIR, Meta, Program
from . import access, defaults, nix
from .pin import Pin, describe_change, parse_git_flake, prefetch
from .service import Service, control_script
from .state import (
    ACCOUNT,
    COMPAT_LINKS,
    Flake,
    MetaRecord,
    Runner,
    RunnerPath,
    VMDir,
    check_dirs,
    check_name,
    check_tree,
    checkpoint,
    compat_link_ok,
    get_vm,
    list_vms,
    make_data_dir,
    pinned_sockets,
    prepare_vm_dir,
    switch_link,
    trusted_runner,
    unit,
    write_json,
)

Echo = Callable[[str], None]
DEFAULT_FLAKE = "git+file:///etc/nixos"
GCROOTS_ENV = "MICROVM_GCROOTS_DIR"
DEFAULT_GCROOTS = "/nix/var/nix/gcroots/microvm"
# files of a VM's data directory that belong to the `microvm` tools (not to the guest)
DATA_METADATA = ("console.sock",)


@dataclass(frozen=True)
class Host:
    root: Path
    service: Service
    echo: Echo
    # the host's network declaration: a VM's network interfaces are checked against it
    networks: Path = Path(defaults.NETWORKS_FILE)


# -- helpers ---------------------------------------------------------------------------------

def reporting(host: Host) -> Host:
    """`host` whose messages are best-effort: they report a change, and one that cannot be
    written (stderr on a full disk, a closed pipe) must not make a change that took effect look
    failed (exit 1), nor stop the rest of it."""
    def echo(msg: str) -> None:
        with contextlib.suppress(OSError):
            host.echo(msg)
    return replace(host, echo=echo)


def checked_runner(target: Path, given: str | os.PathLike[str] | None = None) -> Path:
    """`target` if it is a runner tree nobody but root could have changed (root will run it);
    a HostError naming it (as `given`, when the user gave another path to it) if not."""
    if not Runner(target).valid:
        raise HostError(f"{given or target} is no MicroVM runner (no {Program.RUN.path})")
    check_tree(target)
    return target


def resolve_runner(path: str | os.PathLike[str]) -> Path:
    """An existing runner tree, followed to its real location (a `result` link may move)."""
    return checked_runner(Path(os.path.realpath(path)), path)


def _gcroots_dir() -> Path | None:
    explicit = os.environ.get(GCROOTS_ENV)
    if explicit:
        return Path(explicit)
    default = Path(DEFAULT_GCROOTS)
    return default if default.parent.is_dir() else None


def ensure_gcroots(vm: VMDir, target: Path) -> None:
    """Keep the VM's runners alive across `nix-collect-garbage`: gcroots/microvm/NAME ->
    <state>/NAME/current and booted-NAME -> .../booted (only for runners in the Nix store)."""
    roots = _gcroots_dir()
    if roots is None or (not str(target).startswith("/nix/store/")
                         and GCROOTS_ENV not in os.environ):
        return
    roots.mkdir(parents=True, exist_ok=True)
    for name, link in ((vm.name, vm.current_link), (f"booted-{vm.name}", vm.booted_link)):
        path = roots / name
        if not path.is_symlink() or os.readlink(path) != str(link):
            switch_link(path, link)


def remove_gcroots(vm: VMDir) -> None:
    roots = _gcroots_dir()
    if roots is None:
        return
    for name in (vm.name, f"booted-{vm.name}"):
        with contextlib.suppress(FileNotFoundError):
            (roots / name).unlink()


def _data_dir_for_service(vm: VMDir, user: str | None, group: str | None) -> str | None:
    """Record whom the units run the VM as (root's account.json) and make its data directory
    (make_data_dir) for that group; a note when the user or group does not exist (yet)."""
    if os.geteuid() != 0 or (user is None and group is None):
        make_data_dir(vm, None)
        return None
    user, group = user or defaults.USER, group or defaults.GROUP
    write_json(vm.file(ACCOUNT), {"user": user, "group": group})
    note = None
    try:
        pwd.getpwnam(user)
        gid: int | None = grp.getgrnam(group).gr_gid
    except KeyError as e:
        note = f"not handing {vm.path} to {user}:{group}: {e.args[0]}"
        gid = None
    make_data_dir(vm, gid)
    return note


def _update_data_dir(vm: VMDir) -> None:
    """Bring the data directory of a VM an older version made to the current layout (whom it
    runs as was then the directory's owner: recorded first)."""
    if os.geteuid() != 0:
        make_data_dir(vm, None)
        return
    user, group = vm.account()
    if not vm.file(ACCOUNT).exists() and vm.path.is_dir() and vm.path.lstat().st_uid != 0:
        write_json(vm.file(ACCOUNT), {"user": user, "group": group})
    try:
        gid: int | None = grp.getgrnam(group).gr_gid
    except KeyError:
        gid = None
    make_data_dir(vm, gid)


def _build_flake(vm: VMDir, flake: str, old_pin: Pin | None, echo: Echo) -> tuple[Path, Pin | None]:
    """Pin (git flakes) and build the VM's runner; the store path and the new pin."""
    git = parse_git_flake(flake)
    ref = flake
    pin: Pin | None = None
    if git is not None:
        pin = prefetch(git.url, git.wanted)
        echo(f"{vm.name}: {describe_change(old_pin, pin)}")
        ref = git.with_rev(pin.rev)
    else:
        echo(f"{vm.name}: {flake} is no git+ reference; building it unpinned")
    echo(f"{vm.name}: building {nix.runner_attr(ref, vm.name)}")
    target = nix.build_runner(ref, vm.name, vm.file(".build"))
    return target, pin


def _unlink(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _drop_build_link(vm: VMDir) -> None:
    with contextlib.suppress(FileNotFoundError):
        vm.file(".build").unlink()


# -- create ----------------------------------------------------------------------------------

def create(host: Host, name: str, *, flake: str | None = None, runner: str | None = None,
           restart_on_update: bool = False, user: str | None = defaults.USER,
           group: str | None = defaults.GROUP) -> VMDir:
    """A new VM from a flake (built with nix) or an existing runner. The `current` link is the
    last thing written: until then no VM of that name exists."""
    if (flake is None) == (runner is None):
        raise UsageError("create needs exactly one of --flake and --runner")
    if runner is not None:  # can the VM's user run it? (refused before anything is written)
        check_name(name)
        access.check_runner(host.echo, resolve_runner(runner), name, user, group, host.root)
    vm = prepare_vm_dir(host.root, name)
    with vm.changing():
        source: Flake | RunnerPath
        if flake is not None:
            target, pin = _build_flake(vm, flake, None, host.echo)
            access.check_runner(host.echo, target, name, user, group, host.root)
            source = Flake(flake, pin)
        else:
            assert runner is not None
            target = resolve_runner(runner)
            source = RunnerPath(os.path.abspath(runner))
        checked_runner(target)
        check_host_conflicts(host, name, target)
        note = _data_dir_for_service(vm, user, group)
        if note:
            reporting(host).echo(note)  # a note: its loss changes nothing
        ensure_gcroots(vm, target)
        checkpoint("create:before-current")
        vm.commit(target, MetaRecord(source, restart_on_update), "create")
        _drop_build_link(vm)
    how = (f"systemctl start {unit(name)}" if host.service.systemd else f"microvm run {name}")
    reporting(host).echo(f"Created MicroVM {name} ({Runner(target).hypervisor}). Start it: {how}")
    return vm


# -- what changed ----------------------------------------------------------------------------

def _meta_files(runner: Runner) -> dict[str, str]:
    base = runner.path / META_DIR
    out: dict[str, str] = {}
    if base.is_dir():
        for path in sorted(base.rglob("*")):
            if path.is_file():
                out[str(path.relative_to(base))] = path.read_text("utf-8", "replace")
    return out


def runner_diff(old: Runner, new: Runner, label: str = "booted") -> list[str]:
    """What differs between two runners: hypervisor, the launch argv (share/microvm/launch.json,
    unified diff, one argument per line), its environment and other metadata files."""
    lines: list[str] = []
    if old.hypervisor != new.hypervisor:
        lines.append(f"hypervisor: {old.hypervisor} -> {new.hypervisor}")
    a, b = old.launch(), new.launch()
    va = a.variants if a else {}
    vb = b.variants if b else {}
    for accel in [x for x in vb if x in va] or list(vb)[:1]:
        diff = list(difflib.unified_diff(list(va.get(accel, ())), list(vb.get(accel, ())),
                                         f"{label}/launch.json ({accel})",
                                         f"new/launch.json ({accel})", lineterm="", n=1))
        if diff:
            lines += diff
            break  # the other accelerations differ the same way
    env_a, env_b = (dict(a.env) if a else None), (dict(b.env) if b else None)
    if env_a != env_b:
        lines.append(f"environment: {env_a} -> {env_b}")
    ma, mb = _meta_files(old), _meta_files(new)
    skip = {Meta.LAUNCH.value, Meta.VM_JSON.value}
    changed = sorted(k for k in set(ma) | set(mb) if k not in skip and ma.get(k) != mb.get(k))
    if changed:
        lines.append("changed: " + ", ".join(f"{META_DIR}/{k}" for k in changed))
    return lines


# -- update ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Updated:
    name: str
    changed: bool
    restarted: bool


def update(host: Host, names: Sequence[str], *, restart: bool = False,
           flake: str | None = None, runner: str | None = None) -> list[Updated]:
    """Rebuild (flake) or re-resolve (runner) each VM, switch `current`, show what changed
    against the booted runner, and restart when asked or configured."""
    if not names:
        raise UsageError("update needs at least one VM name")
    if (flake or runner) and len(names) > 1:
        raise UsageError("--flake/--runner apply to a single VM")
    results = []
    for name in names:
        vm = get_vm(host.root, name)
        declared = vm.declared
        if declared is not None and declared.update_flake is None:
            raise HostError(f"{name} is declared in the host configuration; change it there " +
                            f"(install-microvm-{name}.service installs its runner at each " +
                            f"switch), or set microvm.vms.{name}.updateFlake to update it " +
                            "from a flake with this command")
        results.append(_update_one(host, vm, restart=restart, flake=flake, runner=runner))
    return results


def _update_one(host: Host, vm: VMDir, *, restart: bool, flake: str | None,
                runner: str | None) -> Updated:
    with vm.changing():
        old = vm.current
        new, record = _rebuild(host, vm, vm.record(), flake=flake, runner=runner)
        checked_runner(new)
        access.check_vm_runner(host.echo, vm, new)  # can the VM's user run it?
        check_host_conflicts(host, vm.name, new)
        _update_data_dir(vm)  # a data directory of an older layout: microvm.nix's links
        checkpoint("update:built")
        if old != new:
            ensure_gcroots(vm, new)
        vm.commit(new, record, "update")
        _drop_build_link(vm)
    told = reporting(host)  # the switch is done
    _report_update(told, vm, old, new)
    restarted = _restart_updated(told, vm, new, restart or vm.restarts_on_update(record))
    return Updated(vm.name, old != new, restarted)


def _rebuild(host: Host, vm: VMDir, record: MetaRecord, *, flake: str | None,
             runner: str | None) -> tuple[Path, MetaRecord]:
    """The VM's new runner, built from the flake or resolved from the runner given, else from
    the source recorded (a declared VM with updateFlake: installed by the host once, then
    updated from that flake), and the record to commit with it: the source given replaces the
    other kind (a VM is built from a flake or a runner)."""
    if runner is not None:
        return resolve_runner(runner), replace(record, source=RunnerPath(os.path.abspath(runner)))
    recorded = record.source
    declared = vm.declared
    ref = (flake or (recorded.ref if isinstance(recorded, Flake) else None)
           or (declared.update_flake if declared else None))
    if ref is None:
        if isinstance(recorded, RunnerPath):
            return resolve_runner(recorded.path), record
        raise HostError(f"{vm.name} has neither a flake nor a runner to update from")
    new, pin = _build_flake(vm, ref, record.pin, host.echo)
    if flake is not None:
        source = Flake(flake, pin)  # a non-git flake has no pin
    else:
        source = Flake(recorded.ref if isinstance(recorded, Flake) else None, pin or record.pin)
    return new, replace(record, source=source)


def _report_update(host: Host, vm: VMDir, old: Path | None, new: Path) -> None:
    """Say what `current` changed from and to: how the new runner launches differently from
    the booted one (or the previous one), and the Nix closures' difference."""
    echo = host.echo
    if old == new:
        echo(f"{vm.name}: no change (current is {new})")
        return
    echo(f"{vm.name}: current -> {new}")
    reference = vm.runner("booted") or (Runner(old) if old else None)
    if reference is None or reference.path == new:
        return
    what = "booted" if vm.booted else "previous"
    try:
        diff = runner_diff(reference, Runner(new), what)
    except HostError as e:  # the switch is done: say why there is no comparison
        echo(f"{vm.name}: cannot compare with the {what} runner: {e}")
        diff = []
    echo(f"{vm.name}: changes against the {what} runner:" if diff
         else f"{vm.name}: the {what} runner launches the same way")
    for line in diff:
        echo(f"  {line}")
    if str(reference.path).startswith("/nix/store/") and str(new).startswith("/nix/"):
        closure = nix.diff_closures(reference.path, new)
        if closure.strip():
            echo(closure.rstrip())


def _restart_updated(host: Host, vm: VMDir, new: Path, restart: bool) -> bool:
    """Restart a running VM to boot its new runner when `restart` (asked or configured), else
    say how; start a stopped one when asked. Whether it was (re)started."""
    echo = host.echo
    booted = vm.booted
    if booted is not None and host.service.running(vm):
        if booted == new:
            echo(f"{vm.name}: no restart needed (it runs {new})")
            return False
        if restart:
            echo(f"{vm.name}: restarting to boot the new runner")
            host.service.restart(vm)
            return True
        how = (f"systemctl restart {unit(vm.name)}" if host.service.systemd
               else f"microvm shutdown {vm.name}, then microvm run {vm.name}")
        echo(f"{vm.name}: restart it to boot the new runner: {how}")
    elif restart and host.service.systemd:
        echo(f"{vm.name}: starting")
        host.service.start(vm)
        return True
    elif restart:
        echo(f"{vm.name}: not running; `microvm run {vm.name}` starts the new runner")
    return False


# -- run -------------------------------------------------------------------------------------

def run(host: Host, name: str) -> int:
    """Run the VM in the foreground: booted := current, then bin/microvm-run (which starts
    virtiofsd and, as root, tap devices, and stops them when the hypervisor exits). `booted` is
    removed again when it ends. Returns the runner's exit status."""
    vm = get_vm(host.root, name)
    if host.service.unit_active(vm):
        raise HostError(f"{name} already runs as {unit(name)}")
    current = vm.runner("current")
    if current is None or not current.valid:
        raise HostError(f"{vm.current_link} does not point at a runner")
    with vm.hold_run_lock():
        with vm.changing():
            trusted_runner(vm.current_link)
            ensure_gcroots(vm, current.path)
            switch_link(vm.booted_link, current.path)
        booted = Runner(trusted_runner(vm.booted_link))
        proc = process.spawn([booted.bin(Program.RUN)], cwd=vm.path)
        try:
            return process.wait(proc)
        finally:
            if proc.poll() is None:
                process.terminate(proc)
            with vm.changing():
                if vm.booted == current.path:
                    with contextlib.suppress(FileNotFoundError):
                        vm.booted_link.unlink()


# -- autostart -------------------------------------------------------------------------------

def set_autostart(host: Host, names: Sequence[str], on: bool) -> None:
    """Start VMs at boot, or no longer: `systemctl enable|disable microvm@NAME` (the unit is
    wanted by microvms.target). Declared VMs follow microvm.vms.NAME.autostart instead."""
    for name in names:
        vm = get_vm(host.root, name)
        if vm.declared is not None:
            raise UsageError(f"{name} is declared by the host configuration; set " +
                             f"microvm.vms.{name}.autostart there")
        host.service.set_enabled(vm, on)
        host.echo(f"{name}: " + ("starts at boot" if on else "no longer starts at boot"))


# -- list ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Status:
    name: str
    running: str | None  # systemd | foreground | None
    hypervisor: str
    current: Path | None
    booted: Path | None
    source: str
    declared: bool
    outdated: bool | None  # None: not checked
    valid: bool
    autostart: bool = False  # started at boot (microvm enable, or declared with autostart)
    failed: bool = False  # systemd gave up on it (journalctl -u microvm@NAME says why)
    # its declared networks: (network, IPv4 address, DNS name), as `microvm network up` recorded
    # them (None where it has not given one yet)
    networks: tuple[tuple[str, str | None, str | None], ...] = ()

    @property
    def state(self) -> str:
        return "running" if self.running else "failed" if self.failed else "stopped"

    @property
    def runner_state(self) -> str:
        if not self.valid:
            return "broken: current is no runner"
        if self.outdated:
            return "outdated: microvm update " + self.name
        if self.running and self.booted is not None and self.booted != self.current:
            return "restart pending: the new runner is installed"
        if self.running:
            return "up to date"
        return "not booted"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state,
                "runBy": self.running, "hypervisor": self.hypervisor,
                "current": str(self.current) if self.current else None,
                "booted": str(self.booted) if self.booted else None,
                "source": self.source, "declared": self.declared, "outdated": self.outdated,
                "autostart": self.autostart, "runner": self.runner_state,
                "networks": [{"network": n, "ipv4": a, "name": d} for n, a, d in self.networks]}


def status(host: Host, vm: VMDir, record: Mapping[tuple[str, str], Mapping[str, str]], *,
           check: bool = False) -> Status:
    """The VM's state; `record`: what `microvm network up` gave each (VM, network)."""
    current = vm.runner("current")
    booted = vm.booted
    running = host.service.running(vm)
    recorded = vm.record().source
    flake = recorded.ref if isinstance(recorded, Flake) else None
    declared = vm.declared is not None
    source = ("declared" if declared else f"flake {flake}" if flake
              else f"runner {recorded.path}" if isinstance(recorded, RunnerPath) else "?")
    outdated: bool | None = None
    if check and flake and not declared:
        try:
            outdated = nix.eval_runner(flake, vm.name).strip() != str(vm.current)
        except ProcessError as e:
            host.echo(f"{vm.name}: cannot evaluate {flake}: {e}")
    runner = vm.runner("booted") if running and booted else current
    return Status(name=vm.name, running=running, networks=_networks(runner, record),
                  hypervisor=runner.hypervisor if runner else "?",
                  current=vm.current, booted=booted if running else None, source=source,
                  declared=declared, outdated=outdated,
                  valid=current is not None and current.valid,
                  autostart=host.service.enabled(vm),
                  failed=not running and host.service.failed(vm))


def _networks(runner: Runner | None, record: Mapping[tuple[str, str], Mapping[str, str]]
              ) -> tuple[tuple[str, str | None, str | None], ...]:
    """The declared networks the runner's VM joins, with what `microvm network up` gave it."""
    model = runner.model() if runner is not None else None
    if model is None:
        return ()
    out = []
    for iface in model.interfaces_of(InterfaceType.NETWORK):
        if iface.network is not None:
            entry = record.get((model.host_name, iface.network), {})
            out.append((iface.network, entry.get("ipv4"), entry.get("name")))
    return tuple(out)


def list_status(host: Host, *, check: bool = False) -> list[Status]:
    from .network import recorded_names  # read once for all VMs

    record = recorded_names(host.root)
    return [status(host, vm, record, check=check) for vm in list_vms(host.root)]


# -- shutdown, balloon, console, ssh ---------------------------------------------------------

def _running(host: Host, name: str) -> VMDir:
    vm = get_vm(host.root, name)
    if host.service.running(vm) is None:
        raise HostError(f"{name} is not running")
    return vm


def shutdown(host: Host, name: str, timeout: int = 60) -> None:
    vm = get_vm(host.root, name)
    if host.service.running(vm) is None:
        host.echo(f"{name} is not running")
        return
    host.service.stop(vm, timeout)
    host.echo(f"{name} stopped")


def balloon(host: Host, name: str, size: int) -> int:
    vm = _running(host, name)
    runner = vm.trusted_active_runner()
    assert runner is not None
    # never through a link the VM's user planted (service.control_script)
    return control_script(vm, runner, Program.BALLOON, str(size), capture=False).returncode


def console_argv(vm: VMDir, tty: bool) -> list[str]:
    """socat attached to the VM's console.sock (relative: socat parses ':' and ',' in paths)."""
    if tty:
        return ["socat", "-,raw,echo=0,escape=0x1d", "UNIX-CONNECT:console.sock"]
    return ["socat", "-", "UNIX-CONNECT:console.sock"]


def console(host: Host, name: str) -> int:
    """socat on console.sock, reached through pinned_sockets(); its exit status."""
    vm = _running(host, name)
    if not os.path.lexists(vm.data("console.sock")):
        raise HostError(f"{name} offers no console socket: it runs without " +
                        "MICROVM_CONSOLE=socket (its console is on the journal, or on the " +
                        "terminal of `microvm run`); qemu and stratovirt runners offer one")
    tty = sys.stdin.isatty()
    if tty:
        host.echo(f"Connected to the console of {name}; Ctrl-] detaches.")
    with pinned_sockets(vm, ["console.sock"]) as where:
        return process.wait(process.spawn(console_argv(vm, tty), cwd=where))


# a socket name a runner may give (share/microvm/hybrid-vsock): one plain file name
_SOCKET_NAME = re.compile(r"[A-Za-z0-9._-]+")


def ssh_argv(vm: VMDir, runner: Runner, user: str, options: Sequence[str],
             command: Sequence[str], where: Path | None = None) -> list[str]:
    """ssh through the VM's vsock: ProxyCommand socat VSOCK-CONNECT:CID:22 (native vsock), or
    through the hypervisor's vsock multiplexer socket where the runner names one (hybrid vsock:
    cloud-hypervisor, firecracker), reached in `where` (pinned_sockets(); default the VM's
    directory)."""
    cid = runner.vsock_cid
    if cid is None:
        raise HostError(f"{vm.name} has no vsock: set microvm.vsock.cid in its configuration")
    hybrid = runner.hybrid_vsock
    if hybrid is not None:
        if not _SOCKET_NAME.fullmatch(hybrid):
            raise HostError(f"{vm.name}'s runner names an unusable vsock socket " +
                            f"({escape(hybrid)!r} in share/microvm/hybrid-vsock)")
        # the directory as an argument (any bytes), the socket by its plain name (socat's
        # address syntax has no quoting); ssh expands %-tokens in ProxyCommand: %% is one %
        script = ('cd "$1" && { printf "CONNECT 22\\n"; cat; } | socat - UNIX-CONNECT:' +
                  hybrid)
        proxy = shlex.join(["sh", "-c", script, "sh", str(where or vm.path)]).replace("%", "%%")
    else:
        proxy = f"socat - VSOCK-CONNECT:{cid}:22"
    return ["ssh", "-o", f"ProxyCommand={proxy}", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", *options,
            "-l", user, f"vsock/{cid}", *command]


def ssh(host: Host, name: str, user: str, ssh_args: Sequence[str],
        command: Sequence[str]) -> int:
    """ssh_args go to ssh before the destination (e.g. ["-o", "ConnectTimeout=3"]); ssh's
    exit status. A hybrid vsock socket is reached through pinned_sockets(), kept while ssh
    runs."""
    vm = _running(host, name)
    runner = vm.active_runner
    assert runner is not None
    ssh_argv(vm, runner, user, ssh_args, command)  # refuses what it cannot use, first
    hybrid = runner.hybrid_vsock
    with pinned_sockets(vm, [hybrid] if hybrid else []) as where:
        return process.wait(process.spawn(ssh_argv(vm, runner, user, ssh_args, command, where)))


# -- remove and reconcile --------------------------------------------------------------------

def _links_down(host: Host, vm: VMDir) -> None:
    """Remove the VM's tap and macvtap devices (root only; missing ones are skipped)."""
    runner = vm.trusted_active_runner()
    if runner is None:
        return
    scripts = [(s, f) for s, f in ((Program.TAP_DOWN, Meta.TAP_INTERFACES),
                                   (Program.MACVTAP_DOWN, Meta.MACVTAP_INTERFACES))
               if runner.lines(f) and runner.bin(s).is_file()]
    if not scripts:
        return
    if os.geteuid() != 0:
        host.echo(f"{vm.name}: not root: leaving its tap devices")
        return
    for script, _ in scripts:
        result = process.run([runner.bin(script)], cwd=vm.path, check=False)
        if result.returncode != 0:
            host.echo(f"{vm.name}: {script} failed: {result.stderr.strip()}")


def check_host_conflicts(host: Host, name: str, target: Path) -> None:
    """Refuse a runner for VM `name` that claims what another VM of this host has (a tap
    name, MAC, vsock CID, forwarded port, device, written image: hostwide.py), before
    anything is switched. Exit 2 with both VMs and both option paths."""
    new = Runner(target).model()
    if new is None:
        return
    names, vms = [], []
    for other in list_vms(host.root):
        if other.name == name:
            continue
        try:
            runner = other.trusted_active_runner()  # root reads only what root wrote
        except HostError:
            continue  # a VM whose runner cannot be trusted is refused where it is used
        if runner is not None and (model := runner.model()) is not None:
            names.append(other.name)
            vms.append(model)
    problems = host_problems([*vms, new], str(host.root), [*names, name])
    if not problems:
        problems = network_problems(host, name, new)
    if problems:
        raise ValidationError(problems)


def network_problems(host: Host, name: str, vm: MicroVM) -> list[Problem]:
    """A VM's type = "network" interfaces against the host's declaration (netplan.vm_problems),
    when the host has one: a network it does not declare, or a MAC, tap or pinned address other
    than the declaration's, would leave the VM without its lease, name or traffic. The file is
    read only if root's and not writable by others, in directories only root may change
    (state.check_dirs, as `microvm network up` reads it): root takes no instructions from
    others."""
    joins = vm.network_joins
    if not joins:
        return []
    try:
        st = host.networks.stat()
    except FileNotFoundError:
        return []
    where = f"{host.networks}: "
    if st.st_uid != 0 or st.st_mode & 0o022:
        return [Problem(where.rstrip(": "), "not root's, or writable by others: not read (make " +
                        "it root's, mode 0644)")]
    try:
        check_dirs(host.networks.parent)
    except HostError as e:
        return [Problem(where.rstrip(": "), f"not read: {e}")]
    try:
        plan = netplan.derive(read_json(host.networks))
    except ValidationError as e:
        return [Problem(f"{where}{p.path}", p.message) for p in e.problems]
    return [Problem(f"{name}: {p.path}", f"{p.message} ({host.networks})")
            for p in netplan.vm_problems(plan, vm.host_name, joins)]


def _volumes(vm: VMDir) -> list[Path]:
    """The VM's volume images (from the runner's share/microvm/vm.json), absolute."""
    model = vm.active_runner.model() if vm.active_runner else None
    if model is None:
        return []
    return [Path(os.path.normpath(vm.path / v.image)) for v in model.volumes]


def stop_and_unplug(host: Host, vm: VMDir, timeout: int = 60) -> None:
    if host.service.running(vm):
        host.echo(f"{vm.name}: stopping")
        host.service.stop(vm, timeout)
    _links_down(host, vm)


def remove(host: Host, name: str, *, purge: bool = False, timeout: int = 60) -> None:
    """Stop the VM, remove its taps and its links and metadata. Volumes and other files in its
    directory are kept unless purge; with purge the directory goes, and volumes outside it are
    named but never deleted. `--purge` of a VM an earlier remove left data of deletes that."""
    host = reporting(host)
    left = VMDir(host.root, check_name(name))
    if purge and not left.exists and left.path.is_dir() and not left.path.is_symlink():
        # only the data directory is left (a plain remove kept it): the purge it offered
        shutil.rmtree(left.path)
        host.echo(f"{name}: removed {left.path} with its volumes")
        return
    vm = get_vm(host.root, name)
    stop_and_unplug(host, vm, timeout)
    host.service.reset_failed(vm)  # a VM that had failed leaves no failed unit behind
    if host.service.enabled(vm):
        try:
            host.service.set_enabled(vm, False)  # no want for a VM that is gone
        except HostError as e:
            host.echo(f"{name}: {e}")
    volumes = _volumes(vm)
    remove_gcroots(vm)
    with vm.changing():
        # the VM is gone once `current` is (a crash after this leaves no half VM: a later
        # create writes all of its metadata anew)
        checkpoint("remove:before-unlink")
        _unlink(vm.current_link, vm.file("declared.json"))
        checkpoint("remove:unlinked")
        for entry in sorted(os.listdir(vm.control)):
            if vm.file(entry).is_dir() and not vm.file(entry).is_symlink():
                shutil.rmtree(vm.file(entry), ignore_errors=True)  # pinned_sockets()'
            elif entry != ".lock":
                _unlink(vm.file(entry))
        vm.file(".lock").unlink()
    with contextlib.suppress(OSError):
        vm.control.rmdir()
    if purge:
        outside = [v for v in volumes if not v.is_relative_to(vm.path)]
        shutil.rmtree(vm.path, ignore_errors=True)
        host.echo(f"{name}: removed {vm.path} with its volumes")
        for v in outside:
            host.echo(f"{name}: kept volume outside the state directory: {v}")
        return
    _unlink(*(vm.data(entry) for entry in DATA_METADATA),
            *(vm.data(n) for n in COMPAT_LINKS if compat_link_ok(vm, n)))
    kept = sorted(p.name for p in vm.path.iterdir()) if vm.path.is_dir() else []
    if not kept and vm.path.is_dir():
        vm.path.rmdir()
        host.echo(f"{name}: removed")
    else:
        # names the VM's user chose: escaped, so none can drive root's terminal
        host.echo(f"{name}: removed; kept {vm.path} with {', '.join(map(escape, kept))} " +
                  "(microvm remove --purge deletes them)")


@dataclass(frozen=True)
class Reconciled:
    restarted: tuple[str, ...]
    pending: tuple[str, ...]
    undeclared: tuple[str, ...]
    missing: tuple[str, ...]


def reconcile(host: Host, declared: Iterable[str], *, timeout: int = 60) -> Reconciled:
    """After the host configuration changed: restart declared VMs whose runner changed (per
    their restartIfChanged), stop VMs that are no longer declared and remove their taps. State
    directories and volumes stay (microvm remove --purge deletes them)."""
    host = reporting(host)
    wanted = {check_name(n) for n in declared}
    restarted: list[str] = []
    pending: list[str] = []
    undeclared: list[str] = []
    present = set()
    for vm in list_vms(host.root):
        info = vm.declared
        if info is None:
            continue  # imperative VMs (microvm create) are not the configuration's business
        present.add(vm.name)
        if vm.name not in wanted:
            stop_and_unplug(host, vm, timeout)
            with vm.changing(), contextlib.suppress(FileNotFoundError):
                checkpoint("reconcile:before-undeclare")
                vm.file("declared.json").unlink()
                checkpoint("reconcile:undeclared")
            host.echo(f"{vm.name}: no longer declared: stopped, taps removed, {vm.path} kept " +
                      f"(microvm remove --purge {vm.name} deletes it)")
            undeclared.append(vm.name)
            continue
        booted, current = vm.booted, vm.current
        if not host.service.running(vm) or booted is None or booted == current:
            continue
        if info.restart_if_changed:
            host.echo(f"{vm.name}: runner changed; restarting")
            host.service.restart(vm)
            restarted.append(vm.name)
        else:
            host.echo(f"{vm.name}: runner changed; restartIfChanged is off, restart it to " +
                      f"apply: systemctl restart {unit(vm.name)}")
            pending.append(vm.name)
    missing = sorted(wanted - present)
    for name in missing:
        host.echo(f"{name}: declared but not installed (install-microvm-{name}.service " +
                  "has not run)")
    return Reconciled(tuple(restarted), tuple(pending), tuple(undeclared), tuple(missing))
