"""The one module that starts other programs. Everything else calls these functions.

argv is always a list (never a shell string); each call is logged as `+ shlex.join(argv)` at
debug level before it runs. A program that cannot be started becomes a `ProcessError` naming
it; a program that fails (with `check=True`) becomes a `ProcessError` carrying its exit code.

Children get an environment allow-list, not ours (child_env): the variables below, plus what the
caller adds (extra_env). The children are nix (build, eval, diff-closures), microvm-prefetch-git
(git), systemctl, systemd-sysusers and systemd-tmpfiles (`host install`), the runner's scripts
(bash: microvm-run, microvm-shutdown, microvm-balloon, tap-down, ...) and through them the
hypervisor, virtiofsd, ip and curl, and ssh and socat for `microvm ssh` and `microvm console`.
Everything else stays behind, above all what changes how a program or a bash script runs:
LD_PRELOAD, LD_LIBRARY_PATH, BASH_ENV, ENV, SHELLOPTS, BASHOPTS, exported bash functions
(BASH_FUNC_*), PYTHON*, IFS, CDPATH.

    PATH HOME USER LOGNAME SHELL TMPDIR      where programs, the user's files and temporaries are
    LANG LANGUAGE LC_* TZ TERM COLORTERM NO_COLOR   locale, time zone, the terminal
    MICROVM_ACCEL MICROVM_CONSOLE MICROVM_VIRTIOFSD MICROVM_SHUTDOWN_TIMEOUT
                                             the runner's settings (its microvm-run and
                                             microvm-shutdown read them; RUNNER_ENV)
    NIX_* SSL_CERT_FILE SSL_CERT_DIR CURL_CA_BUNDLE   nix (NIX_PATH, NIX_CONFIG, NIX_REMOTE,
                                             NIX_SSL_CERT_FILE, ...) and TLS for nix, git, curl
    XDG_CACHE_HOME XDG_CONFIG_HOME XDG_DATA_HOME XDG_STATE_HOME XDG_RUNTIME_DIR
                                             nix's cache and configuration; graphics
    http_proxy https_proxy ftp_proxy all_proxy no_proxy (and upper case)   nix, git, curl
    GIT_*                                    git, run by microvm-prefetch-git (GIT_SSH_COMMAND...)
    SSH_AUTH_SOCK SSH_ASKPASS SSH_ASKPASS_REQUIRE   ssh, and git over ssh
    DISPLAY WAYLAND_DISPLAY XAUTHORITY DBUS_SESSION_BUS_ADDRESS   a hypervisor's window
                                             (microvm.graphics) and ssh's X11 forwarding
    SYSTEMD_*                                systemctl (SYSTEMD_PAGER, SYSTEMD_COLORS, ...)
    RUST_LOG RUST_BACKTRACE                  logging of the Rust hypervisors and virtiofsd

`run(..., as_user=Identity(uid, gid, groups))` starts the program with another user's uid, gid
and supplementary groups (set in the child between fork and exec, so only when we are root):
host/access.py runs its probe that way, to ask the kernel what the VM's user may do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from .errors import ProcessError

log = logging.getLogger(__name__)

Argv = Sequence[str | os.PathLike[str]]


@dataclass(frozen=True)
class Identity:
    """Who a child runs as: uid, primary gid and the supplementary groups (replacing ours)."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def _strs(argv: Argv) -> list[str]:
    return [os.fspath(a) for a in argv]


def _log(argv: list[str], cwd: Path | None, who: Identity | None = None) -> None:
    as_user = f"   (as uid {who.uid}, gid {who.gid}, groups {list(who.groups)})" if who else ""
    log.debug("+ %s%s%s", shlex.join(argv), f"   (in {cwd})" if cwd else "", as_user)


# the runner's settings a user may give `microvm run` (and `shutdown`) for its scripts to read:
# the only MICROVM_* variables a child needs (the tool's own, such as MICROVM_STATE_DIR, are
# read by this process and stay here)
RUNNER_ENV = ("MICROVM_ACCEL", "MICROVM_CONSOLE", "MICROVM_VIRTIOFSD", "MICROVM_SHUTDOWN_TIMEOUT")
# the environment children get (module docstring); names, then prefixes
ALLOWED_ENV = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR",
    "LANG", "LANGUAGE", "TZ", "TERM", "COLORTERM", "NO_COLOR",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE",
    "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR",
    *(f"{p}_proxy" for p in ("http", "https", "ftp", "all", "no")),
    *(f"{p}_PROXY" for p in ("HTTP", "HTTPS", "FTP", "ALL", "NO")),
    "SSH_AUTH_SOCK", "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE",
    "DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY", "DBUS_SESSION_BUS_ADDRESS",
    "RUST_LOG", "RUST_BACKTRACE",
    *RUNNER_ENV,
})
ALLOWED_ENV_PREFIXES = ("LC_", "NIX_", "GIT_", "SYSTEMD_")


