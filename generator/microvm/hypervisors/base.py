"""The interface every hypervisor backend implements. Backends are pure: VM in, data out."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from ..capabilities import (
    CAPABILITIES,
    STORE_DISK_SERIAL,
    Capabilities,
    Feature,
    Hypervisor,
    Limits,
)
from ..config import JSON, Interface, InterfaceType, MicroVM
from ..errors import Problem
from ..layout import META_DIR, Meta, program_of

# fds the runner opens for macvtap queues start here (0-2 are stdio)
FIRST_MACVTAP_FD = 3
# vsock port the guest's service manager sends sd_notify messages to: this + the guest's CID
# (the host's notify relay listens there; guest credential vmm.notify_socket)
NOTIFY_VSOCK_PORT_BASE = 8888


class Accel(StrEnum):
    """How the guest CPU runs: hardware virtualisation or QEMU's software emulation."""

    KVM = "kvm"
    HVF = "hvf"  # Apple's Hypervisor.framework (QEMU on macOS)
    TCG = "tcg"


@dataclass(frozen=True)
class RunContext:
    """What the backend may refer to besides the VM: where the runner tree is installed."""

    runner_dir: str

    @property
    def share_dir(self) -> str:
        return f"{self.runner_dir}/{META_DIR}"


class ControlKind(StrEnum):
    """How a control request reaches the hypervisor (templates/_request.sh.j2 sends it)."""

    QMP = "qmp"  # payload is a QMP command object (JSON text) sent over `socket`
    ARGV = "argv"  # argv is run as is (crosvm, lkvm, ...)
    HTTP = "http"  # method/path/payload sent with curl over the Unix socket `socket`


@dataclass(frozen=True)
class Control:
    """One request to the hypervisor's control channel, rendered by templates/_request.sh.j2."""

    kind: ControlKind
    socket: str | None = None
    payload: str | None = None
    argv: tuple[str, ...] = ()
    method: str = "PUT"
    path: str = "/"


@dataclass(frozen=True)
class Launch:
    """How to start the hypervisor: argv per acceleration, plus files it reads."""

    # argv[0] is the binary (a plain name resolved on PATH, or an absolute path)
    variants: dict[Accel, list[str]]
    # The hardware acceleration the runner tests for at start (falling back to the TCG
    # variant); None: no test, use the first variant. KVM: /dev/kvm is readable and writable
    # and (where kvm_modules is not empty) one of those directories exists: the kernel modules
    # of hardware-assisted KVM. /dev/kvm can exist without them (kvm_pvm runs only guest
    # kernels built for PVM), and then a normal kernel dies under KVM. HVF: the macOS kernel
    # reports kern.hv_support = 1.
    probe: Accel | None = None
    kvm_modules: tuple[str, ...] = ()
    # extra files written below share/microvm/, name -> content
    files: dict[str, str] = field(default_factory=dict)
    # environment variables the hypervisor needs
    env: dict[str, str] = field(default_factory=dict)
    # Unix sockets the hypervisor creates and will not replace: stale ones are removed first
    sockets: list[str] = field(default_factory=list)
    # (argv element serving the serial console on stdio, the one serving it on console.sock):
    # the runner swaps them when MICROVM_CONSOLE=socket; None: no console socket
    console_socket: tuple[str, str] | None = None
    # argv spellings that depend on the hypervisor's version, decided when the runner starts
    fallbacks: tuple[Fallback, ...] = ()
    # crosvm's GPU device, started by the runner before the hypervisor (microvm.graphics)
    gpu: GpuDaemon | None = None


@dataclass(frozen=True)
class GpuDaemon:
    """crosvm's vhost-user GPU device (`crosvm device gpu`): the runner removes a stale
    `socket`, starts `argv` with `--wayland-sock` (WAYLAND_DISPLAY, below XDG_RUNTIME_DIR unless
    absolute: known only when the runner starts), waits for the socket, and stops the device
    when the hypervisor exits."""

    socket: str
    argv: tuple[str, ...]


# crosvm's GPU device for microvm.graphics: virgl (GL), virgl2 and cross-domain (Wayland)
# contexts, EGL, Vulkan (google/crosvm devices/src/virtio/gpu/parameters.rs GpuParameters)
CROSVM_GPU_PARAMS: Mapping[str, JSON] = MappingProxyType({
    "context-types": "virgl:virgl2:cross-domain", "egl": True, "vulkan": True})


