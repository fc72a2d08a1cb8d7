"""The state directory. Two trees per VM, split by who may write them:

    <state>/.control/<name>/            root's: what root follows and runs (owner root, 0755)
        current                         symlink to the runner started next
        booted                          symlink to the runner that is running (absent: stopped)
        meta.json                       flake, pin, runner source, restartOnUpdate (one file)
        meta.json.pending               a change in flight (see commit())
        declared.json                   present for VMs declared in the host configuration
        account.json                    the user and group the VM runs as
    <state>/<name>/                     the VM's data (volumes, sockets, the console); the VM
                                        runs with it as working directory. Root owns it, the
                                        VM's group may create in it, and it is sticky (1775):
                                        the VM's user adds and removes its own files only
        current -> ../.control/<name>/current   microvm.nix's names, root's links: a user's
        booted  -> ../.control/<name>/booted    script finds the runner where microvm.nix has
                                                it; nobody but root can replace them

Nothing root reads to decide what to run lives where the VM's user can write, and every link
or runner tree root follows is checked first (trusted_runner()). Root's own code follows only
the links in .control; the two in the data directory are made once (make_data_dir) and never
changed after. A change is a transaction: the
new metadata is written completely to `meta.json.pending`, then `current` is switched (one
atomic rename), then the pending file becomes `meta.json`. A crash before the switch leaves the
old state (the pending file names another runner than `current` and is dropped); after it, the
new one (the pending file is taken). A VM exists once its `current` link does.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import json
import os
import pwd
import re
import shutil
import signal
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import MicroVM
from ..document import from_document
from ..errors import HostError, UsageError, ValidationError, escape
from ..layout import LaunchRecord, Meta, Program
from . import defaults
from .pin import Pin

STATE_DIR_ENV = "MICROVM_STATE_DIR"
CONTROL = ".control"
# microvm.nix's names in a VM's data directory: links to root's of the same name in .control
COMPAT_LINKS = ("current", "booted")
# a data directory root hands to the VM's group: root's, group-writable, sticky (1775)
DATA_MODE = 0o1775
ACCOUNT = "account.json"
META = "meta.json"
PENDING = "meta.json.pending"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_TEMP = re.compile(r"^\.(.+)\.new\.(\d+)$")


def check_name(name: str) -> str:
    """A VM name is a directory name and a systemd instance name: letters, digits, `_.-`."""
    if not _NAME.fullmatch(name) or name.endswith(".") or ".." in name:
        raise UsageError(f"invalid VM name {name!r}: use 1-64 letters, digits, '_', '.' or '-', " +
                         "starting with a letter, digit or '_'")
    return name


def state_root(override: str | os.PathLike[str] | None = None) -> Path:
    """--state-dir, else $MICROVM_STATE_DIR, else /var/lib/microvms (absolute)."""
    raw = override or os.environ.get(STATE_DIR_ENV) or defaults.STATE_DIR
    return Path(os.path.abspath(raw))


# Who is told of each checkpoint(): nobody in the program as shipped. It is the seam the tests
# own: tests/support/faults.py runs the command with an observer that records the steps, or
# kills the process (SIGKILL) or fills its disk at one of them.
observer: Callable[[str], None] | None = None


def checkpoint(step: str) -> None:
    """A point between two steps of a change, named `step` (a transaction must survive being
    stopped at any of them)."""
    if observer is not None:
        observer(step)


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """OSError while changing `path` -> HostError naming it (exit 1, no traceback)."""
    try:
        yield
    except OSError as e:
        raise HostError(f"cannot write {path}: {e.strerror or e}") from None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` (which must not exist, not even as a link) with `data` and `mode`, and
    fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, tmp: Path, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically: written to the temporary `tmp` beside it (which
    must not exist; its name is the caller's, whose clean-up knows it), fsynced, renamed over
    `path`, and the directory fsynced. `tmp` is removed again when anything fails. The one
    atomic file writer: the state directory's and managed trees' (managed.py)."""
    _rename_over(path, tmp, lambda t: write_new(t, data, mode), "written")
    fsync_dir(path.parent)


def _rename_over(path: Path, tmp: Path, make: Callable[[Path], None], made: str) -> None:
    """make(tmp), then rename `tmp` over `path` (checkpoint `<name>:<made>` between the two);
    `tmp` is removed again when anything fails."""
    try:
        make(tmp)
        checkpoint(f"{path.name}:{made}")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.new.{os.getpid()}")


