"""Managed trees: files this tool writes into a directory other files share (`/usr/local`,
`/etc/systemd/system`, a `microvm units --out` directory), recorded in a manifest inside the
tree, so that a later run replaces or removes exactly those and never anything else.

The manifest (JSON, e.g. `DIR/.microvm-units.json` or `/usr/local/lib/microvm/install.json`):

    {"format": 1,
     "writer": "microvm units 0.1.0",
     "files": {"lib/systemd/system/microvm@.service": {"sha256": "<hex>", "mode": "0644"},
               "lib/systemd/system/multi-user.target.wants/microvms.target":
                   {"link": "../microvms.target"}},
     "dirs": ["lib", "lib/systemd", "lib/systemd/system", ...],
     "settings": {...}}

`files` maps each path the writer wrote (relative to the tree) to what it wrote: a regular
file's SHA-256 and mode, or a symlink's target. `dirs` lists the directories it created (so it
removes them again once empty, and no others). `settings` is the caller's (what `microvm host
install` was run with).

What a run does with a path:

* a path of the new tree that does not exist is created;
* one that exists is replaced only when the manifest records it and it still holds what was
  recorded, or when it already holds the new content (then it is recorded from now on);
* a recorded path the new tree no longer has is removed when it still holds what was recorded;
* anything else in the way (a file the manifest does not record, a recorded file someone changed
  since, a directory where a file goes, a symlink or file where a directory goes) makes the whole
  run refuse before it changes anything: `ConflictError`, exit code 2, one line per path;
* every other entry of the tree is left alone; a directory is entered only if it is a real
  directory (no symlinks are followed inside the tree).

A run is a transaction as far as a file system allows (one rename per file). Under an exclusive
lock (flock on the tree's directory), the writer records its plan in `<manifest>.pending`
(state "prepare": the new manifest, the temporary names, the directories it creates; when the
manifest's own directories are missing they are made under a temporary name with the pending
file inside and renamed into place, so they never exist unrecorded), writes
every new file to a temporary name beside its target (`.NAME.XXXXXXXX.microvm-tmp`, fsynced),
then switches the pending file to state "commit" (an atomic rename: the point of no return),
renames the temporaries into place, removes the stale files and empty directories, writes the
manifest (atomically) and deletes the pending file. The next run, or `remove()`, finds a pending
file left by a crash and finishes it first: in state "prepare" it is undone (temporaries and the
directories it created are removed: the old tree is back), in state "commit" it is completed.
Temporary names end in `.microvm-tmp`, which systemd, tmpfiles.d and sysusers.d do not read.

The manifest is read by root when root runs the tool, so it is trusted only where no other user
could have written it (host.state.check_dirs: owner root or us, not writable by group or others).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ConflictError, HostError, Problem, UsageError
from .host.state import check_dirs, fsync_dir, replace_file, write_new

FORMAT = 1
PENDING_SUFFIX = ".pending"
TEMP_SUFFIX = ".microvm-tmp"


@dataclass(frozen=True)
class Link:
    """A symlink in a tree: its target, as written."""

    target: str


# what a tree holds at a path: (text, mode) for a regular file, or a Link
Entry = tuple[str, int] | Link


@dataclass(frozen=True)
class Record:
    """What the manifest says was written at a path: a file's SHA-256 and mode, or a link."""

    sha256: str | None = None
    mode: int | None = None
    link: str | None = None

    @classmethod
    def of(cls, entry: Entry) -> Record:
        if isinstance(entry, Link):
            return cls(link=entry.target)
        text, mode = entry
        return cls(sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(), mode=mode)

    def same_content(self, other: Record) -> bool:
        return self.link == other.link and self.sha256 == other.sha256

    def to_json(self) -> dict[str, str]:
        if self.link is not None:
            return {"link": self.link}
        assert self.sha256 is not None
        assert self.mode is not None
        return {"sha256": self.sha256, "mode": f"{self.mode:04o}"}

    @classmethod
    def from_json(cls, data: Any) -> Record:
        if isinstance(data, dict) and set(data) == {"link"} and isinstance(data["link"], str):
            return cls(link=data["link"])
        if (isinstance(data, dict) and set(data) == {"sha256", "mode"}
                and isinstance(data["sha256"], str) and len(data["sha256"]) == 64
                and isinstance(data["mode"], str) and data["mode"].isdigit()):
            return cls(sha256=data["sha256"], mode=int(data["mode"], 8) & 0o7777)
        raise ValueError(f"bad entry {data!r}")


