"""Conflicts between the VMs of one host: things each VM document may hold alone but two VMs
cannot share (a network interface name, a macvtap link in passthru mode, a MAC, a kernel vsock
CID, a forwarded host port, a host path used as a socket or a written image, a PCI or USB
device). `microvm validate-host DOC...` reports each with both VMs and both option paths.

Relative paths are resolved as the host runs each VM: in its state directory,
STATE_DIR/<hostName>.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .capabilities import CAPABILITIES
from .config import InterfaceType, MicroVM, ShareProto
from .errors import Problem
from .host import defaults
from .hypervisors import RunContext, backend
from .hypervisors.base import HYBRID_VSOCK_FILE


@dataclass(frozen=True)
class Claim:
    """One VM's use of a host resource. Two VMs' claims of one key in one space conflict
    unless both are shared (a read-only image, a macvtap link not in passthru mode)."""

    kind: str  # what is claimed, as the message says it ("network interface name", ...)
    key: str  # the resource, normalised (compared between VMs)
    shown: str  # the value as the user wrote it
    path: str  # the option path in the VM's document
    space: str = ""  # what keys are compared in ("" : kind): one name space for several kinds
    shared: bool = False  # other VMs' shared claims of the key may coexist with this one
    note: str = ""  # why it conflicts, said of this claim when it is the exclusive one ...
    note_other: str = ""  # ... and said by a shared claim it conflicts with

    @property
    def where(self) -> tuple[str, str]:
        return (self.space or self.kind, self.key)


# network interfaces, macvtap links, sockets and images share these name spaces
IFNAME, HOST_PATH = "network interface name", "host path"


def _host_path(vm: MicroVM, state_dir: str, path: str, name: str | None = None) -> str:
    return os.path.normpath(os.path.join(state_dir, name or vm.host_name, path))


def _usb_key(path: str) -> str:
    """A USB device's usb-host properties in one order, numbers in one spelling (QEMU reads
    them with base 0): vendorid=0x1,productid=0x2 is productid=0x0002,vendorid=1."""
    parts = path.lower().split(",")
    if "" in parts:  # ",," (an escaped comma): compare as written
        return path.lower()
    props = []
    for part in parts:
        key, sep, value = part.partition("=")
        with contextlib.suppress(ValueError):
            value = str(int(value.strip(), 0))
        props.append(f"{key.strip()}{sep}{value}")
    return ",".join(sorted(props))


def _kernel_vsock(vm: MicroVM) -> bool:
    """Does the VM's vsock take a CID in the host kernel (vhost-vsock)? A hybrid vsock (the
    backend writes its socket's name for the host, HYBRID_VSOCK_FILE) is a Unix socket in
    the VM's own directory and its CID is private to the VM."""
    launch = backend(vm.hypervisor).launch(vm, RunContext(runner_dir="/"))
    return HYBRID_VSOCK_FILE not in launch.files


