"""Host commands with real guests under QEMU TCG (boots are serialised by vmtest's lock):
create -> list -> run -> update while running (killed between every two steps) -> shutdown ->
run the new runner; virtiofsd started and stopped by `microvm run`; the console socket;
reconcile/remove of a declared VM with a volume; taps removed inside a network namespace.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from microvm import units
from microvm.host.state import VMDir
from support import faults, vmtest
from support.host_cli import UPDATE_STEPS, cli, make_runner
from support.vmtest import VM

InitrdFactory = Callable[..., Path]
# Debian's C virtiofsd (tests/support/vmtest.py's runtimePath)
VIRTIOFSD_DIR = Path("/usr/lib/qemu")


def run_vm(name: str, root: Path, env: dict[str, str] | None = None) -> VM:
    """`microvm run NAME` under vmtest's VM (which appends a runner path: ignored here)."""
    return VM(Path("/unused"), root, env={"MICROVM_STATE_DIR": str(root),
                                          "MICROVM_SERVICE_MANAGER": "none", **(env or {})},
              wrap=["sh", "-c", 'exec "$0" -m microvm.cli run "$1"', sys.executable, name])


def listing(root: Path) -> dict[str, dict[str, object]]:
    rows = json.loads(cli("list", "--json", state_dir=root, check=True).stdout)
    return {r["name"]: r for r in rows}


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and proc.name != str(os.getpid()):
            pids.append(int(proc.name))
    return pids


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.boot
def test_create_run_update_while_running(make_initrd: InitrdFactory,
                                         guest_kernel: vmtest.testguest.Kernel,
                                         tmp_path: Path) -> None:
    """`update` switches `current` atomically while `booted` keeps naming the running runner,
    even when killed between any two steps; the VM then stops and boots the new runner."""
    marker = "power_button\necho HOST-{}-READY\nwhile :; do sleep 1; done\n"
    a = make_runner(tmp_path, "vm", name="a", kernel=guest_kernel.vmlinux,
                    initrd=make_initrd(marker.format("A"), "a.gz"))
    b = make_runner(tmp_path, "vm", name="b", kernel=guest_kernel.vmlinux,
                    initrd=make_initrd(marker.format("B"), "b.gz"))
    root = tmp_path / "state"
    cli("create", "vm", "--runner", str(a), state_dir=root, check=True)
    assert listing(root)["vm"]["state"] == "stopped"
    vm_dir = VMDir(root, "vm")
    with run_vm("vm", root) as vm:
        vm.wait_for("HOST-A-READY")
        row = listing(root)["vm"]
        assert (row["state"], row["runner"], row["runBy"]) == ("running", "up to date",
                                                               "foreground")
        assert vm_dir.booted == a
        for step in UPDATE_STEPS:
            p = cli("update", "vm", "--runner", str(b), state_dir=root,
                    env={faults.CRASH_ENV: step})
            assert p.returncode == -signal.SIGKILL, (step, p.stderr)
            assert vm_dir.booted == a, step
            assert vm_dir.current in (a, b), step
            assert (vm_dir.current_link / "bin" / "microvm-run").is_file(), step
            cli("update", "vm", "--runner", str(a), state_dir=root, check=True)
        out = cli("update", "vm", "--runner", str(b), state_dir=root, check=True).stderr
        assert "changes against the booted runner" in out
        assert "+/" + str(b.parent.parent / "b.gz").lstrip("/") in out  # the -initrd argument
        assert "restart it to boot the new runner" in out
        assert vm_dir.booted == a
        assert listing(root)["vm"]["runner"] == "restart pending: the new runner is installed"
        cli("shutdown", "vm", state_dir=root, check=True)
        assert vm.wait_exit() == 0
    assert not vm_dir.booted_link.is_symlink()
    assert listing(root)["vm"]["state"] == "stopped"
    with run_vm("vm", root) as vm:
        vm.wait_for("HOST-B-READY")
        assert vm_dir.booted == b
        cli("shutdown", "vm", state_dir=root, check=True)
        assert vm.wait_exit() == 0


