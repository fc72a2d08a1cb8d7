"""Declared networks, the host side (issue 23): what `microvm network up` makes of a Plan
(netplan.derive) and what `down` removes again.

Per network: a bridge with the gateway addresses (iproute2), its sysctls, one dnsmasq bound to
it (DHCP with a fixed lease per VM, DNS names, IPv6 router advertisements and DHCPv6); for the
whole plan one nftables table of the project's own in two families, replaced atomically in one
`nft -f` (`table X {}; delete table X; table X {...}`):

    table inet microvm     NAT (masquerade out of the uplinks, port forwards in prerouting for
                           outside clients and in output for the host itself), and the routed
                           traffic of the networks: out to their uplinks, replies and forwards
                           in, nothing between two networks or to the host's other interfaces
    table bridge microvm   per member tap: anti-spoofing (its MAC, IPv4, IPv6 only; no rogue
                           DHCP server or router advertisement; IPv4, IPv6 and ARP only), and
                           isolation inside a network ("isolated": no frame between two
                           members; "rules": the allow-list, replies allowed statelessly)

Bridged traffic between two taps never reaches the inet forward hook unless br_netfilter is
loaded (then it does, as bridge -> same bridge, which the inet table accepts): isolation is the
bridge table's job either way. The bridge family's conntrack (nf_conntrack_bridge) is not
assumed, so the allow-list's replies are matched by port, with TCP SYNs refused.

Everything `up` writes lives in the run directory (default /run/microvm/net): `NET.conf`,
`NET.pid`, `NET.leases` per network, `microvm.nft` (the table last loaded) and `state.json`
(the bridges made and each host sysctl changed with its value before, restored by `down`).
Both are idempotent: `up` twice changes nothing the second time; `down` leaves no bridge, table,
dnsmasq or file behind, and `up` with a changed plan removes the networks the plan dropped.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import process
from ..errors import HostError, Problem, ValidationError
from ..netplan import BRIDGE_PREFIX, Member, Network, Plan
from . import defaults
from .state import CONTROL, write_json

RUN_DIR = "/run/microvm/net"
TABLE = defaults.NFT_TABLE
# the families of the project's tables (tables() gives a body for each)
FAMILIES = ("inet", "bridge")
RESOLV_CONF = Path("/etc/resolv.conf")
LEASE_TIME = "1h"
# what nft and dnsmasq can carry without quoting: interface names the plan names
_IFNAME = re.compile(r"[A-Za-z0-9_.+@-]{1,15}")
_SYS = Path("/proc/sys/net")


# -- names ---------------------------------------------------------------------------------

def dns_label(vm: str) -> str:
    """The VM's host name in DNS and DHCP: its name in lower case, every character other than
    a letter, digit or '-' replaced by '-' (VM names may hold '_' and '.')."""
    return re.sub(r"[^a-z0-9-]", "-", vm.lower()).strip("-")[:63] or "vm"


def fqdn(network: Network, member: Member) -> str:
    label = dns_label(member.vm)
    return f"{label}.{network.domain}" if network.domain else label


def problems(plan: Plan) -> list[Problem]:
    """What the host side cannot carry beyond what netplan refuses: interface names outside
    the characters nftables and dnsmasq take unquoted, and two VMs of one network with the
    same DNS name."""
    out: list[Problem] = []
    for net in plan.networks:
        path = f"networks.{net.name}"
        if not _IFNAME.fullmatch(net.bridge):
            out.append(Problem(f"{path}.bridge", f"{net.bridge!r}: use letters, digits and " +
                               "_.+@- only"))
        for i, uplink in enumerate(net.uplinks):
            if not _IFNAME.fullmatch(uplink):
                out.append(Problem(f"{path}.uplinks[{i}]", f"{uplink!r}: use letters, " +
                                   "digits and _.+@- only"))
        names: dict[str, str] = {}
        for m in plan.members_of(net.name):
            label = dns_label(m.vm)
            if label in names:
                out.append(Problem(f"vms.{m.vm}", f"its DNS name {label!r} on {path} is also " +
                                   f"that of vms.{names[label]}"))
            names[label] = m.vm
    return out


def check(plan: Plan) -> None:
    if found := problems(plan):
        raise ValidationError(found)


def rows(plan: Plan) -> list[dict[str, str | None]]:
    """The derived table: one row per VM and network (`microvm network show`)."""
    return [{"network": m.network, "vm": m.vm, "tap": m.tap, "mac": m.mac,
             "ipv4": None if m.ipv4 is None else str(m.ipv4),
             "ipv6": None if m.ipv6 is None else str(m.ipv6),
             "name": fqdn(plan.network(m.network), m)} for m in plan.members]


@dataclass(frozen=True)
class Paths:
    """The files of a run directory."""

    run_dir: Path

    def conf(self, network: str) -> Path:
        return self.run_dir / f"{network}.conf"

    def pid(self, network: str) -> Path:
        return self.run_dir / f"{network}.pid"

    def leases(self, network: str) -> Path:
        return self.run_dir / f"{network}.leases"

    @property
    def nft(self) -> Path:
        return self.run_dir / "microvm.nft"

    @property
    def state(self) -> Path:
        return self.run_dir / "state.json"

    def files(self, network: str) -> tuple[Path, ...]:
        return self.conf(network), self.pid(network), self.leases(network)


# -- nftables ------------------------------------------------------------------------------

def _q(name: str) -> str:
    return f'"{name}"'


def _set(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _chain(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _ports(ports: Sequence[int]) -> str:
    return _set([str(p) for p in sorted(set(ports))])


def tables(plan: Plan) -> dict[str, str]:
    """The body of each of the project's tables, by family: what goes between
    `table FAMILY microvm {` and `}` (what a firewall that declares tables itself is given:
    NixOS's networking.nftables.tables, the host module)."""
    check(plan)
    bodies = {"inet": _inet(plan), "bridge": _bridge(plan)}
    return {family: "\n".join(bodies[family]) + "\n" for family in FAMILIES}


def render_nft(plan: Plan) -> str:
    """The project's nftables tables for the whole plan, as one atomic `nft -f` input."""
    out = _prologue()
    for family, body in tables(plan).items():
        out += [f"table {family} {TABLE} {{", body + "}", ""]
    return "\n".join(out)


def _prologue() -> list[str]:
    return ["#!/usr/sbin/nft -f",
            "# microvm network up: the declared networks' table; replaced as a whole",
            *(line for family in FAMILIES
              for line in (f"table {family} {TABLE} {{}}", f"delete table {family} {TABLE}")),
            ""]


def _inet(plan: Plan) -> list[str]:
    nets = plan.networks
    bridges = [_q(n.bridge) for n in nets]
    # port forwards: to any of the host's addresses, from outside and from the host itself
    out = ["\tchain forward_ports {"]
    for net in nets:
        for fwd in net.forwards:
            m = plan.member(fwd.vm, net.name)
            if m.ipv4 is not None:
                out.append(f"\t\tmeta nfproto ipv4 {fwd.proto} dport {fwd.host_port} " +
                           f"dnat ip to {m.ipv4}:{fwd.port}")
            if m.ipv6 is not None:
                out.append(f"\t\tmeta nfproto ipv6 {fwd.proto} dport {fwd.host_port} " +
                           f"dnat ip6 to [{m.ipv6}]:{fwd.port}")
    out += ["\t}",
            "\tchain prerouting {",
            "\t\ttype nat hook prerouting priority dstnat; policy accept;",
            *_dnsmasq_exempt(plan),
            "\t\tfib daddr type local jump forward_ports",
            "\t}",
            "\tchain output {",
            "\t\ttype nat hook output priority -100; policy accept;",
            "\t\tfib daddr type local jump forward_ports",
            "\t}",
            "\tchain postrouting {",
            "\t\ttype nat hook postrouting priority srcnat; policy accept;"]
    for net in nets:
        br = _q(net.bridge)
        if net.uplinks:
            up = _set([_q(u) for u in net.uplinks])
            if net.ipv4 is not None:
                out.append(f"\t\toifname {up} ip saddr {net.ipv4} masquerade")
            if net.ipv6 is not None:
                out.append(f"\t\toifname {up} ip6 saddr {net.ipv6} masquerade")
        # a forward reached from the network itself (hairpin) or from the host's 127.0.0.1
        if net.forwards and net.ipv4 is not None:
            out.append(f"\t\toifname {br} ct status dnat ip saddr " +
                       f"{{ {net.ipv4}, 127.0.0.0/8 }} masquerade")
        if net.forwards and net.ipv6 is not None:
            out.append(f"\t\toifname {br} ct status dnat ip6 saddr {net.ipv6} masquerade")
    out += ["\t}",
            "\tchain forward {",
            "\t\ttype filter hook forward priority filter; policy accept;"]
    if nets:
        out += ["\t\tct state established,related accept",
                f"\t\tct status dnat oifname {_set(bridges)} accept",
                "\t\tiifname vmap { " + ", ".join(
                    f"{_q(n.bridge)} : jump from_{_chain(n.name)}" for n in nets) + " }",
                "\t\toifname " + _set(bridges) + " drop"]
    out.append("\t}")
    for net in nets:
        br = _q(net.bridge)
        out += [f"\tchain from_{_chain(net.name)} {{",
                # bridged (br_netfilter) or hairpin: the bridge table decides
                f"\t\toifname {br} accept"]
        if net.uplinks:
            out.append(f"\t\toifname {_set([_q(u) for u in net.uplinks])} accept")
        out += ["\t\tdrop", "\t}"]
    return out


# what dnsmasq serves on a gateway: DNS; DHCP and DHCPv6 (their server ports)
DNSMASQ_PORTS = {"tcp": (53,), "udp": (53, 67, 547)}


def _dnsmasq_exempt(plan: Plan) -> list[str]:
    """A forward of a port dnsmasq serves on the gateways (53: DNS) would take the VMs' own
    queries to their gateway: those are not forwarded."""
    used = {(f.proto, f.host_port) for n in plan.networks for f in n.forwards}
    rules = []
    for proto, ports in DNSMASQ_PORTS.items():
        hit = sorted(p for p in ports if (proto, p) in used)
        if not hit:
            continue
        for net in plan.networks:
            br = _q(net.bridge)
            if net.gateway4 is not None:
                rules.append(f"\t\tiifname {br} ip daddr {net.gateway4} {proto} dport " +
                             f"{_ports(hit)} return")
            if net.gateway6 is not None:
                rules.append(f"\t\tiifname {br} ip6 daddr {{ {net.gateway6}, fe80::/10 }} " +
                             f"{proto} dport {_ports(hit)} return")
    return rules


def _bridge(plan: Plan) -> list[str]:
    members = plan.members
    chains: list[str] = []
    spoof: list[str] = []
    for m in members:
        name = f"tap_{_chain(m.tap)}"
        spoof.append(f"{_q(m.tap)} : jump {name}")
        chains += [f"\tchain {name} {{", *(f"\t\t{r}" for r in _spoof_rules(m)), "\t}"]
    out = ["\tchain prerouting {",
           "\t\ttype filter hook prerouting priority filter; policy accept;"]
    if spoof:
        out.append("\t\tiifname vmap { " + ", ".join(spoof) + " }")
    out.append("\t}")
    isolate: list[str] = []
    for net in plan.networks:
        mine = plan.members_of(net.name)
        if net.isolation == "open" or not mine:
            continue
        name = f"{net.isolation}_{_chain(net.name)}"
        isolate += [f"{_q(m.tap)} : jump {name}" for m in mine]
        chains += [f"\tchain {name} {{", *(f"\t\t{r}" for r in _isolation_rules(plan, net)),
                   "\t}"]
    out += ["\tchain forward {",
            "\t\ttype filter hook forward priority filter; policy accept;"]
    if isolate:
        out.append("\t\tiifname vmap { " + ", ".join(isolate) + " }")
    out += ["\t}", *chains]
    return out


def _spoof_rules(m: Member) -> list[str]:
    """A frame from the member's tap: its MAC, its addresses (DHCP from 0.0.0.0, IPv6's
    unspecified and link-local addresses for DAD and neighbour discovery), no DHCP server or
    router advertisement of its own, IPv4, IPv6 and ARP only."""
    rules = [f"ether saddr != {m.mac} drop"]
    if m.ipv4 is not None:
        rules += [f"arp saddr ether != {m.mac} drop",
                  f"arp saddr ip != {{ 0.0.0.0, {m.ipv4} }} drop",
                  "ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept",
                  f"ip saddr != {m.ipv4} drop",
                  "udp sport 67 drop"]
    else:
        rules += ["ether type { ip, arp } drop"]
    six = "{ ::, fe80::/10" + (f", {m.ipv6} }}" if m.ipv6 is not None else " }")
    rules += [f"ip6 saddr != {six} drop",
              "icmpv6 type { nd-router-advert, nd-redirect } drop",
              "udp sport 547 drop",
              "ether type { ip, ip6, arp } accept",
              "drop"]
    return rules


def _isolation_rules(plan: Plan, net: Network) -> list[str]:
    taps = _set([_q(m.tap) for m in plan.members_of(net.name)])
    if net.isolation == "isolated":
        return [f"oifname {taps} drop"]
    rules = [f"oifname != {taps} return",
             "ether type arp accept",
             "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept"]
    for rule in net.allow:
        src, dst = _q(plan.member(rule.src, net.name).tap), _q(plan.member(rule.dst, net.name).tap)
        if rule.tcp:
            rules += [f"iifname {src} oifname {dst} tcp dport {_ports(rule.tcp)} accept",
                      f"iifname {dst} oifname {src} tcp sport {_ports(rule.tcp)} " +
                      "tcp flags & (syn | ack) != syn accept"]
        if rule.udp:
            rules += [f"iifname {src} oifname {dst} udp dport {_ports(rule.udp)} accept",
                      f"iifname {dst} oifname {src} udp sport {_ports(rule.udp)} accept"]
    return [*rules, "drop"]


# -- dnsmasq -------------------------------------------------------------------------------

def render_dnsmasq(plan: Plan, network: Network, paths: Paths,
                   resolv: Path | None = RESOLV_CONF) -> str:
    """dnsmasq's configuration for one network. `resolv`: the file with the upstream servers
    for names outside the network's domain (None: answer the network's names only)."""
    check(plan)
    net = network
    lines = [f"# microvm network up: dnsmasq of network {net.name}; written on every up",
             f"interface={net.bridge}", "bind-interfaces", "except-interface=lo",
             f"pid-file={paths.pid(net.name)}", f"dhcp-leasefile={paths.leases(net.name)}",
             "no-hosts", "domain-needed", "bogus-priv", "dhcp-authoritative"]
    lines += ["no-resolv"] if resolv is None else [f"resolv-file={resolv}"]
    if net.domain:
        lines += [f"domain={net.domain}", f"local=/{net.domain}/"]
    if net.ipv4 is not None:
        first, last = net.ipv4[2], net.ipv4[-2]
        lines.append(f"dhcp-range={first},{last},{net.ipv4.netmask},{LEASE_TIME}")
    if net.ipv6 is not None:
        # router advertisements with the managed flag: the address comes from DHCPv6 (the
        # member's fixed one; anti-spoofing drops any other), no SLAAC address
        lines += ["enable-ra", f"dhcp-range={net.ipv6[0]},static,64,{LEASE_TIME}"]
        if net.domain:
            lines.append(f"dhcp-option=option6:domain-search,{net.domain}")
    for m in plan.members_of(net.name):
        label = dns_label(m.vm)
        addrs = [*([str(m.ipv4)] if m.ipv4 is not None else []),
                 *([f"[{m.ipv6}]"] if m.ipv6 is not None else [])]
        lines.append(f"dhcp-host={m.mac},{','.join(addrs)},{label}")
        record = [fqdn(net, m), *([label] if net.domain else []),
                  *(str(a) for a in (m.ipv4, m.ipv6) if a is not None)]
        lines.append(f"host-record={','.join(record)}")
    return "\n".join(lines) + "\n"


# -- bring-up and tear-down ----------------------------------------------------------------

def _ip(*argv: str, check: bool = True) -> process.Result:
    return process.run(["ip", *argv], check=check)


def _exists(ifname: str) -> bool:
    return Path("/sys/class/net", ifname).exists()


def _is_bridge(ifname: str) -> bool:
    return Path("/sys/class/net", ifname, "bridge").is_dir()


def _master(ifname: str) -> str | None:
    link = Path("/sys/class/net", ifname, "master")
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def bridge_mac(host: str, network: str) -> str:
    """A fixed MAC for the bridge (else it takes the lowest of its ports' and changes as taps
    come and go, which leaves stale ARP entries in the guests)."""
    digest = hashlib.sha256("\0".join(("bridge-mac", host, network)).encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """One `up` or `down` at a time per run directory."""
    run_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read_state(paths: Paths) -> dict[str, Any]:
    try:
        data = json.loads(paths.state.read_text("utf-8"))
    except FileNotFoundError:
        return {"networks": {}, "sysctls": {}}
    except (OSError, ValueError) as e:
        raise HostError(f"{paths.state}: unreadable ({e}); remove it after checking " +
                        "the bridges it names") from None
    if not isinstance(data, dict):
        raise HostError(f"{paths.state}: not a state record")
    data.setdefault("networks", {})
    data.setdefault("sysctls", {})
    return data


def _write_state(paths: Paths, state: dict[str, Any]) -> None:
    """Record the state (unless it is recorded already: `up` again writes nothing)."""
    from .state import write_json

    with contextlib.suppress(OSError, ValueError):
        if json.loads(paths.state.read_text("utf-8")) == state:
            return
    write_json(paths.state, state)


def _sysctl_path(key: str) -> Path:
    return _SYS / key


def _set_sysctl(state: dict[str, Any], key: str, value: str, *, record: bool) -> None:
    """Set net/KEY; with `record`, remember the value before (once) for `down` to restore."""
    path = _sysctl_path(key)
    try:
        old = path.read_text().strip()
    except OSError as e:
        raise HostError(f"{path}: {e.strerror}") from None
    if old == value:
        return
    if record:
        state["sysctls"].setdefault(key, [old, value])
    try:
        path.write_text(value + "\n")
    except OSError as e:
        raise HostError(f"cannot set {path} to {value}: {e.strerror}") from None


def _restore_sysctls(state: dict[str, Any]) -> None:
    """Put back each host sysctl `up` changed, unless someone changed it since."""
    for key, (old, ours) in sorted(state["sysctls"].items()):
        path = _sysctl_path(key)
        with contextlib.suppress(OSError):
            if path.read_text().strip() == ours:
                path.write_text(old + "\n")
    state["sysctls"] = {}


ADDRESSES = "network-addresses.json"  # in <state>/.control: root's, kept across reboots


def _record(state_dir: Path) -> dict[str, dict[str, dict[str, str]]]:
    """network -> VM -> {"ipv4": ..., "name": ...}: what `up` gave out, as it recorded it."""
    try:
        data = json.loads((state_dir / CONTROL / ADDRESSES).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {net: {vm: {k: v for k, v in entry.items() if isinstance(v, str)}
                  for vm, entry in vms.items() if isinstance(entry, dict)}
            for net, vms in data.items() if isinstance(vms, dict)}


def read_addresses(state_dir: Path) -> dict[tuple[str, str], str]:
    """The IPv4 address each (VM, network) was given by an earlier `up` (netplan.derive's
    `given`); none when there is no readable record."""
    return {(vm, net): entry["ipv4"] for net, vms in _record(state_dir).items()
            for vm, entry in vms.items() if "ipv4" in entry}


def moved(plan: Plan, given: Mapping[tuple[str, str], str]) -> list[str]:
    """A line for each VM whose IPv4 address differs from the one an earlier `up` gave it: a
    pin (the NixOS host's pins are the addresses its guests are configured with, derived
    without this record) or a changed network moved it. Said before the change, with how to
    keep the old address."""
    return [f"{m.vm} on {m.network}: its address moves from {given[(m.vm, m.network)]} to " +
            f"{m.ipv4}; pin ipv4 = \"{given[(m.vm, m.network)]}\" on its interface to keep it"
            for m in plan.members
            if m.ipv4 is not None and given.get((m.vm, m.network)) not in (None, str(m.ipv4))]


def recorded_names(state_dir: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(VM, network) -> its recorded IPv4 address and DNS name, for `microvm list`."""
    return {(vm, net): entry for net, vms in _record(state_dir).items()
            for vm, entry in vms.items()}


def record_addresses(state_dir: Path, plan: Plan) -> None:
    """Keep the IPv4 address and DNS name of each member of `plan`, merged into the record: a
    VM that left keeps its address for its return as long as no other VM has taken it."""
    record = _record(state_dir)
    for m in plan.members:
        if m.ipv4 is not None:
            record.setdefault(m.network, {})[m.vm] = {
                "ipv4": str(m.ipv4), "name": fqdn(plan.network(m.network), m)}
    holders = {(m.network, str(m.ipv4)): m.vm for m in plan.members if m.ipv4 is not None}
    out = {net: {vm: entry for vm, entry in sorted(vms.items())
                 if holders.get((net, entry.get("ipv4", ""))) in (None, vm)}
           for net, vms in sorted(record.items())}
    control = state_dir / CONTROL
    control.mkdir(parents=True, exist_ok=True, mode=0o755)
    write_json(control / ADDRESSES, {net: vms for net, vms in out.items() if vms})


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise HostError(f"microvm network {what} changes the host's interfaces and firewall: " +
                        "run it as root")


def up(plan: Plan, run_dir: Path, resolv: Path | None = RESOLV_CONF) -> None:
    """Bring the plan's networks up (idempotent); remove the ones an earlier plan had."""
    check(plan)
    _need_root("up")
    paths = Paths(run_dir)
    for net in plan.networks:
        if _exists(net.bridge) and not _is_bridge(net.bridge):
            raise HostError(f"{net.bridge} exists and is not a bridge (networks.{net.name})")
    with _locked(run_dir):
        state = _read_state(paths)
        # the table first: it names taps and bridges, which need not exist, so no tap is
        # ever on a bridge without its anti-spoofing and isolation
        _load_table(plan, paths)
        wanted = {n.name: n.bridge for n in plan.networks}
        for name, bridge in sorted(state["networks"].items()):
            if wanted.get(name) != bridge:
                _remove_network(paths, name, bridge)
                del state["networks"][name]
                _write_state(paths, state)
        for net in plan.networks:
            state["networks"][net.name] = net.bridge
            _write_state(paths, state)  # before it exists: a failed up is undone by down
            _bridge_up(plan, net, state)
            _write_state(paths, state)
        for net in plan.networks:
            _dnsmasq_up(plan, net, paths, resolv)


def _ours(bridge: str, state: dict[str, Any]) -> bool:
    """Made by `up`: recorded in the run directory, or named with the derived prefix (a run
    directory lost while the bridges stayed)."""
    return bridge in state["networks"].values() or bridge.startswith(BRIDGE_PREFIX)


def _bridge_up(plan: Plan, net: Network, state: dict[str, Any]) -> None:
    br = net.bridge
    if not _exists(br):
        _ip("link", "add", br, "type", "bridge")
    mac = bridge_mac(plan.host, net.name)
    if Path("/sys/class/net", br, "address").read_text().strip() != mac:
        _ip("link", "set", "dev", br, "address", mac)
    want = {f"{a}/{n.prefixlen}" for a, n in ((net.gateway4, net.ipv4), (net.gateway6, net.ipv6))
            if a is not None and n is not None}
    have = _global_addresses(br)
    for addr in sorted(have - want):
        _ip("addr", "del", addr, "dev", br)
    for addr in sorted(want - have):
        _ip("addr", "add", addr, "dev", br,
            *(["nodad"] if ipaddress.ip_interface(addr).version == 6 else []))
    if net.ipv6 is not None:
        # the host routes on the bridge and ignores router advertisements from the VMs
        _set_sysctl(state, f"ipv6/conf/{br}/accept_ra", "0", record=False)
        _set_sysctl(state, f"ipv6/conf/{br}/forwarding", "1", record=False)
    if net.ipv4 is not None:
        _set_sysctl(state, f"ipv4/conf/{br}/forwarding", "1", record=False)
        if net.forwards:  # DNAT of the host's own 127.0.0.1 onto the bridge
            _set_sysctl(state, f"ipv4/conf/{br}/route_localnet", "1", record=False)
    for uplink in net.uplinks:
        if not _exists(uplink):
            continue  # comes later; `up` again then
        if net.ipv4 is not None:
            _set_sysctl(state, f"ipv4/conf/{uplink}/forwarding", "1", record=True)
        if net.ipv6 is not None:
            # IPv6 forwards only with the global switch, which makes every interface a router
            # that ignores router advertisements unless accept_ra = 2: keep the uplink's
            if _sysctl_path(f"ipv6/conf/{uplink}/accept_ra").read_text().strip() == "1":
                _set_sysctl(state, f"ipv6/conf/{uplink}/accept_ra", "2", record=True)
            _set_sysctl(state, "ipv6/conf/all/forwarding", "1", record=True)
    if not _is_up(br):
        _ip("link", "set", "dev", br, "up")
    for m in plan.members_of(net.name):
        if _exists(m.tap):
            if _master(m.tap) != br:
                _ip("link", "set", "dev", m.tap, "master", br)
            if not _is_up(m.tap):
                _ip("link", "set", "dev", m.tap, "up")


def _is_up(ifname: str) -> bool:
    return bool(int(Path("/sys/class/net", ifname, "flags").read_text().strip(), 16) & 1)


def _global_addresses(ifname: str) -> set[str]:
    out = _ip("-j", "addr", "show", "dev", ifname).stdout
    try:
        data = json.loads(out or "[]")
    except ValueError:
        raise HostError(f"ip -j addr show dev {ifname}: unreadable output") from None
    return {f"{a['local']}/{a['prefixlen']}" for link in data for a in link.get("addr_info", [])
            if a.get("scope") == "global"}


def _nft(text: str) -> None:
    process.run(["nft", "-f", "-"], input=text)


def _tables_loaded() -> bool:
    return all(process.run(["nft", "list", "table", family, TABLE], check=False).returncode == 0
               for family in FAMILIES)


def _load_table(plan: Plan, paths: Paths) -> None:
    """Load the table unless the same text is loaded (a flushed ruleset is loaded again)."""
    from .state import write_atomic

    text = render_nft(plan)
    with contextlib.suppress(FileNotFoundError):
        if paths.nft.read_text("utf-8") == text and _tables_loaded():
            return
    _nft(text)
    write_atomic(paths.nft, text)


def _dnsmasq_pid(paths: Paths, network: str) -> int | None:
    """The pid of the network's running dnsmasq (its pid file, checked against /proc)."""
    try:
        pid = int(paths.pid(network).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if f"--conf-file={paths.conf(network)}".encode() in cmdline else None


def _dnsmasq_up(plan: Plan, net: Network, paths: Paths, resolv: Path | None) -> None:
    from .state import write_atomic

    text = render_dnsmasq(plan, net, paths, resolv)
    conf = paths.conf(net.name)
    pid = _dnsmasq_pid(paths, net.name)
    with contextlib.suppress(FileNotFoundError):
        if pid is not None and conf.read_text("utf-8") == text:
            return
    if pid is not None:
        _stop(pid)
    write_atomic(conf, text)
    # dnsmasq forks, and its parent exits once the daemon runs (or with its error)
    process.run(["dnsmasq", f"--conf-file={conf}"])


def _stop(pid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline += timeout
        time.sleep(0.05)


def _remove_network(paths: Paths, name: str, bridge: str) -> None:
    pid = _dnsmasq_pid(paths, name)
    if pid is not None:
        _stop(pid)
    if _exists(bridge) and _is_bridge(bridge):
        _ip("link", "del", "dev", bridge)
    for f in paths.files(name):
        with contextlib.suppress(FileNotFoundError):
            f.unlink()


def down(plan: Plan, run_dir: Path) -> None:
    """Remove what `up` made for the plan, and what the run directory's record names:
    dnsmasq, bridges, the table, host sysctls back as they were, the run directory's files."""
    _need_root("down")
    paths = Paths(run_dir)
    if not run_dir.exists() and not any(_exists(n.bridge) for n in plan.networks):
        _nft(_prologue_only())
        return
    with _locked(run_dir):
        state = _read_state(paths)
        names = {**{n.name: n.bridge for n in plan.networks if _ours(n.bridge, state)},
                 **state["networks"]}
        for name, bridge in sorted(names.items()):
            _remove_network(paths, name, bridge)
        _nft(_prologue_only())
        _restore_sysctls(state)
        for f in (paths.nft, paths.state):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
    with contextlib.suppress(OSError):  # not empty: someone else's files, left alone
        run_dir.rmdir()


def _prologue_only() -> str:
    """Removes both tables whether they exist or not."""
    return "\n".join(_prologue()[2:]) + "\n"
