"""Can the VM's user do X on path P? Under systemd, microvm@NAME.service runs the runner as the
VM's user (User=, Group=: default microvm, kvm), not as root: a runner that user cannot reach
fails with 203/EXEC, a device it cannot open makes the hypervisor fail or emulate. `microvm
create` and `update` refuse such a runner before anything is switched (check_runner), and
`microvm doctor` reports it and the devices (runner_problem, device_problem).

How: we ask the kernel, as that user. access_probe.py runs through process.run with the user's
uid, its gid (Group=) and its supplementary groups (getgrouplist, as systemd sets them), walks
each path component by component with access(2) and opens devices read-write, and says where it
was refused. Rather that than permission arithmetic here: the kernel's answer includes what mode
bits do not show (POSIX ACLs, read-only and noexec mounts, security modules), and opening a
device is the only honest test of a device. Arithmetic is used for one thing only, the fix we
suggest (which class lacks which bit); where the mode bits allow what the kernel refused, the
message says so instead of suggesting a chmod (ACLs are not examined). What the runner reads
comes from its own metadata (layout.py): its scripts, share/microvm/, and the kernel, initrd,
store disk and credential files of its vm.json, the hypervisor of its launch.json.

Not checked: paths that do not exist (as root either: that is no question of access), relative
paths (resolved in the VM's data directory at run time), volumes and 9p share sources, and what
the unit's sandbox adds (PrivateTmp=, ProtectHome=, DeviceAllow=). A check needs root (or to be
that user); the CLI runs host commands as root.
"""

from __future__ import annotations

import errno
import grp
import json
import logging
import os
import pwd
import shlex
import stat
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from .. import process
from ..capabilities import CAPABILITIES, Feature
from ..errors import HostError, MicrovmError, UsageError
from ..layout import META_DIR, Meta, Program
from .state import Runner, VMDir, unit

PROBE = Path(__file__).with_name("access_probe.py")
# the devices a VM's hypervisor opens (microvm@.service's DeviceAllow= lists them too)
DEVICES = ("/dev/kvm", "/dev/net/tun", "/dev/vhost-net", "/dev/vhost-vsock")

Echo = Callable[[str], None]
log = logging.getLogger(__name__)


class Need(StrEnum):
    """What the user must be able to do on a path (access_probe.py's NEED)."""

    SEARCH = "search"  # a directory passed through
    READ = "read"
    RUN = "run"  # a script: read and execute
    EXECUTE = "execute"  # a binary
    OPEN = "open"  # a device, read-write

    @property
    def verb(self) -> str:
        return {"run": "read and execute", "open": "open read-write"}.get(self.value, self.value)

    @property
    def bits(self) -> str:
        """The permission bits it takes, as chmod spells them."""
        return {"search": "x", "read": "r", "run": "rx", "execute": "x", "open": "rw"}[self.value]


@dataclass(frozen=True)
class Account:
    """The user and group systemd runs a VM as, with the ids the kernel checks."""

    user: str
    group: str
    identity: process.Identity

    @property
    def gids(self) -> frozenset[int]:
        return frozenset({self.identity.gid, *self.identity.groups})


