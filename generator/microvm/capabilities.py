"""What each hypervisor can do: the one table that validation, scripts and docs read.

A feature listed for a hypervisor means the generated runner can express it on that hypervisor
(validation accepts it, the backend emits it). Sources are the upstream files named in `source`;
the per-feature reasoning is in docs/hypervisors.md, which is generated from this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


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
    SHARE_VIRTIOFS_READONLY = "read-only virtiofs shares"
    NET_USER = "user networking"
    FORWARD_PORTS = "port forwarding"
    NET_TAP = "tap interfaces"
    NET_MACVTAP = "macvtap interfaces"
    NET_BRIDGE = "bridge interfaces"
    VHOST_NET = "vhost-net"
    VSOCK = "vsock"
    BALLOON = "memory balloon"
    INITIAL_BALLOON = "a balloon inflated at boot"
    HOTPLUG_MEM = "memory hotplug"
    HOTPLUGGED_MEM = "hotplug memory plugged at boot"
    HUGEPAGES = "huge pages"
    VOLUME_SERIAL = "volume serial numbers"
    VOLUME_DIRECT = "direct I/O volumes"
    PCI_PASSTHROUGH = "PCI passthrough"
    USB_PASSTHROUGH = "USB passthrough"
    GRAPHICS = "graphics"
    CONTROL_SOCKET = "control socket"
    GRACEFUL_SHUTDOWN = "graceful shutdown"
    CREDENTIALS = "credential files"
    CPU_EMULATION = "CPU emulation"
    CHANGE_USER = "dropping privileges to microvm.user"
    MACHINE_ID = "a machine UUID"

    @property
    def option(self) -> str:
        """The option that asks for the feature, for the docs table."""
        return _FEATURE_OPTION[self]


_FEATURE_OPTION: dict[Feature, str] = {
    Feature.SHARE_9P: "shares.*.proto = \"9p\"",
    Feature.SHARE_9P_READONLY: "shares.*.readOnly (9p)",
    Feature.SHARE_VIRTIOFS: "shares.*.proto = \"virtiofs\"",
    Feature.SHARE_VIRTIOFS_READONLY: "shares.*.readOnly (virtiofs)",
    Feature.NET_USER: "interfaces.*.type = \"user\"",
    Feature.FORWARD_PORTS: "forwardPorts",
    Feature.NET_TAP: "interfaces.*.type = \"tap\"",
    Feature.NET_MACVTAP: "interfaces.*.type = \"macvtap\"",
    Feature.NET_BRIDGE: "interfaces.*.type = \"bridge\"",
    Feature.VHOST_NET: "interfaces.*.tap.vhost",
    Feature.VSOCK: "vsock.cid",
    Feature.BALLOON: "balloon",
    Feature.INITIAL_BALLOON: "initialBalloonMem",
    Feature.HOTPLUG_MEM: "hotplugMem",
    Feature.HOTPLUGGED_MEM: "hotpluggedMem",
    Feature.HUGEPAGES: "hugepageMem",
    Feature.VOLUME_SERIAL: "volumes.*.serial",
    Feature.VOLUME_DIRECT: "volumes.*.direct",
    Feature.PCI_PASSTHROUGH: "devices.*.bus = \"pci\"",
    Feature.USB_PASSTHROUGH: "devices.*.bus = \"usb\"",
    Feature.GRAPHICS: "graphics.enable",
    Feature.CONTROL_SOCKET: "socket",
    Feature.GRACEFUL_SHUTDOWN: "(bin/microvm-shutdown)",
    Feature.CREDENTIALS: "credentialFiles",
    Feature.CPU_EMULATION: "cpu",
    Feature.CHANGE_USER: "user",
    Feature.MACHINE_ID: "machineId",
}


@dataclass(frozen=True)
class Limits:
    """Bounds the hypervisor puts on a VM beyond its features, checked by validation
    (Backend.problems: each message names the hypervisor and the bound); None: no bound."""

    max_vcpus: int | None = None
    # (least, most) MiB of microvm.mem
    mem_mib: tuple[int, int] | None = None
    # microvm.mem is a multiple of the huge page size (MiB) when microvm.hugepageMem is set
    hugepage_mib: int | None = None
    # microvm.hotplugMem is a multiple of the hotplug slot size (MiB)
    hotplug_slot_mib: int | None = None
    # disks attached, the store disk included
    max_disks: int | None = None
    # devices the machine takes, by architecture (x86_64, aarch64)
    max_devices: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Capabilities:
    features: frozenset[Feature]
    image_types: frozenset[str]
    platforms: frozenset[str]
    # how the host asks the guest to power off, in words (docs and `microvm doctor`)
    shutdown: str
    source: str
    # features that work on some of `platforms` only: feature -> the platforms where they do
    feature_platforms: Mapping[Feature, frozenset[str]] = field(
        default_factory=lambda: MappingProxyType({}))
    # the kernel image format(s) the hypervisor boots directly (microvm.kernel must be one)
    kernel_formats: str = ""
    # tap devices are opened with one queue pair per vCPU (IFF_MULTI_QUEUE): tap-up must create
    # them multi_queue and one macvtap fd is opened per queue; otherwise a single queue
    multiqueue_tap: bool = False
    # virtiofs shares are served by an external virtiofsd (vhost-user); False: built in
    virtiofsd: bool = True
    # the virtiofs tag comes from virtiofsd (--tag) rather than from the hypervisor's argv
    virtiofsd_tag: bool = False
    # graphics come from crosvm's vhost-user GPU device (`crosvm device gpu`), a process the
    # runner starts before the hypervisor (hypervisors/base.py GpuDaemon)
    gpu_daemon: bool = False
    # a network interface (type = "network") of a VM run by a user who cannot have its tap
    # falls back to user-mode networking through passt (QEMU: -netdev stream); False: the
    # runner says the tap is needed
    passt: bool = False
    # the guest device of the console the runner connects to its stdio, by architecture
    # (x86_64, aarch64): an 8250 UART is ttyS0, a PL011 ttyAMA0, a virtio console hvc0.
    # The backends put it on the kernel command line; the guest module starts its getty there.
    consoles: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # features accepted although the hypervisor cannot honour them (microvm.nix accepts them
    # too): validation warns with the option path and this text, what happens instead
    ignored: Mapping[Feature, str] = field(default_factory=lambda: MappingProxyType({}))
    # the hypervisor versions the backend writes argv for (docs/hypervisors.md)
    versions: str = ""
    # facts a user of this hypervisor should know, for docs/hypervisors.md
    notes: tuple[str, ...] = ()
    # the kernel words that make a guest reboot or panic end the hypervisor process (the
    # backends put them after console=, before the user's kernelParams)
    reboot_params: tuple[str, ...] = ()
    limits: Limits = Limits()

    def console(self, arch: str) -> str:
        """The guest's console device on `arch` ("x86_64" or "aarch64")."""
        return self.consoles[arch]

    def supports(self, feature: Feature, system: str | None = None) -> bool:
        """Does the hypervisor support `feature` (on `system`, when given: a feature limited to
        some platforms is unsupported elsewhere; whether the hypervisor runs on `system` at all
        is `platforms`' business)?"""
        if feature not in self.features:
            return False
        only = self.feature_platforms.get(feature)
        return system is None or only is None or system in only


