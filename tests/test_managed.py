"""Managed trees (microvm/managed.py) and `microvm units --out DIR --force`: only what the
manifest records is replaced or removed; a foreign file or a changed one stops the run before
anything changes; a run killed at any step is undone or completed by the next one."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from microvm import __version__, managed, units
from microvm.errors import ConflictError, HostError, UsageError
from microvm.managed import Link
from microvm.units import DeclaredVM, UnitOptions
from support.host_cli import cli
from support.managed_trees import Snapshot, contents, crash_at, no_leftovers, snapshot

MANIFEST = units.MANIFEST
SYSTEM = units.UNIT_DIR


def expected(files: Mapping[str, managed.Entry]) -> Snapshot:
    """What the writer before managed trees produced for a fresh directory (every file with
    its mode, every link, every directory 0755), without mtimes."""
    out: Snapshot = {}
    for rel, entry in files.items():
        parts = rel.split("/")
        for i in range(1, len(parts)):
            out["/".join(parts[:i])] = ("d", 0o755)
        if isinstance(entry, Link):
            out[rel] = ("l", entry.target)
        else:
            out[rel] = ("f", entry[0].encode(), entry[1])
    return out


OPTS = UnitOptions(declared=(DeclaredVM("web", "/nix/store/a-web"),
                             DeclaredVM("db", "/nix/store/b-db", autostart=False)))
# OPTS with web gone and db's runner changed: files written, replaced, removed; links, dirs
OTHER = UnitOptions(declared=(DeclaredVM("db", "/nix/store/c-db"),))


def foreign(root: Path) -> None:
    """What an administrator has in /etc/systemd/system: 38 entries of others."""
    system = root / SYSTEM
    (system / "multi-user.target.wants").mkdir(parents=True)
    (system / "getty.target.wants").mkdir()
    for i in range(30):
        (system / f"site-{i}.service").write_text(f"[Service]\nExecStart=/bin/true {i}\n")
    (system / "multi-user.target.wants/ssh.service").symlink_to("/lib/systemd/system/ssh.service")
    (system / "getty.target.wants/getty@tty1.service").symlink_to("/dev/null")
    (system / "dbus-org.freedesktop.timesync1.service").symlink_to("/dev/null")
    (root / "README").write_text("mine\n")
    (root / "libexec").mkdir()
    (root / "libexec/other-helper").write_text("#!/bin/sh\n")


# -- units --out: what is written ---------------------------------------------------------

def test_a_fresh_directory_gets_the_same_bytes_plus_the_manifest(tmp_path: Path) -> None:
    out = tmp_path / "units"
    umask = os.umask(0o077)
    try:
        files = units.write(out, OPTS)
    finally:
        os.umask(umask)
    got = contents(snapshot(out))
    manifest = got.pop(MANIFEST)
    assert got == expected(files)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert manifest[0] == "f" and manifest[2] == 0o644
    data = json.loads(manifest[1])
    assert data["format"] == 1 and data["writer"].startswith("microvm units ")
    assert data["files"][f"{SYSTEM}/multi-user.target.wants/microvms.target"] == {
        "link": "../microvms.target"}
    helper = f"{units.LIBEXEC_DIR}/set-booted"
    assert data["files"][helper]["mode"] == "0755"
    assert data["files"][helper]["sha256"] == managed.Record.of(files[helper]).sha256
    assert set(data["files"]) == set(files)
    assert "lib" in data["dirs"] and f"{SYSTEM}/microvms.target.wants" in data["dirs"]


def test_foreign_files_survive_force_untouched(tmp_path: Path) -> None:
    out = tmp_path / "etc"
    foreign(out)
    before = snapshot(out)
    assert len(before) >= 38
    cli("units", "--out", str(out), "--force", "--declare", "web=/nix/store/a-web",
        check=True)
    after = snapshot(out)
    assert {k: after[k] for k in before if k in after} == before  # mtimes too
    assert set(before) <= set(after)
    assert (out / SYSTEM / "microvm@.service").is_file()
    assert (out / SYSTEM / "multi-user.target.wants/microvms.target").is_symlink()
    # and removing the VM again removes only ours
    cli("units", "--out", str(out), "--force", check=True)
    again = snapshot(out)
    assert {k: again[k] for k in before} == before
    assert not (out / SYSTEM / "install-microvm-web.service").exists()


def test_force_refuses_to_overwrite_a_foreign_file_and_changes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "o"
    foreign(out)
    (out / SYSTEM / "microvm@.service").write_text("[Service]\nExecStart=/bin/mine\n")
    (out / SYSTEM / "microvms.target").symlink_to("/dev/null")
    before = snapshot(out)
    p = cli("units", "--out", str(out), "--force")
    assert p.returncode == 2
    lines = p.stderr.splitlines()
    assert (f"error: {out / SYSTEM / 'microvm@.service'}: exists and was not written by " +
            f"microvm (no record in {out / MANIFEST})") in p.stderr
    assert f"error: {out / SYSTEM / 'microvms.target'}: exists and was not written" in p.stderr
    assert len(lines) == 2
    assert snapshot(out) == before


def test_a_foreign_file_with_the_same_content_is_taken_over(tmp_path: Path) -> None:
    files = units.build(OPTS, str(tmp_path / "o" / units.LIBEXEC_DIR))
    out = tmp_path / "o"
    target = out / SYSTEM / "microvm@.service"
    target.parent.mkdir(parents=True)
    entry = files[f"{SYSTEM}/microvm@.service"]
    assert isinstance(entry, tuple)
    target.write_text(entry[0])
    target.chmod(0o600)
    units.write(out, OPTS, force=True)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert f"{SYSTEM}/microvm@.service" in json.loads((out / MANIFEST).read_text())["files"]


def test_files_no_longer_generated_are_removed_with_their_directories(tmp_path: Path) -> None:
    out = tmp_path / "o"
    units.write(out, OPTS)
    assert (out / SYSTEM / "microvm@web.service.d/50-declared.conf").is_file()
    (out / SYSTEM / "microvm@db.service.d").mkdir(exist_ok=True)
    (out / SYSTEM / "microvm@db.service.d/60-mine.conf").write_text("[Service]\n")
    outcome = managed.write(out, MANIFEST, units.build(OTHER, str(out / units.LIBEXEC_DIR)),
                            writer=f"microvm units {__version__}")
    assert f"{SYSTEM}/install-microvm-web.service" in outcome.removed
    assert not (out / SYSTEM / "install-microvm-web.service").exists()
    assert not (out / SYSTEM / "microvm@web.service.d").exists()
    assert not (out / SYSTEM / "microvms.target.wants/microvm@web.service").exists()
    # a directory ours once, now holding a file of someone else's, stays (with that file)
    assert (out / SYSTEM / "microvm@db.service.d/60-mine.conf").read_text() == "[Service]\n"
    assert "c-db" in (out / SYSTEM / "install-microvm-db.service").read_text()
    got = contents(snapshot(out))
    got.pop(MANIFEST)
    got.pop(f"{SYSTEM}/microvm@db.service.d/60-mine.conf")
    assert got == expected(units.build(OTHER, str(out / units.LIBEXEC_DIR)))


def test_a_second_identical_run_changes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "o"
    units.write(out, OPTS)
    before = snapshot(out)
    outcome = managed.write(out, MANIFEST, units.build(OPTS, str(out / units.LIBEXEC_DIR)),
                            writer=json.loads((out / MANIFEST).read_text())["writer"])
    assert not outcome.written and not outcome.removed
    assert snapshot(out) == before


def test_a_changed_file_is_not_clobbered(tmp_path: Path) -> None:
    out = tmp_path / "o"
    cli("units", "--out", str(out), "--declare", "web=/nix/store/a-web", check=True)
    unit = out / SYSTEM / "microvm@.service"
    unit.write_text(unit.read_text() + "# my change\n")
    stale = out / SYSTEM / "install-microvm-web.service"
    stale.write_text(stale.read_text() + "# mine too\n")
    before = snapshot(out)
    p = cli("units", "--out", str(out), "--force")
    assert p.returncode == 2
    assert (f"error: {unit}: changed since it was written (it differs from its record in " +
            f"{out / MANIFEST}); move your version away and run again") in p.stderr
    assert f"error: {stale}: changed since it was written and no longer part of the tree" \
        in p.stderr
    assert snapshot(out) == before
    # moved away: the run goes through, and the moved files are someone else's now
    unit.rename(tmp_path / "kept.service")
    stale.rename(tmp_path / "kept2.service")
    cli("units", "--out", str(out), "--force", check=True)
    assert "# my change" not in unit.read_text()


def test_a_changed_link_or_a_directory_in_the_way(tmp_path: Path) -> None:
    out = tmp_path / "o"
    units.write(out, OPTS)
    link = out / SYSTEM / "multi-user.target.wants/microvms.target"
    link.unlink()
    link.symlink_to("/dev/null")
    with pytest.raises(ConflictError) as e:
        units.write(out, OPTS, force=True)
    assert [p.path for p in e.value.problems] == [str(link)]
    link.unlink()
    (out / SYSTEM / "microvms.target").unlink()
    (out / SYSTEM / "microvms.target").mkdir()
    with pytest.raises(ConflictError) as e:
        units.write(out, OPTS, force=True)
    assert "a directory where a file goes" in str(e.value)


def test_nothing_is_written_through_a_symlinked_directory(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "o"
    (out / "lib/systemd").mkdir(parents=True)
    (out / SYSTEM).symlink_to(elsewhere)
    p = cli("units", "--out", str(out), "--force")
    assert p.returncode == 2
    assert f"error: {out / SYSTEM}: a symlink where a directory is needed" in p.stderr
    assert not list(elsewhere.iterdir())
    assert not (out / MANIFEST).exists()


def test_exit_codes_and_messages(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    p = cli("units", "--out", str(out))
    assert p.returncode == 2
    assert f"error: {out} exists; pass --force to replace what `microvm units` wrote" in p.stderr
    (tmp_path / "file").write_text("x")
    p = cli("units", "--out", str(tmp_path / "file"), "--force")
    assert p.returncode == 2
    assert "is a file" in p.stderr
    with pytest.raises(UsageError, match="not a directory"):
        managed.write(tmp_path / "file", MANIFEST, {}, writer="w")
    cli("units", "--out", str(out), "--force", check=True)
    (out / MANIFEST).write_text("{not json")
    before = snapshot(out)
    p = cli("units", "--out", str(out), "--force")
    assert p.returncode == 1
    assert f"error: {out / MANIFEST}: unreadable" in p.stderr
    assert snapshot(out) == before
    (out / MANIFEST).write_text(json.dumps({"format": 1, "writer": "x", "dirs": [],
                                            "files": {"../../etc/passwd": {"link": "x"}}}))
    p = cli("units", "--out", str(out), "--force")
    assert p.returncode == 1
    assert "not a manifest microvm wrote" in p.stderr


def test_a_manifest_others_could_write_is_not_read(tmp_path: Path) -> None:
    out = tmp_path / "o"
    units.write(out, OPTS)
    (out / MANIFEST).chmod(0o666)
    with pytest.raises(HostError, match="writable by group or others"):
        units.write(out, OPTS, force=True)
    with pytest.raises(HostError, match="writable by group or others"):
        managed.remove(out, MANIFEST)


def test_one_run_at_a_time(tmp_path: Path) -> None:
    out = tmp_path / "o"
    units.write(out, OPTS)
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        p = cli("units", "--out", str(out), "--force")
        assert p.returncode == 1
        assert "another microvm command is changing it" in p.stderr
    finally:
        os.close(fd)


def test_remove_keeps_changed_files_and_foreign_ones(tmp_path: Path) -> None:
    out = tmp_path / "o"
    foreign(out)
    theirs = snapshot(out)
    units.write(out, OPTS, force=True)
    changed = out / SYSTEM / "microvm@.service"
    changed.write_text("mine now\n")
    outcome = managed.remove(out, MANIFEST)
    assert [(p.path, p.message) for p in outcome.kept] == [
        (str(changed), "changed since it was written")]
    assert f"{SYSTEM}/microvms.target" in outcome.removed
    left = snapshot(out)
    assert {k: left[k] for k in theirs} == theirs
    assert set(left) - set(theirs) == {f"{SYSTEM}/microvm@.service"}
    assert changed.read_text() == "mine now\n"


# -- transactions ------------------------------------------------------------------------

@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Snapshot, Snapshot, Callable[[], None]]:
    """A tree written with OPTS among foreign files (the old state), the snapshot of the new
    state (OTHER written over it), and a function that puts the old state back."""
    pristine = tmp_path / "pristine"
    (pristine / SYSTEM / "multi-user.target.wants").mkdir(parents=True)
    (pristine / SYSTEM / "site.service").write_text("[Service]\n")
    (pristine / SYSTEM / "multi-user.target.wants/ssh.service").symlink_to("/dev/null")
    units.write(pristine, OPTS, force=True)
    (pristine / SYSTEM / "microvm@db.service.d").mkdir(exist_ok=True)
    (pristine / SYSTEM / "microvm@db.service.d/60-mine.conf").write_text("[Service]\n")
    old = contents(snapshot(pristine))
    probe = tmp_path / "probe"
    shutil.copytree(pristine, probe, symlinks=True)
    write_other(probe)
    new = contents(snapshot(probe))
    assert old != new
    out = tmp_path / "o"

    def reset() -> None:
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(pristine, out, symlinks=True)
        assert contents(snapshot(out)) == old

    reset()
    return out, old, new, reset


def write_other(out: Path) -> managed.Outcome:
    return managed.write(out, MANIFEST, other_tree(str(tmp_libexec(out))),
                         writer=f"microvm units {__version__}")


@functools.cache
def other_tree(libexec: str) -> Mapping[str, managed.Entry]:
    return units.build(OTHER, libexec)


def tmp_libexec(out: Path) -> Path:
    return out.parent / "pristine" / units.LIBEXEC_DIR  # the same text in every copy


@pytest.mark.parametrize("kill", [True, False], ids=["SIGKILL", "ENOSPC"])
def test_a_run_stopped_at_any_step_is_undone_or_completed(
        trees: tuple[Path, Snapshot, Snapshot, Callable[[], None]], kill: bool) -> None:
    out, old, new, reset = trees
    outcomes: set[str] = set()
    n = 1
    while crash_at(n, lambda: write_other(out), kill=kill):
        # the next run (here: its first part, recovery) puts the old or the new state back
        tree = managed.Tree(out, MANIFEST)
        with tree.locked():
            recovered = tree.recover()
        after = contents(snapshot(out))
        assert after in (old, new), (n, recovered)
        no_leftovers(out)
        outcomes.add(f"{recovered}:{'new' if after == new else 'old'}")
        # and the run itself then goes through
        write_other(out)
        assert contents(snapshot(out)) == new, n
        no_leftovers(out)
        reset()
        n += 1
    assert n > 20, n  # every step was visited
    assert contents(snapshot(out)) == new  # the last run, unharmed, completed
    assert {"undone:old", "completed:new"} <= outcomes, outcomes


def test_the_next_units_run_repairs_a_killed_one(
        trees: tuple[Path, Snapshot, Snapshot, Callable[[], None]]) -> None:
    """Through the command: a killed `units --force` is finished (or undone) by the next."""
    out, _, new, _ = trees
    assert crash_at(12, lambda: write_other(out), kill=True)
    assert (out / f"{MANIFEST}{managed.PENDING_SUFFIX}").exists()
    cli("units", "--out", str(out), "--force", "--declare", "db=/nix/store/c-db",
        "--libexec-dir", str(tmp_libexec(out)), check=True)
    assert contents(snapshot(out)) == new
    no_leftovers(out)
