"""`microvm validate-host`: conflicts between the VMs of one host, each reported at the later
VM with both VMs and both option paths; what two VMs may share is not reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from microvm.document import from_document
from microvm.hostwide import host_problems

PCI = "0000:0a:00.0"


def vm(name: str, **microvm: Any) -> dict[str, Any]:
    return {"hostName": name, "microvm": {"kernel": "/k", "storeOnDisk": False, **microvm}}


def tap(id_: str, mac: str, kind: str = "tap", mode: str = "bridge") -> dict[str, Any]:
    extra: dict[str, Any] = {"macvtap": {"link": "eth0", "mode": mode}} if (
        kind == "macvtap") else {"bridge": "br0"} if kind == "bridge" else {}
    return {"type": kind, "id": id_, "mac": mac, **extra}


def fwd(port: int, address: str = "", proto: str = "tcp") -> dict[str, Any]:
    return {"proto": proto, "host": {"port": port, "address": address}, "guest": {"port": 22}}


USER_A = {"type": "user", "id": "u", "mac": "02:00:00:00:00:aa"}
M1, M2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
SHARE = {"tag": "s", "source": "/srv", "mountPoint": "/s", "proto": "virtiofs"}

# (name, VM a's options, VM b's options, the line about b, or None: no conflict)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], str | None]] = [
    ("same tap name", {"interfaces": [tap("vm0", M1)]}, {"interfaces": [tap("vm0", M2)]},
     "b: microvm.interfaces[0].id: network interface name 'vm0' is also used by a " +
     "(microvm.interfaces[0].id)"),
    ("same macvtap name", {"interfaces": [tap("mv0", M1, "macvtap")]},
     {"interfaces": [tap("x", "02:00:00:00:00:03"), tap("mv0", M2, "macvtap")]},
     "b: microvm.interfaces[1].id: network interface name 'mv0' is also used by a " +
     "(microvm.interfaces[0].id)"),
    ("tap and macvtap of one name", {"interfaces": [tap("n0", M1)]},
     {"interfaces": [tap("n0", M2, "macvtap")]},
     "b: microvm.interfaces[0].id: network interface name 'n0' is also used by a"),
    ("bridge tap and tap of one name", {"interfaces": [tap("n0", M1, "bridge")]},
     {"interfaces": [tap("n0", M2)]}, "b: microvm.interfaces[0].id: network interface name"),
    ("same MAC", {"interfaces": [tap("t1", M1)]}, {"interfaces": [tap("t2", M1)]},
     "b: microvm.interfaces[0].mac: MAC address '02:00:00:00:00:01' is also used by a " +
     "(microvm.interfaces[0].mac)"),
    ("same MAC in other case", {"interfaces": [tap("t1", "02:00:00:00:00:AB")]},
     {"interfaces": [tap("t2", "02:00:00:00:00:ab")]},
     "b: microvm.interfaces[0].mac: MAC address '02:00:00:00:00:ab' is also used by a"),
    ("same MAC on user networking", {"interfaces": [USER_A]}, {"interfaces": [USER_A]}, None),
    ("same vsock CID", {"vsock": {"cid": 5}}, {"vsock": {"cid": 5}},
     "b: microvm.vsock.cid: vsock CID '5' is also used by a (microvm.vsock.cid)"),
    ("different vsock CIDs", {"vsock": {"cid": 5}}, {"vsock": {"cid": 6}}, None),
    ("same forwarded host port", {"interfaces": [USER_A], "forwardPorts": [fwd(2222)]},
     {"interfaces": [USER_A], "forwardPorts": [fwd(80), fwd(2222)]},
     "b: microvm.forwardPorts[1].host.port: host tcp port *:2222 is also used by a " +
     "(microvm.forwardPorts[0].host.port)"),
    ("forwarded port on every address and on one",
     {"interfaces": [USER_A], "forwardPorts": [fwd(2222, "127.0.0.1")]},
     {"interfaces": [USER_A], "forwardPorts": [fwd(2222)]},
     "b: microvm.forwardPorts[0].host.port: host tcp port *:2222 is also used by a"),
    ("forwarded port on two addresses",
     {"interfaces": [USER_A], "forwardPorts": [fwd(2222, "127.0.0.1")]},
     {"interfaces": [USER_A], "forwardPorts": [fwd(2222, "127.0.0.2")]}, None),
    ("forwarded port, tcp and udp", {"interfaces": [USER_A], "forwardPorts": [fwd(53)]},
     {"interfaces": [USER_A], "forwardPorts": [fwd(53, proto="udp")]}, None),
    ("same absolute control socket", {"socket": "/run/vm.sock"}, {"socket": "/run/vm.sock"},
     "b: microvm.socket: socket '/run/vm.sock' is also used by a (microvm.socket)"),
    ("control socket outside both state directories", {"socket": "../shared.sock"},
     {"socket": "../shared.sock"},
     "b: microvm.socket: socket '../shared.sock' is also used by a (microvm.socket)"),
    ("relative control sockets", {"socket": "vm.sock"}, {"socket": "vm.sock"}, None),
    ("share socket of one is the control socket of the other", {"socket": "/run/x.sock"},
     {"shares": [{**SHARE, "socket": "/run/x.sock"}]},
     "b: microvm.shares[0].socket: socket '/run/x.sock' is also used by a (microvm.socket)"),
    ("same share socket", {"shares": [{**SHARE, "socket": "/run/fs.sock"}]},
     {"shares": [{**SHARE, "tag": "t", "socket": "/run/fs.sock"}]},
     "b: microvm.shares[0].socket: socket '/run/fs.sock' is also used by a " +
     "(microvm.shares[0].socket)"),
    ("same GPU device socket",
     {"hypervisor": "crosvm", "graphics": {"enable": True, "socket": "/run/gpu.sock"}},
     {"hypervisor": "cloud-hypervisor", "graphics": {"enable": True, "socket": "/run/gpu.sock"}},
     "b: microvm.graphics.socket: socket '/run/gpu.sock' is also used by a " +
     "(microvm.graphics.socket)"),
    ("GPU device sockets in each state directory",
     {"hypervisor": "crosvm", "graphics": {"enable": True}},
     {"hypervisor": "crosvm", "graphics": {"enable": True}}, None),
    ("same writable image", {"volumes": [{"image": "/srv/data.img", "size": 8}]},
     {"volumes": [{"image": "/srv/data.img", "size": 8}]},
     "b: microvm.volumes[0].image: volume image '/srv/data.img' (written by this VM) is " +
     "also used by a (microvm.volumes[0].image)"),
    ("image written by one, read by the other",
     {"volumes": [{"image": "/srv/data.img", "size": 8}]},
     {"volumes": [{"image": "/srv/data.img", "readOnly": True, "autoCreate": False}]},
     "b: microvm.volumes[0].image: volume image '/srv/data.img' (written by the other VM)"),
    ("image read by both",
     {"volumes": [{"image": "/srv/ro.img", "readOnly": True, "autoCreate": False}]},
     {"volumes": [{"image": "/srv/ro.img", "readOnly": True, "autoCreate": False}]}, None),
    ("relative images", {"volumes": [{"image": "data.img", "size": 8}]},
     {"volumes": [{"image": "data.img", "size": 8}]}, None),
    ("same PCI device", {"devices": [{"bus": "pci", "path": PCI}]},
     {"devices": [{"bus": "pci", "path": PCI.upper()}]},
     "b: microvm.devices[0].path: PCI device '0000:0A:00.0' is also used by a " +
     "(microvm.devices[0].path)"),
    ("same USB device", {"devices": [{"bus": "usb", "path": "1-2"}]},
     {"devices": [{"bus": "usb", "path": "1-2"}]},
     "b: microvm.devices[0].path: USB device '1-2' is also used by a"),
    ("same USB device, properties in another order",
     {"devices": [{"bus": "usb", "path": "vendorid=0x1,productid=0x2"}]},
     {"devices": [{"bus": "usb", "path": "productid=0x0002,vendorid=0x1"}]},
     "b: microvm.devices[0].path: USB device 'productid=0x0002,vendorid=0x1' is also used " +
     "by a (microvm.devices[0].path)"),
    ("two USB devices", {"devices": [{"bus": "usb", "path": "vendorid=0x1,productid=0x2"}]},
     {"devices": [{"bus": "usb", "path": "vendorid=0x1,productid=0x3"}]}, None),
    ("macvtap in passthru mode and another macvtap on its link",
     {"interfaces": [tap("mv0", M1, "macvtap", "passthru")]},
     {"interfaces": [tap("mv1", M2, "macvtap")]},
     "b: microvm.interfaces[0].macvtap.link: macvtap link 'eth0' (the other VM's macvtap in " +
     "passthru mode takes it) is also used by a (microvm.interfaces[0].macvtap.link)"),
    ("macvtap and another in passthru mode on its link",
     {"interfaces": [tap("mv0", M1, "macvtap")]},
     {"interfaces": [tap("mv1", M2, "macvtap", "passthru")]},
     "b: microvm.interfaces[0].macvtap.link: macvtap link 'eth0' (in passthru mode, which " +
     "takes the whole link) is also used by a (microvm.interfaces[0].macvtap.link)"),
    ("macvtaps sharing a link", {"interfaces": [tap("mv0", M1, "macvtap")]},
     {"interfaces": [tap("mv1", M2, "macvtap", "vepa")]}, None),
    ("tap named like another VM's macvtap link", {"interfaces": [tap("mv0", M1, "macvtap")]},
     {"interfaces": [tap("eth0", M2)]},
     "b: microvm.interfaces[0].id: network interface name 'eth0' is also used by a " +
     "(microvm.interfaces[0].macvtap.link)"),
    ("volume image at another VM's control socket", {"socket": "ctl.sock"},
     {"volumes": [{"image": "../a/ctl.sock", "size": 8}]},
     "b: microvm.volumes[0].image: volume image '../a/ctl.sock' (written by this VM) is also " +
     "used by a (microvm.socket)"),
    ("read-only image at another VM's control socket", {"socket": "/run/a.sock"},
     {"volumes": [{"image": "/run/a.sock", "readOnly": True, "autoCreate": False}]},
     "b: microvm.volumes[0].image: volume image '/run/a.sock' is also used by a " +
     "(microvm.socket)"),
    ("same vsock CID, hybrid vsock (cloud-hypervisor)",
     {"hypervisor": "cloud-hypervisor", "vsock": {"cid": 5}},
     {"hypervisor": "cloud-hypervisor", "vsock": {"cid": 5}}, None),
    ("same vsock CID, hybrid vsock (firecracker)",
     {"hypervisor": "firecracker", "vsock": {"cid": 5}},
     {"hypervisor": "firecracker", "vsock": {"cid": 5}}, None),
    ("same vsock CID, hybrid and vhost-vsock",
     {"hypervisor": "cloud-hypervisor", "vsock": {"cid": 5}}, {"vsock": {"cid": 5}}, None),
    ("same vsock CID, vhost-vsock (crosvm and qemu)",
     {"hypervisor": "crosvm", "vsock": {"cid": 5}}, {"vsock": {"cid": 5}},
     "b: microvm.vsock.cid: vsock CID '5' is also used by a (microvm.vsock.cid)"),
]


@pytest.mark.parametrize(("a", "b", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_conflict(a: dict[str, Any], b: dict[str, Any], line: str | None) -> None:
    vms = [from_document(vm("a", **a)), from_document(vm("b", **b))]
    got = [str(p) for p in host_problems(vms)]
    if line is None:
        assert got == []
    else:
        assert len(got) == 1 and got[0].startswith(line), got
    assert host_problems(vms[:1]) == [] and host_problems(vms[1:]) == []


def test_enough_cases() -> None:
    assert sum(1 for c in CASES if c[3] is not None) >= 15
    assert len({c[0] for c in CASES}) == len(CASES)


def test_same_host_name() -> None:
    got = [str(p) for p in host_problems([from_document(vm("a")), from_document(vm("a"))])]
    assert got == ["a: networking.hostName: host name (state directory and units) 'a' is " +
                   "also used by a (networking.hostName)",
                   # one state directory: the default control socket a.sock is the same file
                   "a: microvm.socket: socket 'a.sock' is also used by a (microvm.socket)"]


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "microvm.cli", *argv], capture_output=True,
                          text=True, timeout=60)


def test_cli(tmp_path: Path) -> None:
    docs = {"a": vm("a", vsock={"cid": 7}, interfaces=[tap("vm-a", M1)]),
            "b": vm("b", vsock={"cid": 8}, interfaces=[tap("vm-b", M2)]),
            "c": vm("c", vsock={"cid": 7}, interfaces=[tap("vm-a", M2)])}
    for name, d in docs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(d))
    files = [str(tmp_path / f"{n}.json") for n in docs]
    r = run_cli("validate-host", *files[:2])
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = run_cli("validate-host", *files)
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [
        "error: c: microvm.interfaces[0].id: network interface name 'vm-a' is also used by a " +
        "(microvm.interfaces[0].id)",
        "error: c: microvm.interfaces[0].mac: MAC address '02:00:00:00:00:02' is also used by " +
        "b (microvm.interfaces[0].mac)",
        "error: c: microvm.vsock.cid: vsock CID '7' is also used by a (microvm.vsock.cid)",
    ]
    (tmp_path / "bad.json").write_text(json.dumps(vm("d", vcpu=0)))
    r = run_cli("validate-host", files[0], str(tmp_path / "bad.json"))
    assert r.returncode == 2
    assert r.stderr == f"error: {tmp_path}/bad.json: microvm.vcpu: must be at least 1, got 0\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json", "bad.json",
                                                          "c.json"]