# The block-device serial every backend gives the store disk where the hypervisor sets serials
# (Feature.VOLUME_SERIAL): the guest mounts /dev/disk/by-id/virtio-<this>.
STORE_DISK_SERIAL = "store"

F = Feature
# what happens instead of an ignored volume serial / direct I/O
_NO_SERIAL = "the guest finds the volume by its label or as /dev/vdX in attachment order"
_NO_DIRECT = "the image is opened through the host page cache"
# console devices: 8250 UART (ns16550a) on both architectures; PL011 on aarch64
_UART_8250 = MappingProxyType({"x86_64": "ttyS0", "aarch64": "ttyS0"})
_PL011_ON_ARM = MappingProxyType({"x86_64": "ttyS0", "aarch64": "ttyAMA0"})
# reboot=t: a reboot is a triple fault, which ends QEMU (-no-reboot) and the hypervisors that
# stop on a CPU reset; panic=-1 reboots at once. reboot=k: through the keyboard controller,
# which firecracker, crosvm, kvmtool and alioth turn into an exit; panic=1 reboots after 1 s.
_REBOOT_TRIPLE_FAULT = ("reboot=t", "panic=-1")
_REBOOT_KEYBOARD = ("reboot=k", "panic=1")
# firecracker: vmm_config/machine_config.rs MAX_SUPPORTED_VCPUS; 2 MiB huge pages;
# MemoryHotplugConfig.slot_size_mib default (and minimum)
_FIRECRACKER_LIMITS = Limits(max_vcpus=32, hugepage_mib=2, hotplug_slot_mib=128)
# kvmtool: include/kvm/disk-image.h MAX_DISK_IMAGES
_KVMTOOL_LIMITS = Limits(max_disks=4)
# stratovirt: memory bounds of the microvm machine; user-creatable devices on it
# (config_guidebook.md section 2)
_STRATOVIRT_MEM = (128, 512 << 10)
_STRATOVIRT_LIMITS = Limits(mem_mib=_STRATOVIRT_MEM,
                            max_devices=MappingProxyType({"x86_64": 11, "aarch64": 160}))