def allowed_env(name: str) -> bool:
    """May a child inherit the variable `name` (ALLOWED_ENV, ALLOWED_ENV_PREFIXES)?"""
    return name in ALLOWED_ENV or name.startswith(ALLOWED_ENV_PREFIXES)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: ours, through the allow-list, plus `extra` (set by the
    caller, so not filtered)."""
    env = {k: v for k, v in os.environ.items() if allowed_env(k)}
    env.update(extra or {})
    return env


def run(argv: Argv, *, cwd: Path | None = None, extra_env: Mapping[str, str] | None = None,
        check: bool = True, capture: bool = True,
        input: str | None = None, timeout: float | None = None,
        as_user: Identity | None = None) -> Result:
    """Run argv to completion. capture=False lets the child write to our stdout/stderr;
    as_user runs it with that identity (we must be root)."""
    args = _strs(argv)
    _log(args, cwd, as_user)
    try:
        p = subprocess.run(
            args, cwd=cwd, env=child_env(extra_env), input=input, text=True,
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None, timeout=timeout, check=False,
            user=as_user.uid if as_user else None, group=as_user.gid if as_user else None,
            extra_groups=list(as_user.groups) if as_user else None)
    except FileNotFoundError:
        raise ProcessError(f"{args[0]}: command not found (is it installed and on PATH?)",
                           127) from None
    except PermissionError as e:
        raise ProcessError(f"{args[0]}: cannot execute: {e.strerror}", 126) from None
    except subprocess.TimeoutExpired:
        raise ProcessError(f"{args[0]} did not finish within {timeout} s") from None
    result = Result(p.returncode, p.stdout or "", p.stderr or "")
    if check and p.returncode != 0:
        detail = result.stderr.strip().splitlines()
        tail = f": {detail[-1]}" if detail else ""
        raise ProcessError(f"{shlex.join(args[:3])}{' ...' if len(args) > 3 else ''} failed " +
                           f"with exit code {p.returncode}{tail}", p.returncode,
                           result.stdout + result.stderr)
    return result


def spawn(argv: Argv, *, cwd: Path | None = None,
          extra_env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start argv in the background with our stdio; the caller waits or terminates it."""
    args = _strs(argv)
    _log(args, cwd)
    try:
        return subprocess.Popen(args, cwd=cwd, env=child_env(extra_env))
    except FileNotFoundError:
        raise ProcessError(f"{args[0]}: command not found (is it installed and on PATH?)",
                           127) from None
    except PermissionError as e:
        raise ProcessError(f"{args[0]}: cannot execute: {e.strerror}", 126) from None


def terminate(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after `timeout` seconds; returns the exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    return proc.wait()


@contextlib.contextmanager
def forwarding_signals(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP sent to us go to proc, and SIGINT is left to the
    terminal (it reaches the child, which shares our process group)."""

    def forward(signum: int, frame: FrameType | None) -> None:
        del frame
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
    old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def wait(proc: subprocess.Popen[bytes]) -> int:
    """Wait for proc, passing SIGTERM/SIGHUP on (see forwarding_signals); its exit status, with
    death by signal N reported as 128+N like a shell does."""
    with forwarding_signals(proc):
        code = proc.wait()
    return 128 - code if code < 0 else code


def exec_(argv: Argv, *, cwd: Path | None = None,
          extra_env: Mapping[str, str] | None = None) -> None:
    """Replace this process with argv (interactive tools: ssh, socat on a terminal)."""
    args = _strs(argv)
    _log(args, cwd)
    if cwd is not None:
        os.chdir(cwd)
    try:
        os.execvpe(args[0], args, child_env(extra_env))
    except FileNotFoundError:
        raise ProcessError(f"{args[0]}: command not found (is it installed and on PATH?)",
                           127) from None
    except PermissionError as e:
        raise ProcessError(f"{args[0]}: cannot execute: {e.strerror}", 126) from None