def claims(vm: MicroVM, state_dir: str, name: str | None = None) -> Iterator[Claim]:
    """Everything of the host `vm` needs, with the option that asks for it. `name`: the VM's
    name on the host (its data directory), when it is not its host name."""
    if name is None:
        yield Claim("host name (state directory and units)", vm.host_name, vm.host_name,
                    "networking.hostName")
    for i, iface in enumerate(vm.interfaces):
        if iface.type is InterfaceType.USER:
            continue  # user networking has its own stack per VM
        p = f"microvm.interfaces[{i}]"
        yield Claim(IFNAME, iface.id, iface.id, f"{p}.id")
        yield Claim("MAC address", iface.mac.lower(), iface.mac, f"{p}.mac")
        if iface.type is InterfaceType.MACVTAP and iface.macvtap_link:
            # macvtaps of several VMs may share a link, unless one is in passthru mode
            passthru = iface.macvtap_mode == "passthru"
            yield Claim("macvtap link", iface.macvtap_link, iface.macvtap_link,
                        f"{p}.macvtap.link", space=IFNAME, shared=not passthru,
                        note=" (in passthru mode, which takes the whole link)" if passthru
                        else "",
                        note_other=" (the other VM's macvtap in passthru mode takes it)")
    if vm.vsock_cid is not None and _kernel_vsock(vm):
        yield Claim("vsock CID", str(vm.vsock_cid), str(vm.vsock_cid), "microvm.vsock.cid")
    sockets = [(vm.socket, "microvm.socket")] if vm.socket is not None else []
    sockets += [(s.socket, f"microvm.shares[{i}].socket") for i, s in enumerate(vm.shares)
                if s.proto is ShareProto.VIRTIOFS and s.socket is not None]
    if vm.graphics and CAPABILITIES[vm.hypervisor].gpu_daemon:
        # crosvm's GPU device, which the runner starts (and whose stale socket it removes)
        sockets.append((vm.gpu_socket, "microvm.graphics.socket"))
    for sock, path in sockets:
        yield Claim("socket", _host_path(vm, state_dir, sock, name), sock, path,
                    space=HOST_PATH)
    # an image may be shared read-only, never while one of the VMs writes it
    for j, v in enumerate(vm.volumes):
        yield Claim("volume image", _host_path(vm, state_dir, v.image, name), v.image,
                    f"microvm.volumes[{j}].image", space=HOST_PATH, shared=v.read_only,
                    note="" if v.read_only else " (written by this VM)",
                    note_other=" (written by the other VM)")
    for i, d in enumerate(vm.devices):
        key = d.path.lower() if d.bus == "pci" else _usb_key(d.path)
        yield Claim(f"{d.bus.upper()} device", f"{d.bus}:{key}", d.path,
                    f"microvm.devices[{i}].path")


@dataclass(frozen=True)
class _Port:
    proto: str
    port: int
    address: str
    path: str


def _ports(vm: MicroVM) -> list[_Port]:
    return [_Port(f.proto, f.host_port, f.host_address, f"microvm.forwardPorts[{i}].host.port")
            for i, f in enumerate(vm.forward_ports)
            if f.direction == "host" and f.host_port != 0]  # 0: a free port, each its own


def _overlap(a: str, b: str) -> bool:
    """Two listening addresses collide when equal or when either is every address."""
    def every(x: str) -> bool:
        return x == "" or ipaddress.IPv4Address(x) == ipaddress.IPv4Address("0.0.0.0")
    return a == b or every(a) or every(b)


def host_problems(vms: Sequence[MicroVM], state_dir: str = defaults.STATE_DIR,
                  names: Sequence[str] | None = None) -> list[Problem]:
    """Every resource two VMs claim, reported at the later VM, naming the earlier one.
    `names`: the VMs' names on the host (`microvm create NAME`), else their host names."""
    found: list[Problem] = []
    label = {id(vm): (names[i] if names else vm.host_name) for i, vm in enumerate(vms)}

    def report(vm: MicroVM, path: str, message: str, other: MicroVM, other_path: str) -> None:
        found.append(Problem(f"{label[id(vm)]}: {path}",
                             f"{message} is also used by {label[id(other)]} ({other_path})"))

    seen: dict[tuple[str, str], list[tuple[MicroVM, Claim]]] = {}
    ports: list[tuple[MicroVM, _Port]] = []
    for i, vm in enumerate(vms):
        name = names[i] if names else None
        mine = list(claims(vm, state_dir, name))
        for c in mine:
            for other, o in seen.get(c.where, []):
                if other is not vm and not (c.shared and o.shared):
                    note = o.note_other if c.shared else c.note
                    report(vm, c.path, f"{c.kind} {c.shown!r}{note}", other, o.path)
                    break
        for c in mine:
            seen.setdefault(c.where, []).append((vm, c))
        for p in _ports(vm):
            for other, q in ports:
                if other is not vm and (p.proto, p.port) == (q.proto, q.port) and _overlap(
                        p.address, q.address):
                    report(vm, p.path, f"host {p.proto} port {p.address or '*'}:{p.port}",
                           other, q.path)
                    break
        ports += [(vm, p) for p in _ports(vm)]
    return found
