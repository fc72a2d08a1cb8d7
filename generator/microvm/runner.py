"""Write a VM's runner tree: bin/* scripts and share/microvm/* metadata.

Output is deterministic (same VM, same directory -> same bytes) and written atomically: the tree
is built in a temporary sibling directory and renamed into place, so a failed run leaves
nothing behind and an existing tree is replaced only by a complete one.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .capabilities import CAPABILITIES
from .config import InterfaceType, MicroVM, Share, ShareProto
from .errors import UsageError
from .hypervisors import Backend, Launch, RunContext, backend
from .hypervisors.base import (
    QEMU_IMAGE_FORMATS,
    macvtap_fds,
    passt_socket,
    queues,
    rootless_probe,
)
from .layout import META_DIR, LaunchRecord, Meta, Program, template_names, virtiofs_meta
from .render import render

# mkfs spells "filesystem label" differently per filesystem
_LABEL_FLAG = {"vfat": "-n", "fat": "-n", "msdos": "-n", "exfat": "-L", "ntfs": "-L"}


@dataclass(frozen=True)
class Tree:
    """The runner tree as data: relative path -> (content, executable)."""

    files: Mapping[str, tuple[str, bool]]


def _mkfs_args(fs_type: str, label: str | None, extra: tuple[str, ...]) -> list[str]:
    args = [_LABEL_FLAG.get(fs_type, "-L"), label] if label else []
    return [*args, *extra]


def virtiofsd_argv(vm: MicroVM, share: Share) -> dict[str, list[str]]:
    """virtiofsd argv for the Rust daemon and for the C one (Debian's /usr/lib/qemu)."""
    assert share.socket is not None
    o = vm.virtiofsd
    rust = ["virtiofsd", f"--socket-path={share.socket}", f"--shared-dir={share.source}",
            f"--cache={share.cache}"]
    if o.inode_file_handles is not None:
        rust.append(f"--inode-file-handles={o.inode_file_handles}")
    if share.posix_acl:
        rust += ["--xattr", "--posix-acl"]
    if share.read_only:
        rust.append("--readonly")
    if CAPABILITIES[vm.hypervisor].virtiofsd_tag:
        # the hypervisor reads the tag from the daemon (vhost-user config space)
        rust.append(f"--tag={share.tag}")
    c_cache = {"never": "none", "metadata": "auto"}.get(share.cache, share.cache)
    # the C daemon splits -o at ',' (libfuse's fuse_opt): a backslash escapes the next character
    source = share.source.replace("\\", "\\\\").replace(",", "\\,")
    c = ["virtiofsd", f"--socket-path={share.socket}", "-o", f"source={source}",
         "-o", f"cache={c_cache}"]
    if share.posix_acl:
        c += ["-o", "xattr", "-o", "posix_acl"]
    common: list[str] = []
    if o.thread_count is not None:
        common.append(f"--thread-pool-size={o.thread_count}")
    if o.group is not None:
        common.append(f"--socket-group={o.group}")
    common += [*o.extra_args, *share.extra_args]
    return {"rust": rust + common, "c": c + common}


def _control_reason(vm: MicroVM, what: str) -> str:
    if vm.socket is None:
        return f"{what} needs the control socket, and microvm.socket is null"
    if what == "ballooning" and not vm.balloon:
        return "the VM has no balloon device (set microvm.balloon = true)"
    return f"{vm.hypervisor} has no control request for {what}"


def launch_record(launch: Launch) -> LaunchRecord:
    """What share/microvm/launch.json records of a backend's Launch."""
    return LaunchRecord(variants={str(a): tuple(argv) for a, argv in launch.variants.items()},
                        probe=None if launch.probe is None else str(launch.probe),
                        kvm_modules=tuple(launch.kvm_modules), env=dict(launch.env))


def build(vm: MicroVM, runner_dir: str) -> Tree:
    """Everything the runner tree holds, as strings, for a runner installed at runner_dir."""
    be = backend(vm.hypervisor)
    launch = be.launch(vm, RunContext(runner_dir=runner_dir))
    links = _Links.of(vm, be)
    files = _Scripts(vm, runner_dir).write(be, launch, links)
    for name, content in _meta(vm, launch, links).items():
        files[f"{META_DIR}/{name}"] = (content, False)
    return Tree(files=files)


@dataclass(frozen=True)
class _Links:
    """The network links the runner makes, as the templates and share/microvm/ list them."""

    taps: list[dict[str, Any]]
    macvtaps: list[dict[str, Any]]

    @staticmethod
    def of(vm: MicroVM, be: Backend) -> _Links:
        fds = macvtap_fds(vm)
        networks = vm.interfaces_of(InterfaceType.NETWORK)
        first_network = networks[0] if networks else None
        return _Links(
            taps=[{"id": i.id, "bridge": i.host_bridge, "network": i.network,
                   "passt": (passt_socket(vm, i) if i.network and CAPABILITIES[vm.hypervisor].passt
                             else None),
                   "passt_args": _passt_forwards(vm) if i is first_network else [],
                   # fails where the tap cannot be had (the QEMU fallback's probe too)
                   "rootless": rootless_probe(i.id) if i.network else None,
                   "multi_queue": queues(vm) > 1} for i in be.runner_taps(vm)],
            macvtaps=[{"id": i.id, "mac": i.mac, "link": i.macvtap_link,
                       "mode": i.macvtap_mode, "fds": fds[i.id]}
                      for i in vm.interfaces_of(InterfaceType.MACVTAP)])


def _passt_forwards(vm: MicroVM) -> list[str]:
    """passt's -t/-u options for microvm.forwardPorts, where no user interface takes them
    (validate.py: they go to the first network interface run rootless)."""
    if vm.interfaces_of(InterfaceType.USER):
        return []
    out: list[str] = []
    for f in vm.forward_ports:
        where = f"{f.host_address}/" if f.host_address else ""
        out += ["-u" if f.proto == "udp" else "-t", f"{where}{f.host_port}:{f.guest_port}"]
    return out


def _virtiofs(vm: MicroVM) -> list[Share]:
    """The virtiofs shares served by a virtiofsd (some hypervisors have the server built in)."""
    return vm.shares_of(ShareProto.VIRTIOFS) if CAPABILITIES[vm.hypervisor].virtiofsd else []


class _Scripts:
    """The bin/ scripts of one runner tree, rendered from templates/."""

    def __init__(self, vm: MicroVM, runner_dir: str) -> None:
        self.vm = vm
        self.files: dict[str, tuple[str, bool]] = {}
        self.common: dict[str, Any] = {
            "version": __version__, "host_name": vm.host_name,
            "hypervisor": str(vm.hypervisor), "runtime_path": ":".join(vm.runtime_path),
            "runner_dir": runner_dir, **template_names(),
        }

    def script(self, program: Program, template: str, **kw: Any) -> None:
        self.files[program.path] = (render(template, script=program.value, **self.common, **kw),
                                    True)

    def write(self, be: Backend, launch: Launch, links: _Links) -> dict[str, tuple[str, bool]]:
        vm = self.vm
        self.run(launch, links)
        self.script(Program.SHUTDOWN, "microvm-shutdown.sh.j2", control=be.shutdown(vm),
                    method=CAPABILITIES[vm.hypervisor].shutdown)
        self.script(Program.BALLOON, "microvm-balloon.sh.j2", control=be.balloon(vm),
                    guest_mib=vm.mem + vm.hotplugged_mem,
                    reason=_control_reason(vm, "ballooning"))
        self.script(Program.TAP_UP, "tap-up.sh.j2", taps=links.taps, user=vm.user)
        self.script(Program.TAP_DOWN, "tap-down.sh.j2", taps=links.taps)
        self.script(Program.MACVTAP_UP, "macvtap-up.sh.j2", macvtaps=links.macvtaps,
                    user=vm.user)
        self.script(Program.MACVTAP_DOWN, "macvtap-down.sh.j2", macvtaps=links.macvtaps)
        if virtiofs := _virtiofs(vm):
            shares = [{"tag": s.tag, "socket": s.socket, **virtiofsd_argv(vm, s)}
                      for s in virtiofs]
            self.script(Program.VIRTIOFSD_RUN, "virtiofsd-run.sh.j2", shares=shares,
                        threads_per_cpu=vm.virtiofsd.threads_per_cpu)
        return self.files

    def run(self, launch: Launch, links: _Links) -> None:
        vm = self.vm
        volumes = [{"image": v.image, "size": v.size, "fs_type": v.fs_type,
                    # a raw image is made as it is; others through qemu-img convert
                    "convert": (("", "") if v.image_type == "raw"
                                else QEMU_IMAGE_FORMATS[v.image_type]),
                    "mkfs_args": _mkfs_args(v.fs_type, v.label, v.mkfs_extra_args)}
                   for v in vm.volumes if v.auto_create]
        variants = [(str(accel), argv) for accel, argv in launch.variants.items()]
        self.script(Program.RUN, "microvm-run.sh.j2",
                    pre_start=bool(vm.pre_start), volumes=volumes, taps=links.taps,
                    macvtaps=links.macvtaps, virtiofs=_virtiofs(vm), probe=launch.probe,
                    kvm_modules=launch.kvm_modules, variants=variants,
                    default_accel=variants[0][0], extra_args_script=vm.extra_args_script,
                    env=sorted(launch.env.items()), sockets=launch.sockets,
                    console_socket=launch.console_socket, fallbacks=launch.fallbacks,
                    gpu=launch.gpu,
                    process_name=f"microvm@{vm.host_name}" if vm.pretty_procnames else None)


def _lines(items: list[str]) -> str:
    return "".join(f"{x}\n" for x in items)


def _meta(vm: MicroVM, launch: Launch, links: _Links) -> dict[str, str]:
    """share/microvm/*: what the runner tells about the VM, name -> content."""
    meta: dict[str, str] = {}
    if vm.pre_start:
        meta[Meta.PRE_START] = vm.pre_start if vm.pre_start.endswith("\n") else vm.pre_start + "\n"
    meta[Meta.HYPERVISOR] = f"{vm.hypervisor}\n"
    meta[Meta.HOSTNAME] = f"{vm.host_name}\n"
    meta[Meta.SYSTEM] = f"{vm.system}\n"
    if vm.toplevel:
        meta[Meta.TOPLEVEL] = f"{vm.toplevel}\n"
    if vm.socket is not None:
        meta[Meta.CONTROL_SOCKET] = f"{vm.socket}\n"
    meta[Meta.TAP_INTERFACES] = _lines([str(t["id"]) for t in links.taps])
    meta[Meta.MACVTAP_INTERFACES] = _lines([f"{m['id']} {m['mac']} {m['link']} {m['mode']}"
                                            for m in links.macvtaps])
    meta[Meta.PCI_DEVICES] = _lines([d.path for d in vm.devices if d.bus == "pci"])
    meta[Meta.USB_DEVICES] = _lines([d.path for d in vm.devices if d.bus == "usb"])
    if vm.vsock_cid is not None:
        meta[Meta.VSOCK_CID] = f"{vm.vsock_cid}\n"
    if vm.register_with_machined:  # read by the units' machined helper (as root)
        meta[Meta.MACHINED] = f"{vm.machine_uuid.lower()}\n"
    for s in _virtiofs(vm):
        meta[virtiofs_meta(s.tag, "socket")] = f"{s.socket}\n"
        meta[virtiofs_meta(s.tag, "source")] = f"{s.source}\n"
    meta |= launch.files
    meta[Meta.VM_JSON] = json.dumps(vm.to_json(), indent=2, sort_keys=True,
                                    ensure_ascii=False) + "\n"
    meta[Meta.LAUNCH] = launch_record(launch).to_text()
    return meta


def _fill(tree: Tree, root: Path) -> None:
    made: set[Path] = set()
    for rel, (content, executable) in sorted(tree.files.items()):
        path = root / rel
        if path.parent not in made:  # one mkdir per directory, not per file
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_text(content, "utf-8")
        path.chmod(0o755 if executable else 0o644)
    root.chmod(0o755)


def write(vm: MicroVM, out: Path, *, force: bool = False) -> Path:
    """Generate the runner tree into `out`. A new `out` is written in place and removed again
    if anything fails (so a Nix build may write its $out and nothing beside it). An existing
    `out` is replaced only with force=True, and only by a complete tree built beside it."""
    out = Path(os.path.abspath(out))
    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to replace it")
    tree = build(vm, str(out))
    if not out.exists():
        # the outermost directory this run creates: removed again if anything fails
        first_new = out
        while not first_new.parent.exists():
            first_new = first_new.parent
        try:
            out.mkdir(parents=True)
            _fill(tree, out)
        except BaseException:
            shutil.rmtree(first_new, ignore_errors=True)
            raise
        return out
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _fill(tree, tmp)
        _exchange(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(tmp)  # the old tree, now under the temporary name
    return out


def _exchange(a: Path, b: Path) -> None:
    """Swap two directories in one step (renameat2 RENAME_EXCHANGE, Linux 3.15+): `b` is the
    old tree or the new one at every moment, never missing. Where the system or the file
    system cannot (ENOSYS, EINVAL: macOS, some file systems), two renames, with a moment
    without `b`."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        at_fdcwd, rename_exchange = -100, 2
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), str(b))
    old = a.with_name(a.name + ".old")
    b.rename(old)
    a.rename(b)
    old.rename(a)
