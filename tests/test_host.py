"""The state directory and the host commands, without booting: atomic switches (with the process
killed between every two steps), locks, create/update/list/remove on generated runners, fake
`nix` and `systemctl` programs that record their argv (tests/support/host_cli.py).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from microvm.errors import UsageError
from microvm.host import state
from microvm.host.commands import runner_diff
from microvm.host.pin import Pin
from microvm.host.service import all_units
from microvm.host.state import Flake, MetaRecord, Runner, RunnerPath, VMDir
from support import faults
from support.host_cli import UPDATE_STEPS, calls, cli, fake_systemctl, make_runner

# -- names, links, temporaries ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["vm", "web-1", "a.b", "_x", "A9"])
def test_good_names(name: str) -> None:
    assert state.check_name(name) == name


@pytest.mark.parametrize("name", ["", ".vm", "-vm", "a/b", "a b", "x" * 65, "a..b", "vm.",
                                  "ü", "a\nb"])
def test_bad_names(name: str) -> None:
    with pytest.raises(UsageError, match="invalid VM name"):
        state.check_name(name)


def test_state_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(state.STATE_DIR_ENV, raising=False)
    assert state.state_root() == Path("/var/lib/microvms")
    monkeypatch.setenv(state.STATE_DIR_ENV, str(tmp_path / "env"))
    assert state.state_root() == tmp_path / "env"
    assert state.state_root(tmp_path / "flag") == tmp_path / "flag"


PIN = {"url": "https://example.org/r.git", "rev": "a" * 40, "sha256": "sha256-x", "ref": "main"}


@pytest.mark.parametrize(("data", "record"), [
    ({}, MetaRecord()),
    ({"runner": "/r", "restartOnUpdate": True}, MetaRecord(RunnerPath("/r"), True)),
    ({"flake": "path:/f"}, MetaRecord(Flake("path:/f"))),
    ({"flake": "git+https://example.org/r.git", "pin": PIN},
     MetaRecord(Flake("git+https://example.org/r.git", Pin.from_json(PIN)))),
    # a declared VM updated from its updateFlake records the pin only
    ({"pin": PIN}, MetaRecord(Flake(None, Pin.from_json(PIN)))),
])
def test_meta_record_reads_what_every_version_wrote(data: dict[str, Any],
                                                     record: MetaRecord) -> None:
    """meta.json as written so far loads into the typed record, and is written back the same."""
    assert MetaRecord.from_json(data) == record
    assert record.to_json() == data
    # what a pending change adds is no part of the record; a flake wins over a runner; a
    # malformed pin is none
    assert MetaRecord.from_json({**data, "current": "/x"}) == record
    assert MetaRecord.from_json({"flake": "f", "runner": "/r", "pin": {"url": 1}}) == \
        MetaRecord(Flake("f"))


def test_record_is_the_pending_one_once_current_names_it(tmp_path: Path) -> None:
    vm = VMDir(tmp_path, "vm")
    vm.control.mkdir(parents=True)
    vm.file("meta.json").write_text('{"runner": "/old"}')
    vm.file("meta.json.pending").write_text('{"runner": "/new", "current": "/new"}')
    vm.current_link.symlink_to("/old")
    assert vm.record() == MetaRecord(RunnerPath("/old"))
    vm.current_link.unlink()
    vm.current_link.symlink_to("/new")
    assert vm.record() == MetaRecord(RunnerPath("/new"))


SWITCH_STEPS = ["current:before-link", "current:link-written", "current:renamed"]


@pytest.mark.parametrize("step", SWITCH_STEPS)
def test_switch_link_killed_at_each_step(tmp_path: Path, step: str) -> None:
    """SIGKILL between any two steps leaves `current` at the old or the new target, and the
    leftover temporary link is cleaned up by the next change."""
    link = tmp_path / "current"
    link.symlink_to("old")
    code = ("import os, sys; from pathlib import Path; sys.path.insert(0, sys.argv[2]); " +
            "import faults; from microvm.host import state; " +
            "state.observer = faults.observer(os.environ); " +
            "state.switch_link(Path(sys.argv[1]), 'new')")
    proc = subprocess.Popen([sys.executable, "-c", code, str(link), str(faults.SCRIPT.parent)],
                            env={**os.environ, faults.CRASH_ENV: step})
    assert proc.wait() == -signal.SIGKILL
    assert os.readlink(link) in ("old", "new")
    assert os.readlink(link) == ("new" if step == "current:renamed" else "old")
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "current"]
    assert leftovers == ([] if step != "current:link-written" else [f".current.new.{proc.pid}"])
    removed = state.clean_temporaries(tmp_path)
    assert [x.name for x in removed] == leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current"]


def test_write_atomic_and_temporaries_of_live_processes(tmp_path: Path) -> None:
    target = tmp_path / "pin.json"
    state.write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    mine = tmp_path / f".pin.json.new.{os.getpid()}"
    mine.write_text("in progress")
    assert state.clean_temporaries(tmp_path) == []  # our own (live) temporary stays
    assert mine.exists()


def test_run_lock(tmp_path: Path) -> None:
    vm = VMDir(tmp_path, "vm")
    vm.control.mkdir(parents=True)
    assert vm.run_pid() is None
    with vm.hold_run_lock():
        assert vm.run_pid() == os.getpid()
        # a second holder (another process) is refused
        code = ("import sys; from pathlib import Path; from microvm.host.state import VMDir;" +
                "vm = VMDir(Path(sys.argv[1]), 'vm')\n" +
                "try:\n  vm.hold_run_lock().__enter__()\nexcept Exception as e: print(e)")
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], text=True,
                             capture_output=True).stdout
        assert "vm is already running" in out
    assert vm.run_pid() is None


# -- create, list, update, remove (no boot) --------------------------------------------------

@pytest.fixture
def runners(tmp_path: Path) -> tuple[Path, Path]:
    a = make_runner(tmp_path, "vm", name="a")
    b = make_runner(tmp_path, "vm", name="b", mem=384, volumes=[
        {"image": "data.img", "size": 8, "mountPoint": "/data"}])
    return a, b


def test_create_list_update_remove(tmp_path: Path, runners: tuple[Path, Path]) -> None:
    a, b = runners
    root = tmp_path / "state"
    cli("create", "vm", "--runner", str(a), state_dir=root, check=True)
    vm = VMDir(root, "vm")
    assert vm.current == a
    assert vm.record() == MetaRecord(RunnerPath(str(a)))
    assert vm.booted is None
    listed = json.loads(cli("list", "--json", state_dir=root, check=True).stdout)
    assert [(x["name"], x["state"], x["runner"], x["hypervisor"]) for x in listed] == [
        ("vm", "stopped", "not booted", "qemu")]
    table = cli("list", state_dir=root, check=True, env={"NO_COLOR": "1"}).stdout.splitlines()
    # a name shorter than the NAME heading keeps the columns aligned
    assert table[0].index("STATE") == table[1].index("stopped"), table
    again = cli("create", "vm", "--runner", str(a), state_dir=root)
    assert again.returncode == 1
    assert "already exists" in again.stderr

    out = cli("update", "vm", "--runner", str(b), state_dir=root, check=True).stderr
    assert vm.current == b
    assert "+384M" in out  # the launch.json argv diff: -m 256M -> 384M
    assert "-256M" in out
    assert "+id=vol0,format=raw,file=data.img,if=none" in out
    assert "vm: no change" in cli("update", "vm", state_dir=root, check=True).stderr

    (vm.path / "data.img").write_text("volume")
    out = cli("remove", "vm", state_dir=root, check=True).stderr
    assert "kept" in out
    assert sorted(p.name for p in vm.path.iterdir()) == ["data.img"]
    assert cli("list", "--json", state_dir=root, check=True).stdout.strip() == "[]"
    # the name can be used again, and the kept volume with it
    cli("create", "vm", "--runner", str(b), state_dir=root, check=True)
    assert (vm.path / "data.img").read_text() == "volume"
    cli("remove", "vm", "--purge", state_dir=root, check=True)
    assert not vm.path.exists()
    # the purge a plain remove offers ("microvm remove --purge deletes them") works after it
    cli("create", "vm", "--runner", str(b), state_dir=root, check=True)
    (vm.path / "data.img").write_text("volume")
    assert "--purge deletes them" in cli("remove", "vm", state_dir=root, check=True).stderr
    out = cli("remove", "vm", "--purge", state_dir=root, check=True).stderr
    assert "removed" in out and not vm.path.exists()
    missing = cli("remove", "vm", "--purge", state_dir=root)
    assert missing.returncode == 1 and "no MicroVM 'vm'" in missing.stderr


def test_create_refuses_no_runner(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    p = cli("create", "vm", "--runner", str(tmp_path / "empty"), state_dir=tmp_path / "s")
    assert p.returncode == 1
    assert "no MicroVM runner" in p.stderr
    assert not (tmp_path / "s" / ".control" / "vm" / "current").exists()


@pytest.mark.parametrize("step", ["current:before-link", "current:link-written",
                                  "create:before-current"])
def test_create_killed_leaves_no_vm(tmp_path: Path, runners: tuple[Path, Path],
                                    step: str) -> None:
    a, _ = runners
    root = tmp_path / "state"
    p = cli("create", "vm", "--runner", str(a), state_dir=root,
            env={faults.CRASH_ENV: step})
    assert p.returncode == -signal.SIGKILL
    assert cli("list", "--json", state_dir=root, check=True).stdout.strip() == "[]"
    cli("create", "vm", "--runner", str(a), state_dir=root, check=True)
    assert VMDir(root, "vm").current == a


@pytest.mark.parametrize("step", UPDATE_STEPS)
def test_update_killed_at_each_step(tmp_path: Path, runners: tuple[Path, Path],
                                    step: str) -> None:
    """An update killed between any two steps leaves `current` at a complete runner (old or
    new) and `booted` untouched; the next update finishes the job."""
    a, b = runners
    root = tmp_path / "state"
    cli("create", "vm", "--runner", str(a), state_dir=root, check=True)
    vm = VMDir(root, "vm")
    vm.booted_link.symlink_to(a)  # as if it ran
    p = cli("update", "vm", "--runner", str(b), state_dir=root, env={faults.CRASH_ENV: step})
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert vm.current in (a, b)
    # old or new, never a mix: the recorded source names the runner `current` points at
    assert vm.record().source == RunnerPath(str(vm.current))
    assert Runner(vm.current_link).valid
    assert vm.booted == a
    listed = json.loads(cli("list", "--json", state_dir=root, check=True).stdout)
    assert listed[0]["name"] == "vm"
    cli("update", "vm", "--runner", str(b), state_dir=root, check=True)
    assert vm.current == b
    assert vm.booted == a
    assert not [p for p in vm.control.iterdir() if ".new." in p.name or "pending" in p.name]


def test_update_restart_through_systemd(tmp_path: Path, runners: tuple[Path, Path]) -> None:
    """With systemd, a running VM whose runner changed is restarted only with --restart (or
    when it was created with --restart-on-update)."""
    a, b = runners
    root, log, active = tmp_path / "state", tmp_path / "log", tmp_path / "active"
    fake_systemctl(tmp_path / "bin", log, active)
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
           "MICROVM_SERVICE_MANAGER": "systemd"}
    out = cli("create", "vm", "--runner", str(a), state_dir=root, env=env, check=True).stderr
    assert "systemctl start microvm@vm.service" in out
    vm = VMDir(root, "vm")
    vm.booted_link.symlink_to(a)
    active.write_text("microvm@vm.service")
    out = cli("update", "vm", "--runner", str(b), state_dir=root, env=env, check=True).stderr
    assert "systemctl restart microvm@vm.service" in out
    assert ["restart", "microvm@vm.service"] not in calls(log)
    listed = json.loads(cli("list", "--json", state_dir=root, env=env, check=True).stdout)
    assert listed[0]["runner"] == "restart pending: the new runner is installed"
    assert listed[0]["runBy"] == "systemd"
    cli("update", "vm", "--runner", str(a), state_dir=root, env=env, check=True)
    out = cli("update", "-R", "vm", "--runner", str(b), state_dir=root, env=env,
              check=True).stderr
    assert ["restart", "microvm@vm.service"] in calls(log)
    assert "restarting" in out
    cli("shutdown", "vm", state_dir=root, env=env, check=True)
    # the VM's unit and its helpers, all named: systemctl waits only for the jobs it was asked
    assert ["stop", *all_units("vm")] in calls(log)
    assert all_units("vm")[0] == "microvm@vm.service"
    assert "microvm-set-booted@vm.service" in all_units("vm")


def test_declared_vm_cannot_be_updated(tmp_path: Path, runners: tuple[Path, Path]) -> None:
    a, _ = runners
    root = tmp_path / "state"
    cli("create", "vm", "--runner", str(a), state_dir=root, check=True)
    (root / ".control" / "vm" / "declared.json").write_text(
        '{"declared": true, "restartIfChanged": true}')
    p = cli("update", "vm", state_dir=root)
    assert p.returncode == 1
    assert "declared in the host configuration" in p.stderr


def test_declared_vm_with_update_flake_is_updated_here(tmp_path: Path,
                                                      runners: tuple[Path, Path]) -> None:
    """microvm.vms.NAME.updateFlake: the host installed it once; `microvm update` takes over."""
    a, b = runners
    root = tmp_path / "state"
    cli("create", "vm", "--runner", str(a), state_dir=root, check=True)
    (root / ".control" / "vm" / "declared.json").write_text(
        '{"declared": true, "restartIfChanged": false, "updateFlake": "path:/srv/vms"}')
    cli("update", "vm", "--runner", str(b), state_dir=root, check=True)
    assert os.readlink(root / ".control" / "vm" / "current") == str(b)


def test_runner_diff_names_changes(tmp_path: Path) -> None:
    a = make_runner(tmp_path, "vm", name="a")
    b = make_runner(tmp_path, "vm", name="b", vcpu=2, vsock={"cid": 7})
    lines = runner_diff(Runner(a), Runner(b))
    assert "--- booted/launch.json (kvm)" in lines
    assert "+vhost-vsock-device,guest-cid=7" in lines
    assert "changed: share/microvm/vsock-cid" in lines
    assert runner_diff(Runner(a), Runner(a)) == []


def test_state_dir_listing_ignores_noise(tmp_path: Path, runners: tuple[Path, Path]) -> None:
    a, _ = runners
    root = tmp_path / "state"
    (root / "not-a-vm").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "file").write_text("x")
    cli("create", "vm", "--runner", str(a), state_dir=root, check=True)
    assert [v.name for v in state.list_vms(root)] == ["vm"]
    mode = stat.S_IMODE((root / "vm").stat().st_mode)
    assert (mode & 0o755) == 0o755, oct(mode)


def test_create_and_update_refuse_what_another_vm_of_the_host_uses(tmp_path: Path) -> None:
    """Two VMs of one host cannot share a tap name or a vsock CID (hostwide.py): `create` and
    `update --runner` refuse with both VMs and both option paths, exit 2, nothing switched."""
    tap = [{"type": "tap", "id": "vm-shared", "mac": "02:00:00:00:00:31"}]
    first = make_runner(tmp_path, "one", name="r1", interfaces=tap, vsock={"cid": 5})
    clash = make_runner(tmp_path, "two", name="r2", vsock={"cid": 5},
                        interfaces=[{**tap[0], "mac": "02:00:00:00:00:32"}])
    fine = make_runner(tmp_path, "two", name="r3", vsock={"cid": 6})
    root = tmp_path / "state"
    cli("create", "one", "--runner", str(first), state_dir=root, check=True)
    p = cli("create", "two", "--runner", str(clash), state_dir=root)
    assert p.returncode == 2, p.stderr
    assert ("error: two: microvm.interfaces[0].id: network interface name 'vm-shared' is " +
            "also used by one (microvm.interfaces[0].id)") in p.stderr
    assert "error: two: microvm.vsock.cid: vsock CID '5' is also used by one" in p.stderr
    assert not VMDir(root, "two").exists
    cli("create", "two", "--runner", str(fine), state_dir=root, check=True)
    p = cli("update", "two", "--runner", str(clash), state_dir=root)
    assert p.returncode == 2 and "also used by one" in p.stderr
    assert VMDir(root, "two").current == fine
    # the same runner under another name is no conflict with itself on update
    cli("update", "one", "--runner", str(first), state_dir=root, check=True)
