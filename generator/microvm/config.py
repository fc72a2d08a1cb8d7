"""The typed model of one VM: frozen dataclasses built from a schema-valid document with its
defaults applied (document.py builds them; nothing downstream of it reads raw JSON).

Each field names the option it holds (`opt("readOnly")`); `from_json` and `to_json` are
written once for every class and walk those names. An option of the schema that no field names
yet is still part of the model: it lands in the object's `others`, by option path, and goes back
into the document unchanged (tests/test_single_source.py adds one to the schema and follows it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, TypeVar

from . import netplan
from .capabilities import CAPABILITIES, Feature, Hypervisor
from .options import schema

JSON = Any
T = TypeVar("T")

# virtiofsd.threadPoolSize's spelling of "one thread per host CPU" (microvm.nix's default, which
# its runner hands to the shell; here the runner counts the CPUs itself), and the other way
# microvm.nix users spell it; no other shell text is taken (the schema's pattern)
NPROC = "`nproc`"
NPROC_SPELLINGS = (NPROC, "$(nproc)")


class ShareProto(StrEnum):
    NINEP = "9p"
    VIRTIOFS = "virtiofs"


class InterfaceType(StrEnum):
    USER = "user"
    TAP = "tap"
    MACVTAP = "macvtap"
    BRIDGE = "bridge"
    NETWORK = "network"  # a tap on a declared host network (netplan.py)

    @property
    def uses_tap_device(self) -> bool:
        """tap, bridge and network interfaces are tap devices the hypervisor opens by name."""
        return self in (InterfaceType.TAP, InterfaceType.BRIDGE, InterfaceType.NETWORK)


# -- the mapping between fields and options ---------------------------------------------------

def opt(path: str, *, item: type | None = None, kind: Callable[[Any], Any] | None = None,
        omit_none: bool = False) -> Any:
    """A field holding the option at `path` (dotted, relative to the object's JSON). It has no
    default of its own: the schema's defaults are applied before the model is built, and an
    option the document leaves unset that has no default there is None.
    item: the class of the object, or of a list's items; kind: converts a JSON value (an
    enum); omit_none: left out of the JSON while None (neither a default nor a null)."""
    return field(metadata={"json": path, "item": item, "kind": kind, "omit_none": omit_none})


def computed(*covers: str) -> Any:
    """A field whose value depends on other options (the class's `_decode`/`_encode` handle it);
    `covers`: the option paths it stands for."""
    return field(default=None, metadata={"covers": covers})


def others_field() -> Any:
    return field(default_factory=dict, metadata={"others": True})


def _lookup(d: Mapping[str, JSON], path: str) -> tuple[bool, JSON]:
    for part in path.split("."):
        if not isinstance(d, Mapping) or part not in d:
            return False, None
        d = d[part]
    return True, d


def _place(d: dict[str, JSON], path: str, value: JSON) -> None:
    *groups, last = path.split(".")
    for part in groups:
        d = d.setdefault(part, {})
    d[last] = value


def _node(sch: Mapping[str, JSON], path: str) -> Mapping[str, JSON]:
    for part in path.split("."):
        sch = sch["properties"][part]
    return sch


def _leaves(d: Mapping[str, JSON], sch: Mapping[str, JSON], prefix: str = ""
            ) -> dict[str, JSON]:
    """Option path -> value of every option in `d` (groups walked, not returned)."""
    out: dict[str, JSON] = {}
    for key, value in d.items():
        sub = sch.get("properties", {}).get(key, {})
        path = f"{prefix}{key}"
        if isinstance(value, dict) and "properties" in sub:
            out |= _leaves(value, sub, f"{path}.")
        else:
            out[path] = value
    return out


def _covered(cls: type) -> list[str]:
    out: list[str] = []
    for f in fields(cls):
        out += [f.metadata["json"]] if "json" in f.metadata else list(f.metadata.get("covers", ()))
    return out


def decode(cls: type[T], d: Mapping[str, JSON], sch: Mapping[str, JSON],
         ctx: Mapping[str, JSON]) -> T:
    """An instance of `cls` from its JSON `d` (schema node `sch`; ctx: values computed
    defaults need, such as the host name)."""
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        md = f.metadata
        if "json" not in md:
            continue
        found, value = _lookup(d, md["json"])
        if not found:
            # unset, and the schema has no default for it
            kwargs[f.name] = None
            continue
        if md["item"] is not None and isinstance(value, list):
            items = _node(sch, md["json"])["items"]
            value = tuple(decode(md["item"], x, items, ctx) for x in value)
        elif md["item"] is not None:
            value = decode(md["item"], value, _node(sch, md["json"]), ctx)
        elif md["kind"] is not None:
            value = md["kind"](value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    covered = _covered(cls)
    kwargs["others"] = {path: value for path, value in _leaves(d, sch).items()
                        if not any(path == c or path.startswith(f"{c}.") for c in covered)}
    special: Callable[..., dict[str, Any]] | None = getattr(cls, "_decode", None)
    if special is not None:
        kwargs |= special(d, ctx, kwargs)
    return cls(**kwargs)


def encode(obj: Any) -> dict[str, JSON]:
    """The JSON of a model object: every option it holds, `others` included."""
    out: dict[str, JSON] = {}
    for f in fields(obj):
        md = f.metadata
        if "json" not in md:
            continue
        value = getattr(obj, f.name)
        if value is None and md["omit_none"]:
            continue
        _place(out, md["json"], _to_json(value))
    for path, value in obj.others.items():
        _place(out, path, value)
    special: Callable[[dict[str, JSON]], None] | None = getattr(obj, "_encode", None)
    if special is not None:
        special(out)
    return out


def _to_json(value: Any) -> JSON:
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, tuple):
        return [_to_json(x) for x in value]
    if hasattr(value, "__dataclass_fields__"):
        return encode(value)
    return value


@dataclass(frozen=True, kw_only=True)
class Volume:
    image: str = opt("image")
    size: int | None = opt("size", omit_none=True)
    serial: str | None = opt("serial")
    direct: bool = opt("direct")
    read_only: bool = opt("readOnly")
    label: str | None = opt("label")
    mount_point: str | None = opt("mountPoint")
    auto_create: bool = opt("autoCreate")
    mkfs_extra_args: tuple[str, ...] = opt("mkfsExtraArgs")
    fs_type: str = opt("fsType")
    image_type: str = opt("imageType")
    others: Mapping[str, JSON] = others_field()


@dataclass(frozen=True, kw_only=True)
class Share:
    tag: str = opt("tag")
    source: str = opt("source")
    mount_point: str = opt("mountPoint")
    proto: ShareProto = opt("proto", kind=ShareProto)
    # default: "<hostName>-virtiofs-<tag>.sock" for virtiofs (x-computedDefault)
    socket: str | None = opt("socket")
    security_model: str = opt("securityModel")
    read_only: bool = opt("readOnly")
    cache: str = opt("cache")
    posix_acl: bool = opt("posixAcl")
    extra_args: tuple[str, ...] = opt("extraArgs")
    others: Mapping[str, JSON] = others_field()

    @staticmethod
    def _decode(d: Mapping[str, JSON], ctx: Mapping[str, JSON], kw: Mapping[str, Any]
              ) -> dict[str, Any]:
        if kw.get("proto") is ShareProto.VIRTIOFS and kw.get("socket") is None:
            return {"socket": f"{ctx['hostName']}-virtiofs-{d['tag']}.sock"}
        return {}


@dataclass(frozen=True, kw_only=True)
class Interface:
    type: InterfaceType = opt("type", kind=InterfaceType)
    id: str = opt("id")
    mac: str = opt("mac")
    macvtap_link: str | None = opt("macvtap.link")
    macvtap_mode: str | None = opt("macvtap.mode")
    bridge: str | None = opt("bridge")
    # type = "network": the declared host network; id and mac default to what netplan.py
    # derives from it and the host name (x-computedDefault; the Nix module computes the same).
    # Another type's id and mac are None only in a document without them, which validation
    # refuses before anything reads them.
    network: str | None = opt("network")
    # the NixOS guest's side of a network interface: static or DHCP, and pinned addresses (the
    # host's declaration takes the pins; the runner needs none of them)
    addressing: str = opt("addressing")
    ipv4: str | None = opt("ipv4")
    ipv6: str | None = opt("ipv6")
    vhost: bool = opt("tap.vhost")
    others: Mapping[str, JSON] = others_field()

    @staticmethod
    def _decode(d: Mapping[str, JSON], ctx: Mapping[str, JSON], kw: Mapping[str, Any]
                ) -> dict[str, Any]:
        network = kw.get("network")
        if kw.get("type") is not InterfaceType.NETWORK or not isinstance(network, str):
            return {}
        host = str(ctx["hostName"])
        return {"id": kw.get("id") or netplan.tap_name(network, host),
                "mac": kw.get("mac") or netplan.mac_address(network, host)}

    @property
    def host_bridge(self) -> str | None:
        """The host bridge the runner's tap-up joins the tap to: a bridge interface's own, a
        network interface's network's."""
        if self.type is InterfaceType.NETWORK and self.network is not None:
            return netplan.bridge_name(self.network)
        return self.bridge if self.type is InterfaceType.BRIDGE else None


@dataclass(frozen=True, kw_only=True)
class ForwardPort:
    host_port: int = opt("host.port")
    guest_port: int = opt("guest.port")
    proto: str = opt("proto")
    direction: str = opt("from")
    host_address: str = opt("host.address")
    guest_address: str = opt("guest.address")
    others: Mapping[str, JSON] = others_field()


@dataclass(frozen=True, kw_only=True)
class Device:
    bus: str = opt("bus")
    path: str = opt("path")
    qemu_id: str | None = opt("qemu.id")
    qemu_bus: str | None = opt("qemu.bus")
    qemu_device_extra_args: str | None = opt("qemu.deviceExtraArgs")
    others: Mapping[str, JSON] = others_field()


def _pairs_or_none(value: Mapping[str, str] | None) -> tuple[tuple[str, str], ...] | None:
    return None if value is None else tuple(value.items())


@dataclass(frozen=True, kw_only=True)
class PcieRootPort:
    id: str = opt("id")
    bus: str | None = opt("bus")
    chassis: int | None = opt("chassis")
    slot: str | None = opt("slot")
    addr: str | None = opt("addr")
    others: Mapping[str, JSON] = others_field()


@dataclass(frozen=True, kw_only=True)
class QemuOptions:
    machine: str | None = opt("machine")
    machine_opts: tuple[tuple[str, str], ...] | None = opt("machineOpts", kind=_pairs_or_none)
    extra_args: tuple[str, ...] = opt("extraArgs")
    serial_console: bool = opt("serialConsole")
    pcie_root_ports: tuple[PcieRootPort, ...] = opt("pcieRootPorts", item=PcieRootPort)
    others: Mapping[str, JSON] = others_field()

    def _encode(self, out: dict[str, JSON]) -> None:
        if self.machine_opts is not None:
            out["machineOpts"] = dict(self.machine_opts)


@dataclass(frozen=True, kw_only=True)
class VirtiofsdOptions:
    inode_file_handles: str | None = opt("inodeFileHandles")
    # a number, a number as a string ("4", as microvm.nix's option takes it), NPROC or
    # "$(nproc)" (one thread per host CPU, counted when virtiofsd starts) or None
    thread_pool_size: int | str | None = opt("threadPoolSize")
    group: str | None = opt("group")
    extra_args: tuple[str, ...] = opt("extraArgs")
    others: Mapping[str, JSON] = others_field()

    @property
    def threads_per_cpu(self) -> bool:
        """One worker thread per host CPU (counted by the runner when virtiofsd starts)."""
        return self.thread_pool_size in NPROC_SPELLINGS

    @property
    def thread_count(self) -> int | None:
        """A fixed thread pool size, given as a number or a string of digits."""
        size = self.thread_pool_size
        if isinstance(size, str) and size.isascii() and size.isdigit():
            return int(size)
        return size if isinstance(size, int) else None


def _sorted_pairs(value: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(value.items()))


@dataclass(frozen=True, kw_only=True)
class MicroVM:
    """One VM, fully defaulted and validated. Built only by `document.from_document`
    (`document.load` reads a file first)."""

    host_name: str = opt("hostName")
    kernel: str = opt("microvm.kernel")
    hypervisor: Hypervisor = opt("microvm.hypervisor", kind=Hypervisor)
    format_version: int = opt("formatVersion")
    system: str = opt("system")
    toplevel: str | None = opt("toplevel")
    runtime_path: tuple[str, ...] = opt("runtimePath")
    vcpu: int = opt("microvm.vcpu")
    mem: int = opt("microvm.mem")
    hugepage_mem: bool = opt("microvm.hugepageMem")
    hotplug_mem: int = opt("microvm.hotplugMem")
    # null in the document: all of hotplugMem (resolved here)
    hotplugged_mem: int = opt("microvm.hotpluggedMem")
    balloon: bool = opt("microvm.balloon")
    initial_balloon_mem: int = opt("microvm.initialBalloonMem")
    deflate_on_oom: bool = opt("microvm.deflateOnOOM")
    cpu: str | None = opt("microvm.cpu")
    optimize: bool = opt("microvm.optimize.enable")
    pre_start: str = opt("microvm.preStart")
    extra_args_script: str | None = opt("microvm.extraArgsScript")
    user: str | None = opt("microvm.user")
    initrd: str | None = opt("microvm.initrdPath")
    kernel_params: tuple[str, ...] = opt("microvm.kernelParams")
    store_disk: str | None = opt("microvm.storeDisk")
    store_disk_type: str = opt("microvm.storeDiskType")
    writable_store_overlay: str | None = opt("microvm.writableStoreOverlay")
    volumes: tuple[Volume, ...] = opt("microvm.volumes", item=Volume)
    shares: tuple[Share, ...] = opt("microvm.shares", item=Share)
    interfaces: tuple[Interface, ...] = opt("microvm.interfaces", item=Interface)
    forward_ports: tuple[ForwardPort, ...] = opt("microvm.forwardPorts", item=ForwardPort)
    devices: tuple[Device, ...] = opt("microvm.devices", item=Device)
    vsock_cid: int | None = opt("microvm.vsock.cid")
    graphics: bool = opt("microvm.graphics.enable")
    graphics_backend: str = opt("microvm.graphics.backend")
    # null: "<hostName>-gpu.sock" (gpu_socket)
    graphics_socket: str | None = opt("microvm.graphics.socket")
    graphics_vulkan: str | None = opt("microvm.graphics.vulkan")
    graphics_hostmem: str = opt("microvm.graphics.hostmem")
    credential_files: tuple[tuple[str, str], ...] = opt("microvm.credentialFiles",
                                                        kind=_sorted_pairs)
    pretty_procnames: bool = opt("microvm.prettyProcnames")
    machine_id: str | None = opt("microvm.machineId")
    register_with_machined: bool = opt("microvm.registerWithMachined")
    virtiofsd: VirtiofsdOptions = opt("microvm.virtiofsd", item=VirtiofsdOptions)
    qemu: QemuOptions = opt("microvm.qemu", item=QemuOptions)
    firecracker_drive_io_engine: str = opt("microvm.firecracker.driveIoEngine")
    firecracker_cpu: Mapping[str, JSON] | None = opt("microvm.firecracker.cpu")
    firecracker_extra_config: Mapping[str, JSON] = opt("microvm.firecracker.extraConfig")
    crosvm_pivot_root: str | None = opt("microvm.crosvm.pivotRoot")
    vfkit_log_level: str | None = opt("microvm.vfkit.logLevel")
    vfkit_rosetta: bool = opt("microvm.vfkit.rosetta.enable")
    vfkit_rosetta_install: bool = opt("microvm.vfkit.rosetta.install")
    vfkit_rosetta_ignore_if_missing: bool = opt("microvm.vfkit.rosetta.ignoreIfMissing")
    ch_platform_oem_strings: tuple[str, ...] = opt("microvm.cloud-hypervisor.platformOEMStrings")
    # -- computed from other options (x-computedDefault) --------------------------------------
    # default "<hostName>.sock" where the hypervisor has a control socket
    socket: str | None = computed("microvm.socket")
    # default: true unless a share has source /nix/store
    store_on_disk: bool = computed("microvm.storeOnDisk")
    # extraArgs of each hypervisor, keyed by hypervisor
    extra_args: tuple[tuple[Hypervisor, tuple[str, ...]], ...] = computed(
        *(f"microvm.{hv}.extraArgs" for hv in Hypervisor))
    # the document as given, for the round trip and share/microvm/vm.json
    socket_explicit: bool = False
    store_on_disk_explicit: bool = False
    others: Mapping[str, JSON] = others_field()

    # -- derived views ---------------------------------------------------------------------
    @property
    def arch(self) -> str:
        return self.system.split("-", 1)[0]

    @property
    def machine_uuid(self) -> str:
        """microvm.machineId, or the one derived from the host name when it is null."""
        return self.machine_id or derived_machine_id(self.host_name)

    @property
    def gpu_socket(self) -> str:
        """The vhost-user socket of crosvm's GPU device (crosvm, cloud-hypervisor)."""
        return self.graphics_socket or f"{self.host_name}-gpu.sock"

    @property
    def cmdline(self) -> str:
        return " ".join(self.kernel_params)

    @property
    def hypervisor_extra_args(self) -> tuple[str, ...]:
        return dict(self.extra_args).get(self.hypervisor, ())

    def shares_of(self, proto: ShareProto) -> list[Share]:
        return [s for s in self.shares if s.proto is proto]

    @property
    def network_joins(self) -> list[netplan.Join]:
        """The VM's type = "network" interfaces, as a host's declaration is checked against
        (netplan.vm_problems)."""
        return [netplan.Join(n, str(i.network), i.id, i.mac, i.ipv4, i.ipv6)
                for n, i in enumerate(self.interfaces) if i.type is InterfaceType.NETWORK]

    def interfaces_of(self, *types: InterfaceType) -> list[Interface]:
        return [i for i in self.interfaces if i.type in types]

    @property
    def store_disk_path(self) -> str | None:
        return self.store_disk if self.store_on_disk else None

    # -- JSON ------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, doc: Mapping[str, JSON]) -> MicroVM:
        """Build the model from a schema-valid document with defaults applied."""
        return decode(cls, doc, schema(), {"hostName": doc["hostName"]})

    @staticmethod
    def _decode(d: Mapping[str, JSON], ctx: Mapping[str, JSON], kw: Mapping[str, Any]
              ) -> dict[str, Any]:
        m = d["microvm"]
        hypervisor = kw["hypervisor"]
        if "socket" in m:
            socket = m["socket"]
        elif CAPABILITIES[hypervisor].supports(Feature.CONTROL_SOCKET):
            socket = f"{ctx['hostName']}.sock"
        else:
            socket = None
        store_on_disk = m.get("storeOnDisk")
        if store_on_disk is None:
            store_on_disk = not any(s.source == "/nix/store" for s in kw["shares"])
        hotplugged = m["hotpluggedMem"]
        return {
            "socket": socket, "store_on_disk": store_on_disk,
            "hotplugged_mem": m["hotplugMem"] if hotplugged is None else hotplugged,
            "extra_args": tuple((hv, tuple(m[str(hv)]["extraArgs"])) for hv in Hypervisor),
            "socket_explicit": "socket" in m, "store_on_disk_explicit": "storeOnDisk" in m,
        }

    def _encode(self, out: dict[str, JSON]) -> None:
        m = out["microvm"]
        m["credentialFiles"] = dict(self.credential_files)
        for hv, args in self.extra_args:
            m.setdefault(str(hv), {})["extraArgs"] = list(args)
        if self.socket_explicit:
            m["socket"] = self.socket
        if self.store_on_disk_explicit:
            m["storeOnDisk"] = self.store_on_disk

    def to_json(self) -> dict[str, JSON]:
        """The document with every default spelled out; `from_json` of it gives `self` back."""
        return encode(self)


def derived_machine_id(host_name: str) -> str:
    """The machine id of a VM whose machineId is null: microvm.nix's derivation (SHA-256 of
    "microvm.nix:" + the host name, as 8-4-4-4-12 hex digits), so a VM keeps its machine id
    when it moves here. nix/modules/microvm/options.nix computes the same (tests compare)."""
    h = hashlib.sha256(f"microvm.nix:{host_name}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
