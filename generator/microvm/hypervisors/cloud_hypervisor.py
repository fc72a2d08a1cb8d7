"""cloud-hypervisor: one `--flag key=value,...` per device, REST API on the control socket.

Checked against cloud-hypervisor/cloud-hypervisor: vmm/src/config.rs (the SYNTAX strings and
parsers), cloud-hypervisor/src/main.rs (flags and defaults), option_parser/src/lib.rs (quoting),
vmm/src/vm_config.rs (JSON names), docs/api.md. `vm_config()` builds the same VM as the REST
body of `PUT /api/v1/vm.create` (components.schemas.VmConfig of the OpenAPI file).
"""

from __future__ import annotations

from typing import Any

from ..capabilities import Hypervisor
from ..config import InterfaceType, MicroVM, ShareProto
from .base import (
    HYBRID_VSOCK_FILE,
    Accel,
    Backend,
    Control,
    ControlKind,
    Launch,
    RunContext,
    console,
    hybrid_vsock_socket,
    macvtap_fds,
    notify_credential,
    opts,
    queues,
    store_disk_serial,
)

REBOOT_PARAMS = ("reboot=t", "panic=-1")
API = "/api/v1"
# image_type on the command line -> the ImageType name in JSON (block/src/lib.rs)
_IMAGE_TYPE_JSON = {"raw": "Raw", "qcow2": "Qcow2", "vhd": "FixedVhd", "vhdx": "Vhdx"}
# virtio-fs defaults of vm_config.rs, required by the OpenAPI FsConfig
FS_NUM_QUEUES = 1
FS_QUEUE_SIZE = 1024


def value(v: str | int) -> str:
    """An option value as OptionParser reads it: quoted when it holds ',', '[', ']', '"' or
    edge whitespace; a '"' inside quotes is written twice (option_parser dequote)."""
    s = str(v)
    if s and not any(c in s for c in ',[]"') and s == s.strip():
        return s
    return '"' + s.replace('"', '""') + '"'


def kv(items: dict[str, str | int | bool | None]) -> str:
    """key=value,... with on/off for bools; None drops the key."""
    return opts(None, items, escape=value)


def cmdline(vm: MicroVM) -> str:
    return " ".join([f"console={console(vm)}", *REBOOT_PARAMS, *vm.kernel_params])


def _shared(vm: MicroVM) -> bool:
    # vhost-user (virtiofsd) maps guest memory, so it must be shared
    return bool(vm.shares_of(ShareProto.VIRTIOFS))


def _disks(vm: MicroVM) -> list[dict[str, Any]]:
    """Store disk first (read-only), then the volumes, as CLI-neutral records."""
    disks: list[dict[str, Any]] = []
    if vm.store_disk_path is not None:
        # the guest mounts it by this serial (without one cloud-hypervisor derives one from
        # the file)
        disks.append({"path": vm.store_disk_path, "readonly": True, "direct": False,
                      "serial": store_disk_serial(vm), "image_type": "raw"})
    for v in vm.volumes:
        disks.append({"path": v.image, "readonly": v.read_only, "direct": v.direct,
                      "serial": v.serial, "image_type": v.image_type})
    return disks


def _oem_strings(vm: MicroVM) -> list[str]:
    """SMBIOS OEM strings (type 11): the notify credential, read by the guest's systemd."""
    credential = notify_credential(vm)
    return [] if credential is None else [f"io.systemd.credential:{credential}"]


def _disk_queues(vm: MicroVM) -> int | None:
    """One virtio-blk queue per vCPU (as microvm.nix does); None keeps the default (one)."""
    return vm.vcpu if vm.vcpu > 1 else None


def _net_queues(vm: MicroVM) -> int | None:
    """num_queues counts rx and tx queues: two per pair; None keeps the default (one pair)."""
    q = queues(vm)
    return 2 * q if q > 1 else None


