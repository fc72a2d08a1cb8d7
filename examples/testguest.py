#!/usr/bin/env python3
"""Build a bootable test guest: Debian's generic kernel plus a busybox initramfs.

The kernel comes from Debian's ``linux-image-amd64`` (resolved through apt, never hard-coded),
is unpacked once into a cache and pre-decompressed to an uncompressed ELF ``vmlinux``, which
QEMU boots directly through PVH (no in-guest xz decompression, which costs seconds under TCG).

The initramfs is written in pure Python (cpio "newc" + gzip, byte-for-byte deterministic). Its
``/init`` is a shell PRELUDE (mounts, busybox applets, module loading, helper functions)
followed by the caller's script.

Used two ways:

* as a module by the tests (``sys.path.insert(0, "examples"); import testguest``);
* as a script: ``python3 examples/testguest.py --out DIR`` writes ``DIR/vmlinux`` and
  ``DIR/initrd.gz`` and prints ``{"kernel": ..., "initrd": ..., "version": ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import gzip
import io
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BUSYBOX",
    "CACHE_ENV",
    "DEFAULT_CMDLINE",
    "DEFAULT_MODULES",
    "EXAMPLE_SCRIPT",
    "PRELUDE",
    "GuestBuildError",
    "Kernel",
    "build_initramfs",
    "cache_dir",
    "init_script",
    "kernel",
    "main",
    "modinfo",
    "resolve_modules",
]

DEFAULT_CMDLINE = "console=ttyS0 reboot=t panic=-1 quiet tsc_early_khz=2000000"
"""Kernel command line that works for these guests under QEMU TCG.

* ``console=ttyS0``: the console is the first serial port (QEMU's stdout with ``-nographic``).
* ``reboot=t panic=-1``: a panic reboots at once; with QEMU's ``-no-reboot`` it then exits
  instead of hanging.
* ``quiet``: keeps the console to the test's own output.
* ``tsc_early_khz=2000000``: required for the generic kernel on ``-M microvm`` under TCG,
  where TSC calibration otherwise hangs (no HPET/PM timer); harmless on ``pc``/``q35``.

``-M microvm`` also needs ``acpi=on`` so the virtio-mmio devices are found (the kernel lacks
VIRTIO_MMIO_CMDLINE_DEVICES). The caller decides on the command line; this is only the hint.
"""

DEFAULT_MODULES: tuple[str, ...] = (
    "virtio_pci",
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "virtio_balloon",
    "virtio_rng",
    "ext4",
    "crc32c_generic",  # ext4 needs it at mount time, but it is no modinfo dependency
    "erofs",
    "squashfs",
    "overlay",
    "9p",
    "9pnet_virtio",
    "virtiofs",
    "evdev",
    "button",
)
"""Modules loaded by default; dependencies are added by :func:`resolve_modules`."""

BUSYBOX = Path("/bin/busybox")
"""The statically linked busybox from Debian's ``busybox-static``."""

CACHE_ENV = "MICROVM_TEST_CACHE"
_META_PACKAGE = "linux-image-amd64"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_KERNEL_PREFIX = "kernel-"
_TMP_PREFIX = ".tmp-"
_APT_ENV = {"LC_ALL": "C", "LANG": "C", "DEBIAN_FRONTEND": "noninteractive"}


class GuestBuildError(RuntimeError):
    """Building the guest failed for a reason outside this code (apt, network, packages)."""


@dataclass(frozen=True)
class Kernel:
    """An unpacked kernel in the cache."""

    vmlinux: Path
    """Uncompressed ELF kernel, bootable with QEMU ``-kernel`` (PVH)."""
    modules: Path
    """The ``lib/modules/<version>`` directory (holds ``kernel/`` with the ``.ko`` files)."""
    version: str
    """Kernel release, e.g. ``6.1.0-56-amd64``."""

    @property
    def config(self) -> Path:
        """The kernel's build configuration (``boot/config-<version>``)."""
        return self.vmlinux.parent / "config"


# --------------------------------------------------------------------------------------------
# Kernel cache


def cache_dir(cache: Path | None = None) -> Path:
    """Return the cache directory: ``cache``, else ``$MICROVM_TEST_CACHE``, else ~/.cache."""
    if cache is not None:
        return Path(cache)
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path.home() / ".cache" / "microvm-testguest"


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[.-]", version)
    )


