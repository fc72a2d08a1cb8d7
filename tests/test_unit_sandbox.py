"""Every feature of every hypervisor that microvm@ can start works inside its sandbox.

A table says what each feature (capabilities.Feature) and each hypervisor needs from the unit
that runs it: address families, device nodes, namespaces, system calls, writable+executable
memory, and which helper unit must prepare what (with which capability). For each hypervisor x
feature the capability table allows on Linux, the test derives the unit of a declared VM of that
hypervisor (template + generated drop-in, applied in systemd's order: an empty assignment
resets, SystemCallFilter= lines add to or remove from the first list) and checks the table
against it. System call groups are expanded by `systemd-analyze syscall-filter`, i.e. by
systemd itself. Features the unit cannot start are listed with the reason (docs/host.md says
which drop-in they need)."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from microvm import units
from microvm.capabilities import CAPABILITIES, Feature, Hypervisor
from support import REPO

DOC = REPO / "docs" / "host.md"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze expands the system call groups")


@dataclass(frozen=True)
class Needs:
    families: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    syscalls: frozenset[str] = frozenset()
    write_exec: bool = False
    # helper unit -> (capabilities it needs, an Exec* line it must have)
    helpers: dict[str, tuple[frozenset[str], str]] = field(default_factory=dict)


def needs(*, families: str = "", devices: str = "", namespaces: str = "", syscalls: str = "",
          write_exec: bool = False,
          helpers: dict[str, tuple[str, str]] | None = None) -> Needs:
    return Needs(frozenset(families.split()), frozenset(devices.split()),
                 frozenset(namespaces.split()), frozenset(syscalls.split()), write_exec,
                 {u: (frozenset(c.split()), line) for u, (c, line) in (helpers or {}).items()})


CONTROL = "%S/microvms/.control/%i/booted"
FEATURES: dict[Feature, Needs | str] = {
    Feature.SHARE_9P: needs(),  # files in the data directory (others: a ReadWritePaths= drop-in)
    Feature.SHARE_9P_READONLY: needs(),
    Feature.SHARE_VIRTIOFS: needs(families="AF_UNIX", helpers={
        "microvm-virtiofsd": ("CAP_SYS_ADMIN CAP_SETUID CAP_SETGID CAP_DAC_OVERRIDE",
                              f"ExecStart=/x/runner-exec {CONTROL} virtiofsd-run")}),
    Feature.SHARE_VIRTIOFS_READONLY: needs(families="AF_UNIX"),
    Feature.NET_USER: needs(families="AF_INET AF_INET6"),
    Feature.FORWARD_PORTS: needs(families="AF_INET AF_INET6"),
    Feature.NET_TAP: needs(devices="/dev/net/tun", helpers={
        "microvm-tap-interfaces": ("CAP_NET_ADMIN", f"ExecStart=/x/runner-exec {CONTROL} tap-up")}),
    # macvtap-up leaves /dev/tapN root's 0600 unless microvm.user is set; the hypervisor, as the
    # VM's user, opens it itself
    Feature.NET_MACVTAP: needs(devices="char-macvtap", helpers={
        "microvm-macvtap-interfaces": ("CAP_NET_ADMIN CAP_CHOWN",
                                       f"ExecStartPost=/x/macvtap-owner {CONTROL}")}),
    Feature.NET_BRIDGE: "QEMU's setuid qemu-bridge-helper needs NoNewPrivileges=no",
    Feature.VHOST_NET: needs(devices="/dev/vhost-net"),
    Feature.VSOCK: needs(families="AF_VSOCK", devices="/dev/vhost-vsock"),
    Feature.BALLOON: needs(families="AF_UNIX"),
    Feature.INITIAL_BALLOON: needs(),
    Feature.HOTPLUG_MEM: needs(families="AF_UNIX"),
    Feature.HOTPLUGGED_MEM: needs(),
    Feature.HUGEPAGES: needs(syscalls="mbind set_mempolicy"),
    Feature.VOLUME_SERIAL: needs(),
    Feature.VOLUME_DIRECT: needs(),
    Feature.PCI_PASSTHROUGH: needs(devices="/dev/vfio/vfio char-vfio", helpers={
        "microvm-pci-devices": ("CAP_CHOWN", f"ExecStart=/x/pci-setup {CONTROL}")}),
    # libusb opens a netlink uevent socket at start ("failed to init libusb" without it)
    Feature.USB_PASSTHROUGH: needs(families="AF_NETLINK", devices="char-usb_device"),
    Feature.GRAPHICS: "a display socket outside the sandbox (PrivateTmp, ProtectHome)",
    Feature.CONTROL_SOCKET: needs(families="AF_UNIX"),
    Feature.GRACEFUL_SHUTDOWN: needs(families="AF_UNIX"),
    Feature.CREDENTIALS: needs(),
    Feature.CPU_EMULATION: needs(write_exec=True),  # QEMU's TCG JIT
    Feature.CHANGE_USER: "the unit already runs the VM as its user (no CAP_SETUID to drop)",
    Feature.MACHINE_ID: needs(),
}
HYPERVISORS: dict[Hypervisor, Needs] = {
    Hypervisor.QEMU: needs(devices="/dev/kvm", syscalls="seccomp"),  # -sandbox on
    Hypervisor.CLOUD_HYPERVISOR: needs(devices="/dev/kvm", syscalls="seccomp"),
    Hypervisor.FIRECRACKER: needs(devices="/dev/kvm", syscalls="seccomp"),
    # minijail device jails (google/crosvm jail/src/helpers.rs create_sandbox_minijail):
    # namespace_pids, namespace_user (+ uid/gid maps), namespace_vfs + pivot_root + a tmpfs for
    # bind mounts, namespace_net; seccomp filters
    Hypervisor.CROSVM: needs(devices="/dev/kvm", namespaces="user mnt pid net",
                             syscalls="mount pivot_root umount2 setresuid setresgid seccomp"),
    Hypervisor.KVMTOOL: needs(devices="/dev/kvm"),
    Hypervisor.STRATOVIRT: needs(devices="/dev/kvm", syscalls="seccomp"),
    Hypervisor.ALIOTH: needs(devices="/dev/kvm"),
}
LINUX = "x86_64-linux"


def test_the_tables_are_complete() -> None:
    assert set(FEATURES) == set(Feature)
    linux = {hv for hv, caps in CAPABILITIES.items() if LINUX in caps.platforms}
    assert set(HYPERVISORS) == linux


@functools.cache
def syscall_group(name: str) -> frozenset[str]:
    """The system calls of @name as this systemd defines them (nested groups expanded)."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], text=True,
                         capture_output=True, check=True).stdout
    calls: set[str] = set()
    for line in out.splitlines()[1:]:
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        calls |= syscall_group(word) if word.startswith("@") else {word}
    return frozenset(calls)


