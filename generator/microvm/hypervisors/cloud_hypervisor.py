"""cloud-hypervisor: one `--flag key=value,...` per device, REST API on the control socket.

Checked against cloud-hypervisor/cloud-hypervisor: vmm/src/config.rs (the SYNTAX strings and
parsers), cloud-hypervisor/src/main.rs (flags and defaults), option_parser/src/lib.rs (quoting),
vmm/src/vm_config.rs (JSON names), docs/api.md. tests/test_backends.py reads the argv back
as the REST body of `PUT /api/v1/vm.create` (components.schemas.VmConfig of the OpenAPI file),
which tests/test_specs.py checks against that file.
"""

from __future__ import annotations

from ..capabilities import Hypervisor
from ..config import JSON, InterfaceType, MicroVM, ShareProto
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
    hybrid_vsock_files,
    hybrid_vsock_socket,
    kernel_cmdline,
    macvtap_fds,
    notify_credential,
    queues,
)

API = "/api/v1"


def value(v: str | int) -> str:
    """An option value as OptionParser reads it: quoted when it holds ',', '[', ']', '"' or
    edge whitespace; a '"' inside quotes is written twice (option_parser dequote)."""
    s = str(v)
    if s and not any(c in s for c in ',[]"') and s == s.strip():
        return s
    return '"' + s.replace('"', '""') + '"'


# crosvm's GPU device for microvm.graphics, as for crosvm (hypervisors/crosvm.py) plus one
# display that opens no window of its own (the guest's Wayland clients draw through
# cross-domain)
GPU_PARAMS: dict[str, JSON] = {**CROSVM_GPU_PARAMS, "displays": [{"hidden": True}]}


def _shared(vm: MicroVM) -> bool:
    # vhost-user (virtiofsd, crosvm's GPU device) maps guest memory, so it must be shared
    return bool(vm.shares_of(ShareProto.VIRTIOFS)) or vm.graphics


def _disk_queues(vm: MicroVM) -> int | None:
    """One virtio-blk queue per vCPU (as microvm.nix does); None keeps the default (one)."""
    return vm.vcpu if vm.vcpu > 1 else None


def _net_queues(vm: MicroVM) -> int | None:
    """num_queues counts rx and tx queues: two per pair; None keeps the default (one pair)."""
    q = queues(vm)
    return 2 * q if q > 1 else None


def _memory(vm: MicroVM) -> dict[str, str | int | bool | None]:
    memory: dict[str, str | int | bool | None] = {"size": f"{vm.mem}M"}
    if _shared(vm):
        memory["shared"] = True
    elif not vm.hugepage_mem:
        # KSM; cloud-hypervisor refuses it together with shared memory
        memory["mergeable"] = True
    if vm.hugepage_mem:
        memory["hugepages"] = True
    if vm.hotplug_mem:
        memory.update({"hotplug_method": "virtio-mem",
                       "hotplug_size": f"{vm.hotplug_mem}M",
                       "hotplugged_size": f"{vm.hotplugged_mem}M"})
    return memory