def account(user: str, group: str | None) -> tuple[Account, str | None]:
    """The account of `user` with Group=`group` (None: the user's own group), and a note when
    `group` does not exist (checked with the user's own group then). HostError when the user
    does not exist."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise HostError(f"user {user} does not exist") from None
    note = None
    gid = pw.pw_gid
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            note = f"group {group} does not exist: checked with {user}'s own group"
            group = None
    name = group if group is not None else _group_name(gid)
    # systemd's User= with Group=: that gid, and the user's groups as getgrouplist gives them
    groups = tuple(sorted(set(os.getgrouplist(user, gid))))
    return Account(user, name, process.Identity(pw.pw_uid, gid, groups)), note


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# -- asking the kernel -----------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    path: str
    need: Need
    what: str  # what it is, for the message ("bin/microvm-run", "microvm.kernel", ...)


@dataclass(frozen=True)
class Denial:
    request: Request
    at: str  # where the kernel refused: the path, or a directory on the way
    need: Need  # what it refused there (SEARCH for a directory on the way)
    error: str  # its strerror


def can_probe(acct: Account) -> bool:
    """Whether we can act as `acct` (we are root, or that user)."""
    return os.geteuid() in (0, acct.identity.uid)


def probe(acct: Account, requests: Sequence[Request]) -> list[Denial]:
    """What of `requests` the kernel refuses `acct`. Paths that do not exist are left out.
    HostError (or ProcessError) when the probe cannot run as that user."""
    if not requests:
        return []
    if not can_probe(acct):
        raise HostError(f"only root can check what {acct.user} may do")
    # the interpreter itself, not a virtual environment's link to it (which may lie where
    # the user cannot go); -I -S: nothing from the environment, no site packages
    python = os.path.realpath(sys.executable) if sys.executable else ""
    if not python:
        raise HostError("no Python interpreter to run the access probe with")
    argv = [python, "-I", "-S", "-", *(x for r in requests for x in (r.need.value, r.path))]
    who = acct.identity if os.geteuid() != acct.identity.uid else None
    result = process.run(argv, input=PROBE.read_text("utf-8"), cwd=Path("/"), as_user=who,
                         timeout=60)
    lines = result.stdout.splitlines()
    if len(lines) != len(requests):
        raise HostError(f"the access probe answered {len(lines)} of {len(requests)} questions")
    # The probe runs as the user, who could make it lie (ptrace): its answers only decide a
    # refusal and a message, never what root runs.
    denials = []
    for request, line in zip(requests, lines, strict=True):
        try:
            answer = json.loads(line)
            if "denied" in answer:
                denials.append(Denial(request, str(answer["denied"]), Need(answer["need"]),
                                      str(answer["error"])))
        except (ValueError, TypeError, KeyError):
            raise HostError(f"the access probe answered {line!r:.100}") from None
    return denials


# -- what a runner needs -----------------------------------------------------------------------

def runner_requests(runner: Runner) -> list[Request]:
    """What microvm@NAME.service needs, as the VM's user, of `runner` (its path may be a link,
    as ExecStart= reaches it): read and execute bin/microvm-run and bin/microvm-shutdown
    (ExecStart=, ExecStop=), read every file of share/microvm/ (pre-start is sourced, the
    hypervisor reads the files its backend wrote), read the kernel, initrd, store disk and
    credential files of its vm.json, run its extraArgsScript, execute the hypervisor where
    launch.json names it by an absolute path."""
    base = runner.path
    out = [Request(str(base / p.path), Need.RUN, p.path)
           for p in (Program.RUN, Program.SHUTDOWN) if runner.bin(p).is_file()]
    meta = base / META_DIR
    if meta.is_dir():
        for path in sorted(meta.rglob("*")):
            if path.is_file() or path.is_dir():
                out.append(Request(str(path), Need.READ if path.is_file() else Need.SEARCH,
                                   str(path.relative_to(base))))
    model = runner.model()
    if model is not None:
        files = [("microvm.kernel", model.kernel), ("microvm.initrdPath", model.initrd),
                 ("microvm.storeDisk", model.store_disk_path)]
        if CAPABILITIES[model.hypervisor].supports(Feature.CREDENTIALS, model.system):
            files += [(f"microvm.credentialFiles.{name}", path)
                      for name, path in model.credential_files]
        out += [Request(path, Need.READ, what) for what, path in files
                if path is not None and os.path.isabs(path)]
        script = model.extra_args_script
        if script is not None and os.path.isabs(script):
            out.append(Request(script, Need.RUN, "microvm.extraArgsScript"))
    try:
        launch = runner.launch()
    except HostError:
        launch = None  # doctor reports a malformed launch.json on its own
    if launch is not None:
        out += [Request(p, Need.EXECUTE, f"the hypervisor ({Meta.LAUNCH.path})")
                for p in launch.programs if os.path.isabs(p)]
    return out


# -- messages --------------------------------------------------------------------------------

def _mode(path: str) -> str:
    """`drwx------ root:root` for `path` (followed), or "" when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{stat.filemode(st.st_mode)} {_user_name(st.st_uid)}:{_group_name(st.st_gid)}"


def fix(at: str, need: Need, acct: Account) -> str:
    """What to change so that `acct` may do `need` on `at`: the chmod the mode bits call for
    (owner, group or others, as the kernel picks the class), or, where the mode bits allow it
    already, what else refuses it."""
    try:
        st = os.stat(at)
    except OSError as e:
        return f"make {at} reachable for {acct.user} ({e.strerror})"
    if st.st_uid == acct.identity.uid:
        who, shift = "u", 6
    elif st.st_gid in acct.gids:
        who, shift = "g", 3
    else:
        who, shift = "o", 0
    wanted = sum({"r": 4, "w": 2, "x": 1}[b] for b in need.bits)
    quoted = shlex.quote(at)
    if (st.st_mode >> shift) & wanted == wanted:
        return (f"the mode of {at} allows it: an ACL (getfacl {quoted}), a read-only or noexec " +
                "mount or a security module (AppArmor, SELinux) refuses it; these are not " +
                "examined here")
    if need is not Need.OPEN:
        return f"chmod {who}+{need.bits} {quoted}"
    owner = _group_name(st.st_gid)
    if who == "g":
        change = f"chmod g+rw {quoted}"
    elif (st.st_mode >> 3) & 6 == 6 and st.st_gid != 0:
        change = f"usermod -aG {owner} {acct.user}"  # its group may open it: join that
    else:
        change = f"chgrp {acct.group} {quoted} && chmod g+rw {quoted}"
    return (f"{change} (to make it last, a udev rule: KERNEL==\"{os.path.basename(at)}\", " +
            f"GROUP=\"{acct.group}\", MODE=\"0660\"); under systemd the unit's DeviceAllow= " +
            "must allow the device too")