def expand(tokens: list[str]) -> set[str]:
    out: set[str] = set()
    for t in tokens:
        out |= syscall_group(t) if t.startswith("@") else {t}
    return out


class Effective:
    """The [Service] settings of a unit plus drop-ins, in systemd's order."""

    def __init__(self, *texts: str) -> None:
        self.lines: dict[str, list[str]] = {}
        for text in texts:
            section = None
            for raw in text.splitlines():
                line = raw.strip()
                if line.startswith("["):
                    section = line
                if section != "[Service]" or "=" not in line or line.startswith("#"):
                    continue
                key, value = line.split("=", 1)
                if value == "":
                    self.lines[key] = []  # an empty assignment resets the list
                else:
                    self.lines.setdefault(key, []).append(value)

    def last(self, key: str) -> str | None:
        values = self.lines.get(key)
        return values[-1] if values else None

    def words(self, key: str) -> set[str]:
        return {w for v in self.lines.get(key, []) for w in v.split()}

    def families(self) -> set[str]:
        return self.words("RestrictAddressFamilies")

    def devices(self) -> set[str]:
        return {v.split()[0] for v in self.lines.get("DeviceAllow", [])}

    def namespaces_allowed(self, wanted: frozenset[str]) -> bool:
        values = self.lines.get("RestrictNamespaces", [])
        if not values:
            return True
        allowed: set[str] = set()
        for v in values:
            if v in ("yes", "true"):
                allowed = set()
            elif v in ("no", "false"):
                allowed = {"cgroup", "ipc", "net", "mnt", "pid", "user", "uts"}
            elif v.startswith("~"):
                allowed = {"cgroup", "ipc", "net", "mnt", "pid", "user", "uts"} - set(
                    v[1:].split())
            else:
                allowed |= set(v.split())
        return wanted <= allowed

    def syscalls_allowed(self) -> set[str]:
        values = self.lines.get("SystemCallFilter", [])
        assert values and not values[0].startswith("~"), "expected an allow list first"
        allowed: set[str] = set()
        for v in values:
            if v.startswith("~"):
                allowed -= expand(v[1:].split())
            else:
                allowed |= expand(v.split())
        return allowed

    def capabilities(self) -> set[str]:
        return self.words("CapabilityBoundingSet")


