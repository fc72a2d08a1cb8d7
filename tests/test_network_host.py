"""Declared networks, the host side (generator/microvm/host/network.py, `microvm network`):
every rendered table passes `nft -c`, every dnsmasq configuration `dnsmasq --test`; then end to
end in network namespaces this module makes (never the root namespace's interfaces; traffic
only inside them): a "host" namespace runs `microvm network up`, an "uplink" namespace with
RFC 5737 addresses has no route back, and each "guest" is a namespace whose veth has the
member's MAC and whose host end is the member's tap. Guests take their address by DHCP
(busybox udhcpc) and their names from the host's dnsmasq; NAT, forwards, isolation,
anti-spoofing, a flushed ruleset, idempotence and tear-down are checked with real traffic, each
with a control that shows the check can fail."""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from microvm import cli as cli_module
from microvm.host import network
from microvm.netplan import Plan, derive
from support import REPO
from support.host_cli import cli
from support.netns import Lab, udhcpc_script, wait_for
from support.nixeval import NIX_OPTS, NIXDIR, nix_args, nix_json, nix_problem

UPLINK4, HOST4 = "192.0.2.2", "192.0.2.1"          # RFC 5737
UPLINK6, HOST6 = "2001:db8::2", "2001:db8::1"      # RFC 3849
BASE: dict[str, Any] = {
    "hostName": "testhost",
    "networks": {
        "lan": {"ipv4": "10.231.0.0/24", "ipv6": "auto", "uplinks": ["up0"],
                "domain": "vm.internal", "isolation": "rules",
                "allow": [{"from": "web", "to": "db", "tcp": [5432], "udp": [5353]}],
                "forwardPorts": [{"vm": "web", "hostPort": 8443, "port": 443},
                                 # the host's DNS port: the VMs' own DNS must stay dnsmasq's
                                 {"vm": "db", "hostPort": 53, "port": 5353, "proto": "udp"}]},
        "other": {"ipv4": "10.232.0.0/24", "domain": "other.internal"},
    },
    "vms": {"web": [{"network": "lan"}], "db": [{"network": "lan"}],
            "far": [{"network": "other"}]},
}


def declaration(**lan: Any) -> dict[str, Any]:
    decl = copy.deepcopy(BASE)
    decl["networks"]["lan"].update(lan)
    if decl["networks"]["lan"]["isolation"] != "rules":
        decl["networks"]["lan"]["allow"] = []
    return decl


# -- rendering: every table and configuration is accepted by the real tools ------------------

PLANS: dict[str, dict[str, Any]] = {
    "rules": BASE,
    "isolated": declaration(isolation="isolated"),
    "open": declaration(isolation="open"),
    "ipv4-only": {"hostName": "h", "networks": {"a": {"ipv4": "10.40.0.0/24",
                                                      "uplinks": ["eth0", "wlan0"],
                                                      "isolation": "isolated"}},
                  "vms": {"x": [{"network": "a"}], "y.z_1": [{"network": "a"}]}},
    "ipv6-only": {"hostName": "h", "networks": {"a": {
        "ipv6": "fd00:1:2:3::/64", "uplinks": ["eth0"], "domain": "six.test",
        "isolation": "rules", "allow": [{"from": "x", "to": "y", "udp": [53], "tcp": [1, 2]}],
        "forwardPorts": [{"vm": "x", "hostPort": 53, "port": 53, "proto": "udp"}]}},
        "vms": {"x": [{"network": "a"}], "y": [{"network": "a"}]}},
    "no-uplinks": {"hostName": "h", "networks": {"a": {"ipv4": "10.41.0.0/29"}},
                   "vms": {"x": [{"network": "a", "mac": "02:00:00:00:00:01",
                                  "ipv4": "10.41.0.6"}]}},
    "no-members": {"hostName": "h", "networks": {"a": {"ipv4": "10.42.0.0/24", "ipv6": "auto",
                                                       "isolation": "isolated"}}},
    "nothing": {"hostName": "h"},
}


