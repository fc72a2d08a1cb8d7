"""End to end: generated QEMU runners boot a real guest under TCG on this machine.

Each test writes a VM document, runs `microvm generate`, starts bin/microvm-run and talks to
the guest over its serial console (and QMP, tap, user networking). Boots are serialised.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import vmtest
from support.vmtest import VM, document, generate

pytestmark = pytest.mark.boot

InitrdFactory = Callable[[str], Path]


def qmp(sock: Path, command: dict[str, object]) -> dict[str, object]:
    """One QMP command over a fresh connection; returns the "return" object."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(sock))
        f = s.makefile("rw")
        json.loads(f.readline())  # greeting
        for cmd in ({"execute": "qmp_capabilities"}, command):
            f.write(json.dumps(cmd) + "\n")
            f.flush()
            while True:
                reply = json.loads(f.readline())
                if "event" not in reply:
                    break
            assert "error" not in reply, reply
        result: dict[str, object] = reply["return"]
        return result


def wait_socket(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_boot_and_shutdown(make_initrd: InitrdFactory, tmp_path: Path) -> None:
    """The example boots to a marker; microvm-shutdown powers it off; QEMU exits by itself."""
    initrd = make_initrd("power_button; echo E2E-READY; while :; do sleep 1; done\n")
    runner = generate(document("boot", vmtest.guest_kernel().vmlinux, initrd), tmp_path)
    # no MICROVM_ACCEL: the runner itself finds out whether KVM works (here it does not)
    with VM(runner, tmp_path, env={"MICROVM_ACCEL": ""}) as vm:
        vm.wait_for("E2E-READY")
        if Path("/dev/kvm").exists() and "KVM is not usable here" not in vm.console:
            assert "accel=kvm" in Path(f"/proc/{vm.proc.pid}/cmdline").read_text()
        assert vm.proc.poll() is None
        vm.run_tool("microvm-shutdown")
        assert vm.wait_exit(30) == 0
        assert "reboot: Power down" in vm.console
    # a second shutdown of a stopped VM is not an error
    assert vm.run_tool("microvm-shutdown").returncode == 0


# the guest's side of the volume tests: mount the volume labelled data, say what an earlier run
# left, write this run's note
VOLUME_SCRIPT = r"""
dev=$(disk_by_serial data)
mkdir -p /mnt/data && mount -t ext4 "$dev" /mnt/data
if [ -e /mnt/data/note ]; then echo "E2E-FOUND:$(cat /mnt/data/note)"; fi
echo "run-$(param e2e.run)" > /mnt/data/note
umount /mnt/data && echo E2E-WRITTEN
"""


def test_volume_is_created_written_and_kept(make_initrd: InitrdFactory, tmp_path: Path) -> None:
    script = VOLUME_SCRIPT
    volume = {"image": "vols/data.img", "size": 32, "serial": "data", "label": "data"}
    image = tmp_path / "vols" / "data.img"
    for run in (1, 2):
        initrd = make_initrd(script)
        doc = document("vol", vmtest.guest_kernel().vmlinux, initrd, volumes=[volume],
                       kernelParams=["quiet", f"e2e.run={run}"])
        runner = generate(doc, tmp_path)
        with VM(runner, tmp_path) as vm:
            vm.wait_for("E2E-WRITTEN")
            assert vm.wait_exit() == 0
        if run == 1:
            assert "E2E-FOUND" not in vm.console
            inode = image.stat().st_ino
        else:
            # the second run found the first run's file: the image was kept, not recreated
            assert "E2E-FOUND:run-1" in vm.console
            assert image.stat().st_ino == inode
        out = subprocess.run(["debugfs", "-R", "cat /note", str(image)], capture_output=True,
                             text=True, check=True).stdout
        assert out == f"run-{run}\n"
    # the label asked for is on the filesystem
    info = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True).stdout
    assert "Filesystem volume name:   data" in info
    assert not list(image.parent.glob("*.microvm-new.*"))