def gpu_daemon(vm: MicroVM, params: Mapping[str, JSON]) -> GpuDaemon | None:
    """The GPU device of a VM with graphics; `params` its --params (virgl contexts, EGL,
    Vulkan, displays), written as JSON."""
    if not vm.graphics:
        return None
    return GpuDaemon(socket=vm.gpu_socket, argv=(
        "crosvm", "device", "gpu", "--socket", vm.gpu_socket,
        "--params", json.dumps(dict(params), sort_keys=True, separators=(",", ":"))))


@dataclass(frozen=True)
class Fallback:
    """When `probe` (run once by the runner, output discarded) fails, the consecutive argv
    words `new` are replaced by `old`, of the same length: the older hypervisor's spelling."""

    why: str
    probe: tuple[str, ...]
    new: tuple[str, ...]
    old: tuple[str, ...]

    def __post_init__(self) -> None:
        assert len(self.new) == len(self.old) > 0


def rootless_probe(tap: str) -> tuple[str, ...]:
    """Fails where a network interface's tap cannot be had: not root, and no tap made for the
    VM (microvm@'s tap unit makes it as root; `microvm-run` as root makes it itself)."""
    return ("sh", "-c", '[ "$(id -u)" = 0 ] || [ -e "/sys/class/net/$1" ]', "sh", tap)


def passt_socket(vm: MicroVM, iface: Interface) -> str:
    """passt's socket for a network interface run rootless: in the VM's working directory."""
    return f"{vm.host_name}-{iface.id}.passt"


def macvtap_fds(vm: MicroVM) -> dict[str, list[int]]:
    """fd numbers the runner opens for each macvtap interface id (one per queue)."""
    fds: dict[str, list[int]] = {}
    nxt = FIRST_MACVTAP_FD
    for iface in vm.interfaces_of(InterfaceType.MACVTAP):
        fds[iface.id] = list(range(nxt, nxt + queues(vm)))
        nxt += queues(vm)
    return fds


def queues(vm: MicroVM) -> int:
    """Queue pairs of a tap: one per vCPU where the hypervisor opens taps multiqueue, else 1."""
    return vm.vcpu if CAPABILITIES[vm.hypervisor].multiqueue_tap else 1


class Backend(ABC):
    hypervisor: Hypervisor

    @property
    def caps(self) -> Capabilities:
        return CAPABILITIES[self.hypervisor]

    def encoder(self) -> Encoder:
        """A fresh encoder of this hypervisor's option syntax (QEMU's by default)."""
        return Encoder(self.hypervisor)

    @abstractmethod
    def argv(self, vm: MicroVM, ctx: RunContext, accel: Accel, enc: Encoder) -> list[str]:
        """The hypervisor's command line for `vm` under `accel`, its option values written
        by `enc` (which records the values the syntax cannot carry)."""

    def encode(self, vm: MicroVM, ctx: RunContext, accel: Accel, enc: Encoder) -> None:
        """Encode with `enc` everything the runner gives the hypervisor under `accel`: the
        argv, and a configuration file where the backend writes one (problems() reads what
        `enc` recorded)."""
        self.argv(vm, ctx, accel, enc)

    def command(self, vm: MicroVM, ctx: RunContext, accel: Accel = Accel.KVM) -> list[str]:
        """`argv` with a fresh encoder: what the runner runs."""
        return self.argv(vm, ctx, accel, self.encoder())

    @abstractmethod
    def launch(self, vm: MicroVM, ctx: RunContext) -> Launch:
        """argv (per acceleration) and files to start `vm`."""

    def runner_taps(self, vm: MicroVM) -> list[Interface]:
        """The tap, bridge and network interfaces whose tap device the runner makes (bin/tap-up,
        the host's microvm-tap-interfaces@ unit) and attaches to its bridge."""
        return vm.interfaces_of(InterfaceType.TAP, InterfaceType.BRIDGE, InterfaceType.NETWORK)

    def shutdown(self, vm: MicroVM) -> Control | None:
        """The request that makes the guest power off, or None when there is none."""
        return None

    def balloon(self, vm: MicroVM) -> Control | None:
        """The request that sets the balloon at runtime, or None when there is none.

        Placeholders the balloon script replaces in `payload` and `argv`: @BALLOON_MIB@ and
        @BALLOON_BYTES@ (memory taken from the guest), @GUEST_MIB@ and @GUEST_BYTES@ (memory
        left to the guest)."""
        return None

    def control_programs(self, vm: MicroVM) -> tuple[str, ...]:
        """The programs `vm`'s shutdown and balloon requests run (ControlKind.ARGV; see
        layout.program_of), each once."""
        controls = (self.shutdown(vm), self.balloon(vm))
        found = [program_of(c.argv) for c in controls
                 if c is not None and c.kind is ControlKind.ARGV]
        return tuple(dict.fromkeys(p for p in found if p is not None))

    def programs(self, vm: MicroVM) -> tuple[str, ...]:
        """Every program the runner of `vm` starts besides the shell tools: the hypervisor (of
        each acceleration's argv) and the control tools. `microvm doctor` looks for these."""
        launch = self.launch(vm, RunContext(runner_dir="/"))
        hypervisor = [program_of(argv) for argv in launch.variants.values()]
        return tuple(dict.fromkeys([*(p for p in hypervisor if p is not None),
                                    *self.control_programs(vm)]))

    def problems(self, vm: MicroVM) -> list[Problem]:
        """What this backend cannot express for `vm` although the capability table allows it,
        by option path: the table's limits, the backend's own rules, then the option values
        its syntax cannot carry and a kernel command line too long for the guest, found where
        they are encoded, under every acceleration (the runner may pass any of them)."""
        out = limit_problems(vm, self.caps.limits) + self.rules(vm)
        encoders = [self.encoder() for _ in Accel]
        for accel, enc in zip(Accel, encoders, strict=True):
            self.encode(vm, RunContext(runner_dir="/"), accel, enc)
        out += dict.fromkeys(p for enc in encoders for p in enc.problems)
        return out + cmdline_problems(max(enc.cmdline_bytes for enc in encoders))

    def rules(self, vm: MicroVM) -> list[Problem]:
        """Rules of this backend beyond the capability table's limits, by option path."""
        del vm
        return []


