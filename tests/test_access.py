"""What the VM's user may do (host/access.py, issue 19 items 6 and 7): microvm@NAME.service runs
the runner as that user, so `microvm create`/`update` refuse a runner it cannot reach (exit 2,
the path and the fix named, nothing written) and `microvm doctor` reports such a runner and the
devices that user cannot open, apart from what root can. A real unprivileged user and group are
created for these tests (useradd, groupadd) and removed afterwards."""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import stat
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from microvm import process
from microvm.errors import ProcessError, UsageError
from microvm.host import access, commands, doctor
from microvm.host.access import Need, Request
from microvm.host.service import Service
from microvm.host.state import VMDir
from support.host_cli import cli, make_runner

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None,
    reason="needs root and useradd to create an unprivileged user")


@dataclass(frozen=True)
class Someone:
    name: str
    group: str  # its own group (useradd --user-group)
    extra: str  # a supplementary group it is in
    uid: int


@pytest.fixture(scope="module")
def user() -> Iterator[Someone]:
    """A system user with its own group and one supplementary group, removed at the end."""
    tag = f"mvacc{os.getpid()}"
    name, extra = tag, f"{tag}x"
    subprocess.run(["groupadd", "--system", extra], check=True)
    try:
        subprocess.run(["useradd", "--system", "--no-create-home", "--user-group",
                        "--shell", "/usr/sbin/nologin", "--groups", extra, name], check=True)
        try:
            yield Someone(name, name, extra, pwd.getpwnam(name).pw_uid)
        finally:
            subprocess.run(["userdel", name], check=False)
    finally:
        subprocess.run(["groupdel", extra], check=False)


@pytest.fixture
def world() -> Iterator[Path]:
    """A scratch directory every user can traverse (tmp_path lies below a 0700 directory)."""
    d = Path(tempfile.mkdtemp(prefix="microvm-access-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def acct(user: Someone) -> access.Account:
    found, note = access.account(user.name, user.group)
    assert note is None
    return found


def error_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0].removeprefix("error: ")


# -- create, update, doctor ------------------------------------------------------------------

def test_create_refuses_a_runner_below_a_0700_directory(world: Path, user: Someone) -> None:
    private = world / "private"
    private.mkdir(mode=0o700)
    runner = make_runner(private, "vm")
    root = world / "state"
    p = cli("create", "vm", "--runner", str(runner), "--user", user.name, "--group", user.group,
            state_dir=root)
    assert p.returncode == 2, p.stderr
    message = error_line(p.stderr)
    assert message.startswith(f"microvm@vm.service runs the runner {runner} as user " +
                              f"{user.name} (group {user.group}), who cannot search {private} " +
                              "(drwx------ root:root; needed for bin/microvm-run"), message
    assert message.endswith(f"; fix: chmod o+x {private}; or put the runner where {user.name} " +
                            "can read it"), message
    assert not root.exists()  # nothing written


def test_create_accepts_a_runner_the_user_can_read(world: Path, user: Someone) -> None:
    runner = make_runner(world, "vm")
    root = world / "state"
    p = cli("create", "vm", "--runner", str(runner), "--user", user.name, "--group", user.group,
            state_dir=root, check=True)
    assert "warning" not in p.stderr
    vm = VMDir(root, "vm")
    assert vm.current == runner
    st = vm.path.lstat()  # root's, for the VM's group (SECURITY.md), and recorded as whose
    assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)) == (
        0, user.group, 0o1775)
    assert vm.account() == (user.name, user.group)


@pytest.mark.parametrize("broken", ["bin/microvm-run", "share/microvm/launch.json"])
def test_create_names_a_file_of_the_runner_the_user_cannot_read(world: Path, user: Someone,
                                                                 broken: str) -> None:
    runner = make_runner(world, "vm")
    (runner / broken).chmod(0o700 if broken.startswith("bin/") else 0o600)
    p = cli("create", "vm", "--runner", str(runner), "--user", user.name, "--group", user.group,
            state_dir=world / "state")
    assert p.returncode == 2, p.stderr
    message = error_line(p.stderr)
    verb, bits = ("read and execute", "rx") if broken.startswith("bin/") else ("read", "r")
    assert f"who cannot {verb} {runner / broken} (" in message, message
    assert f"needed for {broken})" in message
    assert f"fix: chmod o+{bits} {runner / broken}" in message
    assert not (world / "state").exists()


