"""systemd units for the host, rendered from templates/units/*.

`build(UnitOptions)` returns the tree as data; `write()` puts it on disk, as a managed tree
(managed.py: recorded in DIR/.microvm-units.json; a later `--force` run replaces or removes only
what that records, and refuses to overwrite anything else):

    lib/systemd/system/microvm@.service                 the VM (runs booted/bin/microvm-run)
    lib/systemd/system/microvm-set-booted@.service      booted := current (atomic), on start
    lib/systemd/system/microvm-tap-interfaces@.service  booted/bin/tap-up, tap-down
    lib/systemd/system/microvm-macvtap-interfaces@.service
    lib/systemd/system/microvm-pci-devices@.service     binds share/microvm/pci-devices to vfio
    lib/systemd/system/microvm-virtiofsd@.service       booted/bin/virtiofsd-run
    lib/systemd/system/microvms.target                  wants the declared autostart VMs
    lib/systemd/system/microvm-networks.service         the declared networks (`microvm network
                                                        up` of /etc/microvm/networks.json)
    lib/systemd/system/install-microvm-<name>.service   per declared VM: installs its runner
    lib/systemd/system/microvm@<name>.service.d/50-declared.conf
    lib/systemd/system/*.target.wants/*                 enablement links
    lib/tmpfiles.d/microvm.conf                         creates the state directory at boot
    libexec/microvm/*                                   the helpers the units run (POSIX sh)

The tree is deterministic, so Nix can build it as a package (`systemd.packages`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from . import __version__
from .config import MicroVM, ShareProto
from .errors import UsageError
from .host import defaults
from .host.network import RUN_DIR as NETWORK_RUN_DIR
from .host.service import HELPER_UNITS
from .host.state import ACCOUNT, COMPAT_LINKS, CONTROL, DATA_MODE, Runner, check_name
from .hypervisors.base import NOTIFY_VSOCK_PORT_BASE
from .layout import Meta, template_names
from .managed import Entry, Link
from .managed import write as write_managed
from .render import render

UNIT_DIR = "lib/systemd/system"
TMPFILES = "lib/tmpfiles.d/microvm.conf"
LIBEXEC_DIR = "libexec/microvm"
# the record of what `microvm units --out DIR` wrote, in DIR (managed.py)
MANIFEST = ".microvm-units.json"
# vsock port the guest's service manager notifies: NOTIFY_PORT_BASE + the guest's CID
NOTIFY_PORT_BASE = NOTIFY_VSOCK_PORT_BASE
# the units a VM requires; each is PartOf= the VM, so it stops and restarts with it
DEPENDENCIES = HELPER_UNITS
TEMPLATE_UNITS = ("microvm@.service", *(f"{d}@.service" for d in DEPENDENCIES))
# the host's declared networks: a VM's tap unit wants it
NETWORKS_UNIT = "microvm-networks.service"
# the units that are the same for every VM: NixOS declares them from nix/lib/units.json
NIXOS_UNITS = (*TEMPLATE_UNITS, "microvms.target", NETWORKS_UNIT)
# where `microvm host install` puts its tree, and its link to the `microvm` command (which
# microvm-networks.service runs as root)
PREFIX = "/usr/local"
COMMAND_LINK = "bin/microvm"
HELPERS = ("set-booted", "install-runner", "wait-virtiofsd", "notify-relay", "pci-setup",
           "runner-exec", "macvtap-owner", "mark-started", "machined")
# where the helpers keep what lasts one boot (a tmpfs): the restart counts mark-started records
RUN_DIR = "/run/microvm"
# microvm@NAME gives up after this many starts within this many seconds (RestartSec=5s)
START_LIMIT_BURST = 10
START_LIMIT_INTERVAL = 120
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+=@:,-]*")
_SAFE_ACCOUNT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,31}")
# what crosvm's device jails (minijail: google/crosvm jail/src/helpers.rs) call beyond the
# syscalls microvm@ allows every VM: mounts and pivot_root, and setting ids in its namespaces
CROSVM_JAIL_SYSCALLS = "@mount setgroups setresuid setuid"


class Readiness(StrEnum):
    """When systemd considers microvm@NAME started."""

    STARTED = "started"  # the runner was executed (Type=exec)
    VSOCK = "vsock"  # the guest said READY=1 over vsock (Type=notify, relayed)


class Console(StrEnum):
    """Where the serial console of a VM run by systemd goes."""

    SOCKET = "socket"  # console.sock in the state directory (`microvm console NAME`)
    JOURNAL = "journal"  # the hypervisor's stdout, i.e. the journal


@dataclass(frozen=True)
class DeclaredVM:
    """A VM of the host configuration: its runner is installed by install-microvm-NAME."""

    name: str
    runner: str
    restart_if_changed: bool = True
    autostart: bool = True
    # microvm.vms.<name>.updateFlake: installed once, then updated from this flake reference
    update_flake: str | None = None


@dataclass(frozen=True)
class UnitOptions:
    state_dir: str = defaults.STATE_DIR
    user: str = defaults.USER
    group: str = defaults.GROUP
    # absolute directory the helpers are installed in (default: <out>/libexec/microvm)
    libexec_dir: str | None = None
    readiness: Readiness = Readiness.STARTED
    console: Console = Console.SOCKET
    start_timeout: int = 150
    shutdown_timeout: int = 60
    # grace after microvm-shutdown gave up before SIGTERM turns into SIGKILL
    kill_grace: int = 30
    virtiofsd_notify: bool = False
    declared: tuple[DeclaredVM, ...] = field(default_factory=tuple)
    # the `microvm` command microvm-networks.service runs (as root: a path only root may change)
    command: str = f"{PREFIX}/{COMMAND_LINK}"
    # for the NixOS host module, which declares the template units (NIXOS_UNITS, from
    # nix/lib/units.json) and each declared VM's microvm@NAME and restartIfChanged as NixOS
    # definitions: the tree holds only the install units, drop-ins, tmpfiles and helpers
    nixos: bool = False


# a flake reference written into a unit's ExecStart and a JSON file: no quotes, backslashes,
# blanks, `$` or `%` (systemd would expand them)
_SAFE_FLAKE = re.compile(r"[A-Za-z0-9._/+=@:,?&~#-]+")


def safe_path(what: str, value: str) -> str:
    if not _SAFE_PATH.fullmatch(value) or "//" in value or "/../" in f"{value}/":
        raise UsageError(f"{what} must be an absolute path of letters, digits and ._/+=@:,- " +
                         f"(it is written into unit files), got {value!r}")
    return value.rstrip("/") or "/"


def _check(opts: UnitOptions) -> None:
    safe_path("--state-dir", opts.state_dir)
    safe_path("--command", opts.command)
    for what, value in (("--user", opts.user), ("--group", opts.group)):
        if not _SAFE_ACCOUNT.fullmatch(value):
            raise UsageError(f"{what} must be a user/group name, got {value!r}")
    if opts.start_timeout <= 0 or opts.shutdown_timeout <= 0:
        raise UsageError("timeouts must be positive numbers of seconds")
    seen: set[str] = set()
    for vm in opts.declared:
        check_name(vm.name)
        safe_path(f"runner of {vm.name}", vm.runner)
        if vm.name in seen:
            raise UsageError(f"VM {vm.name!r} is declared twice")
        if vm.update_flake is not None and not _SAFE_FLAKE.fullmatch(vm.update_flake):
            raise UsageError(f"update flake of {vm.name} must be a flake reference of letters, "
                             + f"digits and ._/+=@:,?&~#- , got {vm.update_flake!r}")
        seen.add(vm.name)


def state_specifier(state_dir: str) -> str:
    """How units spell the state directory: %S (/var/lib for system units) when it is below."""
    if state_dir.startswith("/var/lib/"):
        return "%S/" + state_dir[len("/var/lib/"):]
    return state_dir


def _writable_outside(vm: MicroVM | None, state_dir: str, name: str) -> list[str]:
    """Volume directories and writable 9p shares of a declared runner that lie outside its state
    directory (ProtectSystem=strict makes them read-only unless listed)."""
    if vm is None:
        return []
    base = f"{state_dir}/{name}"
    paths: set[str] = set()
    for v in vm.volumes:
        if not v.read_only:
            paths.add(os.path.dirname(os.path.join(base, v.image)))
    for s in vm.shares:
        if s.proto is ShareProto.NINEP and not s.read_only:
            paths.add(os.path.join(base, s.source))
    inside = base + "/"
    out = []
    for p in sorted(paths):
        norm = os.path.normpath(p)
        if not (norm + "/").startswith(inside) and _SAFE_PATH.fullmatch(norm):
            out.append(norm)
    return out


def _hypervisor(runner: str) -> str | None:
    """The hypervisor of a declared runner (share/microvm/hypervisor), when it can be read at
    build time (a runner in the Nix store can)."""
    text = Runner(Path(runner)).meta(Meta.HYPERVISOR)
    return text.strip() if text else None


def _context(opts: UnitOptions, libexec: str) -> dict[str, Any]:
    """What every template is rendered with."""
    state_dir = opts.state_dir.rstrip("/")
    return {
        "version": __version__, "state": state_specifier(state_dir), "state_dir": state_dir,
        "control": state_specifier(state_dir) + "/" + CONTROL, "control_name": CONTROL,
        "compat_links": COMPAT_LINKS, "data_mode": f"{DATA_MODE:o}", "account": ACCOUNT,
        "libexec": libexec, "user": opts.user, "group": opts.group,
        "readiness": str(opts.readiness), "console": str(opts.console),
        "start_timeout": opts.start_timeout, "shutdown_timeout": opts.shutdown_timeout,
        "kill_grace": opts.kill_grace, "virtiofsd_notify": opts.virtiofsd_notify,
        "notify_port_base": NOTIFY_PORT_BASE, "deps": DEPENDENCIES, "run_dir": RUN_DIR,
        "start_limit_burst": START_LIMIT_BURST, "start_limit_interval": START_LIMIT_INTERVAL,
        "command": opts.command, "networks_file": defaults.NETWORKS_FILE,
        "networks_unit": NETWORKS_UNIT, "network_run_dir": NETWORK_RUN_DIR, **template_names(),
    }


def _declared_files(vm: DeclaredVM, common: dict[str, Any],
                    nixos: bool = False) -> dict[str, Entry]:
    """A declared VM's install unit, its drop-in for microvm@NAME and their enablement."""
    install = f"install-microvm-{vm.name}.service"
    files: dict[str, Entry] = {f"{UNIT_DIR}/{install}": (render(
        "units/install-microvm.service.j2", **common, unit=install, name=vm.name,
        runner=vm.runner, restart_if_changed="true" if vm.restart_if_changed else "false",
        update_flake=vm.update_flake, before=("microvm", *DEPENDENCIES),
        state_path=common["state"]), 0o644)}
    # the VM of a declared runner, when its vm.json can be read at build time (in the Nix store)
    model = Runner(Path(vm.runner)).model()
    files[f"{UNIT_DIR}/microvm@{vm.name}.service.d/50-declared.conf"] = (
        render("units/microvm-declared.conf.j2", **common, name=vm.name,
               restart_if_changed=vm.restart_if_changed, restart_key=not nixos,
               paths=_writable_outside(model, common["state_dir"], vm.name),
               # as microvm.nix's host: a VM whose guest reports readiness over vsock is
               # ready when it says so, whatever the host-wide readiness
               notifies=model is not None and model.vsock_cid is not None,
               machined=model is not None and model.register_with_machined,
               hypervisor=(str(model.hypervisor) if model is not None
                           else _hypervisor(vm.runner)),
               crosvm_syscalls=CROSVM_JAIL_SYSCALLS), 0o644)
    if nixos:  # NixOS enables units with its own links (wantedBy)
        return files
    files[f"{UNIT_DIR}/microvms.target.wants/{install}"] = Link(f"../{install}")
    if vm.autostart:
        files[f"{UNIT_DIR}/microvms.target.wants/microvm@{vm.name}.service"] = Link(
            "../microvm@.service")
    return files