def limit_problems(vm: MicroVM, limits: Limits) -> list[Problem]:
    """Where `vm` exceeds the bounds its hypervisor's capability table gives (Limits)."""
    hv = vm.hypervisor
    out: list[Problem] = []
    if limits.max_vcpus is not None and vm.vcpu > limits.max_vcpus:
        out.append(Problem("microvm.vcpu",
                           f"{hv} runs at most {limits.max_vcpus} vCPUs, got {vm.vcpu}"))
    if limits.mem_mib is not None and not limits.mem_mib[0] <= vm.mem <= limits.mem_mib[1]:
        least, most = limits.mem_mib
        out.append(Problem("microvm.mem", f"{hv} takes {least} MiB to {most} MiB of memory, " +
                           f"got {vm.mem}"))
    if (page := limits.hugepage_mib) is not None and vm.hugepage_mem and vm.mem % page:
        out.append(Problem("microvm.mem", f"with {page} MiB huge pages the memory must be a " +
                           f"multiple of {page} MiB, got {vm.mem}"))
    if (slot := limits.hotplug_slot_mib) is not None and vm.hotplug_mem % slot:
        out.append(Problem("microvm.hotplugMem", f"{hv}'s hotplug memory is a multiple of " +
                           f"its {slot} MiB slot size, got {vm.hotplug_mem}"))
    if limits.max_disks is not None and (n := len(disks(vm))) > limits.max_disks:
        out.append(Problem("microvm.volumes", f"{hv} attaches at most {limits.max_disks} " +
                           f"disks (the store disk counts), got {n}"))
    return out


# QEMU's (and qemu-img's) name of each microvm.volumes.*.imageType, and the -o options the
# runner creates a missing image of that type with (generator/microvm/runner.py: the file
# system is made in a raw file, which qemu-img convert writes in the format). "vhd" is the fixed
# VHD (cloud-hypervisor reads no other), exactly the volume's size (force_size: no rounding to a
# disk geometry).
QEMU_IMAGE_FORMATS: Mapping[str, tuple[str, str]] = {
    "raw": ("raw", ""),
    "qcow2": ("qcow2", ""),
    "vhd": ("vpc", "subformat=fixed,force_size=on"),
    "vhdx": ("vhdx", ""),
}


