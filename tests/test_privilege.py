"""Privilege boundaries of the host state (SECURITY.md): the VM's user (a real unprivileged uid,
`nobody`, in forked children that setuid to it) can write its data directory and nothing root
follows or runs; root-run code (the CLI as root, runner-exec, pci-setup, macvtap-owner)
refuses a link or runner tree that user could have changed. The attack of issue 12 is
reproduced: a planted `bin/tap-down` must not run as uid 0."""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from microvm import units
from microvm.errors import HostError
from microvm.host import service, state
from microvm.host.state import VMDir
from support.host_cli import cli, make_runner, write_exe

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to setuid to nobody")
NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def world() -> Iterator[Path]:
    """A scratch directory every user can traverse (tmp_path lies below a 0700 directory, so
    there an attack by `nobody` would fail for the wrong reason)."""
    d = Path(tempfile.mkdtemp(prefix="microvm-priv-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def as_nobody(action: Callable[[], object]) -> str:
    """Run `action` in a forked child with uid/gid nobody: "ok" or the error it raised."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        result = "ok"
        try:
            os.setgroups([])
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
            action()
        except OSError as e:
            result = type(e).__name__
        except BaseException as e:  # reported to the parent
            result = repr(e)
        os.write(write, result.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out


def planted_runner(base: Path, marker: Path) -> Path:
    """What the VM's user would plant: a runner whose tap-down leaves `marker` with its uid."""
    evil = base / "evil"
    write_exe(evil / "bin" / "microvm-run", "#!/bin/sh\n")
    write_exe(evil / "bin" / "tap-down", f"#!/bin/sh\nid -u > {marker}\n")
    write_exe(evil / "bin" / "virtiofsd-run", f"#!/bin/sh\nid -u > {marker}\n")
    (evil / "share" / "microvm").mkdir(parents=True)
    (evil / "share" / "microvm" / "tap-interfaces").write_text("mvtap0\n")
    for path in [evil, *evil.rglob("*")]:
        os.lchown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    return evil


def created_with_a_planted_runner(world: Path) -> tuple[Path, Path, VMDir, Path, Path]:
    """VM `vm` made by root for the VM's user nobody, and a runner that user planted in a
    directory anyone can write: (runner, state root, the VM, the marker file, the planted)."""
    runner = make_runner(world, "vm")
    root = world / "state"
    cli("create", "vm", "--runner", str(runner), "--user", "nobody", "--group", "nogroup",
        state_dir=root, check=True)
    marker = world / "ran-as"
    (world / "drop").mkdir(mode=0o777)
    (world / "drop").chmod(0o777)
    return runner, root, VMDir(root, "vm"), marker, planted_runner(world / "drop", marker)


def test_the_vms_user_writes_data_and_nothing_root_follows(world: Path) -> None:
    runner = make_runner(world, "vm")
    root = world / "state"
    cli("create", "vm", "--runner", str(runner), "--user", "nobody", "--group", "nogroup",
        state_dir=root, check=True)
    vm = VMDir(root, "vm")
    st = vm.path.lstat()  # its data directory: root's, writable by the VM's group, sticky
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, NOBODY.pw_gid, 0o1775)
    for path in (root, root / ".control", vm.control, vm.current_link, vm.file("meta.json"),
                 vm.path / "current", vm.path / "booted"):
        assert path.lstat().st_uid == 0, path
    # microvm.nix's names lead to root's links, whatever the VM's user does below
    assert os.readlink(vm.path / "current") == "../.control/vm/current"
    assert state.trusted_runner(vm.path / "current") == runner.resolve()

    def swap_current() -> None:
        os.symlink("/tmp", vm.file(".current.new.1"))
        os.replace(vm.file(".current.new.1"), vm.current_link)

    def swap_data_current() -> None:
        os.symlink("/tmp", vm.path / ".current.new.1")
        os.replace(vm.path / ".current.new.1", vm.path / "current")

    def own_file() -> None:  # the VM's user adds and removes its own files
        (vm.path / "disk.img").write_text("x")
        os.rename(vm.path / "disk.img", vm.path / "disk2.img")
        (vm.path / "disk2.img").unlink()

    attacks: dict[str, Callable[[], object]] = {
        "write its data directory": own_file,
        "swap current": swap_current,
        "plant booted": lambda: os.symlink("/tmp", vm.booted_link),
        "rewrite meta.json": lambda: vm.file("meta.json").write_text("{}"),
        "plant a pending change": lambda: vm.file("meta.json.pending").write_text("{}"),
        "move the control directory": lambda: os.rename(root / ".control", root / "x"),
        "replace the VM's control directory": lambda: os.rename(vm.control, root / "x"),
        "swap microvm.nix's current": swap_data_current,
        "remove microvm.nix's booted": lambda: (vm.path / "booted").unlink(),
        "move microvm.nix's current away": lambda: os.rename(vm.path / "current",
                                                             vm.path / "old"),
        "change the data directory's mode": lambda: os.chmod(vm.path, 0o777),
        "move the data directory": lambda: os.rename(vm.path, root / "y"),
    }
    results = {what: as_nobody(action) for what, action in attacks.items()}
    assert results == {what: "ok" if what.startswith("write its data") else "PermissionError"
                       for what in attacks}
    assert state.trusted_runner(vm.path / "current") == runner.resolve()


def test_microvm_nix_layout_is_taken_back_from_the_vms_user(world: Path) -> None:
    """A data directory as microvm.nix (or this project before) left it: the VM's user's, with
    its own `current`. `microvm update` makes the directory root's and `current`/`booted` root's
    links; a root-run script using <state>/NAME/current never reaches the planted runner."""
    runner, root, vm, _marker, evil = created_with_a_planted_runner(world)
    for name in ("current", "booted"):  # the old layout: the user's directory and links
        (vm.path / name).unlink()
    os.chown(vm.path, NOBODY.pw_uid, NOBODY.pw_gid)
    vm.path.chmod(0o755)

    def plant() -> None:
        (vm.path / "current").symlink_to(evil)
        (vm.path / "disk.img").write_text("data")
    assert as_nobody(plant) == "ok"
    with pytest.raises(HostError, match="owned by uid"):
        state.trusted_runner(vm.path / "current")
    older = f"warn  vm vm: {vm.path} is in an older layout (owned by uid {NOBODY.pw_uid})"
    assert older in cli("doctor", state_dir=root).stdout
    cli("update", "vm", state_dir=root, check=True)
    assert "older layout" not in cli("doctor", state_dir=root).stdout
    st = vm.path.lstat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, NOBODY.pw_gid, 0o1775)
    assert state.trusted_runner(vm.path / "current") == runner.resolve()
    assert (vm.path / "disk.img").read_text() == "data"  # the user's data stays, and its own
    assert (vm.path / "disk.img").lstat().st_uid == NOBODY.pw_uid
    # what a user's root-run script (an ExecStop override) reaches through microvm.nix's path
    assert Path(os.path.realpath(vm.path / "current" / "bin")) == runner.resolve() / "bin"
    assert as_nobody(lambda: (vm.path / "current").unlink()) == "PermissionError"