_LINUX = frozenset({"x86_64-linux", "aarch64-linux"})
_X86 = frozenset({"x86_64-linux"})

CAPABILITIES: dict[Hypervisor, Capabilities] = {
    Hypervisor.QEMU: Capabilities(
        features=frozenset({
            F.SHARE_9P, F.SHARE_9P_READONLY, F.SHARE_VIRTIOFS, F.SHARE_VIRTIOFS_READONLY,
            F.NET_USER, F.FORWARD_PORTS, F.NET_TAP, F.NET_MACVTAP, F.NET_BRIDGE, F.VHOST_NET,
            F.VSOCK, F.BALLOON, F.HOTPLUG_MEM, F.HOTPLUGGED_MEM, F.HUGEPAGES, F.VOLUME_SERIAL,
            F.VOLUME_DIRECT, F.PCI_PASSTHROUGH, F.USB_PASSTHROUGH, F.GRAPHICS, F.CONTROL_SOCKET,
            F.GRACEFUL_SHUTDOWN, F.CREDENTIALS, F.CPU_EMULATION, F.CHANGE_USER, F.MACHINE_ID,
        }),
        image_types=frozenset({"raw", "qcow2", "vhd", "vhdx"}),
        platforms=frozenset({"x86_64-linux", "aarch64-linux", "aarch64-darwin"}),
        shutdown="QMP system_powerdown (ACPI power button)",
        source="qemu/qemu: docs/system/i386/microvm.rst, qapi/machine.json",
        kernel_formats="x86_64: bzImage (an ELF vmlinux only with the PVH note); " +
                       "aarch64: Image",
        multiqueue_tap=True,
        passt=True,
        consoles=_PL011_ON_ARM,
        versions="QEMU 7.2 (Debian 12; booted by the tests) and later",
        reboot_params=_REBOOT_TRIPLE_FAULT,
        notes=(
            ("The only hypervisor that can emulate the CPU (TCG) when KVM is missing; the " +
             "runner probes KVM and falls back to TCG."),
            ("`initialBalloonMem` is refused: QEMU has no command-line option for the balloon's " +
             "size at boot (only the QMP `balloon` command after start)."),
        ),
    ),
    Hypervisor.CLOUD_HYPERVISOR: Capabilities(
        features=frozenset({
            F.SHARE_VIRTIOFS, F.SHARE_VIRTIOFS_READONLY, F.NET_TAP, F.NET_MACVTAP, F.NET_BRIDGE,
            F.VSOCK, F.BALLOON, F.INITIAL_BALLOON, F.HOTPLUG_MEM, F.HOTPLUGGED_MEM, F.HUGEPAGES,
            F.VOLUME_SERIAL, F.VOLUME_DIRECT, F.PCI_PASSTHROUGH, F.CONTROL_SOCKET,
            F.GRACEFUL_SHUTDOWN, F.MACHINE_ID, F.GRAPHICS,
        }),
        image_types=frozenset({"raw", "qcow2", "vhd", "vhdx"}),
        platforms=_LINUX,
        shutdown="API PUT /api/v1/vm.power-button (ACPI power button)",
        source="cloud-hypervisor/cloud-hypervisor: vmm/src/config.rs, vmm/src/vm_config.rs, " +
               "cloud-hypervisor/src/main.rs, option_parser/src/lib.rs, " +
               "vmm/src/api/openapi/cloud-hypervisor.yaml, Cargo.toml",
        kernel_formats="x86_64: ELF vmlinux with the PVH note, or bzImage; aarch64: Image",
        multiqueue_tap=True,
        gpu_daemon=True,
        consoles=_PL011_ON_ARM,
        versions=("v36 and later (one flag per device kind; `oem_strings` exists since v26); " +
                  "read at ae44c2971 (v53.0+246, 2026-08-20); nixpkgs packages v50.0"),
        reboot_params=_REBOOT_TRIPLE_FAULT,
        notes=(
            ("Graphics (`--gpu socket=`) need cloud-hypervisor's GPU build (Spectrum's, " +
             "`cloud-hypervisor-graphics` in microvm.nix's overlay; mainline has no `--gpu`): " +
             "`cloud-hypervisor.package` defaults to it where the package set has it. The " +
             "runner starts crosvm's GPU device (`crosvm device gpu`, one hidden display) on " +
             "graphics.socket in the Wayland session of WAYLAND_DISPLAY; guest memory is " +
             "shared with it. Not under microvm@ (no Wayland session there)."),
            ("vsock is hybrid: the host side is the Unix socket `notify.vsock` in the working " +
             "directory (connect and send `CONNECT <port>`), not AF_VSOCK; the guest reaches " +
             "host port P at `notify.vsock_P`. The readiness credential is an SMBIOS OEM " +
             "string (`--platform oem_strings=[...]`); `--watchdog` is always on."),
            ("Credential files are refused: passing files through fw_cfg needs a build with the " +
             "non-default `fw_cfg` feature (`--fw-cfg-config`)."),
            "Shutdown and ballooning use the REST API over the control socket with curl.",
            ("`platformOEMStrings` join the readiness credential in `--platform oem_strings=` " +
             "(SMBIOS tables exist on x86_64 only); `--cpus`, `--platform`, `--vsock`, " +
             "`--serial` and `--console` in `extraArgs` are merged with the runner's, as " +
             "microvm.nix merges them. With `hotplugMem` the boot memory is `hotplugMem` " +
             "(`--memory size=`), as microvm.nix gives it."),
        ),
    ),
    Hypervisor.FIRECRACKER: Capabilities(
        features=frozenset({
            F.NET_TAP, F.NET_BRIDGE, F.VSOCK, F.BALLOON, F.INITIAL_BALLOON, F.HOTPLUG_MEM,
            F.HUGEPAGES, F.CONTROL_SOCKET, F.GRACEFUL_SHUTDOWN,
        }),
        image_types=frozenset({"raw"}),
        platforms=_LINUX,
        shutdown="API PUT /actions SendCtrlAltDel (x86_64 only)",
        source="firecracker-microvm/firecracker: src/firecracker/swagger/firecracker.yaml, " +
               "src/vmm/src/resources.rs, src/firecracker/src/main.rs, " +
               "docs/api_requests/actions.md, docs/memory-hotplug.md, " +
               "src/vmm/src/vmm_config/machine_config.rs",
        feature_platforms=MappingProxyType({F.GRACEFUL_SHUTDOWN: _X86}),
        kernel_formats=("x86_64: uncompressed ELF vmlinux (bzImage only in releases after "
                        + "1.16.1); aarch64: Image"),
        consoles=_UART_8250,
        versions=("1.x (config file of 1.0+; memory hotplug 1.14+); checked against the " +
                  "Swagger file of 1.17.0-dev"),
        ignored=MappingProxyType({F.VOLUME_SERIAL: _NO_SERIAL,
                                  F.VOLUME_DIRECT: _NO_DIRECT}),
        reboot_params=_REBOOT_KEYBOARD,
        limits=_FIRECRACKER_LIMITS,
        notes=(
            ("Configured by `share/microvm/firecracker.json` (`--config-file`); " +
             "`microvm.firecracker.extraConfig` is merged into it recursively."),
            ("Memory hotplug needs Firecracker 1.14 or later; the hotplug region starts " +
             "unplugged, so `hotpluggedMem` must be 0 (plug it with `PATCH /hotplug/memory`) " +
             "and `hotplugMem` a multiple of " +
             f"{_FIRECRACKER_LIMITS.hotplug_slot_mib} MiB (the slot size)."),
            ("vsock is hybrid: the host side is the Unix socket `notify.vsock` (guest-initiated " +
             "connections to host port P arrive at `notify.vsock_P`); the readiness " +
             "credential goes on the kernel command line (`systemd.set_credential=`)."),
            "`SendCtrlAltDel` exists on x86_64 only; on aarch64 the shutdown script says so.",
        ),
    ),
    Hypervisor.CROSVM: Capabilities(
        features=frozenset({
            F.SHARE_9P, F.SHARE_VIRTIOFS, F.SHARE_VIRTIOFS_READONLY, F.NET_TAP, F.NET_MACVTAP,
            F.NET_BRIDGE, F.VHOST_NET, F.VSOCK, F.BALLOON, F.INITIAL_BALLOON, F.VOLUME_SERIAL,
            F.VOLUME_DIRECT, F.PCI_PASSTHROUGH, F.CONTROL_SOCKET, F.GRACEFUL_SHUTDOWN,
            F.GRAPHICS,
        }),
        image_types=frozenset({"raw", "qcow2"}),
        platforms=_LINUX,
        shutdown="crosvm powerbtn (ACPI power button)",
        source="google/crosvm: src/crosvm/cmdline.rs, devices/src/virtio/net.rs, " +
               "devices/src/virtio/block/mod.rs, devices/src/virtio/balloon.rs, " +
               "serde_keyvalue/src/key_values.rs",
        kernel_formats="x86_64: ELF vmlinux or bzImage; aarch64: Image (also ELF, lz4 Image)",
        virtiofsd_tag=True,
        gpu_daemon=True,
        consoles=_UART_8250,
        versions=("nixpkgs' 0-unstable-2026 snapshots; read at f1e797a68 (2026-08-21)"),
        reboot_params=_REBOOT_KEYBOARD,
        notes=(
            ("virtiofs goes through virtiofsd (`--vhost-user type=fs`); crosvm reads the tag " +
             "from the daemon, so the runner starts the Rust virtiofsd with `--tag`."),
            ("9p uses crosvm's built-in server (`--shared-dir DIR:TAG:type=p9`); microvm.nix " +
             "reports 9p shares as broken on crosvm [unverified here]."),
            "The balloon always offers deflate-on-OOM, so `deflateOnOOM = false` is refused.",
            "`crosvm.pivotRoot` must name an existing empty directory.",
            ("Graphics: the runner starts crosvm's GPU device (`crosvm device gpu`, virgl, " +
             "cross-domain, EGL and Vulkan) on graphics.socket, drawing into the Wayland " +
             "session of WAYLAND_DISPLAY, and gives the VM `--vhost-user type=gpu,socket=`; not " +
             "under microvm@ (no Wayland session there)."),
        ),
    ),
    Hypervisor.KVMTOOL: Capabilities(
        features=frozenset({
            F.SHARE_9P, F.NET_USER, F.NET_TAP, F.NET_MACVTAP, F.NET_BRIDGE, F.VHOST_NET,
            F.VSOCK, F.BALLOON, F.HUGEPAGES, F.VOLUME_DIRECT, F.PCI_PASSTHROUGH, F.GRAPHICS,
        }),
        image_types=frozenset({"raw"}),
        platforms=_LINUX,
        shutdown="none (lkvm stop is an abrupt stop)",
        source="kvmtool/kvmtool: builtin-run.c, builtin-balloon.c, disk/core.c, virtio/9p.c, " +
               "virtio/net.c, virtio/balloon.c, kvm.c, Makefile",
        feature_platforms=MappingProxyType({F.GRAPHICS: _X86}),
        kernel_formats="x86_64: bzImage (no ELF vmlinux); aarch64: Image",
        consoles=_UART_8250,
        versions=("git snapshots (no releases; nixpkgs packages 0-unstable snapshots); read " +
                  "at b48735e (2024-07-10)"),
        ignored=MappingProxyType({
            F.VOLUME_SERIAL: _NO_SERIAL,
            F.CONTROL_SOCKET: ("lkvm keeps its own instance socket, " +
                               "`.lkvm/<hostName>.sock` in the working directory (the runner " +
                               "sets HOME=.; `HOME=. lkvm stop --name <hostName>` there finds " +
                               "it), and creates no socket at microvm.socket"),
        }),
        reboot_params=_REBOOT_KEYBOARD,
        limits=_KVMTOOL_LIMITS,
        notes=(
            ("The balloon device is offered (`--balloon`). lkvm only inflates or deflates it " +
             "by an amount (`lkvm balloon --name NAME -i/-d MiB`): `microvm-balloon SIZE` " +
             "keeps the size it last set in `.lkvm/<hostName>.balloon-mib` and asks for the " +
             "difference (a size older than lkvm's socket counts as 0: a new run starts " +
             "deflated); run it in the VM's directory, as `microvm balloon` does."),
            (f"At most {_KVMTOOL_LIMITS.max_disks} disks (store disk included); disk and 9p " +
             "paths cannot contain ','."),
            "9p shares cannot be read-only (`--9p DIR,TAG` has no such flag).",
            ("Graphics is a VESA framebuffer (x86_64 only); `gtk` maps to `--gtk`, `headless` " +
             "to `--vnc`; the lkvm build must include that UI."),
        ),
    ),
    Hypervisor.STRATOVIRT: Capabilities(
        features=frozenset({
            F.SHARE_VIRTIOFS, F.SHARE_VIRTIOFS_READONLY, F.NET_TAP, F.NET_MACVTAP,
            F.NET_BRIDGE, F.VHOST_NET, F.VSOCK, F.BALLOON, F.HUGEPAGES, F.VOLUME_SERIAL,
            F.VOLUME_DIRECT, F.CONTROL_SOCKET,
        }),
        image_types=frozenset({"raw"}),
        platforms=_LINUX,
        shutdown="none (QMP system_powerdown does not reach a microvm guest)",
        source="openeuler-mirror/stratovirt: docs/config_guidebook.md, docs/boot.md, " +
               "docs/qmp.md, machine_manager/src/config/mod.rs",
        kernel_formats="x86_64: bzImage or a raw image (objcopy -O binary vmlinux); " +
                       "aarch64: Image",
        consoles=_PL011_ON_ARM,
        versions=("2.4 and later (nixpkgs packages 2.4.0); read at d5b32037 (v2.5.0+45, " +
                  "2026-04-24)"),
        reboot_params=_REBOOT_TRIPLE_FAULT,
        limits=_STRATOVIRT_LIMITS,
        notes=(
            ("Always the `microvm` machine (virtio-mmio), on both architectures; PCI " +
             "passthrough would need the standard machine with UEFI firmware."),
            "Option values cannot contain ',' or '=' (no escaping in its parser).",
            ("The serial console is the chardev `console0`: stdio on a terminal; with " +
             "`MICROVM_CONSOLE=socket` (microvm@.service, whose stdin is no terminal) the " +
             "Unix socket `console.sock`, as `microvm console` expects."),
            (f"Memory must be {_STRATOVIRT_MEM[0]} MiB to {_STRATOVIRT_MEM[1] >> 10} GiB; at " +
             f"most {_STRATOVIRT_LIMITS.max_devices['x86_64']} devices on x86_64."),
        ),
    ),
    Hypervisor.ALIOTH: Capabilities(
        features=frozenset({
            F.SHARE_VIRTIOFS, F.SHARE_VIRTIOFS_READONLY, F.NET_TAP, F.NET_BRIDGE, F.VSOCK,
        }),
        image_types=frozenset({"raw"}),
        platforms=_LINUX,
        shutdown="none (alioth has no control channel)",
        source="google/alioth: alioth-cli/src/boot/boot.rs, alioth-cli/src/boot/config.rs, " +
               "alioth-cli/src/objects.rs, alioth/src/virtio/dev/net/tap.rs, " +
               "alioth/src/device/console.rs",
        kernel_formats="x86_64: bzImage (`--pvh` would take an ELF with the PVH note); " +
                       "aarch64: Image",
        multiqueue_tap=True,
        consoles=_PL011_ON_ARM,
        versions=("0.9.0 to 0.12.0: the spellings all of them accept (`--num-cpu`, `--cmd-line`, " +
                  "`--memory`; 0.10+ keeps the first two as a deprecated flag and an alias)"),
        ignored=MappingProxyType({F.VOLUME_SERIAL: _NO_SERIAL,
                                  F.VOLUME_DIRECT: _NO_DIRECT}),
        reboot_params=_REBOOT_KEYBOARD,
        notes=(
            ("Experimental upstream. The console is stdio and needs a terminal: 0.9-0.12 put " +
             "stdin into raw mode and stop when that fails (alioth/src/device/console.rs). " +
             "When stdin is no terminal (microvm@.service), the runner starts alioth under " +
             "util-linux `script`, which gives it a pseudo-terminal; the console output " +
             "stays on stdout (the journal), `microvm console` is not offered."),
            "Linux hosts only here: on macOS alioth has no tap, vhost-user or vhost-vsock.",
            ("macvtap is not offered: alioth opens it by device path (`tap=/dev/tapN`), which " +
             "is only known once the link exists; it takes no file descriptor."),
            "Values with ',' or '=' are passed through alioth's `-o id_N,VALUE` objects.",
        ),
    ),
    Hypervisor.VFKIT: Capabilities(
        features=frozenset({
            F.SHARE_VIRTIOFS, F.NET_USER, F.VOLUME_SERIAL, F.GRAPHICS, F.CONTROL_SOCKET,
            F.GRACEFUL_SHUTDOWN,
        }),
        image_types=frozenset({"raw"}),
        platforms=frozenset({"aarch64-darwin"}),
        shutdown="REST POST /vm/state {\"state\": \"Stop\"}",
        source="crc-org/vfkit: doc/usage.md, pkg/config/virtio.go, pkg/config/bootloader.go, " +
               "pkg/cmdline/string_slice.go, pkg/rest/rest.go, pkg/rest/vf/state_change.go",
        kernel_formats="uncompressed arm64 Image (a compressed one hangs)",
        virtiofsd=False,
        consoles=MappingProxyType({"x86_64": "hvc0", "aarch64": "hvc0"}),
        versions="0.5 and later (`deviceId` on virtio-blk); read at b2bc27e (v0.6.4+12)",
        reboot_params=_REBOOT_TRIPLE_FAULT,
        notes=(
            ("macOS host (Virtualization.framework). virtiofs is built in: no virtiofsd, and " +
             "no read-only shares (`virtio-fs` takes only sharedDir and mountTag)."),
            ("vsock is not offered: `virtio-vsock` maps single ports to Unix sockets and has no " +
             "CID; the balloon device has no runtime resize request."),
            ("The REST socket must be absolute (`unix:///...`): a relative `microvm.socket` is " +
             "made absolute against the working directory at start."),
            "`--device` values cannot contain ','; the kernel command line cannot contain '\"'.",
            ("`vfkit.rosetta.enable`: `--device rosetta` on the tag `rosetta`, which the guest " +
             "mounts (NixOS's virtualisation.rosetta); `ignoreIfMissing` needs vfkit 0.6."),
        ),
    ),
}


def supporting(feature: Feature) -> list[Hypervisor]:
    """The hypervisors that support a feature, in declaration order (for error hints)."""
    return [hv for hv, caps in CAPABILITIES.items() if feature in caps.features]