def switch_link(link: Path, target: str | os.PathLike[str]) -> None:
    """Point `link` at `target` atomically: a new symlink renamed over the old one."""
    tmp = _temp_name(link)
    checkpoint(f"{link.name}:before-link")
    with writing(link):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        _rename_over(link, tmp, lambda t: os.symlink(target, t), "link-written")
        checkpoint(f"{link.name}:renamed")
        fsync_dir(link.parent)


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace `path` with `text` atomically (replace_file, through `.<name>.new.<pid>`)."""
    tmp = _temp_name(path)
    checkpoint(f"{path.name}:before-write")
    with writing(path):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        replace_file(path, text.encode("utf-8"), tmp, mode)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_temporaries(directory: Path) -> list[Path]:
    """Remove what an interrupted change left behind: `.<name>.new.<pid>` entries of dead
    processes."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        m = _TEMP.match(entry.name)
        stale = m is not None and not _pid_alive(int(m.group(2)))
        if not stale:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        removed.append(entry)
    return removed


# -- locks and the processes holding them ----------------------------------------------------

def _private(st: os.stat_result) -> bool:
    """A regular file of ours that no other user may open."""
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077


def open_lock(path: Path) -> int:
    """A read-write descriptor of the lock file `path`, which only we (root) can open: created
    0600. flock() works on any descriptor, read-only ones too, so a lock another user can open
    is one that user can hold: one that is not ours or not 0600 (written by an older version
    with 0644) is replaced by a new 0600 file (renamed over it) before it is used, so that a
    descriptor opened on the old one holds nothing."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    with writing(path):
        fd = os.open(path, flags | os.O_CREAT, 0o600)
        if _private(os.fstat(fd)):
            return fd
        os.close(fd)
        tmp = _temp_name(path)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, flags | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.replace(tmp, path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return fd


def process_start_time(pid: int) -> int | None:
    """When process `pid` started (field 22 of /proc/PID/stat, clock ticks after boot), or
    None when there is no such process. A pid is reused; a pid and its start time are not."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text("ascii", "replace")
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may contain anything: fields 3...
    # follow the last ')'
    fields = text[text.rfind(")") + 1:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class RunRecord:
    """What `microvm run` writes into the run lock it holds: its pid and start time. pid -1
    (and any record without a start time, as older versions wrote) names no process."""

    pid: int
    start: int | None

    @classmethod
    def parse(cls, text: str) -> RunRecord:
        match text.split():
            case [pid, start] if pid.isdigit() and start.isdigit():
                return cls(int(pid), int(start))
            case [pid] if pid.isdigit():
                return cls(int(pid), None)
        return cls(-1, None)

    def alive(self) -> bool:
        """The process that wrote this record still runs (not another one with its pid)."""
        return (self.pid > 0 and self.start is not None
                and process_start_time(self.pid) == self.start)

    def signal(self, sig: signal.Signals) -> bool:
        """Send `sig` to the process that wrote this record, through a pidfd opened before its
        start time is compared, so that neither a pid reused before nor one reused during the
        check is signalled. False when it is gone or another process has its pid."""
        if self.pid <= 0 or self.start is None:
            return False
        try:
            pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return False
        try:
            if process_start_time(self.pid) != self.start:
                return False
            signal.pidfd_send_signal(pidfd, sig)
        except ProcessLookupError:
            return False
        finally:
            os.close(pidfd)
        return True


# -- trust: what root may follow and run -----------------------------------------------------

def _trusted_uids() -> frozenset[int]:
    return frozenset({0, os.geteuid()})


def _why_unsafe(st: os.stat_result, *, sticky_ok: bool) -> str | None:
    if st.st_uid not in _trusted_uids():
        return f"owned by uid {st.st_uid}"
    if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o022:
        return None
    if sticky_ok and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
        return None
    return "writable by group or others"


def _refuse(path: Path | str, why: str) -> HostError:
    return HostError(f"refusing {path}: {why}; root follows and runs only links, directories " +
                     "and runner trees that no other user can change")


def check_dirs(path: Path) -> None:
    """Every directory from / down to `path` (followed to its real location) belongs to root
    (or to us) and is not writable by others, unless sticky like /tmp or /nix/store (there
    nobody can replace an entry of root's, and every entry followed is checked to be root's)."""
    real = Path(os.path.realpath(path))
    for d in [real, *real.parents]:
        st = os.lstat(d)
        why = _why_unsafe(st, sticky_ok=True)
        if why:
            raise _refuse(d, why)


def check_tree(tree: Path) -> None:
    """A runner tree nobody but root (or we) could have changed: its directories above, and
    every file, directory and link in it (links also where they lead)."""
    tree = Path(os.path.realpath(tree))
    check_dirs(tree.parent)
    for dirpath, dirnames, filenames in os.walk(tree):
        for entry in (dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)):
            st = os.lstat(entry)
            why = _why_unsafe(st, sticky_ok=False)
            if why:
                raise _refuse(entry, why)
            if stat.S_ISLNK(st.st_mode):
                real = os.path.realpath(entry)
                if not os.path.realpath(real).startswith(str(tree) + "/"):
                    check_dirs(Path(real).parent)
                    why = _why_unsafe(os.lstat(real), sticky_ok=False)
                    if why:
                        raise _refuse(real, why)


