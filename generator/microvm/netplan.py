"""Declared host networks (issue 23): what a host declares once per network, and what is derived
from it for each VM that joins, the same way on every run.

The declaration, a JSON document (`microvm network ... FILE`; the NixOS host module's
`microvm.host.networks` in the same shape):

    {"hostName": "h1",
     "hostAddresses": ["192.168.1.10/24"],           # the host's own, for overlap checks
     "networks": {"lan": {"ipv4": "10.231.0.0/24", "ipv6": "auto", "uplinks": ["eth0"],
                          "domain": "vm.internal", "isolation": "isolated",
                          "allow": [{"from": "web", "to": "db", "tcp": [5432], "udp": []}],
                          "forwardPorts": [{"vm": "web", "hostPort": 8443, "port": 443,
                                            "proto": "tcp"}]}},
     "vms": {"web": [{"network": "lan"}],
             "db": [{"network": "lan", "mac": "02:..", "ipv4": "10.231.0.5"}]}}

Derived (derive()): per network its bridge (from the network's name), gateway addresses and,
for `ipv6 = "auto"`, a ULA /64 from the host and network name; per VM and network a tap name
and a MAC (from the network and VM name: the VM's runner derives the same), an IPv4 address (a
hash slot in the pool, probing upward where two VMs' slots meet, VMs in name order, pins first)
and an IPv6 address (prefix + a 64-bit hash). A pin (`mac`, `ipv4`, `ipv6`) replaces the
derived value. Names and numbers depend only on the host name, the network name and the VM
name, except where two VMs' IPv4 slots meet: then the one whose name sorts later probes on.
With the record of addresses given out before (`given`, kept by the host), every VM keeps its
address, so a VM added later takes the next free slot instead of moving an older one.

Every refusal is a Problem naming the path in the declaration (`networks.lan.ipv4`,
`vms.web[0].mac`), and both sides of a conflict.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import Problem, ValidationError

IFNAMSIZ = 16
# interface name prefixes systemd's shipped .network files match (vmspawn, nspawn): no derived
# name starts with one, and a VM's pinned tap name may not
SYSTEMD_PREFIXES = ("vt-", "ve-", "vz-")
BRIDGE_PREFIX = "mvb-"
TAP_PREFIX = "mvt-"
ISOLATION = ("open", "isolated", "rules")
PROTOS = ("tcp", "udp")
# subnets other tools take by default: a declared network overlapping one is refused
USUAL_DEFAULTS: Mapping[str, str] = {
    "172.17.0.0/16": "Docker's default bridge (docker0)",
    "10.88.0.0/16": "Podman's default network (podman)",
    "192.168.122.0/24": "libvirt's default network (virbr0)",
}
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")
_VM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def _hash(*parts: str) -> bytes:
    """The one hash every derived value comes from: SHA-256 of the parts joined by newlines
    (no name holds one; Nix's builtins.hashString can compute the same, where a NUL could not
    be in a Nix string)."""
    return hashlib.sha256("\n".join(parts).encode()).digest()


def _b32(data: bytes, n: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    num = int.from_bytes(data, "big")
    return "".join(alphabet[(num >> (5 * i)) & 31] for i in range(n))


def bridge_name(network: str) -> str:
    """`mvb-NAME`, or `mvb-` and a hash where that is over 15 bytes."""
    name = BRIDGE_PREFIX + network
    return name if len(name) < IFNAMSIZ else BRIDGE_PREFIX + _b32(_hash("bridge", network), 11)


def tap_name(network: str, vm: str) -> str:
    """`mvt-` and 11 characters of a hash of network and VM (15 bytes). Not of the host: the
    VM's runner derives it too (a bridge is the host's own, so unique per host is enough)."""
    return TAP_PREFIX + _b32(_hash("tap", network, vm), 11)


def mac_address(network: str, vm: str) -> str:
    """A locally administered unicast MAC: 02 and five bytes of a hash of network and VM (as
    tap_name, derived by the VM's runner and the host alike)."""
    return ":".join(f"{b:02x}" for b in (0x02, *_hash("mac", network, vm)[:5]))


def ula_prefix(host: str, network: str) -> ipaddress.IPv6Network:
    """A unique local /64 (RFC 4193): fd, 40 bits of a hash of host and network, subnet 0."""
    global_id = _hash("ula", host, network)[:5]
    return ipaddress.IPv6Network((b"\xfd" + global_id + b"\0\0" + bytes(8), 64))


def ipv6_address(prefix: ipaddress.IPv6Network, host: str, network: str,
                 vm: str) -> ipaddress.IPv6Address:
    """The prefix and 64 bits of a hash (never ::0 or ::1, the gateway's)."""
    iid = int.from_bytes(_hash("ipv6", host, network, vm)[:8], "big") | 2
    return prefix[iid]


@dataclass(frozen=True)
class Allow:
    src: str
    dst: str
    tcp: tuple[int, ...] = ()
    udp: tuple[int, ...] = ()


@dataclass(frozen=True)
class Forward:
    vm: str
    host_port: int
    port: int
    proto: str = "tcp"


@dataclass(frozen=True)
class Network:
    name: str
    bridge: str
    ipv4: ipaddress.IPv4Network | None
    ipv6: ipaddress.IPv6Network | None
    uplinks: tuple[str, ...] = ()
    domain: str | None = None
    isolation: str = "open"
    allow: tuple[Allow, ...] = ()
    forwards: tuple[Forward, ...] = ()

    @property
    def gateway4(self) -> ipaddress.IPv4Address | None:
        """The host's address on the bridge: the network's first address."""
        return None if self.ipv4 is None else self.ipv4[1]

    @property
    def gateway6(self) -> ipaddress.IPv6Address | None:
        return None if self.ipv6 is None else self.ipv6[1]


@dataclass(frozen=True)
class Member:
    """One VM on one network, with everything derived (or pinned)."""

    vm: str
    network: str
    tap: str
    mac: str
    ipv4: ipaddress.IPv4Address | None
    ipv6: ipaddress.IPv6Address | None


@dataclass(frozen=True)
class Plan:
    host: str
    networks: tuple[Network, ...]
    members: tuple[Member, ...]
    host_addresses: tuple[str, ...] = field(default_factory=tuple)

    def network(self, name: str) -> Network:
        return next(n for n in self.networks if n.name == name)

    def members_of(self, network: str) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.network == network)

    def member(self, vm: str, network: str) -> Member:
        return next(m for m in self.members if m.vm == vm and m.network == network)


