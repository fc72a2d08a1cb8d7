"""A real host for the host tests: Debian 12 with systemd as PID 1, in a container.

The root is made by `debootstrap` once and cached (`$MICROVM_TEST_CACHE` or
~/.cache/microvm-testguest, `hostroot-<key>`); each `Host` boots it with `systemd-nspawn
--boot` on an overlay of its own (the cached root stays untouched), in a private network
namespace, and is driven with `nsenter` (systemctl, journalctl, microvm). The project is
installed into it the way docs/host.md tells a Debian user: a wheel built from this checkout
into a virtual environment at /opt/microvm, then `microvm host install`. The wheel's
dependencies come from a wheelhouse `pip download` fills once (the container has no network).

A reboot keeps the overlay (`Host.reboot`), so what a host keeps across boots is tested too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from support import REPO, vmtest

SUITE = "bookworm"
# what a Debian host needs to run the test VMs (QEMU, its C virtiofsd in qemu-system-common,
# ip, socat for the control scripts, mkfs.ext4 for volumes), to make declared networks (nft,
# dnsmasq) and to install the package
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "qemu-system-x86",
            "qemu-utils", "iproute2", "socat", "e2fsprogs", "kmod", "procps", "util-linux",
            "nftables", "dnsmasq-base")
MIRROR_ENV = "MICROVM_TEST_DEBIAN_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# bump when the recipe below changes: a new key makes a new root
RECIPE = "1"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VENV = "/opt/microvm"
ASSETS = "/srv/assets"  # the per-host directory of test files (kernel, initrds), read-only
DEPENDENCIES = ("click>=8.1", "jinja2>=3.1", "jsonschema>=4.18")


TUN_MODE_UNIT = """[Unit]
Description=/dev/net/tun 0666, as udev makes it on a host
DefaultDependencies=no
Before=sysinit.target