@pytest.mark.parametrize("how", ["control directory of the VM's user", "runner of that user",
                                 "runner in a directory that user can write"])
def test_remove_as_root_refuses_a_planted_tap_down(world: Path, how: str) -> None:
    """Issue 12's reproduction: with `current` pointing at a planted runner, `microvm remove`
    as root must not run its bin/tap-down."""
    _runner, root, vm, marker, evil = created_with_a_planted_runner(world)
    if how == "control directory of the VM's user":  # the layout before this change
        os.chown(vm.control, NOBODY.pw_uid, NOBODY.pw_gid)

        def repoint() -> None:
            vm.current_link.unlink()
            vm.current_link.symlink_to(evil)

        assert as_nobody(repoint) == "ok"
    else:
        if how == "runner of that user":
            target = evil
        else:  # root-owned files, but the VM's user may replace them
            target = world / "drop" / "rootowned"
            shutil.copytree(evil, target, symlinks=True)
            for path in [target, *target.rglob("*")]:
                os.lchown(path, 0, 0)
            target.chmod(0o777)
        vm.current_link.unlink()
        vm.current_link.symlink_to(target)
    p = cli("remove", "vm", state_dir=root)
    assert p.returncode == 1, p.stderr
    assert "refusing" in p.stderr
    assert not marker.exists(), "the planted tap-down ran as root"