class CloudHypervisor(Backend):
    hypervisor = Hypervisor.CLOUD_HYPERVISOR

    def encoder(self) -> Encoder:
        return Encoder(self.hypervisor, escape=value)

    def argv(self, vm: MicroVM, ctx: RunContext, accel: Accel, enc: Encoder) -> list[str]:
        del ctx, accel  # cloud-hypervisor reads no generated files; KVM only
        argv = ["cloud-hypervisor",
                "--cpus", enc.kv(None, {"boot": vm.vcpu}),
                "--memory", enc.kv(None, _memory(vm)),
                "--kernel", vm.kernel]
        if vm.initrd is not None:
            argv += ["--initramfs", vm.initrd]
        argv += ["--cmdline", kernel_cmdline(vm, enc=enc),
                 # the guest console is the serial port on the runner's stdio
                 "--serial", "tty",
                 "--console", "off"]
        if vm.socket is not None:
            argv += ["--api-socket", enc.kv(None, {"path": vm.socket})]
        argv += ["--platform", self._platform(vm, enc)]
        if "--watchdog" not in vm.hypervisor_extra_args:
            # the guest's systemd pings the watchdog; cloud-hypervisor resets a hung guest (a
            # flag given twice is an error)
            argv.append("--watchdog")
        return argv + self._devices(vm, enc) + list(vm.hypervisor_extra_args)

    def _platform(self, vm: MicroVM, enc: Encoder) -> str:
        """The platform uuid (the VM's machine id, derived from the host name when unset) and
        the SMBIOS OEM strings (type 11): the notify credential, read by the guest's systemd."""
        platform = enc.kv(None, {"uuid": vm.machine_uuid})
        credential = notify_credential(vm)
        if credential is None:
            return platform
        # a list is bracket syntax; the credential holds no ',', '[', ']' or '"'
        oem = f"io.systemd.credential:{credential}"
        assert not any(c in oem for c in ',[]"')
        return f"{platform},oem_strings=[{oem}]"

    def _devices(self, vm: MicroVM, enc: Encoder) -> list[str]:
        """Disks, shares, network, vsock, balloon, PCI passthrough."""
        kv = enc.kv
        argv: list[str] = []
        for d in disks(vm):
            # the guest mounts the store disk by its serial (without one cloud-hypervisor
            # derives one from the file)
            argv += ["--disk", kv(None, {"path": d.path, "readonly": d.read_only or None,
                                         "direct": d.direct or None, "serial": d.serial,
                                         "image_type": d.image_type,
                                         "num_queues": _disk_queues(vm)})]
        for s in vm.shares_of(ShareProto.VIRTIOFS):
            assert s.socket is not None
            argv += ["--fs", kv(None, {"tag": s.tag, "socket": s.socket})]
        fds = macvtap_fds(vm)
        for iface in vm.interfaces:
            nic = kv(None, {"mac": iface.mac, "num_queues": _net_queues(vm)})
            if iface.type is InterfaceType.MACVTAP:
                # a list of fds is bracket syntax, not a value to quote
                argv += ["--net", "fd=[" + ",".join(map(str, fds[iface.id])) + "]," + nic]
            else:
                argv += ["--net", kv(None, {"tap": iface.id}) + "," + nic]
        if vm.vsock_cid is not None:
            argv += ["--vsock", kv(None, {"cid": vm.vsock_cid,
                                          "socket": hybrid_vsock_socket(vm)})]
        if vm.graphics:
            # the GPU of cloud-hypervisor's GPU build: crosvm's device, which the runner starts
            argv += ["--gpu", kv(None, {"socket": vm.gpu_socket})]
        if vm.balloon:
            argv += ["--balloon", kv(None, {"size": f"{vm.initial_balloon_mem}M",
                                            "deflate_on_oom": vm.deflate_on_oom,
                                            "free_page_reporting": True})]
        for dev in vm.devices:
            argv += ["--device", kv(None, {"path": f"/sys/bus/pci/devices/{dev.path}"})]
        return argv

    def launch(self, vm: MicroVM, ctx: RunContext) -> Launch:
        # hybrid-vsock is for the host, not for cloud-hypervisor
        return Launch(variants={Accel.KVM: self.command(vm, ctx)}, files=hybrid_vsock_files(vm),
                      sockets=created_sockets(vm, hybrid_vsock=True),
                      gpu=gpu_daemon(vm, GPU_PARAMS))

    def shutdown(self, vm: MicroVM) -> Control | None:
        if vm.socket is None:
            return None
        return Control(kind=ControlKind.HTTP, socket=vm.socket, method="PUT",
                       path=f"{API}/vm.power-button")

    def balloon(self, vm: MicroVM) -> Control | None:
        if vm.socket is None or not vm.balloon:
            return None
        # VmResize.desired_balloon: the balloon's size in bytes
        return Control(kind=ControlKind.HTTP, socket=vm.socket, method="PUT",
                       path=f"{API}/vm.resize", payload='{"desired_balloon":@BALLOON_BYTES@}')