@dataclass(frozen=True)
class Manifest:
    writer: str
    files: Mapping[str, Record]
    dirs: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "writer": self.writer,
                "files": {k: self.files[k].to_json() for k in sorted(self.files)},
                "dirs": sorted(set(self.dirs), key=_depth_order),
                "settings": dict(self.settings)}

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not format {FORMAT}")
        files, dirs = data.get("files"), data.get("dirs")
        writer, settings = data.get("writer"), data.get("settings", {})
        if not (isinstance(files, dict) and isinstance(dirs, list) and isinstance(writer, str)
                and isinstance(settings, dict)):
            raise ValueError("needs files, dirs and writer")
        for rel in [*files, *dirs]:
            _check_rel(rel)
        return cls(writer=writer, files={k: Record.from_json(v) for k, v in files.items()},
                   dirs=tuple(dirs), settings=settings)


@dataclass(frozen=True)
class Outcome:
    """What a run did: paths (relative to the tree) written, removed, left as they were, and
    whether it first finished an interrupted run ("completed" or "undone")."""

    written: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    kept: tuple[Problem, ...] = ()  # remove(): recorded files left in place, and why
    recovered: str | None = None
    manifest: Manifest | None = None  # remove(): the manifest it removed (None: there was none)


def _depth_order(rel: str) -> tuple[int, str]:
    return (rel.count("/"), rel)


def _check_rel(rel: str) -> str:
    """A path inside the tree: relative, normalised, no `..` (also for paths a manifest names)."""
    p = PurePosixPath(rel)
    if (not rel or p.is_absolute() or str(p) != rel or any(c in ("..", ".") for c in p.parts)
            or "\0" in rel):
        raise ValueError(f"not a path inside the tree: {rel!r}")
    return rel


def _ancestors(rel: str) -> list[str]:
    """The directories a path is in, inside the tree, outermost first."""
    parts = PurePosixPath(rel).parts
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def _current(path: Path) -> Record | str | None:
    """What is at path: a Record, None when nothing is, or what kind of other thing it is."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return Record(link=os.readlink(path))
    if stat.S_ISREG(st.st_mode):
        return Record(sha256=_hash_file(path), mode=stat.S_IMODE(st.st_mode))
    return "a directory" if stat.S_ISDIR(st.st_mode) else "a special file"


def _kind(path: Path) -> str | None:
    """None for a real directory (or nothing), else what is there instead."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        return None
    return "a symlink" if stat.S_ISLNK(st.st_mode) else "a file"


def _temp_name(name: str) -> str:
    return f".{name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"


def _replace_file(path: Path, data: bytes) -> None:
    """Replace path atomically (host.state.replace_file) through a temporary name of ours."""
    replace_file(path, data, path.with_name(_temp_name(path.name)))


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _load_json(path: Path) -> Any | None:
    """A manifest or pending file, when it exists, after checking nobody but root (or we) could
    have written it."""
    if not os.path.lexists(path):
        return None
    check_dirs(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError) as e:
        raise HostError(f"{path}: unreadable ({e}); move it away to start over (the files it "
                        + "recorded then count as someone else's)") from None