def _template_units(common: dict[str, Any], autostart: list[str]) -> dict[str, str]:
    """The units every VM uses (NIXOS_UNITS): unit name -> text."""
    return {name: render(f"units/{name}.j2", unit=name, **common, autostart=autostart)
            for name in NIXOS_UNITS}


def build(opts: UnitOptions, libexec_dir: str) -> dict[str, Entry]:
    """The unit tree: relative path -> (content, mode) or Link."""
    _check(opts)
    common = _context(opts, safe_path("--libexec-dir", libexec_dir))
    files: dict[str, Entry] = {}
    if not opts.nixos:
        autostart = [vm.name for vm in opts.declared if vm.autostart]
        for name, text in _template_units(common, autostart).items():
            files[f"{UNIT_DIR}/{name}"] = (text, 0o644)
        files[f"{UNIT_DIR}/multi-user.target.wants/microvms.target"] = Link("../microvms.target")
        files[f"{UNIT_DIR}/microvms.target.wants/{NETWORKS_UNIT}"] = Link(f"../{NETWORKS_UNIT}")
    for vm in opts.declared:
        files.update(_declared_files(vm, common, opts.nixos))
    files[TMPFILES] = (render("units/microvm.tmpfiles.j2", **common), 0o644)
    for helper in HELPERS:
        files[f"{LIBEXEC_DIR}/{helper}"] = (
            render(f"units/libexec/{helper}.sh.j2", helper=helper, **common), 0o755)
    return files


