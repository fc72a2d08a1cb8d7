"""The host network declaration (issue 23): what is derived for each VM, that it is stable, and
every conflict refused naming both sides, with an accepting case beside each refusing one."""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import random
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from microvm import netplan
from microvm.errors import ValidationError
from microvm.netplan import derive


def decl(**networks: dict[str, Any]) -> dict[str, Any]:
    return {"hostName": "h1", "networks": networks or {"lan": {"ipv4": "10.231.0.0/24"}},
            "vms": {}}


def join(d: dict[str, Any], vm: str, network: str = "lan", **pins: str) -> dict[str, Any]:
    d["vms"].setdefault(vm, []).append({"network": network, **pins})
    return d


def problems(d: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as e:
        derive(d)
    return [f"{p.path}: {p.message}" for p in e.value.problems]


def refused(d: dict[str, Any], expected: str) -> None:
    found = problems(d)
    assert any(expected in p for p in found), found


# -- what is derived ---------------------------------------------------------------------------

def test_derived_values_follow_the_documented_formula() -> None:
    """The formula is the contract (a host's VMs keep their MACs and names across versions):
    SHA-256 of the newline-joined parts, computed here independently."""
    d = join(join(decl(lan={"ipv4": "10.231.0.0/24", "ipv6": "auto"}), "web"), "db")
    plan = derive(d)
    web = plan.member("web", "lan")

    def h(*parts: str) -> bytes:
        return hashlib.sha256("\n".join(parts).encode()).digest()

    assert web.mac == "02:" + ":".join(f"{b:02x}" for b in h("mac", "lan", "web")[:5])
    tap = int.from_bytes(h("tap", "lan", "web"), "big")
    assert web.tap == "mvt-" + "".join("abcdefghijklmnopqrstuvwxyz234567"[(tap >> 5 * i) & 31]
                                       for i in range(11))
    prefix = ipaddress.IPv6Network((b"\xfd" + h("ula", "h1", "lan")[:5] + bytes(10), 64))
    assert plan.network("lan").ipv6 == prefix
    iid = int.from_bytes(h("ipv6", "h1", "lan", "web")[:8], "big") | 2
    assert web.ipv6 == prefix[iid]
    slot = int.from_bytes(h("ipv4", "h1", "lan", "web")[:8], "big") % 256
    assert web.ipv4 == ipaddress.IPv4Network("10.231.0.0/24")[slot] or slot in (0, 1, 255)
    assert plan.network("lan").bridge == "mvb-lan"
    assert plan.network("lan").gateway4 == ipaddress.IPv4Address("10.231.0.1")
    assert derive(copy.deepcopy(d)) == plan  # the same on every run


def test_names_fit_and_avoid_systemds_prefixes() -> None:
    d = join(decl(**{"a-very-long-network-name": {"ipv4": "10.0.0.0/24"}}), "web",
             "a-very-long-network-name")
    plan = derive(d)
    net = plan.networks[0]
    assert len(net.bridge) <= 15 and net.bridge.startswith("mvb-")
    tap = plan.members[0].tap
    assert len(tap) == 15 and tap.startswith("mvt-")
    assert not tap.startswith(netplan.SYSTEMD_PREFIXES)
    assert int(plan.members[0].mac[:2], 16) & 0b11 == 0b10  # unicast, locally administered


def random_names(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < n:
        names.add("".join(rng.choice(string.ascii_lowercase + string.digits + "-")
                          for _ in range(rng.randint(1, 20))).strip("-") or "x")
    return sorted(names)


def test_a_thousand_vms_in_a_16_get_distinct_everything() -> None:
    d = decl(lan={"ipv4": "10.40.0.0/16", "ipv6": "auto"})
    for name in random_names(1000, 1):
        join(d, name)
    plan = derive(d)
    assert len(plan.members) == 1000
    for field in ("mac", "tap", "ipv4", "ipv6"):
        assert len({getattr(m, field) for m in plan.members}) == 1000, field
    net = plan.network("lan")
    assert all(m.ipv4 not in (net.gateway4, net.ipv4.network_address,
                              net.ipv4.broadcast_address) for m in plan.members if net.ipv4)


def test_a_thousand_vms_in_a_24_is_a_clear_pool_full() -> None:
    d = decl()
    for name in random_names(1000, 2):
        join(d, name)
    found = problems(d)
    full = [p for p in found if "is full" in p]
    assert len(full) == 1000 - 253, found[:3]
    assert full[0].endswith("networks.lan.ipv4 (10.231.0.0/24) is full: 253 addresses, all " +
                            "given out; use a larger network")


NAMES = st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), min_size=1,
                 max_size=40, unique=True)