def test_the_kernel_the_runner_reads_is_checked(world: Path, user: Someone) -> None:
    """What the runner reads besides its tree comes from its vm.json: here the kernel."""
    kernels = world / "kernels"
    kernels.mkdir()
    kernel = kernels / "bzImage"
    kernel.write_text("not really a kernel")
    kernel.chmod(0o600)
    runner = make_runner(world, "vm", kernel=kernel)
    p = cli("create", "vm", "--runner", str(runner), "--user", user.name, "--group", user.group,
            state_dir=world / "state")
    assert p.returncode == 2, p.stderr
    message = error_line(p.stderr)
    assert f"cannot read {kernel} (-rw------- root:root; needed for microvm.kernel)" in message
    assert f"fix: chmod o+r {kernel}" in message


def test_a_group_the_user_is_in_opens_the_way(world: Path, user: Someone) -> None:
    """Group=, and the user's supplementary groups, count as under systemd."""
    shared = world / "shared"
    shared.mkdir()
    shutil.chown(shared, group=user.extra)
    shared.chmod(0o710)
    runner = make_runner(shared, "vm")
    cli("create", "vm", "--runner", str(runner), "--user", user.name, "--group", user.group,
        state_dir=world / "state", check=True)
    # without the group's search bit, the fix is the group's
    shared.chmod(0o700)
    p = cli("update", "vm", "--runner", str(runner), state_dir=world / "state")
    assert p.returncode == 2, p.stderr
    assert f"fix: chmod g+x {shared};" in error_line(p.stderr)


def test_update_refuses_and_doctor_reports_with_the_same_message(world: Path,
                                                                 user: Someone) -> None:
    """update checks as the VM's user (the owner of its data directory); doctor reports a
    runner that became unreachable, as a failure, in the words of update's error."""
    pub = world / "pub"
    runner = make_runner(pub, "vm")
    root = world / "state"
    cli("create", "vm", "--runner", str(runner), "--user", user.name, "--group", user.group,
        state_dir=root, check=True)
    p = cli("doctor", "--user", user.name, "--group", user.group, state_dir=root)
    assert re.search(rf"^ok\s+vm vm as {user.name}: can run {re.escape(str(runner))}$",
                     p.stdout, re.M), p.stdout
    pub.chmod(0o700)
    p = cli("update", "vm", "--runner", str(runner), state_dir=root)
    assert p.returncode == 2, p.stderr
    detail, fix = error_line(p.stderr).split("; fix: ")
    assert f"who cannot search {pub} (drwx------ root:root;" in detail
    assert VMDir(root, "vm").current == runner  # unchanged
    # doctor, with its default user: the VM's data directory names its user
    p = cli("doctor", state_dir=root)
    assert p.returncode == 1
    assert f"fail  vm vm as {user.name}: {detail}\n      fix: {fix}\n" in p.stdout, p.stdout


def test_doctor_checks_the_way_through_the_state_directory(world: Path, user: Someone) -> None:
    """ExecStart= reaches the runner through <state>/.control/NAME/current."""
    runner = make_runner(world, "vm")
    outer = world / "outer"
    root = outer / "state"
    cli("create", "vm", "--runner", str(runner), "--user", user.name, "--group", user.group,
        state_dir=root, check=True)
    outer.chmod(0o700)
    p = cli("doctor", "--user", user.name, "--group", user.group, state_dir=root)
    assert p.returncode == 1
    assert re.search(rf"^fail\s+vm vm as {user.name}: .* who cannot search " +
                     rf"{re.escape(str(outer))} \(", p.stdout, re.M), p.stdout


