"""Bad input: every broken document is refused with the exact option path, exit code 2, no
traceback, and nothing written to disk."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from microvm.document import from_document
from microvm.errors import ValidationError

Doc = dict[str, Any]


def base() -> Doc:
    return {"hostName": "t", "microvm": {"kernel": "/k/vmlinux", "storeOnDisk": False}}


def m(**kv: Any) -> Callable[[Doc], Any]:
    """Mutation setting microvm.* keys."""
    return lambda d: d["microvm"].update(kv)


def top(**kv: Any) -> Callable[[Doc], Any]:
    return lambda d: d.update(kv)


def nest(depth: int) -> list[Any]:
    """[[[...]]] `depth` lists deep."""
    out: list[Any] = []
    for _ in range(depth - 1):
        out = [out]
    return out


VOL = {"image": "a.img", "size": 8}
SHARE = {"tag": "a", "source": "/srv/a", "mountPoint": "/mnt/a"}
TAP = {"type": "tap", "id": "vm0", "mac": "02:00:00:00:00:01"}
USER = {"type": "user", "id": "u", "mac": "02:00:00:00:00:02"}
MACVTAP = {**TAP, "type": "macvtap", "macvtap": {"link": "eth0", "mode": "bridge"}}
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
    ("qcow2 on firecracker", m(hypervisor="firecracker", volumes=[{**VOL, "imageType": "qcow2"}]),
     "microvm.volumes[0].imageType", "firecracker reads only raw images, got 'qcow2'"),
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
     "microvm.interfaces[0].mac", "must be a MAC address like 02:00:00:00:00:01"),
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
    # numbers: integers are ints (JSON Schema counts 1024.0 as one), every number is bounded
    ("mem as a float", m(mem=1024.0), "microvm.mem", "must be an integer, got 1024.0"),
    ("volume size as a float", m(volumes=[{**VOL, "size": 8.0}]), "microvm.volumes[0].size",
     "must be an integer, got 8.0"),
    ("vcpu as a float with macvtap", m(vcpu=2.0, interfaces=[MACVTAP]), "microvm.vcpu",
     "must be an integer, got 2.0"),
    ("mem 1e12", m(mem=1e12), "microvm.mem", "must be an integer, got 1000000000000.0"),
    ("mem 1e19 as an integer", m(mem=10**19), "microvm.mem",
     "must be at most 16777216, got 10000000000000000000"),
    ("a million vcpus", m(vcpu=1_000_000), "microvm.vcpu", "must be at most 1024, got 1000000"),
    ("huge volume", m(volumes=[{**VOL, "size": 2**60}]), "microvm.volumes[0].size",
     "must be at most 1073741824"),
    ("huge hotplugMem", m(hotplugMem=2**40), "microvm.hotplugMem", "must be at most 16777216"),
    ("huge initialBalloonMem", m(initialBalloonMem=2**40), "microvm.initialBalloonMem",
     "must be at most 16777216"),
    ("huge threadPoolSize", m(virtiofsd={"threadPoolSize": 10**6}),
     "microvm.virtiofsd.threadPoolSize", "must be at most 1024"),
    ("NaN in firecracker.extraConfig",
     m(hypervisor="firecracker", firecracker={"extraConfig": {"x": float("nan")}}),
     "microvm.firecracker.extraConfig.x", "must be a finite number, got nan"),
    ("Infinity as mem", m(mem=float("inf")), "microvm.mem", "must be a finite number"),
    ("deep nesting in extraConfig",
     m(hypervisor="firecracker", firecracker={"extraConfig": {"a": nest(40)}}),
     "microvm.firecracker.extraConfig.a" + "[0]" * 28, "nested more than 32 deep"),
    # strings: no NUL (bash drops it), no lone surrogate (not UTF-8), no trailing newline
    ("lone surrogate in hostName", top(hostName="vm\udc80"), "networking.hostName",
     "lone surrogate"),
    ("lone surrogate in a tag", m(shares=[{**SHARE, "tag": "\ud800"}]), "microvm.shares[0].tag",
     "lone surrogate"),
    ("lone surrogate in kernel", m(kernel="/k/\udfff"), "microvm.kernel", "lone surrogate"),
    ("lone surrogate in a key", m(credentialFiles={"\ud800": "/x"}),
     "microvm.credentialFiles.\\ud800", "lone surrogate"),
    ("NUL in user", m(user="a\x00b"), "microvm.user", "must not contain NUL bytes"),
    ("NUL in cpu", m(cpu="host\x00"), "microvm.cpu", "must not contain NUL bytes"),
    ("NUL in preStart", m(preStart="echo\x00"), "microvm.preStart", "must not contain NUL"),
    ("NUL in a volume label", m(volumes=[{**VOL, "label": "l\x00"}]),
     "microvm.volumes[0].label", "must not contain NUL bytes"),
    ("NUL in initrdPath", m(initrdPath="/i\x00"), "microvm.initrdPath", "must not contain NUL"),
    ("NUL in virtiofsd.group", m(virtiofsd={"group": "kvm\x00"}), "microvm.virtiofsd.group",
     "must not contain NUL bytes"),
    ("NUL in qemu.machine", m(qemu={"machine": "q35\x00"}), "microvm.qemu.machine",
     "must not contain NUL bytes"),
    ("NUL in a device's qemu.id", m(devices=[{"bus": "usb", "path": "1-1",
                                              "qemu": {"id": "d\x00"}}]),
     "microvm.devices[0].qemu.id", "must not contain NUL bytes"),
    ("NUL in toplevel", top(toplevel="/t\x00"), "system.build.toplevel", "must not contain NUL"),
    ("NUL in runtimePath", top(runtimePath=["/b\x00"]), "runtimePath[0]",
     "must not contain NUL bytes"),
    ("mac with a trailing newline", m(interfaces=[{**TAP, "mac": "02:00:00:00:00:01\n"}]),
     "microvm.interfaces[0].mac", "must be a MAC address like 02:00:00:00:00:01"),
    ("machineId with a trailing newline",
     m(machineId="01234567-89ab-cdef-0123-456789abcdef\n"), "microvm.machineId",
     "must be a UUID"),
    ("PCI path with a trailing newline", m(devices=[{"bus": "pci", "path": "0000:01:00.0\n"}]),
     "microvm.devices[0].path", "must be a PCI address"),
    ("fsType with a trailing newline", m(volumes=[{**VOL, "fsType": "ext4\n"}]),
     "microvm.volumes[0].fsType", "must match"),
    ("extraArgsScript with a newline", m(extraArgsScript="/bin/a\n/bin/b"),
     "microvm.extraArgsScript", "must not contain control characters"),
    # the kernel command line: what the guest kernel takes (COMMAND_LINE_SIZE)
    ("a 10 MB kernelParams", m(kernelParams=["quiet", "a" * 10_000_000]),
     "microvm.kernelParams", "the kernel command line would be 10000"),
    ("kernelParams too long for the firecracker config file",
     m(hypervisor="firecracker", kernelParams=["a" * 2000]), "microvm.kernelParams",
     "the guest kernel takes at most 2048 (Linux COMMAND_LINE_SIZE)"),
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


def test_an_integer_python_cannot_print_is_refused() -> None:
    """json.loads refuses to make one (tests above); a document built in Python can hold it."""
    doc = base()
    doc["microvm"].update(mem=10**5000, firecracker={"extraConfig": {"n": -(10**5000)}})
    with pytest.raises(ValidationError) as e:
        from_document(doc)
    assert {str(p) for p in e.value.problems} == {
        "microvm.mem: must be a number of at most 4300 digits",
        "microvm.firecracker.extraConfig.n: must be a number of at most 4300 digits"}


def test_base_document_is_valid() -> None:
    from_document(copy.deepcopy(base()))


def run_cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "microvm.cli", *argv], capture_output=True,
                          text=True, timeout=timeout)


def assert_refused(r: subprocess.CompletedProcess[str], fragment: str) -> None:
    """exit 2, only `error: ` lines on stderr, no traceback, nothing on stdout."""
    assert r.returncode == 2, r
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines and all(ln.startswith("error: ") for ln in lines), lines
    assert fragment in r.stderr, (fragment, r.stderr)


BASE_TEXT = '"microvm": {"kernel": "/k/vmlinux", "storeOnDisk": false}'


@pytest.mark.parametrize(("content", "fragment"), [
    ('{"hostName": "a", "hostName": "b", ' + BASE_TEXT + "}",
     "error: networking.hostName: given more than once (duplicate key"),
    ('{"hostName": "a", "microvm": {"kernel": "/k", "vcpu": 1, "vcpu": 2}}',
     "error: microvm.vcpu: given more than once"),
    ('{"hostName": "a", ' + BASE_TEXT + ', "x": ' + "9" * 5000 + "}",
     "a number has more than 4300 digits"),
    ('{"hostName": "a", ' + BASE_TEXT + ', "x": ' + "[" * 1000 + "]" * 1000 + "}",
     "nested"),
    ('{"hostName": "a", ' + BASE_TEXT + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
     "nested too deeply"),
    ('{"hostName": "a", "microvm": {"kernel": "/k", "mem": NaN}}',
     "error: microvm.mem: must be a finite number, got nan"),
    ('{"hostName": "a", "microvm": {"kernel": "/k", "mem": 1e400}}',
     "error: microvm.mem: must be a finite number, got inf"),
])
def test_hostile_json_text(tmp_path: Path, content: str, fragment: str) -> None:
    src = tmp_path / "vm.json"
    src.write_text(content)
    out = tmp_path / "out"
    assert_refused(run_cli("validate", str(src)), fragment)
    assert_refused(run_cli("generate", str(src), "--out", str(out)), fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vm.json"]


def test_devices_fifos_and_huge_files_are_refused_not_read(tmp_path: Path) -> None:
    assert_refused(run_cli("validate", "/dev/zero", timeout=20), "/dev/zero is not a regular file")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: reading it would block forever
    assert_refused(run_cli("validate", str(fifo), timeout=20), "is not a regular file")
    big = tmp_path / "big.json"
    with big.open("w") as f:
        f.write('{"hostName": "a", ' + BASE_TEXT + ', "x": "')
        f.write("x" * (16 << 20))
        f.write('"}')
    assert_refused(run_cli("validate", str(big), timeout=20), "is larger than 16 MiB")


def test_error_output_escapes_control_characters(tmp_path: Path) -> None:
    """An unknown key cannot clear the screen or forge a second error line."""
    doc = base()
    doc["microvm"]["\x1b[2J\nerror: microvm.fake: forged\r"] = 1
    doc["microvm"]["credentialFiles"] = {"a\x07/b": "/x"}
    src = tmp_path / "vm.json"
    src.write_text(json.dumps(doc))
    r = run_cli("validate", str(src))
    assert_refused(r, "error: microvm.\\x1b[2J\\x0aerror: microvm.fake: forged\\x0d: unknown")
    assert not any(ch in r.stderr.replace("\n", "") for ch in "\x1b\r\x07")
    assert len(r.stderr.splitlines()) == 1
    r = run_cli("validate", str(tmp_path / "no\x1bpe.json"))
    assert r.returncode == 2 and "\x1b" not in r.stderr and "no\\x1bpe.json" in r.stderr


def test_a_directory_given_as_a_document_is_an_error_line(tmp_path: Path) -> None:
    """Not click's usage text: `error: PATH: is a directory`, exit 2, for every command that
    reads VM documents."""
    d = tmp_path / "somedir"
    d.mkdir()
    assert_refused(run_cli("validate", f"{d}/"), f"error: {d}: is a directory")
    assert_refused(run_cli("validate-host", str(d)), f"error: {d}: is a directory")
    assert_refused(run_cli("generate", str(d), "--out", str(tmp_path / "out")),
                   f"error: {d}: is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["somedir"]


def test_a_bad_host_name_is_reported_once_not_through_the_defaults_made_from_it() -> None:
    """The control socket and virtiofs sockets default to names made from the host name: a
    control character in it is the host name's problem only; a socket the user set that has
    the same fault is still reported by its own name."""
    share = {"tag": "t", "source": "/s", "mountPoint": "/m", "proto": "virtiofs"}
    doc: dict[str, Any] = {"hostName": "a\x01b", "microvm": {
        "kernel": "/k", "storeOnDisk": False, "shares": [share]}}
    with pytest.raises(ValidationError) as e:
        from_document(doc)
    assert [p.path for p in e.value.problems] == ["networking.hostName"]
    doc["microvm"]["socket"] = "x\x01.sock"
    with pytest.raises(ValidationError) as e:
        from_document(doc)
    assert sorted(p.path for p in e.value.problems) == ["microvm.socket", "networking.hostName"]