@settings(max_examples=60, deadline=None)
@given(names=NAMES, newcomer=st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True))
def test_adding_a_vm_moves_no_other(names: list[str], newcomer: str) -> None:
    """MAC, tap and IPv6 depend on the VM's own name only; IPv4 with the host's record of
    what it gave out (`given`): every VM keeps its address."""
    if newcomer in names:
        return
    d = decl(lan={"ipv4": "10.231.0.0/26", "ipv6": "auto"})
    for name in names:
        join(d, name)
    before = derive(d)
    record = {(m.vm, m.network): str(m.ipv4) for m in before.members}
    after = derive(join(copy.deepcopy(d), newcomer), record)
    for m in before.members:
        assert after.member(m.vm, "lan") == m
    # and removing one (the first) moves none of the others either
    d["vms"].pop(names[0])
    fewer = derive(d, record)
    for m in before.members:
        if m.vm != names[0]:
            assert fewer.member(m.vm, "lan") == m


def test_without_the_record_a_newcomer_may_take_a_slot_but_nothing_else_moves() -> None:
    d = decl(lan={"ipv4": "10.231.0.0/29", "ipv6": "auto"})
    for name in ("a", "b", "c"):
        join(d, name)
    before = derive(d)
    after = derive(join(copy.deepcopy(d), "0"))  # sorts first
    for m in before.members:
        other = after.member(m.vm, "lan")
        assert (other.mac, other.tap, other.ipv6) == (m.mac, m.tap, m.ipv6)


# -- conflicts, each refused and its neighbour accepted -----------------------------------------

def test_overlapping_networks() -> None:
    d = decl(a={"ipv4": "10.1.0.0/16"}, b={"ipv4": "10.1.5.0/24"})
    refused(d, "networks.b.ipv4: 10.1.5.0/24 overlaps 10.1.0.0/16 of networks.a.ipv4")
    derive(decl(a={"ipv4": "10.1.0.0/24"}, b={"ipv4": "10.2.5.0/24"}))
    refused(decl(a={"ipv6": "fd00:1::/64"}, b={"ipv6": "fd00:1::/64"}),
            "networks.b.ipv6: fd00:1::/64 overlaps fd00:1::/64 of networks.a.ipv6")


def test_overlap_with_the_hosts_own_addresses() -> None:
    d = {**decl(lan={"ipv4": "192.168.1.0/24"}), "hostAddresses": ["192.168.1.10/24"]}
    refused(d, "networks.lan.ipv4: 192.168.1.0/24 overlaps the host's address " +
            "192.168.1.10/24 (hostAddresses[0])")
    derive({**decl(lan={"ipv4": "192.168.2.0/24"}), "hostAddresses": ["192.168.1.10/24"]})


@pytest.mark.parametrize(("subnet", "what"), [("172.17.3.0/24", "Docker"),
                                         ("10.88.0.0/24", "Podman"),
                                         ("192.168.122.0/25", "libvirt")])
def test_overlap_with_the_usual_defaults(subnet: str, what: str) -> None:
    refused(decl(lan={"ipv4": subnet}), what)
    derive(decl(lan={"ipv4": "172.30.0.0/24"}))