@pytest.fixture(scope="module")
def scratch_ns() -> Iterator[str]:
    """A namespace for `nft -c` (it asks the kernel, which we do not do in the root one)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, tap devices)")
    lab = Lab()
    try:
        yield lab.ns("check")
    finally:
        lab.close()


@pytest.mark.parametrize("name", sorted(PLANS))
def test_rendered_table_passes_nft_check(name: str, scratch_ns: str, tmp_path: Path) -> None:
    text = network.render_nft(derive(PLANS[name]))
    (tmp_path / "t.nft").write_text(text)
    p = subprocess.run(["ip", "netns", "exec", scratch_ns, "nft", "-c", "-f",
                        str(tmp_path / "t.nft")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr + text


@pytest.mark.parametrize("name", sorted(PLANS))
@pytest.mark.parametrize("resolv", [network.RESOLV_CONF, None])
def test_rendered_dnsmasq_passes_its_test(name: str, resolv: Path | None,
                                          tmp_path: Path) -> None:
    plan = derive(PLANS[name])
    for net in plan.networks:
        conf = tmp_path / f"{net.name}.conf"
        conf.write_text(network.render_dnsmasq(plan, net, network.Paths(tmp_path), resolv))
        p = subprocess.run(["dnsmasq", "--test", f"--conf-file={conf}"], capture_output=True,
                           text=True)
        assert p.returncode == 0 and "syntax check OK" in p.stderr, p.stderr + conf.read_text()


def test_the_dnsmasq_test_can_fail(tmp_path: Path) -> None:
    plan = derive(BASE)
    conf = tmp_path / "bad.conf"
    text = network.render_dnsmasq(plan, plan.networks[0], network.Paths(tmp_path))
    conf.write_text(text.replace("enable-ra", "enable-ra=maybe"))
    p = subprocess.run(["dnsmasq", "--test", f"--conf-file={conf}"], capture_output=True)
    assert p.returncode != 0


def test_what_dnsmasq_serves() -> None:
    plan = derive(BASE)
    lan = plan.network("lan")
    web = plan.member("web", "lan")
    text = network.render_dnsmasq(plan, lan, network.Paths(Path("/r")))
    lines = text.splitlines()
    assert f"dhcp-host={web.mac},{web.ipv4},[{web.ipv6}],web" in lines
    assert f"host-record=web.vm.internal,web,{web.ipv4},{web.ipv6}" in lines
    assert {"interface=mvb-lan", "bind-interfaces", "except-interface=lo", "no-hosts",
            "enable-ra", "domain=vm.internal", "local=/vm.internal/", "pid-file=/r/lan.pid",
            "dhcp-leasefile=/r/lan.leases", "resolv-file=/etc/resolv.conf"} <= set(lines)
    assert "far" not in text  # another network's VM


def test_dns_names_are_labels_and_clashes_are_refused() -> None:
    assert network.dns_label("My_VM.2") == "my-vm-2"
    clash = {"hostName": "h", "networks": {"a": {"ipv4": "10.40.0.0/24"}},
             "vms": {"a_b": [{"network": "a"}], "a.b": [{"network": "a"}]}}
    problems = network.problems(derive(clash))
    assert [p.path for p in problems] == ["vms.a_b"]
    assert "'a-b'" in problems[0].message and "vms.a.b" in problems[0].message


# -- the command ------------------------------------------------------------------------------

def test_the_run_dir_default_is_declared_once() -> None:
    assert cli_module.NETWORK_RUN_DIR == network.RUN_DIR


def test_check_and_show(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(BASE))
    p = cli("network", "check", str(good))
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    shown = json.loads(cli("network", "show", str(good), "--json", check=True).stdout)
    plan = derive(BASE)
    web = plan.member("web", "lan")
    assert {"network": "lan", "vm": "web", "tap": web.tap, "mac": web.mac,
            "ipv4": str(web.ipv4), "ipv6": str(web.ipv6), "name": "web.vm.internal"} in shown
    assert len(shown) == 3
    table = cli("network", "show", str(good), check=True).stdout.splitlines()
    assert table[0].split() == ["NETWORK", "VM", "TAP", "MAC", "IPV4", "IPV6", "NAME"]
    far = plan.member("far", "other")
    assert ["other", "far", far.tap, far.mac, str(far.ipv4), "-", "far.other.internal"] in [
        row.split() for row in table]


def test_tables_writes_the_bodies_up_loads(tmp_path: Path) -> None:
    """`network tables --out DIR`: FAMILY.nft for each table, the bodies of what `up` loads
    (render_nft wraps each in `table FAMILY microvm { }`); an existing DIR or a bad declaration
    is refused (exit 2) and nothing is written."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps(BASE))
    out = tmp_path / "tables"
    cli("network", "tables", str(good), "--out", str(out), check=True)
    bodies = {p.stem: p.read_text() for p in out.iterdir()}
    assert list(bodies) != [] and sorted(bodies) == sorted(network.FAMILIES)
    assert bodies == network.tables(derive(BASE))
    loaded = network.render_nft(derive(BASE))
    for family, body in bodies.items():
        assert f"table {family} {network.TABLE} {{\n{body}}}\n" in loaded
    p = cli("network", "tables", str(good), "--out", str(out))
    assert p.returncode == 2 and "exists" in p.stderr, p.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(declaration(ipv4="172.17.1.0/24")))
    p = cli("network", "tables", str(bad), "--out", str(tmp_path / "none"))
    assert p.returncode == 2 and not (tmp_path / "none").exists(), p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bad.json", "good.json", "tables"]


