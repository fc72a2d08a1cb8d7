"""kvmtool: `lkvm run`, no control channel this generator can address.

Checked against kvmtool/kvmtool: builtin-run.c (options and the command line it prepends),
disk/core.c (`-d PATH[,ro][,direct]`, at most 4 disks), virtio/9p.c (`--9p DIR,TAG`),
virtio/net.c (`-n` keys, fd passing, single-queue tap open, default user network),
include/kvm/disk-image.h (MAX_DISK_IMAGES), Makefile (framebuffer on x86 only).
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
    unencodable,
)

REBOOT_PARAMS = ("reboot=k", "panic=1")
MAX_DISKS = 4  # include/kvm/disk-image.h MAX_DISK_IMAGES
HUGETLBFS = "/dev/hugepages"
# microvm-balloon SIZE sets the balloon's absolute size; `lkvm balloon` (builtin-balloon.c)
# inflates or deflates it by an amount. The size last set is kept beside lkvm's instance
# socket and counts while it is newer than that socket (a new lkvm run starts deflated).
# Arguments: the size in MiB, the instance name; run in the working directory (HOME=.).
BALLOON_SCRIPT = ('set -eu; want=$1; name=$2; sock=.lkvm/$name.sock; ' +
                  'state=.lkvm/$name.balloon-mib; have=0; ' +
                  'if [ -f "$state" ] && [ "$state" -nt "$sock" ]; then ' +
                  'have=$(cat -- "$state"); fi; ' +
                  'if [ "$want" -gt "$have" ]; then ' +
                  'HOME=. lkvm balloon --name "$name" --inflate "$((want - have))"; ' +
                  'elif [ "$want" -lt "$have" ]; then ' +
                  'HOME=. lkvm balloon --name "$name" --deflate "$((have - want))"; fi; ' +
                  'printf \'%s\\n\' "$want" > "$state"')
# graphics backend -> lkvm framebuffer UI
_UI = {"gtk": "--gtk", "headless": "--vnc"}


def cmdline(vm: MicroVM) -> str:
    # lkvm prepends its own words (console=, reboot=k...) unless --nodefaults; ours come last
    return " ".join([f"console={console(vm)}", *REBOOT_PARAMS, *notify_kernel_params(vm),
                     *vm.kernel_params])


def _disks(vm: MicroVM) -> list[tuple[str, str, str]]:
    """(option path, image, flags) for the store disk and each volume."""
    disks = []
    if vm.store_disk_path is not None:
        disks.append(("microvm.storeDisk", vm.store_disk_path, ",ro"))
    for i, v in enumerate(vm.volumes):
        flags = (",ro" if v.read_only else "") + (",direct" if v.direct else "")
        disks.append((f"microvm.volumes[{i}].image", v.image, flags))
    return disks


class Kvmtool(Backend):
    hypervisor = Hypervisor.KVMTOOL

    def argv(self, vm: MicroVM) -> list[str]:
        argv = ["lkvm", "run",
                "--name", vm.host_name,
                "--cpus", str(vm.vcpu),
                "--mem", str(vm.mem),
                "--console", "serial",
                "--rng",
                "--kernel", vm.kernel]
        if vm.initrd is not None:
            argv += ["--initrd", vm.initrd]
        argv += ["--params", cmdline(vm)]
        if vm.hugepage_mem:
            argv += ["--hugetlbfs", HUGETLBFS]
        if vm.balloon:
            # resized by relative steps only (lkvm balloon --name NAME -i/-d MiB)
            argv.append("--balloon")
        for _, image, flags in _disks(vm):
            argv += ["--disk", image + flags]
        for s in vm.shares_of(ShareProto.NINEP):
            argv += ["--9p", f"{s.source},{s.tag}"]
        fds = macvtap_fds(vm)
        for iface in vm.interfaces:
            vhost = ",vhost=1" if iface.vhost else ""
            match iface.type:
                case InterfaceType.USER:
                    spec = "mode=user"
                case InterfaceType.MACVTAP:
                    # the runner opened /dev/tapN; lkvm uses the fd as is
                    spec = f"mode=tap,fd={fds[iface.id][0]}{vhost}"
                case _:
                    spec = f"mode=tap,tapif={iface.id}{vhost}"
            argv += ["--network", f"{spec},guest_mac={iface.mac}"]
        if not vm.interfaces:
            # without any -n, lkvm adds a user-mode network of its own
            argv += ["--network", "mode=none"]
        if vm.vsock_cid is not None:
            argv += ["--vsock", str(vm.vsock_cid)]
        for d in vm.devices:
            argv += ["--vfio-pci", d.path]
        if vm.graphics and vm.graphics_backend in _UI:
            argv.append(_UI[vm.graphics_backend])
        return argv + list(vm.hypervisor_extra_args)

    def launch(self, vm: MicroVM, ctx: RunContext) -> Launch:
        del ctx  # lkvm reads no generated files
        # lkvm makes its instance socket in $HOME/.lkvm/ (kvm.c set_dir, resolved with
        # realpath): keep it in the working directory, the VM's state directory, rather than
        # a service user's home that may not exist or be writable
        return Launch(variants={Accel.KVM: self.argv(vm)}, env={"HOME": "."})

    def balloon(self, vm: MicroVM) -> Control | None:
        if not vm.balloon:
            return None
        return Control(kind=ControlKind.ARGV,
                       argv=("bash", "-c", BALLOON_SCRIPT, "microvm-balloon", "@BALLOON_MIB@",
                             vm.host_name))

    def problems(self, vm: MicroVM) -> list[Problem]:
        hv = self.hypervisor
        out: list[Problem] = []
        disks = _disks(vm)
        if len(disks) > MAX_DISKS:
            out.append(Problem("microvm.volumes", f"kvmtool attaches at most {MAX_DISKS} disks " +
                               f"(the store disk counts), got {len(disks)}"))
        for path, image, _ in disks:
            out += unencodable(path, image, ",", hv, "disk paths")
        for i, s in enumerate(vm.shares):
            if s.proto is ShareProto.NINEP:
                out += unencodable(f"microvm.shares[{i}].source", s.source, ",", hv,
                                   "9p directories")
        for i, iface in enumerate(vm.interfaces):
            if iface.type is not InterfaceType.USER:
                out += unencodable(f"microvm.interfaces[{i}].id", iface.id, ",", hv,
                                   "interface names")
        if vm.graphics and vm.graphics_backend not in _UI:
            out.append(Problem("microvm.graphics.backend",
                               f"kvmtool offers {' or '.join(sorted(_UI))}, " +
                               f"got {vm.graphics_backend!r}"))
        return out
