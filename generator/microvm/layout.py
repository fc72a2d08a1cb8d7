"""The runner tree's layout: the one definition its writer and its readers share.

runner.py writes the tree; host/state.py (Runner), host/commands.py, host/service.py,
host/doctor.py, units.py and the unit templates read it, all through these names:

    bin/<Program>                       the scripts (microvm-run, microvm-shutdown, ...)
    share/microvm/<Meta>                one fact per file (hypervisor, tap-interfaces, ...)
    share/microvm/virtiofs/<tag>/socket, .../source     per virtiofs share served by virtiofsd
    share/microvm/launch.json           how the hypervisor is started: a LaunchRecord
    share/microvm/<file>                files a backend writes (firecracker.json, ...)

A launch.json is read strictly: anything but what LaunchRecord.to_json writes is a HostError
that names the file and the offending key, never a KeyError.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .errors import HostError

BIN_DIR = "bin"
META_DIR = "share/microvm"


class Program(StrEnum):
    """The scripts under bin/."""

    RUN = "microvm-run"
    SHUTDOWN = "microvm-shutdown"
    BALLOON = "microvm-balloon"
    TAP_UP = "tap-up"
    TAP_DOWN = "tap-down"
    MACVTAP_UP = "macvtap-up"
    MACVTAP_DOWN = "macvtap-down"
    VIRTIOFSD_RUN = "virtiofsd-run"

    @property
    def path(self) -> str:
        """Relative to the runner tree: bin/NAME."""
        return f"{BIN_DIR}/{self.value}"


class Meta(StrEnum):
    """The metadata files under share/microvm/ (one value or one item per line)."""

    HYPERVISOR = "hypervisor"
    HOSTNAME = "hostname"
    SYSTEM = "system"
    TOPLEVEL = "toplevel"  # the guest's system.build.toplevel, when known
    CONTROL_SOCKET = "control-socket"
    TAP_INTERFACES = "tap-interfaces"  # interface ids whose taps tap-up makes
    MACVTAP_INTERFACES = "macvtap-interfaces"  # "id mac link mode" per line
    PCI_DEVICES = "pci-devices"
    USB_DEVICES = "usb-devices"
    VSOCK_CID = "vsock-cid"
    MACHINED = "machined"  # the machine UUID the units register (microvm.registerWithMachined)
    PRE_START = "pre-start"  # microvm.preStart, sourced by microvm-run
    HYBRID_VSOCK = "hybrid-vsock"  # the hypervisor's vsock multiplexer socket (backends write)
    VM_JSON = "vm.json"  # the VM document (its to_json)
    LAUNCH = "launch.json"  # a LaunchRecord

    @property
    def path(self) -> str:
        """Relative to the runner tree: share/microvm/NAME."""
        return f"{META_DIR}/{self.value}"


def virtiofs_meta(tag: str, what: str) -> str:
    """The file under share/microvm/ naming the `socket` or `source` of a virtiofs share."""
    assert what in ("socket", "source")
    return f"virtiofs/{tag}/{what}"


# interpreters an argv may wrap a program in (the runner's own tools)
SHELLS = frozenset({"sh", "bash"})


def program_of(argv: Sequence[str]) -> str | None:
    """The program an argv runs: argv[0]; for a shell wrapper `bash -c SCRIPT NAME ARG...` (the
    backends name a wrapper after the program it runs: alioth's pty, vfkit's socket path) the
    first ARG that is NAME; None for a shell script that runs no program it names."""
    if not argv:
        return None
    if argv[0] not in SHELLS:
        return argv[0]
    if len(argv) > 3 and argv[1] == "-c" and argv[3] in argv[4:]:
        return argv[3]
    return None


def template_names() -> dict[str, Any]:
    """The layout for templates: `program.tap_up` is "tap-up", `bin.tap_up` "bin/tap-up",
    `meta.pci_devices` "share/microvm/pci-devices", `bin_dir` "bin", `meta_dir`
    "share/microvm"."""
    return {"program": {p.name.lower(): p.value for p in Program},
            "bin": {p.name.lower(): p.path for p in Program},
            "meta": {m.name.lower(): m.path for m in Meta},
            "bin_dir": BIN_DIR, "meta_dir": META_DIR}


@dataclass(frozen=True)
class LaunchRecord:
    """share/microvm/launch.json: how the runner starts the hypervisor, for the host tools
    (`microvm update` shows how it changed, `microvm doctor` which programs it needs)."""

    # acceleration -> argv, in the runner's order (the first is the default without a probe)
    variants: Mapping[str, tuple[str, ...]]
    # the acceleration microvm-run tests for at start (hypervisors/base.py: Launch.probe)
    probe: str | None = None
    kvm_modules: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError("a launch record needs at least one variant")

    @property
    def programs(self) -> tuple[str, ...]:
        """The program of every variant (program_of), each once, in order."""
        found = [program_of(argv) for argv in self.variants.values()]
        return tuple(dict.fromkeys(p for p in found if p is not None))

    def to_json(self) -> dict[str, Any]:
        return {"variants": {k: list(v) for k, v in self.variants.items()},
                "probe": self.probe, "kvmModules": list(self.kvm_modules),
                "env": dict(self.env)}

    def to_text(self) -> str:
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, data: object, where: str = Meta.LAUNCH.value) -> LaunchRecord:
        """The record `data` (parsed JSON) holds; HostError naming `where` and the key when it
        is anything but what to_json writes."""

        def bad(what: str) -> HostError:
            return HostError(f"{where}: malformed launch record: {what}")

        def strings(value: object, key: str) -> tuple[str, ...]:
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise bad(f"{key} must be a list of strings, got {value!r:.100}")
            return tuple(value)

        if not isinstance(data, dict):
            raise bad(f"expected an object, got {type(data).__name__}")
        keys = {"variants", "probe", "kvmModules", "env"}
        if set(data) != keys:
            missing, unknown = sorted(keys - set(data)), sorted(set(data) - keys)
            raise bad("; ".join([*(f"missing key {k!r}" for k in missing),
                                 *(f"unknown key {k!r}" for k in unknown)]))
        variants = data["variants"]
        if not isinstance(variants, dict) or not variants:
            raise bad(f"variants must be a non-empty object, got {variants!r:.100}")
        argvs = {str(k): strings(v, f"variants.{k}") for k, v in variants.items()}
        if not all(argvs.values()):
            raise bad("every variant needs an argv")
        probe = data["probe"]
        if probe is not None and probe not in argvs:
            raise bad(f"probe must be null or one of the variants, got {probe!r:.100}")
        env = data["env"]
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise bad(f"env must be an object of strings, got {env!r:.100}")
        return cls(variants=argvs, probe=probe, kvm_modules=strings(data["kvmModules"],
                                                                     "kvmModules"),
                   env=dict(env))

    @classmethod
    def from_text(cls, text: str, where: str = Meta.LAUNCH.value) -> LaunchRecord:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise HostError(f"{where}: malformed launch record: not JSON ({e})") from None
        return cls.from_json(data, where)