def test_pinned_and_derived_clashes() -> None:
    d = join(join(decl(), "a", mac="02:00:00:00:00:01"), "b", mac="02:00:00:00:00:01")
    refused(d, "vms.b[0].mac: 02:00:00:00:00:01 is also the MAC of vms.a[0]")
    derive(join(join(decl(), "a", mac="02:00:00:00:00:01"), "b", mac="02:00:00:00:00:02"))
    d = join(join(decl(), "a", ipv4="10.231.0.7"), "b", ipv4="10.231.0.7")
    refused(d, "vms.b[0].ipv4: 10.231.0.7 is also pinned by vms.a[0]")
    d = decl(lan={"ipv4": "10.231.0.0/24", "ipv6": "fd00:5::/64"})
    refused(join(join(d, "a", ipv6="fd00:5::9"), "b", ipv6="fd00:5::9"),
            "vms.b[0].ipv6: fd00:5::9 is also pinned by vms.a[0]")
    refused(join(decl(), "a", mac="03:00:00:00:00:01"), "vms.a[0].mac: must be a unicast MAC")
    # a derived address never lands on a pinned one
    d = decl(lan={"ipv4": "10.231.0.0/29"})
    for i, name in enumerate("abcde"):
        join(d, name, **({"ipv4": f"10.231.0.{i + 2}"} if name in "ac" else {}))
    addresses = [m.ipv4 for m in derive(d).members]
    assert len(set(addresses)) == 5


def test_full_pool_and_reserved_addresses() -> None:
    d = decl(lan={"ipv4": "10.231.0.0/29"})  # 8 addresses: network, gateway, broadcast, 5 VMs
    for name in "abcde":
        join(d, name)
    assert len(derive(d).members) == 5
    refused(join(d, "f"), "vms.f[0]: networks.lan.ipv4 (10.231.0.0/29) is full: 5 addresses")
    refused(join(decl(), "a", ipv4="10.231.0.1"),
            "vms.a[0].ipv4: 10.231.0.1 is the gateway (the host's address on the bridge)")
    refused(join(decl(), "a", ipv4="10.231.0.255"), "is the broadcast address of networks.lan")
    refused(join(decl(), "a", ipv4="10.9.0.3"), "10.9.0.3 is outside networks.lan.ipv4")
    derive(join(decl(), "a", ipv4="10.231.0.254"))


def test_port_forward_clashes() -> None:
    fwd = {"vm": "a", "hostPort": 8080, "port": 80}
    d = join(join(decl(lan={"ipv4": "10.231.0.0/24", "forwardPorts": [fwd, {**fwd, "vm": "b"}]}),
                  "a"), "b")
    refused(d, "networks.lan.forwardPorts[1].hostPort: tcp port 8080 is also forwarded by " +
            "networks.lan.forwardPorts[0]")
    derive(join(join(decl(lan={"ipv4": "10.231.0.0/24", "forwardPorts": [
        fwd, {**fwd, "vm": "b", "proto": "udp"}]}), "a"), "b"))
    d = join(join(decl(x={"ipv4": "10.1.0.0/24", "forwardPorts": [fwd]},
                       y={"ipv4": "10.2.0.0/24", "forwardPorts": [{**fwd, "vm": "b"}]}),
                  "a", "x"), "b", "y")
    refused(d, "networks.y.forwardPorts[0].hostPort: tcp port 8080 is also forwarded by " +
            "networks.x.forwardPorts[0]")
    refused(decl(lan={"ipv4": "10.231.0.0/24", "forwardPorts": [fwd]}),
            "networks.lan.forwardPorts[0].vm: 'a' does not join networks.lan")
    refused(join(decl(lan={"ipv4": "10.231.0.0/24", "forwardPorts": [{**fwd, "port": 0}]}),
                 "a"), "must be a list of ports 1-65535")


@pytest.mark.parametrize(("uplink", "expected"), [
    ("an-uplink-too-long", "interface names are at most 15 bytes"),
    ("eth/0", "must be an interface name"), ("", "must be an interface name")])
def test_interface_names(uplink: str, expected: str) -> None:
    found = problems(decl(lan={"ipv4": "10.231.0.0/24", "uplinks": ["eth0", uplink]}))
    assert len(found) == 1 and found[0].startswith("networks.lan.uplinks[1]: "), found
    assert expected in found[0]
    derive(decl(lan={"ipv4": "10.231.0.0/24", "uplinks": ["eth0", "wlp3s0"]}))


