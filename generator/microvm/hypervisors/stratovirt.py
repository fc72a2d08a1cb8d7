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
    Launch,
    RunContext,
    console,
    macvtap_fds,
    notify_kernel_params,
    store_disk_serial,
    unencodable,
)

REBOOT_PARAMS = ("reboot=t", "panic=-1")
HUGETLBFS = "/dev/hugepages"
MEM_MIN_MIB = 128
MEM_MAX_MIB = 512 << 10
# user-creatable devices on the microvm machine (config_guidebook.md section 2)
MAX_DEVICES = {"x86_64": 11, "aarch64": 160}
_UNSAFE = ",="
# The serial console's chardev: stdio puts stdin into raw mode and fails without a terminal,
# so under a service manager (MICROVM_CONSOLE=socket) the runner swaps in a socket console
# (config_guidebook.md section 2.12: `-chardev socket,id=ID,path=PATH,server,nowait`).
CONSOLE_STDIO = "stdio,id=console0"
CONSOLE_SOCKET = "socket,id=console0,path=console.sock,server,nowait"
CONSOLE_SOCKET_PATH = "console.sock"


def cmdline(vm: MicroVM) -> str:
    return " ".join([f"console={console(vm)}", *REBOOT_PARAMS, *notify_kernel_params(vm),
                     *vm.kernel_params])


def opts(head: str, kv: dict[str, str | int | None]) -> str:
    return ",".join([head, *(f"{k}={v}" for k, v in kv.items() if v is not None)])


def _onoff(b: bool) -> str:
    return "on" if b else "off"


class Stratovirt(Backend):
    hypervisor = Hypervisor.STRATOVIRT

    def _devices(self, vm: MicroVM) -> list[list[str]]:
        """Each -device with the options it needs, in order (counted against the limit)."""
        devs: list[list[str]] = [[
            "-object", opts("rng-random", {"id": "rng0", "filename": "/dev/random"}),
            "-device", opts("virtio-rng-device", {"rng": "rng0", "id": "rng_dev"})]]
        disks: list[tuple[str, str, bool, bool, str | None]] = []
        if vm.store_disk_path is not None:
            # the guest mounts it by this serial
            disks.append(("store", vm.store_disk_path, True, False, store_disk_serial(vm)))
        for i, v in enumerate(vm.volumes):
            disks.append((f"vol{i}", v.image, v.read_only, v.direct, v.serial))
        for drive, path, ro, direct, serial in disks:
            # direct defaults to on in StratoVirt: always say which
            devs.append([
                "-drive", opts(f"id={drive}", {"file": path, "readonly": _onoff(ro),
                                               "direct": _onoff(direct)}),
                "-device", opts("virtio-blk-device", {"drive": drive, "id": f"blk_{drive}",
                                                      "serial": serial})])
        for i, s in enumerate(vm.shares_of(ShareProto.VIRTIOFS)):
            devs.append([
                "-chardev", opts("socket", {"id": f"fs{i}", "path": s.socket}),
                "-device", opts("vhost-user-fs-device", {"id": f"fs_dev{i}",
                                                         "chardev": f"fs{i}", "tag": s.tag})])
        fds = macvtap_fds(vm)
        for i, iface in enumerate(vm.interfaces):
            netdev: dict[str, str | int | None] = {"id": f"net{i}"}
            if iface.type is InterfaceType.MACVTAP:
                netdev["fd"] = fds[iface.id][0]
            else:
                netdev["ifname"] = iface.id
            netdev["vhost"] = "on" if iface.vhost else None
            devs.append([
                "-netdev", opts("tap", netdev),
                "-device", opts("virtio-net-device", {"id": f"net_dev{i}", "netdev": f"net{i}",
                                                      "mac": iface.mac})])
        if vm.vsock_cid is not None:
            devs.append(["-device", opts("vhost-vsock-device", {"id": "vsock0",
                                                                "guest-cid": vm.vsock_cid})])
        if vm.balloon:
            devs.append(["-device", opts("virtio-balloon-device", {
                "deflate-on-oom": str(vm.deflate_on_oom).lower(),
                "free-page-reporting": "true"})])
        return devs

    def argv(self, vm: MicroVM) -> list[str]:
        machine = opts("microvm", {"mem-share": "on" if vm.shares_of(ShareProto.VIRTIOFS)
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
        argv += ["-append", cmdline(vm),
                 "-chardev", CONSOLE_STDIO,
                 "-serial", "chardev:console0"]
        if vm.socket is not None:
            argv += ["-qmp", f"unix:{vm.socket},server,nowait"]
        for dev in self._devices(vm):
            argv += dev
        return argv + list(vm.hypervisor_extra_args)

    def launch(self, vm: MicroVM, ctx: RunContext) -> Launch:
        del ctx  # StratoVirt reads no generated files
        sockets = [] if vm.socket is None else [vm.socket]
        return Launch(variants={Accel.KVM: self.argv(vm)},
                      sockets=[*sockets, CONSOLE_SOCKET_PATH],
                      console_socket=(CONSOLE_STDIO, CONSOLE_SOCKET))

    def problems(self, vm: MicroVM) -> list[Problem]:
        hv = self.hypervisor
        out: list[Problem] = []
        if not MEM_MIN_MIB <= vm.mem <= MEM_MAX_MIB:
            out.append(Problem("microvm.mem", f"stratovirt takes {MEM_MIN_MIB} MiB to " +
                               f"{MEM_MAX_MIB} MiB of memory, got {vm.mem}"))
        limit = MAX_DEVICES.get(vm.arch)
        n = len(self._devices(vm))
        if limit is not None and n > limit:
            out.append(Problem("microvm", f"stratovirt's microvm machine has at most {limit} " +
                               f"devices on {vm.arch}, this VM needs {n} (entropy, disks, " +
                               "shares, interfaces, vsock, balloon)"))
        values: list[tuple[str, str | None]] = [("microvm.socket", vm.socket),
                                                ("microvm.storeDisk", vm.store_disk_path)]
        values += [(f"microvm.volumes[{i}].image", v.image) for i, v in enumerate(vm.volumes)]
        values += [(f"microvm.volumes[{i}].serial", v.serial) for i, v in enumerate(vm.volumes)]
        values += [(f"microvm.shares[{i}].socket", s.socket) for i, s in enumerate(vm.shares)]
        values += [(f"microvm.shares[{i}].tag", s.tag) for i, s in enumerate(vm.shares)]
        values += [(f"microvm.interfaces[{i}].id", x.id) for i, x in enumerate(vm.interfaces)]
        for path, v in values:
            if v is not None:
                out += unencodable(path, v, _UNSAFE, hv)
        return out

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