def fake_runner(tmp_path: Path, hv: Hypervisor) -> Path:
    runner = tmp_path / f"runner-{hv}"
    (runner / "bin").mkdir(parents=True)
    (runner / "bin" / "microvm-run").write_text("#!/bin/sh\n")
    (runner / "share" / "microvm").mkdir(parents=True)
    (runner / "share" / "microvm" / "hypervisor").write_text(f"{hv}\n")
    return runner


def vm_unit(tmp_path: Path, hv: Hypervisor) -> tuple[Effective, dict[str, Effective]]:
    """microvm@vm for a declared VM of `hv`, and the helper units (templates)."""
    opts = units.UnitOptions(declared=(units.DeclaredVM("vm", str(fake_runner(tmp_path, hv))),))
    files = units.build(opts, "/x")

    def text(rel: str) -> str:
        entry = files[f"{units.UNIT_DIR}/{rel}"]
        assert isinstance(entry, tuple)
        return entry[0]

    vm = Effective(text("microvm@.service"), text("microvm@vm.service.d/50-declared.conf"))
    helpers = {d: Effective(text(f"{d}@.service")) for d in units.DEPENDENCIES}
    return vm, helpers


def problems(need: Needs, vm: Effective, helpers: dict[str, Effective],
             unit_texts: dict[str, str]) -> list[str]:
    out = []
    if missing := need.families - vm.families():
        out.append(f"RestrictAddressFamilies lacks {sorted(missing)}")
    if vm.last("DevicePolicy") in ("closed", "strict") and (
            missing := need.devices - vm.devices()):
        out.append(f"DeviceAllow lacks {sorted(missing)}")
    if need.namespaces and not vm.namespaces_allowed(need.namespaces):
        out.append(f"RestrictNamespaces forbids {sorted(need.namespaces)}")
    if need.syscalls and (missing := need.syscalls - vm.syscalls_allowed()):
        out.append(f"SystemCallFilter forbids {sorted(missing)}")
    if need.write_exec and vm.last("MemoryDenyWriteExecute") == "yes":
        out.append("MemoryDenyWriteExecute=yes")
    for unit, (caps, line) in need.helpers.items():
        if missing := caps - helpers[unit].capabilities():
            out.append(f"{unit}: CapabilityBoundingSet lacks {sorted(missing)}")
        if line not in unit_texts[unit].splitlines():
            out.append(f"{unit}: no {line}")
    return out


CASES = [(hv, f) for hv in HYPERVISORS for f in Feature
         if CAPABILITIES[hv].supports(f, LINUX)]