def test_a_qcow2_volume_is_created_and_the_guest_uses_it(make_initrd: InitrdFactory,
                                                        tmp_path: Path) -> None:
    """autoCreate with imageType = "qcow2" (accepted as microvm.nix does): the runner makes the
    missing image as qcow2 holding the file system, QEMU opens it as qcow2, the guest mounts
    and writes it, and the second run finds the first run's file in the same image."""
    script = VOLUME_SCRIPT
    volume = {"image": "data.qcow2", "size": 32, "serial": "data", "imageType": "qcow2"}
    image = tmp_path / "data.qcow2"
    for run in (1, 2):
        doc = document("vol", vmtest.guest_kernel().vmlinux, make_initrd(script),
                       volumes=[volume], kernelParams=["quiet", f"e2e.run={run}"])
        runner = generate(doc, tmp_path)
        with VM(runner, tmp_path) as vm:
            vm.wait_for("E2E-WRITTEN")
            assert vm.wait_exit() == 0
        assert ("E2E-FOUND:run-1" in vm.console) == (run == 2)
    info = subprocess.run(["qemu-img", "info", "-f", "qcow2", "--output=json", str(image)],
                          capture_output=True, text=True, check=True).stdout
    assert '"virtual-size": 33554432' in info
    raw = tmp_path / "data.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(image), str(raw)],
                   check=True)
    out = subprocess.run(["debugfs", "-R", "cat /note", str(raw)], capture_output=True,
                         text=True, check=True).stdout
    assert out == "run-2\n"


def test_q35_machine_with_pci_devices(make_initrd: InitrdFactory, tmp_path: Path) -> None:
    """On q35 the devices are virtio-*-pci with disable-legacy=on and romfile= (no iPXE): the
    guest finds its volume by serial and its network card, and powers off through ACPI."""
    script = r"""power_button
dev=$(disk_by_serial data) && echo "E2E-DISK:$dev"
ls /sys/class/net | grep -q eth0 && echo E2E-NIC
echo E2E-READY; while :; do sleep 1; done
"""
    doc = document("pcivm", vmtest.guest_kernel().vmlinux, make_initrd(script),
                   qemu={"machine": "q35"},
                   volumes=[{"image": "data.img", "size": 16, "serial": "data"}],
                   interfaces=[{"type": "user", "id": "u0", "mac": "02:00:00:00:00:09"}])
    with VM(generate(doc, tmp_path), tmp_path) as vm:
        vm.wait_for("E2E-READY")
        assert "E2E-DISK:/dev/vda" in vm.console and "E2E-NIC" in vm.console, vm.console
        argv = Path(f"/proc/{vm.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"virtio-blk-pci,drive=vol0,serial=data,disable-legacy=on" in argv
        vm.run_tool("microvm-shutdown")
        assert vm.wait_exit() == 0


def test_existing_volume_is_never_touched(make_initrd: InitrdFactory, tmp_path: Path) -> None:
    """A file already at a volume's path (even garbage) is attached as it is, never mkfs'd."""
    (tmp_path / "user.img").write_bytes(b"precious" * 4096)
    before = (tmp_path / "user.img").read_bytes()
    initrd = make_initrd("echo E2E-UP\n")
    doc = document("keep", vmtest.guest_kernel().vmlinux, initrd,
                   volumes=[{"image": "user.img", "size": 64}])
    with VM(generate(doc, tmp_path), tmp_path) as vm:
        vm.wait_for("E2E-UP")
        vm.wait_exit()
    assert (tmp_path / "user.img").read_bytes() == before


@pytest.mark.parametrize("fs", ["erofs", "squashfs"])
def test_store_disk_mounts_read_only(make_initrd: InitrdFactory, tmp_path: Path,
                                     fs: str) -> None:
    tree = tmp_path / "store"
    (tree / "abc-hello").mkdir(parents=True)
    (tree / "abc-hello" / "greeting").write_text("hello from the store\n")
    image = tmp_path / f"store.{fs}"
    if fs == "erofs":
        subprocess.run(["mkfs.erofs", "--quiet", str(image), str(tree)], check=True)
    else:
        subprocess.run(["mksquashfs", str(tree), str(image), "-noappend", "-quiet"], check=True)
    script = f"""
dev=$(disk_by_serial store)
echo "E2E-RO:$(cat /sys/block/${{dev#/dev/}}/ro)"
mkdir -p /nix/store && mount -t {fs} -o ro "$dev" /nix/store
echo "E2E-READ:$(cat /nix/store/abc-hello/greeting)"
if touch /nix/store/x 2>/dev/null; then echo E2E-WRITABLE; fi
echo E2E-DONE
"""
    doc = document("store", vmtest.guest_kernel().vmlinux, make_initrd(script),
                   storeOnDisk=True, storeDisk=str(image), storeDiskType=fs)
    with VM(generate(doc, tmp_path), tmp_path) as vm:
        vm.wait_for("E2E-DONE")
        vm.wait_exit()
    assert "E2E-RO:1" in vm.console
    assert "E2E-READ:hello from the store" in vm.console
    assert "E2E-WRITABLE" not in vm.console


def test_9p_share_both_ways(make_initrd: InitrdFactory, tmp_path: Path) -> None:
    share = tmp_path / "shared dir"
    share.mkdir()
    (share / "from-host").write_text("host says hi\n")
    script = """
mkdir -p /mnt/share && mount -t 9p -o trans=virtio,version=9p2000.L share /mnt/share
echo "E2E-READ:$(cat /mnt/share/from-host)"
echo "guest says hi" > /mnt/share/from-guest && sync
umount /mnt/share && echo E2E-DONE
"""
    doc = document("ninep", vmtest.guest_kernel().vmlinux, make_initrd(script),
                   shares=[{"tag": "share", "source": str(share), "mountPoint": "/mnt/share"}])
    with VM(generate(doc, tmp_path), tmp_path) as vm:
        vm.wait_for("E2E-DONE")
        vm.wait_exit()
    assert "E2E-READ:host says hi" in vm.console
    assert (share / "from-guest").read_text() == "guest says hi\n"


NO_VIRTIOFSD = not Path("/usr/lib/qemu/virtiofsd").exists() and not vmtest.have("virtiofsd")


@pytest.mark.skipif(NO_VIRTIOFSD, reason="no virtiofsd (Debian: in qemu-system-common)")
def test_virtiofs_share_starts_its_own_virtiofsd(make_initrd: InitrdFactory, tmp_path: Path,
                                                 root_only: None) -> None:
    share = tmp_path / "vfs"
    share.mkdir()
    (share / "from-host").write_text("over virtiofs\n")
    script = """
mkdir -p /mnt/vfs && mount -t virtiofs vfs /mnt/vfs
echo "E2E-READ:$(cat /mnt/vfs/from-host)"
echo back > /mnt/vfs/from-guest && sync && umount /mnt/vfs && echo E2E-DONE
"""
    doc = document("vfs", vmtest.guest_kernel().vmlinux, make_initrd(script),
                   shares=[{"tag": "vfs", "proto": "virtiofs", "source": str(share),
                            "mountPoint": "/mnt/vfs"}],
                   virtiofsd={"group": None})
    with VM(generate(doc, tmp_path), tmp_path) as vm:
        vm.wait_for("E2E-DONE")
        assert vm.wait_exit() == 0
    assert "E2E-READ:over virtiofs" in vm.console
    assert (share / "from-guest").read_text() == "back\n"
    # virtiofsd went away with the VM
    time.sleep(0.5)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path / "vfs-virtiofs-vfs.sock") not in ps
    assert "vfs-virtiofs-vfs.sock" not in ps


