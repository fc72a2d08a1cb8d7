"""A VM's side of a declared host network (issue 23): `type = "network"` interfaces, their
derived tap name and MAC, the runner's tap-up joining the network's bridge, and the refusals
naming the option."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from microvm import netplan
from microvm.capabilities import CAPABILITIES, Feature, Hypervisor
from microvm.document import from_document
from microvm.errors import ValidationError
from support import vmtest

ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def document(hv: str = "qemu", **microvm: Any) -> dict[str, Any]:
    kernel = "/nix/store/kkkk-linux/Image" if hv == "vfkit" else "/nix/store/k/kernel"
    return {"hostName": "web", "system": "aarch64-darwin" if hv == "vfkit" else "x86_64-linux",
            "microvm": {"hypervisor": hv, "kernel": kernel, "initrdPath": "/nix/store/i/initrd",
                        "storeOnDisk": False, **microvm}}


def refusals(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as e:
        from_document(doc)
    return [f"{p.path}: {p.message}" for p in e.value.problems]


@pytest.mark.parametrize("hv", [str(h) for h in Hypervisor])
def test_a_network_interface_is_a_tap_where_the_hypervisor_has_taps(hv: str) -> None:
    doc = document(hv, interfaces=[{"type": "network", "network": "lan"}])
    if CAPABILITIES[Hypervisor(hv)].supports(Feature.NET_TAP):
        [iface] = from_document(doc).interfaces
        assert (iface.id, iface.mac) == (netplan.tap_name("lan", "web"),
                                         netplan.mac_address("lan", "web"))
        assert iface.host_bridge == "mvb-lan"
    else:
        assert refusals(doc)[0].startswith(
            f"microvm.interfaces[0].type: tap interfaces not supported by {hv}")


def test_pins_and_refusals_name_the_option() -> None:
    pinned = document(interfaces=[{"type": "network", "network": "lan", "id": "mine0",
                                   "mac": "02:00:00:00:00:07"}])
    [iface] = from_document(pinned).interfaces
    assert (iface.id, iface.mac) == ("mine0", "02:00:00:00:00:07")
    assert refusals(document(interfaces=[{"type": "network"}])) == [
        "microvm.interfaces[0].network: must be set for a network interface (the name of a " +
        "network the host declares)"]
    assert refusals(document(interfaces=[{"type": "network", "network": "LAN"}]))[0] == (
        "microvm.interfaces[0].network: must be a network name (1-31 lowercase letters, " +
        "digits and '-'), got 'LAN'")
    assert refusals(document(interfaces=[{"type": "tap", "mac": "02:00:00:00:00:01"}])) == [
        'microvm.interfaces[0].id: must be set for a tap interface (only type = "network" ' +
        "derives it)"]
    assert refusals(document(interfaces=[{"type": "tap", "id": "t0", "mac": "02:00:00:00:00:01",
                                          "network": "lan"}])) == [
        'microvm.interfaces[0].network: applies to type = "network" only, got type = "tap"']
    assert "claim (vt-, ve-, vz-)" in refusals(document(interfaces=[
        {"type": "network", "network": "lan", "id": "vt-web"}]))[0]
    two = document(interfaces=[{"type": "network", "network": "lan"},
                               {"type": "network", "network": "lan"}])
    assert any("interfaces[1].id" in r for r in refusals(two))


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"mvnet-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@ROOT
def test_tap_up_joins_the_networks_bridge_or_says_it_is_not_up(tmp_path: Path,
                                                               netns: str) -> None:
    doc = vmtest.document("web", Path("/nonexistent/vmlinux"), Path("/nonexistent/initrd"),
                          interfaces=[{"type": "network", "network": "lan"}])
    runner = vmtest.generate(doc, tmp_path / "src", name="runner")
    tap = netplan.tap_name("lan", "web")

    def in_ns(*argv: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", netns, *map(str, argv)], text=True,
                              capture_output=True)

    r = in_ns(runner / "bin" / "tap-up")
    assert r.returncode == 1
    assert r.stderr.startswith("tap-up: network lan is not up on this host (no bridge mvb-lan)")
    assert tap not in in_ns("ip", "-j", "link").stdout  # nothing made
    in_ns("ip", "link", "add", "mvb-lan", "type", "bridge")
    r = in_ns(runner / "bin" / "tap-up")
    assert r.returncode == 0, r.stderr
    [link] = json.loads(in_ns("ip", "-j", "link", "show", "dev", tap).stdout)
    assert link["master"] == "mvb-lan" and "UP" in link["flags"]
    assert in_ns(runner / "bin" / "tap-up").returncode == 0  # again: nothing to do
    assert in_ns(runner / "bin" / "tap-down").returncode == 0
    assert tap not in in_ns("ip", "-j", "link").stdout


def test_list_shows_each_vms_network_address_and_name(tmp_path: Path) -> None:
    """`microvm list` (and --json): the network a VM joins, with the address and DNS name
    `microvm network up` recorded for it, or that it has none yet."""
    from support.host_cli import cli

    doc = vmtest.document("web", Path("/nonexistent/vmlinux"), Path("/nonexistent/initrd"),
                          interfaces=[{"type": "network", "network": "lan"}])
    runner = vmtest.generate(doc, tmp_path / "src", name="runner")
    state = tmp_path / "state"
    cli("create", "web", "--runner", str(runner), state_dir=state, check=True)
    before = cli("list", state_dir=state, check=True).stdout
    assert "network: lan (no address yet)" in before, before
    (state / ".control" / "network-addresses.json").write_text(json.dumps(
        {"lan": {"web": {"ipv4": "10.231.0.76", "name": "web.vm.internal"}}}))
    after = cli("list", state_dir=state, check=True).stdout
    assert "network: lan 10.231.0.76 web.vm.internal" in after, after
    [row] = json.loads(cli("list", "--json", state_dir=state, check=True).stdout)
    assert row["networks"] == [{"network": "lan", "ipv4": "10.231.0.76",
                                "name": "web.vm.internal"}]


def test_validate_host_checks_network_interfaces_against_the_declaration(tmp_path: Path) -> None:
    """`microvm validate-host --networks FILE`: each VM's network interface names a declared
    network it is a member of, with the MAC, tap and pinned addresses the host uses for it;
    both sides named."""
    decl = {"hostName": "h", "networks": {"lan": {"ipv4": "10.231.0.0/24"}},
            "vms": {"web": [{"network": "lan"}], "db": [{"network": "lan",
                                                          "mac": "02:00:00:00:00:42"}]}}
    (tmp_path / "n.json").write_text(json.dumps(decl))

    def doc(name: str, **iface: str) -> Path:
        d = document(interfaces=[{"type": "tap", "id": "t-" + name,
                                  "mac": f"02:00:00:00:01:{len(name):02x}"},
                                 {"type": "network", "network": "lan", **iface}])
        d["hostName"] = name
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(d))
        return path

    def validate(*docs: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "microvm.cli", "validate-host",
                               *map(str, docs), "--networks", str(tmp_path / "n.json")],
                              text=True, capture_output=True)

    ok = validate(doc("web"), doc("db", mac="02:00:00:00:00:42"))
    assert ok.returncode == 0, ok.stderr
    web4 = netplan.derive(decl).member("web", "lan").ipv4
    assert validate(doc("web", ipv4=str(web4))).returncode == 0
    pin = validate(doc("web", ipv4="10.231.0.250"))
    assert pin.returncode == 2 and pin.stderr.splitlines() == [
        f"error: {tmp_path}/web.json: microvm.interfaces[1].ipv4: 10.231.0.250 is not the " +
        f"address the declaration has for web on lan ({web4}): pin the same in both"], pin.stderr
    bad = validate(doc("web", network="wan"), doc("db"), doc("cache"))
    assert bad.returncode == 2, bad.stderr
    db_mac = netplan.mac_address("lan", "db")
    assert bad.stderr.splitlines() == [
        f"error: {tmp_path}/web.json: microvm.interfaces[1].network: no network 'wan' is " +
        "declared (declared: lan)",
        f"error: {tmp_path}/db.json: microvm.interfaces[1].mac: {db_mac} is not the MAC the " +
        "declaration has for db on lan (02:00:00:00:00:42): pin the same in both",
        f"error: {tmp_path}/cache.json: microvm.interfaces[1].network: cache joins lan, but " +
        "the declaration lists no vms.cache on it: it would get no lease, name or forward",
    ], bad.stderr


def test_the_guest_sides_options_are_refused_where_they_do_not_apply() -> None:
    assert refusals(document(interfaces=[{"type": "tap", "id": "t0", "mac": "02:00:00:00:00:01",
                                          "ipv4": "10.0.0.5", "addressing": "dhcp"}])) == [
        'microvm.interfaces[0].ipv4: applies to type = "network" only, got type = "tap"',
        'microvm.interfaces[0].addressing: applies to type = "network" only, got type = "tap"']
    assert refusals(document(interfaces=[{"type": "network", "network": "lan",
                                          "ipv4": "10.0.0.256", "ipv6": "10.0.0.5"}])) == [
        "microvm.interfaces[0].ipv4: must be an IPv4 address, got '10.0.0.256'",
        "microvm.interfaces[0].ipv6: must be an IPv6 address, got '10.0.0.5'"]


@ROOT
def test_create_checks_a_network_interface_against_the_hosts_declaration(tmp_path: Path) -> None:
    """`microvm create` (and `update`, the same check) refuses a runner whose network interface
    the host's declaration (/etc/microvm/networks.json; here MICROVM_NETWORKS_FILE) does not
    give it: a VM the declaration does not list, an address pinned otherwise. Nothing is
    created. A declaration others could write is not read."""
    from support.host_cli import cli, make_runner

    decl = tmp_path / "networks.json"
    decl.write_text(json.dumps({"hostName": "h", "networks": {"lan": {"ipv4": "10.9.0.0/24"}},
                                "vms": {"web": [{"network": "lan"}]}}))
    decl.chmod(0o644)
    state = tmp_path / "state"
    env = {"MICROVM_NETWORKS_FILE": str(decl)}
    iface = {"type": "network", "network": "lan"}

    def create(name: str, **pins: str) -> subprocess.CompletedProcess[str]:
        runner = make_runner(tmp_path, name, name=f"r-{name}-{len(pins)}",
                             interfaces=[{**iface, **pins}])
        return cli("create", name, "--runner", str(runner), env=env, state_dir=state)

    plan = netplan.derive(json.loads(decl.read_text()))
    r = create("db")
    assert r.returncode == 2 and not (state / "db").exists(), r.stderr
    assert "db: microvm.interfaces[0].network: db joins lan, but the declaration lists no " + \
        "vms.db on it" in r.stderr
    r = create("web", ipv4="10.9.0.250")
    assert r.returncode == 2 and not (state / "web").exists(), r.stderr
    assert "web: microvm.interfaces[0].ipv4: 10.9.0.250 is not the address the declaration " + \
        f"has for web on lan ({plan.member('web', 'lan').ipv4}): pin the same in both " + \
        f"({decl})" in r.stderr
    decl.chmod(0o666)
    r = create("web")
    assert r.returncode == 2 and "not root's, or writable by others" in r.stderr, r.stderr
    decl.chmod(0o644)
    # in a directory others may write: the file could be replaced under root
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / decl.name).write_text(decl.read_text())
    (shared / decl.name).chmod(0o644)
    shared.chmod(0o777)
    env["MICROVM_NETWORKS_FILE"] = str(shared / decl.name)
    r = create("web")
    env["MICROVM_NETWORKS_FILE"] = str(decl)
    assert r.returncode == 2 and not (state / "web").exists(), r.stderr
    assert f"{shared / decl.name}: not read: refusing {shared}: writable by group or others" \
        in r.stderr, r.stderr
    r = create("web", ipv4=str(plan.member("web", "lan").ipv4))
    assert r.returncode == 0, r.stderr