@pytest.mark.parametrize(("hv", "feature"), CASES, ids=[f"{h}-{f}" for h, f in CASES])
def test_the_unit_allows_what_the_feature_needs(tmp_path: Path, hv: Hypervisor,
                                                feature: Feature) -> None:
    need = FEATURES[feature]
    if isinstance(need, str):
        # not startable as is: docs/host.md's sandboxing section must say so
        section = DOC.read_text("utf-8").split("### Sandboxing", 1)[1].split("\n## ", 1)[0]
        assert feature.value in section, f"docs/host.md: {feature.value}: {need}"
        return
    vm, helpers = vm_unit(tmp_path, hv)
    files = units.build(units.UnitOptions(), "/x")
    texts = {d: entry[0] for d in units.DEPENDENCIES
             if isinstance(entry := files[f"{units.UNIT_DIR}/{d}@.service"], tuple)}
    found = problems(need, vm, helpers, texts) + problems(HYPERVISORS[hv], vm, helpers, texts)
    assert found == []


def test_only_crosvm_gets_namespaces(tmp_path: Path) -> None:
    """The relaxation crosvm's jails need stays in crosvm VMs' drop-ins."""
    for hv in HYPERVISORS:
        vm, _ = vm_unit(tmp_path / str(hv), hv)
        allows_userns = vm.namespaces_allowed(frozenset({"user"}))
        assert allows_userns == (hv is Hypervisor.CROSVM), hv
        assert ("pivot_root" in vm.syscalls_allowed()) == (hv is Hypervisor.CROSVM), hv


def test_the_checker_catches_the_hardening_that_broke_features(tmp_path: Path) -> None:
    """The units before this change: no AF_NETLINK (USB), no macvtap-owner, no namespaces for
    crosvm. The checker reports each (so the table-driven test above can fail)."""
    vm, helpers = vm_unit(tmp_path, Hypervisor.QEMU)
    old_vm = Effective("[Service]\n" + "\n".join(
        f"{k}={v}" for k, vs in vm.lines.items() for v in vs
        if k != "RestrictAddressFamilies") +
        "\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_VSOCK\n")
    texts = {"microvm-macvtap-interfaces": "ExecStart=/x/macvtap-up\n"}
    usb = FEATURES[Feature.USB_PASSTHROUGH]
    macvtap = FEATURES[Feature.NET_MACVTAP]
    assert isinstance(usb, Needs) and isinstance(macvtap, Needs)
    assert problems(usb, old_vm, helpers, texts) == [
        "RestrictAddressFamilies lacks ['AF_NETLINK']"]
    assert re.search("no ExecStartPost=/x/macvtap-owner",
                     "\n".join(problems(macvtap, old_vm, helpers, texts)))
    crosvm_vm, _ = vm_unit(tmp_path / "c", Hypervisor.QEMU)  # no crosvm drop-in
    assert problems(HYPERVISORS[Hypervisor.CROSVM], crosvm_vm, helpers, texts) == [
        "RestrictNamespaces forbids ['mnt', 'net', 'pid', 'user']",
        "SystemCallFilter forbids ['mount', 'pivot_root', 'setresuid', 'umount2']"]


def test_crosvm_dropin_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    from support.unit_root import INSTANCE, analyze, verify_root

    runner = fake_runner(tmp_path, Hypervisor.CROSVM)
    opts = units.UnitOptions(declared=(units.DeclaredVM(INSTANCE, str(runner)),))
    out = tmp_path / "out"
    units.write(out, opts)
    assert "RestrictNamespaces=user mnt pid net" in (
        out / units.UNIT_DIR / f"microvm@{INSTANCE}.service.d/50-declared.conf").read_text()
    root = verify_root(tmp_path, out, opts.state_dir)
    r = analyze(root, "verify", "--man=no", f"microvm@{INSTANCE}.service")
    assert (r.returncode, r.stdout + r.stderr) == (0, "")