def test_balloon_changes_what_qmp_reports(make_initrd: InitrdFactory, tmp_path: Path) -> None:
    initrd = make_initrd("power_button; echo E2E-READY; while :; do sleep 1; done\n")
    doc = document("balloon", vmtest.guest_kernel().vmlinux, initrd, balloon=True)
    with VM(generate(doc, tmp_path), tmp_path) as vm:
        vm.wait_for("E2E-READY")
        sock = tmp_path / "balloon.sock"
        assert qmp(sock, {"execute": "query-balloon"})["actual"] == 256 << 20
        vm.run_tool("microvm-balloon", "100")
        deadline = time.monotonic() + 20
        while qmp(sock, {"execute": "query-balloon"})["actual"] != 156 << 20:
            assert time.monotonic() < deadline, "balloon never reached 156 MiB"
            time.sleep(0.2)
        bad = vm.run_tool("microvm-balloon", "300", check=False)
        assert bad.returncode == 2
        assert "less than the guest's 256 MiB" in bad.stderr
        vm.run_tool("microvm-shutdown")
        assert vm.wait_exit() == 0


def test_qemu_drops_to_microvm_user(make_initrd: InitrdFactory, tmp_path: Path) -> None:
    """Started as root with microvm.user, QEMU (7.2 here: -runas, not -run-with) keeps its
    seccomp sandbox, runs as that user, and still powers off through QMP."""
    assert os.geteuid() == 0, "this test starts QEMU as root"
    initrd = make_initrd("power_button; echo E2E-READY; while :; do sleep 1; done\n")
    doc = document("runas", vmtest.guest_kernel().vmlinux, initrd, user="nobody")
    with VM(generate(doc, tmp_path), tmp_path) as vm:
        vm.wait_for("E2E-READY")
        status = Path(f"/proc/{vm.proc.pid}/status").read_text()
        uids = next(x for x in status.splitlines() if x.startswith("Uid:")).split()[1:]
        assert uids == ["65534"] * 4, status
        argv = Path(f"/proc/{vm.proc.pid}/cmdline").read_bytes().split(b"\0")
        spelling = argv[argv.index(b"-runas") + 1] if b"-runas" in argv else None
        has_run_with = subprocess.run(["qemu-system-x86_64", "-run-with", "user=nobody",
                                       "-version"], capture_output=True).returncode == 0
        assert spelling == (None if has_run_with else b"nobody")
        sandbox = argv[argv.index(b"-sandbox") + 1]
        assert b"elevateprivileges=allow" in sandbox and b"spawn=deny" in sandbox
        vm.run_tool("microvm-shutdown")
        assert vm.wait_exit() == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_user_networking_port_forward(make_initrd: InitrdFactory, tmp_path: Path) -> None:
    port = free_port()
    script = """
net_up
power_button
echo E2E-NET-READY
while :; do echo HELLO-FROM-GUEST | nc -l -p 22; done
"""
    doc = document("usernet", vmtest.guest_kernel().vmlinux, make_initrd(script),
                   kernelParams=["quiet", "e2e.ip=10.0.2.15/24", "e2e.gw=10.0.2.2"],
                   interfaces=[{"type": "user", "id": "usernet", "mac": "02:00:00:00:00:01"}],
                   forwardPorts=[{"host": {"address": "127.0.0.1", "port": port},
                                  "guest": {"port": 22}}])
    with VM(generate(doc, tmp_path), tmp_path) as vm:
        vm.wait_for("E2E-NET-READY")
        deadline = time.monotonic() + 30
        data = b""
        while b"HELLO-FROM-GUEST" not in data:
            assert time.monotonic() < deadline, f"no reply on port {port}: {data!r}"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    data = s.recv(100)
            except OSError:
                time.sleep(0.2)
        vm.run_tool("microvm-shutdown")
        assert vm.wait_exit() == 0


