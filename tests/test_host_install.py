"""`microvm host install` / `host uninstall` (non-NixOS hosts): the tree written under --root,
its modes, links and manifest, idempotence, upgrades, refusals, what uninstall keeps, and the
exact programs the real path runs (stand-ins on PATH record their argv)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from microvm import __version__, managed, units
from microvm.errors import HostError
from microvm.host import install
from support.host_cli import cli, write_exe
from support.managed_trees import contents, crash_at, no_leftovers, snapshot

PREFIX = "/usr/local"
SCRIPT = Path(sysconfig.get_path("scripts")) / "microvm"


def top(root: Path, prefix: str = PREFIX) -> Path:
    return root / prefix.lstrip("/")


def host(*args: str, root: Path | None = None, env: dict[str, str] | None = None,
         check: bool | None = None) -> subprocess.CompletedProcess[str]:
    return cli("host", *args, *(["--root", str(root)] if root else []), env=env, check=check)


def others(root: Path) -> None:
    """What /usr/local holds before: files of the administrator's and of other packages."""
    t = top(root)
    for rel, text in (("bin/tool", "#!/bin/sh\n"), ("lib/systemd/system/site.service", "[Unit]\n"),
                      ("lib/tmpfiles.d/site.conf", "d /srv/site\n"), ("libexec/other/x", "x\n"),
                      ("lib/python3.11/dist-packages/m.py", "")):
        (t / rel).parent.mkdir(parents=True, exist_ok=True)
        (t / rel).write_text(text)
    (t / "lib/systemd/system/multi-user.target.wants").mkdir()
    (t / "lib/systemd/system/multi-user.target.wants/site.service").symlink_to("../site.service")


# -- the tree ------------------------------------------------------------------------------

def test_install_writes_the_host_side_under_the_prefix(tmp_path: Path) -> None:
    p = host("install", root=tmp_path, check=True)
    t = top(tmp_path)
    manifest = json.loads((t / install.MANIFEST).read_text())
    assert manifest["writer"] == f"microvm host install {__version__}"
    assert manifest["settings"] == {"prefix": PREFIX, "stateDir": "/var/lib/microvms",
                                    "user": "microvm", "group": "kvm"}
    expected = install.build(install.Settings(), SCRIPT)
    assert set(manifest["files"]) == set(expected)
    assert {units.TMPFILES, install.SYSUSERS, install.BIN,
            f"{units.UNIT_DIR}/microvm@.service",
            f"{units.UNIT_DIR}/multi-user.target.wants/microvms.target",
            f"{units.LIBEXEC_DIR}/set-booted"} <= set(expected)
    # the same units `microvm units` makes for these settings and helpers' place
    assert {k: v for k, v in expected.items() if k not in (install.SYSUSERS, install.BIN)} == \
        units.build(units.UnitOptions(libexec_dir="/usr/local/libexec/microvm"),
                    "/usr/local/libexec/microvm")
    for rel, entry in expected.items():
        st = os.lstat(t / rel)
        if isinstance(entry, managed.Link):
            assert stat.S_ISLNK(st.st_mode) and os.readlink(t / rel) == entry.target, rel
        else:
            assert (t / rel).read_text() == entry[0], rel
            assert stat.S_IMODE(st.st_mode) == entry[1], rel
    assert os.readlink(t / "bin/microvm") == str(SCRIPT)
    assert all(stat.S_IMODE(os.stat(t / d).st_mode) == 0o755 for d in manifest["dirs"])
    # every helper a unit runs is where the unit says, inside the prefix
    service = (t / units.UNIT_DIR / "microvm-set-booted@.service").read_text()
    assert "ExecStart=/usr/local/libexec/microvm/set-booted %i\n" in service
    for line in "".join((t / units.UNIT_DIR / u).read_text()
                        for u in units.TEMPLATE_UNITS).splitlines():
        for word in line.split():
            if word.lstrip("-+!@").startswith("/usr/local/"):
                assert (tmp_path / word.lstrip("-+!@").lstrip("/")).exists(), line
    assert (t / install.SYSUSERS).read_text().splitlines()[-3:] == [
        "g kvm -", 'u microvm - "MicroVM runner" /var/lib/microvms', "m microvm kvm"]
    assert ("--root given: not running systemd-sysusers /usr/local/lib/sysusers.d/microvm.conf; "
            + "systemd-tmpfiles --create /usr/local/lib/tmpfiles.d/microvm.conf; systemctl "
            + "daemon-reload") in p.stderr


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None
                    or shutil.which("systemd-tmpfiles") is None,
                    reason="systemd-sysusers or systemd-tmpfiles is not installed")