@dataclass(frozen=True)
class Disk:
    """A disk the hypervisor attaches (`disks`): the store disk, then the volumes."""

    id: str  # "store", "vol0", "vol1"...: the drive's name where the syntax has one
    path: str  # the image file
    read_only: bool
    direct: bool
    serial: str | None  # the block device serial, None: none given
    image_type: str  # raw, qcow2, vhd or vhdx
    volume: int | None  # the index in microvm.volumes; None: the store disk

    def option(self, key: str) -> str:
        """The option path of the volume's `key` ("image", "serial"); the store disk's image
        and serial come from microvm.storeDisk."""
        if self.volume is None:
            return "microvm.storeDisk"
        return f"microvm.volumes[{self.volume}].{key}"


def disks(vm: MicroVM) -> list[Disk]:
    """The store disk (read-only; the guest mounts it by its serial where the hypervisor sets
    serials), then the volumes, in the order the guest sees them."""
    out: list[Disk] = []
    if vm.store_disk_path is not None:
        out.append(Disk(id="store", path=vm.store_disk_path, read_only=True, direct=False,
                        serial=store_disk_serial(vm), image_type="raw", volume=None))
    for i, v in enumerate(vm.volumes):
        out.append(Disk(id=f"vol{i}", path=v.image, read_only=v.read_only, direct=v.direct,
                        serial=v.serial, image_type=v.image_type, volume=i))
    return out


# Host side of a vsock device that hypervisors expose as a Unix socket (firecracker,
# cloud-hypervisor), relative to the working directory like the control socket. The host's
# `microvm ssh` connects to it (`CONNECT <port>`); a guest connecting to host port P reaches
# the Unix socket HYBRID_VSOCK_SOCKET + "_P" (the notify relay listens on "_<8888+CID>").
HYBRID_VSOCK_SOCKET = "notify.vsock"
# share/microvm/ file naming that socket (written by backends with hybrid vsock): a host-side
# listener for guest-initiated connections (the notify relay) binds HYBRID_VSOCK_SOCKET_<port>
HYBRID_VSOCK_FILE = Meta.HYBRID_VSOCK.value


def hybrid_vsock_socket(vm: MicroVM) -> str:
    """The hybrid vsock socket of `vm` (the same name for every VM: it lives in the VM's
    state directory)."""
    del vm
    return HYBRID_VSOCK_SOCKET


def hybrid_vsock_files(vm: MicroVM) -> dict[str, str]:
    """share/microvm/ files of a hypervisor with hybrid vsock: HYBRID_VSOCK_FILE naming its
    socket (for a host-side listener), none without vsock."""
    if vm.vsock_cid is None:
        return {}
    return {HYBRID_VSOCK_FILE: hybrid_vsock_socket(vm) + "\n"}


def created_sockets(vm: MicroVM, *, hybrid_vsock: bool = False) -> list[str]:
    """The Unix sockets the hypervisor creates (Launch.sockets): the control socket, and the
    hybrid vsock socket where the hypervisor has one and the VM vsock."""
    sockets = [] if vm.socket is None else [vm.socket]
    if hybrid_vsock and vm.vsock_cid is not None:
        sockets.append(hybrid_vsock_socket(vm))
    return sockets


def console(vm: MicroVM) -> str:
    """The guest device of the serial console (capabilities: one table for backend and guest)."""
    return CAPABILITIES[vm.hypervisor].console(vm.arch)


def store_disk_serial(vm: MicroVM) -> str | None:
    """The serial of the store disk where the hypervisor sets block serials, else None."""
    return STORE_DISK_SERIAL if CAPABILITIES[vm.hypervisor].supports(
        Feature.VOLUME_SERIAL) else None


def notify_credential(vm: MicroVM) -> str | None:
    """The systemd credential that tells the guest where to send READY=1 (vsock port
    NOTIFY_VSOCK_PORT_BASE + CID), or None without vsock."""
    if vm.vsock_cid is None:
        return None
    return f"vmm.notify_socket=vsock-stream:2:{NOTIFY_VSOCK_PORT_BASE + vm.vsock_cid}"


def notify_kernel_params(vm: MicroVM) -> list[str]:
    """The notify credential as a kernel parameter, for hypervisors without SMBIOS OEM strings
    or fw_cfg: systemd imports `systemd.set_credential=ID:VALUE` as a system credential."""
    credential = notify_credential(vm)
    if credential is None:
        return []
    return ["systemd.set_credential=" + credential.replace("=", ":", 1)]