@pytest.fixture
def root_helpers(world: Path) -> Path:
    opts = units.UnitOptions(state_dir=str(world / "state"), user="nobody", group="nogroup")
    out = world / "units"
    units.write(out, opts)
    return out / units.LIBEXEC_DIR


def layout(root: Path, name: str) -> dict[str, object]:
    """What SECURITY.md says of a VM's directories: owners, modes, links, whom it runs as."""
    vm = VMDir(root, name)
    out: dict[str, object] = {}
    for path in (vm.control, vm.path, *(vm.path / n for n in state.COMPAT_LINKS)):
        st = path.lstat()
        out[str(path.relative_to(root))] = (st.st_uid, st.st_gid if path == vm.path else None,
                                            oct(stat.S_IMODE(st.st_mode)),
                                            os.readlink(path) if path.is_symlink() else None)
    out["account"] = vm.account("?", "?")
    return out


def test_install_runner_makes_the_layout_create_makes(world: Path, root_helpers: Path) -> None:
    """The two writers of the layout (install-microvm-NAME's shell helper, `microvm create`)
    agree, and the helper takes a microvm.nix data directory back from the VM's user."""
    runner = make_runner(world, "vm")
    cli("create", "made", "--runner", str(runner), "--user", "nobody", "--group", "nogroup",
        state_dir=world / "state", check=True)
    subprocess.run([root_helpers / "install-runner", "inst", str(runner), "true"], check=True)
    made, inst = layout(world / "state", "made"), layout(world / "state", "inst")
    assert json.dumps(made).replace("made", "NAME") == json.dumps(inst).replace("inst", "NAME")
    assert inst["inst"] == (0, NOBODY.pw_gid, "0o1775", None)
    assert inst["inst/current"] == (0, None, "0o777", "../.control/inst/current")
    assert inst["account"] == ("nobody", "nogroup")
    # microvm.nix's layout: the VM's user owns the directory and `current`, pointing anywhere
    data = world / "state" / "old"
    data.mkdir()
    os.chown(data, NOBODY.pw_uid, NOBODY.pw_gid)
    evil = planted_runner(world / "state" / "old", world / "ran-as")

    def plant() -> None:
        (data / "current").symlink_to(evil)
        (data / "booted").symlink_to(evil)
        (data / "var.img").write_text("kept")
    assert as_nobody(plant) == "ok"
    subprocess.run([root_helpers / "install-runner", "old", str(runner), "true"], check=True)
    assert layout(world / "state", "old")["old/current"] == (0, None, "0o777",
                                                              "../.control/old/current")
    assert state.trusted_runner(data / "current") == runner.resolve()
    assert (data / "var.img").read_text() == "kept"
    assert as_nobody(lambda: (data / "current").unlink()) == "PermissionError"


@pytest.mark.parametrize("helper", ["runner-exec", "pci-setup", "macvtap-owner"])
def test_root_helpers_refuse_what_the_vms_user_could_change(world: Path, root_helpers: Path,
                                                            helper: str) -> None:
    marker = world / "ran-as"
    (world / "home").mkdir()  # root's 0755, the tree in it the VM user's (as in its home)
    evil = planted_runner(world / "home", marker)
    good = make_runner(world, "vm", interfaces=[
        {"type": "tap", "id": "mvtap0", "mac": "02:00:00:00:00:01"}])
    control = world / "state" / ".control" / "vm"
    control.mkdir(parents=True)
    args = {"runner-exec": ["tap-down"], "pci-setup": [], "macvtap-owner": []}[helper]
    (control / "booted").symlink_to(evil)
    p = subprocess.run([root_helpers / helper, control / "booted", *args], text=True,
                       capture_output=True)
    assert p.returncode == 1
    assert "trusted_runner: refusing" in p.stderr
    assert "owned by uid 65534" in p.stderr
    assert not marker.exists()
    # a root-owned link to a root-owned runner, but in a directory the VM's user can write
    (control / "booted").unlink()
    os.chmod(control, 0o777)
    (control / "booted").symlink_to(good)
    p = subprocess.run([root_helpers / helper, control / "booted", *args], text=True,
                       capture_output=True)
    assert p.returncode == 1
    assert f"refusing {control}: writable by group or others" in p.stderr
    os.chmod(control, 0o755)
    if helper == "runner-exec":  # the trusted runner runs (tap-down of a missing tap: a no-op)
        p = subprocess.run([root_helpers / helper, control / "booted", "tap-down"], text=True,
                           capture_output=True)
        assert p.returncode == 0, p.stderr


