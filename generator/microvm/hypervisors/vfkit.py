"""vfkit (macOS, Virtualization.framework): `--bootloader linux,...` plus `--device` options,
REST API on a Unix socket.

Checked against crc-org/vfkit: doc/usage.md, cmd/vfkit/root.go and pkg/cmdline/cmdline.go
(flags), pkg/cmdline/string_slice.go (`--bootloader` splitting honours double quotes),
pkg/config/bootloader.go, pkg/config/virtio.go (`--device` is split at every ',', no escape),
pkg/rest/rest.go (`unix://` needs an absolute path), pkg/rest/vf/state_change.go.
"""

from __future__ import annotations

from ..capabilities import Hypervisor
from ..config import MicroVM, ShareProto
from ..errors import Problem
from .base import (
    Accel,
    Backend,
    Control,
    ControlKind,
    Launch,
    RunContext,
    console,
    store_disk_serial,
    unencodable,
)

REBOOT_PARAMS = ("reboot=t", "panic=-1")
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


def cmdline(vm: MicroVM) -> str:
    return " ".join([f"console={console(vm)}", *REBOOT_PARAMS, *vm.kernel_params])


def _item(key: str, value: str) -> str:
    """A --bootloader item: the whole item is double-quoted when the value holds ','."""
    return f'"{key}={value}"' if "," in value else f"{key}={value}"


# what vfkit cannot escape: in --bootloader (quoted) and in --device values
BOOT_UNSAFE = '"'
DEVICE_UNSAFE = ","


class Vfkit(Backend):
    hypervisor = Hypervisor.VFKIT

    def argv(self, vm: MicroVM) -> list[str]:
        boot = ["linux", _item("kernel", vm.kernel)]
        if vm.initrd is not None:
            boot.append(_item("initrd", vm.initrd))
        boot.append(f'cmdline="{cmdline(vm)}"')
        argv = ["vfkit", "--cpus", str(vm.vcpu), "--memory", str(vm.mem)]
        if vm.vfkit_log_level is not None:
            argv += ["--log-level", vm.vfkit_log_level]
        argv += ["--bootloader", ",".join(boot),
                 "--device", "virtio-rng",
                 "--device", "virtio-serial,stdio"]
        if vm.store_disk_path is not None:
            # the guest mounts it by this identifier (its serial)
            argv += ["--device", f"virtio-blk,path={vm.store_disk_path},readonly," +
                     f"deviceId={store_disk_serial(vm)}"]
        for v in vm.volumes:
            dev = f"virtio-blk,path={v.image}"
            if v.read_only:
                dev += ",readonly"
            if v.serial is not None:
                # the block device identifier is what the guest sees as the serial
                dev += f",deviceId={v.serial}"
            argv += ["--device", dev]
        for s in vm.shares_of(ShareProto.VIRTIOFS):
            argv += ["--device", f"virtio-fs,sharedDir={s.source},mountTag={s.tag}"]
        for iface in vm.interfaces:
            argv += ["--device", f"virtio-net,nat,mac={iface.mac}"]
        if vm.graphics:
            argv += ["--device", "virtio-gpu",
                     "--device", "virtio-input,keyboard",
                     "--device", "virtio-input,pointing"]
            if vm.graphics_backend != "headless":
                argv.append("--gui")
        argv += list(vm.hypervisor_extra_args)
        if vm.socket is None:
            return argv
        if vm.socket.startswith("/"):
            return [*argv, "--restful-uri", unix_uri(vm.socket)]
        return ["bash", "-c", _ABSOLUTE_SOCKET, "vfkit", vm.socket, *argv]

    def launch(self, vm: MicroVM, ctx: RunContext) -> Launch:
        del ctx  # vfkit reads no generated files
        sockets = [] if vm.socket is None else [vm.socket]
        return Launch(variants={Accel.KVM: self.argv(vm)}, sockets=sockets)

    def problems(self, vm: MicroVM) -> list[Problem]:
        hv = self.hypervisor
        out: list[Problem] = []
        for path, v in (("microvm.kernel", vm.kernel), ("microvm.initrdPath", vm.initrd)):
            if v is not None:
                out += unencodable(path, v, BOOT_UNSAFE, hv, "--bootloader paths")
        for i, word in enumerate(vm.kernel_params):
            out += unencodable(f"microvm.kernelParams[{i}]", word, BOOT_UNSAFE, hv,
                               "the kernel command line")
        values: list[tuple[str, str | None]] = [("microvm.storeDisk", vm.store_disk_path)]
        values += [(f"microvm.volumes[{i}].image", v.image) for i, v in enumerate(vm.volumes)]
        values += [(f"microvm.volumes[{i}].serial", v.serial) for i, v in enumerate(vm.volumes)]
        values += [(f"microvm.shares[{i}].source", s.source) for i, s in enumerate(vm.shares)]
        for path, v in values:
            if v is not None:
                out += unencodable(path, v, DEVICE_UNSAFE, hv, "--device values")
        return out

    def shutdown(self, vm: MicroVM) -> Control | None:
        if vm.socket is None:
            return None
        # "Stop" asks the guest (request-stop); "HardStop" would pull the plug
        return Control(kind=ControlKind.HTTP, socket=vm.socket, method="POST", path="/vm/state",
                       payload='{"state":"Stop"}')