def test_check_refuses_a_bad_declaration(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(declaration(ipv4="172.17.1.0/24")))
    for command in ("check", "show"):  # up and down: in the namespaces below
        p = cli("network", command, str(bad))
        assert p.returncode == 2, (command, p.stderr)
        assert p.stderr.startswith("error: networks.lan.ipv4: 172.17.1.0/24 overlaps"), p.stderr
        assert p.stdout == ""
    (tmp_path / "notjson.json").write_text("{")
    p = cli("network", "check", str(tmp_path / "notjson.json"))
    assert p.returncode == 2 and p.stderr.startswith("error: "), p.stderr


def test_up_and_down_need_root(tmp_path: Path) -> None:
    """As another user: refused before anything is made (the run directory included)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (to run the command as another user)")
    del tmp_path  # pytest's is root's alone
    where = Path(tempfile.mkdtemp(prefix="mvnet-"))
    try:
        where.chmod(0o755)
        decl = where / "n.json"
        decl.write_text(json.dumps(BASE))
        for command in ("up", "down"):
            p = subprocess.run(
                [sys.executable, "-m", "microvm.cli", "network", command, str(decl),
                 "--run-dir", str(where / "run")], capture_output=True, text=True, user=65534,
                group=65534, env={**os.environ, "PYTHONPATH": str(REPO / "generator")}, cwd="/")
            assert p.returncode == 1, p.stderr
            assert p.stderr == f"error: microvm network {command} changes the host's " + \
                "interfaces and firewall: run it as root\n"
        assert not (where / "run").exists()
    finally:
        shutil.rmtree(where)


def test_up_and_down_refuse_a_declaration_others_could_write(tmp_path: Path) -> None:
    """Root takes no instructions from a file another user could have written (or put in
    place): the declaration and every directory above it are checked before it is read."""
    if os.geteuid() != 0:
        pytest.skip("needs root (the check is root's)")
    decl = tmp_path / "n.json"
    decl.write_text(json.dumps(BASE))
    for mode, where in ((0o666, decl), (0o644, tmp_path)):
        decl.chmod(mode)
        where.chmod(where.stat().st_mode | 0o002)
        for command in ("up", "down"):
            p = subprocess.run([sys.executable, "-m", "microvm.cli", "network", command,
                                str(decl), "--run-dir", str(tmp_path / "run")],
                               capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO / "generator")})
            assert p.returncode == 1 and "writable by group or others" in p.stderr, p.stderr
            assert str(where) in p.stderr and "Traceback" not in p.stderr, p.stderr
        where.chmod(where.stat().st_mode & ~0o002)
    assert not (tmp_path / "run").exists()


def test_every_network_command_has_examples() -> None:
    for name, command in cli_module.network_group.commands.items():
        assert command.epilog and f"microvm network {name}" in command.epilog, name


# -- end to end in network namespaces ---------------------------------------------------------

@dataclass
class World:
    lab: Lab
    host: str
    uplink: str
    guests: dict[str, str]          # VM -> its namespace
    decl_file: Path
    run_dir: Path
    plan: Plan
    leases: dict[str, dict[str, str]] = field(default_factory=dict)

    def microvm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.lab.run(self.host, sys.executable, "-m", "microvm.cli", *args,
                            env={"PYTHONPATH": str(REPO / "generator"),
                                 "MICROVM_STATE_DIR": str(self.state_dir)}, timeout=120)

    @property
    def state_dir(self) -> Path:
        """Where `up` records the addresses it gave out (never the host's own)."""
        return self.run_dir.parent / "state"

    def up(self, decl: dict[str, Any] | None = None) -> None:
        decl = BASE if decl is None else decl
        self.decl_file.write_text(json.dumps(decl))
        self.plan = derive(decl)
        p = self.microvm("network", "up", str(self.decl_file), "--run-dir", str(self.run_dir))
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.microvm("network", "down", str(self.decl_file), "--run-dir",
                            str(self.run_dir))

    def ip(self, vm: str, network: str = "lan") -> str:
        return str(self.plan.member(vm, network).ipv4)

    def ip6(self, vm: str, network: str = "lan") -> str:
        return str(self.plan.member(vm, network).ipv6)

    def host_sh(self, *argv: str) -> str:
        return self.lab.run(self.host, *argv, check=True).stdout


GUESTS = {"web": "lan", "db": "lan", "far": "other"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, tap devices)")
    tmp = tmp_path_factory.mktemp("net")
    lab = Lab()
    try:
        host, uplink = lab.ns("host"), lab.ns("uplink")
        lab.veth(host, "up0", uplink, "eth0")
        for ns, dev, four, six in ((host, "up0", HOST4, HOST6), (uplink, "eth0", UPLINK4,
                                                                 UPLINK6)):
            lab.run(ns, "ip", "addr", "add", f"{four}/24", "dev", dev, check=True)
            lab.run(ns, "ip", "addr", "add", f"{six}/64", "dev", dev, "nodad", check=True)
            lab.run(ns, "ip", "link", "set", dev, "up", check=True)
        # the uplink knows nothing of the VMs' networks: without NAT no reply comes back
        lab.serve(uplink, "uplink", [80])
        plan = derive(BASE)
        guests = {}
        for vm, net in GUESTS.items():
            m = plan.member(vm, net)
            ns = guests[vm] = lab.ns(vm)
            # the host end is named as the VM's tap: `up` joins it to the bridge
            lab.veth(host, m.tap, ns, "eth0")
            lab.run(ns, "ip", "link", "set", "eth0", "address", m.mac, check=True)
            lab.run(ns, "ip", "link", "set", "eth0", "up", check=True)
            lab.serve(ns, vm, [443, 5353, 5432, 5433])
        w = World(lab, host, uplink, guests, tmp / "networks.json", tmp / "run", plan)
        w.up()
        script = udhcpc_script(tmp / "udhcpc.sh")
        for vm, net in GUESTS.items():
            lease = tmp / f"{vm}.lease"
            p = lab.run(guests[vm], "busybox", "udhcpc", "-i", "eth0", "-s", str(script), "-q",
                        "-n", "-t", "5", "-T", "2", env={"LEASE_FILE": str(lease)})
            assert p.returncode == 0, p.stderr
            w.leases[vm] = dict(line.split("=", 1) for line in lease.read_text().splitlines())
            m = plan.member(vm, net)
            if m.ipv6 is not None:  # the address DHCPv6 would give (busybox has no udhcpc6)
                lab.run(guests[vm], "ip", "addr", "add", f"{m.ipv6}/64", "dev", "eth0", "nodad",
                        check=True)
        for vm in ("web", "db"):  # IPv6's default route comes with a router advertisement
            wait_for(functools.partial(_ra_route, lab, guests[vm]), timeout=30)
        yield w
        w.down()
    finally:
        lab.close()


def test_each_guest_gets_its_derived_address_by_dhcp(world: World) -> None:
    for vm, net in GUESTS.items():
        n = world.plan.network(net)
        assert world.leases[vm] == {"ip": world.ip(vm, net), "mask": "24",
                                    "router": str(n.gateway4), "dns": str(n.gateway4),
                                    "domain": n.domain}, vm
    leases = (world.run_dir / "lan.leases").read_text()
    assert world.plan.member("web", "lan").mac in leases
    # and `up` recorded what it gave out, in the state directory, for the next `up`
    record = json.loads((world.state_dir / ".control" / "network-addresses.json").read_text())
    assert record == {n.name: {m.vm: {"ipv4": str(m.ipv4), "name": network.fqdn(n, m)}
                               for m in world.plan.members_of(n.name) if m.ipv4 is not None}
                      for n in world.plan.networks if world.plan.members_of(n.name)
                      and n.ipv4 is not None}


def _ra_route(lab: Lab, ns: str) -> bool:
    out = lab.run(ns, "ip", "-6", "route", "show", "default").stdout
    return "via fe80::" in out and "proto ra" in out


def test_router_advertisements_reach_the_guests(world: World) -> None:
    for vm in ("web", "db"):
        assert wait_for(functools.partial(_ra_route, world.lab, world.guests[vm]),
                        timeout=30), vm
    # the control: the network without IPv6 sends none
    assert not _ra_route(world.lab, world.guests["far"])
    # managed (DHCPv6), no SLAAC: no global address but the one the guest was given
    addrs = world.lab.run(world.guests["web"], "ip", "-6", "addr", "show", "dev", "eth0",
                          "scope", "global").stdout
    assert re.findall(r"inet6 (\S+)/", addrs) == [world.ip6("web")]


def test_dhcpv6_offers_each_guest_its_derived_address(world: World) -> None:
    # as a real client, it asks again: dnsmasq knows a DHCPv6 client's MAC (its fixed lease's
    # key) from the kernel's neighbour table, which may not have the guest yet (seen once in
    # a full run; each answer is kept for the message)
    def offered(vm: str, answers: list[str]) -> bool:
        answers.append(world.lab.dhcpv6(world.guests[vm], "eth0"))
        return answers[-1] == world.ip6(vm)

    for vm in ("web", "db"):
        answers: list[str] = []
        assert wait_for(functools.partial(offered, vm, answers), timeout=30), (vm, answers)
    # the control: no DHCPv6 server on the network without IPv6
    assert world.lab.dhcpv6(world.guests["far"], "eth0").startswith("FAIL")


def test_names_resolve_through_the_hosts_dnsmasq(world: World) -> None:
    out = world.lab.run(world.guests["db"], "busybox", "nslookup", "web.vm.internal",
                        "10.231.0.1").stdout
    assert world.ip("web") in out and world.ip6("web") in out, out
    out = world.lab.run(world.guests["far"], "busybox", "nslookup", "far.other.internal",
                        "10.232.0.1").stdout
    assert world.ip("far", "other") in out, out
    # the control: a name nobody declared is not found
    nope = world.lab.run(world.guests["db"], "busybox", "nslookup", "nope.vm.internal",
                         "10.231.0.1")
    assert world.ip("web") not in nope.stdout and "NXDOMAIN" in nope.stdout + nope.stderr


def test_guests_reach_the_uplink_through_nat(world: World) -> None:
    lab = world.lab
    assert lab.connect(world.guests["web"], UPLINK4, 80) == f"uplink {HOST4}"
    assert lab.connect(world.guests["db"], UPLINK6, 80) == f"uplink {HOST6}"
    # the network without uplinks is host-only
    assert lab.connect(world.guests["far"], UPLINK4, 80).startswith("FAIL")


def test_a_port_forward_is_reached_from_outside_and_from_the_host(world: World) -> None:
    lab = world.lab
    assert lab.connect(world.uplink, HOST4, 8443) == f"web {UPLINK4}"
    assert lab.connect(world.uplink, HOST6, 8443) == f"web {UPLINK6}"
    for target in (HOST4, "127.0.0.1", "10.231.0.1"):
        assert lab.connect(world.host, target, 8443).startswith("web "), target
    # from another VM of the network, through the host's address (hairpin): routed by the
    # host, so with br_netfilter off (this machine has it on; the namespace's own switch);
    # with it on, the DNAT'd frame is bridged from db to web and the isolation decides
    brnf = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    world.host_sh("sh", "-c", f"echo 0 > {brnf}")
    try:
        assert lab.connect(world.guests["db"], HOST4, 8443) == "web 10.231.0.1"
    finally:
        world.host_sh("sh", "-c", f"echo 1 > {brnf}")
    assert lab.connect(world.guests["db"], HOST4, 8443).startswith("FAIL")
    # UDP, on the DNS port: from outside it is db's; the VMs still ask dnsmasq on their gateway
    assert lab.connect(world.uplink, HOST4, 53, udp=True) == f"db {UPLINK4}"
    assert lab.connect(world.host, HOST4, 53, udp=True).startswith("db ")
    out = lab.run(world.guests["web"], "busybox", "nslookup", "db.vm.internal",
                  "10.231.0.1").stdout
    assert world.ip("db") in out, out
    # the control: a port nobody forwards
    assert lab.connect(world.uplink, HOST4, 8444).startswith("FAIL")
    assert lab.connect(world.uplink, HOST4, 54, udp=True).startswith("FAIL")


def test_one_network_cannot_reach_another(world: World) -> None:
    lab = world.lab
    assert lab.connect(world.guests["far"], world.ip("web"), 443).startswith("FAIL")
    assert lab.connect(world.guests["web"], world.ip("far", "other"), 443).startswith("FAIL")
    # the control: the host itself reaches both
    assert lab.connect(world.host, world.ip("far", "other"), 443) == "far 10.232.0.1"


@pytest.mark.parametrize("isolation", ["rules", "isolated", "open"])
def test_isolation_within_a_network(world: World, isolation: str) -> None:
    """rules: only web -> db:5432 (and its replies); isolated: nothing; open (the control):
    everything."""
    world.up(declaration(isolation=isolation))
    try:
        lab, web, db = world.lab, world.guests["web"], world.guests["db"]
        got = {
            "web->db:5432": lab.connect(web, world.ip("db"), 5432),
            "web->db:5433": lab.connect(web, world.ip("db"), 5433),
            "db->web:443": lab.connect(db, world.ip("web"), 443),
            "db->web:5432": lab.connect(db, world.ip("web"), 5432),
            "web->db:5432 (v6)": lab.connect(web, world.ip6("db"), 5432),
            "web->db:5353/udp": lab.connect(web, world.ip("db"), 5353, udp=True),
            "db->web:5353/udp": lab.connect(db, world.ip("web"), 5353, udp=True),
        }
        passed = {k for k, v in got.items() if not v.startswith("FAIL")}
        want = {"rules": {"web->db:5432", "web->db:5432 (v6)", "web->db:5353/udp"},
                "isolated": set(),
                "open": set(got)}[isolation]
        assert passed == want, got
        if "web->db:5432" in passed:
            assert got["web->db:5432"] == f"db {world.ip('web')}"
        # the gateway stays reachable whatever the isolation: DNS
        out = lab.run(web, "busybox", "nslookup", "db.vm.internal", "10.231.0.1").stdout
        assert world.ip("db") in out
    finally:
        world.up()


def test_a_spoofed_source_is_dropped(world: World) -> None:
    lab, web = world.lab, world.guests["web"]
    spoof4, spoof6 = "10.231.0.250", world.ip6("web").rsplit(":", 1)[0] + ":dead"
    lab.run(web, "ip", "addr", "add", f"{spoof4}/24", "dev", "eth0", check=True)
    lab.run(web, "ip", "addr", "add", f"{spoof6}/64", "dev", "eth0", "nodad", check=True)
    try:
        # the controls: the same connections from the guest's own addresses pass
        assert lab.connect(web, UPLINK4, 80, world.ip("web")) == f"uplink {HOST4}"
        assert lab.connect(web, UPLINK6, 80, world.ip6("web")) == f"uplink {HOST6}"
        assert lab.connect(web, world.ip("db"), 5432, world.ip("web")).startswith("db ")
        assert lab.connect(web, UPLINK4, 80, spoof4).startswith("FAIL")
        assert lab.connect(web, UPLINK6, 80, spoof6).startswith("FAIL")
        assert lab.connect(web, world.ip("db"), 5432, spoof4).startswith("FAIL")
        # another VM's address
        lab.run(web, "ip", "addr", "del", f"{spoof4}/24", "dev", "eth0", check=True)
        lab.run(web, "ip", "addr", "add", f"{world.ip('db')}/32", "dev", "eth0", check=True)
        assert lab.connect(web, UPLINK4, 80, world.ip("db")).startswith("FAIL")
        lab.run(web, "ip", "addr", "del", f"{world.ip('db')}/32", "dev", "eth0", check=True)
        # its own address from another MAC
        mac = world.plan.member("web", "lan").mac
        lab.run(web, "ip", "link", "set", "eth0", "address", "02:00:00:00:0b:ad", check=True)
        try:
            assert lab.connect(web, UPLINK4, 80).startswith("FAIL")
        finally:
            lab.run(web, "ip", "link", "set", "eth0", "address", mac, check=True)
            world.host_sh("ip", "neigh", "flush", "dev", world.plan.network("lan").bridge)
        assert lab.connect(web, UPLINK4, 80) == f"uplink {HOST4}"
    finally:
        lab.run(web, "ip", "addr", "del", f"{spoof6}/64", "dev", "eth0")
        lab.run(web, "ip", "addr", "del", f"{spoof4}/24", "dev", "eth0")


def test_up_again_after_a_flushed_ruleset_restores_the_table(world: World) -> None:
    lab = world.lab
    world.host_sh("nft", "flush", "ruleset")
    # without the table: no NAT (the uplink cannot answer), and the networks meet
    assert lab.connect(world.guests["web"], UPLINK4, 80).startswith("FAIL")
    assert lab.connect(world.guests["far"], world.ip("web"), 443) == \
        f"web {world.ip('far', 'other')}"
    world.up()
    assert lab.connect(world.guests["web"], UPLINK4, 80) == f"uplink {HOST4}"
    assert lab.connect(world.guests["far"], world.ip("web"), 443).startswith("FAIL")


# BASE declared on NixOS, whose nftables service loads the project's tables itself
# (networking.nftables.tables; tests/nix/nftables-standin.nix composes its script as NixOS does)
NIXOS_BASE = """{
  networking.hostName = "testhost";
  microvm.host.networks.lan = {
    ipv4 = "10.231.0.0/24"; ipv6 = "auto"; uplinks = [ "up0" ]; domain = "vm.internal";
    isolation = "rules";
    allow = [ { from = "web"; to = "db"; tcp = [ 5432 ]; udp = [ 5353 ]; } ];
    forwardPorts = [ { vm = "web"; hostPort = 8443; port = 443; }
                     { vm = "db"; hostPort = 53; port = 5353; proto = "udp"; } ];
  };
  microvm.host.networks.other = { ipv4 = "10.232.0.0/24"; domain = "other.internal"; };
  microvm.vms.web.config.microvm.interfaces = [ { type = "network"; network = "lan"; } ];
  microvm.vms.db.config.microvm.interfaces = [ { type = "network"; network = "lan"; } ];
  microvm.vms.far.config.microvm.interfaces = [ { type = "network"; network = "other"; } ];
}"""


def _tables(world: World) -> str:
    return "".join(world.host_sh("nft", "list", "table", family, network.TABLE)
                   for family in network.FAMILIES)


@pytest.mark.skipif(nix_problem() is not None, reason=str(nix_problem()))
@pytest.mark.parametrize("flush", [True, False])
def test_nixos_firewall_reloads_keep_the_declared_table(world: World, flush: bool) -> None:
    """On NixOS the tables are networking.nftables.tables too: the script nftables.service runs
    at start and at each reload (a flush of the whole ruleset, or the deletion of the tables it
    declares) loads the same tables `up` loads, so NAT and the networks' separation hold after
    a reload with no `up` run, beside the administrator's own table."""
    extra = ("{ imports = [ ./nftables-standin.nix ]; networking.nftables = { enable = true; " +
             f"flushRuleset = {'true' if flush else 'false'}; ruleset = ''table inet filter " +
             "{ chain input { type filter hook input priority 0; policy accept; }; }''; }; }")
    expr = f"(import ./host-network-eval.nix {{ inherit python repo; host = {NIXOS_BASE}; " + \
        f"extra = {extra}; }})"
    nixos = nix_json(expr)
    assert derive(json.loads(nixos["declaration"])).members == world.plan.members
    built = subprocess.run(["nix-build", *NIX_OPTS, "--no-out-link", *nix_args(), "-E",
                            f"{{ python, repo }}: {expr}.nftablesRules"], cwd=NIXDIR,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    rules = built.stdout.strip()
    lab = world.lab
    loaded = _tables(world)  # what `up` loaded
    try:
        world.host_sh("nft", "-f", rules)  # nftables.service starts
        world.host_sh("nft", "-f", rules)  # and reloads
        assert _tables(world) == loaded
        assert "table inet filter" in world.host_sh("nft", "list", "tables")
        assert lab.connect(world.guests["web"], UPLINK4, 80) == f"uplink {HOST4}"
        assert lab.connect(world.guests["far"], world.ip("web"), 443).startswith("FAIL")
        # the control: without the project's tables the networks meet
        world.host_sh("nft", "flush", "ruleset")
        assert lab.connect(world.guests["far"], world.ip("web"), 443) == \
            f"web {world.ip('far', 'other')}"
        world.host_sh("nft", "-f", rules)
        assert _tables(world) == loaded
        assert lab.connect(world.guests["far"], world.ip("web"), 443).startswith("FAIL")
    finally:
        world.host_sh("nft", "flush", "ruleset")
        world.up()
    assert _tables(world) == loaded


def test_up_and_down_refuse_a_bad_declaration_and_change_nothing(world: World,
                                                                tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(declaration(ipv4="172.17.1.0/24")))
    before = _snapshot(world)
    for command in ("up", "down"):
        p = world.microvm("network", command, str(bad), "--run-dir", str(world.run_dir))
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.startswith("error: networks.lan.ipv4: 172.17.1.0/24 overlaps")
    assert _snapshot(world) == before


def test_up_refuses_an_interface_in_the_bridges_way(world: World, tmp_path: Path) -> None:
    world.host_sh("ip", "link", "add", "mvb-x", "type", "veth", "peer", "name", "mvx-peer")
    try:
        decl = copy.deepcopy(BASE)
        decl["networks"]["x"] = {"ipv4": "10.233.0.0/24"}
        path = tmp_path / "x.json"
        path.write_text(json.dumps(decl))
        before = _snapshot(world)
        p = world.microvm("network", "up", str(path), "--run-dir", str(world.run_dir))
        assert (p.returncode, p.stderr) == (1, "error: mvb-x exists and is not a bridge " +
                                            "(networks.x)\n")
        assert _snapshot(world) == before
    finally:
        world.host_sh("ip", "link", "del", "mvb-x")


def _snapshot(world: World) -> dict[str, Any]:
    # the lease files are dnsmasq's, which rewrites them when it likes
    files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
             for p in sorted(world.run_dir.iterdir()) if p.suffix != ".leases"}
    # the bridges' running timers left out
    links = re.sub(r"\b\w+_timer +\S+", "", world.host_sh("ip", "-d", "link", "show"))
    return {"links": links,
            "addrs": world.host_sh("ip", "addr", "show"),
            "ruleset": world.host_sh("nft", "-a", "list", "ruleset"),
            "dnsmasq": _dnsmasq_pids(world), "files": files}


def _dnsmasq_pids(world: World) -> list[int]:
    pids = world.host_sh("ip", "netns", "pids", world.host).split()
    out = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"dnsmasq\0") and str(world.run_dir).encode() in cmdline:
            out.append(int(pid))
    return sorted(out)


