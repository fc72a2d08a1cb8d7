"""StratoVirt: a QEMU-like command line on the `microvm` machine (virtio-mmio), QMP socket.

Checked against openeuler-mirror/stratovirt: docs/config_guidebook.md (sections 1.1-1.7 and
2.2-2.8, 2.17), docs/boot.md (kernel formats), docs/qmp.md (`balloon` takes the guest's target
size in bytes; qmp_capabilities is accepted), machine_manager/src/config/mod.rs
(`str_slip_to_clap`: values are split at ',' and '=' with no escape).
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
    Encoder,
    Launch,
    RunContext,
    created_sockets,
    disks,
    kernel_cmdline,
    macvtap_fds,
    notify_kernel_params,
)

HUGETLBFS = "/dev/hugepages"
# The serial console's chardev: stdio puts stdin into raw mode and fails without a terminal,
# so under a service manager (MICROVM_CONSOLE=socket) the runner swaps in a socket console
# (config_guidebook.md section 2.12: `-chardev socket,id=ID,path=PATH,server,nowait`).
CONSOLE_STDIO = "stdio,id=console0"
CONSOLE_SOCKET = "socket,id=console0,path=console.sock,server,nowait"
CONSOLE_SOCKET_PATH = "console.sock"


def _onoff(b: bool) -> str:
    return "on" if b else "off"


class Stratovirt(Backend):
    hypervisor = Hypervisor.STRATOVIRT

    def encoder(self) -> Encoder:
        # values are split at ',' and '=' with no escape (str_slip_to_clap)
        return Encoder(self.hypervisor, escape=str, unsafe=",=")

    def _devices(self, vm: MicroVM, enc: Encoder) -> list[list[str]]:
        """Each -device with the options it needs, in order (counted against the limit)."""
        kv = enc.kv
        devs: list[list[str]] = [[
            "-object", kv("rng-random", {"id": "rng0", "filename": "/dev/random"}),
            "-device", kv("virtio-rng-device", {"rng": "rng0", "id": "rng_dev"})]]
        for d in disks(vm):
            # direct defaults to on in StratoVirt: always say which; the guest mounts the
            # store disk by its serial
            image = enc.given(d.option("image"), d.path)
            serial = None if d.serial is None else enc.given(d.option("serial"), d.serial)
            devs.append([
                "-drive", kv(f"id={d.id}", {"file": image, "readonly": _onoff(d.read_only),
                                            "direct": _onoff(d.direct)}),
                "-device", kv("virtio-blk-device", {"drive": d.id, "id": f"blk_{d.id}",
                                                    "serial": serial})])
        virtiofs = [(i, s) for i, s in enumerate(vm.shares) if s.proto is ShareProto.VIRTIOFS]
        for n, (i, s) in enumerate(virtiofs):
            assert s.socket is not None
            p = f"microvm.shares[{i}]"
            devs.append([
                "-chardev", kv("socket", {"id": f"fs{n}",
                                          "path": enc.given(f"{p}.socket", s.socket)}),
                "-device", kv("vhost-user-fs-device", {
                    "id": f"fs_dev{n}", "chardev": f"fs{n}",
                    "tag": enc.given(f"{p}.tag", s.tag)})])
        devs += self._net(vm, enc)
        if vm.vsock_cid is not None:
            devs.append(["-device", kv("vhost-vsock-device", {"id": "vsock0",
                                                              "guest-cid": vm.vsock_cid})])
        if vm.balloon:
            devs.append(["-device", kv("virtio-balloon-device", {
                "deflate-on-oom": str(vm.deflate_on_oom).lower(),
                "free-page-reporting": "true"})])
        return devs

    def _net(self, vm: MicroVM, enc: Encoder) -> list[list[str]]:
        fds = macvtap_fds(vm)
        devs = []
        for i, iface in enumerate(vm.interfaces):
            netdev: dict[str, str | int | None] = {"id": f"net{i}"}
            if iface.type is InterfaceType.MACVTAP:
                netdev["fd"] = fds[iface.id][0]
            else:
                netdev["ifname"] = enc.given(f"microvm.interfaces[{i}].id", iface.id)
            netdev["vhost"] = "on" if iface.vhost else None
            devs.append([
                "-netdev", enc.kv("tap", netdev),
                "-device", enc.kv("virtio-net-device", {"id": f"net_dev{i}",
                                                        "netdev": f"net{i}", "mac": iface.mac})])
        return devs

    def argv(self, vm: MicroVM, ctx: RunContext, accel: Accel, enc: Encoder) -> list[str]:
        del ctx, accel  # StratoVirt reads no generated files; KVM only
        machine = enc.kv("microvm", {"mem-share": "on" if vm.shares_of(ShareProto.VIRTIOFS)
                                     else None})
        argv = ["stratovirt",
                "-name", vm.host_name,
                "-machine", machine,
                "-smp", str(vm.vcpu),
                "-m", str(vm.mem)]
        if vm.hugepage_mem:
            argv += ["-mem-path", HUGETLBFS]
        argv += ["-kernel", vm.kernel]
        if vm.initrd is not None:
            argv += ["-initrd", vm.initrd]
        argv += ["-append", kernel_cmdline(vm, *notify_kernel_params(vm), enc=enc),
                 "-chardev", CONSOLE_STDIO,
                 "-serial", "chardev:console0"]
        if vm.socket is not None:
            argv += ["-qmp", f"unix:{enc.given('microvm.socket', vm.socket)},server,nowait"]
        for dev in self._devices(vm, enc):
            argv += dev
        return argv + list(vm.hypervisor_extra_args)

    def launch(self, vm: MicroVM, ctx: RunContext) -> Launch:
        return Launch(variants={Accel.KVM: self.command(vm, ctx)},
                      sockets=[*created_sockets(vm), CONSOLE_SOCKET_PATH],
                      console_socket=(CONSOLE_STDIO, CONSOLE_SOCKET))

    def rules(self, vm: MicroVM) -> list[Problem]:
        limit = self.caps.limits.max_devices.get(vm.arch)
        n = len(self._devices(vm, self.encoder()))
        if limit is not None and n > limit:
            return [Problem("microvm", f"stratovirt's microvm machine has at most {limit} " +
                            f"devices on {vm.arch}, this VM needs {n} (entropy, disks, " +
                            "shares, interfaces, vsock, balloon)")]
        return []

    def shutdown(self, vm: MicroVM) -> Control | None:
        # system_powerdown only moves a microvm machine to "shut down" on the host side
        del vm
        return None

    def balloon(self, vm: MicroVM) -> Control | None:
        if vm.socket is None or not vm.balloon:
            return None
        # like QEMU: the guest's target memory in bytes
        return Control(kind=ControlKind.QMP, socket=vm.socket,
                       payload='{"execute":"balloon","arguments":{"value":@GUEST_BYTES@}}')