def test_no_derived_name_is_one_systemds_network_files_claim() -> None:
    for name in random_names(200, 3):
        assert not netplan.bridge_name(name).startswith(netplan.SYSTEMD_PREFIXES)
        assert not netplan.tap_name("lan", name).startswith(netplan.SYSTEMD_PREFIXES)


def test_isolation_and_allow_rules() -> None:
    rule = {"from": "a", "to": "b", "tcp": [5432]}
    refused(join(join(decl(lan={"ipv4": "10.231.0.0/24", "isolation": "isolated",
                                "allow": [rule]}), "a"), "b"),
            'networks.lan.allow: applies with isolation = "rules" only')
    plan = derive(join(join(decl(lan={"ipv4": "10.231.0.0/24", "isolation": "rules",
                                      "allow": [rule]}), "a"), "b"))
    assert plan.network("lan").allow == (netplan.Allow("a", "b", (5432,), ()),)
    refused(join(decl(lan={"ipv4": "10.231.0.0/24", "isolation": "rules", "allow": [rule]}),
                 "a"), "networks.lan.allow[0].to: 'b' does not join networks.lan")
    refused(decl(lan={"ipv4": "10.231.0.0/24", "isolation": "closed"}),
            "networks.lan.isolation: must be one of open, isolated, rules, got 'closed'")


def test_malformed_declarations_name_the_key() -> None:
    refused({"hostName": "h", "networks": {"LAN": {"ipv4": "10.1.0.0/24"}}, "vms": {}},
            "networks.LAN: a network name is")
    refused(decl(lan={"ipv4": "10.1.0.0/30"}), "networks.lan.ipv4: must be a /29 or larger")
    refused(decl(lan={"ipv4": "8.8.8.0/24"}), "must be a private network")
    refused(decl(lan={"ipv6": "fd00::/48"}), "networks.lan.ipv6: must be a /64")
    refused(decl(lan={}), "networks.lan: needs ipv4, ipv6 or both")
    refused(decl(lan={"ipv4": "10.1.0.0/24", "subnet": 1}), "networks.lan.subnet: unknown option")
    refused(join(decl(), "a", "wan"), "vms.a[0].network: no declared network 'wan' " +
            "(declared: lan)")
    refused(join(join(decl(), "a"), "a"), "vms.a[1].network: a joins lan twice")
    refused(decl(lan={"ipv4": "10.1.0.0/24", "domain": "Bad_Domain"}), "networks.lan.domain")
    refused({"networks": {}}, "hostName: must be the host's name")


def test_the_cli_reads_the_hosts_record_of_addresses(tmp_path: Path) -> None:
    """`microvm network show` (and up, check) derive with the record `up` keeps in the state
    directory: a VM keeps the address it was given even where its own slot says otherwise."""
    d = decl(lan={"ipv4": "10.231.0.0/29"})
    for name in "abc":
        join(d, name)
    derived = {m.vm: str(m.ipv4) for m in derive(d).members}
    free = next(str(a) for a in ipaddress.IPv4Network("10.231.0.0/29").hosts()
                if str(a) not in derived.values() and str(a) != "10.231.0.1")
    (tmp_path / "state" / ".control").mkdir(parents=True)
    (tmp_path / "state" / ".control" / "network-addresses.json").write_text(
        json.dumps({"lan": {"a": {"ipv4": free, "name": "a"}}}))
    (tmp_path / "n.json").write_text(json.dumps(d))

    def show(*extra: str) -> dict[str, str]:
        p = subprocess.run([sys.executable, "-m", "microvm.cli", "network", "show",
                            str(tmp_path / "n.json"), "--json", *extra], text=True,
                           capture_output=True, check=True)
        return {r["vm"]: r["ipv4"] for r in json.loads(p.stdout)}

    assert show("--state-dir", str(tmp_path / "state"))["a"] == free
    assert show("--state-dir", str(tmp_path / "none")) == derived
