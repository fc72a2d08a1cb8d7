"""Bad input: every broken document is refused with the exact option path, exit code 2, no
traceback, and nothing written to disk."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from microvm.config import from_document
from microvm.errors import ValidationError

Doc = dict[str, Any]


def base() -> Doc:
    return {"hostName": "t", "microvm": {"kernel": "/k/vmlinux", "storeOnDisk": False}}


def m(**kv: Any) -> Callable[[Doc], Any]:
    """Mutation setting microvm.* keys."""
    return lambda d: d["microvm"].update(kv)


def top(**kv: Any) -> Callable[[Doc], Any]:
    return lambda d: d.update(kv)


VOL = {"image": "a.img", "size": 8}
SHARE = {"tag": "a", "source": "/srv/a", "mountPoint": "/mnt/a"}
TAP = {"type": "tap", "id": "vm0", "mac": "02:00:00:00:00:01"}
USER = {"type": "user", "id": "u", "mac": "02:00:00:00:00:02"}
FWD = {"host": {"port": 2222}, "guest": {"port": 22}}

# (name, mutation, option path, fragment of the message)
CASES: list[tuple[str, Callable[[Doc], Any], str, str]] = [
    ("missing hostName", lambda d: d.pop("hostName"), "networking.hostName",
     "must be set (it has no default)"),
    ("missing kernel", lambda d: d["microvm"].pop("kernel"), "microvm.kernel", "must be set"),
    ("unknown top-level key", top(microvmm={}), "microvmm",
     "unknown option (did you mean 'microvm'?)"),
    ("unknown option", m(vcpus=2), "microvm.vcpus", "unknown option (did you mean 'vcpu'?)"),
    ("unknown nested option", m(volumes=[{**VOL, "sizee": 1}]), "microvm.volumes[0].sizee",
     "unknown option (did you mean 'size'?)"),
    ("vcpu zero", m(vcpu=0), "microvm.vcpu", "must be at least 1, got 0"),
    ("mem as string", m(mem="512"), "microvm.mem", "must be an integer, got '512'"),
    ("mem as bool", m(mem=True), "microvm.mem", "must be an integer, got true"),
    ("unknown hypervisor", m(hypervisor="qemuu"), "microvm.hypervisor",
     "(did you mean 'qemu'?)"),
    ("negative volume size", m(volumes=[VOL, {"image": "b.img", "size": -5}]),
     "microvm.volumes[1].size", "must be at least 1, got -5"),
    ("volume without image", m(volumes=[{"size": 1}]), "microvm.volumes[0].image", "must be set"),
    ("autoCreate without size", m(volumes=[{"image": "a.img"}]), "microvm.volumes[0].size",
     "must be set when autoCreate is true"),
    ("duplicate volume image", m(volumes=[VOL, VOL]), "microvm.volumes[1].image",
     "duplicate image 'a.img' (also used by microvm.volumes[0].image)"),
    ("serial too long", m(volumes=[{**VOL, "serial": "x" * 21}]), "microvm.volumes[0].serial",
     "at most 20 bytes"),
    ("autoCreate qcow2", m(volumes=[{**VOL, "imageType": "qcow2"}]),
     "microvm.volumes[0].imageType", "autoCreate makes raw images"),
    ("relative volume mountPoint", m(volumes=[{**VOL, "mountPoint": "data"}]),
     "microvm.volumes[0].mountPoint", "must be an absolute guest path"),
    ("duplicate share tag", m(shares=[SHARE, {**SHARE, "mountPoint": "/b"}]),
     "microvm.shares[1].tag", "duplicate tag 'a'"),
    ("share and volume on one mount point",
     m(shares=[SHARE], volumes=[{**VOL, "mountPoint": "/mnt/a/"}]),
     "microvm.volumes[0].mountPoint", "duplicate mount point '/mnt/a'"),
    ("unknown share proto", m(shares=[{**SHARE, "proto": "nfs"}]), "microvm.shares[0].proto",
     "must be one of '9p', 'virtiofs'; got 'nfs'"),
    ("virtiofs tag too long", m(shares=[{**SHARE, "proto": "virtiofs", "tag": "t" * 37}]),
     "microvm.shares[0].tag", "virtiofs tags are at most 36 bytes"),
    ("share tag with a slash", m(shares=[{**SHARE, "tag": "../x"}]), "microvm.shares[0].tag",
     "must not contain ',', '/'"),
    ("empty share source", m(shares=[{**SHARE, "source": ""}]), "microvm.shares[0].source",
     "must not be empty"),
    ("malformed MAC", m(interfaces=[{**TAP, "mac": "02:00:00:00:00"}]),
     "microvm.interfaces[0].mac", "must look like 02:00:00:00:00:01"),
    ("multicast MAC", m(interfaces=[{**TAP, "mac": "01:00:00:00:00:01"}]),
     "microvm.interfaces[0].mac", "must be a unicast address"),
    ("duplicate MAC", m(interfaces=[TAP, {**TAP, "id": "vm1", "mac": "02:00:00:00:00:01"}]),
     "microvm.interfaces[1].mac", "duplicate MAC"),
    ("duplicate interface id", m(interfaces=[TAP, {**TAP, "mac": "02:00:00:00:00:09"}]),
     "microvm.interfaces[1].id", "duplicate id 'vm0'"),
    ("tap name too long", m(interfaces=[{**TAP, "id": "a-very-long-tap-name"}]),
     "microvm.interfaces[0].id", "at most 15 bytes (IFNAMSIZ)"),
    ("tap name with a space", m(interfaces=[{**TAP, "id": "vm 0"}]), "microvm.interfaces[0].id",
     "not a valid interface name"),
    ("macvtap without link", m(interfaces=[{**TAP, "type": "macvtap",
                                            "macvtap": {"mode": "bridge"}}]),
     "microvm.interfaces[0].macvtap.link", "must be set for a macvtap interface"),
    ("bridge without bridge", m(interfaces=[{**TAP, "type": "bridge"}]),
     "microvm.interfaces[0].bridge", "must be set for a bridge interface"),
    ("unknown interface type", m(interfaces=[{**TAP, "type": "vde"}]),
     "microvm.interfaces[0].type", "must be one of 'user', 'tap', 'macvtap', 'bridge'"),
    ("forward without user net", m(forwardPorts=[FWD]), "microvm.forwardPorts[0]",
     "port forwarding needs an interface with type = \"user\""),
    ("port out of range", m(interfaces=[USER], forwardPorts=[
        {"host": {"port": 70000}, "guest": {"port": 22}}]),
     "microvm.forwardPorts[0].host.port", "must be at most 65535, got 70000"),
    ("bad forward address", m(interfaces=[USER], forwardPorts=[
        {"host": {"port": 1, "address": "localhost"}, "guest": {"port": 22}}]),
     "microvm.forwardPorts[0].host.address", "must be an IPv4 address"),
    ("reserved vsock cid", m(vsock={"cid": 2}), "microvm.vsock.cid",
     "must be between 3 and 4294967294"),
    ("balloon size without balloon", m(initialBalloonMem=64), "microvm.initialBalloonMem",
     "needs microvm.balloon = true"),
    ("balloon bigger than memory", m(balloon=True, mem=256, initialBalloonMem=256),
     "microvm.initialBalloonMem", "must be less than the guest's memory (256 MiB)"),
    ("hotplugged beyond hotplug", m(hotplugMem=128, hotpluggedMem=256), "microvm.hotpluggedMem",
     "must be at most microvm.hotplugMem (128)"),
    ("hotplug on the microvm machine", m(hotplugMem=128, qemu={"machine": "microvm"}),
     "microvm.hotplugMem", "virtio-mem needs PCI"),
    ("virtiofs on firecracker", m(hypervisor="firecracker",
                                  shares=[{**SHARE, "proto": "virtiofs"}]),
     "microvm.shares[0].proto",
     "virtiofs shares not supported by firecracker; hypervisors that support it: qemu"),
    ("9p on cloud-hypervisor", m(hypervisor="cloud-hypervisor", shares=[SHARE]),
     "microvm.shares[0].proto", "9p shares not supported by cloud-hypervisor"),
    ("cpu model on firecracker", m(hypervisor="firecracker", cpu="max"), "microvm.cpu",
     "CPU emulation not supported by firecracker"),
    ("vfkit on linux", m(hypervisor="vfkit"), "microvm.hypervisor",
     "vfkit does not run on x86_64-linux"),
    ("store disk missing", m(storeOnDisk=True), "microvm.storeDisk",
     "must be set when microvm.storeOnDisk is true"),
    ("host name with a newline", top(hostName="a\nb"), "networking.hostName",
     "must not contain control characters"),
    ("host name with a slash", top(hostName="a/b"), "networking.hostName",
     "must not contain '/'"),
    ("bad PCI address", m(devices=[{"bus": "pci", "path": "01:00.0"}]),
     "microvm.devices[0].path", "must be a PCI address like 0000:01:00.0"),
    ("bad machine id", m(machineId="not-a-uuid"), "microvm.machineId", "must be a UUID"),
    ("kernel param with newline", m(kernelParams=["quiet", "a\nb"]), "microvm.kernelParams[1]",
     "must not contain control characters"),
    ("machineOpts value not a string", m(qemu={"machineOpts": {"acpi": 1}}),
     "microvm.qemu.machineOpts.acpi", "must be a string, got 1"),
    ("control socket on alioth", m(hypervisor="alioth", socket="a.sock"), "microvm.socket",
     "a control socket (set microvm.socket = null) not supported by alioth"),
    ("format version", top(formatVersion=2), "formatVersion", "must be 1, got 2"),
    ("credential name with slash", m(credentialFiles={"a/b": "/run/x"}),
     "microvm.credentialFiles.a/b", "not a valid credential name"),
]


@pytest.mark.parametrize(("mutate", "path", "fragment"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_broken_document_is_refused(tmp_path: Path, mutate: Callable[[Doc], Any], path: str,
                                    fragment: str) -> None:
    doc = base()
    mutate(doc)
    src = tmp_path / "vm.json"
    src.write_text(json.dumps(doc), "utf-8")
    out = tmp_path / "out"
    for argv in (["validate", str(src)], ["generate", str(src), "--out", str(out)]):
        r = subprocess.run([sys.executable, "-m", "microvm.cli", *argv], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2, r
        assert "Traceback" not in r.stderr
        assert r.stdout == ""
        lines = r.stderr.splitlines()
        assert all(line.startswith("error: ") for line in lines), lines
        hits = [ln for ln in lines if ln.startswith(f"error: {path}: ")]
        assert hits, f"no problem at {path}: {lines}"
        assert any(fragment in ln for ln in hits), (fragment, hits)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vm.json"]


def test_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


def test_every_problem_is_reported_at_once() -> None:
    doc = base()
    doc["microvm"].update(vcpu=0, mem="x", volumes=[{"size": 1}])
    with pytest.raises(ValidationError) as e:
        from_document(doc)
    paths = {p.path for p in e.value.problems}
    assert paths == {"microvm.vcpu", "microvm.mem", "microvm.volumes[0].image"}


@pytest.mark.parametrize(("content", "fragment"), [
    ("{", "invalid JSON at line 1 column 2"),
    ("[]", "a VM document must be a JSON object, got list"),
    ("\udcff", None),
])
def test_unreadable_documents(tmp_path: Path, content: str, fragment: str | None) -> None:
    src = tmp_path / "vm.json"
    if fragment is None:
        src.write_bytes(b"\xff\xfe{")
        fragment = "is not UTF-8 text"
    else:
        src.write_text(content)
    r = subprocess.run([sys.executable, "-m", "microvm.cli", "validate", str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and fragment in r.stderr and "Traceback" not in r.stderr


def test_missing_file(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "microvm.cli", "validate",
                        str(tmp_path / "nope.json")], capture_output=True, text=True)
    assert r.returncode == 2 and "cannot read" in r.stderr and "Traceback" not in r.stderr


def test_base_document_is_valid() -> None:
    from_document(copy.deepcopy(base()))
