"""The state directory: one directory per VM holding the links that say which runner to start
(`current`) and which one runs (`booted`), and small metadata files.

    <state>/<name>/current        symlink to the runner started next
    <state>/<name>/booted         symlink to the runner that is running (absent when stopped)
    <state>/<name>/flake          the flake reference the runner is built from (text)
    <state>/<name>/runner         the runner path it was created from (text; --runner VMs)
    <state>/<name>/pin.json       the git revision and NAR hash the flake was pinned to
    <state>/<name>/declared.json  present for VMs declared in the host configuration
    <state>/<name>/settings.json  per-VM settings of the `microvm` command

Every change is atomic: a link or file is written under a temporary name and renamed over the
old one, so a crash at any point leaves the old or the new version, never none. A VM exists once its
`current` link does, and that link is the last thing a create writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MicrovmError, UsageError

DEFAULT_STATE_DIR = "/var/lib/microvms"
STATE_DIR_ENV = "MICROVM_STATE_DIR"
# test hook: SIGKILL this process when it reaches the named checkpoint (see checkpoint())
CRASH_ENV = "MICROVM_TEST_CRASH_AT"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_TEMP = re.compile(r"^\.(.+)\.new\.(\d+)$")


class HostError(MicrovmError):
    """A host operation failed (exit code 1)."""


def check_name(name: str) -> str:
    """A VM name is a directory name and a systemd instance name: letters, digits, `_.-`."""
    if not _NAME.fullmatch(name) or name.endswith(".") or ".." in name:
        raise UsageError(f"invalid VM name {name!r}: use 1-64 letters, digits, '_', '.' or '-', " +
                         "starting with a letter, digit or '_'")
    return name


def state_root(override: str | os.PathLike[str] | None = None) -> Path:
    """--state-dir, else $MICROVM_STATE_DIR, else /var/lib/microvms (absolute)."""
    raw = override or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR
    return Path(os.path.abspath(raw))


def checkpoint(step: str) -> None:
    """A point between two steps of a change. Tests set MICROVM_TEST_CRASH_AT=<step> to have the
    process killed (SIGKILL: no cleanup runs) exactly there."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.new.{os.getpid()}")


def switch_link(link: Path, target: str | os.PathLike[str]) -> None:
    """Point `link` at `target` atomically: a new symlink renamed over the old one."""
    tmp = _temp_name(link)
    checkpoint(f"{link.name}:before-link")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    checkpoint(f"{link.name}:link-written")
    os.replace(tmp, link)
    checkpoint(f"{link.name}:renamed")
    fsync_dir(link.parent)


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace `path` with `text` atomically (temporary file, fsync, rename)."""
    tmp = _temp_name(path)
    checkpoint(f"{path.name}:before-write")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    checkpoint(f"{path.name}:written")
    os.replace(tmp, path)
    fsync_dir(path.parent)


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


@dataclass(frozen=True)
class Runner:
    """A runner tree (bin/microvm-run, share/microvm/*) as seen through a link."""

    path: Path

    @property
    def valid(self) -> bool:
        return (self.path / "bin" / "microvm-run").is_file()

    def bin(self, name: str) -> Path:
        return self.path / "bin" / name

    def meta(self, name: str) -> str | None:
        try:
            return (self.path / "share" / "microvm" / name).read_text("utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None

    @property
    def hypervisor(self) -> str:
        return (self.meta("hypervisor") or "?").strip() or "?"

    @property
    def vsock_cid(self) -> int | None:
        text = (self.meta("vsock-cid") or "").strip()
        return int(text) if text.isdigit() else None

    def lines(self, name: str) -> list[str]:
        return [x for x in (self.meta(name) or "").splitlines() if x.strip()]

    def launch(self) -> dict[str, Any]:
        text = self.meta("launch.json")
        if text is None:
            return {}
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return {}
        return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class Declared:
    restart_if_changed: bool = True


@dataclass(frozen=True)
class VMDir:
    """The state of one VM under the state root."""

    root: Path
    name: str

    @property
    def path(self) -> Path:
        return self.root / self.name

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def current_link(self) -> Path:
        return self.file("current")

    @property
    def booted_link(self) -> Path:
        return self.file("booted")

    @property
    def exists(self) -> bool:
        return self.path.is_dir() and (self.current_link.is_symlink()
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

    def read(self, name: str) -> str | None:
        try:
            return self.file(name).read_text("utf-8").strip()
        except FileNotFoundError:
            return None

    @property
    def flake(self) -> str | None:
        return self.read("flake")

    @property
    def runner_source(self) -> str | None:
        return self.read("runner")

    def read_json(self, name: str) -> dict[str, Any] | None:
        text = self.read(name)
        if text is None:
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None

    @property
    def declared(self) -> Declared | None:
        data = self.read_json("declared.json")
        if data is None:
            return None
        return Declared(restart_if_changed=bool(data.get("restartIfChanged", True)))

    @property
    def settings(self) -> dict[str, Any]:
        return self.read_json("settings.json") or {}

    @property
    def restart_on_update(self) -> bool:
        declared = self.declared
        if declared is not None:
            return declared.restart_if_changed
        return bool(self.settings.get("restartOnUpdate", False))

    @property
    def pin(self) -> dict[str, Any] | None:
        return self.read_json("pin.json")

    # -- running ---------------------------------------------------------------------------
    @property
    def run_lock(self) -> Path:
        return self.file(".run.lock")

    def run_pid(self) -> int | None:
        """The pid of `microvm run` holding the run lock, or None when it is not held."""
        try:
            fd = os.open(self.run_lock, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.read(fd, 32).decode("ascii", "replace").strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def hold_run_lock(self) -> Iterator[None]:
        """Held while `microvm run` runs the VM: tells other commands it is running."""
        fd = os.open(self.run_lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise HostError(f"{self.name} is already running") from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def changing(self, wait: float = 30.0) -> Iterator[None]:
        """Serialise changes of this VM's links and files between `microvm` processes (waits up
        to `wait` seconds for another one to finish)."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.file(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
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
            clean_temporaries(self.path)
            yield
        finally:
            os.close(fd)


def list_vms(root: Path) -> list[VMDir]:
    if not root.is_dir():
        return []
    out = []
    for entry in sorted(root.iterdir()):
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
    return vm


def prepare_vm_dir(root: Path, name: str) -> VMDir:
    """The directory of a VM about to be created. The VM exists once its `current` link does
    (the last step of creating it), so an interrupted create leaves no half VM: the next create
    of that name reuses the directory, and with it volumes a `remove` kept."""
    vm = VMDir(root, check_name(name))
    if vm.exists:
        raise HostError(f"MicroVM {name!r} already exists in {root}")
    if vm.path.is_symlink() or (vm.path.exists() and not vm.path.is_dir()):
        raise HostError(f"{vm.path} exists and is no directory")
    vm.path.mkdir(parents=True, exist_ok=True)
    return vm