def _cached_kernel(cache: Path) -> Kernel | None:
    """Return the newest complete kernel in ``cache`` (published dirs are always complete)."""
    found: list[Kernel] = []
    if not cache.is_dir():
        return None
    for entry in cache.iterdir():
        if not entry.name.startswith(_KERNEL_PREFIX):
            continue
        version = entry.name[len(_KERNEL_PREFIX) :]
        vmlinux = entry / "vmlinux"
        modules = entry / "lib" / "modules" / version
        if vmlinux.is_file() and modules.is_dir():
            found.append(Kernel(vmlinux=vmlinux, modules=modules, version=version))
    if not found:
        return None
    return max(found, key=lambda k: _version_key(k.version))


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _run(argv: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a host tool, turning a missing tool into :class:`GuestBuildError`."""
    try:
        return subprocess.run(
            list(argv),
            cwd=cwd,
            env={**os.environ, **_APT_ENV},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise GuestBuildError(f"{argv[0]} is not available ({exc.strerror})") from exc


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _resolve_package() -> str:
    """Return the generic kernel package that ``linux-image-amd64`` depends on."""
    updated = False
    while True:
        proc = _run(["apt-cache", "depends", _META_PACKAGE])
        match = re.search(r"^\s*Depends:\s*(linux-image-\S+)", proc.stdout, re.MULTILINE)
        if proc.returncode == 0 and match:
            return match.group(1)
        if updated:
            reason = _last_line(proc.stderr or proc.stdout)
            raise GuestBuildError(f"apt-cache depends {_META_PACKAGE}: no kernel package: {reason}")
        # The package lists are missing or stale: refresh them once.
        update = _run(["apt-get", "update"])
        if update.returncode != 0:
            raise GuestBuildError(f"apt-get update failed: {_last_line(update.stderr)}")
        updated = True


def _decompress_vmlinuz(vmlinuz: Path) -> bytes:
    """Extract the uncompressed ELF kernel from an xz-compressed bzImage."""
    data = vmlinuz.read_bytes()
    offset = data.find(_XZ_MAGIC)
    while offset >= 0:
        try:
            payload = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[offset:])
        except lzma.LZMAError:
            payload = b""
        if payload.startswith(b"\x7fELF"):
            return payload
        offset = data.find(_XZ_MAGIC, offset + 1)
    raise GuestBuildError(f"{vmlinuz.name}: no xz-compressed ELF kernel inside")


def _download_kernel(work: Path) -> Path:
    """Download and unpack the kernel in ``work``; return the directory to publish."""
    package = _resolve_package()
    print(f"testguest: downloading {package}", file=sys.stderr)
    proc = _run(["apt-get", "download", package], cwd=work)
    debs = sorted(work.glob("*.deb"))
    if proc.returncode != 0 or len(debs) != 1:
        raise GuestBuildError(f"apt-get download {package} failed: {_last_line(proc.stderr)}")
    root = work / "root"
    proc = _run(["dpkg", "-x", str(debs[0]), str(root)])
    if proc.returncode != 0:
        raise GuestBuildError(f"dpkg -x {debs[0].name} failed: {_last_line(proc.stderr)}")
    debs[0].unlink()

    vmlinuzes = sorted((root / "boot").glob("vmlinuz-*"))
    if len(vmlinuzes) != 1:
        raise GuestBuildError(f"{package}: expected one boot/vmlinuz-*, found {len(vmlinuzes)}")
    version = vmlinuzes[0].name[len("vmlinuz-") :]
    for base in (root / "lib" / "modules", root / "usr" / "lib" / "modules"):
        if (base / version / "kernel").is_dir():
            src_modules = base / version
            break
    else:
        raise GuestBuildError(f"{package}: no lib/modules/{version}/kernel directory")

    out = work / (_KERNEL_PREFIX + version)
    modules = out / "lib" / "modules" / version
    modules.mkdir(parents=True)
    (out / "vmlinux").write_bytes(_decompress_vmlinuz(vmlinuzes[0]))
    config = root / "boot" / f"config-{version}"
    if config.is_file():
        os.rename(config, out / "config")
    os.rename(src_modules / "kernel", modules / "kernel")
    for name in ("modules.builtin", "modules.order"):
        if (src_modules / name).is_file():
            os.rename(src_modules / name, modules / name)
    shutil.rmtree(root)
    return out


def kernel(cache: Path | None = None) -> Kernel:
    """Return the cached generic Debian kernel, downloading and unpacking it on first use.

    The cache is ``cache``, else ``$MICROVM_TEST_CACHE``, else ``~/.cache/microvm-testguest``.
    A cache hit runs no apt command. A download is serialised with ``flock`` on
    ``<cache>/.lock``, built in a temporary directory inside the cache and published with
    one ``rename``, so an interrupted run never leaves a partial kernel behind.

    Raises :class:`GuestBuildError` when apt, the network or dpkg are unavailable.
    """
    root = cache_dir(cache)
    found = _cached_kernel(root)
    if found is not None:
        return found
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GuestBuildError(f"cannot create cache {root}: {exc.strerror}") from exc
    with _locked(root / ".lock"):
        found = _cached_kernel(root)  # another process may have finished meanwhile
        if found is not None:
            return found
        for stale in root.glob(_TMP_PREFIX + "*"):  # left by an interrupted run
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root))
        try:
            built = _download_kernel(work)
            os.rename(built, root / built.name)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    found = _cached_kernel(root)
    if found is None:  # pragma: no cover - rename succeeded, so this cannot happen
        raise GuestBuildError(f"kernel vanished from {root}")
    return found


# --------------------------------------------------------------------------------------------
# Modules


def _norm(name: str) -> str:
    return name.replace("-", "_")


def modinfo(ko: Path) -> dict[str, str]:
    """Read the ``.modinfo`` section of a kernel module (ELF64 little-endian).

    Repeated keys (``alias=``, ``parm=``...) keep their last value; ``depends`` is single.
    """
    data = ko.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise GuestBuildError(f"{ko}: not an ELF64 little-endian module")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        base = shoff + index * shentsize
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data, base)
        return name, offset, size

    _, str_off, str_size = section(shstrndx)
    strtab = data[str_off : str_off + str_size]
    info: dict[str, str] = {}
    for index in range(shnum):
        name_off, offset, size = section(index)
        if strtab[name_off : strtab.index(b"\0", name_off)] != b".modinfo":
            continue
        for raw in data[offset : offset + size].split(b"\0"):
            key, sep, value = raw.decode("utf-8", "replace").partition("=")
            if sep:
                info[key] = value
        break
    return info


@functools.lru_cache(maxsize=8)
def _module_index(modules: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for ko in sorted((modules / "kernel").rglob("*.ko")):
        index.setdefault(_norm(ko.name[: -len(".ko")]), ko)
    return index


@functools.lru_cache(maxsize=8)
def _builtin_names(modules: Path) -> frozenset[str] | None:
    listing = modules / "modules.builtin"
    if not listing.is_file():
        return None
    names = set()
    for line in listing.read_text().splitlines():
        base = line.strip().rsplit("/", 1)[-1]
        if base.endswith(".ko"):
            names.add(_norm(base[: -len(".ko")]))
    return frozenset(names)


def resolve_modules(kernel: Kernel, names: Sequence[str]) -> list[Path]:
    """Return the ``.ko`` files for ``names`` and their dependencies, in load order.

    Dependencies come from each module's ``.modinfo`` ``depends=`` field and are visited
    depth-first in post-order, so every module follows what it needs. ``-`` and ``_`` are
    equivalent. A name without a ``.ko`` is taken as built into the kernel and skipped; a
    *requested* name that is neither a ``.ko`` nor listed in ``modules.builtin`` (when the
    package ships that list) raises :class:`GuestBuildError`.
    """
    index = _module_index(kernel.modules)
    builtin = _builtin_names(kernel.modules)
    missing = [
        name
        for name in names
        if _norm(name) not in index and builtin is not None and _norm(name) not in builtin
    ]
    if missing:
        names_text = ", ".join(missing)
        raise GuestBuildError(
            f"kernel {kernel.version} has no module(s) {names_text} (neither a .ko nor built in)"
        )
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        key = _norm(name)
        if key in seen:
            return
        seen.add(key)
        ko = index.get(key)
        if ko is None:  # built in
            return
        for dep in modinfo(ko).get("depends", "").split(","):
            if dep.strip():
                visit(dep.strip())
        order.append(ko)

    for name in names:
        visit(name)
    return order


# --------------------------------------------------------------------------------------------
# initramfs

PRELUDE = r"""#!/bin/sh
# /init generated by testguest.py: prelude, then the test script.
export PATH=/bin HOME=/ TERM=linux
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin

# _ko NAME FILE: insmod unless already loaded (or built in).
_ko() {
    [ -d "/sys/module/$1" ] && return 0
    insmod "/lib/modules/$2" || echo "testguest: insmod $2 failed" >&2
}
@MODULES@
# param NAME: print VALUE of the kernel command line word NAME=VALUE.
param() {
    for _w in $(cat /proc/cmdline); do
        case "$_w" in "$1"=*) echo "${_w#*=}"; return 0 ;; esac
    done
    return 1
}