# What the NixOS host module fills in nix/lib/units.json (nix/lib/default.nix, nixosUnits)
NIX_PLACEHOLDERS = {"state": "@state@", "state_dir": "@stateDir@", "libexec": "@libexec@",
                    "user": "@user@", "group": "@group@", "start_timeout": "@startupTimeout@",
                    "command": "@microvm@"}
Sections = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Sections:
    """A unit file as section -> key -> its values in order (comments and blank lines left
    out; an empty value, which resets a list, is kept)."""
    sections: Sections = {}
    current: dict[str, list[str]] | None = None
    for line in text.splitlines():
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("[") and s.endswith("]"):
            current = sections.setdefault(s[1:-1], {})
            continue
        key, sep, value = s.partition("=")
        if current is None or not sep or line.endswith("\\"):
            raise ValueError(f"not a unit file line: {line!r}")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def nixos_data() -> dict[str, dict[str, Sections]]:
    """The template units for each readiness, parsed, with NIX_PLACEHOLDERS for what the host
    module sets: readiness -> unit name -> section -> key -> values (nix/lib/units.json)."""
    out: dict[str, dict[str, Sections]] = {}
    for readiness in Readiness:
        common = {**_context(UnitOptions(readiness=readiness), "/"), **NIX_PLACEHOLDERS,
                  "control": f"{NIX_PLACEHOLDERS['state']}/{CONTROL}"}
        out[str(readiness)] = {name: parse_unit(text)
                               for name, text in _template_units(common, []).items()}
    return out


