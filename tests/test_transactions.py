"""Every host command is a transaction: killed (SIGKILL) at any of its steps, or out of disk
space at any of them (a small real tmpfs filled at that point), it leaves the state it found or
the state it makes, never a mix, and the next command works.

The steps are not listed by hand: each command is first run with a trace of every checkpoint
it passes, and then killed (or starved) at each of them, through the tests' own entry point
(faults.py; the package has no test hooks)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from microvm.host.state import MetaRecord, RunnerPath, VMDir
from support import faults
from support.host_cli import cli, make_runner


@dataclass(frozen=True)
class Case:
    setup: Callable[[Path, dict[str, Path]], None]
    argv: Callable[[dict[str, Path]], list[str]]


def _create(runner: str, *extra: str) -> Callable[[Path, dict[str, Path]], None]:
    def setup(root: Path, r: dict[str, Path]) -> None:
        cli("create", "vm", "--runner", str(r[runner]), *extra, state_dir=root, check=True)
        (root / "vm" / "data.img").write_text("volume")
    return setup


def _nothing(root: Path, r: dict[str, Path]) -> None:
    pass


def _declared(root: Path, r: dict[str, Path]) -> None:
    _create("a")(root, r)
    VMDir(root, "vm").file("declared.json").write_text('{"declared": true}')


def _create_through_link(root: Path, r: dict[str, Path]) -> None:
    """A VM created from a `result`-like link, which then moves to another runner (a plain
    `update` resolves the recorded path again)."""
    link = r["link"]
    link.unlink(missing_ok=True)
    link.symlink_to(r["a"])
    cli("create", "vm", "--runner", str(link), state_dir=root, check=True)
    link.unlink()
    link.symlink_to(r["b"])


CASES = {
    "create": Case(_nothing, lambda r: ["create", "vm", "--runner", str(r["a"]),
                                        "--restart-on-update"]),
    "update --runner": Case(_create("a", "--restart-on-update"),
                            lambda r: ["update", "vm", "--runner", str(r["b"])]),
    "update": Case(_create_through_link, lambda r: ["update", "vm"]),
    "remove": Case(_create("a"), lambda r: ["remove", "vm"]),
    "remove --purge": Case(_create("a"), lambda r: ["remove", "vm", "--purge"]),
    "reconcile": Case(_declared, lambda r: ["reconcile", "--declared", "other"]),
}


def snapshot(root: Path) -> tuple[Any, ...]:
    """What the commands see of the VM: whether it exists, its runner and its metadata."""
    vm = VMDir(root, "vm")
    if not vm.exists:
        return ("absent",)
    return ("present", str(vm.current), vm.record(),
            vm.declared is not None)


@pytest.fixture(scope="module")
def runners(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("runners")
    return {"a": make_runner(work, "vm", name="a"),
            "b": make_runner(work, "vm", name="b", mem=384),
            "link": work / "result"}


def steps_of(case: Case, root: Path, r: dict[str, Path], trace: Path) -> tuple[Any, list[str]]:
    """Run the command once to the end: the state it makes and the steps it passed."""
    case.setup(root, r)
    trace.unlink(missing_ok=True)
    cli(*case.argv(r), state_dir=root, env={faults.TRACE_ENV: str(trace)}, check=True)
    return snapshot(root), trace.read_text().split()


def old_and_new(case: Case, root: Path, r: dict[str, Path],
                trace: Path) -> tuple[Any, Any, list[str]]:
    """The state before the command (its setup), the one it makes, and the steps it passes."""
    case.setup(root, r)
    old = snapshot(root)
    reset(root)
    new, steps = steps_of(case, root, r, trace)
    return old, new, steps


def reset(root: Path) -> None:
    if root.is_dir():
        for entry in root.iterdir():
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def check_follow_up(name: str, root: Path, r: dict[str, Path], after: tuple[Any, ...]) -> None:
    """The next command works and inherits nothing of a change that did not happen."""
    vm = VMDir(root, "vm")
    if after[0] == "absent":
        cli("create", "vm", "--runner", str(r["b"]), state_dir=root, check=True)
        assert vm.record() == MetaRecord(RunnerPath(str(r["b"])))
        assert json.loads(vm.file("meta.json").read_text()) == {"runner": str(r["b"]),
                                                                 "current": str(r["b"])}
        return
    if name.startswith("update"):
        cli("update", "vm", state_dir=root, check=True)
        # a plain update rebuilds from the recorded source: the runner it recorded
        source = vm.record().source
        assert isinstance(source, RunnerPath)
        assert vm.current == Path(os.path.realpath(source.path))
    assert not [p.name for p in vm.control.iterdir() if ".new." in p.name]


@pytest.mark.parametrize("name", sorted(CASES))
def test_killed_at_every_step(tmp_path: Path, runners: dict[str, Path], name: str) -> None:
    case = CASES[name]
    root = tmp_path / "state"
    old, new, steps = old_and_new(case, root, runners, tmp_path / "steps")
    assert steps, "the command passes no checkpoint"
    assert old != new
    for step in steps:
        reset(root)
        case.setup(root, runners)
        p = cli(*case.argv(runners), state_dir=root, env={faults.CRASH_ENV: step})
        assert p.returncode == -signal.SIGKILL, (step, p.stderr)
        after = snapshot(root)
        assert after in (old, new), step
        if name in ("remove", "reconcile"):
            assert (root / "vm" / "data.img").read_text() == "volume", step
        check_follow_up(name, root, runners, after)


def test_interrupted_create_leaves_nothing_to_inherit(tmp_path: Path,
                                                      runners: dict[str, Path]) -> None:
    """Issue 12: create --restart-on-update killed before `current`, then a plain create of the
    same name: no restartOnUpdate (and no flake) of the first one survives."""
    root = tmp_path / "state"
    p = cli("create", "vm", "--runner", str(runners["a"]), "--restart-on-update",
            state_dir=root, env={faults.CRASH_ENV: "create:before-current"})
    assert p.returncode == -signal.SIGKILL
    cli("create", "vm", "--runner", str(runners["b"]), state_dir=root, check=True)
    vm = VMDir(root, "vm")
    assert vm.record() == MetaRecord(RunnerPath(str(runners["b"])), restart_on_update=False)
    out = cli("update", "vm", state_dir=root, check=True).stderr
    assert "vm: no change" in out


def test_update_killed_after_the_switch_keeps_the_new_source(tmp_path: Path,
                                                             runners: dict[str, Path]) -> None:
    """Issue 12: killed between switching `current` and recording the new runner, a later
    plain update used to return to the old runner."""
    root = tmp_path / "state"
    cli("create", "vm", "--runner", str(runners["a"]), state_dir=root, check=True)
    p = cli("update", "vm", "--runner", str(runners["b"]), state_dir=root,
            env={faults.CRASH_ENV: "current:renamed"})
    assert p.returncode == -signal.SIGKILL
    vm = VMDir(root, "vm")
    assert (vm.current, vm.record().source) == (runners["b"], RunnerPath(str(runners["b"])))
    cli("update", "vm", state_dir=root, check=True)
    assert vm.current == runners["b"]


# -- a full disk -----------------------------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs with few inodes (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=400,mode=0755",
                        "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_disk_full_at_every_step(small_fs: Path, tmp_path: Path, runners: dict[str, Path],
                                 name: str) -> None:
    """The file system fills up at each step in turn: the command either fails naming the file
    it could not write (exit 1, the old state kept) or, when nothing is left to write,
    completes; after space is freed the next command works."""
    case = CASES[name]
    root, trace = small_fs / "state", tmp_path / "steps"
    filler = small_fs / "filler"
    case.setup(root, runners)
    old = snapshot(root)
    reset(small_fs)
    new, steps = steps_of(case, root, runners, trace)
    failed = 0
    for step in steps:
        reset(small_fs)
        case.setup(root, runners)
        p = cli(*case.argv(runners), state_dir=root,
                env={faults.FILL_ENV: step, faults.FILL_PATH_ENV: str(filler)})
        after = snapshot(root)
        if p.returncode == 0:
            assert after == new, step
        else:
            failed += 1
            assert p.returncode == 1, (step, p.stderr)
            assert f"error: cannot write {root}/" in p.stderr, (step, p.stderr)
            assert "No space left on device" in p.stderr, step
            assert after == old, step
        for f in small_fs.glob("filler*"):
            f.unlink()
        check_follow_up(name, root, runners, after)
    print(name, f"{failed} of {len(steps)} steps failed:", steps)
    if name in ("create", "update --runner"):
        assert failed, "no step of a command that writes failed on a full disk"


def test_update_on_a_full_disk_names_the_file_and_keeps_current(
        small_fs: Path, runners: dict[str, Path]) -> None:
    """Issue 12: `update --runner NEW` on a full disk said only "No space left on device" and
    had already switched `current`."""
    root = small_fs / "state"
    cli("create", "vm", "--runner", str(runners["a"]), state_dir=root, check=True)
    faults.fill(small_fs / "filler")
    p = cli("update", "vm", "--runner", str(runners["b"]), state_dir=root)
    assert p.returncode == 1
    assert p.stderr.strip() == (f"error: cannot write {root}/.control/vm/meta.json.pending: " +
                                "No space left on device")
    assert VMDir(root, "vm").current == runners["a"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_space_from_every_step(tmp_path: Path, runners: dict[str, Path], name: str) -> None:
    """From each step on, every change of a file fails with ENOSPC, a directory fsync and a
    rename too (which a full tmpfs never fails): the command completes, or fails naming the
    file with the old state kept, or, when its change had taken effect, says so."""
    case = CASES[name]
    root = tmp_path / "state"
    old, new, steps = old_and_new(case, root, runners, tmp_path / "steps")
    outcomes = []
    for step in steps:
        reset(root)
        case.setup(root, runners)
        p = cli(*case.argv(runners), state_dir=root, env={faults.ENOSPC_ENV: step})
        after = snapshot(root)
        if p.returncode == 0:
            assert after == new, step
            outcomes.append("done")
        else:
            assert p.returncode == 1, (step, p.stderr)
            assert "No space left on device" in p.stderr, (step, p.stderr)
            assert f"cannot write {root}/" in p.stderr, (step, p.stderr)
            if after == old:
                assert "took effect" not in p.stderr, (step, p.stderr)
                outcomes.append("old")
            else:
                assert after == new, step
                said = "\nerror: vm: the change took effect ("
                assert said in "\n" + p.stderr, (step, p.stderr)
                outcomes.append("in effect")
        check_follow_up(name, root, runners, after)
    print(name, dict(zip(steps, outcomes, strict=True)))
    if name in ("create", "update --runner"):
        assert "in effect" in outcomes and "old" in outcomes, outcomes


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_lost_from_every_step(tmp_path: Path, runners: dict[str, Path],
                                     name: str) -> None:
    """From each step on, the command's messages cannot be written (stdout and stderr on a
    full device): that changes nothing of what it does, nor its exit status (they only report
    it)."""
    case = CASES[name]
    root, trace = tmp_path / "state", tmp_path / "steps"
    new, steps = steps_of(case, root, runners, trace)
    for step in steps:
        reset(root)
        case.setup(root, runners)
        p = cli(*case.argv(runners), state_dir=root, env={faults.OUTPUT_FULL_ENV: step})
        assert (p.returncode, snapshot(root)) == (0, new), (step, p.stderr)
        check_follow_up(name, root, runners, new)
