"""kvmtool: `lkvm run`, no control channel this generator can address.

Checked against kvmtool/kvmtool: builtin-run.c (options and the command line it prepends),
disk/core.c (`-d PATH[,ro][,direct]`, at most 4 disks), virtio/9p.c (`--9p DIR,TAG`),
virtio/net.c (`-n` keys, fd passing, single-queue tap open, default user network),
include/kvm/disk-image.h (MAX_DISK_IMAGES), Makefile (framebuffer on x86 only).
"""

from __future__ import annotations

from ..capabilities import Hypervisor
from ..config import InterfaceType, MicroVM, ShareProto
from .base import (
    Accel,
    Backend,
    Control,
    ControlKind,
    Encoder,
    Launch,
    RunContext,
    disks,
    kernel_cmdline,
    macvtap_fds,
    notify_kernel_params,
)

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


class Kvmtool(Backend):
    hypervisor = Hypervisor.KVMTOOL

    def encoder(self) -> Encoder:
        # options are split at ',' with no escape
        return Encoder(self.hypervisor, unsafe=",")

    def argv(self, vm: MicroVM, ctx: RunContext, accel: Accel, enc: Encoder) -> list[str]:
        del ctx, accel  # lkvm reads no generated files; KVM only
        argv = ["lkvm", "run",
                "--name", vm.host_name,
                "--cpus", str(vm.vcpu),
                "--mem", str(vm.mem),
                "--console", "serial",
                "--rng",
                "--kernel", vm.kernel]
        if vm.initrd is not None:
            argv += ["--initrd", vm.initrd]
        # lkvm prepends its own words (console=, reboot=k...) unless --nodefaults; ours come last
        argv += ["--params", kernel_cmdline(vm, *notify_kernel_params(vm), enc=enc)]
        if vm.hugepage_mem:
            argv += ["--hugetlbfs", HUGETLBFS]
        if vm.balloon:
            # resized by relative steps only (lkvm balloon --name NAME -i/-d MiB)
            argv.append("--balloon")
        for d in disks(vm):
            flags = (",ro" if d.read_only else "") + (",direct" if d.direct else "")
            argv += ["--disk", enc.given(d.option("image"), d.path, where="disk paths") + flags]
        for i, s in enumerate(vm.shares):
            if s.proto is ShareProto.NINEP:
                source = enc.given(f"microvm.shares[{i}].source", s.source,
                                   where="9p directories")
                argv += ["--9p", f"{source},{s.tag}"]
        argv += self._net(vm, enc)
        if vm.vsock_cid is not None:
            argv += ["--vsock", str(vm.vsock_cid)]
        for dev in vm.devices:
            argv += ["--vfio-pci", dev.path]
        if vm.graphics and vm.graphics_backend in _UI:
            argv.append(_UI[vm.graphics_backend])
        elif vm.graphics:
            enc.refuse("microvm.graphics.backend", f"kvmtool offers {' or '.join(sorted(_UI))}, " +
                       f"got {vm.graphics_backend!r}")
        return argv + list(vm.hypervisor_extra_args)

    def _net(self, vm: MicroVM, enc: Encoder) -> list[str]:
        argv: list[str] = []
        fds = macvtap_fds(vm)
        for i, iface in enumerate(vm.interfaces):
            vhost = ",vhost=1" if iface.vhost else ""
            match iface.type:
                case InterfaceType.USER:
                    spec = "mode=user"
                case InterfaceType.MACVTAP:
                    # the runner opened /dev/tapN; lkvm uses the fd as is
                    spec = f"mode=tap,fd={fds[iface.id][0]}{vhost}"
                case _:
                    name = enc.given(f"microvm.interfaces[{i}].id", iface.id,
                                     where="interface names")
                    spec = f"mode=tap,tapif={name}{vhost}"
            argv += ["--network", f"{spec},guest_mac={iface.mac}"]
        if not vm.interfaces:
            # without any -n, lkvm adds a user-mode network of its own
            argv += ["--network", "mode=none"]
        return argv

    def launch(self, vm: MicroVM, ctx: RunContext) -> Launch:
        # lkvm makes its instance socket in $HOME/.lkvm/ (kvm.c set_dir, resolved with
        # realpath): keep it in the working directory, the VM's state directory, rather than
        # a service user's home that may not exist or be writable
        return Launch(variants={Accel.KVM: self.command(vm, ctx)}, env={"HOME": "."})

    def balloon(self, vm: MicroVM) -> Control | None:
        if not vm.balloon:
            return None
        return Control(kind=ControlKind.ARGV,
                       argv=("bash", "-c", BALLOON_SCRIPT, "microvm-balloon", "@BALLOON_MIB@",
                             vm.host_name))