def test_up_twice_changes_nothing(world: World) -> None:
    before = _snapshot(world)
    assert len(before["dnsmasq"]) == 2
    world.up()
    after = _snapshot(world)
    assert {k: v for k, v in after.items() if after[k] != before[k]} == {}
    # the control: a changed declaration changes the table, and only what changed
    world.up(declaration(isolation="open"))
    after = _snapshot(world)
    assert after["ruleset"] != before["ruleset"] and after["dnsmasq"] == before["dnsmasq"]
    world.up()


def test_up_joins_a_member_tap_that_left_its_bridge(world: World) -> None:
    """As for a VM whose tap was made after the last `up`: `up` again joins it."""
    tap = world.plan.member("db", "lan").tap
    world.host_sh("ip", "link", "set", "dev", tap, "nomaster")
    assert world.lab.connect(world.guests["db"], UPLINK4, 80).startswith("FAIL")
    world.up()
    assert "master mvb-lan" in world.host_sh("ip", "-o", "link", "show", "dev", tap)
    assert world.lab.connect(world.guests["db"], UPLINK4, 80) == f"uplink {HOST4}"


def test_up_removes_a_network_the_declaration_dropped(world: World) -> None:
    smaller = copy.deepcopy(BASE)
    del smaller["networks"]["other"], smaller["vms"]["far"]
    world.up(smaller)
    try:
        assert "mvb-other" not in world.host_sh("ip", "-o", "link", "show")
        assert len(_dnsmasq_pids(world)) == 1
        assert sorted(p.name for p in world.run_dir.iterdir()) == [
            "lan.conf", "lan.leases", "lan.pid", "microvm.nft", "state.json"]
        assert world.lab.connect(world.guests["web"], UPLINK4, 80) == f"uplink {HOST4}"
    finally:
        world.up()
    assert "mvb-other" in world.host_sh("ip", "-o", "link", "show")
    assert world.lab.connect(world.host, world.ip("far", "other"), 443).startswith("far ")