# disk_by_serial SERIAL: print /dev/vdX whose virtio serial is SERIAL.
disk_by_serial() {
    for _b in /sys/block/vd*; do
        [ -r "$_b/serial" ] || continue
        if [ "$(cat "$_b/serial")" = "$1" ]; then echo "/dev/${_b##*/}"; return 0; fi
    done
    return 1
}

# power_button: power off (poweroff -f) on any event of the ACPI "Power Button"
# input device(s), so QMP system_powerdown ends the guest (pc, q35, microvm acpi=on).
power_button() {
    _found=
    for _e in /sys/class/input/event*; do
        [ -r "$_e/device/name" ] || continue
        [ "$(cat "$_e/device/name")" = "Power Button" ] || continue
        _found=1
        (dd if="/dev/input/${_e##*/}" of=/dev/null bs=192 count=1 2>/dev/null && poweroff -f) &
    done
    [ -n "$_found" ] || { echo "testguest: no Power Button input device" >&2; return 1; }
    sleep 0.3  # let the readers open their devices before anyone presses the button
}

# net_up [IFACE]: configure IFACE (default eth0) from e2e.ip=ADDR/LEN [e2e.gw=GATEWAY].
net_up() {
    _ip=$(param e2e.ip) || return 0
    ip link set lo up
    ip link set "${1:-eth0}" up
    ip addr add "$_ip" dev "${1:-eth0}"
    if _gw=$(param e2e.gw); then ip route add default via "$_gw"; fi
}