@pytest.mark.boot
@pytest.mark.skipif(not (VIRTIOFSD_DIR / "virtiofsd").exists(), reason="no C virtiofsd")
def test_run_starts_and_stops_virtiofsd(make_initrd: InitrdFactory,
                                        guest_kernel: vmtest.testguest.Kernel,
                                        tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "from-host").write_text("hello guest\n")
    script = ("power_button\nmkdir -p /mnt/v\nmount -t virtiofs myfs /mnt/v\n" +
              "cat /mnt/v/from-host\necho written > /mnt/v/from-guest\nsync\n" +
              "echo VFS-READY\nwhile :; do sleep 1; done\n")
    runner = make_runner(tmp_path, "vfs", kernel=guest_kernel.vmlinux,
                         initrd=make_initrd(script), virtiofsd={"group": None},
                         shares=[{"proto": "virtiofs", "tag": "myfs", "source": str(share),
                                  "mountPoint": "/mnt/v"}])
    root = tmp_path / "state"
    cli("create", "vfs", "--runner", str(runner), state_dir=root, check=True)
    socket_name = "vfs-virtiofs-myfs.sock"
    with run_vm("vfs", root) as vm:
        vm.wait_for("VFS-READY")
        assert "hello guest" in vm.console
        assert (share / "from-guest").read_text() == "written\n"
        daemons = processes_mentioning(socket_name)
        assert daemons, "virtiofsd is not running"
        cli("shutdown", "vfs", state_dir=root, check=True)
        assert vm.wait_exit() == 0
    assert wait_until(lambda: not processes_mentioning(socket_name)), \
        processes_mentioning(socket_name)


@pytest.mark.skipif(not (VIRTIOFSD_DIR / "virtiofsd").exists(), reason="no C virtiofsd")
def test_failed_start_stops_virtiofsd(tmp_path: Path) -> None:
    """A bare bin/microvm-run whose hypervisor fails at once still stops the virtiofsd it
    started (virtiofsd would otherwise wait for a connection for ever)."""
    share = tmp_path / "share"
    share.mkdir()
    runner = make_runner(tmp_path, "bad", virtiofsd={"group": None},
                         qemu={"extraArgs": ["-no-such-qemu-flag"]},
                         shares=[{"proto": "virtiofs", "tag": "t", "source": str(share),
                                  "mountPoint": "/m"}])
    work = tmp_path / "work"
    work.mkdir()
    p = subprocess.run([runner / "bin" / "microvm-run"], cwd=work, text=True,
                       capture_output=True, env={**os.environ, "MICROVM_ACCEL": "tcg"},
                       timeout=60)
    assert p.returncode != 0
    assert "-no-such-qemu-flag" in p.stderr
    assert wait_until(lambda: not processes_mentioning(str(work / "bad-virtiofs-t.sock"))
                      and not processes_mentioning("bad-virtiofs-t.sock"))


