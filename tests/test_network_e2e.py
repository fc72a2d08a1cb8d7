"""Declared networks end to end (issue 23): two QEMU TCG guests from generated runners, each with
a `type = "network"` interface, on a network `microvm network up` made in a namespace the test
creates (with an uplink namespace that has no route back). One guest gets its derived address
by DHCP from the host's dnsmasq, the other is configured statically as its NixOS guest module
says; they resolve each other's names, reach the uplink through NAT, and a port forward reaches
one of them from the uplink side and from the host itself. The network's isolation is "rules":
what `allow` lists passes between them (web to db's port 5432), nothing else does (web to db's
port 80, db to web's), and a source address a guest was not given never leaves its tap. A third
guest on a second network reaches the uplink and never web. Nothing outside the test's
namespaces is touched."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from microvm.netplan import derive
from support import vmtest
from support.netns import GUEST_DHCP, Lab, wait_for
from support.nixeval import nix_json
from support.vmtest import VM, document, generate

pytestmark = pytest.mark.boot
NOBODY = pwd.getpwnam("nobody")

HOST4, UPLINK4, FAR4 = "192.0.2.1", "192.0.2.2", "198.51.100.7"
SPOOF4 = "10.232.0.250"  # in the network, given to no VM
DECL = {"hostName": "e2e", "networks": {"lan": {
    "ipv4": "10.232.0.0/24", "uplinks": ["up0"], "domain": "vm.internal", "isolation": "rules",
    "allow": [{"from": "web", "to": "db", "tcp": [5432]}],
    "forwardPorts": [{"vm": "web", "hostPort": 8080, "port": 80}]},
    "other": {"ipv4": "10.236.0.0/24", "uplinks": ["up0"], "domain": "other.internal"}},
    "vms": {"web": [{"network": "lan"}], "db": [{"network": "lan"}],
            "far": [{"network": "other"}]}}
# each guest: its network, the peer it looks up and probes, and the test's own parameters
GUESTS = {"web": ("lan", "db"), "db": ("lan", "web"), "far": ("other", "web")}

# the same host declared on NixOS: its module derives the addresses (nix/lib/netplan.nix), writes
# them into the declaration as pins and into db's static network configuration
NIX_HOST = """{
  networking.hostName = "e2e";
  microvm.host.networks.lan = {
    ipv4 = "10.232.0.0/24"; uplinks = [ "up0" ]; domain = "vm.internal"; isolation = "rules";
    allow = [ { from = "web"; to = "db"; tcp = [ 5432 ]; } ];
    forwardPorts = [ { vm = "web"; hostPort = 8080; port = 80; } ];
  };
  microvm.host.networks.other = {
    ipv4 = "10.236.0.0/24"; uplinks = [ "up0" ]; domain = "other.internal";
  };
  microvm.vms.far.config.microvm.interfaces = [ { type = "network"; network = "other"; } ];
  microvm.vms.web.config.microvm.interfaces =
    [ { type = "network"; network = "lan"; addressing = "dhcp"; } ];
  microvm.vms.db.config.microvm.interfaces = [ { type = "network"; network = "lan"; } ];
}"""

# the guest: DHCP on the interface whose MAC is the derived one, then what the test reads
GUEST = GUEST_DHCP + r"""
mac=$(param e2e.mac)
for d in /sys/class/net/*; do [ "$(cat "$d/address")" = "$mac" ] && dev=${d##*/}; done
ip link set "$dev" up
if [ -n "$(param e2e.static)" ]; then  # static: ADDRESS/LEN,GATEWAY as the NixOS guest writes
    ip addr add "$(param e2e.static | cut -d, -f1)" dev "$dev"
    gw=$(param e2e.static | cut -d, -f2)
    ip route replace default via "$gw" dev "$dev"
    mkdir -p /etc && printf 'nameserver %s\n' "$gw" > /etc/resolv.conf
    echo "E2E-STATIC $(param e2e.static)"
else
    udhcpc -i "$dev" -s /udhcpc.sh -q -n -t 20 -T 2 || echo "E2E-NO-LEASE"
fi
mkdir -p /www && echo "hello from $(param e2e.name)" > /www/index.html
httpd -p 80 -h /www
httpd -p 5432 -h /www
echo "E2E-PEER $(nslookup "$(param e2e.peer).vm.internal" | tr '\n' ' ')"
# busybox nc's -w bounds only the connect; Debian 12's passt (2023-03) can lose the server's FIN
# on a loaded machine, so the whole exchange is bounded too (the answer has arrived by then)
echo "E2E-UPLINK $(timeout 20 nc -w 5 "$(param e2e.far)" 80 </dev/null)"
get() {  # the page the peer's httpd on port $1 serves, or FAIL
    r=$(printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 nc -w 5 "$(param e2e.peerip)" "$1" |
        tail -n 1)
    echo "${r:-FAIL}"
}
if param e2e.allowed >/dev/null; then  # what the allow-list lets through (once the peer is up)
    i=0
    until [ "$(get 5432)" != FAIL ] || [ $i -ge 30 ]; do i=$((i + 1)); sleep 2; done
    echo "E2E-ALLOWED $(get 5432)"
    echo "E2E-DENIED $(get 80)"  # the peer's httpd on 80 started with the one on 5432