# ---- test script ----
"""
"""Start of every ``/init``; ``@MODULES@`` becomes one ``_ko NAME FILE`` line per module."""

_EPILOGUE = """
# ---- end of test script ----
poweroff -f
"""

EXAMPLE_SCRIPT = r"""power_button
net_up
if dev=$(disk_by_serial data); then
    mkdir -p /mnt/data && mount "$dev" /mnt/data && echo "testguest: $dev on /mnt/data"
fi
echo MICROVM-EXAMPLE-READY
if [ -t 0 ] && [ "$(param e2e.shell)" != 0 ]; then
    setsid cttyhack sh
else
    while :; do sleep 3600; done  # until the power button
fi
"""
"""Default script of the CLI. The console is always a tty inside the guest, so a shell runs
unless the kernel command line has ``e2e.shell=0``; the power button works either way."""

_DIRS = ("bin", "dev", "etc", "lib", "lib/modules", "mnt", "proc", "root", "run", "sys", "tmp")


def _is_static_elf(path: Path) -> bool:
    """True if ``path`` is an ELF64 executable without a PT_INTERP (dynamic loader) header."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for index in range(phnum):
        (p_type,) = struct.unpack_from("<I", data, phoff + index * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def _cpio_entry(
    out: io.BytesIO, ino: int, name: str, mode: int, data: bytes = b"", rdev: int = 0
) -> None:
    encoded = name.encode() + b"\0"
    fields = (
        ino,
        mode,
        0,  # uid
        0,  # gid
        2 if mode & 0o170000 == 0o040000 else 1,  # nlink
        0,  # mtime
        len(data),
        0,  # devmajor
        0,  # devminor
        rdev >> 8,
        rdev & 0xFF,
        len(encoded),
        0,  # check
    )
    out.write(b"070701" + b"".join(b"%08X" % field for field in fields) + encoded)
    out.write(b"\0" * (-out.tell() % 4))
    out.write(data)
    out.write(b"\0" * (-out.tell() % 4))


def _cpio(entries: Mapping[str, tuple[int, bytes, int]]) -> bytes:
    """Serialise ``{path: (mode, data, rdev)}`` as a cpio newc archive, parents first."""
    out = io.BytesIO()
    for ino, name in enumerate(sorted(entries, key=lambda p: p.split("/")), start=1):
        mode, data, rdev = entries[name]
        _cpio_entry(out, ino, name, mode, data, rdev)
    _cpio_entry(out, 0, "TRAILER!!!", 0)
    return out.getvalue()


def _add_parents(entries: dict[str, tuple[int, bytes, int]], path: str) -> None:
    parts = path.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        entries.setdefault("/".join(parts[:depth]), (0o040755, b"", 0))


def _member_path(path: str) -> str:
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"bad initramfs path: {path!r}")
    return "/".join(parts)