def trusted_runner(link: Path) -> Path:
    """The runner `link` points at, after checking that neither the link, the directories above
    it, nor the runner tree could have been changed by another user (the VM's user above all)."""
    try:
        st = os.lstat(link)
        if not stat.S_ISLNK(st.st_mode):
            raise _refuse(link, "not a symlink")
        why = _why_unsafe(st, sticky_ok=False)
        if why:
            raise _refuse(link, why)
        check_dirs(link.parent)
        target = Path(os.path.realpath(link))
        check_tree(target)
    except FileNotFoundError as e:
        raise HostError(f"{e.filename}: missing") from None
    return target


# -- the VM's sockets, as root connects to them ----------------------------------------------

PROTECTED_HARDLINKS = Path("/proc/sys/fs/protected_hardlinks")


def _hardlinks_protected() -> bool:
    """fs.protected_hardlinks: a user may not link a file (a socket above all) of another."""
    try:
        return PROTECTED_HARDLINKS.read_text().strip() == "1"
    except OSError:
        return False


def _pin_socket(vm: VMDir, dirfd: int, owners: frozenset[int], name: str) -> int | None:
    """An O_PATH descriptor of the socket `name` in the VM's data directory (open as
    `dirfd`), opened without following a link, after checking that it is a socket of
    `owners` (the VM's user, and root for the hypervisor of `microvm run`) with no other
    name a user could have linked from elsewhere; None when there is none (its client
    says so)."""
    shown = vm.path / name
    if not name or "/" in name or name in (".", ".."):
        raise HostError(f"{vm.name}: refusing socket {escape(name)!r}: not a plain name in " +
                        f"{vm.path}")
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise HostError(f"{vm.name}: cannot open {shown}: {e.strerror}") from None
    st = os.fstat(fd)
    why = ("a symbolic link" if stat.S_ISLNK(st.st_mode)
           else "not a socket" if not stat.S_ISSOCK(st.st_mode)
           else f"owned by uid {st.st_uid}" if st.st_uid not in owners
           else "hard-linked elsewhere" if st.st_nlink != 1 and not _hardlinks_protected()
           else None)
    if why:
        os.close(fd)
        raise HostError(f"{vm.name}: refusing {shown}: {why}; root connects only to a socket " +
                        "of the VM's user or of root in the VM's directory, not through a link")
    return fd


def unit(name: str) -> str:
    """The systemd unit that runs VM `name`."""
    return f"microvm@{name}.service"