def nixos_json() -> str:
    """nix/lib/units.json (scripts/regen)."""
    return json.dumps(nixos_data(), indent=1, sort_keys=True) + "\n"


def write(out: Path, opts: UnitOptions, *, force: bool = False) -> Mapping[str, Entry]:
    """Write the unit tree below `out`. An existing `out` needs force=True; then the files an
    earlier run recorded in out/MANIFEST are replaced or removed, nothing else is touched, and
    a file in the way that the manifest does not record (or that changed since) stops the run
    before anything changed (ConflictError). A crash is finished by the next run."""
    out = Path(os.path.abspath(out))
    if os.path.lexists(out) and not force:
        raise UsageError(f"{out} exists; pass --force to replace what `microvm units` wrote " +
                         f"there (recorded in {out / MANIFEST}; other files stay)")
    files = build(opts, opts.libexec_dir or str(out / LIBEXEC_DIR))
    write_managed(out, MANIFEST, files, writer=f"microvm units {__version__}")
    return files


def parse_declared(specs: Iterable[str], no_restart: Iterable[str] = (),
                   no_autostart: Iterable[str] = (),
                   update_flakes: Iterable[str] = ()) -> tuple[DeclaredVM, ...]:
    """--declare NAME=RUNNER values (with --no-restart-if-changed/--no-autostart NAME and
    --update-flake NAME=REF)."""
    keep = set(no_restart)
    manual = set(no_autostart)
    flakes: dict[str, str] = {}
    for spec in update_flakes:
        name, sep, ref = spec.partition("=")
        if not sep or not ref:
            raise UsageError(f"--update-flake wants NAME=FLAKE, got {spec!r}")
        flakes[name] = ref
    out = []
    for spec in specs:
        name, sep, runner = spec.partition("=")
        if not sep or not runner:
            raise UsageError(f"--declare wants NAME=RUNNER, got {spec!r}")
        out.append(DeclaredVM(name=name, runner=runner, restart_if_changed=name not in keep,
                              autostart=name not in manual, update_flake=flakes.get(name)))
    unknown = (keep | manual | set(flakes)) - {vm.name for vm in out}
    if unknown:
        raise UsageError(f"not declared with --declare: {', '.join(sorted(unknown))}")
    return tuple(out)


def declared_from_json(data: Any) -> tuple[DeclaredVM, ...]:
    """--declared-file FILE: {"NAME": {"runner": PATH, "restartIfChanged": bool, "autostart": bool,
    "updateFlake": REF or null}} (what the host module writes with builtins.toJSON)."""
    if not isinstance(data, dict):
        raise UsageError("--declared-file must hold a JSON object of VM name -> settings")
    out = []
    for name, item in sorted(data.items()):
        if not isinstance(item, dict) or not isinstance(item.get("runner"), str):
            raise UsageError(f"--declared-file: {name}: needs \"runner\": \"/path/to/runner\"")
        flags = {k: item.get(k, True) for k in ("restartIfChanged", "autostart")}
        for k, v in flags.items():
            if not isinstance(v, bool):
                raise UsageError(f"--declared-file: {name}.{k}: must be true or false, got {v!r}")
        flake = item.get("updateFlake")
        if flake is not None and not isinstance(flake, str):
            raise UsageError(f"--declared-file: {name}.updateFlake: must be a flake reference or " +
                             f"null, got {flake!r}")
        out.append(DeclaredVM(name=name, runner=item["runner"],
                              restart_if_changed=flags["restartIfChanged"],
                              autostart=flags["autostart"], update_flake=flake))
    return tuple(out)