[Service]
Type=oneshot
ExecStart=chmod 0666 /dev/net/tun
"""


class HostError(Exception):
    pass


def missing_tools() -> list[str]:
    return [t for t in ("debootstrap", "systemd-nspawn", "nsenter") if shutil.which(t) is None]


def _cache() -> Path:
    return vmtest.testguest.cache_dir()


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def root() -> Path:
    """The cached Debian root (made once; a partial one is never used)."""
    mirror = os.environ.get(MIRROR_ENV, DEFAULT_MIRROR)
    out = _cache() / f"hostroot-{_key(RECIPE, SUITE, *PACKAGES)}"
    with vmtest.locked(_cache() / ".hostroot.lock"):
        if (out / ".complete").exists():
            return out
        tmp = out.with_name(out.name + ".new")
        if tmp.exists():
            shutil.rmtree(tmp)
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
               str(tmp), mirror]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        if p.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise HostError(f"debootstrap failed ({p.returncode}):\n{p.stdout[-3000:]}\n" +
                            p.stderr[-3000:])
        # a persistent journal (the tests read the previous boot's), a name, no machine-id (a
        # new one every first boot of an overlay)
        (tmp / "var/log/journal").mkdir(parents=True, exist_ok=True)
        (tmp / "etc/hostname").write_text("microvm-host\n")
        (tmp / "etc/machine-id").write_text("")
        (tmp / ".complete").write_text("")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    return out


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", *args],
                   check=True, timeout=600, capture_output=True, text=True)


def wheelhouse(work: Path) -> Path:
    """A directory with this checkout's wheel and its dependencies' wheels."""
    deps = _cache() / f"wheelhouse-{_key(sys.version, *DEPENDENCIES)}"
    with vmtest.locked(_cache() / ".wheelhouse.lock"):
        if not (deps / ".complete").exists():
            shutil.rmtree(deps, ignore_errors=True)
            _pip("download", "--only-binary=:all:", "-d", str(deps), *DEPENDENCIES)
            (deps / ".complete").write_text("")
    out = work / "wheels"
    out.mkdir(parents=True, exist_ok=True)
    for whl in deps.glob("*.whl"):
        shutil.copy2(whl, out / whl.name)
    # the package itself, built from this checkout as `pip wheel` builds it for a user
    _pip("wheel", "--no-deps", "-w", str(out), str(REPO))
    return out


class Host:
    """One container booted from the cached root with an overlay of its own in `work`."""

    def __init__(self, work: Path, base: Path, name: str = "microvm-host",
                 binds: Mapping[str, Path] | None = None) -> None:
        self.work = work
        self.base = base
        self.name = name
        self.binds = dict(binds or {})
        self.merged = work / "merged"
        self.proc: subprocess.Popen[bytes] | None = None
        self.boots = 0
        for d in ("upper", "ovl-work", "merged"):
            (work / d).mkdir(parents=True, exist_ok=True)
        self._mount()

    def _mount(self) -> None:
        work, base = self.work, self.base
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={base},upperdir={work / 'upper'},workdir={work / 'ovl-work'}",
                        str(self.merged)], check=True)
        # /dev/net/tun as udev leaves it on a Debian host (0666: its 50-udev-default.rules); a
        # container has no udev, and systemd-nspawn makes the node 0600
        unit = self.path("/etc/systemd/system/test-tun-mode.service")
        unit.parent.mkdir(parents=True, exist_ok=True)
        unit.write_text(TUN_MODE_UNIT)
        wants = self.path("/etc/systemd/system/sysinit.target.wants")
        wants.mkdir(parents=True, exist_ok=True)
        if not (wants / unit.name).is_symlink():
            (wants / unit.name).symlink_to(f"../{unit.name}")

    # -- lifecycle -------------------------------------------------------------------------
    def boot(self, timeout: float = 120.0) -> None:
        assert self.proc is None or self.proc.poll() is not None
        argv = ["systemd-nspawn", "--quiet", "--boot", "--register=no", "--keep-unit",
                "--private-network", f"--machine={self.name}", "-D", str(self.merged),
                "--console=read-only"]
        for inside, outside in self.binds.items():
            argv.append(f"--bind-ro={outside}:{inside}")
        log = (self.work / f"console-{self.boots}.log").open("wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.boots += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HostError(f"systemd-nspawn exited ({self.proc.returncode}):\n"
                                + self.console()[-3000:])
            if self._leader() is not None:
                p = self.run("systemctl", "is-system-running", "--wait", check=False,
                             timeout=max(1.0, deadline - time.monotonic()))
                if p.stdout.strip() in ("running", "degraded"):
                    return
            time.sleep(0.2)
        raise HostError("the container did not finish booting:\n" + self.console()[-3000:])

    def console(self) -> str:
        return "".join(p.read_text("utf-8", "replace")
                       for p in sorted(self.work.glob("console-*.log")))

    def _leader(self) -> int | None:
        """PID (here) of the container's PID 1: the first child of systemd-nspawn named
        systemd."""
        if self.proc is None:
            return None
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            for c in children:
                try:
                    if Path(f"/proc/{c}/comm").read_text().strip() == "systemd":
                        return int(c)
                except OSError:
                    continue
                todo.append(int(c))
        return None

    def wait_stopped(self, timeout: float = 120.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def poweroff(self, timeout: float = 120.0) -> int:
        """`systemctl poweroff` inside; the exit code of systemd-nspawn."""
        self.run("systemctl", "--no-block", "poweroff", check=False)
        return self.wait_stopped(timeout)

    def reboot(self, timeout: float = 120.0) -> None:
        """A clean reboot: everything stops as on a real host, the overlay is kept."""
        rc = self.poweroff(timeout)
        if rc != 0:
            raise HostError(f"systemd-nspawn exited with {rc} at power-off:\n"
                            + self.console()[-3000:])
        self.boot(timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # SIGTERM makes systemd-nspawn power the container off cleanly
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        for _ in range(50):
            if subprocess.run(["umount", str(self.merged)], capture_output=True).returncode == 0:
                break
            if not os.path.ismount(self.merged):
                break
            time.sleep(0.2)

    # -- running things inside -------------------------------------------------------------
    def run(self, *argv: str | os.PathLike[str], check: bool = True, timeout: float = 120.0,
            env: Mapping[str, str] | None = None, input: str | None = None,
            user: str | None = None) -> subprocess.CompletedProcess[str]:
        leader = self._leader()
        if leader is None:
            raise HostError("the container is not running")
        full_env = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root", "TERM": "dumb",
                    **(env or {})}
        prefix = ["runuser", "-u", user, "--"] if user else []
        cmd = ["nsenter", "-t", str(leader), "-a", "--", "env", "-i",
               *(f"{k}={v}" for k, v in full_env.items()), *prefix, *map(str, argv)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise HostError(f"{' '.join(map(str, argv))} exited with {p.returncode}:\n" +
                            f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p

    def sh(self, script: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """`sh -euc SCRIPT` in the container; `kw` as for `run`."""
        return self.run("sh", "-euc", script, **kw)

    def path(self, inside: str) -> Path:
        """Where a file inside the container is, seen from here (through the overlay)."""
        return self.merged / inside.lstrip("/")

    def systemctl(self, *args: str, check: bool = True,
                  timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", *args, check=check, timeout=timeout)

    def prop(self, unit: str, name: str) -> str:
        return self.systemctl("show", "-P", name, unit).stdout.strip()

    def state(self, unit: str) -> str:
        return self.systemctl("is-active", unit, check=False).stdout.strip()

    def journal(self, *args: str) -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", *args, check=False).stdout

    def microvm(self, *args: str, check: bool = True,
                timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        return self.run("microvm", *args, check=check, timeout=timeout)

    def wait(self, what: str, predicate: Callable[[], bool], timeout: float = 90.0,
             interval: float = 0.2) -> None:
        """Wait until predicate() is true; fail naming `what`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(interval)
        if predicate():
            return
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def console_in_journal(self) -> None:
        """The guests' serial consoles on stdout, i.e. in the journal (a drop-in an
        administrator could write: MICROVM_CONSOLE empty). Before boot, or daemon-reload."""
        dropin = self.path("/etc/systemd/system/microvm@.service.d/50-test-console.conf")
        dropin.parent.mkdir(parents=True, exist_ok=True)
        dropin.write_text("[Service]\nEnvironment=MICROVM_CONSOLE=\n")

    # -- the project, installed as docs/host.md says ---------------------------------------
    def install(self, wheels: Path) -> None:
        shutil.copytree(wheels, self.path("/root/wheels"), dirs_exist_ok=True)
        self.run("python3", "-m", "venv", VENV)
        self.run(f"{VENV}/bin/pip", "install", "-q", "--disable-pip-version-check",
                 "--no-index", "--find-links", "/root/wheels", "microvm", timeout=300)
        self.run(f"{VENV}/bin/microvm", "host", "install")


def lines_with(text: str, marker: str) -> list[str]:
    return [line for line in text.splitlines() if marker in line]


def guest_assets(work: Path, script: str) -> Path:
    """work/assets with the test guest's kernel (vmlinux) and an initrd running `script`
    (initrd.gz); bound read-only at ASSETS inside a host."""
    kernel = vmtest.guest_kernel()
    assets = work / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    if kernel.vmlinux.stat().st_dev == assets.stat().st_dev:
        os.link(kernel.vmlinux, assets / "vmlinux")
    else:
        shutil.copyfile(kernel.vmlinux, assets / "vmlinux")
    vmtest.testguest.build_initramfs(kernel, assets / "initrd.gz", script)
    return assets


def installed_host(work: Path, script: str) -> Host:
    """A booted host with this checkout's wheel installed (`microvm host install`), its guests'
    consoles in the journal and the test guest (running `script`) at ASSETS. The caller
    closes it (and holds vmtest's boot lock while guests run)."""
    assets = guest_assets(work, script)
    wheels = wheelhouse(work)
    h = Host(work / "host", root(), binds={ASSETS: assets})
    try:
        h.console_in_journal()
        h.boot()
        h.install(wheels)
    except BaseException:
        h.close()
        raise
    return h
