"""crosvm: `crosvm run [options] KERNEL`, control socket driven by `crosvm <command> SOCKET`.

Checked against google/crosvm: src/crosvm/cmdline.rs (`RunCommand`, `BalloonCommand`,
`PowerbtnCommand`), devices/src/virtio/block/mod.rs (`--block` keys), devices/src/virtio/net.rs
(`--net` keys), devices/src/virtio/balloon.rs (balloon size in bytes, deflate-on-OOM always
offered), serde_keyvalue/src/key_values.rs (quoting).
"""

from __future__ import annotations

from ..capabilities import Hypervisor
from ..config import InterfaceType, MicroVM, ShareProto
from ..errors import Problem
from .base import (
    Accel,
    Backend,
    Control,
    ControlKind,
    Launch,
    RunContext,
    console,
    macvtap_fds,
    notify_kernel_params,
    opts,
    store_disk_serial,
    unencodable,
)

REBOOT_PARAMS = ("reboot=k", "panic=1")


def value(v: str | int) -> str:
    """A serde_keyvalue value: double-quoted (with \\ and \" escaped) when it holds a
    character that ends or breaks an unquoted string."""
    s = str(v)
    if s and not any(c in s for c in ",[]\"'=\\") and s == s.strip():
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def kv(head: str | None, items: dict[str, str | int | bool | None]) -> str:
    return opts(head, items, escape=value, bools=("true", "false"))


def cmdline(vm: MicroVM) -> str:
    return " ".join([f"console={console(vm)}", *REBOOT_PARAMS, *notify_kernel_params(vm),
                     *vm.kernel_params])


# --shared-dir is colon-separated and has no escape
SHARED_DIR_UNSAFE = ":"


class Crosvm(Backend):
    hypervisor = Hypervisor.CROSVM

    def argv(self, vm: MicroVM) -> list[str]:
        argv = ["crosvm", "run",
                "--cpus", str(vm.vcpu),
                "--mem", str(vm.mem),
                "--serial", kv(None, {"type": "stdout", "hardware": "serial", "num": 1,
                                      "console": True, "stdin": True}),
                "--params", cmdline(vm)]
        if vm.balloon:
            argv.append("--balloon-page-reporting")
            if vm.initial_balloon_mem:
                # memory outside the balloon at boot
                argv += ["--init-mem", str(vm.mem - vm.initial_balloon_mem)]
        else:
            # crosvm adds a balloon unless told not to
            argv.append("--no-balloon")
        if vm.socket is not None:
            argv += ["--socket", vm.socket]
        if vm.crosvm_pivot_root is not None:
            argv += ["--pivot-root", vm.crosvm_pivot_root]
        if vm.store_disk_path is not None:
            # the guest mounts it by this id (crosvm reports an empty serial without one)
            argv += ["--block", kv(None, {"path": vm.store_disk_path, "ro": True,
                                          "id": store_disk_serial(vm)})]
        for v in vm.volumes:
            argv += ["--block", kv(None, {"path": v.image, "ro": v.read_only or None,
                                          "direct": v.direct or None, "id": v.serial})]
        for s in vm.shares:
            if s.proto is ShareProto.VIRTIOFS:
                # the tag comes from virtiofsd (--tag), see runner.virtiofsd_argv
                assert s.socket is not None
                argv += ["--vhost-user", kv(None, {"type": "fs", "socket": s.socket})]
            else:
                argv += ["--shared-dir", f"{s.source}:{s.tag}:type=p9"]
        fds = macvtap_fds(vm)
        for iface in vm.interfaces:
            if iface.type is InterfaceType.MACVTAP:
                mode: dict[str, str | int | bool | None] = {"tap-fd": fds[iface.id][0]}
            else:
                mode = {"tap-name": iface.id}
            argv += ["--net", kv("vhost-net" if iface.vhost else None,
                                 {**mode, "mac": iface.mac})]
        if vm.vsock_cid is not None:
            argv += ["--vsock", kv(None, {"cid": vm.vsock_cid})]
        for d in vm.devices:
            # the sysfs path is the first, unnamed value (a PCI address has no ',')
            argv += ["--vfio", f"/sys/bus/pci/devices/{d.path}"]
        if vm.initrd is not None:
            argv += ["--initrd", vm.initrd]
        # the kernel is the positional argument
        return [*argv, vm.kernel, *vm.hypervisor_extra_args]

    def launch(self, vm: MicroVM, ctx: RunContext) -> Launch:
        del ctx  # crosvm reads no generated files
        sockets = [] if vm.socket is None else [vm.socket]
        return Launch(variants={Accel.KVM: self.argv(vm)}, sockets=sockets)

    def problems(self, vm: MicroVM) -> list[Problem]:
        out = []
        if vm.balloon and not vm.deflate_on_oom:
            out.append(Problem("microvm.deflateOnOOM",
                               "crosvm's balloon always lets the guest deflate it on OOM; " +
                               "set deflateOnOOM = true"))
        for i, s in enumerate(vm.shares):
            if s.proto is ShareProto.NINEP:
                out += unencodable(f"microvm.shares[{i}].source", s.source, SHARED_DIR_UNSAFE,
                                   self.hypervisor,
                                   "--shared-dir paths")
                out += unencodable(f"microvm.shares[{i}].tag", s.tag, SHARED_DIR_UNSAFE,
                                   self.hypervisor,
                                   "--shared-dir tags")
        return out

    def shutdown(self, vm: MicroVM) -> Control | None:
        if vm.socket is None:
            return None
        return Control(kind=ControlKind.ARGV, socket=vm.socket,
                       argv=("crosvm", "powerbtn", vm.socket))

    def balloon(self, vm: MicroVM) -> Control | None:
        if vm.socket is None or not vm.balloon:
            return None
        # the balloon's size in bytes
        return Control(kind=ControlKind.ARGV, socket=vm.socket,
                       argv=("crosvm", "balloon", "@BALLOON_BYTES@", vm.socket))