def test_down_leaves_nothing_and_is_idempotent(world: World) -> None:
    before_forwarding = "0"  # the namespace's default, before the first up
    assert world.host_sh("cat", "/proc/sys/net/ipv4/conf/up0/forwarding").strip() == "1"
    # the uplink keeps taking router advertisements while the host forwards IPv6
    assert world.host_sh("cat", "/proc/sys/net/ipv6/conf/up0/accept_ra").strip() == "2"
    try:
        for _ in range(2):
            p = world.down()
            assert p.returncode == 0, p.stderr
            links = world.host_sh("ip", "-o", "link", "show")
            assert "mvb-" not in links
            assert "microvm" not in world.host_sh("nft", "list", "tables")
            assert _dnsmasq_pids(world) == []
            assert not world.run_dir.exists()
            for key, value in (("ipv4/conf/up0/forwarding", before_forwarding),
                               ("ipv6/conf/all/forwarding", before_forwarding),
                               ("ipv6/conf/up0/accept_ra", "1")):
                assert world.host_sh("cat", f"/proc/sys/net/{key}").strip() == value, key
            # the VMs' taps are theirs: still there, on no bridge
            tap = world.plan.member("web", "lan").tap
            assert tap in links and "master" not in world.host_sh("ip", "-o", "link", "show",
                                                                  tap)
    finally:
        world.up()
    assert len(_dnsmasq_pids(world)) == 2
    assert world.lab.connect(world.guests["web"], UPLINK4, 80) == f"uplink {HOST4}"


