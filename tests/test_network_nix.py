"""Declared networks at evaluation (issue 23): nix/lib/netplan.nix derives the addresses
netplan.derive() derives (parity over random declarations, collisions and pins included); the
NixOS host module passes them to its inline guests (static addressing) and into the
declaration, which it builds through `microvm network check`, so a conflict stops the build
with the generator's message; pins that clash fail evaluation naming both interfaces; the guest
side's options are refused by path where they do not apply."""

from __future__ import annotations

import ipaddress
import json
import random
import string
import subprocess
from pathlib import Path
from typing import Any

import pytest
from microvm import netplan
from microvm.errors import ValidationError
from support.nixeval import (
    NIX_OPTS,
    NIXDIR,
    guest_inline,
    nix_args,
    nix_eval,
    nix_json,
    nix_problem,
)

pytestmark = pytest.mark.skipif(nix_problem() is not None, reason=str(nix_problem()))


def _random_declaration(rng: random.Random, i: int) -> dict[str, Any]:
    host = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(1, 12)))
    networks: dict[str, Any] = {}
    for n in range(rng.randint(1, 3)):
        prefix = rng.choice([24, 26, 28, 29])
        body: dict[str, Any] = {"ipv4": f"10.{i % 200}.{n * 4}.0/{prefix}"}
        v6 = rng.choice(["auto", "none", "explicit"])
        if v6 == "auto":
            body["ipv6"] = "auto"
        elif v6 == "explicit":
            body["ipv6"] = f"fd00:{i:x}:{n:x}:1::/64"
        if rng.random() < 0.5:
            body["domain"] = "vm.internal"
        networks[f"n{n}-" + "".join(rng.choice(string.ascii_lowercase) for _ in range(3))] = body
    vms: dict[str, list[dict[str, Any]]] = {}
    used: dict[str, set[str]] = {name: set() for name in networks}
    for name, body in networks.items():
        net = ipaddress.IPv4Network(body["ipv4"])
        # up to the pool's size minus the reserved three: collisions are likely, full never
        for _ in range(rng.randint(1, net.num_addresses - 3)):
            vm = "".join(rng.choice(string.ascii_letters + string.digits + "-_.")
                         for _ in range(rng.randint(1, 10)))
            if not vm[0].isalnum() or any(j["network"] == name for j in vms.get(vm, [])):
                continue
            join: dict[str, Any] = {"network": name}
            if rng.random() < 0.15:
                free = [str(a) for a in list(net)[2:-1] if str(a) not in used[name]]
                join["ipv4"] = rng.choice(free)
                used[name].add(join["ipv4"])
            vms.setdefault(vm, []).append(join)
    return {"hostName": host, "networks": networks, "vms": vms}


def _nix_plans(decls: list[dict[str, Any]], tmp_path: Path,
               check: bool = True) -> subprocess.CompletedProcess[str]:
    """nix/lib's netPlan of each declaration (read from a file: too long for an argument)."""
    path = tmp_path / "decls.json"
    path.write_text(json.dumps(decls))
    return nix_eval("let lib = import <nixpkgs/lib>; m = import ../../nix/lib { inherit lib; }; " +
                    "in map (d: m.netPlan { host = d.hostName; networks = d.networks; vms = " +
                    "lib.mapAttrs (vm: map (j: j // { at = \"vms.${vm}\"; })) d.vms; }) " +
                    f"(builtins.fromJSON (builtins.readFile {path}))", check=check)