@pytest.fixture
def netns(root_only: None) -> Iterator[str]:
    name = f"mvt-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def in_ns(ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=60)


NET_SCRIPT = "net_up; echo E2E-NET-READY; while :; do sleep 1; done\n"


@pytest.mark.parametrize("vcpu", [1, 2], ids=["single-queue", "multi-queue"])
def test_tap_networking_in_netns(make_initrd: InitrdFactory, tmp_path: Path, netns: str,
                                 vcpu: int) -> None:
    """microvm-run (as root) creates the tap with tap-up (multi_queue with one queue pair per
    vCPU); the host side pings the guest."""
    doc = document("tapvm", vmtest.guest_kernel().vmlinux, make_initrd(NET_SCRIPT),
                   kernelParams=["quiet", "e2e.ip=10.77.0.2/24"], vcpu=vcpu,
                   interfaces=[{"type": "tap", "id": "vm-tap0", "mac": "02:00:00:00:00:02"}])
    runner = generate(doc, tmp_path)
    with VM(runner, tmp_path, wrap=["ip", "netns", "exec", netns]) as vm:
        deadline = time.monotonic() + 30
        while in_ns(netns, "ip", "link", "show", "vm-tap0").returncode != 0:
            assert time.monotonic() < deadline, vm.console
            time.sleep(0.1)
        assert in_ns(netns, "ip", "addr", "add", "10.77.0.1/24", "dev", "vm-tap0").returncode == 0
        vm.wait_for("E2E-NET-READY")
        ping = in_ns(netns, "busybox", "ping", "-c", "3", "-W", "5", "10.77.0.2")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert "3 packets received" in ping.stdout
        flags = in_ns(netns, "cat", "/sys/class/net/vm-tap0/tun_flags").stdout.strip()
        assert bool(int(flags, 16) & 0x0100) == (vcpu > 1)  # IFF_MULTI_QUEUE
        if vcpu > 1:
            argv = Path(f"/proc/{vm.proc.pid}/cmdline").read_bytes().split(b"\0")
            assert b"tap,id=net0,ifname=vm-tap0,script=no,downscript=no,queues=2" in argv
    # tap-down removes it again
    subprocess.run(["ip", "netns", "exec", netns, str(runner / "bin" / "tap-down")], check=True)
    assert in_ns(netns, "ip", "link", "show", "vm-tap0").returncode != 0