def test_macvtap_owner_hands_tap_devices_to_the_vms_user(world: Path,
                                                         root_helpers: Path) -> None:
    """microvm@ runs the hypervisor as the VM's user, which opens /dev/tapN itself."""
    runner = make_runner(world, "vm", interfaces=[
        {"type": "macvtap", "id": "mvt0", "mac": "02:00:00:00:00:02",
         "macvtap": {"link": "eth0", "mode": "bridge"}}])
    control = world / "state" / ".control" / "vm"
    control.mkdir(parents=True)
    (control / "booted").symlink_to(runner)
    sys_, dev = world / "sys", world / "dev"
    (sys_ / "class/net/mvt0").mkdir(parents=True)
    (sys_ / "class/net/mvt0/ifindex").write_text("42\n")
    dev.mkdir()
    (dev / "tap42").write_text("")
    (dev / "tap42").chmod(0o600)
    env = {**os.environ, "MICROVM_SYSFS": str(sys_), "MICROVM_DEVFS": str(dev)}
    p = subprocess.run([root_helpers / "macvtap-owner", control / "booted"], env=env,
                       text=True, capture_output=True)
    assert p.returncode == 0, p.stderr
    st = (dev / "tap42").stat()
    assert (st.st_uid, st.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)


def test_runners_below_a_sticky_group_writable_store_are_trusted(world: Path,
                                                                 root_helpers: Path) -> None:
    """/nix/store is root:nixbld 1775: sticky, so nobody can replace root's entries there."""
    store = world / "store"
    store.mkdir()
    os.chown(store, 0, NOBODY.pw_gid)
    store.chmod(0o1775)
    runner = make_runner(store, "vm")
    root = world / "state"
    cli("create", "vm", "--runner", str(runner), state_dir=root, check=True)
    vm = VMDir(root, "vm")
    p = subprocess.run([root_helpers / "runner-exec", vm.current_link, "tap-down"], text=True,
                       capture_output=True)
    assert p.returncode == 0, p.stderr
    store.chmod(0o775)  # without the sticky bit the store's group could swap the runner
    p = cli("update", "vm", "--runner", str(runner), state_dir=root)
    assert p.returncode == 1
    assert f"refusing {store}: writable by group or others" in p.stderr
    p = subprocess.run([root_helpers / "runner-exec", vm.current_link, "tap-down"], text=True,
                       capture_output=True)
    assert p.returncode == 1
    assert f"refusing {store}: writable by group or others" in p.stderr


# -- issue 22: root's locks, the pid `microvm run` recorded, names from the data directory --