# the IPv4 addresses given out before, by (VM, network): `microvm network up` records them
Given = Mapping[tuple[str, str], str]


def derive(decl: Mapping[str, Any], given: Given | None = None) -> Plan:
    """The plan of a declaration, or ValidationError with every problem of it. `given`: the
    IPv4 addresses a host gave out before; each VM keeps its own where it is still valid and
    no pin claims it, so a VM added later never moves one that was there first."""
    return _Deriver(decl, given or {}).run()


class _Deriver:
    def __init__(self, decl: Mapping[str, Any], given: Given) -> None:
        self.decl = decl
        self.given = given
        self.problems: list[Problem] = []

    def bad(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def run(self) -> Plan:
        decl = self.decl
        if not isinstance(decl, Mapping):
            raise ValidationError([Problem("", "a network declaration is a JSON object")])
        unknown = set(decl) - {"hostName", "hostAddresses", "networks", "vms"}
        for key in sorted(unknown):
            self.bad(key, "unknown key (known: hostName, hostAddresses, networks, vms)")
        host = decl.get("hostName")
        if not isinstance(host, str) or not host or any(ord(c) < 32 for c in host):
            self.bad("hostName", "must be the host's name (a non-empty string without control " +
                     f"characters), got {host!r}")
            host = ""
        host_addresses = self._host_addresses(decl.get("hostAddresses", []))
        nets = decl.get("networks", {})
        if not isinstance(nets, Mapping):
            self.bad("networks", "must be an object of networks by name")
            nets = {}
        networks = [n for name, body in sorted(nets.items())
                    if (n := self._network(host, name, body)) is not None]
        self._overlaps(networks, host_addresses)
        members = self._members(host, {n.name: n for n in networks}, decl.get("vms", {}))
        if self.problems:
            raise ValidationError(self.problems)
        return Plan(host, tuple(networks), tuple(members), tuple(map(str, host_addresses)))

    # -- networks ------------------------------------------------------------------------
    def _host_addresses(self, value: object) -> list[ipaddress.IPv4Interface
                                                      | ipaddress.IPv6Interface]:
        out: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = []
        if not isinstance(value, list):
            self.bad("hostAddresses", "must be a list of ADDRESS/PREFIX")
            return out
        for i, item in enumerate(value):
            try:
                out.append(ipaddress.ip_interface(item))
            except (ValueError, TypeError):
                self.bad(f"hostAddresses[{i}]", f"must be ADDRESS/PREFIX, got {item!r}")
        return out

    def _network(self, host: str, name: str, body: object) -> Network | None:
        path = f"networks.{name}"
        if not _NAME.fullmatch(name):
            self.bad(path, "a network name is 1-31 lowercase letters, digits and '-', " +
                     f"starting with a letter or digit, got {name!r}")
            return None
        if not isinstance(body, Mapping):
            self.bad(path, "must be an object")
            return None
        known = {"ipv4", "ipv6", "uplinks", "domain", "isolation", "allow", "forwardPorts"}
        for key in sorted(set(body) - known):
            self.bad(f"{path}.{key}", f"unknown option (known: {', '.join(sorted(known))})")
        ipv4 = self._ipv4(f"{path}.ipv4", body.get("ipv4"))
        ipv6 = self._ipv6(f"{path}.ipv6", body.get("ipv6"), host, name)
        if ipv4 is None and ipv6 is None:
            self.bad(path, "needs ipv4, ipv6 or both")
        bridge = bridge_name(name)
        uplinks = body.get("uplinks", [])
        if not isinstance(uplinks, list):
            self.bad(f"{path}.uplinks", "must be a list of host interface names")
            uplinks = []
        for i, uplink in enumerate(uplinks):
            self._ifname(f"{path}.uplinks[{i}]", uplink)
        domain = body.get("domain")
        if domain is not None and (not isinstance(domain, str) or not all(
                _LABEL.fullmatch(label) for label in domain.split("."))):
            self.bad(f"{path}.domain", "must be a DNS domain of lowercase labels " +
                     f"(e.g. vm.internal), got {domain!r}")
            domain = None
        isolation = body.get("isolation", "open")
        if isolation not in ISOLATION:
            self.bad(f"{path}.isolation", f"must be one of {', '.join(ISOLATION)}, " +
                     f"got {isolation!r}")
            isolation = "open"
        allow = self._allow(path, body.get("allow", []), isolation)
        forwards = self._forwards(path, body.get("forwardPorts", []))
        return Network(name, bridge, ipv4, ipv6, tuple(uplinks), domain, isolation, allow,
                       forwards)

    def _ipv4(self, path: str, value: object) -> ipaddress.IPv4Network | None:
        if value is None:
            return None
        try:
            net = ipaddress.IPv4Network(value)
        except (ValueError, TypeError):
            self.bad(path, f"must be an IPv4 network ADDRESS/PREFIX, got {value!r}")
            return None
        if net.prefixlen > 29:
            self.bad(path, f"must be a /29 or larger (room for the gateway and VMs), got {net}")
            return None
        if not net.is_private:
            self.bad(path, f"must be a private network (RFC 1918 or similar), got {net}")
        return net

    def _ipv6(self, path: str, value: object, host: str,
              name: str) -> ipaddress.IPv6Network | None:
        if value is None:
            return None
        if value == "auto":
            return ula_prefix(host, name)
        try:
            net = ipaddress.IPv6Network(value)
        except (ValueError, TypeError):
            self.bad(path, f"must be \"auto\" or an IPv6 /64, got {value!r}")
            return None
        if net.prefixlen != 64:
            self.bad(path, f"must be a /64 (SLAAC needs one), got {net}")
            return None
        return net

    def _ifname(self, path: str, value: object) -> None:
        if not isinstance(value, str) or not value or "/" in value or any(
                c.isspace() or c == ":" for c in value):
            self.bad(path, f"must be an interface name, got {value!r}")
        elif len(value.encode()) >= IFNAMSIZ:
            self.bad(path, f"interface names are at most {IFNAMSIZ - 1} bytes, got {value!r}")

    def _ports(self, path: str, value: object) -> tuple[int, ...]:
        if not isinstance(value, list) or not all(
                isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535
                for p in value):
            self.bad(path, f"must be a list of ports 1-65535, got {value!r}")
            return ()
        return tuple(value)

    def _allow(self, path: str, value: object, isolation: str) -> tuple[Allow, ...]:
        if not isinstance(value, list):
            self.bad(f"{path}.allow", "must be a list")
            return ()
        if value and isolation != "rules":
            self.bad(f"{path}.allow", "applies with isolation = \"rules\" only (\"open\" " +
                     f"allows everything, \"isolated\" nothing), got isolation = {isolation!r}")
        out = []
        for i, rule in enumerate(value):
            at = f"{path}.allow[{i}]"
            if not isinstance(rule, Mapping) or set(rule) - {"from", "to", "tcp", "udp"} or \
                    not isinstance(rule.get("from"), str) or not isinstance(rule.get("to"), str):
                self.bad(at, "must be {from = VM; to = VM; tcp = [PORT...]; udp = [PORT...]}")
                continue
            out.append(Allow(rule["from"], rule["to"],
                             self._ports(f"{at}.tcp", rule.get("tcp", [])),
                             self._ports(f"{at}.udp", rule.get("udp", []))))
        return tuple(out)

    def _forwards(self, path: str, value: object) -> tuple[Forward, ...]:
        if not isinstance(value, list):
            self.bad(f"{path}.forwardPorts", "must be a list")
            return ()
        out = []
        for i, fwd in enumerate(value):
            at = f"{path}.forwardPorts[{i}]"
            if not isinstance(fwd, Mapping) or set(fwd) - {"vm", "hostPort", "port", "proto"} \
                    or not isinstance(fwd.get("vm"), str):
                self.bad(at, "must be {vm = NAME; hostPort = PORT; port = PORT; proto = tcp|udp}")
                continue
            ports = self._ports(at, [fwd.get("hostPort"), fwd.get("port")])
            proto = fwd.get("proto", "tcp")
            if proto not in PROTOS:
                self.bad(f"{at}.proto", f"must be tcp or udp, got {proto!r}")
            if len(ports) == 2 and proto in PROTOS:
                out.append(Forward(fwd["vm"], ports[0], ports[1], proto))
        return tuple(out)

    def _overlaps(self, networks: Sequence[Network],
                  host_addresses: Sequence[ipaddress.IPv4Interface
                                           | ipaddress.IPv6Interface]) -> None:
        seen: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
        for n in networks:
            for family, net in (("ipv4", n.ipv4), ("ipv6", n.ipv6)):
                if net is None:
                    continue
                path = f"networks.{n.name}.{family}"
                for other_path, other in seen:
                    if net.version == other.version and net.overlaps(other):
                        self.bad(path, f"{net} overlaps {other} of {other_path}")
                for i, addr in enumerate(host_addresses):
                    if addr.version == net.version and addr.network.overlaps(net):
                        self.bad(path, f"{net} overlaps the host's address {addr} " +
                                 f"(hostAddresses[{i}])")
                if net.version == 4:
                    for default, what in USUAL_DEFAULTS.items():
                        if net.overlaps(ipaddress.IPv4Network(default)):
                            self.bad(path, f"{net} overlaps {default}, {what}")
                seen.append((path, net))
        bridges: dict[str, str] = {}
        for n in networks:
            if n.bridge in bridges:
                self.bad(f"networks.{n.name}", f"its bridge {n.bridge!r} is also the bridge " +
                         f"of networks.{bridges[n.bridge]}: rename one network")
            bridges[n.bridge] = n.name

    # -- members -------------------------------------------------------------------------
    def _members(self, host: str, networks: Mapping[str, Network],
                 vms: object) -> list[Member]:
        if not isinstance(vms, Mapping):
            self.bad("vms", "must be an object of VMs by name, each a list of networks")
            return []
        wanted: list[tuple[str, str, Mapping[str, Any], str]] = []
        for vm, joins in sorted(vms.items()):
            if not _VM.fullmatch(vm):
                self.bad(f"vms.{vm}", f"invalid VM name {vm!r}")
                continue
            if not isinstance(joins, list):
                self.bad(f"vms.{vm}", "must be a list of {network = NAME; ...}")
                continue
            on: set[str] = set()
            for i, join in enumerate(joins):
                at = f"vms.{vm}[{i}]"
                if not isinstance(join, Mapping) or \
                        set(join) - {"network", "mac", "ipv4", "ipv6"}:
                    self.bad(at, "must be {network = NAME; mac, ipv4, ipv6 (pins, optional)}")
                    continue
                net = join.get("network")
                if not isinstance(net, str) or net not in networks:
                    self.bad(f"{at}.network", f"no declared network {net!r} (declared: " +
                             f"{', '.join(sorted(networks)) or 'none'})")
                    continue
                if net in on:
                    self.bad(f"{at}.network", f"{vm} joins {net} twice")
                    continue
                on.add(net)
                wanted.append((vm, net, join, at))
        members: list[Member] = []
        for name, network in networks.items():
            mine = [(vm, join, at) for vm, net, join, at in wanted if net == name]
            members += self._assign(host, network, mine)
        self._unique_macs(members, {(vm, net): at for vm, net, _, at in wanted})
        self._check_references(networks, {(m.vm, m.network) for m in members})
        return sorted(members, key=lambda m: (m.network, m.vm))

    def _assign(self, host: str, net: Network,
                mine: Sequence[tuple[str, Mapping[str, Any], str]]) -> list[Member]:
        taken4: dict[ipaddress.IPv4Address, str] = {}
        taken6: dict[ipaddress.IPv6Address, str] = {}
        reserved4 = ({} if net.ipv4 is None else {
            net.ipv4.network_address: "the network address",
            net.ipv4.broadcast_address: "the broadcast address",
            net.ipv4[1]: "the gateway (the host's address on the bridge)"})
        pinned4: dict[str, ipaddress.IPv4Address] = {}
        pinned6: dict[str, ipaddress.IPv6Address] = {}
        for vm, join, at in mine:
            if (value := join.get("ipv4")) is not None:
                addr = self._pin4(f"{at}.ipv4", value, net, reserved4)
                if addr is not None:
                    if addr in taken4:
                        self.bad(f"{at}.ipv4", f"{addr} is also pinned by {taken4[addr]}")
                    else:
                        taken4[addr], pinned4[vm] = at, addr
            if (value := join.get("ipv6")) is not None:
                addr6 = self._pin6(f"{at}.ipv6", value, net)
                if addr6 is not None:
                    if addr6 in taken6:
                        self.bad(f"{at}.ipv6", f"{addr6} is also pinned by {taken6[addr6]}")
                    else:
                        taken6[addr6], pinned6[vm] = at, addr6
        kept: dict[str, ipaddress.IPv4Address] = {}
        for vm, _join, at in mine:  # the record of addresses given out, after the pins
            before = self.given.get((vm, net.name))
            if vm in pinned4 or before is None or net.ipv4 is None:
                continue
            with contextlib.suppress(ValueError):
                addr = ipaddress.IPv4Address(before)
                if addr in net.ipv4 and addr not in reserved4 and addr not in taken4:
                    taken4[addr], kept[vm] = at, addr
        out = []
        for vm, join, at in mine:  # in name order (the caller sorted them)
            ipv4 = pinned4.get(vm) or kept.get(vm)
            if ipv4 is None and net.ipv4 is not None:
                ipv4 = self._slot(host, net, vm, taken4, reserved4, at)
                if ipv4 is not None:
                    taken4[ipv4] = at
            ipv6 = pinned6.get(vm)
            if ipv6 is None and net.ipv6 is not None:
                ipv6 = ipv6_address(net.ipv6, host, net.name, vm)
                if ipv6 in taken6:  # 2^-64: said, not probed
                    self.bad(f"{at}.ipv6", f"the derived {ipv6} is taken by {taken6[ipv6]}: " +
                             "pin one of them")
                taken6[ipv6] = at
            mac = join.get("mac")
            if mac is not None and (not isinstance(mac, str) or not _MAC.fullmatch(mac.lower())
                                    or int(mac[:2], 16) & 1):
                self.bad(f"{at}.mac", f"must be a unicast MAC like 02:00:00:00:00:01, got {mac!r}")
                mac = None
            out.append(Member(vm, net.name, tap_name(net.name, vm),
                              mac.lower() if mac else mac_address(net.name, vm), ipv4, ipv6))
        return out

    def _pin4(self, path: str, value: object, net: Network,
              reserved: Mapping[ipaddress.IPv4Address, str]) -> ipaddress.IPv4Address | None:
        if net.ipv4 is None:
            self.bad(path, f"networks.{net.name} has no ipv4")
            return None
        try:
            addr = ipaddress.IPv4Address(value)
        except (ValueError, TypeError):
            self.bad(path, f"must be an IPv4 address, got {value!r}")
            return None
        if addr not in net.ipv4:
            self.bad(path, f"{addr} is outside networks.{net.name}.ipv4 ({net.ipv4})")
            return None
        if addr in reserved:
            self.bad(path, f"{addr} is {reserved[addr]} of networks.{net.name}")
            return None
        return addr

    def _pin6(self, path: str, value: object, net: Network) -> ipaddress.IPv6Address | None:
        if net.ipv6 is None:
            self.bad(path, f"networks.{net.name} has no ipv6")
            return None
        try:
            addr = ipaddress.IPv6Address(value)
        except (ValueError, TypeError):
            self.bad(path, f"must be an IPv6 address, got {value!r}")
            return None
        if addr not in net.ipv6 or addr in (net.ipv6[0], net.ipv6[1]):
            self.bad(path, f"{addr} is outside networks.{net.name}.ipv6 ({net.ipv6}) or its " +
                     "gateway's")
            return None
        return addr

    def _slot(self, host: str, net: Network, vm: str,
              taken: Mapping[ipaddress.IPv4Address, str],
              reserved: Mapping[ipaddress.IPv4Address, str],
              at: str) -> ipaddress.IPv4Address | None:
        assert net.ipv4 is not None
        size = net.ipv4.num_addresses
        start = int.from_bytes(_hash("ipv4", host, net.name, vm)[:8], "big") % size
        for step in range(size):
            addr = net.ipv4[(start + step) % size]
            if addr not in taken and addr not in reserved:
                return addr
        self.bad(at, f"networks.{net.name}.ipv4 ({net.ipv4}) is full: " +
                 f"{size - len(reserved)} addresses, all given out; use a larger network")
        return None

    def _unique_macs(self, members: Sequence[Member], where: Mapping[tuple[str, str], str]) -> None:
        seen: dict[str, str] = {}
        for m in members:
            at = where[(m.vm, m.network)]
            if m.mac in seen:
                self.bad(f"{at}.mac", f"{m.mac} is also the MAC of {seen[m.mac]}")
            seen[m.mac] = at

    def _check_references(self, networks: Mapping[str, Network],
                          joined: set[tuple[str, str]]) -> None:
        for n in networks.values():
            ports: dict[tuple[int, str], str] = {}
            for i, fwd in enumerate(n.forwards):
                at = f"networks.{n.name}.forwardPorts[{i}]"
                if (fwd.vm, n.name) not in joined:
                    self.bad(f"{at}.vm", f"{fwd.vm!r} does not join networks.{n.name}")
                key = (fwd.host_port, fwd.proto)
                if key in ports:
                    self.bad(f"{at}.hostPort", f"{fwd.proto} port {fwd.host_port} is also " +
                             f"forwarded by {ports[key]}")
                ports[key] = at
            for i, rule in enumerate(n.allow):
                for side, vm in (("from", rule.src), ("to", rule.dst)):
                    if (vm, n.name) not in joined:
                        self.bad(f"networks.{n.name}.allow[{i}].{side}",
                                 f"{vm!r} does not join networks.{n.name}")
        all_ports: dict[tuple[int, str], str] = {}
        for n in networks.values():
            for i, fwd in enumerate(n.forwards):
                key = (fwd.host_port, fwd.proto)
                at = f"networks.{n.name}.forwardPorts[{i}]"
                if key in all_ports and not all_ports[key].startswith(f"networks.{n.name}."):
                    self.bad(f"{at}.hostPort", f"{fwd.proto} port {fwd.host_port} is also " +
                             f"forwarded by {all_ports[key]}")
                all_ports.setdefault(key, at)


@dataclass(frozen=True)
class Join:
    """A VM's network interface as the VM has it (config.MicroVM.network_joins): its index in
    microvm.interfaces, the network, its tap name and MAC, and its pinned addresses."""

    index: int
    network: str
    tap: str
    mac: str
    ipv4: str | None = None
    ipv6: str | None = None


def vm_problems(plan: Plan, host_name: str, joins: Sequence[Join],
                where: str = "") -> list[Problem]:
    """A VM's network interfaces against the host's declaration: the network is declared, the
    VM (by host name) is one of its members, and its tap name, MAC and pinned addresses are
    the ones the host's side uses for it."""
    out: list[Problem] = []
    for join in joins:
        network, tap, mac = join.network, join.tap, join.mac
        path = f"{where}microvm.interfaces[{join.index}]"
        if network not in {n.name for n in plan.networks}:
            out.append(Problem(f"{path}.network", f"no network {network!r} is declared " +
                               f"(declared: {', '.join(n.name for n in plan.networks) or 'none'})"))
            continue
        member = next((m for m in plan.members if m.vm == host_name and m.network == network),
                      None)
        if member is None:
            out.append(Problem(f"{path}.network", f"{host_name} joins {network}, but the " +
                               f"declaration lists no vms.{host_name} on it: it would get no " +
                               "lease, name or forward"))
            continue
        if mac.lower() != member.mac:
            out.append(Problem(f"{path}.mac", f"{mac} is not the MAC the declaration has for " +
                               f"{host_name} on {network} ({member.mac}): pin the same in both"))
        if tap != member.tap:
            out.append(Problem(f"{path}.id", f"{tap!r} is not the tap the host joins for " +
                               f"{host_name} on {network} ({member.tap!r})"))
        for family, pin, got in (("ipv4", join.ipv4, member.ipv4),
                                 ("ipv6", join.ipv6, member.ipv6)):
            if pin is not None and got is not None and ipaddress.ip_address(pin) != got:
                out.append(Problem(f"{path}.{family}", f"{pin} is not the address the " +
                                   f"declaration has for {host_name} on {network} ({got}): " +
                                   "pin the same in both"))
    return out