fi
if param e2e.spoof >/dev/null; then  # a source address this guest was not given
    gw=$(ip route show default | cut -d' ' -f3)
    ip addr add "$(param e2e.spoof)/32" dev "$dev"
    ping -c 2 -W 2 -I "$(param e2e.spoof)" "$gw" >/dev/null 2>&1 && s=answered || s=dropped
    echo "E2E-SPOOF $s"
    ip addr del "$(param e2e.spoof)/32" dev "$dev"
    ping -c 2 -W 2 "$gw" >/dev/null 2>&1 && s=answered || s=dropped
    echo "E2E-OWN $s"
fi
if param e2e.probe >/dev/null; then  # the other way, again and again: the test reads it
    (n=0; while :; do n=$((n + 1)); echo "E2E-PROBE $n $(get 80)"; sleep 3; done) &
fi
echo E2E-DONE
while :; do sleep 1; done
"""


@pytest.fixture
def lab(root_only: None) -> Iterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


def test_guests_on_two_declared_networks(lab: Lab, make_initrd: Callable[[str], Path],
                                         tmp_path: Path) -> None:
    host, uplink = lab.host_and_uplink(HOST4, UPLINK4)
    lab.serve(uplink, "uplink", [80])  # answers "uplink <peer address>"
    nixos = nix_json("(import ./host-network-eval.nix { inherit python repo; " +
                     f"host = {NIX_HOST}; }})")
    # what NixOS declares is what `microvm network` derives from the plain declaration
    assert derive(json.loads(nixos["declaration"])).members == derive(DECL).members
    [db_net] = nixos["networks"]["db"].values()
    assert nixos["networks"]["web"]["10-microvm-lan"]["networkConfig"]["DHCP"] == "ipv4"
    decl = tmp_path / "networks.json"
    decl.write_text(nixos["declaration"])
    up = lab.run(host, sys.executable, "-m", "microvm.cli", "network", "up", str(decl),
                 "--run-dir", str(tmp_path / "run"), "--state-dir", str(tmp_path / "state"))
    assert up.returncode == 0, up.stderr
    plan = derive(DECL)
    initrd = make_initrd(GUEST)
    vms: dict[str, VM] = {}
    stack = contextlib.ExitStack()
    stack.enter_context(vmtest.boot_lock())  # three VMs at once: no other boot meanwhile
    # db is configured statically, with what the NixOS guest module writes for it, and probes
    # web's port 80; web probes db's ports and spoofs a source address; far (on the other
    # network, statically too) probes web's port 80
    [far_net] = nixos["networks"]["far"].values()
    own = {"db": [f"e2e.static={db_net['address'][0]},{db_net['gateway'][0]}", "e2e.probe=1"],
           "web": ["e2e.allowed=1", f"e2e.spoof={SPOOF4}"],
           "far": [f"e2e.static={far_net['address'][0]},{far_net['gateway'][0]}",
                   "e2e.probe=1"]}
    try:
        for name, (net, peer) in GUESTS.items():
            member = plan.member(name, net)
            doc = document(name, vmtest.guest_kernel().vmlinux, initrd,
                           kernelParams=["quiet", f"e2e.mac={member.mac}", f"e2e.name={name}",
                                         f"e2e.peer={peer}", f"e2e.far={UPLINK4}",
                                         f"e2e.peerip={plan.member(peer, 'lan').ipv4}",
                                         *own[name]],
                           interfaces=[{"type": "network", "network": net}])
            runner = generate(doc, tmp_path / name)
            vms[name] = stack.enter_context(
                VM(runner, tmp_path / name, wrap=["ip", "netns", "exec", host], lock=False))
        for name, vm in vms.items():
            net, peer = GUESTS[name]
            member, gateway = plan.member(name, net), plan.network(net).gateway4
            vm.wait_for("E2E-DONE", timeout=240)
            console = vm.console
            if name != "web":
                assert f"E2E-STATIC {member.ipv4}/24,{gateway}" in console, console[-3000:]
            else:
                assert (f"E2E-LEASE ip={member.ipv4} router={gateway} dns={gateway} " +
                        "domain=vm.internal") in console, console[-3000:]
            if net == "lan":  # the other network's DNS knows only its own names
                peer_line = next(line for line in console.splitlines() if "E2E-PEER" in line)
                assert str(plan.member(peer, "lan").ipv4) in peer_line, peer_line
            # NAT: the uplink saw the host's address, not the guest's
            assert f"E2E-UPLINK uplink {HOST4}" in console, console[-3000:]
        # the forward to web:80, from the uplink side and from the host itself
        web = "hello from web"
        assert wait_for(lambda: web in lab.run(
            uplink, "busybox", "wget", "-q", "-O", "-", f"http://{HOST4}:8080/").stdout, 30)
        assert web in lab.run(host, "busybox", "wget", "-q", "-O", "-",
                              "http://127.0.0.1:8080/").stdout
        # isolation "rules": web reaches db's allowed port and no other; the control is the
        # allowed port, and the gateway answering web's own address
        console = vms["web"].console
        assert "E2E-ALLOWED hello from db" in console, console[-3000:] + vms["db"].console[-2000:]
        assert "E2E-DENIED FAIL" in console, console[-3000:]
        assert "E2E-SPOOF dropped" in console and "E2E-OWN answered" in console, console[-3000:]
        # db's and far's probes of web's port 80, from two after this point on (web's httpd is
        # up: the forward just reached it), all fail: isolation within lan, and no traffic
        # between two networks
        for name in ("db", "far"):
            seen = len(re.findall(r"E2E-PROBE \d+ ", vms[name].console))
            vms[name].wait_for(f"E2E-PROBE {seen + 2} ", timeout=60)
            probes = re.findall(r"E2E-PROBE (\d+) (.*)", vms[name].console)
            assert [r for n, r in probes if int(n) > seen] and \
                all(r.strip() == "FAIL" for n, r in probes if int(n) > seen), (name, probes)
    finally:
        stack.close()
        down = lab.run(host, sys.executable, "-m", "microvm.cli", "network", "down",
                       str(decl), "--run-dir", str(tmp_path / "run"), "--state-dir",
                       str(tmp_path / "state"))
        assert down.returncode == 0, down.stderr
    links = lab.run(host, "ip", "link").stdout
    assert "mvb-lan" not in links and "mvb-other" not in links


def test_a_guest_run_rootless_gets_passts_network(lab: Lab, make_initrd: Callable[[str], Path],
                                                  tmp_path: Path) -> None:
    """A VM with a network interface run by an unprivileged user (nobody), with no tap made
    for it: the runner starts passt and QEMU uses its socket (-netdev stream). The guest gets
    an address by DHCP, reaches the uplink, and microvm.forwardPorts reach it through passt."""
    host, uplink = lab.host_and_uplink(HOST4, UPLINK4, default_route=True)
    # the server beyond the gateway (passt maps the gateway's own address to the host)
    lab.run(uplink, "ip", "addr", "add", f"{FAR4}/32", "dev", "lo", check=True)
    lab.serve(uplink, "uplink", [80])
    # everything nobody reads or writes, in a directory nobody may enter
    world = Path(tempfile.mkdtemp(prefix="microvm-rootless-"))
    try:
        world.chmod(0o755)
        kernel = world / "vmlinux"
        shutil.copy(vmtest.guest_kernel().vmlinux, kernel)
        initrd = world / "initrd.gz"
        shutil.copy(make_initrd(GUEST), initrd)
        mac = "02:00:00:00:00:51"
        doc = document("web", kernel, initrd,
                       kernelParams=["quiet", f"e2e.mac={mac}", "e2e.name=web", "e2e.peer=web",
                                     f"e2e.far={FAR4}"],
                       interfaces=[{"type": "network", "network": "lan", "mac": mac}],
                       forwardPorts=[{"from": "host", "host": {"port": 8080},
                                      "guest": {"port": 80}}])
        runner = generate(doc, world / "src")
        vmdir = world / "vm"
        vmdir.mkdir()
        os.chown(vmdir, NOBODY.pw_uid, NOBODY.pw_gid)
        for path in [world, *world.rglob("*")]:
            if path != vmdir:
                path.chmod(path.stat().st_mode | 0o005)
        wrap = ["ip", "netns", "exec", host, "setpriv", f"--reuid={NOBODY.pw_uid}",
                f"--regid={NOBODY.pw_gid}", "--clear-groups", "--"]
        with VM(runner, vmdir, wrap=wrap) as vm:
            vm.wait_for("E2E-DONE", timeout=240)
            console = vm.console
            assert "E2E-LEASE ip=" in console and "E2E-NO-LEASE" not in console, console[-3000:]
            # passt's guest has the host's address: the uplink sees the host
            assert f"E2E-UPLINK uplink {HOST4}" in console, console[-3000:]
            got = lab.run(uplink, "busybox", "wget", "-q", "-O", "-", f"http://{HOST4}:8080/")
            assert "hello from web" in got.stdout, got.stderr
            procs = [line.split(None, 1) for line in
                     lab.run(host, "ps", "-eo", "user=,args=").stdout.splitlines()
                     if "--socket web-" in line and "passt" in line]
            assert procs and all(u == "nobody" for u, _ in procs), procs  # the VM's user's
            assert not lab.run(host, "ip", "-o", "link", "show", "type", "tun").stdout.strip()
    finally:
        shutil.rmtree(world, ignore_errors=True)