def test_a_missing_user_is_a_warning(world: Path) -> None:
    runner = make_runner(world, "vm")
    missing = "mvacc-nobody-has-this-name"
    p = cli("create", "vm", "--runner", str(runner), "--user", missing, state_dir=world / "s",
            check=True)
    assert (f"warning: user {missing} does not exist (microvm@.service runs VMs as it): not " +
            f"checking that it can run {runner}") in p.stderr
    # update says it no more (create did; doctor does)
    p = cli("update", "vm", "--runner", str(runner), state_dir=world / "s", check=True)
    assert "warning" not in p.stderr
    p = cli("doctor", "--user", missing, state_dir=world / "s")
    assert re.search(rf"^warn\s+vm vm as {missing}: not checked: user {missing} does not exist",
                     p.stdout, re.M), p.stdout
    assert re.search(rf"^warn\s+devices as {missing}: not checked", p.stdout, re.M)


def test_a_probe_that_cannot_run_is_a_warning(world: Path, user: Someone,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """When the question cannot be asked, create says so and goes on; doctor warns."""
    def fail(*_args: object, **_kwargs: object) -> None:
        raise ProcessError("python3: cannot execute: Permission denied", 126)

    monkeypatch.setattr(process, "run", fail)
    private = world / "private"
    private.mkdir(mode=0o700)
    runner = make_runner(private, "vm")
    said: list[str] = []
    host = commands.Host(root=world / "state", service=Service(use_systemd=False),
                         echo=said.append)
    commands.create(host, "vm", runner=str(runner), user=user.name, group=user.group)
    assert said[0] == (f"warning: cannot check that {user.name} can run {runner}: " +
                       "python3: cannot execute: Permission denied")
    findings = {f.check: f for f in doctor.check_state(host.root, user.name, user.group)}
    finding = findings[f"vm vm as {user.name}"]
    assert (finding.level, finding.detail) == (
        doctor.Level.WARN, "cannot check: python3: cannot execute: Permission denied")


def test_create_from_a_flake_checks_the_built_runner(world: Path, user: Someone,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner a flake builds is checked before `current` is written."""
    private = world / "private"
    private.mkdir(mode=0o700)
    built = make_runner(private, "vm")
    monkeypatch.setattr(commands, "_build_flake", lambda *_args: (built, None))
    host = commands.Host(root=world / "state", service=Service(use_systemd=False),
                         echo=lambda _: None)
    with pytest.raises(UsageError, match=f"who cannot search {re.escape(str(private))} "):
        commands.create(host, "vm", flake="git+file:///nowhere", user=user.name,
                        group=user.group)
    assert not VMDir(host.root, "vm").exists


# -- the probe -------------------------------------------------------------------------------

def test_links_are_followed_as_the_kernel_does(world: Path, user: Someone) -> None:
    private = world / "private"
    (private / "d").mkdir(parents=True)
    private.chmod(0o700)
    (private / "d" / "file").write_text("x")
    (world / "link").symlink_to("private/d")
    (world / "up").mkdir()
    (world / "up" / "back").symlink_to("../link/../d")  # relative, through a link, with ..
    denials = access.probe(acct(user), [
        Request(str(world / "link" / "file"), Need.READ, "through a link"),
        Request(str(world / "up" / "back"), Need.SEARCH, "a relative link"),
        Request(str(world / "nonexistent" / "file"), Need.READ, "missing"),
        Request(str(world), Need.SEARCH, "fine"),
    ])
    assert [(d.request.what, d.at, d.need) for d in denials] == [
        ("through a link", str(private), Need.SEARCH),
        ("a relative link", str(private), Need.SEARCH),
    ]
    private.chmod(0o755)
    assert access.probe(acct(user), [Request(str(world / "link" / "file"), Need.READ, "x"),
                                     Request(str(world / "up" / "back"), Need.SEARCH, "y")]) == []


@pytest.mark.parametrize(("mode", "group", "usable"), [
    (0o600, None, False), (0o660, "extra", True), (0o660, "root", False), (0o606, None, True),
    (0o604, None, False)])
def test_device_check_opens_as_the_user(world: Path, user: Someone, mode: int,
                                        group: str | None, usable: bool) -> None:
    """A /dev/net/tun stand-in: opened read-write as the user, with its groups."""
    device = world / "tun"
    device.write_text("")
    if group == "extra":
        shutil.chown(device, group=user.extra)
    device.chmod(mode)
    problem = access.device_problem(acct(user), str(device))
    assert (problem is None) == usable
    if problem is not None:
        why, fix = problem
        assert why.startswith("Permission denied (")
        assert fix.startswith(f"chgrp {user.group} {device} && chmod g+rw {device} (to make " +
                              "it last, a udev rule: KERNEL==\"tun\"")
        assert "DeviceAllow=" in fix


def test_doctor_reports_devices_for_root_and_for_the_user_apart(world: Path,
                                                                user: Someone) -> None:
    """Root can open a 0600 device; the user cannot, and doctor says so separately."""
    device = world / "tun"
    device.write_text("")
    device.chmod(0o600)
    root_finding = doctor.check_device(str(device), "tap devices", "modprobe tun")
    assert (root_finding.level, root_finding.detail) == (doctor.Level.OK,
                                                         "tap devices: usable by root")
    (finding,) = doctor.check_devices_as(user.name, user.group, [str(device)])
    assert finding.level is doctor.Level.WARN
    assert finding.check == f"{device} as {user.name}"
    assert finding.detail == (f"not usable by {user.name}: Permission denied " +
                              "(-rw------- root:root)")
    device.chmod(0o666)
    (finding,) = doctor.check_devices_as(user.name, user.group, [str(device)])
    assert (finding.level, finding.detail) == (doctor.Level.OK, f"usable by {user.name}")


def test_a_device_node_is_opened_not_just_looked_at(world: Path, user: Someone) -> None:
    """A character device (a copy of /dev/null) behind a 0600 mode, as /dev/net/tun is here."""
    node = world / "null"
    os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    assert access.device_problem(acct(user), str(node)) is not None
    node.chmod(0o666)
    assert access.device_problem(acct(user), str(node)) is None


# -- ACLs: the kernel's answer, and a message that says when mode bits do not explain it -------

def _acl(entries: list[tuple[int, int, int]]) -> bytes:
    """A system.posix_acl_access value: version 2, then (tag, perm, id) entries."""
    undefined = 0xFFFFFFFF
    return struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", tag, perm, ident if ident >= 0 else undefined)
        for tag, perm, ident in entries)


USER_OBJ, USER, GROUP_OBJ, MASK, OTHER = 0x01, 0x02, 0x04, 0x10, 0x20


def _set_acl(path: Path, entries: list[tuple[int, int, int]]) -> None:
    try:
        os.setxattr(path, "system.posix_acl_access", _acl(entries))
    except OSError as e:
        pytest.skip(f"no POSIX ACLs on this file system: {e.strerror}")


def test_an_acl_is_honoured(world: Path, user: Someone) -> None:
    """A 0700 directory with an ACL entry letting the user search it: the kernel says yes."""
    private = world / "private"
    private.mkdir(mode=0o700)
    runner = make_runner(private, "vm")
    _set_acl(private, [(USER_OBJ, 7, -1), (USER, 1, user.uid), (GROUP_OBJ, 0, -1),
                       (MASK, 1, -1), (OTHER, 0, -1)])
    cli("create", "vm", "--runner", str(runner), "--user", user.name, "--group", user.group,
        state_dir=world / "state", check=True)


def test_an_acl_that_refuses_is_named_not_chmodded(world: Path, user: Someone) -> None:
    """Mode bits that allow it and an ACL that does not: no chmod is suggested."""
    kernel = world / "bzImage"
    kernel.write_text("x")
    kernel.chmod(0o644)
    _set_acl(kernel, [(USER_OBJ, 6, -1), (USER, 0, user.uid), (GROUP_OBJ, 4, -1),
                      (MASK, 4, -1), (OTHER, 4, -1)])
    runner = make_runner(world, "vm", kernel=kernel)
    p = cli("create", "vm", "--runner", str(runner), "--user", user.name, "--group", user.group,
            state_dir=world / "state")
    assert p.returncode == 2, p.stderr
    message = error_line(p.stderr)
    assert f"cannot read {kernel} (-rw-r--r-- root:root; needed for microvm.kernel)" in message
    assert f"fix: the mode of {kernel} allows it: an ACL (getfacl {kernel})" in message
    assert "chmod" not in message