def test_nix_derives_the_addresses_python_derives(tmp_path: Path) -> None:
    """60 random declarations (1-3 networks of /24 to /29, IPv6 auto, explicit or none, VMs up
    to a full pool, some pinned): every VM's IPv4 and IPv6 on every network is the same."""
    rng = random.Random(2323)
    decls = [_random_declaration(rng, i) for i in range(60)]
    for decl, got in zip(decls, json.loads(_nix_plans(decls, tmp_path).stdout), strict=True):
        plan = netplan.derive(decl)
        assert len(plan.members) == sum(len(j) for j in decl["vms"].values())
        for m in plan.members:
            mine = got[m.vm][m.network]
            assert mine["ipv4"] == str(m.ipv4), (decl, m)
            assert (None if mine["ipv6"] is None else ipaddress.IPv6Address(mine["ipv6"])) \
                == m.ipv6, (decl, m)
            net = plan.network(m.network)
            assert mine["gateway4"] == str(net.gateway4)
            assert mine["prefixLength4"] == net.ipv4.prefixlen  # type: ignore[union-attr]


def test_a_full_network_is_refused_by_both(tmp_path: Path) -> None:
    decl = {"hostName": "h", "networks": {"lan": {"ipv4": "10.9.0.0/29"}},
            "vms": {f"vm{i}": [{"network": "lan"}] for i in range(6)}}
    with pytest.raises(ValidationError, match="is full"):
        netplan.derive(decl)
    r = _nix_plans([decl], tmp_path, check=False)
    assert r.returncode != 0
    assert "microvm.host.networks.lan.ipv4 (10.9.0.0/29) is full: 5 addresses" in r.stderr


def _host(extra: str = "{ }") -> str:
    return f"(import ./host-network-eval.nix {{ inherit python repo; extra = {extra}; }})"


def _host_eval(extra: str, attr: str = "declaration") -> subprocess.CompletedProcess[str]:
    return nix_eval(f"{{ python, repo }}: {_host(extra)}.{attr}", check=False)


def test_the_host_gives_its_guests_the_addresses_it_declares() -> None:
    """Each inline guest's network configuration has the address the declaration pins for it,
    which is what derive() gives the declaration without pins."""
    got = nix_json(_host())
    decl = json.loads(got["declaration"])
    bare = {**decl, "vms": {vm: [{k: v for k, v in j.items() if k not in ("ipv4", "ipv6")}
                                 for j in joins] for vm, joins in decl["vms"].items()}}
    plan = netplan.derive(bare)
    for vm in ("web", "db"):
        m = plan.member(vm, "lan")
        [pin] = decl["vms"][vm]
        assert (pin["ipv4"], ipaddress.IPv6Address(pin["ipv6"])) == (str(m.ipv4), m.ipv6)
        net = got["networks"][vm]["10-microvm-lan"]
        assert net["matchConfig"] == {"MACAddress": m.mac}
        assert [ipaddress.ip_interface(a) for a in net["address"]] == [
            ipaddress.ip_interface(f"{m.ipv4}/24"), ipaddress.ip_interface(f"{m.ipv6}/64")]
        assert net["gateway"][0] == "10.231.0.1" and net["dns"] == ["10.231.0.1"]
        assert net["domains"] == ["vm.internal"]
        assert net["networkConfig"] == {"DHCP": "no", "IPv6AcceptRA": False}
    assert got["networks"]["plain"] == {}


def test_addressing_dhcp_keeps_the_pinned_address_for_the_dhcp_server() -> None:
    got = nix_json(_host('{ lib, ... }: { microvm.vms.web.config.microvm.interfaces = ' +
                         'lib.mkForce [ { type = "network"; network = "lan"; ' +
                         'addressing = "dhcp"; } ]; }'))
    assert got["networks"]["web"]["10-microvm-lan"]["networkConfig"] == {
        "DHCP": "ipv4", "IPv6AcceptRA": True}
    web = json.loads(got["declaration"])["vms"]["web"]
    assert web[0]["ipv4"].startswith("10.231.0.")


def _build(expr: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nix-build", *NIX_OPTS, "--no-out-link", *nix_args(), "-E",
                           f"{{ python, repo }}: {expr}"], cwd=NIXDIR, capture_output=True,
                          text=True, timeout=300)


