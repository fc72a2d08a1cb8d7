"""vfkit (macOS, Virtualization.framework): `--bootloader linux,...` plus `--device` options,
REST API on a Unix socket.

Checked against crc-org/vfkit: doc/usage.md, cmd/vfkit/root.go and pkg/cmdline/cmdline.go
(flags), pkg/cmdline/string_slice.go (`--bootloader` splitting honours double quotes),
pkg/config/bootloader.go, pkg/config/virtio.go (`--device` is split at every ',', no escape),
pkg/rest/rest.go (`unix://` needs an absolute path), pkg/rest/vf/state_change.go,
RosettaShare.FromOptions in pkg/config/virtio.go (`rosetta`: mountTag, install,
ignore-if-missing).
"""

from __future__ import annotations

from ..capabilities import Hypervisor
from ..config import MicroVM, ShareProto
from .base import (
    Accel,
    Backend,
    Control,
    ControlKind,
    Encoder,
    Launch,
    RunContext,
    created_sockets,
    disks,
    kernel_cmdline,
)

# vfkit parses --restful-uri with Go's url.ParseRequestURI and serves on its decoded Path: in
# the socket's path '%' must be escaped, '?' would start a query, '#' is escaped to be safe
_URI_ESCAPES = (("%", "%25"), ("?", "%3F"), ("#", "%23"))
# makes a relative socket absolute against the working directory at start (escaped the same
# way, '%' first), then runs vfkit
_ABSOLUTE_SOCKET = ('socket=$1; shift; case $socket in /*) ;; *) socket=$PWD/$socket ;; esac; ' +
                    "".join(f"socket=${{socket//[{c}]/{e}}}; " for c, e in _URI_ESCAPES) +
                    'exec "$@" --restful-uri "unix://$socket"')


def unix_uri(path: str) -> str:
    """`unix://PATH` with PATH escaped for url.ParseRequestURI (PATH is absolute)."""
    for char, escaped in _URI_ESCAPES:
        path = path.replace(char, escaped)
    return f"unix://{path}"


def _item(key: str, value: str) -> str:
    """A --bootloader item: the whole item is double-quoted when the value holds ','."""
    return f'"{key}={value}"' if "," in value else f"{key}={value}"


# the virtiofs tag of the Rosetta share; the guest mounts it (nix/modules/microvm/rosetta.nix)
ROSETTA_TAG = "rosetta"


def rosetta_device(vm: MicroVM) -> list[str]:
    """`--device rosetta,...` for microvm.vfkit.rosetta.enable. vfkit's parser takes
    `ignore-if-missing` (doc/usage.md and microvm.nix spell it ignoreIfMissing, which vfkit
    refuses as an unknown option)."""
    if not vm.vfkit_rosetta:
        return []
    dev = f"rosetta,mountTag={ROSETTA_TAG}"
    if vm.vfkit_rosetta_install:
        dev += ",install"
    if vm.vfkit_rosetta_ignore_if_missing:
        dev += ",ignore-if-missing"
    return ["--device", dev]


# what vfkit cannot escape: in --bootloader (quoted) and in --device values
BOOT_UNSAFE = '"'
DEVICE_UNSAFE = ","


class Vfkit(Backend):
    hypervisor = Hypervisor.VFKIT

    def encoder(self) -> Encoder:
        return Encoder(self.hypervisor, unsafe=DEVICE_UNSAFE, where="--device values")

    def _bootloader(self, vm: MicroVM, enc: Encoder) -> str:
        def path(option: str, value: str) -> str:
            return enc.given(option, value, unsafe=BOOT_UNSAFE, where="--bootloader paths")

        boot = ["linux", _item("kernel", path("microvm.kernel", vm.kernel))]
        if vm.initrd is not None:
            boot.append(_item("initrd", path("microvm.initrdPath", vm.initrd)))
        for i, word in enumerate(vm.kernel_params):
            enc.given(f"microvm.kernelParams[{i}]", word, unsafe=BOOT_UNSAFE,
                      where="the kernel command line")
        boot.append(f'cmdline="{kernel_cmdline(vm, enc=enc)}"')
        return ",".join(boot)

    def _devices(self, vm: MicroVM, enc: Encoder) -> list[str]:
        argv = ["--device", "virtio-rng",
                "--device", "virtio-serial,stdio"]
        for d in disks(vm):
            dev = f"virtio-blk,path={enc.given(d.option('image'), d.path)}"
            if d.read_only:
                dev += ",readonly"
            if d.serial is not None:
                # the block device identifier is what the guest sees as the serial (the
                # guest mounts the store disk by it)
                dev += f",deviceId={enc.given(d.option('serial'), d.serial)}"
            argv += ["--device", dev]
        for i, s in enumerate(vm.shares):
            if s.proto is ShareProto.VIRTIOFS:
                source = enc.given(f"microvm.shares[{i}].source", s.source)
                argv += ["--device", f"virtio-fs,sharedDir={source},mountTag={s.tag}"]
        for iface in vm.interfaces:
            argv += ["--device", f"virtio-net,nat,mac={iface.mac}"]
        if vm.graphics:
            argv += ["--device", "virtio-gpu",
                     "--device", "virtio-input,keyboard",
                     "--device", "virtio-input,pointing"]
            if vm.graphics_backend != "headless":
                argv.append("--gui")
        return argv + rosetta_device(vm)

    def argv(self, vm: MicroVM, ctx: RunContext, accel: Accel, enc: Encoder) -> list[str]:
        del ctx, accel  # vfkit reads no generated files; Virtualization.framework only
        argv = ["vfkit", "--cpus", str(vm.vcpu), "--memory", str(vm.mem)]
        if vm.vfkit_log_level is not None:
            argv += ["--log-level", vm.vfkit_log_level]
        argv += ["--bootloader", self._bootloader(vm, enc), *self._devices(vm, enc),
                 *vm.hypervisor_extra_args]
        if vm.socket is None:
            return argv
        if vm.socket.startswith("/"):
            return [*argv, "--restful-uri", unix_uri(vm.socket)]
        return ["bash", "-c", _ABSOLUTE_SOCKET, "vfkit", vm.socket, *argv]

    def launch(self, vm: MicroVM, ctx: RunContext) -> Launch:
        return Launch(variants={Accel.KVM: self.command(vm, ctx)}, sockets=created_sockets(vm))

    def shutdown(self, vm: MicroVM) -> Control | None:
        if vm.socket is None:
            return None
        # "Stop" asks the guest (request-stop); "HardStop" would pull the plug
        return Control(kind=ControlKind.HTTP, socket=vm.socket, method="POST", path="/vm/state",
                       payload='{"state":"Stop"}')
