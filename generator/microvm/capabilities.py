"""What each hypervisor can do: the one table that validation, scripts and docs read."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Hypervisor(StrEnum):
    QEMU = "qemu"
    CLOUD_HYPERVISOR = "cloud-hypervisor"
    FIRECRACKER = "firecracker"
    CROSVM = "crosvm"
    KVMTOOL = "kvmtool"
    STRATOVIRT = "stratovirt"
    ALIOTH = "alioth"
    VFKIT = "vfkit"


class Feature(StrEnum):
    """A feature a VM document can ask for. The value is the phrase used in messages and docs."""

    SHARE_9P = "9p shares"
    SHARE_9P_READONLY = "read-only 9p shares"
    SHARE_VIRTIOFS = "virtiofs shares"
    NET_USER = "user networking"
    FORWARD_PORTS = "port forwarding"
    NET_TAP = "tap interfaces"
    NET_MACVTAP = "macvtap interfaces"
    NET_BRIDGE = "bridge interfaces"
    VHOST_NET = "vhost-net"
    VSOCK = "vsock"
    BALLOON = "memory balloon"
    HOTPLUG_MEM = "memory hotplug"
    HUGEPAGES = "huge pages"
    PCI_PASSTHROUGH = "PCI passthrough"
    USB_PASSTHROUGH = "USB passthrough"
    GRAPHICS = "graphics"
    CONTROL_SOCKET = "control socket"
    GRACEFUL_SHUTDOWN = "graceful shutdown"
    CREDENTIALS = "credential files"
    CPU_EMULATION = "CPU emulation"


@dataclass(frozen=True)
class Capabilities:
    features: frozenset[Feature]
    image_types: frozenset[str]
    platforms: frozenset[str]
    # how the host asks the guest to power off, in words (docs and `microvm doctor`)
    shutdown: str
    source: str

    def supports(self, feature: Feature) -> bool:
        return feature in self.features


F = Feature
_LINUX = frozenset({"x86_64-linux", "aarch64-linux"})

CAPABILITIES: dict[Hypervisor, Capabilities] = {
    Hypervisor.QEMU: Capabilities(
        features=frozenset({
            F.SHARE_9P, F.SHARE_9P_READONLY, F.SHARE_VIRTIOFS, F.NET_USER, F.FORWARD_PORTS,
            F.NET_TAP, F.NET_MACVTAP, F.NET_BRIDGE, F.VHOST_NET, F.VSOCK, F.BALLOON,
            F.HOTPLUG_MEM, F.HUGEPAGES, F.PCI_PASSTHROUGH, F.USB_PASSTHROUGH, F.GRAPHICS,
            F.CONTROL_SOCKET, F.GRACEFUL_SHUTDOWN, F.CREDENTIALS, F.CPU_EMULATION,
        }),
        image_types=frozenset({"raw", "qcow2", "vhd", "vhdx"}),
        platforms=frozenset({"x86_64-linux", "aarch64-linux", "aarch64-darwin"}),
        shutdown="QMP system_powerdown (ACPI power button)",
        source="qemu/qemu: docs/system/i386/microvm.rst, qapi/machine.json",
    ),
    Hypervisor.CLOUD_HYPERVISOR: Capabilities(
        features=frozenset({
            F.SHARE_VIRTIOFS, F.NET_TAP, F.NET_MACVTAP, F.NET_BRIDGE, F.VSOCK, F.BALLOON,
            F.HOTPLUG_MEM, F.HUGEPAGES, F.PCI_PASSTHROUGH, F.CONTROL_SOCKET,
            F.GRACEFUL_SHUTDOWN, F.CREDENTIALS,
        }),
        image_types=frozenset({"raw", "qcow2", "vhd", "vhdx"}),
        platforms=_LINUX,
        shutdown="ch-remote power-button (ACPI power button)",
        source="cloud-hypervisor/cloud-hypervisor: vmm/src/config.rs, docs/api.md",
    ),
    Hypervisor.FIRECRACKER: Capabilities(
        features=frozenset({
            F.NET_TAP, F.NET_BRIDGE, F.VSOCK, F.BALLOON, F.HUGEPAGES, F.CONTROL_SOCKET,
            F.GRACEFUL_SHUTDOWN,
        }),
        image_types=frozenset({"raw"}),
        platforms=_LINUX,
        shutdown="API PUT /actions SendCtrlAltDel (x86_64 only)",
        source="firecracker-microvm/firecracker: src/firecracker/swagger/firecracker.yaml",
    ),
    Hypervisor.CROSVM: Capabilities(
        features=frozenset({
            F.SHARE_VIRTIOFS, F.NET_TAP, F.NET_MACVTAP, F.NET_BRIDGE, F.VSOCK, F.BALLOON,
            F.PCI_PASSTHROUGH, F.GRAPHICS, F.CONTROL_SOCKET, F.GRACEFUL_SHUTDOWN,
        }),
        image_types=frozenset({"raw", "qcow2"}),
        platforms=_LINUX,
        shutdown="crosvm powerbtn (ACPI power button)",
        source="google/crosvm: src/crosvm/cmdline.rs",
    ),
    Hypervisor.KVMTOOL: Capabilities(
        features=frozenset({
            F.SHARE_9P, F.NET_USER, F.NET_TAP, F.NET_MACVTAP, F.NET_BRIDGE, F.VHOST_NET,
            F.VSOCK, F.BALLOON, F.HUGEPAGES, F.PCI_PASSTHROUGH, F.GRAPHICS, F.CONTROL_SOCKET,
        }),
        image_types=frozenset({"raw"}),
        platforms=_LINUX,
        shutdown="none (lkvm stop is an abrupt stop)",
        source="kvmtool/kvmtool: builtin-run.c, builtin-stop.c",
    ),
    Hypervisor.STRATOVIRT: Capabilities(
        features=frozenset({
            F.SHARE_VIRTIOFS, F.NET_TAP, F.NET_MACVTAP, F.NET_BRIDGE, F.VHOST_NET, F.VSOCK,
            F.BALLOON, F.CONTROL_SOCKET,
        }),
        image_types=frozenset({"raw"}),
        platforms=_LINUX,
        shutdown="none (QMP system_powerdown does not reach a microvm guest)",
        source="openeuler-mirror/stratovirt: docs/config_guidebook.md, docs/qmp.md",
    ),
    Hypervisor.ALIOTH: Capabilities(
        features=frozenset({F.SHARE_VIRTIOFS, F.NET_TAP, F.NET_MACVTAP, F.NET_BRIDGE}),
        image_types=frozenset({"raw"}),
        platforms=frozenset({"x86_64-linux", "aarch64-linux", "aarch64-darwin"}),
        shutdown="none (alioth has no control channel)",
        source="google/alioth: alioth-cli/src/boot/boot.rs",
    ),
    Hypervisor.VFKIT: Capabilities(
        features=frozenset({
            F.SHARE_VIRTIOFS, F.NET_USER, F.VSOCK, F.GRAPHICS, F.CONTROL_SOCKET,
            F.GRACEFUL_SHUTDOWN,
        }),
        image_types=frozenset({"raw"}),
        platforms=frozenset({"aarch64-darwin"}),
        shutdown="REST POST /vm/state {\"state\": \"Stop\"}",
        source="crc-org/vfkit: doc/usage.md",
    ),
}


def supporting(feature: Feature) -> list[Hypervisor]:
    """The hypervisors that support a feature, in declaration order (for error hints)."""
    return [hv for hv, caps in CAPABILITIES.items() if feature in caps.features]