def init_script(kernel: Kernel, script: str, modules: Sequence[str] = DEFAULT_MODULES) -> str:
    """Return the text of ``/init``: the prelude (loading ``modules``) and then ``script``."""
    loads = []
    for ko in resolve_modules(kernel, modules):
        name = _norm(modinfo(ko).get("name") or ko.name[: -len(".ko")])
        loads.append(f"_ko {name} {ko.name}\n")
    return PRELUDE.replace("@MODULES@", "".join(loads)) + script.rstrip("\n") + "\n" + _EPILOGUE


def build_initramfs(
    kernel: Kernel,
    out: Path,
    script: str,
    modules: Sequence[str] = DEFAULT_MODULES,
    files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write a gzip'd cpio initramfs to ``out`` and return ``out``.

    It holds the base directories, ``/dev/console``, static ``/bin/busybox`` with ``/bin/sh``
    linking to it, the resolved ``modules`` (flat under ``/lib/modules``) and an executable
    ``/init`` (the prelude, then ``script``; a script that returns powers the guest off).
    ``files`` adds extra files (``{"/etc/motd": b"..."}``); data starting with ``#!`` is
    made executable. The output is deterministic: same inputs, same bytes.
    """
    if not BUSYBOX.is_file() or not _is_static_elf(BUSYBOX):
        raise GuestBuildError(f"{BUSYBOX} is missing or not static: install busybox-static")
    entries: dict[str, tuple[int, bytes, int]] = {d: (0o040755, b"", 0) for d in _DIRS}
    entries["dev/console"] = (0o020600, b"", (5 << 8) | 1)
    entries["bin/busybox"] = (0o100755, BUSYBOX.read_bytes(), 0)
    entries["bin/sh"] = (0o120777, b"busybox", 0)
    for ko in resolve_modules(kernel, modules):
        entries[f"lib/modules/{ko.name}"] = (0o100644, ko.read_bytes(), 0)
    entries["init"] = (0o100755, init_script(kernel, script, modules).encode(), 0)
    for path, data in (files or {}).items():
        member = _member_path(path)
        _add_parents(entries, member)
        entries[member] = (0o100755 if data.startswith(b"#!") else 0o100644, bytes(data), 0)

    blob = gzip.compress(_cpio(entries), compresslevel=6, mtime=0)
    out = Path(out)
    partial = out.with_name(out.name + ".part")
    partial.write_bytes(blob)
    os.replace(partial, out)
    return out


# --------------------------------------------------------------------------------------------
# CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build (or reuse) a test kernel and write DIR/vmlinux and DIR/initrd.gz."
    )
    parser.add_argument(
        "--cache",
        type=Path,
        help=f"kernel cache (default: ${CACHE_ENV} or ~/.cache/microvm-testguest)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--script", type=Path, help="shell script to run after the prelude")
    args = parser.parse_args(argv)
    try:
        script = args.script.read_text() if args.script else EXAMPLE_SCRIPT
        kern = kernel(args.cache)
        args.out.mkdir(parents=True, exist_ok=True)
        vmlinux = args.out / "vmlinux"
        if vmlinux.is_symlink() or vmlinux.exists():
            vmlinux.unlink()
        vmlinux.symlink_to(kern.vmlinux.resolve())
        initrd = build_initramfs(kern, args.out / "initrd.gz", script)
    except (GuestBuildError, OSError) as exc:
        print(f"testguest: error: {exc}", file=sys.stderr)
        return 2
    result = {"kernel": str(vmlinux), "initrd": str(initrd), "version": kern.version}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