class Tree:
    """A managed tree: `root` and its manifest at `root/manifest`."""

    def __init__(self, root: Path, manifest: str) -> None:
        self.root = Path(os.path.abspath(root))
        self.manifest_rel = _check_rel(manifest)
        self.manifest = self.root / manifest
        self.pending = self.root / f"{manifest}{PENDING_SUFFIX}"

    def path(self, rel: str) -> Path:
        return self.root / rel

    # -- reading ---------------------------------------------------------------------------
    def read(self) -> Manifest | None:
        """The manifest, or None when there is none."""
        data = _load_json(self.manifest)
        if data is None:
            return None
        try:
            return Manifest.from_json(data)
        except (ValueError, TypeError, KeyError) as e:
            raise HostError(f"{self.manifest}: not a manifest microvm wrote ({e}); move it " +
                            "away to start over") from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive: one run at a time changes the tree."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise HostError(f"{self.root}: another microvm command is changing it; run " +
                                "again when it has finished") from None
            yield
        finally:
            os.close(fd)

    # -- an interrupted run ------------------------------------------------------------------
    def recover(self) -> str | None:
        """Finish what a crashed run left (its pending file): "undone", "completed" or None.
        The caller holds the lock."""
        self._clean_temporaries()
        data = _load_json(self.pending)
        if data is None:
            return None
        try:
            plan = _Plan.from_json(data)
        except (ValueError, TypeError, KeyError) as e:
            raise HostError(f"{self.pending}: not a pending change microvm wrote ({e}); " +
                            "move it away and check the tree by hand") from None
        if plan.state == "prepare":
            self._undo(plan)
            return "undone"
        self._commit(plan)
        return "completed"

    def _clean_temporaries(self) -> None:
        """What a crash before the pending file was in place left: temporaries of the manifest
        or pending file (_replace_file's), and a staged directory chain (_stage_pending's)."""
        for path in [self.manifest, self.pending,
                     *(self.path(d) for d in _ancestors(self.manifest_rel))]:
            stale = re.compile(re.escape(f".{path.name}.") + "[0-9a-f]{8}" +
                               re.escape(TEMP_SUFFIX))
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for entry in os.listdir(path.parent):
                    if not stale.fullmatch(entry):
                        continue
                    found = path.parent / entry
                    if found.is_dir() and not found.is_symlink():
                        shutil.rmtree(found)
                    else:
                        os.unlink(found)

    def _undo(self, plan: _Plan) -> None:
        for rel, temp in plan.temps.items():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(rel).parent / temp)
        first = self.manifest_dirs(plan.created)  # they hold the pending file: last
        for d in sorted(plan.created, key=_depth_order, reverse=True):
            if d not in first:
                _rmdir_if_empty(self.path(d))
        os.unlink(self.pending)
        fsync_dir(self.pending.parent)
        for d in reversed(first):
            _rmdir_if_empty(self.path(d))

    def manifest_dirs(self, created: tuple[str, ...]) -> list[str]:
        """The directories of `created` the manifest (and pending file) is in, outermost
        first: created before the pending file is written, removed after it is gone."""
        return [d for d in _ancestors(self.manifest_rel) if d in created]

    def _commit(self, plan: _Plan) -> None:
        """Roll forward from the commit point (idempotent: a crash in here is completed by the
        next run the same way)."""
        touched: set[Path] = set()
        for rel, temp in sorted(plan.temps.items()):
            target = self.path(rel)
            tmp = target.parent / temp
            if os.path.lexists(tmp):
                os.replace(tmp, target)
                touched.add(target.parent)
        for rel, record in sorted(plan.remove.items()):
            target = self.path(rel)
            current = _current(target)
            if isinstance(current, Record) and current.same_content(record):
                os.unlink(target)
                touched.add(target.parent)
        for d in sorted(touched):
            fsync_dir(d)
        kept_dirs = [d for d in sorted(plan.rmdirs, key=_depth_order, reverse=True)
                     if not _rmdir_if_empty(self.path(d))]
        new = plan.manifest
        manifest = Manifest(writer=new.writer, files=new.files,
                            dirs=(*new.dirs, *kept_dirs), settings=new.settings)
        _replace_file(self.manifest, _json_bytes(manifest.to_json()))
        os.unlink(self.pending)
        fsync_dir(self.pending.parent)


@dataclass(frozen=True)
class _Plan:
    """A change in flight, as the pending file records it."""

    state: str  # "prepare" or "commit"
    manifest: Manifest  # the manifest after the change (without directories it could not remove)
    temps: Mapping[str, str]  # path -> its temporary's name (in the same directory)
    remove: Mapping[str, Record]  # path -> what it must still hold to be removed
    created: tuple[str, ...]  # directories this change creates
    rmdirs: tuple[str, ...]  # recorded directories no longer needed: removed when empty

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "state": self.state, "manifest": self.manifest.to_json(),
                "temps": dict(sorted(self.temps.items())),
                "remove": {k: self.remove[k].to_json() for k in sorted(self.remove)},
                "created": sorted(self.created, key=_depth_order),
                "rmdirs": sorted(self.rmdirs, key=_depth_order)}

    @classmethod
    def from_json(cls, data: Any) -> _Plan:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not format {FORMAT}")
        state = data["state"]
        if state not in ("prepare", "commit"):
            raise ValueError(f"state {state!r}")
        temps = data["temps"]
        for rel, temp in temps.items():
            _check_rel(rel)
            if not (isinstance(temp, str) and "/" not in temp and temp.endswith(TEMP_SUFFIX)):
                raise ValueError(f"temporary {temp!r}")
        created, rmdirs = data["created"], data["rmdirs"]
        for rel in [*data["remove"], *created, *rmdirs]:
            _check_rel(rel)
        return cls(state=state, manifest=Manifest.from_json(data["manifest"]), temps=temps,
                   remove={k: Record.from_json(v) for k, v in data["remove"].items()},
                   created=tuple(created), rmdirs=tuple(rmdirs))


def _empty_dir(path: Path) -> bool:
    try:
        return not os.listdir(path)
    except OSError:
        return False