# The longest kernel command line, in bytes with its terminating NUL: the guest kernel's
# COMMAND_LINE_SIZE, 2048 on x86_64 and arm64 (Linux arch/x86/include/asm/setup.h,
# arch/arm64/include/uapi/asm/setup.h), which is less than or equal to every hypervisor's own
# bound: firecracker refuses more than its CMDLINE_MAX_SIZE, 2048 on both architectures
# (src/vmm/src/arch/{x86_64,aarch64}/layout.rs); cloud-hypervisor's is 0x10000
# (arch/src/x86_64/layout.rs CMDLINE_MAX_SIZE); a longer line is cut by the guest.
KERNEL_CMDLINE_BYTES = 2048


def kernel_cmdline(vm: MicroVM, *extra: str, enc: Encoder, with_console: bool = True) -> str:
    """The kernel command line: the console device (unless with_console is False), the
    hypervisor's reboot words, `extra`, then the user's kernelParams; `enc` records its
    length (cmdline_problems bounds the longest)."""
    words = [f"console={console(vm)}"] if with_console else []
    line = " ".join([*words, *CAPABILITIES[vm.hypervisor].reboot_params, *extra,
                     *vm.kernel_params])
    enc.cmdline_bytes = max(enc.cmdline_bytes, len(line.encode()) + 1)
    return line


def cmdline_problems(size: int) -> list[Problem]:
    """A kernel command line of `size` bytes (with its NUL) the guest cannot take, reported
    on the option that makes it long."""
    if size <= KERNEL_CMDLINE_BYTES:
        return []
    return [Problem("microvm.kernelParams", f"the kernel command line would be {size} bytes " +
                    f"with its NUL; the guest kernel takes at most {KERNEL_CMDLINE_BYTES} " +
                    "(Linux COMMAND_LINE_SIZE)")]


def comma_escape(value: str) -> str:
    """QEMU-style option values: a literal ',' is written ',,'."""
    return value.replace(",", ",,")


def opts(head: str | None, kv: Mapping[str, str | int | bool | None] | None = None, *,
         escape: Callable[[str], str] = comma_escape,
         bools: tuple[str, str] = ("on", "off")) -> str:
    """Join a `head,key=value,...` option string, the syntax most hypervisors share:
    opts("virtio-blk-pci", {"drive": "d0", "serial": None}) -> "virtio-blk-pci,drive=d0".
    None drops a key; bools are spelled bools[0]/bools[1]; values pass through `escape` (QEMU
    doubles commas; other parsers quote). Keys are written as given (QEMU mixes `mount_tag`
    and `guest-cid`)."""
    out = [head] if head else []
    for key, value in (kv or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            out.append(f"{key}={bools[0] if value else bools[1]}")
        else:
            out.append(f"{key}={escape(str(value))}")
    return ",".join(out)


class Encoder:
    """One hypervisor's option syntax: `kv` joins `head,key=value,...` strings with values
    escaped its way, and `given` records, by option path, each value the syntax cannot carry
    where it is encoded (Backend.problems reports them)."""

    def __init__(self, hv: Hypervisor, *, escape: Callable[[str], str] = comma_escape,
                 bools: tuple[str, str] = ("on", "off"), unsafe: str = "",
                 where: str = "option values") -> None:
        self.hv = hv
        self.escape = escape
        self.bools = bools
        # the characters `given` refuses, and where (in messages), unless told otherwise
        self.unsafe = unsafe
        self.where = where
        self.problems: list[Problem] = []
        # bytes (with the NUL) of the longest kernel command line encoded (kernel_cmdline)
        self.cmdline_bytes = 0

    def given(self, option: str, value: str, *, unsafe: str | None = None,
              where: str | None = None) -> str:
        """`value` (of the option at path `option`) as it goes into the argv; a problem when
        it holds a character of `unsafe`, which the syntax cannot escape in `where`."""
        chars = self.unsafe if unsafe is None else unsafe
        bad = sorted({c for c in value if c in chars})
        if bad:
            shown = " or ".join(repr(c) for c in bad)
            self.refuse(option, f"{self.hv} cannot take {shown} in {where or self.where}, " +
                        f"got {value!r}")
        return value

    def refuse(self, option: str, message: str) -> None:
        """Record that the option at path `option` cannot be written, and why."""
        self.problems.append(Problem(option, message))

    def kv(self, head: str | None, items: Mapping[str, str | int | bool | None]) -> str:
        """`head,key=value,...` in this syntax (see `opts`)."""
        return opts(head, items, escape=self.escape, bools=self.bools)