@contextlib.contextmanager
def nobody_holding(*locks: Path) -> Iterator[list[str]]:
    """A process of `nobody` that opens each lock read-only and flock()s it, holding them until
    the block ends; yields what it got for each: "held" or the error's name."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        got = []
        try:
            os.setgroups([])
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
            for lock in locks:
                try:
                    fd = os.open(lock, os.O_RDONLY)
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    got.append("held")
                except OSError as e:
                    got.append(type(e).__name__)
            os.write(write, (" ".join(got) + "\n").encode())
            time.sleep(120)
        finally:
            os._exit(0)
    os.close(write)
    try:
        with os.fdopen(read) as f:
            yield f.readline().split()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_nobody_cannot_open_or_hold_roots_locks(world: Path) -> None:
    runner = make_runner(world, "vm")
    root = world / "state"
    cli("create", "vm", "--runner", str(runner), state_dir=root, check=True)
    vm = VMDir(root, "vm")
    with vm.hold_run_lock():
        pass
    for lock in (vm.file(".lock"), vm.run_lock):
        st = lock.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600), lock
    with nobody_holding(vm.file(".lock"), vm.run_lock) as got:
        assert got == ["PermissionError", "PermissionError"]


def test_locks_an_older_version_left_world_readable_are_replaced(world: Path) -> None:
    """Locks written 0644 (before this fix) that `nobody` opened and holds: `microvm list`
    does not take the VM for running, `update` does not wait for nobody's lock, and root's
    next use replaces each lock by a 0600 one (nobody's handle then holds nothing)."""
    runner = make_runner(world, "vm")
    root = world / "state"
    cli("create", "vm", "--runner", str(runner), "--user", "nobody", "--group", "nogroup",
        state_dir=root, check=True)
    vm = VMDir(root, "vm")
    for lock in (vm.file(".lock"), vm.run_lock):
        lock.write_text("1\n")  # as `microvm run` of an older version left it
        lock.chmod(0o644)
    with nobody_holding(vm.file(".lock"), vm.run_lock) as got:
        assert got == ["held", "held"]
        listed = json.loads(cli("list", "--json", state_dir=root, check=True).stdout)
        assert [(v["name"], v["state"]) for v in listed] == [("vm", "stopped")]
        started = time.monotonic()
        cli("update", "vm", "--runner", str(runner), state_dir=root, check=True, timeout=20)
        assert time.monotonic() - started < 15
        with vm.hold_run_lock():  # not "already running"
            assert vm.run_pid() == os.getpid()
        for lock in (vm.file(".lock"), vm.run_lock):
            assert stat.S_IMODE(lock.stat().st_mode) == 0o600, lock


@pytest.mark.parametrize("record", ["{pid}\n", "{pid} {wrong}\n"],
                         ids=["pid-only", "other-start-time"])
def test_shutdown_never_signals_a_pid_that_is_no_longer_the_vms(
        world: Path, monkeypatch: pytest.MonkeyPatch, record: str) -> None:
    """The run lock is held and its record names a live process that is not the `microvm run`
    that took it (its pid reused: another start time, or none recorded): it is not signalled."""
    vm = VMDir(world / "state", "vm")
    vm.control.mkdir(parents=True)
    monkeypatch.setattr(service, "_wait_released",
                        lambda vm, seconds: vm.run_pid() is None)  # no waiting
    victim = subprocess.Popen(["sleep", "60"])
    fd = os.open(vm.run_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        start = state.process_start_time(victim.pid)
        assert start is not None
        os.write(fd, record.format(pid=victim.pid, wrong=start + 1).encode())
        said: list[str] = []
        with pytest.raises(HostError, match="vm did not stop"):
            service.Service(use_systemd=False, echo=said.append).stop(vm)
        assert victim.poll() is None, "an unrelated process with the recorded pid was killed"
        assert any(f"not signalling pid {victim.pid}" in line for line in said), said
    finally:
        os.close(fd)
        victim.kill()
        victim.wait()


def test_shutdown_signals_the_microvm_run_that_holds_the_lock(
        world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vm = VMDir(world / "state", "vm")
    vm.control.mkdir(parents=True)
    wait = service._wait_released
    monkeypatch.setattr(service, "_wait_released",
                        lambda vm, seconds: wait(vm, min(seconds, 3.0)))
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import sys, time; from pathlib import Path; " +
                                "from microvm.host.state import VMDir; " +
                                "l = VMDir(Path(sys.argv[1]), 'vm').hold_run_lock(); " +
                                "l.__enter__(); print('held', flush=True); time.sleep(60)"),
         str(vm.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        assert vm.run_pid() == holder.pid
        said: list[str] = []
        service.Service(use_systemd=False, echo=said.append).stop(vm)
        assert holder.wait(5) == -signal.SIGTERM
        assert said == [f"vm: still running; sending SIGTERM to {holder.pid}"]
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


def test_remove_escapes_names_the_vms_user_chose(world: Path) -> None:
    """`remove` names the files it kept in the VM's data directory; that user picks them, so
    an escape sequence there must reach root's terminal spelled out, not raw."""
    runner = make_runner(world, "vm")
    root = world / "state"
    cli("create", "vm", "--runner", str(runner), "--user", "nobody", "--group", "nogroup",
        state_dir=root, check=True)
    vm = VMDir(root, "vm")
    assert as_nobody(lambda: (vm.path / "\x1b[2J\x1b]0;pwned\x07\rdisk.img").write_text(
        "x")) == "ok"
    p = cli("remove", "vm", state_dir=root, check=True)
    assert not any(ch in p.stderr for ch in "\x1b\x07\r"), repr(p.stderr)
    assert "\\x1b[2J\\x1b]0;pwned\\x07\\x0ddisk.img" in p.stderr, p.stderr


# -- issue 22: the sockets root connects to in the VM's directory ----------------------------

OTHER = pwd.getpwnam("daemon")  # the second VM's user


@contextlib.contextmanager
def run_lock_holder(root: Path, name: str) -> Iterator[subprocess.Popen[str]]:
    """A process holding VM `name`'s run lock as `microvm run` does: the VM counts as running
    in the foreground while the block runs."""
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import sys, time; from pathlib import Path; " +
                                "from microvm.host.state import VMDir; " +
                                "l = VMDir(Path(sys.argv[1]), sys.argv[2]).hold_run_lock(); " +
                                "l.__enter__(); print('held', flush=True); time.sleep(60)"),
         str(root), name], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


class Listener:
    """A Unix socket at `path` (owner `uid`, 0600) that records every line it receives and
    answers each with a QMP success, in a thread."""

    def __init__(self, path: Path, uid: int, gid: int) -> None:
        self.got: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        os.chown(path, uid, gid)
        path.chmod(0o600)
        self.sock.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.got.append("<connected>")
                with conn, conn.makefile("rwb") as f:
                    for line in f:
                        self.got.append(line.decode(errors="replace").strip())
                        f.write(b'{"return": {}}\n')
                        f.flush()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def two_vms(world: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, Listener]]:
    """VMs a (of `nobody`) and b (of `daemon`) on the hypervisor `request.param`, b's control
    socket a Listener of b's user; a runs in the foreground (its run lock held)."""
    hypervisor = getattr(request, "param", "qemu")
    root = world / "state"
    for name, user in (("a", NOBODY), ("b", OTHER)):
        runner = make_runner(world, name, name=f"runner-{name}", hypervisor=hypervisor,
                             balloon=True, vsock={"cid": 5 if name == "a" else 6})
        cli("create", name, "--runner", str(runner), "--user", user.pw_name, "--group",
            grp.getgrgid(user.pw_gid).gr_name, state_dir=root, check=True)
    listener = Listener(root / "b" / "b.sock", OTHER.pw_uid, OTHER.pw_gid)
    try:
        with run_lock_holder(root, "a"):
            yield root, listener
    finally:
        listener.close()