@contextlib.contextmanager
def pinned_sockets(vm: VMDir, names: Iterable[str]) -> Iterator[Path]:
    """A directory only root can write (`.control/NAME/.connect.new.PID`, 0700) holding a hard
    link to each of the VM's sockets `names` (plain names in its data directory), made from a
    descriptor opened and checked without following a link (_pin_socket): a client run there
    (root's) reaches those sockets by the same names and no other, whatever the VM's user
    renames or links in its directory meanwhile (one that does not exist is left out).
    Where the data directory is another file system (a dataset per VM), no hard link can be
    made: the name is then a symbolic link to this process's own descriptor of the socket,
    /proc/PID/fd/N, which stays open until the block ends (a client connecting through it
    reaches the checked socket; only root may follow another process's descriptors).
    Removed when the block ends."""
    names = list(dict.fromkeys(names))
    pin = vm.control / f".connect.new.{os.getpid()}"
    try:
        dirfd = os.open(vm.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise HostError(f"{vm.name}: refusing {vm.path}: {e.strerror} (not a directory, or a " +
                        "link)") from None
    try:
        # the VM's user (a data directory of an older layout: its owner) and root
        owners = frozenset(u for u in (0, os.fstat(dirfd).st_uid, vm.user_uid())
                           if u is not None)
        fds: list[int] = []
        held: list[int] = []  # descriptors a /proc link names: open until the block ends
        try:
            pinned = []
            for name in names:
                fd = _pin_socket(vm, dirfd, owners, name)
                if fd is not None:
                    fds.append(fd)
                    pinned.append((name, fd))
            with writing(pin):
                shutil.rmtree(pin, ignore_errors=True)
                os.mkdir(pin, 0o700)
            pinfd = os.open(pin, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            fds.append(pinfd)
            for name, fd in pinned:
                try:  # linkat(AT_SYMLINK_FOLLOW) of the descriptor (a dir_fd makes it linkat)
                    os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=pinfd,
                            follow_symlinks=True)
                except OSError as e:
                    if e.errno != errno.EXDEV:
                        raise HostError(f"{vm.name}: cannot link {vm.path / name} into " +
                                        f"{pin}: {e.strerror}") from None
                    os.symlink(f"/proc/{os.getpid()}/fd/{fd}", name, dir_fd=pinfd)
                    fds.remove(fd)
                    held.append(fd)
        except BaseException:
            for fd in held:
                os.close(fd)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        try:
            yield pin
        finally:
            for fd in held:
                os.close(fd)
    finally:
        os.close(dirfd)
        shutil.rmtree(pin, ignore_errors=True)


@dataclass(frozen=True)
class Runner:
    """A runner tree (layout.py: bin/microvm-run, share/microvm/*) as seen through a link."""

    path: Path

    @property
    def valid(self) -> bool:
        return self.bin(Program.RUN).is_file()

    def bin(self, program: Program) -> Path:
        return self.path / program.path

    def meta(self, name: Meta) -> str | None:
        """The text of share/microvm/NAME, or None when the runner has no such file."""
        try:
            return (self.path / name.path).read_text("utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None

    def document(self) -> dict[str, Any] | None:
        """The VM document this runner was generated for (share/microvm/vm.json) as JSON, or
        None when it has none or it is no JSON object."""
        text = self.meta(Meta.VM_JSON)
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def model(self) -> MicroVM | None:
        """The VM this runner was generated for, or None when it has no document or this
        version cannot read it."""
        data = self.document()
        if data is None:
            return None
        try:
            return from_document(data)
        except (ValidationError, ValueError):
            return None

    @property
    def hypervisor(self) -> str:
        return (self.meta(Meta.HYPERVISOR) or "?").strip() or "?"

    @property
    def vsock_cid(self) -> int | None:
        text = (self.meta(Meta.VSOCK_CID) or "").strip()
        return int(text) if text.isdigit() else None

    def control_sockets(self) -> list[str]:
        """The control socket its bin/microvm-balloon and bin/microvm-shutdown connect to, as
        a name in the VM's directory (none when it has none there; one at an absolute path
        must be in directories only root can change: check_dirs)."""
        model = self.model()
        socket = model.socket if model is not None else None
        if socket is None:
            return []
        if os.path.isabs(socket):
            check_dirs(Path(socket).parent)
            return []
        return [socket]

    @property
    def hybrid_vsock(self) -> str | None:
        """The hypervisor's vsock multiplexer socket (share/microvm/hybrid-vsock: relative to
        the VM's directory), or None when its vsock is the kernel's (vhost-vsock)."""
        return (self.meta(Meta.HYBRID_VSOCK) or "").strip() or None

    def lines(self, name: Meta) -> list[str]:
        return [x for x in (self.meta(name) or "").splitlines() if x.strip()]

    def launch(self) -> LaunchRecord | None:
        """share/microvm/launch.json, or None when the runner has none; a HostError naming the
        file when it is malformed."""
        text = self.meta(Meta.LAUNCH)
        if text is None:
            return None
        return LaunchRecord.from_text(text, str(self.path / Meta.LAUNCH.path))


@dataclass(frozen=True)
class Flake:
    """A VM built from a flake: `ref` as `create`/`update --flake` got it (None: the host
    configuration's microvm.vms.NAME.updateFlake, read from declared.json each time), and the
    revision a git flake was pinned to."""

    ref: str | None
    pin: Pin | None = None


@dataclass(frozen=True)
class RunnerPath:
    """A VM made from an existing runner: the path `create`/`update --runner` got, resolved
    again by a plain `update` (a `result` link may have moved)."""

    path: str


@dataclass(frozen=True)
class MetaRecord:
    """meta.json: where the VM's runner comes from (None: nowhere recorded, a VM the host
    configuration installs) and whether `update` restarts it."""

    source: Flake | RunnerPath | None = None
    restart_on_update: bool = False

    @property
    def pin(self) -> Pin | None:
        return self.source.pin if isinstance(self.source, Flake) else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        match self.source:
            case Flake(ref, pin):
                if ref is not None:
                    out["flake"] = ref
                if pin is not None:
                    out["pin"] = pin.to_json()
            case RunnerPath(path):
                out["runner"] = path
        if self.restart_on_update:
            out["restartOnUpdate"] = True
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MetaRecord:
        """What to_json wrote, as every version did: a flake wins over a runner; a pin
        without a flake is the declared updateFlake's; a malformed pin is none."""
        flake, runner, pin = data.get("flake"), data.get("runner"), data.get("pin")
        try:
            pinned = Pin.from_json(pin) if isinstance(pin, dict) else None
        except (KeyError, TypeError):
            pinned = None
        source: Flake | RunnerPath | None = None
        if isinstance(flake, str):
            source = Flake(flake, pinned)
        elif isinstance(runner, str):
            source = RunnerPath(runner)
        elif pinned is not None:
            source = Flake(None, pinned)
        return cls(source, bool(data.get("restartOnUpdate", False)))


@dataclass(frozen=True)
class Declared:
    restart_if_changed: bool = True
    # microvm.vms.NAME.updateFlake: the host installs the VM once; `microvm update NAME`
    # rebuilds it from this flake after that
    update_flake: str | None = None


@dataclass(frozen=True)
class VMDir:
    """The state of one VM under the state root."""

    root: Path
    name: str

    @property
    def path(self) -> Path:
        """The VM's data directory (volumes, sockets, console): its user may write it."""
        return self.root / self.name

    @property
    def control(self) -> Path:
        """Root's directory of the VM: links and metadata."""
        return self.root / CONTROL / self.name

    def file(self, name: str) -> Path:
        return self.control / name

    def data(self, name: str) -> Path:
        return self.path / name

    @property
    def current_link(self) -> Path:
        return self.file("current")

    @property
    def booted_link(self) -> Path:
        return self.file("booted")

    @property
    def exists(self) -> bool:
        return self.control.is_dir() and (self.current_link.is_symlink()
                                          or self.file("declared.json").exists())

    def _target(self, link: Path) -> Path | None:
        try:
            target = os.readlink(link)
        except (FileNotFoundError, OSError):
            return None
        return Path(os.path.join(link.parent, target))

    @property
    def current(self) -> Path | None:
        """What `current` points at (absolute), or None."""
        return self._target(self.current_link)

    @property
    def booted(self) -> Path | None:
        return self._target(self.booted_link)

    def runner(self, which: str = "current") -> Runner | None:
        target = self.current if which == "current" else self.booted
        return Runner(target) if target is not None else None

    @property
    def active_runner(self) -> Runner | None:
        """The booted runner if there is one, else the current one."""
        return self.runner("booted") or self.runner("current")

    def trusted_active_runner(self) -> Runner | None:
        """The booted runner, else the current one, after trusted_runner() checked it: for
        running its programs as root."""
        for link in (self.booted_link, self.current_link):
            if link.is_symlink():
                return Runner(trusted_runner(link))
        return None

    def read(self, name: str) -> str | None:
        try:
            return self.file(name).read_text("utf-8").strip()
        except FileNotFoundError:
            return None

    def record(self) -> MetaRecord:
        """The metadata of the VM's current state, read once: a pending change once `current`
        names its runner (the switch happened), else meta.json."""
        pending = self.read_json(PENDING)
        if pending is not None and pending.get("current") == self._link_text(self.current_link):
            return MetaRecord.from_json(pending)
        return MetaRecord.from_json(self.read_json(META) or {})

    @staticmethod
    def _link_text(link: Path) -> str | None:
        try:
            return os.readlink(link)
        except OSError:
            return None

    def commit(self, target: Path, record: MetaRecord, step: str) -> None:
        """Make `target` the current runner with exactly `record` as metadata, as one
        transaction: meta.json.pending (complete), then the atomic switch of `current`, then the
        pending file becomes meta.json. Call under changing()."""
        write_json(self.file(PENDING), {**record.to_json(), "current": str(target)})
        checkpoint(f"{step}:before-switch")
        try:
            if self._link_text(self.current_link) != str(target):
                switch_link(self.current_link, target)
            checkpoint(f"{step}:switched")
            self.settle()
        except HostError as e:
            if self._link_text(self.current_link) != str(target):
                raise  # nothing switched: the old state
            # the rename took effect before the directory fsync or the metadata failed
            raise HostError(f"{self.name}: the change took effect ({self.current_link} -> " +
                            f"{target}, with its metadata in {self.file(PENDING)}), but is " +
                            f"not all on disk: {e}; the next microvm command for " +
                            f"{self.name} completes it") from None

    def settle(self) -> None:
        """Finish a change that got as far as its switch, drop one that did not."""
        pending = self.file(PENDING)
        if not pending.exists():
            return
        data = self.read_json(PENDING)
        with writing(pending):
            if data is not None and data.get("current") == self._link_text(self.current_link):
                os.replace(pending, self.file(META))
            else:
                pending.unlink()
            fsync_dir(self.control)

    def read_json(self, name: str) -> dict[str, Any] | None:
        text = self.read(name)
        if text is None:
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None

    def account(self, user: str = defaults.USER,
                group: str = defaults.GROUP) -> tuple[str, str]:
        """The user and group the VM runs as: root's account.json (`create --user --group`
        and install-microvm-NAME write it); for a VM an older version made, the owner of its
        data directory where that is not root (and its group where that is not root's);
        else `user` and `group`."""
        data = self.read_json(ACCOUNT) or {}
        if isinstance(data.get("user"), str) and isinstance(data.get("group"), str):
            return data["user"], data["group"]
        try:
            st = os.lstat(self.path)
        except OSError:
            return user, group
        if stat.S_ISDIR(st.st_mode) and st.st_uid != 0:
            with contextlib.suppress(KeyError):
                user = pwd.getpwuid(st.st_uid).pw_name
        if stat.S_ISDIR(st.st_mode) and st.st_gid != 0:
            with contextlib.suppress(KeyError):
                group = grp.getgrgid(st.st_gid).gr_name
        return user, group

    def user_uid(self) -> int | None:
        """The uid of the VM's user (account()), None when there is no such user."""
        try:
            return pwd.getpwnam(self.account()[0]).pw_uid
        except KeyError:
            return None

    @property
    def declared(self) -> Declared | None:
        data = self.read_json("declared.json")
        if data is None:
            return None
        flake = data.get("updateFlake")
        return Declared(restart_if_changed=bool(data.get("restartIfChanged", True)),
                        update_flake=flake if isinstance(flake, str) and flake else None)

    def restarts_on_update(self, record: MetaRecord) -> bool:
        """Does `update` restart the VM: a declared VM's restartIfChanged, else the record's."""
        declared = self.declared
        if declared is not None:
            return declared.restart_if_changed
        return record.restart_on_update

    # -- running ---------------------------------------------------------------------------
    @property
    def run_lock(self) -> Path:
        return self.file(".run.lock")

    def run_record(self) -> RunRecord | None:
        """Who holds the run lock: None when nobody does (or the lock is one another user
        could hold, see open_lock()); else the record its holder wrote."""
        try:
            fd = os.open(self.run_lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, PermissionError):
            return None  # not running, or not ours to know (the lock is root's, 0600)
        try:
            if not _private(os.fstat(fd)):
                return None  # any user could hold it: its being held proves nothing
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return RunRecord.parse(os.read(fd, 64).decode("ascii", "replace"))
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def run_pid(self) -> int | None:
        """The pid of `microvm run` holding the run lock, None when it is not held, -1 when
        it is held but its record names no process that still is that `microvm run`."""
        record = self.run_record()
        if record is None:
            return None
        return record.pid if record.alive() else -1

    @contextlib.contextmanager
    def hold_run_lock(self) -> Iterator[None]:
        """Held while `microvm run` runs the VM: tells other commands it is running, and which
        process it is (pid and start time, so that a reused pid is never taken for it)."""
        fd = open_lock(self.run_lock)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise HostError(f"{self.name} is already running") from None
            pid = os.getpid()
            os.ftruncate(fd, 0)
            os.write(fd, f"{pid} {process_start_time(pid)}\n".encode())
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def changing(self, wait: float = 30.0) -> Iterator[None]:
        """Serialise changes of this VM's links and files between `microvm` processes (waits up
        to `wait` seconds for another one to finish)."""
        make_control(self)
        fd = open_lock(self.file(".lock"))
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise HostError(f"another microvm command is changing {self.name}") \
                            from None
                    time.sleep(0.1)
            clean_temporaries(self.control)
            self.settle()
            yield
        finally:
            os.close(fd)


def make_control(vm: VMDir) -> None:
    """Create root's directory of the VM (0755) and check nobody else could change it."""
    for d in (vm.root, vm.root / CONTROL, vm.control):
        if not d.is_dir():
            with writing(d):
                d.mkdir(mode=0o755, parents=True, exist_ok=True)
                os.chmod(d, 0o755)
    check_control(vm)


def check_control(vm: VMDir) -> None:
    """Root's directory of the VM and those above it are root's (check_dirs), and the VM's
    own, whose metadata decides what root builds and runs, is not even sticky-writable."""
    check_dirs(vm.control)
    why = _why_unsafe(os.lstat(vm.control), sticky_ok=False)
    if why:
        raise _refuse(vm.control, why)


def list_vms(root: Path) -> list[VMDir]:
    control = root / CONTROL
    if not control.is_dir():
        return []
    out = []
    for entry in sorted(control.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        vm = VMDir(root, entry.name)
        if vm.exists:
            out.append(vm)
    return out


def get_vm(root: Path, name: str) -> VMDir:
    vm = VMDir(root, check_name(name))
    if not vm.exists:
        raise HostError(f"no MicroVM {name!r} in {root}")
    check_control(vm)
    return vm


def prepare_vm_dir(root: Path, name: str) -> VMDir:
    """The directory of a VM about to be created. The VM exists once its `current` link does
    (the last step of creating it), so an interrupted create leaves no half VM: the next create
    of that name reuses the directory, and with it volumes a `remove` kept."""
    vm = VMDir(root, check_name(name))
    if vm.exists:
        raise HostError(f"MicroVM {name!r} already exists in {root}")
    for d in (vm.path, vm.control):
        if d.is_symlink() or (d.exists() and not d.is_dir()):
            raise HostError(f"{d} exists and is no directory")
    make_control(vm)
    return vm


def compat_link_ok(vm: VMDir, name: str) -> bool:
    """Is microvm.nix's link `name` in the data directory ours, pointing where it should?"""
    link = vm.path / name
    try:
        st = os.lstat(link)
        return (stat.S_ISLNK(st.st_mode) and st.st_uid in (0, os.geteuid())
                and os.readlink(link) == compat_target(vm, name))
    except OSError:
        return False


def compat_target(vm: VMDir, name: str) -> str:
    """Where microvm.nix's link `name` in the data directory points: root's in .control."""
    return f"../{CONTROL}/{vm.name}/{name}"


def make_data_dir(vm: VMDir, gid: int | None) -> None:
    """Create the VM's data directory, or bring one of an older layout up to date: root's (or
    ours), with microvm.nix's `current` and `booted` as our links into .control/NAME, then,
    as root with the VM's group `gid`, open to that group and sticky (DATA_MODE): its user
    creates and removes its own files, and cannot rename or replace root's links. Where a
    link is missing or another's (microvm.nix's layout gave the directory to the VM's user,
    whose `current` it was), the directory is first closed to all but root, so that nobody
    can race the links being made."""
    path = vm.path
    root = os.geteuid() == 0
    with writing(path):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o755)
            st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise HostError(f"{path} exists and is no directory")
        wrong = [n for n in COMPAT_LINKS if not compat_link_ok(vm, n)]
        if root and (st.st_uid != 0 or wrong):
            os.chown(path, 0, 0, follow_symlinks=False)
            os.chmod(path, 0o755)
        for name in wrong:
            link = path / name
            if link.is_dir() and not link.is_symlink():
                raise HostError(f"{link} is a directory where the link to {vm.control / name} " +
                                "belongs (microvm.nix's name): move it away")
            tmp = _temp_name(link)  # nobody else writes the directory now
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(compat_target(vm, name), tmp)
            os.replace(tmp, link)
        if root and gid is not None:
            os.chown(path, 0, gid, follow_symlinks=False)
            os.chmod(path, DATA_MODE)
        fsync_dir(path)