def test_doctor_names_what_breaks_a_declared_network(scratch_ns: str, tmp_path: Path) -> None:
    """`microvm doctor --networks FILE`, in a namespace the test sets up as a host with Docker's
    forward drop and a VPN's route over the network's subnet; the same namespace without them
    is the control."""
    decl = tmp_path / "n.json"
    decl.write_text(json.dumps({"hostName": "h", "networks": {"lan": {"ipv4": "10.231.0.0/24"}},
                                "vms": {}}))

    def findings() -> list[str]:
        p = subprocess.run(["ip", "netns", "exec", scratch_ns, sys.executable, "-m",
                            "microvm.cli", "doctor", "--networks", str(decl), "--state-dir",
                            str(tmp_path / "state")], text=True, capture_output=True,
                           env={**os.environ, "NO_COLOR": "1"}, timeout=120)
        assert "Traceback" not in p.stderr, p.stderr
        return [line for line in p.stdout.splitlines() if line.split()[1:2] == ["networks"]
                or "networks:" in line]

    def run(*argv: str) -> None:
        subprocess.run(["ip", "netns", "exec", scratch_ns, *argv], check=True)

    br_nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if br_nf.exists():
        run("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0")
    control = findings()
    assert not [f for f in control if "forward drop" in f or "networks: lan" in f], control
    tun = Path("/dev/net/tun").stat().st_mode & 0o006
    assert any("/dev/net/tun" in f for f in control) == (not tun), control
    run("ip", "link", "add", "vpn0", "type", "veth", "peer", "name", "vpn1")
    run("ip", "link", "set", "vpn1", "up")
    run("ip", "link", "set", "vpn0", "up")
    run("ip", "route", "add", "10.231.0.0/25", "dev", "vpn0")
    run("nft", "add table ip filter; add chain ip filter FORWARD { type filter hook forward " +
        "priority 0; policy drop; }")
    if br_nf.exists():
        run("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
    found = findings()
    assert any(f.startswith("warn  networks: forward drop") and
               "table ip filter, chain FORWARD: drops what it does not accept" in f
               for f in found), found
    assert any(f.startswith("warn  networks: lan") and "route 10.231.0.0/25 dev vpn0 overlaps " +
               "10.231.0.0/24 (networks.lan)" in f for f in found), found
    assert any("br_netfilter" in f for f in found) == br_nf.exists(), found