def plant_link(root: Path, name: str) -> None:
    """As a's user: `ln -s <state>/b/b.sock <state>/a/NAME`."""
    assert as_nobody(lambda: os.symlink(root / "b" / "b.sock", root / "a" / name)) == "ok"


def test_balloon_does_not_follow_a_link_to_another_vms_socket(
        two_vms: tuple[Path, Listener]) -> None:
    root, listener = two_vms
    plant_link(root, "a.sock")
    p = cli("balloon", "a", "32", state_dir=root)
    assert p.returncode == 1, p.stderr
    assert f"refusing {root}/a/a.sock: a symbolic link" in p.stderr, p.stderr
    assert listener.got == [], "root's balloon reached VM b's socket"


def test_balloon_refuses_a_socket_of_another_user_linked_in(
        two_vms: tuple[Path, Listener]) -> None:
    """A hard link (what fs.protected_hardlinks=0 would let a's user make) to b's socket."""
    root, listener = two_vms
    os.link(root / "b" / "b.sock", root / "a" / "a.sock")
    p = cli("balloon", "a", "32", state_dir=root)
    assert p.returncode == 1, p.stderr
    assert f"refusing {root}/a/a.sock: owned by uid {OTHER.pw_uid}" in p.stderr, p.stderr
    assert listener.got == []


def test_balloon_reaches_the_vms_own_socket(two_vms: tuple[Path, Listener]) -> None:
    root, _ = two_vms
    own = Listener(root / "a" / "a.sock", NOBODY.pw_uid, NOBODY.pw_gid)
    try:
        p = cli("balloon", "a", "32", state_dir=root)
        assert p.returncode == 0, p.stderr
        assert own.got[:2] == ["<connected>", '{"execute":"qmp_capabilities"}'], own.got
        assert "balloon" in own.got[2], own.got
    finally:
        own.close()
    assert not list((root / ".control" / "a").glob(".connect*"))  # unpinned again


