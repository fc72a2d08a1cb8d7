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
    CROSVM_GPU_PARAMS,
    Accel,
    Backend,
    Control,
    ControlKind,
    Encoder,
    Launch,
    RunContext,
    created_sockets,
    disks,
    gpu_daemon,
    kernel_cmdline,
    macvtap_fds,
    notify_kernel_params,
)


def value(v: str | int) -> str:
    """A serde_keyvalue value: double-quoted (with \\ and \" escaped) when it holds a
    character that ends or breaks an unquoted string."""
    s = str(v)
    if s and not any(c in s for c in ",[]\"'=\\") and s == s.strip():
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --shared-dir is colon-separated and has no escape
SHARED_DIR_UNSAFE = ":"


class Crosvm(Backend):
    hypervisor = Hypervisor.CROSVM

    def encoder(self) -> Encoder:
        return Encoder(self.hypervisor, escape=value, bools=("true", "false"),
                       unsafe=SHARED_DIR_UNSAFE)

    def argv(self, vm: MicroVM, ctx: RunContext, accel: Accel, enc: Encoder) -> list[str]:
        del ctx, accel  # crosvm reads no generated files; KVM only
        argv = ["crosvm", "run",
                "--cpus", str(vm.vcpu),
                "--mem", str(vm.mem),
                "--serial", enc.kv(None, {"type": "stdout", "hardware": "serial", "num": 1,
                                          "console": True, "stdin": True}),
                "--params", kernel_cmdline(vm, *notify_kernel_params(vm), enc=enc)]
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
        for d in disks(vm):
            # the guest mounts the store disk by its id (crosvm reports an empty serial
            # without one)
            argv += ["--block", enc.kv(None, {"path": d.path, "ro": d.read_only or None,
                                              "direct": d.direct or None, "id": d.serial})]
        argv += self._shares(vm, enc)
        if vm.graphics:
            # crosvm's own GPU device as a vhost-user backend, which the runner starts
            # the key spelled out, `type=gpu`, as crosvm's VhostUserFrontendOption names it
            # (src/crosvm/config.rs: type and socket required), rather than relying on a bare
            # first word being taken as the type
            argv += ["--vhost-user", enc.kv(None, {"type": "gpu", "socket": vm.gpu_socket})]
        argv += self._devices(vm, enc)
        if vm.initrd is not None:
            argv += ["--initrd", vm.initrd]
        # the kernel is the positional argument
        return [*argv, vm.kernel, *vm.hypervisor_extra_args]

    def _shares(self, vm: MicroVM, enc: Encoder) -> list[str]:
        argv: list[str] = []
        for i, s in enumerate(vm.shares):
            if s.proto is ShareProto.VIRTIOFS:
                # the tag comes from virtiofsd (--tag), see runner.virtiofsd_argv
                assert s.socket is not None
                argv += ["--vhost-user", enc.kv(None, {"type": "fs", "socket": s.socket})]
            else:
                source = enc.given(f"microvm.shares[{i}].source", s.source,
                                   where="--shared-dir paths")
                tag = enc.given(f"microvm.shares[{i}].tag", s.tag, where="--shared-dir tags")
                argv += ["--shared-dir", f"{source}:{tag}:type=p9"]
        return argv

    def _devices(self, vm: MicroVM, enc: Encoder) -> list[str]:
        """Network interfaces, vsock, PCI passthrough."""
        argv: list[str] = []
        fds = macvtap_fds(vm)
        for iface in vm.interfaces:
            if iface.type is InterfaceType.MACVTAP:
                mode: dict[str, str | int | bool | None] = {"tap-fd": fds[iface.id][0]}
            else:
                mode = {"tap-name": iface.id}
            argv += ["--net", enc.kv("vhost-net" if iface.vhost else None,
                                     {**mode, "mac": iface.mac})]
        if vm.vsock_cid is not None:
            argv += ["--vsock", enc.kv(None, {"cid": vm.vsock_cid})]
        for d in vm.devices:
            # the sysfs path is the first, unnamed value (a PCI address has no ',')
            argv += ["--vfio", f"/sys/bus/pci/devices/{d.path}"]
        return argv

    def launch(self, vm: MicroVM, ctx: RunContext) -> Launch:
        return Launch(variants={Accel.KVM: self.command(vm, ctx)}, sockets=created_sockets(vm),
                      gpu=gpu_daemon(vm, CROSVM_GPU_PARAMS))

    def rules(self, vm: MicroVM) -> list[Problem]:
        if vm.balloon and not vm.deflate_on_oom:
            return [Problem("microvm.deflateOnOOM",
                            "crosvm's balloon always lets the guest deflate it on OOM; " +
                            "set deflateOnOOM = true")]
        return []

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