def test_the_declaration_is_built_through_network_check() -> None:
    """/etc/microvm/networks.json is the declaration, built only when `microvm network check`
    accepts it: a network on Docker's default subnet fails the build with its message."""
    got = nix_json(_host())
    ok = _build(_host() + ".declarationFile")
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert json.loads(Path(ok.stdout.strip()).read_text()) == json.loads(got["declaration"])
    bad = _build(_host('{ lib, ... }: { microvm.host.networks.lan.ipv4 = ' +
                       'lib.mkForce "172.17.0.0/24"; }') + ".declarationFile")
    assert bad.returncode != 0
    assert "networks.lan.ipv4: 172.17.0.0/24 overlaps 172.17.0.0/16, Docker's default " + \
        "bridge (docker0)" in bad.stderr, bad.stderr[-3000:]


def test_clashing_pins_fail_evaluation_naming_both_interfaces() -> None:
    pin = '{ type = "network"; network = "lan"; ipv4 = "10.231.0.9"; }'
    r = _host_eval("{ lib, ... }: { microvm.vms.web.config.microvm.interfaces = " +
                   f"lib.mkForce [ {pin} ]; microvm.vms.db.config.microvm.interfaces = " +
                   f"lib.mkForce [ {pin} ]; }}")
    assert r.returncode != 0
    assert ("microvm.vms.web.config.microvm.interfaces[0].ipv4: 10.231.0.9 is also pinned by " +
            "microvm.vms.db.config.microvm.interfaces[0]") in r.stderr, r.stderr[-2000:]
    r = _host_eval('{ lib, ... }: { microvm.vms.web.config.microvm.interfaces = lib.mkForce ' +
                   '[ { type = "network"; network = "lan"; ipv4 = "10.231.0.1"; } ]; }')
    assert ("microvm.vms.web.config.microvm.interfaces[0].ipv4: 10.231.0.1 is the gateway " +
            "(the host's address on the bridge) of microvm.host.networks.lan") in r.stderr
    r = _host_eval('{ microvm.vms.web.config.microvm.interfaces = [ { type = "network"; ' +
                   'network = "wan"; } ]; }')
    assert ("microvm.vms.web.config.microvm.interfaces[0].network: the host declares no " +
            'network "wan" (declared: lan)') in r.stderr, r.stderr[-2000:]


def test_static_addressing_needs_the_host(tmp_path: Path) -> None:
    """A guest evaluated on its own has no derived addresses: auto means DHCP, and static is
    refused naming the option and what to do."""
    r = nix_eval(guest_inline(tmp_path, '{ microvm.interfaces = [ { type = "network"; ' +
                              'network = "lan"; addressing = "static"; } ]; }', "json"),
                 check=False)
    assert r.returncode != 0
    assert 'microvm.interfaces[0].addressing = \\"static\\": no addresses for network lan' in \
        r.stderr or 'microvm.interfaces[0].addressing = "static": no addresses for network ' + \
        'lan' in r.stderr, r.stderr[-2000:]


def test_up_says_which_vm_a_pin_moves_and_how_to_keep_it() -> None:
    """NixOS's pins are derived without the host's record of addresses given before: where one
    differs from the record (a VM added whose slot met an older one's), `network up` says so,
    with the pin that keeps the old address."""
    from microvm.host.network import moved

    decl = {"hostName": "h", "networks": {"lan": {"ipv4": "10.9.0.0/24"}},
            "vms": {"web": [{"network": "lan", "ipv4": "10.9.0.7"}], "db": [{"network": "lan"}]}}
    plan = netplan.derive(decl)
    db = str(plan.member("db", "lan").ipv4)
    assert moved(plan, {("web", "lan"): "10.9.0.7", ("db", "lan"): db}) == []
    assert moved(plan, {("web", "lan"): "10.9.0.5", ("gone", "lan"): "10.9.0.9"}) == [
        'web on lan: its address moves from 10.9.0.5 to 10.9.0.7; pin ipv4 = "10.9.0.5" on ' +
        "its interface to keep it"]