def _rmdir_if_empty(path: Path) -> bool:
    """Remove an empty directory; False when it is not empty (or not a directory)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            return False
        raise
    fsync_dir(path.parent)
    return True


@contextlib.contextmanager
def _writing(what: Path, pending: Path) -> Iterator[None]:
    """OSError after the commit point -> HostError saying the next run finishes the change."""
    try:
        yield
    except OSError as e:
        where = e.filename or what
        raise HostError(f"cannot write {where}: {e.strerror or e}; the change is recorded in " +
                        f"{pending} and the next run finishes it") from None


def write(root: Path, manifest: str, entries: Mapping[str, Entry], *, writer: str,
          settings: Mapping[str, Any] | None = None) -> Outcome:
    """Make the tree at root hold `entries` (relative path -> Entry) and nothing else of what
    the manifest records (module docstring). Refuses with ConflictError before changing
    anything when a path is in the way."""
    tree = Tree(root, manifest)
    for rel in entries:
        _check_rel(rel)
        if rel in (tree.manifest_rel, f"{tree.manifest_rel}{PENDING_SUFFIX}"):
            raise ValueError(f"{rel}: the manifest's own path")
    if os.path.lexists(tree.root) and not tree.root.is_dir():
        raise UsageError(f"{tree.root}: not a directory")
    if not tree.root.is_dir():
        tree.root.mkdir(parents=True)
        tree.root.chmod(0o755)  # whatever the umask
    with tree.locked():
        recovered = tree.recover()
        old = tree.read()
        outcome = _write_locked(tree, old, entries, writer, settings or {})
    return Outcome(written=outcome.written, removed=outcome.removed,
                   unchanged=outcome.unchanged, recovered=recovered)


def _write_locked(tree: Tree, old: Manifest | None, entries: Mapping[str, Entry], writer: str,
                  settings: Mapping[str, Any]) -> Outcome:
    old_files: Mapping[str, Record] = old.files if old else {}
    problems: list[Problem] = []
    where = f"{tree.manifest}"

    def conflict(rel: str, why: str) -> None:
        problems.append(Problem(str(tree.path(rel)), why))

    # directories: every one a path needs must be a real directory or missing
    needed = {d for rel in entries for d in _ancestors(rel)} | set(
        _ancestors(tree.manifest_rel))
    create: list[str] = []
    for d in sorted(needed, key=_depth_order):
        kind = _kind(tree.path(d))
        if kind is not None:
            conflict(d, f"{kind} where a directory is needed (nothing is written through " +
                     "links or over files); move it away and run again")
        elif not tree.path(d).is_dir():
            create.append(d)
    blocked = {d for d in needed if _kind(tree.path(d)) is not None}

    write_: list[str] = []
    unchanged: list[str] = []
    records: dict[str, Record] = {}
    for rel, entry in sorted(entries.items()):
        new = Record.of(entry)
        records[rel] = new
        if any(a in blocked for a in _ancestors(rel)) or any(
                a in create for a in _ancestors(rel)):
            write_.append(rel)  # in a directory still to create (or refused above)
            continue
        current = _current(tree.path(rel))
        if current is None:
            write_.append(rel)
        elif isinstance(current, str):
            conflict(rel, f"{current} where a file goes; move it away and run again")
        elif current.same_content(new):
            (unchanged if current == new else write_).append(rel)  # mode: rewritten
        elif rel in old_files and current.same_content(old_files[rel]):
            write_.append(rel)
        elif rel in old_files:
            conflict(rel, "changed since it was written (it differs from its record in " +
                     f"{where}); move your version away and run again")
        else:
            conflict(rel, f"exists and was not written by microvm (no record in {where}); " +
                     "move it away and run again, or leave it and write elsewhere")
    remove: dict[str, Record] = {}
    for rel, record in sorted(old_files.items()):
        if rel in entries:
            continue
        if any(_kind(tree.path(a)) for a in _ancestors(rel)):
            conflict(rel, "no longer part of the tree, but a directory above it was replaced " +
                     "by a link or file; move that away and run again")
            continue
        current = _current(tree.path(rel))
        if current is None:
            continue
        if isinstance(current, Record) and current.same_content(record):
            remove[rel] = record
        else:
            conflict(rel, "changed since it was written and no longer part of the tree (it " +
                     f"differs from its record in {where}); move it away and run again")
    if problems:
        raise ConflictError(problems)

    old_dirs = [d for d in (old.dirs if old else ()) if tree.path(d).is_dir()]
    rmdirs = tuple(d for d in old_dirs if d not in needed)
    keep_dirs = tuple(d for d in old_dirs if d in needed)
    manifest = Manifest(writer=writer, files=records, dirs=(*keep_dirs, *create),
                        settings=settings)
    as_before = Manifest(writer=writer, files=records, dirs=(*keep_dirs, *rmdirs),
                         settings=settings)
    if (old is not None and not write_ and not remove and not create
            and not any(_empty_dir(tree.path(d)) for d in rmdirs)
            and as_before.to_json() == old.to_json()):
        return Outcome(unchanged=tuple(unchanged))  # nothing to do: not even the manifest

    plan = _Plan(state="prepare", manifest=manifest,
                 temps={rel: _temp_name(PurePosixPath(rel).name) for rel in write_},
                 remove=remove, created=tuple(create), rmdirs=rmdirs)
    _prepare(tree, plan, entries)
    committed = _Plan(state="commit", manifest=plan.manifest, temps=plan.temps,
                      remove=plan.remove, created=plan.created, rmdirs=plan.rmdirs)
    try:
        _replace_file(tree.pending, _json_bytes(committed.to_json()))
    except BaseException:
        with contextlib.suppress(OSError):
            tree._undo(plan)
        raise
    with _writing(tree.root, tree.pending):
        tree._commit(committed)
    return Outcome(written=tuple(write_), removed=tuple(remove), unchanged=tuple(unchanged))


def _prepare(tree: Tree, plan: _Plan, entries: Mapping[str, Entry]) -> None:
    """Record the plan (state "prepare"), create the directories and write every temporary.
    Undone completely when anything fails."""
    first = tree.manifest_dirs(plan.created)
    recorded = False
    try:
        if first:
            _stage_pending(tree, first, _json_bytes(plan.to_json()))
        else:
            _replace_file(tree.pending, _json_bytes(plan.to_json()))
        recorded = True
        for d in plan.created:
            if d not in first:
                _mkdir(tree.path(d))
        for rel, temp in plan.temps.items():
            entry = entries[rel]
            tmp = tree.path(rel).parent / temp
            if isinstance(entry, Link):
                os.symlink(entry.target, tmp)
            else:
                text, mode = entry
                write_new(tmp, text.encode("utf-8"), mode)
        for parent in {tree.path(rel).parent for rel in plan.temps}:
            fsync_dir(parent)
    except BaseException:
        with contextlib.suppress(OSError):
            if recorded:
                tree._undo(plan)
            else:
                tree._clean_temporaries()
        raise


def _stage_pending(tree: Tree, missing: list[str], data: bytes) -> None:
    """The manifest's directories do not exist yet (`missing`, outermost first): make them
    with the pending file inside under a temporary name beside the outermost, then rename
    that into place, so that the directories appear together with the record that they are
    this run's (a crash before leaves only the temporary, which the next run removes)."""
    outer = tree.path(missing[0])
    staged = outer.with_name(_temp_name(outer.name))
    _mkdir(staged)
    inner = staged
    for d in missing[1:]:
        inner = inner / PurePosixPath(d).name
        _mkdir(inner)
    write_new(inner / tree.pending.name, data, 0o644)
    fsync_dir(inner)
    os.rename(staged, outer)
    fsync_dir(outer.parent)


