"""Conflicts between the VMs of one host: things each VM document may hold alone but two VMs
cannot share (a tap name, a MAC, a vsock CID, a forwarded host port, a socket, a writable
image, a PCI device). `microvm validate-host DOC...` reports each with both VMs and both
option paths.

Relative paths are resolved as the host runs each VM: in its state directory,
STATE_DIR/<hostName>.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .capabilities import CAPABILITIES
from .config import InterfaceType, MicroVM, ShareProto
from .errors import Problem
from .host import defaults


@dataclass(frozen=True)
class Claim:
    """One VM's use of a host resource that only one VM may have."""

    kind: str  # what is claimed, as the message says it ("tap interface name", ...)
    key: str  # the resource, normalised (compared between VMs)
    shown: str  # the value as the user wrote it
    path: str  # the option path in the VM's document


def _host_path(vm: MicroVM, state_dir: str, path: str, name: str | None = None) -> str:
    return os.path.normpath(os.path.join(state_dir, name or vm.host_name, path))


def claims(vm: MicroVM, state_dir: str, name: str | None = None) -> Iterator[Claim]:
    """Everything of the host `vm` needs for itself, with the option that asks for it. `name`:
    the VM's name on the host (its data directory), when it is not its host name."""
    if name is None:
        yield Claim("host name (state directory and units)", vm.host_name, vm.host_name,
                    "networking.hostName")
    for i, iface in enumerate(vm.interfaces):
        if iface.type is InterfaceType.USER:
            continue  # user networking has its own stack per VM
        p = f"microvm.interfaces[{i}]"
        yield Claim("network interface name", iface.id, iface.id, f"{p}.id")
        yield Claim("MAC address", iface.mac.lower(), iface.mac, f"{p}.mac")
    if vm.vsock_cid is not None:
        yield Claim("vsock CID", str(vm.vsock_cid), str(vm.vsock_cid), "microvm.vsock.cid")
    sockets = [(vm.socket, "microvm.socket")] if vm.socket is not None else []
    sockets += [(s.socket, f"microvm.shares[{i}].socket") for i, s in enumerate(vm.shares)
                if s.proto is ShareProto.VIRTIOFS and s.socket is not None]
    if vm.graphics and CAPABILITIES[vm.hypervisor].gpu_daemon:
        # crosvm's GPU device, which the runner starts (and whose stale socket it removes)
        sockets.append((vm.gpu_socket, "microvm.graphics.socket"))
    for sock, path in sockets:
        yield Claim("socket", _host_path(vm, state_dir, sock, name), sock, path)
    for i, d in enumerate(vm.devices):
        yield Claim(f"{d.bus.upper()} device", f"{d.bus}:{d.path.lower()}", d.path,
                    f"microvm.devices[{i}].path")


@dataclass(frozen=True)
class _Port:
    proto: str
    port: int
    address: str
    path: str


def _ports(vm: MicroVM) -> list[_Port]:
    return [_Port(f.proto, f.host_port, f.host_address, f"microvm.forwardPorts[{i}].host.port")
            for i, f in enumerate(vm.forward_ports) if f.direction == "host"]


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

    first: dict[tuple[str, str], tuple[MicroVM, Claim]] = {}
    images: dict[str, list[tuple[MicroVM, str, bool]]] = {}
    ports: list[tuple[MicroVM, _Port]] = []
    for i, vm in enumerate(vms):
        name = names[i] if names else None
        mine = list(claims(vm, state_dir, name))
        for c in mine:
            seen = first.get((c.kind, c.key))
            if seen is not None and seen[0] is not vm:
                report(vm, c.path, f"{c.kind} {c.shown!r}", seen[0], seen[1].path)
        for c in mine:
            first.setdefault((c.kind, c.key), (vm, c))
        # an image may be shared read-only, never while one of the VMs writes it
        for j, v in enumerate(vm.volumes):
            key, path = _host_path(vm, state_dir, v.image, name), f"microvm.volumes[{j}].image"
            for other, other_path, other_ro in images.get(key, []):
                if other is not vm and not (v.read_only and other_ro):
                    report(vm, path, f"volume image {v.image!r} (written by " +
                           f"{'the other VM' if v.read_only else 'this VM'})", other,
                           other_path)
                    break
            images.setdefault(key, []).append((vm, path, v.read_only))
        for p in _ports(vm):
            for other, q in ports:
                if other is not vm and (p.proto, p.port) == (q.proto, q.port) and _overlap(
                        p.address, q.address):
                    report(vm, p.path, f"host {p.proto} port {p.address or '*'}:{p.port}",
                           other, q.path)
                    break
        ports += [(vm, p) for p in _ports(vm)]
    return found