class CloudHypervisor(Backend):
    hypervisor = Hypervisor.CLOUD_HYPERVISOR

    def argv(self, vm: MicroVM) -> list[str]:
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
        argv = ["cloud-hypervisor",
                "--cpus", kv({"boot": vm.vcpu}),
                "--memory", kv(memory),
                "--kernel", vm.kernel]
        if vm.initrd is not None:
            argv += ["--initramfs", vm.initrd]
        argv += ["--cmdline", cmdline(vm),
                 # the guest console is the serial port on the runner's stdio
                 "--serial", "tty",
                 "--console", "off"]
        if vm.socket is not None:
            argv += ["--api-socket", kv({"path": vm.socket})]
        oem = _oem_strings(vm)
        # the platform uuid is the VM's machine id (derived from the host name when unset)
        platform = kv({"uuid": vm.machine_uuid})
        if oem:
            # a list is bracket syntax; the credential holds no ',', '[', ']' or '"'
            assert not any(c in "".join(oem) for c in ',[]"')
            platform = ",".join([platform, f"oem_strings=[{','.join(oem)}]"])
        argv += ["--platform", platform]
        if "--watchdog" not in vm.hypervisor_extra_args:
            # the guest's systemd pings the watchdog; cloud-hypervisor resets a hung guest (a
            # flag given twice is an error)
            argv.append("--watchdog")
        for d in _disks(vm):
            argv += ["--disk", kv({"path": d["path"], "readonly": d["readonly"] or None,
                                   "direct": d["direct"] or None, "serial": d["serial"],
                                   "image_type": d["image_type"],
                                   "num_queues": _disk_queues(vm)})]
        for s in vm.shares_of(ShareProto.VIRTIOFS):
            assert s.socket is not None
            argv += ["--fs", kv({"tag": s.tag, "socket": s.socket})]
        fds = macvtap_fds(vm)
        for iface in vm.interfaces:
            if iface.type is InterfaceType.MACVTAP:
                # a list of fds is bracket syntax, not a value to quote
                fd_list = "fd=[" + ",".join(map(str, fds[iface.id])) + "]"
                argv += ["--net", fd_list + "," + kv({"mac": iface.mac,
                                                       "num_queues": _net_queues(vm)})]
            else:
                argv += ["--net", kv({"tap": iface.id, "mac": iface.mac,
                                      "num_queues": _net_queues(vm)})]
        if vm.vsock_cid is not None:
            argv += ["--vsock", kv({"cid": vm.vsock_cid, "socket": hybrid_vsock_socket(vm)})]
        if vm.balloon:
            argv += ["--balloon", kv({"size": f"{vm.initial_balloon_mem}M",
                                      "deflate_on_oom": vm.deflate_on_oom,
                                      "free_page_reporting": True})]
        for dev in vm.devices:
            argv += ["--device", kv({"path": f"/sys/bus/pci/devices/{dev.path}"})]
        return argv + list(vm.hypervisor_extra_args)

    def launch(self, vm: MicroVM, ctx: RunContext) -> Launch:
        del ctx  # cloud-hypervisor reads no generated files (hybrid-vsock is for the host)
        sockets = [] if vm.socket is None else [vm.socket]
        files = {}
        if vm.vsock_cid is not None:
            sockets.append(hybrid_vsock_socket(vm))
            files[HYBRID_VSOCK_FILE] = hybrid_vsock_socket(vm) + "\n"
        return Launch(variants={Accel.KVM: self.argv(vm)}, files=files, sockets=sockets)

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


def vm_config(vm: MicroVM) -> dict[str, Any]:
    """The VM of `CloudHypervisor().argv(vm)` as a VmConfig body (vm_config.rs names, sizes in
    bytes). macvtap fds are not part of it: over the API they travel as SCM_RIGHTS data."""
    mib = 1 << 20
    memory: dict[str, Any] = {"size": vm.mem * mib, "shared": _shared(vm),
                              "mergeable": not _shared(vm) and not vm.hugepage_mem,
                              "hugepages": vm.hugepage_mem}
    if vm.hotplug_mem:
        memory.update({"hotplug_method": "VirtioMem", "hotplug_size": vm.hotplug_mem * mib,
                       "hotplugged_size": vm.hotplugged_mem * mib})
    payload: dict[str, Any] = {"kernel": vm.kernel, "cmdline": cmdline(vm)}
    if vm.initrd is not None:
        payload["initramfs"] = vm.initrd
    config: dict[str, Any] = {
        "cpus": {"boot_vcpus": vm.vcpu, "max_vcpus": vm.vcpu},
        "memory": memory,
        "payload": payload,
        "serial": {"mode": "Tty"},
        "console": {"mode": "Off"},
    }
    platform: dict[str, Any] = {"uuid": vm.machine_uuid}
    if oem := _oem_strings(vm):
        platform["oem_strings"] = oem
    if platform:
        config["platform"] = platform
    config["watchdog"] = True
    disks = []
    for d in _disks(vm):
        disk: dict[str, Any] = {"path": d["path"], "readonly": d["readonly"],
                                "direct": d["direct"],
                                "image_type": _IMAGE_TYPE_JSON[d["image_type"]]}
        if d["serial"] is not None:
            disk["serial"] = d["serial"]
        if (n := _disk_queues(vm)) is not None:
            disk["num_queues"] = n
        disks.append(disk)
    if disks:
        config["disks"] = disks
    fs = [{"tag": s.tag, "socket": s.socket, "num_queues": FS_NUM_QUEUES,
           "queue_size": FS_QUEUE_SIZE} for s in vm.shares_of(ShareProto.VIRTIOFS)]
    if fs:
        config["fs"] = fs
    nets = []
    for iface in vm.interfaces:
        net: dict[str, Any] = {"mac": iface.mac, "num_queues": _net_queues(vm) or 2}
        if iface.type is not InterfaceType.MACVTAP:
            net["tap"] = iface.id
        nets.append(net)
    if nets:
        config["net"] = nets
    if vm.vsock_cid is not None:
        config["vsock"] = {"cid": vm.vsock_cid, "socket": hybrid_vsock_socket(vm)}
    if vm.balloon:
        config["balloon"] = {"size": vm.initial_balloon_mem * mib,
                             "deflate_on_oom": vm.deflate_on_oom, "free_page_reporting": True}
    devices = [{"path": f"/sys/bus/pci/devices/{d.path}"} for d in vm.devices]
    if devices:
        config["devices"] = devices
    return config