def test_bridge_interface_joins_the_bridge(make_initrd: InitrdFactory, tmp_path: Path,
                                           netns: str) -> None:
    """A `bridge` interface: QEMU's own qemu-bridge-helper (no NixOS wrapper here, so the
    runner leaves helper= out) creates the tap and puts it on the bridge its ACL allows. The
    ACL file, /etc/qemu/bridge.conf, exists only in the VM's private mount namespace (an
    overlay on /etc), so this machine's /etc is never written."""
    bridge, etc = "br-mvt", tmp_path / "etc"
    (etc / "upper").mkdir(parents=True)
    (etc / "work").mkdir()
    for cmd in (["ip", "link", "add", bridge, "type", "bridge"],
                ["ip", "addr", "add", "10.78.0.1/24", "dev", bridge],
                ["ip", "link", "set", bridge, "up"]):
        assert in_ns(netns, *cmd).returncode == 0
    doc = document("brvm", vmtest.guest_kernel().vmlinux,
                   make_initrd("power_button; " + NET_SCRIPT),
                   kernelParams=["quiet", "e2e.ip=10.78.0.2/24"],
                   interfaces=[{"type": "bridge", "id": "vm-br0", "mac": "02:00:00:00:00:05",
                                "bridge": bridge}])
    runner = generate(doc, tmp_path)
    private_etc = ("mount --make-rprivate / && mount -t overlay overlay -o lowerdir=/etc," +
                   f"upperdir={etc}/upper,workdir={etc}/work /etc && mkdir -p /etc/qemu && " +
                   f"echo 'allow {bridge}' > /etc/qemu/bridge.conf && " +
                   f'exec ip netns exec {netns} "$@"')
    with VM(runner, tmp_path, wrap=["unshare", "-m", "sh", "-c", private_etc, "sh"]) as vm:
        vm.wait_for("E2E-NET-READY")
        ping = in_ns(netns, "busybox", "ping", "-c", "3", "-W", "5", "10.78.0.2")
        assert ping.returncode == 0, ping.stdout + ping.stderr + vm.console
        ports = in_ns(netns, "ls", f"/sys/class/net/{bridge}/brif").stdout.split()
        assert len(ports) == 1 and ports[0].startswith("tap"), ports
        argv = Path(f"/proc/{vm.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert f"bridge,id=net0,br={bridge}".encode() in argv
        down = vm.run_tool("microvm-shutdown", check=False)
        assert down.returncode == 0, down.stderr + vm.console
        assert vm.wait_exit() == 0
    assert not Path("/etc/qemu/bridge.conf").exists() or "br-mvt" not in Path(
        "/etc/qemu/bridge.conf").read_text()


@pytest.mark.parametrize("vcpu", [1, 2], ids=["single-queue", "multi-queue"])
def test_macvtap_networking_in_netns(make_initrd: InitrdFactory, tmp_path: Path,
                                     netns: str, vcpu: int) -> None:
    """macvtap-up creates the macvtap on a veth; microvm-run opens /dev/tapN (once per queue)
    and passes the fds."""
    for cmd in (["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                ["ip", "link", "set", "v0", "up"], ["ip", "link", "set", "v1", "up"],
                ["ip", "addr", "add", "10.78.0.1/24", "dev", "v1"]):
        assert in_ns(netns, *cmd).returncode == 0
    doc = document("mvtvm", vmtest.guest_kernel().vmlinux, make_initrd(NET_SCRIPT),
                   kernelParams=["quiet", "e2e.ip=10.78.0.2/24"], vcpu=vcpu,
                   interfaces=[{"type": "macvtap", "id": "mvt0", "mac": "02:00:00:00:00:03",
                                "macvtap": {"link": "v0", "mode": "bridge"}}])
    runner = generate(doc, tmp_path)
    with VM(runner, tmp_path, wrap=["ip", "netns", "exec", netns]) as vm:
        vm.wait_for("E2E-NET-READY")
        ping = in_ns(netns, "busybox", "ping", "-c", "3", "-W", "5", "10.78.0.2")
        assert ping.returncode == 0, ping.stdout + ping.stderr + vm.console
        link = in_ns(netns, "ip", "-d", "link", "show", "mvt0").stdout
        assert "macvtap mode bridge" in link
        assert "02:00:00:00:00:03" in link
        argv = Path(f"/proc/{vm.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert (b"tap,id=net0,fds=3:4" if vcpu > 1 else b"tap,id=net0,fd=3") in argv
    subprocess.run(["ip", "netns", "exec", netns, str(runner / "bin" / "macvtap-down")],
                   check=True)
    assert in_ns(netns, "ip", "link", "show", "mvt0").returncode != 0


HOSTILE = "h st'x\"$(touch PWNED)`id`;ü,λ"


def test_hostile_strings_reach_qemu_byte_for_byte(make_initrd: InitrdFactory,
                                                  tmp_path: Path) -> None:
    """Host name, share source and volume path with spaces, quotes, $(...), backticks, a comma
    and unicode: QEMU receives them exactly (commas doubled, as QEMU's option syntax wants),
    uses them (the guest reads the share and writes the volume), and no shell runs them."""
    share = tmp_path / f"share {HOSTILE}"
    share.mkdir()
    (share / "f").write_text("hostile share ok\n")
    image = f"vol {HOSTILE}.img"
    script = """
mkdir -p /mnt/s /mnt/v && mount -t 9p -o trans=virtio,version=9p2000.L s /mnt/s
echo "E2E-READ:$(cat /mnt/s/f)"
mount -t ext4 "$(disk_by_serial v)" /mnt/v && echo written > /mnt/v/f && umount /mnt/v
power_button; echo E2E-READY; while :; do sleep 1; done
"""
    doc = document(HOSTILE, vmtest.guest_kernel().vmlinux, make_initrd(script),
                   shares=[{"tag": "s", "source": str(share), "mountPoint": "/mnt/s"}],
                   volumes=[{"image": image, "size": 32, "serial": "v"}])
    runner = generate(doc, tmp_path)
    with VM(runner, tmp_path) as vm:
        vm.wait_for("E2E-READY")
        argv = Path(f"/proc/{vm.proc.pid}/cmdline").read_bytes().split(b"\0")[:-1]
        assert argv[0] == f"microvm@{HOSTILE}".encode()
        esc = HOSTILE.replace(",", ",,")
        assert f"guest={esc},process={esc}".encode() in argv
        assert f"local,id=fs0,path={str(share).replace(',', ',,')},security_model=none".encode() \
            in argv
        volume = f"id=vol0,format=raw,file={image.replace(',', ',,')},if=none,discard=unmap"
        assert volume.encode() in argv
        assert f"unix:{esc}.sock,server=on,wait=off".encode() in argv
        assert (tmp_path / f"{HOSTILE}.sock").is_socket()
        vm.run_tool("microvm-shutdown")
        assert vm.wait_exit() == 0
    assert "E2E-READ:hostile share ok" in vm.console
    out = subprocess.run(["debugfs", "-R", "cat /f", str(tmp_path / image)],
                         capture_output=True, text=True, check=True).stdout
    assert out == "written\n"
    assert not list(tmp_path.rglob("PWNED"))
    assert not Path("PWNED").exists()


def test_runner_works_from_any_directory_and_env_override(make_initrd: InitrdFactory,
                                                          tmp_path: Path) -> None:
    """MICROVM_ACCEL rejects nonsense before anything starts."""
    initrd = make_initrd("echo E2E-UP\n")
    runner = generate(document("acc", vmtest.guest_kernel().vmlinux, initrd), tmp_path)
    r = subprocess.run([str(runner / "bin" / "microvm-run")], cwd=tmp_path,
                       env={**os.environ, "MICROVM_ACCEL": "warp"}, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2
    assert "MICROVM_ACCEL must be one of: kvm tcg; got 'warp'" in r.stderr
