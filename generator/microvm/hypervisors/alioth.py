"""alioth: `alioth boot` with serde_aco `key=value` options; no control channel at all.

Versions: 0.9.0 to 0.12.0 (capabilities' `versions`). Checked against google/alioth at v0.9.0
(alioth-cli/src/boot.rs, alioth/src/virtio/dev/net/net.rs) and v0.10.0-v0.12.0, HEAD c78f8bd:
alioth-cli/src/boot/boot.rs (`BootArgs`), alioth-cli/src/boot/config.rs (`BlkSpec`, `FsSpec`,
`NetSpec`, `VsockSpec`), alioth-cli/src/boot/boot_test.rs
(spellings), alioth-cli/src/objects.rs (`-o id_N,VALUE` for values with ',' or '='),
alioth/src/virtio/dev/net/tap.rs (`if_name`, `queue_pairs`), alioth/src/mem/mem.rs (`MemSpec`).
"""

from __future__ import annotations

from ..capabilities import Hypervisor
from ..config import MicroVM, ShareProto
from .base import (
    Accel,
    Backend,
    Encoder,
    Launch,
    RunContext,
    disks,
    kernel_cmdline,
    notify_kernel_params,
    queues,
)

# alioth 0.9-0.12 put stdin into raw mode for the serial console and stop when it is no
# terminal (alioth/src/device/console.rs, StdioConsole::new), as under microvm@.service: then
# util-linux `script` runs it on a pseudo-terminal (output still on stdout). The command
# string is bash-quoted by printf %q and run by this same bash (script runs $SHELL -c); no
# subshell on the way (bench/REPORT.md, section 1: the time until alioth is executed).
PTY_WRAPPER = ('if [ -t 0 ]; then exec "$@"; fi; printf -v cmd \'%q \' "$@"; ' +
               'SHELL=$BASH exec script --quiet --return --flush --command "$cmd" /dev/null')
# NetTapParam (0.9) / TapNetSpec (0.10+) require `mtu`: the Linux default of a tap link
TAP_MTU = 1500


class Objects(Encoder):
    """serde_aco syntax: values it cannot take inline go into `-o id_N,VALUE` objects (`argv`,
    which the command line ends with), so every value can be written."""

    def __init__(self) -> None:
        super().__init__(Hypervisor.ALIOTH, escape=self._object, bools=("true", "false"))
        self.argv: list[str] = []

    def _object(self, s: str) -> str:
        if "," not in s and "=" not in s:
            return s
        key = f"id_{len(self.argv) // 2}"
        self.argv += ["-o", f"{key},{s}"]
        return key


class Alioth(Backend):
    hypervisor = Hypervisor.ALIOTH

    def encoder(self) -> Objects:
        return Objects()

    def argv(self, vm: MicroVM, ctx: RunContext, accel: Accel, enc: Encoder) -> list[str]:
        del ctx, accel  # alioth reads no generated files; KVM only
        assert isinstance(enc, Objects)
        o = enc
        shared = bool(vm.shares_of(ShareProto.VIRTIOFS))
        # 0.9.0-0.12.0 all take --num-cpu and --cmd-line (0.10 added --cpu and --cmdline and
        # keeps these as a deprecated flag and an alias); --cpu/--cmdline fail on 0.9
        argv = ["alioth", "boot",
                "--num-cpu", str(vm.vcpu),
                # memfd backing; vhost-user (virtiofsd) needs it mapped shared
                "--memory", o.kv(None, {"size": f"{vm.mem}M", "backend": "memfd",
                                        "shared": True if shared else None}),
                "--kernel", vm.kernel]
        if vm.initrd is not None:
            argv += ["--initramfs", vm.initrd]
        argv += ["--cmd-line", kernel_cmdline(vm, *notify_kernel_params(vm), enc=o),
                 "--entropy"]
        for d in disks(vm):
            argv += ["--blk", o.kv("file", {"path": d.path, "readonly": d.read_only or None})]
        for s in vm.shares_of(ShareProto.VIRTIOFS):
            assert s.socket is not None
            argv += ["--fs", o.kv("vu", {"socket": s.socket, "tag": s.tag})]
        q = queues(vm)
        for iface in vm.interfaces:
            argv += ["--net", o.kv(None, {"if_name": iface.id, "mac": iface.mac, "mtu": TAP_MTU,
                                          "queue_pairs": q if q > 1 else None})]
        if vm.vsock_cid is not None:
            argv += ["--vsock", o.kv("vhost", {"cid": vm.vsock_cid})]
        return argv + o.argv + list(vm.hypervisor_extra_args)

    def launch(self, vm: MicroVM, ctx: RunContext) -> Launch:
        return Launch(variants={Accel.KVM: ["bash", "-c", PTY_WRAPPER, "alioth",
                                            *self.command(vm, ctx)]})
