"""The typed model of one VM: frozen dataclasses built from a schema-valid document with its
defaults applied (document.py builds them; nothing downstream of it reads raw JSON)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .capabilities import CAPABILITIES, Feature, Hypervisor

JSON = Any

# virtiofsd.threadPoolSize's spelling of "one thread per host CPU" (microvm.nix's default, which
# its runner hands to the shell; here the runner counts the CPUs itself)
NPROC = "`nproc`"

class ShareProto(StrEnum):
    NINEP = "9p"
    VIRTIOFS = "virtiofs"


class InterfaceType(StrEnum):
    USER = "user"
    TAP = "tap"
    MACVTAP = "macvtap"
    BRIDGE = "bridge"

    @property
    def uses_tap_device(self) -> bool:
        """tap and bridge interfaces are tap devices the hypervisor opens by name."""
        return self in (InterfaceType.TAP, InterfaceType.BRIDGE)


@dataclass(frozen=True)
class Volume:
    image: str
    size: int | None
    serial: str | None = None
    direct: bool = False
    read_only: bool = False
    label: str | None = None
    mount_point: str | None = None
    auto_create: bool = True
    mkfs_extra_args: tuple[str, ...] = ()
    fs_type: str = "ext4"
    image_type: str = "raw"

    @classmethod
    def from_json(cls, d: Mapping[str, JSON]) -> Volume:
        return cls(
            image=d["image"], size=d.get("size"), serial=d["serial"], direct=d["direct"],
            read_only=d["readOnly"], label=d["label"], mount_point=d["mountPoint"],
            auto_create=d["autoCreate"], mkfs_extra_args=tuple(d["mkfsExtraArgs"]),
            fs_type=d["fsType"], image_type=d["imageType"],
        )

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {
            "image": self.image, "serial": self.serial, "direct": self.direct,
            "readOnly": self.read_only, "label": self.label, "mountPoint": self.mount_point,
            "autoCreate": self.auto_create, "mkfsExtraArgs": list(self.mkfs_extra_args),
            "fsType": self.fs_type, "imageType": self.image_type,
        }
        if self.size is not None:
            out["size"] = self.size
        return out


@dataclass(frozen=True)
class Share:
    tag: str
    source: str
    mount_point: str
    proto: ShareProto = ShareProto.NINEP
    socket: str | None = None
    security_model: str = "none"
    read_only: bool = False
    cache: str = "auto"
    posix_acl: bool = True
    extra_args: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, d: Mapping[str, JSON], host_name: str) -> Share:
        proto = ShareProto(d["proto"])
        socket = d.get("socket")
        if proto is ShareProto.VIRTIOFS and socket is None:
            socket = f"{host_name}-virtiofs-{d['tag']}.sock"
        return cls(
            tag=d["tag"], source=d["source"], mount_point=d["mountPoint"], proto=proto,
            socket=socket, security_model=d["securityModel"], read_only=d["readOnly"],
            cache=d["cache"], posix_acl=d["posixAcl"], extra_args=tuple(d["extraArgs"]),
        )

    def to_json(self) -> dict[str, JSON]:
        return {
            "tag": self.tag, "source": self.source, "mountPoint": self.mount_point,
            "proto": str(self.proto), "socket": self.socket,
            "securityModel": self.security_model, "readOnly": self.read_only,
            "cache": self.cache, "posixAcl": self.posix_acl, "extraArgs": list(self.extra_args),
        }


@dataclass(frozen=True)
class Interface:
    type: InterfaceType
    id: str
    mac: str
    macvtap_link: str | None = None
    macvtap_mode: str | None = None
    bridge: str | None = None
    vhost: bool = False

    @classmethod
    def from_json(cls, d: Mapping[str, JSON]) -> Interface:
        return cls(
            type=InterfaceType(d["type"]), id=d["id"], mac=d["mac"],
            macvtap_link=d["macvtap"]["link"], macvtap_mode=d["macvtap"]["mode"],
            bridge=d["bridge"], vhost=d["tap"]["vhost"],
        )

    def to_json(self) -> dict[str, JSON]:
        return {
            "type": str(self.type), "id": self.id, "mac": self.mac,
            "macvtap": {"link": self.macvtap_link, "mode": self.macvtap_mode},
            "bridge": self.bridge, "tap": {"vhost": self.vhost},
        }


@dataclass(frozen=True)
class ForwardPort:
    host_port: int
    guest_port: int
    proto: str = "tcp"
    direction: str = "host"
    host_address: str = ""
    guest_address: str = ""

    @classmethod
    def from_json(cls, d: Mapping[str, JSON]) -> ForwardPort:
        return cls(
            host_port=d["host"]["port"], guest_port=d["guest"]["port"], proto=d["proto"],
            direction=d["from"], host_address=d["host"]["address"],
            guest_address=d["guest"]["address"],
        )

    def to_json(self) -> dict[str, JSON]:
        return {
            "from": self.direction, "proto": self.proto,
            "host": {"address": self.host_address, "port": self.host_port},
            "guest": {"address": self.guest_address, "port": self.guest_port},
        }


@dataclass(frozen=True)
class Device:
    bus: str
    path: str
    qemu_id: str | None = None
    qemu_bus: str | None = None
    qemu_device_extra_args: str | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, JSON]) -> Device:
        q = d["qemu"]
        return cls(bus=d["bus"], path=d["path"], qemu_id=q["id"], qemu_bus=q["bus"],
                   qemu_device_extra_args=q["deviceExtraArgs"])

    def to_json(self) -> dict[str, JSON]:
        return {"bus": self.bus, "path": self.path, "qemu": {
            "id": self.qemu_id, "bus": self.qemu_bus,
            "deviceExtraArgs": self.qemu_device_extra_args}}


@dataclass(frozen=True)
class QemuOptions:
    machine: str | None = None
    machine_opts: tuple[tuple[str, str], ...] | None = None
    extra_args: tuple[str, ...] = ()
    serial_console: bool = True


@dataclass(frozen=True)
class VirtiofsdOptions:
    inode_file_handles: str | None = "prefer"
    # a number, NPROC (one thread per host CPU, counted when virtiofsd starts) or None
    thread_pool_size: int | str | None = NPROC
    group: str | None = "kvm"
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class MicroVM:
    """One VM, fully defaulted and validated. Built only by `from_document`/`load`."""

    host_name: str
    kernel: str
    hypervisor: Hypervisor = Hypervisor.QEMU
    system: str = "x86_64-linux"
    toplevel: str | None = None
    runtime_path: tuple[str, ...] = ()
    vcpu: int = 1
    mem: int = 512
    hugepage_mem: bool = False
    hotplug_mem: int = 0
    hotplugged_mem: int = 0
    balloon: bool = False
    initial_balloon_mem: int = 0
    deflate_on_oom: bool = True
    cpu: str | None = None
    optimize: bool = True
    pre_start: str = ""
    extra_args_script: str | None = None
    socket: str | None = None
    user: str | None = None
    initrd: str | None = None
    kernel_params: tuple[str, ...] = ()
    store_on_disk: bool = False
    store_disk: str | None = None
    store_disk_type: str = "erofs"
    writable_store_overlay: str | None = None
    volumes: tuple[Volume, ...] = ()
    shares: tuple[Share, ...] = ()
    interfaces: tuple[Interface, ...] = ()
    forward_ports: tuple[ForwardPort, ...] = ()
    devices: tuple[Device, ...] = ()
    vsock_cid: int | None = None
    graphics: bool = False
    graphics_backend: str = "gtk"
    credential_files: tuple[tuple[str, str], ...] = ()
    pretty_procnames: bool = True
    machine_id: str | None = None
    virtiofsd: VirtiofsdOptions = field(default_factory=VirtiofsdOptions)
    qemu: QemuOptions = field(default_factory=QemuOptions)
    # extraArgs of each hypervisor, keyed by hypervisor
    extra_args: tuple[tuple[Hypervisor, tuple[str, ...]], ...] = ()
    firecracker_drive_io_engine: str = "Async"
    firecracker_cpu: Mapping[str, JSON] | None = None
    firecracker_extra_config: Mapping[str, JSON] = field(default_factory=dict)
    crosvm_pivot_root: str | None = None
    vfkit_log_level: str | None = "info"
    # the document as given, for the round trip and share/microvm/vm.json
    socket_explicit: bool = False
    store_on_disk_explicit: bool = False

    # -- derived views ---------------------------------------------------------------------
    @property
    def arch(self) -> str:
        return self.system.split("-", 1)[0]

    @property
    def machine_uuid(self) -> str:
        """microvm.machineId, or the one derived from the host name when it is null."""
        return self.machine_id or derived_machine_id(self.host_name)

    @property
    def cmdline(self) -> str:
        return " ".join(self.kernel_params)

    @property
    def hypervisor_extra_args(self) -> tuple[str, ...]:
        return dict(self.extra_args).get(self.hypervisor, ())

    def shares_of(self, proto: ShareProto) -> list[Share]:
        return [s for s in self.shares if s.proto is proto]

    def interfaces_of(self, *types: InterfaceType) -> list[Interface]:
        return [i for i in self.interfaces if i.type in types]

    @property
    def store_disk_path(self) -> str | None:
        return self.store_disk if self.store_on_disk else None

    # -- JSON ------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, doc: Mapping[str, JSON]) -> MicroVM:
        """Build the model from a schema-valid document with defaults applied."""
        m = doc["microvm"]
        host_name = doc["hostName"]
        hypervisor = Hypervisor(m["hypervisor"])
        shares = tuple(Share.from_json(s, host_name) for s in m["shares"])
        if "socket" in m:
            socket = m["socket"]
        elif CAPABILITIES[hypervisor].supports(Feature.CONTROL_SOCKET):
            socket = f"{host_name}.sock"
        else:
            socket = None
        store_on_disk = m.get("storeOnDisk")
        if store_on_disk is None:
            store_on_disk = not any(s.source == "/nix/store" for s in shares)
        q = m["qemu"]
        vfsd = m["virtiofsd"]
        fc = m["firecracker"]
        return cls(
            host_name=host_name, kernel=m["kernel"], hypervisor=hypervisor,
            system=doc["system"], toplevel=doc["toplevel"],
            runtime_path=tuple(doc["runtimePath"]), vcpu=m["vcpu"], mem=m["mem"],
            hugepage_mem=m["hugepageMem"], hotplug_mem=m["hotplugMem"],
            hotplugged_mem=(m["hotplugMem"] if m["hotpluggedMem"] is None
                            else m["hotpluggedMem"]),
            balloon=m["balloon"], initial_balloon_mem=m["initialBalloonMem"],
            deflate_on_oom=m["deflateOnOOM"], cpu=m["cpu"], optimize=m["optimize"]["enable"],
            pre_start=m["preStart"], extra_args_script=m["extraArgsScript"], socket=socket,
            user=m["user"], initrd=m["initrdPath"], kernel_params=tuple(m["kernelParams"]),
            store_on_disk=store_on_disk, store_disk=m["storeDisk"],
            store_disk_type=m["storeDiskType"],
            writable_store_overlay=m["writableStoreOverlay"],
            volumes=tuple(Volume.from_json(v) for v in m["volumes"]), shares=shares,
            interfaces=tuple(Interface.from_json(i) for i in m["interfaces"]),
            forward_ports=tuple(ForwardPort.from_json(f) for f in m["forwardPorts"]),
            devices=tuple(Device.from_json(d) for d in m["devices"]),
            vsock_cid=m["vsock"]["cid"], graphics=m["graphics"]["enable"],
            graphics_backend=m["graphics"]["backend"],
            credential_files=tuple(sorted(m["credentialFiles"].items())),
            pretty_procnames=m["prettyProcnames"], machine_id=m.get("machineId"),
            virtiofsd=VirtiofsdOptions(
                inode_file_handles=vfsd["inodeFileHandles"],
                thread_pool_size=vfsd["threadPoolSize"], group=vfsd["group"],
                extra_args=tuple(vfsd["extraArgs"])),
            qemu=QemuOptions(
                machine=q["machine"],
                machine_opts=(None if q["machineOpts"] is None
                              else tuple(q["machineOpts"].items())),
                extra_args=tuple(q["extraArgs"]), serial_console=q["serialConsole"]),
            extra_args=tuple((hv, tuple(m[str(hv)]["extraArgs"])) for hv in Hypervisor),
            firecracker_drive_io_engine=fc["driveIoEngine"], firecracker_cpu=fc["cpu"],
            firecracker_extra_config=fc["extraConfig"],
            crosvm_pivot_root=m["crosvm"]["pivotRoot"], vfkit_log_level=m["vfkit"]["logLevel"],
            socket_explicit="socket" in m, store_on_disk_explicit="storeOnDisk" in m,
        )

    def to_json(self) -> dict[str, JSON]:
        """The document with every default spelled out; `from_json` of it gives `self` back."""
        xargs = dict(self.extra_args)
        m: dict[str, JSON] = {
            "hypervisor": str(self.hypervisor), "vcpu": self.vcpu, "mem": self.mem,
            "hugepageMem": self.hugepage_mem, "hotplugMem": self.hotplug_mem,
            "hotpluggedMem": self.hotplugged_mem, "balloon": self.balloon,
            "initialBalloonMem": self.initial_balloon_mem, "deflateOnOOM": self.deflate_on_oom,
            "cpu": self.cpu, "optimize": {"enable": self.optimize}, "preStart": self.pre_start,
            "extraArgsScript": self.extra_args_script, "user": self.user,
            "kernel": self.kernel, "initrdPath": self.initrd,
            "kernelParams": list(self.kernel_params), "storeDisk": self.store_disk,
            "storeDiskType": self.store_disk_type,
            "writableStoreOverlay": self.writable_store_overlay,
            "volumes": [v.to_json() for v in self.volumes],
            "shares": [s.to_json() for s in self.shares],
            "interfaces": [i.to_json() for i in self.interfaces],
            "forwardPorts": [f.to_json() for f in self.forward_ports],
            "devices": [d.to_json() for d in self.devices],
            "vsock": {"cid": self.vsock_cid},
            "graphics": {"enable": self.graphics, "backend": self.graphics_backend},
            "credentialFiles": dict(self.credential_files),
            "prettyProcnames": self.pretty_procnames, "machineId": self.machine_id,
            "virtiofsd": {
                "inodeFileHandles": self.virtiofsd.inode_file_handles,
                "threadPoolSize": self.virtiofsd.thread_pool_size,
                "group": self.virtiofsd.group, "extraArgs": list(self.virtiofsd.extra_args)},
            "qemu": {
                "machine": self.qemu.machine,
                "machineOpts": (None if self.qemu.machine_opts is None
                                else dict(self.qemu.machine_opts)),
                "extraArgs": list(self.qemu.extra_args),
                "serialConsole": self.qemu.serial_console},
        }
        for hv in Hypervisor:
            if hv is not Hypervisor.QEMU:
                m[str(hv)] = {"extraArgs": list(xargs.get(hv, ()))}
        m["firecracker"].update({
            "driveIoEngine": self.firecracker_drive_io_engine, "cpu": self.firecracker_cpu,
            "extraConfig": dict(self.firecracker_extra_config)})
        m["crosvm"]["pivotRoot"] = self.crosvm_pivot_root
        m["vfkit"]["logLevel"] = self.vfkit_log_level
        if self.socket_explicit:
            m["socket"] = self.socket
        if self.store_on_disk_explicit:
            m["storeOnDisk"] = self.store_on_disk
        return {
            "formatVersion": 1, "hostName": self.host_name, "system": self.system,
            "toplevel": self.toplevel, "runtimePath": list(self.runtime_path), "microvm": m,
        }


def derived_machine_id(host_name: str) -> str:
    """The machine id of a VM whose machineId is null: microvm.nix's derivation (SHA-256 of
    "microvm.nix:" + the host name, as 8-4-4-4-12 hex digits), so a VM keeps its machine id
    when it moves here. nix/modules/microvm/options.nix computes the same (tests compare)."""
    h = hashlib.sha256(f"microvm.nix:{host_name}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