@pytest.mark.boot
def test_console_socket(make_initrd: InitrdFactory, guest_kernel: vmtest.testguest.Kernel,
                        tmp_path: Path) -> None:
    """MICROVM_CONSOLE=socket: the runner serves the serial console on console.sock and
    `microvm console` talks to the guest through it."""
    script = ("power_button\nwhile read -r line; do echo \"GOT:$line\"; " +
              "[ \"$line\" = bye ] && poweroff -f; done\n")
    runner = make_runner(tmp_path, "con", kernel=guest_kernel.vmlinux,
                         initrd=make_initrd(script))
    text = (runner / "bin" / "microvm-run").read_text()
    assert "args[i]=socket,id=stdio,path=console.sock,server=on,wait=off" in text
    launch = json.loads((runner / "share/microvm/launch.json").read_text())
    assert "stdio,id=stdio,signal=off" in launch["variants"]["tcg"]  # what the script replaces
    root = tmp_path / "state"
    cli("create", "con", "--runner", str(runner), state_dir=root, check=True)
    sock = root / "con" / "console.sock"
    with run_vm("con", root, env={"MICROVM_CONSOLE": "socket"}) as vm:
        assert wait_until(sock.is_socket, 60)
        env = {**os.environ, "MICROVM_STATE_DIR": str(root), "MICROVM_SERVICE_MANAGER": "none"}
        console = subprocess.Popen([sys.executable, "-m", "microvm.cli", "console", "con"],
                                   env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        assert console.stdin is not None
        assert console.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(console.stdout, selectors.EVENT_READ)
        seen = b""
        deadline = time.monotonic() + 90
        while b"GOT:hello" not in seen and time.monotonic() < deadline:
            console.stdin.write(b"hello\n")
            console.stdin.flush()
            for _ in sel.select(1.0):
                seen += os.read(console.stdout.fileno(), 4096)
        assert b"GOT:hello" in seen, seen[-2000:]
        console.stdin.write(b"bye\n")
        console.stdin.flush()
        assert vm.wait_exit() == 0
        console.stdin.close()
        assert console.wait(10) == 0
        sel.close()
        console.stdout.close()
        assert console.stderr is not None
        console.stderr.close()
        assert "GOT:" not in vm.console  # nothing of the console went to stdout


@pytest.mark.boot
def test_reconcile_stops_undeclared_and_keeps_volume(make_initrd: InitrdFactory,
                                                      guest_kernel: vmtest.testguest.Kernel,
                                                      tmp_path: Path) -> None:
    """A declared VM (installed by install-microvm-NAME's helper) that is no longer declared is
    stopped by `reconcile`; its directory and volume stay until `remove --purge`."""
    runner = make_runner(tmp_path, "decl", kernel=guest_kernel.vmlinux,
                         initrd=make_initrd("power_button\necho DECL-READY\n" +
                                            "while :; do sleep 1; done\n"),
                         volumes=[{"image": "data.img", "size": 16, "mountPoint": "/data"}])
    root = tmp_path / "state"
    opts = units.UnitOptions(state_dir=str(root), user=pwd.getpwuid(os.getuid()).pw_name,
                             group=grp.getgrgid(os.getgid()).gr_name)
    out = tmp_path / "units"
    units.write(out, opts)
    install = out / units.LIBEXEC_DIR / "install-runner"
    subprocess.run([install, "decl", str(runner), "true"], check=True)
    vm_dir = VMDir(root, "decl")
    with run_vm("decl", root) as vm:
        vm.wait_for("DECL-READY")
        assert (vm_dir.path / "data.img").exists()
        reconciled = cli("reconcile", "--declared", "decl", state_dir=root, check=True)
        assert reconciled.stderr == ""  # declared and unchanged: nothing to do
        p = cli("reconcile", "--declared", "other", state_dir=root, check=True)
        assert "decl: no longer declared: stopped" in p.stderr
        assert "other: declared but not installed" in p.stderr
        assert vm.wait_exit() == 0
    assert (vm_dir.path / "data.img").exists()
    assert not vm_dir.file("declared.json").exists()
    assert listing(root)["decl"]["state"] == "stopped"
    cli("remove", "decl", "--purge", state_dir=root, check=True)
    assert not vm_dir.path.exists()


def test_reconcile_removes_taps_in_a_netns(root_only: None, tmp_path: Path) -> None:
    """Taps of an undeclared VM are removed (done in a private network namespace)."""
    runner = make_runner(tmp_path, "tapvm", interfaces=[
        {"type": "tap", "id": "mvtest0", "mac": "02:00:00:00:00:01"}])
    root = tmp_path / "state"
    cli("create", "tapvm", "--runner", str(runner), state_dir=root, check=True)
    (root / ".control" / "tapvm" / "declared.json").write_text('{"declared": true}')
    # a new mount namespace too, with its own /sys: tap-down looks at /sys/class/net
    inner = ("mount -t sysfs sysfs /sys && " +
             "ip tuntap add name mvtest0 mode tap && ip link show mvtest0 >/dev/null && " +
             f"MICROVM_STATE_DIR={root} MICROVM_SERVICE_MANAGER=none " +
             f"{sys.executable} -m microvm.cli reconcile && " +
             "! ip link show mvtest0 2>/dev/null && echo TAP-GONE")
    p = subprocess.run(["unshare", "--net", "--mount", "sh", "-c", inner], text=True,
                       capture_output=True, timeout=60)
    assert "TAP-GONE" in p.stdout, p.stderr
    assert "tapvm: no longer declared" in p.stderr