def _mkdir(path: Path) -> None:
    os.mkdir(path, 0o755)
    os.chmod(path, 0o755)  # whatever the umask
    fsync_dir(path.parent)


def remove(root: Path, manifest: str) -> Outcome:
    """Remove every recorded path that still holds what was recorded, then the manifest and the
    recorded directories that are empty. A changed file stays (Outcome.kept says which and
    why); anything not recorded is never touched."""
    tree = Tree(root, manifest)
    if not tree.root.is_dir():
        return Outcome()
    with tree.locked():
        recovered = tree.recover()
        old = tree.read()
        if old is None:
            return Outcome(recovered=recovered)
        removed: list[str] = []
        kept: list[Problem] = []
        for rel, record in sorted(old.files.items()):
            path = tree.path(rel)
            if any(_kind(tree.path(a)) for a in _ancestors(rel)):
                kept.append(Problem(str(path), "a directory above it was replaced"))
                continue
            current = _current(path)
            if current is None:
                continue
            if isinstance(current, Record) and current.same_content(record):
                os.unlink(path)
                removed.append(rel)
            else:
                kept.append(Problem(str(path), "changed since it was written"))
        for parent in {tree.path(rel).parent for rel in removed}:
            fsync_dir(parent)
        os.unlink(tree.manifest)
        fsync_dir(tree.manifest.parent)
        for d in sorted(old.dirs, key=_depth_order, reverse=True):
            _rmdir_if_empty(tree.path(d))
    return Outcome(removed=tuple(removed), kept=tuple(kept), recovered=recovered, manifest=old)