def test_balloon_reaches_the_socket_of_a_data_directory_on_its_own_file_system(
        two_vms: tuple[Path, Listener]) -> None:
    """A VM's data directory on a file system of its own (a dataset per VM): no hard link
    reaches it from root's directory, so the pinned name is a link to root's own descriptor of
    the checked socket; the balloon request arrives, and a planted link is still refused."""
    root, listener = two_vms
    data = root / "a"
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"mode=0755,uid={NOBODY.pw_uid}," +
                    f"gid={NOBODY.pw_gid}", "microvm-test", str(data)], check=True)
    try:
        own = Listener(data / "a.sock", NOBODY.pw_uid, NOBODY.pw_gid)
        try:
            p = cli("balloon", "a", "32", state_dir=root)
            assert p.returncode == 0, p.stderr
            assert "balloon" in own.got[2], own.got
        finally:
            own.close()
        (data / "a.sock").unlink()
        plant_link(root, "a.sock")
        p = cli("balloon", "a", "32", state_dir=root)
        assert p.returncode == 1 and "a symbolic link" in p.stderr, p.stderr
        assert listener.got == [], "root's balloon reached VM b's socket"
    finally:
        subprocess.run(["umount", "--lazy", str(data)], check=True)
    assert not list((root / ".control" / "a").glob(".connect*"))


def test_shutdown_does_not_follow_a_link_to_another_vms_socket(
        two_vms: tuple[Path, Listener]) -> None:
    root, listener = two_vms
    plant_link(root, "a.sock")
    p = cli("shutdown", "a", state_dir=root)
    assert f"refusing {root}/a/a.sock: a symbolic link" in p.stdout + p.stderr, p.stderr
    assert listener.got == [], "root's power-down reached VM b's socket"


def test_console_does_not_follow_a_link_to_a_root_only_socket(
        two_vms: tuple[Path, Listener], world: Path) -> None:
    root, _ = two_vms
    secret = Listener(world / "root-only.sock", 0, 0)
    try:
        assert as_nobody(lambda: os.symlink(world / "root-only.sock",
                                            root / "a" / "console.sock")) == "ok"
        p = cli("console", "a", state_dir=root, input="hello\n")
        assert p.returncode == 1, p.stderr
        assert "console.sock: a symbolic link" in p.stderr, p.stderr
        assert secret.got == [], "root's console reached a root-only socket"
    finally:
        secret.close()


@pytest.mark.parametrize("two_vms", ["cloud-hypervisor", "firecracker"], indirect=True)
def test_ssh_does_not_follow_a_link_to_another_vms_socket(
        two_vms: tuple[Path, Listener]) -> None:
    root, listener = two_vms
    hybrid = (root / ".control" / "a" / "current" / "share" / "microvm" / "hybrid-vsock")
    name = hybrid.read_text().strip()
    plant_link(root, name)
    p = cli("ssh", "-o", "ConnectTimeout=3", "a", "--", "true", state_dir=root, timeout=60)
    assert p.returncode == 1, p.stderr
    assert f"{name}: a symbolic link" in p.stderr, p.stderr
    assert listener.got == [], "root's ssh proxy reached VM b's socket"


def test_kvmtool_balloon_writes_nothing_through_a_link_as_root(world: Path) -> None:
    """kvmtool's microvm-balloon keeps the balloon's size in .lkvm/NAME.balloon-mib of the
    VM's directory (lkvm finds its socket there too): a link planted there must not make root
    write another file. It runs as that directory's owner."""
    root = world / "state"
    runner = make_runner(world, "a", hypervisor="kvmtool", balloon=True)
    cli("create", "a", "--runner", str(runner), "--user", "nobody", "--group", "nogroup",
        state_dir=root, check=True)
    victim = world / "victim"
    victim.write_text("root's\n")
    bin_dir = world / "bin"
    write_exe(bin_dir / "lkvm", "#!/bin/sh\nexit 0\n")  # an lkvm that always succeeds

    def plant() -> None:
        (root / "a" / ".lkvm").mkdir()
        os.symlink(victim, root / "a" / ".lkvm" / "a.balloon-mib")

    assert as_nobody(plant) == "ok"
    with run_lock_holder(root, "a"):
        p = cli("balloon", "a", "32", state_dir=root,
                env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert victim.read_text() == "root's\n", "root wrote through the VM user's link"
    assert p.returncode != 0, p.stderr