def test_sysusers_and_tmpfiles_accept_the_files(tmp_path: Path) -> None:
    """systemd's own tools, on a scratch root: the user, the group when missing, the
    membership, the state directory."""
    host("install", "--state-dir", "/srv/vms", root=tmp_path, check=True)
    t = top(tmp_path)
    sysroot = tmp_path / "sys"
    (sysroot / "etc").mkdir(parents=True)
    (sysroot / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (sysroot / "etc/group").write_text("root:x:0:\n")
    for argv in install.setup_argv(install.Settings(state_dir="/srv/vms")):
        real = str(tmp_path / argv[-1].lstrip("/"))
        subprocess.run([argv[0], f"--root={sysroot}", *argv[1:-1], real], check=True,
                       capture_output=True)
    user = next(x.split(":") for x in (sysroot / "etc/passwd").read_text().splitlines()
                if x.startswith("microvm:"))
    assert user[5:] == ["/srv/vms", "/usr/sbin/nologin"]
    kvm = next(x.split(":") for x in (sysroot / "etc/group").read_text().splitlines()
               if x.startswith("kvm:"))
    assert kvm[3] == "microvm"
    for d in ("srv/vms", "srv/vms/.control"):
        assert stat.S_IMODE((sysroot / d).stat().st_mode) == 0o755
    assert (t / install.SYSUSERS).is_file()


def test_install_again_changes_nothing_and_upgrades_in_place(tmp_path: Path) -> None:
    host("install", "--state-dir", "/srv/vms", "--user", "vms", root=tmp_path, check=True)
    before = snapshot(tmp_path)
    p = host("install", root=tmp_path, check=True)
    assert snapshot(tmp_path) == before  # the recorded settings, not the defaults
    assert "0 files and links written, 0 removed, 22 unchanged" in p.stderr
    assert "state directory /srv/vms, VMs run as vms:kvm" in p.stderr
    # an older version's tree: a helper it had is gone now, one unit differed
    t = top(tmp_path)
    entries = install.build(install.Settings(state_dir="/srv/vms", user="vms"), SCRIPT)
    entries[f"{units.LIBEXEC_DIR}/retired"] = ("#!/bin/sh\n", 0o755)
    entries[f"{units.UNIT_DIR}/microvms.target"] = ("[Unit]\n", 0o644)
    managed.write(t, install.MANIFEST, entries, writer="microvm host install 0.0.1",
                  settings={"prefix": PREFIX, "stateDir": "/srv/vms", "user": "vms"})
    p = host("install", root=tmp_path, check=True)
    assert "1 files and links written, 1 removed" in p.stderr
    assert not (t / units.LIBEXEC_DIR / "retired").exists()
    assert contents(snapshot(tmp_path)) == contents(before)
    # new settings: the units follow
    host("install", "--group", "vmgroup", root=tmp_path, check=True)
    assert "Group=vmgroup" in (t / units.UNIT_DIR / "microvm@.service").read_text()
    assert "User=vms" in (t / units.UNIT_DIR / "microvm@.service").read_text()


def test_others_files_stay_and_a_foreign_command_is_refused(tmp_path: Path) -> None:
    others(tmp_path)
    theirs = snapshot(tmp_path)
    host("install", root=tmp_path, check=True)
    after = snapshot(tmp_path)
    assert {k: after[k] for k in theirs} == theirs
    host("uninstall", root=tmp_path, check=True)
    assert snapshot(tmp_path) == theirs  # and what install created is gone again

    t = top(tmp_path)
    (t / "bin/microvm").write_text("#!/bin/sh\necho an older microvm\n")
    (t / units.UNIT_DIR / "microvm@.service").symlink_to("/dev/null")
    before = snapshot(tmp_path)
    p = host("install", root=tmp_path)
    assert p.returncode == 2
    assert f"error: {t / 'bin/microvm'}: exists and was not written by microvm" in p.stderr
    assert f"error: {t / units.UNIT_DIR / 'microvm@.service'}: exists and was not" in p.stderr
    assert snapshot(tmp_path) == before


def test_uninstall_keeps_changed_files_the_state_and_the_user(tmp_path: Path) -> None:
    others(tmp_path)
    theirs = snapshot(tmp_path)
    host("install", "--state-dir", "/srv/vms", root=tmp_path, check=True)
    t = top(tmp_path)
    changed = t / units.UNIT_DIR / "microvm@.service"
    changed.write_text(changed.read_text() + "# my change\n")
    p = host("uninstall", root=tmp_path, check=True)
    assert "21 files and links removed" in p.stderr
    assert f"kept {changed}: changed since it was written" in p.stderr
    assert ("kept: the state directory /srv/vms (the VMs' data) and the user microvm"
            in p.stderr)
    assert "--root given: not running systemctl daemon-reload" in p.stderr
    left = snapshot(tmp_path)
    assert set(left) - set(theirs) == {str(changed.relative_to(tmp_path))}
    assert {k: left[k] for k in theirs} == theirs
    p = host("uninstall", root=tmp_path, check=True)
    assert f"nothing to remove: no {t / install.MANIFEST}" in p.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--prefix", "usr/local"], "--prefix must be an absolute path"),
    (["--prefix", "/opt/my prefix"], "--prefix must be an absolute path"),
    (["--state-dir", "/srv/$(id)"], "--state-dir must be an absolute path"),
    (["--user", "bad user"], "--user must be a user/group name"),
    (["--group", "-g"], "--group must be a user/group name"),
])
def test_bad_input_changes_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    p = host("install", *args, root=tmp_path)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr
    assert not list(tmp_path.iterdir())


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    for cmd in ("install", "uninstall"):
        p = host(cmd, root=tmp_path / "missing")
        assert p.returncode == 2
        assert "does not exist" in p.stderr


