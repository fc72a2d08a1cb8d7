"""Tests for examples/testguest.py: cpio/initramfs writer, module resolution, kernel cache.

Most tests use fabricated kernels (tiny ELF .ko files, fake apt/dpkg) and need no network.
Tests taking the ``real_kernel`` fixture use Debian's generic kernel, downloaded once into the
shared cache (``$MICROVM_TEST_CACHE`` or ~/.cache/microvm-testguest); they skip when it cannot
be downloaded.
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from support import REPO

sys.path.insert(0, str(REPO / "examples"))

import testguest

# --------------------------------------------------------------------------------------------
# helpers


@dataclass
class CpioEntry:
    name: str
    ino: int
    mode: int
    nlink: int
    mtime: int
    rdevmajor: int
    rdevminor: int
    data: bytes


def read_newc(blob: bytes) -> list[CpioEntry]:
    """Parse a cpio newc archive strictly: alignment, zero padding and a final trailer."""
    entries: list[CpioEntry] = []
    pos = 0
    while True:
        assert pos % 4 == 0, f"header at unaligned offset {pos}"
        header = blob[pos : pos + 110]
        assert header[:6] == b"070701", f"bad magic at {pos}: {header[:6]!r}"
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        (ino, mode, uid, gid, nlink, mtime, size, _dmaj, _dmin, rmaj, rmin, namesize, check) = (
            fields
        )
        assert (uid, gid, check) == (0, 0, 0)
        name_end = pos + 110 + namesize
        raw_name = blob[pos + 110 : name_end]
        assert raw_name.endswith(b"\0")
        assert b"\0" not in raw_name[:-1]
        name = raw_name[:-1].decode()
        data_start = name_end + (-name_end % 4)
        assert blob[name_end:data_start] == b"\0" * (data_start - name_end), "name padding"
        data_end = data_start + size
        next_pos = data_end + (-data_end % 4)
        assert blob[data_end:next_pos] == b"\0" * (next_pos - data_end), "data padding"
        if name == "TRAILER!!!":
            assert size == 0
            assert next_pos == len(blob), "bytes after the trailer"
            return entries
        entries.append(
            CpioEntry(name, ino, mode, nlink, mtime, rmaj, rmin, blob[data_start:data_end])
        )
        pos = next_pos


def make_elf(sections: Mapping[str, bytes]) -> bytes:
    """A minimal ELF64 little-endian relocatable file with the given sections."""
    names = b"\0"
    name_offsets = {}
    for name in [*sections, ".shstrtab"]:
        name_offsets[name] = len(names)
        names += name.encode() + b"\0"
    body = b""
    placed: list[tuple[str, int, int]] = []
    for name, content in [*sections.items(), (".shstrtab", names)]:
        placed.append((name, 64 + len(body), len(content)))
        body += content
    body += b"\0" * (-len(body) % 8)
    shoff = 64 + len(body)
    shnum = len(placed) + 1
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, shnum, shnum - 1
    )
    table = b"\0" * 64
    for name, offset, size in placed:
        sh_type = 3 if name == ".shstrtab" else 1
        table += struct.pack(
            "<IIQQQQIIQQ", name_offsets[name], sh_type, 0, 0, offset, size, 0, 0, 1, 0
        )
    return header + body + table


def make_ko(path: Path, info: Mapping[str, str]) -> Path:
    modinfo = b"".join(f"{k}={v}".encode() + b"\0" for k, v in info.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(make_elf({".text": b"\xc3" * 8, ".modinfo": modinfo}))
    return path


def fake_kernel(
    root: Path,
    modules: Mapping[str, Sequence[str]],
    builtin: Sequence[str] | None = None,
    version: str = "6.1.0-99-amd64",
) -> testguest.Kernel:
    """A cache-layout kernel whose ``<file>.ko`` modules depend on the listed names."""
    kdir = root / f"kernel-{version}"
    mods = kdir / "lib" / "modules" / version
    for file_name, deps in modules.items():
        make_ko(
            mods / "kernel" / "drivers" / f"{file_name}.ko",
            {"license": "GPL", "depends": ",".join(deps), "name": file_name.replace("-", "_")},
        )
    (mods / "kernel").mkdir(parents=True, exist_ok=True)
    if builtin is not None:
        (mods / "modules.builtin").write_text("".join(f"kernel/x/{b}.ko\n" for b in builtin))
    (kdir / "vmlinux").write_bytes(b"\x7fELF fake kernel")
    return testguest.Kernel(vmlinux=kdir / "vmlinux", modules=mods, version=version)


def needs_busybox() -> None:
    try:
        static = testguest._is_static_elf(testguest.BUSYBOX)
    except OSError:
        static = False
    if not static:
        pytest.skip(f"{testguest.BUSYBOX} from busybox-static is not installed")


def forbid_subprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError(f"unexpected subprocess call: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "run", boom)
    monkeypatch.setattr(subprocess, "Popen", boom)


@pytest.fixture(scope="session")
def real_kernel() -> testguest.Kernel:
    try:
        return testguest.kernel()
    except testguest.GuestBuildError as exc:
        pytest.skip(f"Debian kernel unavailable (apt-get download impossible?): {exc}")


@pytest.fixture
def small_kernel(tmp_path: Path) -> testguest.Kernel:
    return fake_kernel(
        tmp_path / "cache",
        {"virtio": [], "virtio_ring": ["virtio"], "virtio_blk": ["virtio_ring", "virtio"]},
        builtin=None,
    )


# --------------------------------------------------------------------------------------------
# modinfo and dependency order (fabricated modules)


def test_modinfo_reads_modinfo_section(tmp_path: Path) -> None:
    ko = make_ko(tmp_path / "a.ko", {"alias": "x", "depends": "b,c-d", "name": "a"})
    assert testguest.modinfo(ko) == {"alias": "x", "depends": "b,c-d", "name": "a"}
    bad = tmp_path / "bad.ko"
    bad.write_bytes(b"not an elf")
    with pytest.raises(testguest.GuestBuildError):
        testguest.modinfo(bad)


def test_resolve_post_order_dash_underscore_builtin_dedupe(tmp_path: Path) -> None:
    kern = fake_kernel(
        tmp_path,
        {
            "top": ["mid-a", "mid_b", "crc_builtin"],
            "mid_a": ["leaf"],
            "mid-b": ["leaf", "mid_a"],
            "leaf": [],
            "cyc1": ["cyc2"],
            "cyc2": ["cyc1"],
        },
        builtin=["crc_builtin", "unix"],
    )
    order = [p.name for p in testguest.resolve_modules(kern, ["top", "unix", "mid_a", "top"])]
    assert order == ["leaf.ko", "mid_a.ko", "mid-b.ko", "top.ko"]
    cyc = [p.name for p in testguest.resolve_modules(kern, ["cyc1"])]
    assert sorted(cyc) == ["cyc1.ko", "cyc2.ko"]


def test_resolve_unknown_module(tmp_path: Path) -> None:
    with_list = fake_kernel(tmp_path / "a", {"leaf": []}, builtin=["unix"])
    with pytest.raises(testguest.GuestBuildError, match="no_such_mod"):
        testguest.resolve_modules(with_list, ["leaf", "no_such_mod"])
    # Without modules.builtin, an unknown name is assumed built in.
    without_list = fake_kernel(tmp_path / "b", {"leaf": []}, builtin=None)
    assert testguest.resolve_modules(without_list, ["no_such_mod", "leaf"]) == [
        without_list.modules / "kernel" / "drivers" / "leaf.ko"
    ]


# --------------------------------------------------------------------------------------------
# initramfs


def build(kern: testguest.Kernel, out: Path, **kwargs: Any) -> list[CpioEntry]:
    kwargs.setdefault("script", "echo HELLO-MARKER\npoweroff -f\n")
    kwargs.setdefault("modules", ["virtio_blk"])
    path = testguest.build_initramfs(kern, out, **kwargs)
    assert path == out
    return read_newc(gzip.decompress(out.read_bytes()))


def test_initramfs_contents(small_kernel: testguest.Kernel, tmp_path: Path) -> None:
    needs_busybox()
    entries = build(
        small_kernel,
        tmp_path / "initrd.gz",
        files={"/etc/hello.txt": b"hi\n", "usr/local/bin/tool": b"#!/bin/sh\necho tool\n"},
    )
    by_name = {e.name: e for e in entries}
    names = [e.name for e in entries]
    assert len(names) == len(set(names))
    for parent_name in names:  # every parent directory precedes its children
        parent = parent_name.rsplit("/", 1)[0]
        if "/" in parent_name:
            assert names.index(parent) < names.index(parent_name)
    for d in ("bin", "dev", "proc", "sys", "tmp", "mnt", "etc", "lib/modules", "run", "usr/local"):
        assert by_name[d].mode == 0o040755, d
    assert all(e.mtime == 0 for e in entries)
    assert sorted(e.ino for e in entries) == list(range(1, len(entries) + 1))

    busybox = by_name["bin/busybox"]
    assert busybox.mode == 0o100755
    assert busybox.data == testguest.BUSYBOX.read_bytes()
    assert by_name["bin/sh"].mode == 0o120777
    assert by_name["bin/sh"].data == b"busybox"
    console = by_name["dev/console"]
    assert (console.mode, console.rdevmajor, console.rdevminor) == (0o020600, 5, 1)

    mods = sorted(n for n in names if n.startswith("lib/modules/"))
    assert mods == [
        "lib/modules/virtio.ko",
        "lib/modules/virtio_blk.ko",
        "lib/modules/virtio_ring.ko",
    ]
    assert by_name["lib/modules/virtio.ko"].mode == 0o100644
    assert by_name["etc/hello.txt"].data == b"hi\n"
    assert by_name["etc/hello.txt"].mode == 0o100644
    assert by_name["usr/local/bin/tool"].mode == 0o100755

    init = by_name["init"]
    assert init.mode == 0o100755
    text = init.data.decode()
    assert text.startswith("#!/bin/sh\n")
    assert "busybox --install -s" in text
    for fs in ("proc", "sysfs", "devtmpfs"):
        assert f"mount -t {fs} " in text
    loads = [line.split()[2] for line in text.splitlines() if line.startswith("_ko ")]
    assert loads == ["virtio.ko", "virtio_ring.ko", "virtio_blk.ko"]
    for helper in ("power_button()", "disk_by_serial()", "param()", "net_up()"):
        assert helper in text
    # The script follows the prelude (after helpers and module loads).
    assert text.index("echo HELLO-MARKER") > text.index("net_up()") > text.index("_ko virtio ")


def test_initramfs_deterministic(small_kernel: testguest.Kernel, tmp_path: Path) -> None:
    needs_busybox()
    a = testguest.build_initramfs(small_kernel, tmp_path / "a.gz", "echo x")
    os.utime(small_kernel.modules / "kernel" / "drivers" / "virtio.ko", (1, 1))
    b = testguest.build_initramfs(small_kernel, tmp_path / "b.gz", "echo x")
    blob = a.read_bytes()
    assert blob == b.read_bytes()
    assert blob[:2] == b"\x1f\x8b"
    assert blob[4:8] == b"\0\0\0\0"
    assert blob != testguest.build_initramfs(small_kernel, tmp_path / "c.gz", "echo y").read_bytes()
    assert not list(tmp_path.glob("*.part"))


def test_initramfs_rejects_bad_paths(small_kernel: testguest.Kernel, tmp_path: Path) -> None:
    needs_busybox()
    with pytest.raises(ValueError, match="bad initramfs path"):
        testguest.build_initramfs(small_kernel, tmp_path / "x.gz", "", files={"../etc": b""})


def test_prelude_helpers_in_busybox_sh(tmp_path: Path) -> None:
    """Run the param helper with busybox sh on the host against a fake /proc/cmdline."""
    needs_busybox()
    helpers = testguest.PRELUDE.split("# param NAME", 1)[1].split("# disk_by_serial", 1)[0]
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 e2e.ip=10.0.2.15/24 e2e.gw=10.0.2.2 quiet\n")
    script = (
        "param() {"
        + helpers.split("param() {", 1)[1].replace("/proc/cmdline", str(cmdline))
        + 'echo "ip=$(param e2e.ip) gw=$(param e2e.gw)"\n'
        + 'param e2e.none || echo "none-missing"\n'
        + 'param e2e || echo "prefix-missing"\n'
    )
    out = subprocess.run(
        [str(testguest.BUSYBOX), "sh", "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines() == ["ip=10.0.2.15/24 gw=10.0.2.2", "none-missing", "prefix-missing"]


# --------------------------------------------------------------------------------------------
# kernel cache (fake apt)


def test_cached_kernel_needs_no_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    fake_kernel(cache, {"leaf": []}, version="6.1.0-9-amd64")
    newest = fake_kernel(cache, {"leaf": []}, version="6.1.0-10-amd64")
    (cache / ".tmp-half").mkdir()  # an interrupted download is ignored
    forbid_subprocess(monkeypatch)
    assert testguest.kernel(cache) == newest
    monkeypatch.setenv(testguest.CACHE_ENV, str(cache))
    assert testguest.kernel() == newest
    monkeypatch.delenv(testguest.CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert testguest.cache_dir() == tmp_path / ".cache" / "microvm-testguest"


class FakeApt:
    """Stands in for apt-cache, apt-get and dpkg, as subprocess.run."""

    version = "6.1.0-77-amd64"
    package = f"linux-image-{version}"

    def __init__(self, lists_present: bool = True, dpkg_fails: bool = False) -> None:
        self.lists_present = lists_present
        self.dpkg_fails = dpkg_fails
        self.calls: list[list[str]] = []
        self.payload = make_elf({".text": b"\x90" * 4096})
        self.delay = 0.0

    def __call__(
        self, argv: list[str], cwd: Path | None = None, **_: object
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        rc, out, err = 0, "", ""
        if argv[:2] == ["apt-cache", "depends"]:
            if self.lists_present:
                out = f"linux-image-amd64\n  Depends: {self.package}\n"
            else:
                rc, err = 100, "E: No packages found\n"
        elif argv[:2] == ["apt-get", "update"]:
            self.lists_present = True
        elif argv[:2] == ["apt-get", "download"]:
            time.sleep(self.delay)
            assert cwd is not None
            (Path(cwd) / f"{self.package}_1_amd64.deb").write_bytes(b"!<arch>\n")
        elif argv[:2] == ["dpkg", "-x"]:
            if self.dpkg_fails:
                rc, err = 2, "dpkg-deb: error: archive is corrupt\n"
            else:
                self.unpack(Path(argv[3]))
        else:
            raise AssertionError(f"unexpected command {argv}")
        return subprocess.CompletedProcess(argv, rc, out, err)

    def unpack(self, root: Path) -> None:
        boot = root / "boot"
        boot.mkdir(parents=True)
        xz = lzma.compress(self.payload, format=lzma.FORMAT_XZ)
        # A decoy magic before the real stream, junk around it (like a bzImage).
        vmlinuz = b"MZ" + b"\0" * 100 + b"\xfd7zXZ\x00garbage" + b"\x11" * 50 + xz + b"\0" * 64
        (boot / f"vmlinuz-{self.version}").write_bytes(vmlinuz)
        (boot / f"config-{self.version}").write_text("CONFIG_9P_FS=m\n")
        (boot / f"System.map-{self.version}").write_text("map\n")
        mods = root / "lib" / "modules" / self.version
        make_ko(mods / "kernel" / "fs" / "leaf.ko", {"depends": ""})
        (mods / "modules.builtin").write_text("kernel/net/unix/unix.ko\n")
        (root / "usr" / "share" / "doc").mkdir(parents=True)


def test_download_unpacks_and_publishes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    apt = FakeApt(lists_present=False)
    monkeypatch.setattr(subprocess, "run", apt)
    cache = tmp_path / "cache"
    kern = testguest.kernel(cache)
    commands = [c[:2] for c in apt.calls]
    assert commands == [
        ["apt-cache", "depends"],
        ["apt-get", "update"],
        ["apt-cache", "depends"],
        ["apt-get", "download"],
        ["dpkg", "-x"],
    ]
    assert apt.calls[3] == ["apt-get", "download", FakeApt.package]
    assert kern.version == FakeApt.version
    assert kern.vmlinux == cache / f"kernel-{FakeApt.version}" / "vmlinux"
    assert kern.vmlinux.read_bytes() == apt.payload
    assert kern.config.read_text() == "CONFIG_9P_FS=m\n"
    assert kern.modules == cache / f"kernel-{FakeApt.version}" / "lib" / "modules" / FakeApt.version
    kept = sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())
    prefix = f"kernel-{FakeApt.version}"
    assert kept == [
        ".lock",
        f"{prefix}/config",
        f"{prefix}/lib/modules/{FakeApt.version}/kernel/fs/leaf.ko",
        f"{prefix}/lib/modules/{FakeApt.version}/modules.builtin",
        f"{prefix}/vmlinux",
    ]
    # Second call: served from the cache.
    forbid_subprocess(monkeypatch)
    assert testguest.kernel(cache) == kern


def test_interrupted_download_leaves_no_partial_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subprocess, "run", FakeApt(dpkg_fails=True))
    cache = tmp_path / "cache"
    with pytest.raises(testguest.GuestBuildError, match="archive is corrupt"):
        testguest.kernel(cache)
    assert sorted(p.name for p in cache.iterdir()) == [".lock"]


def test_concurrent_callers_download_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    apt = FakeApt()
    apt.delay = 0.3
    monkeypatch.setattr(subprocess, "run", apt)
    cache = tmp_path / "cache"
    results: list[testguest.Kernel] = []

    def worker() -> None:
        results.append(testguest.kernel(cache))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    assert len(set(results)) == 1
    assert sum(1 for c in apt.calls if c[:2] == ["apt-get", "download"]) == 1


# --------------------------------------------------------------------------------------------
# CLI


def run_cli(args: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "examples" / "testguest.py"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_cli_apt_unavailable_exits_2(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = run_cli(
        ["--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o")], {"PATH": str(empty)}
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("testguest: error: apt-cache")


def test_cli_with_cached_kernel(tmp_path: Path) -> None:
    needs_busybox()
    kern = fake_kernel(tmp_path / "cache", {"virtio": []}, builtin=None)
    script = tmp_path / "s.sh"
    script.write_text("echo CUSTOM-SCRIPT\n")
    out = tmp_path / "out"
    proc = run_cli(
        ["--out", str(out), "--script", str(script)],
        {"MICROVM_TEST_CACHE": str(tmp_path / "cache")},
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result == {
        "kernel": str(out / "vmlinux"),
        "initrd": str(out / "initrd.gz"),
        "version": kern.version,
    }
    assert (out / "vmlinux").read_bytes() == kern.vmlinux.read_bytes()
    init = {e.name: e for e in read_newc(gzip.decompress((out / "initrd.gz").read_bytes()))}["init"]
    assert b"echo CUSTOM-SCRIPT" in init.data
    # Default script, rerun over existing outputs.
    proc = run_cli(["--out", str(out)], {"MICROVM_TEST_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    init = {e.name: e for e in read_newc(gzip.decompress((out / "initrd.gz").read_bytes()))}["init"]
    assert b"MICROVM-EXAMPLE-READY" in init.data
    assert b"setsid cttyhack sh" in init.data


# --------------------------------------------------------------------------------------------
# real Debian kernel


def load_order(kern: testguest.Kernel, names: Sequence[str]) -> list[str]:
    return [
        p.name.removesuffix(".ko").replace("-", "_") for p in testguest.resolve_modules(kern, names)
    ]


def test_real_kernel_layout(real_kernel: testguest.Kernel) -> None:
    with real_kernel.vmlinux.open("rb") as f:
        assert f.read(4) == b"\x7fELF"
    assert real_kernel.modules.name == real_kernel.version
    config = real_kernel.config.read_text()
    for option in ("CONFIG_9P_FS=m", "CONFIG_VIRTIO_FS=m", "CONFIG_EXT4_FS=m", "CONFIG_PVH=y"):
        assert option in config.splitlines()


def test_real_dependency_order(real_kernel: testguest.Kernel) -> None:
    order = load_order(real_kernel, ["ext4"])
    assert order[-1] == "ext4"
    assert {"jbd2", "mbcache", "crc16"} <= set(order[:-1])
    order = load_order(real_kernel, ["9p", "9pnet_virtio"])
    assert order.index("9pnet") < order.index("9p")
    assert order.index("netfs") < order.index("9p")
    assert order.index("virtio_ring") < order.index("9pnet_virtio")
    order = load_order(real_kernel, ["virtiofs"])
    assert order.index("fuse") < order.index("virtiofs")


def test_real_default_modules_consistent(real_kernel: testguest.Kernel) -> None:
    kos = testguest.resolve_modules(real_kernel, testguest.DEFAULT_MODULES)
    assert len(kos) == len(set(kos))
    loaded: set[str] = set()
    for ko in kos:
        deps = [d for d in testguest.modinfo(ko).get("depends", "").split(",") if d]
        for dep in deps:
            has_ko = dep.replace("-", "_") in testguest._module_index(real_kernel.modules)
            assert not has_ko or dep.replace("-", "_") in loaded, f"{ko.name} before {dep}"
        loaded.add(ko.name.removesuffix(".ko").replace("-", "_"))
    wanted = {m.replace("-", "_") for m in testguest.DEFAULT_MODULES}
    assert wanted <= loaded  # every default module exists as a .ko in the generic kernel


def test_real_builtin_and_missing(real_kernel: testguest.Kernel) -> None:
    assert testguest.resolve_modules(real_kernel, ["unix", "i8042"]) == []
    with pytest.raises(testguest.GuestBuildError, match="no_such_module"):
        testguest.resolve_modules(real_kernel, ["no_such_module"])


def test_real_kernel_reuse_without_apt(
    real_kernel: testguest.Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_subprocess(monkeypatch)
    assert testguest.kernel(real_kernel.vmlinux.parent.parent) == real_kernel


def test_real_initramfs(real_kernel: testguest.Kernel, tmp_path: Path) -> None:
    needs_busybox()
    entries = build(real_kernel, tmp_path / "i.gz", modules=testguest.DEFAULT_MODULES)
    by_name = {e.name: e for e in entries}
    loads = [
        ln.split()[2] for ln in by_name["init"].data.decode().splitlines() if ln.startswith("_ko ")
    ]
    expected = [p.name for p in testguest.resolve_modules(real_kernel, testguest.DEFAULT_MODULES)]
    assert loads == expected
    assert {f"lib/modules/{n}" for n in expected} <= set(by_name)
    assert (tmp_path / "i.gz").stat().st_size < 4 * 1024 * 1024
