"""The documents every backend is tested on: for each hypervisor a minimal one, a full one (every
option it supports at once) and one per feature (`CASES`, QEMU's own in `QEMU_CASES`), all of
them in `ALL`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from microvm.capabilities import CAPABILITIES, Feature, Hypervisor
from microvm.config import MicroVM
from microvm.document import from_document

F = Feature
Doc = dict[str, Any]

# the kernel each hypervisor is given (its preferred direct-boot format, see docs)
KERNEL = {
    Hypervisor.QEMU: "/nix/store/kkkk-linux-6.6/bzImage",
    Hypervisor.CLOUD_HYPERVISOR: "/nix/store/kkkk-linux-6.6-dev/vmlinux",
    Hypervisor.FIRECRACKER: "/nix/store/kkkk-linux-6.6-dev/vmlinux",
    Hypervisor.CROSVM: "/nix/store/kkkk-linux-6.6-dev/vmlinux",
    Hypervisor.KVMTOOL: "/nix/store/kkkk-linux-6.6/bzImage",
    Hypervisor.STRATOVIRT: "/nix/store/kkkk-linux-6.6/bzImage",
    Hypervisor.ALIOTH: "/nix/store/kkkk-linux-6.6/bzImage",
    Hypervisor.VFKIT: "/nix/store/kkkk-linux-6.6/Image",
}
INITRD = "/nix/store/iiii-initrd-linux-6.6/initrd"
STORE_DISK = "/nix/store/ssss-store-disk/store.erofs"


def system(hv: Hypervisor) -> str:
    return "aarch64-darwin" if hv is Hypervisor.VFKIT else "x86_64-linux"


def document(hv: Hypervisor, **microvm: Any) -> Doc:
    """A document for `hv`: its kernel, an initrd, no store disk unless asked for."""
    m: dict[str, Any] = {"hypervisor": str(hv), "kernel": KERNEL[hv], "initrdPath": INITRD,
                         "storeOnDisk": False}
    m.update(microvm)
    return {"hostName": "demo", "system": system(hv), "microvm": m}


def has(hv: Hypervisor, feature: Feature) -> bool:
    return CAPABILITIES[hv].supports(feature, system(hv))


# -- the cases ------------------------------------------------------------------------------

def shares(hv: Hypervisor) -> list[Doc]:
    out: list[Doc] = []
    if has(hv, F.SHARE_VIRTIOFS):
        out.append({"tag": "ro-store", "source": "/nix/store", "mountPoint": "/nix/.ro-store",
                    "proto": "virtiofs", "readOnly": has(hv, F.SHARE_VIRTIOFS_READONLY)})
    if has(hv, F.SHARE_9P):
        out.append({"tag": "data", "source": "/srv/vm data", "mountPoint": "/data",
                    "proto": "9p", "readOnly": has(hv, F.SHARE_9P_READONLY),
                    "securityModel": "mapped"})
    return out


def interfaces(hv: Hypervisor) -> list[Doc]:
    out: list[Doc] = []
    if has(hv, F.NET_USER):
        out.append({"type": "user", "id": "usernet", "mac": "02:00:00:00:00:01"})
    if has(hv, F.NET_TAP):
        out.append({"type": "tap", "id": "vm-demo", "mac": "02:00:00:00:00:02",
                    "tap": {"vhost": has(hv, F.VHOST_NET)}})
    if has(hv, F.NET_MACVTAP):
        out.append({"type": "macvtap", "id": "vm-demo-mvt", "mac": "02:00:00:00:00:03",
                    "macvtap": {"link": "eth0", "mode": "bridge"}})
    if has(hv, F.NET_BRIDGE):
        out.append({"type": "bridge", "id": "vm-demo-br", "mac": "02:00:00:00:00:04",
                    "bridge": "br0"})
    return out


def volumes(hv: Hypervisor) -> list[Doc]:
    data: Doc = {"image": "data.img", "size": 256, "label": "data", "mountPoint": "/var/data"}
    if has(hv, F.VOLUME_SERIAL):
        data["serial"] = "data"
    if has(hv, F.VOLUME_DIRECT):
        data["direct"] = True
    return [data, {"image": "/srv/images/seed.img", "autoCreate": False, "readOnly": True}]


EXTRA_ARGS = {
    Hypervisor.CLOUD_HYPERVISOR: ["--watchdog"],
    Hypervisor.FIRECRACKER: ["--level", "Info"],
    Hypervisor.CROSVM: ["--disable-sandbox"],
    Hypervisor.KVMTOOL: ["--debug"],
    Hypervisor.STRATOVIRT: ["-D"],
    Hypervisor.ALIOTH: ["--pvpanic"],
    Hypervisor.VFKIT: ["--device", "virtio-balloon"],
}


def full(hv: Hypervisor) -> Doc:
    """Every option the hypervisor supports, at once."""
    m: dict[str, Any] = {"vcpu": 2, "mem": 1024, "storeOnDisk": True, "storeDisk": STORE_DISK,
                         "kernelParams": ["quiet", "systemd.unit=multi-user.target"],
                         "volumes": volumes(hv), "shares": shares(hv),
                         "interfaces": interfaces(hv)}
    if has(hv, F.FORWARD_PORTS):
        m["forwardPorts"] = [{"host": {"port": 2222}, "guest": {"port": 22}}]
    if has(hv, F.VSOCK):
        m["vsock"] = {"cid": 42}
    if has(hv, F.BALLOON):
        m["balloon"] = True
        if has(hv, F.INITIAL_BALLOON):
            m["initialBalloonMem"] = 128
    if has(hv, F.HOTPLUG_MEM):
        m["hotplugMem"] = 1024
        m["hotpluggedMem"] = 512 if has(hv, F.HOTPLUGGED_MEM) else 0
    if has(hv, F.HUGEPAGES):
        m["hugepageMem"] = True
    devices = []
    if has(hv, F.PCI_PASSTHROUGH):
        devices.append({"bus": "pci", "path": "0000:01:00.0"})
    if has(hv, F.USB_PASSTHROUGH):
        devices.append({"bus": "usb", "path": "vendorid=0x1234,productid=0x5678"})
    m["devices"] = devices
    if has(hv, F.GRAPHICS):
        m["graphics"] = {"enable": True,
                         "backend": "cocoa" if hv is Hypervisor.VFKIT else "gtk"}
    if has(hv, F.MACHINE_ID):
        m["machineId"] = "5e0c3b4a-8f2d-4c51-9a6e-2b7d1f0e9c3a"
    if has(hv, F.CREDENTIALS):
        m["credentialFiles"] = {"token": "/run/secrets/token"}
    if has(hv, F.CHANGE_USER):
        m["user"] = "microvm"
    if hv in EXTRA_ARGS:
        m[str(hv)] = {"extraArgs": EXTRA_ARGS[hv]}
    if hv is Hypervisor.FIRECRACKER:
        m["firecracker"]["cpu"] = {"kvm_capabilities": ["!56"], "cpuid_modifiers": [{
            "leaf": "0x1", "subleaf": "0x0", "flags": 0,
            "modifiers": [{"register": "ecx", "bitmap": "0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0"}]}]}
        m["firecracker"]["extraConfig"] = {"machine-config": {"track_dirty_pages": True},
                                           "logger": {"level": "Info", "log_path": "fc.log"}}
    if hv is Hypervisor.CROSVM:
        m["crosvm"]["pivotRoot"] = "/var/empty"
    if hv is Hypervisor.CLOUD_HYPERVISOR:
        m["cloud-hypervisor"]["platformOEMStrings"] = ["io.systemd.credential:demo=1"]
    if hv is Hypervisor.VFKIT:
        m["vfkit"]["rosetta"] = {"enable": True, "install": True, "ignoreIfMissing": True}
    return document(hv, **m)


def optional(feature: Feature, make: Callable[[Hypervisor], Doc]
             ) -> Callable[[Hypervisor], Doc | None]:
    return lambda hv: make(hv) if has(hv, feature) else None


CASES: dict[str, Callable[[Hypervisor], Doc | None]] = {
    "minimal": lambda hv: document(hv),
    "full": full,
    "store-disk": lambda hv: document(hv, storeOnDisk=True, storeDisk=STORE_DISK,
                                      volumes=[{"image": "var.img", "size": 512}]),
    "shares": lambda hv: document(hv, shares=shares(hv)) if shares(hv) else None,
    "net": lambda hv: document(hv, vcpu=2, interfaces=interfaces(hv)),
    "vsock": optional(F.VSOCK, lambda hv: document(hv, vsock={"cid": 3})),
    "balloon": optional(F.BALLOON, lambda hv: document(
        hv, mem=2048, balloon=True, deflateOnOOM=hv is Hypervisor.CROSVM,
        initialBalloonMem=512 if has(hv, F.INITIAL_BALLOON) else 0)),
}


QEMU_CASES: dict[str, Doc] = {
    "microvm": document(Hypervisor.QEMU, storeOnDisk=True, storeDisk=STORE_DISK,
                        volumes=[{"image": "var.img", "size": 512, "serial": "var"}],
                        shares=[{"tag": "data", "source": "/srv/data", "mountPoint": "/data",
                                 "readOnly": True}],
                        interfaces=[{"type": "user", "id": "usernet",
                                     "mac": "02:00:00:00:00:01"}]),
    "q35-pci": document(Hypervisor.QEMU, vcpu=2, mem=2048, hotplugMem=1024,
                        devices=[{"bus": "pci", "path": "0000:01:00.0",
                                  "qemu": {"id": "gpu0"}}],
                        machineId="5e0c3b4a-8f2d-4c51-9a6e-2b7d1f0e9c3a"),
    "graphics": document(Hypervisor.QEMU, graphics={"enable": True, "backend": "headless",
                                                    "vulkan": "venus", "hostmem": "1G"}),
    "virtiofs": document(Hypervisor.QEMU, shares=[
        {"tag": "ro-store", "source": "/nix/store", "mountPoint": "/nix/.ro-store",
         "proto": "virtiofs", "readOnly": True}]),
    "macvtap": document(Hypervisor.QEMU, vcpu=2, interfaces=[
        {"type": "macvtap", "id": "vm-demo-mvt", "mac": "02:00:00:00:00:03",
         "macvtap": {"link": "eth0", "mode": "bridge"}, "tap": {"vhost": True}}]),
    "forward-ports": document(Hypervisor.QEMU, interfaces=[
        {"type": "user", "id": "usernet", "mac": "02:00:00:00:00:01"}], forwardPorts=[
        {"host": {"port": 2222}, "guest": {"port": 22}},
        {"from": "guest", "proto": "tcp", "host": {"address": "127.0.0.1", "port": 8080},
         "guest": {"address": "10.0.2.100", "port": 80}}]),
}


OTHERS = [hv for hv in Hypervisor if hv is not Hypervisor.QEMU]


def all_cases() -> list[tuple[Hypervisor, str, Doc]]:
    out: list[tuple[Hypervisor, str, Doc]] = []
    for hv in OTHERS:
        for name, make in CASES.items():
            doc = make(hv)
            if doc is not None:
                out.append((hv, name, doc))
    out += [(Hypervisor.QEMU, name, doc) for name, doc in QEMU_CASES.items()]
    return out


ALL = all_cases()


def load(doc: Doc) -> MicroVM:
    return from_document(doc)