def test_the_command_is_not_linked_to_itself(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """pip installed the package into the prefix itself: its bin/microvm is the command."""
    monkeypatch.setattr(install, "console_script", lambda: Path("/usr/local/bin/microvm"))
    monkeypatch.setattr(install, "check_trusted", lambda _script: None)
    said: list[str] = []
    install.install(install.Settings(), tmp_path, said.append)
    assert not os.path.lexists(top(tmp_path) / "bin/microvm")
    assert "/usr/local/bin/microvm is this installation's own command: not linked" in said


def test_a_command_others_could_change_is_not_linked(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    script = write_exe(shared / "microvm", "#!/bin/sh\n")
    monkeypatch.setattr(install, "console_script", lambda: script)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(HostError, match=f"refusing {shared}: writable by group or others"):
        install.install(install.Settings(), root, lambda _: None)
    assert not list(root.iterdir())


def test_no_console_script_is_an_error(monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    monkeypatch.setattr(sysconfig, "get_path", lambda _name: str(tmp_path))
    with pytest.raises(HostError, match="no `microvm` command beside this Python"):
        install.console_script()


# -- what the real path runs ------------------------------------------------------------------

@pytest.fixture
def stand_ins(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    """systemd-sysusers, systemd-tmpfiles and systemctl that record their argv; systemctl
    list-units prints the lines of `active`."""
    log, active = tmp_path / "argv.log", tmp_path / "active"
    active.write_text("")
    for name in ("systemd-sysusers", "systemd-tmpfiles", "systemctl"):
        write_exe(tmp_path / "bin" / name, f"""
            #!{sys.executable}
            import json, os, sys
            with open({str(log)!r}, "a") as f:
                f.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
            if sys.argv[1:2] == ["list-units"]:
                print(open({str(active)!r}).read(), end="")
            """)
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
           "MICROVM_SERVICE_MANAGER": "systemd"}
    return env, log, active


def calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    out = [json.loads(x) for x in log.read_text().splitlines()]
    log.unlink()
    return out


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="host install without --root: root")
LIST_UNITS = ["systemctl", "list-units", "--plain", "--no-legend", "--no-pager",
              "--state=active,activating,deactivating,reloading", "microvm@*.service"]


@needs_root
def test_install_runs_sysusers_tmpfiles_and_daemon_reload(
        tmp_path: Path, stand_ins: tuple[dict[str, str], Path, Path]) -> None:
    env, log, _ = stand_ins
    prefix = str(tmp_path / "prefix")
    p = host("install", "--prefix", prefix, env=env, check=True)
    assert calls(log) == [
        ["systemd-sysusers", f"{prefix}/lib/sysusers.d/microvm.conf"],
        ["systemd-tmpfiles", "--create", f"{prefix}/lib/tmpfiles.d/microvm.conf"],
        ["systemctl", "daemon-reload"]]
    assert f"+ systemd-sysusers {prefix}/lib/sysusers.d/microvm.conf" in p.stderr
    assert (Path(prefix) / units.UNIT_DIR / "microvm@.service").is_file()
    # no systemd as service manager: the files are set up, nothing is reloaded
    host("install", "--prefix", prefix, env={**env, "MICROVM_SERVICE_MANAGER": "none"},
         check=True)
    assert [c[0] for c in calls(log)] == ["systemd-sysusers", "systemd-tmpfiles"]


@needs_root
def test_uninstall_refuses_while_vms_run(
        tmp_path: Path, stand_ins: tuple[dict[str, str], Path, Path]) -> None:
    env, log, active = stand_ins
    prefix = str(tmp_path / "prefix")
    host("install", "--prefix", prefix, env=env, check=True)
    calls(log)
    before = snapshot(tmp_path / "prefix")
    active.write_text("microvm@web.service loaded active running MicroVM web\n" +
                      "microvm@db.service loaded activating start MicroVM db\n")
    p = host("uninstall", "--prefix", prefix, env=env)
    assert p.returncode == 1
    assert ("error: VMs are running: microvm@db.service, microvm@web.service; stop them " +
            "first (microvm shutdown NAME), or pass --force") in p.stderr
    assert snapshot(tmp_path / "prefix") == before
    assert calls(log) == [LIST_UNITS]
    p = host("uninstall", "--prefix", prefix, "--force", env=env, check=True)
    assert "left running without unit files: microvm@db.service, microvm@web.service" \
        in p.stderr
    assert calls(log) == [LIST_UNITS, ["systemctl", "daemon-reload"]]
    assert not (Path(prefix) / install.MANIFEST).exists()
    assert not (Path(prefix) / "lib").exists()  # every directory install created, empty: gone


def test_host_subcommands_show_examples_that_use_their_real_options() -> None:
    from microvm import cli as microvm_cli

    assert set(microvm_cli.HOST_EXAMPLES) == set(microvm_cli.host_group.commands)
    for name, command in microvm_cli.host_group.commands.items():
        help_text = cli("host", name, "--help", check=True).stdout
        assert "Examples:" in help_text, name
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        for example in microvm_cli.HOST_EXAMPLES[name]:
            words = example.split()
            assert words[1:3] == ["host", name], example
            assert all(w in known for w in words[3:] if w.startswith("-")), example


def test_a_first_install_killed_at_any_step_is_undone_or_completed(tmp_path: Path) -> None:
    """The manifest lives in a directory the install creates (lib/microvm): a crash before
    the commit leaves nothing behind once the next run has undone it."""
    root = tmp_path / "root"
    entries = install.build(install.Settings(), SCRIPT)

    def first_install() -> object:
        return managed.write(top(root), install.MANIFEST, entries, writer="w")

    root.mkdir()
    first_install()
    new = contents(snapshot(root))
    seen = set()
    n = 1
    while True:
        shutil.rmtree(root)
        (root / "usr/local").mkdir(parents=True)
        if not crash_at(n, first_install, kill=True):
            break
        tree = managed.Tree(top(root), install.MANIFEST)
        with tree.locked():
            seen.add(tree.recover())
        after = contents(snapshot(root))
        assert after in ({"usr": ("d", 0o755), "usr/local": ("d", 0o755)}, new), n
        no_leftovers(root)
        n += 1
    assert {"undone", "completed"} <= seen and n > 10