def _listed(items: Sequence[str], most: int = 3) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def describe(denials: Iterable[Denial], acct: Account) -> tuple[str, str]:
    """(what the user cannot do, the fix) for `denials`, one clause per place refused."""
    places: dict[tuple[str, Need], list[Denial]] = {}
    for d in denials:
        places.setdefault((d.at, d.need), []).append(d)
    clauses, fixes = [], []
    for (at, need), found in places.items():
        whats = list(dict.fromkeys(d.request.what for d in found))
        mode = _mode(at)
        error = found[0].error
        why = "" if error == os.strerror(errno.EACCES) else f": {error}"
        clauses.append(f"cannot {need.verb} {at}{why} ({(mode + '; ') if mode else ''}" +
                       f"needed for {_listed(whats)})")
        fixes.append(fix(at, need, acct))
    return "; ".join(clauses), "; ".join(dict.fromkeys(fixes))


def runner_problem(acct: Account, runner: Runner, name: str, shown: Path,
                   extra: Sequence[Request] = ()) -> tuple[str, str] | None:
    """(detail, fix) when `acct` cannot run `runner` (reached as its path is: the runner tree,
    or a link to it) as microvm@`name`.service would, plus the `extra` requests; None when it
    can. `shown` is the runner as the message names it."""
    denials = probe(acct, [*extra, *runner_requests(runner)])
    if not denials:
        return None
    what, how = describe(denials, acct)
    detail = (f"{unit(name)} runs the runner {shown} as user {acct.user} (group " +
              f"{acct.group}), who {what}")
    return detail, f"{how}; or put the runner where {acct.user} can read it"


def state_request(root: Path) -> Request:
    """The state directory (or, before it exists, the directory it will be made in): the unit
    reaches the runner and the VM's data directory through it."""
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return Request(str(existing), Need.SEARCH, "the state directory")


def check_runner(echo: Echo, runner: Path, name: str, user: str | None, group: str | None,
                 root: Path, *, warn_missing_user: bool = True) -> None:
    """For `microvm create` and `update`: a UsageError (exit 2) when `user` (Group=`group`)
    cannot run `runner` as microvm@`name`.service in state directory `root` would; a warning
    when that cannot be told (no such user yet, unless not `warn_missing_user`). Nothing is
    written."""
    if user is None:
        return  # no user to run it as (the Python API's choice)
    try:
        acct, note = account(user, group)
    except HostError as e:
        if warn_missing_user:
            echo(f"warning: {e} (microvm@.service runs VMs as it): not checking that it can " +
                 f"run {runner}")
        else:
            log.debug("%s: not checking that it can run %s", e, runner)
        return
    if note:
        echo(f"warning: {note}")
    if not can_probe(acct):
        return  # only root sets up VMs for systemd (and could hand them to another user)
    try:
        found = runner_problem(acct, Runner(runner), name, runner, [state_request(root)])
    except (MicrovmError, OSError) as e:
        echo(f"warning: cannot check that {user} can run {runner}: {e}")
        return
    if found is not None:
        detail, how = found
        raise UsageError(f"{detail}; fix: {how}")


def check_vm_runner(echo: Echo, vm: VMDir, runner: Path) -> None:
    """check_runner for an existing VM (`microvm update`), as the user it runs as (account).
    No warning when that user does not exist: `create` gave it, and doctor reports it."""
    user, group = vm.account()
    check_runner(echo, runner, vm.name, user, group, vm.root, warn_missing_user=False)


def device_problem(acct: Account, device: str) -> tuple[str, str] | None:
    """(why, fix) when `acct` cannot open `device` read-write; None when it can (or the
    device does not exist)."""
    denials = probe(acct, [Request(device, Need.OPEN, device)])
    if not denials:
        return None
    d = denials[0]
    mode = _mode(d.at)
    where = "" if d.at == device else f" ({d.need.verb} {d.at})"
    refused = d.error in (os.strerror(errno.EACCES), os.strerror(errno.EPERM))
    return (f"{d.error}{where}{f' ({mode})' if mode else ''}",
            fix(d.at, d.need, acct) if refused else "")
