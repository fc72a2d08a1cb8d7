"""QEMU: `microvm` machine by default on x86_64 (q35 when PCI is needed), `virt` on aarch64.

Checked against qemu/qemu docs/system/i386/microvm.rst, docs/system/invocation and the Debian 12
build's `-device help` (QEMU 7.2); see ../shared/hypervisors.md section 3.
"""

from __future__ import annotations

import json
import re

from ..capabilities import Hypervisor
from ..config import Interface, InterfaceType, MicroVM, ShareProto
from ..errors import Problem
from .base import (
    QEMU_IMAGE_FORMATS,
    Accel,
    Backend,
    Control,
    ControlKind,
    Encoder,
    Fallback,
    Launch,
    RunContext,
    disks,
    kernel_cmdline,
    macvtap_fds,
    notify_credential,
    opts,
    passt_socket,
    queues,
    rootless_probe,
)

# the serial console's chardev, and its replacement when a service manager runs the VM
SERIAL_STDIO = "stdio,id=stdio,signal=off"
SERIAL_SOCKET = "socket,id=stdio,path=console.sock,server=on,wait=off"
# Under TCG, a kernel on the microvm machine (no HPET, no ACPI PM timer) can hang calibrating
# the TSC; an early TSC frequency avoids it (see ../shared/e2e-recipes.md, section 2).
TCG_MICROVM_PARAMS = ("tsc_early_khz=2000000",)
# Hardware-assisted KVM on x86 is kvm_intel (VT-x) or kvm_amd (AMD-V); on aarch64 KVM is built
# into the kernel and /dev/kvm alone tells.
KVM_MODULES = {"x86_64": ("/sys/module/kvm_intel", "/sys/module/kvm_amd")}
# qemu-bridge-helper creates the tap of a `bridge` interface; it needs CAP_NET_ADMIN, so NixOS
# hosts get a wrapper with that capability here (nix/modules/host.nix). Where it is missing the
# runner leaves helper= out and QEMU runs its own (Debian: /usr/lib/qemu/qemu-bridge-helper).
BRIDGE_HELPER = "/run/wrappers/bin/qemu-bridge-helper"


# microvm.graphics.backend -> -display; the GPU device of each (PCI name, virtio-mmio name):
# a GL device (virgl) where QEMU's display has GL, a VGA-compatible one for a window
DISPLAYS = {"gtk": "gtk,gl=on", "cocoa": "cocoa", "headless": "egl-headless"}
GPUS = {"gtk": ("virtio-vga-gl", "virtio-gpu-gl-device"),
        "cocoa": ("virtio-gpu", "virtio-gpu-device"),
        "headless": ("virtio-gpu-gl", "virtio-gpu-gl-device")}


def gpu_device(vm: MicroVM, dev: str) -> str:
    """The GPU's -device: with graphics.vulkan (on a GL device; cocoa has none) blob
    resources, the host memory window and the Vulkan protocol, which QEMU needs together."""
    pci, mmio = GPUS[vm.graphics_backend]
    name = pci if dev == "pci" else mmio
    if vm.graphics_vulkan is None or vm.graphics_backend == "cocoa":
        return name
    # blob=true as microvm.nix spells it (QEMU reads true and on alike)
    return opts(name, {"blob": "true", "hostmem": vm.graphics_hostmem, vm.graphics_vulkan: True})


def _input_devices(dev: str) -> list[str]:
    """Keyboard and pointer for the display: USB on an xHCI controller where there is PCI
    (an absolute tablet, so the pointer follows the host's), virtio input on virtio-mmio."""
    if dev == "pci":
        return ["-device", "qemu-xhci", "-device", "usb-tablet", "-device", "usb-kbd"]
    return ["-device", "virtio-keyboard-device", "-device", "virtio-tablet-device"]


def binary(vm: MicroVM) -> str:
    return "qemu-system-aarch64" if vm.arch == "aarch64" else "qemu-system-x86_64"


def machine_type(vm: MicroVM) -> str:
    """The machine: the user's choice, else microvm (x86_64) unless something needs PCI."""
    if vm.qemu.machine is not None:
        return vm.qemu.machine
    if vm.arch == "aarch64":
        return "virt"
    needs_q35 = (vm.hotplug_mem > 0 or vm.graphics or any(d.bus == "pci" for d in vm.devices)
                 or bool(vm.qemu.pcie_root_ports))
    return "q35" if needs_q35 else "microvm"


def has_pcie(vm: MicroVM) -> bool:
    """Does the machine have a PCI Express root bus (pcie.0), where root ports can sit? q35
    and virt do, microvm only with pcie=on, the i440fx PC does not."""
    m = machine_type(vm)
    if m == "microvm":
        return machine_opts(vm, Accel.KVM).get("pcie") == "on"
    return not (m == "pc" or m.startswith("pc-i440fx"))


# the machines' own root buses, which a device's qemu.bus may name besides the declared ports
ROOT_BUSES = ("pcie.0", "pci.0")
_DEVICE_ID = re.compile(r"(?:^|,)id=([^,]+)")


def buses(vm: MicroVM) -> set[str]:
    """The buses a passed-through PCI device may name: the root buses, the declared root
    ports, and the ids of devices microvm.qemu.extraArgs creates (a port made there)."""
    made = {m.group(1) for arg in vm.qemu.extra_args for m in _DEVICE_ID.finditer(arg)}
    return {*ROOT_BUSES, *(p.id for p in vm.qemu.pcie_root_ports), *made}


def machine_option(machine: str, kv: dict[str, str | None]) -> str:
    """-machine's value. QEMU's parser takes no ',,' in the implied first value (7.2 reads
    `q35,,x` as q35 and an empty parameter), so a name with ',' goes in as type=NAME."""
    if "," in machine:
        return opts(None, {"type": machine, **kv})
    return opts(machine, kv)


def uses_pci(vm: MicroVM) -> bool:
    """virtio-*-pci devices (q35, virt, microvm with pcie=on) or virtio-*-device (mmio)."""
    m = machine_type(vm)
    if m != "microvm":
        return True
    return bool(dict(vm.qemu.machine_opts or ()).get("pcie") == "on")


def cmdline(vm: MicroVM, accel: Accel, enc: Encoder) -> str:
    """The console (when QEMU serves one), the reboot words, the early TSC frequency under
    TCG on the microvm machine unless the user gives one, then the user's kernelParams."""
    tcg = (accel is Accel.TCG and machine_type(vm) == "microvm"
           and not any(w.startswith("tsc_early_khz=") for w in vm.kernel_params))
    return kernel_cmdline(vm, *(TCG_MICROVM_PARAMS if tcg else ()), enc=enc,
                          with_console=vm.qemu.serial_console)


def machine_opts(vm: MicroVM, accel: Accel) -> dict[str, str | None]:
    m = machine_type(vm)
    if vm.qemu.machine_opts is not None:
        given: dict[str, str | None] = dict(vm.qemu.machine_opts)
        given.setdefault("accel", str(accel))
        return given
    o: dict[str, str | None] = {"accel": str(accel)}
    if m == "microvm":
        # TCG needs the legacy PIT and PIC to boot; with KVM they are dead weight.
        legacy = "on" if accel is Accel.TCG else "off"
        o.update({"acpi": "on", "pcie": "off", "pic": legacy, "pit": legacy, "rtc": "on",
                  "usb": "on" if any(d.bus == "usb" for d in vm.devices) else "off"})
    if vm.arch == "aarch64":
        o["gic-version"] = "max"
    if accel is Accel.KVM:
        o["mem-merge"] = "on"
    if _shared_memory(vm):
        o["memory-backend"] = "mem"
    return o


def _shared_memory(vm: MicroVM) -> bool:
    return bool(vm.shares_of(ShareProto.VIRTIOFS)) or vm.hugepage_mem


def darwin(vm: MicroVM) -> bool:
    return vm.system.endswith("-darwin")


def hardware_accel(vm: MicroVM) -> Accel:
    """KVM on Linux, Hypervisor.framework on macOS."""
    return Accel.HVF if darwin(vm) else Accel.KVM


def sandbox(vm: MicroVM) -> str | None:
    """QEMU's seccomp filter (-sandbox): not on macOS (no seccomp there), not with a bridge
    interface (QEMU runs qemu-bridge-helper, a setuid program). It is installed before QEMU
    drops to microvm.user, so set*uid must stay allowed then (tried with QEMU 7.2:
    elevateprivileges=deny and =children both end in "Bad system call")."""
    if darwin(vm) or any(i.type is InterfaceType.BRIDGE for i in vm.interfaces):
        return None
    spawn = "allow" if any(f.direction == "guest" for f in vm.forward_ports) else "deny"
    elevate = "deny" if vm.user is None else "allow"
    return opts("on", {"obsolete": "deny", "elevateprivileges": elevate, "spawn": spawn,
                       "resourcecontrol": "deny"})


def cpu(vm: MicroVM, accel: Accel) -> str:
    if vm.cpu is not None:
        return vm.cpu
    if accel is Accel.TCG:
        return "max"
    if accel is Accel.HVF:
        return "host"
    # SGX on the microvm machine crashes QEMU (qemu issue 2142)
    return "host,+x2apic,-sgx" if vm.arch == "x86_64" else "host"


def _host_fwd(vm: MicroVM) -> list[str]:
    out = []
    for f in vm.forward_ports:
        if f.direction == "host":
            out.append(f"hostfwd={f.proto}:{f.host_address}:{f.host_port}-" +
                       f"{f.guest_address}:{f.guest_port}")
        else:
            out.append(f"guestfwd={f.proto}:{f.guest_address or '10.0.2.100'}:{f.guest_port}-" +
                       f"cmd:socat - TCP:{f.host_address or '127.0.0.1'}:{f.host_port}")
    return out


def _netdev(iface: Interface, netdev_id: str, fds: dict[str, list[int]], queues: int | None,
            forwards: list[str]) -> str:
    """-netdev of one interface (queues: of a multiqueue tap; forwards: hostfwd/guestfwd)."""
    netdev: dict[str, str | int | bool | None] = {"id": netdev_id}
    match iface.type:
        case InterfaceType.USER:
            return ",".join([opts("user", netdev), *forwards])
        case InterfaceType.TAP | InterfaceType.NETWORK:
            netdev.update({"ifname": iface.id, "script": "no", "downscript": "no",
                           "vhost": True if iface.vhost else None, "queues": queues})
        case InterfaceType.BRIDGE:
            return _bridge_netdev(iface, netdev, BRIDGE_HELPER)
        case InterfaceType.MACVTAP:
            ids = fds[iface.id]
            if len(ids) == 1:
                netdev["fd"] = ids[0]
            else:
                netdev["fds"] = ":".join(map(str, ids))
            netdev["vhost"] = True if iface.vhost else None
    return opts("tap", netdev)


def _bridge_netdev(iface: Interface, netdev: dict[str, str | int | bool | None],
                   helper: str | None) -> str:
    # a missing bridge is validation's to report (problems() encodes invalid VMs too)
    return opts("bridge", {**netdev, "br": iface.bridge, "helper": helper})


def _fallbacks(vm: MicroVM) -> tuple[Fallback, ...]:
    """Spellings for older QEMUs (-runas) and hosts without NixOS's bridge helper."""
    fallbacks: tuple[Fallback, ...] = ()
    if vm.user is not None:
        user = opts(None, {"user": vm.user})
        fallbacks = (Fallback(
            why="QEMU before 9.1 has no -run-with; it drops privileges with -runas",
            probe=(binary(vm), "-run-with", user, "-version"),
            new=("-run-with", user), old=("-runas", vm.user)),)
    q = queues(vm)
    for i, iface in enumerate(vm.interfaces):
        if iface.type is InterfaceType.NETWORK:
            tap = _netdev(iface, f"net{i}", {}, q if q > 1 else None, [])
            fallbacks += (Fallback(
                why=f"no tap {iface.id} for an unprivileged user: passt's user-mode network",
                probe=rootless_probe(iface.id), new=(tap,),
                old=(opts("stream", {"id": f"net{i}", "server": False, "addr.type": "unix",
                                     "addr.path": passt_socket(vm, iface)}),)),)
        if iface.type is InterfaceType.BRIDGE:
            netdev: dict[str, str | int | bool | None] = {"id": f"net{i}"}
            fallbacks += (Fallback(
                why=f"{BRIDGE_HELPER} is NixOS's; elsewhere QEMU finds its own helper",
                probe=("sh", "-c", 'test -x "$1"', "sh", BRIDGE_HELPER),
                new=(_bridge_netdev(iface, netdev, BRIDGE_HELPER),),
                old=(_bridge_netdev(iface, netdev, None),)),)
    return fallbacks


class Qemu(Backend):
    hypervisor = Hypervisor.QEMU

    def argv(self, vm: MicroVM, ctx: RunContext, accel: Accel, enc: Encoder) -> list[str]:
        del ctx  # QEMU reads no generated files; opts() doubles commas; enc: the cmdline
        dev = "pci" if uses_pci(vm) else "device"
        return [binary(vm), *self._machine(vm, accel), *self._display(vm, dev),
                *self._boot(vm, accel, dev, enc), *self._disks(vm, dev), *self._shares(vm, dev),
                *self._net(vm, dev), *self._vsock(vm, dev), *self._memory_devices(vm, dev),
                *self._devices(vm), *self._credentials(vm), *vm.qemu.extra_args]

    def _machine(self, vm: MicroVM, accel: Accel) -> list[str]:
        """Name, machine, CPU, memory, and the privileges QEMU runs with."""
        mem = vm.mem
        name = {"guest": vm.host_name, "process": vm.host_name if vm.pretty_procnames else None}
        argv = ["-name", opts(None, name),
                "-machine", machine_option(machine_type(vm), machine_opts(vm, accel)),
                "-cpu", cpu(vm, accel),
                "-smp", str(vm.vcpu),
                "-m", (f"{mem}M" if not vm.hotplug_mem
                       else f"{mem}M,slots=1,maxmem={mem + vm.hotplug_mem}M"),
                "-nodefaults", "-no-user-config", "-no-reboot"]
        if machine_type(vm) == "microvm":
            # modern virtio-mmio: vhost-user (virtiofsd) refuses legacy devices
            argv += ["-global", "virtio-mmio.force-legacy=false"]
        if _shared_memory(vm):
            backend = ("memory-backend-file" if vm.hugepage_mem else "memory-backend-memfd")
            argv += ["-object", opts(backend, {
                "id": "mem", "size": f"{mem}M", "share": True,
                "mem-path": "/dev/hugepages" if vm.hugepage_mem else None})]
        if vm.user is not None:
            # QEMU 9.1 and later; older ones spell it -runas (see launch)
            argv += ["-run-with", opts(None, {"user": vm.user})]
        return argv

    def _display(self, vm: MicroVM, dev: str) -> list[str]:
        """Graphics (or none), the serial console on stdio, the seccomp sandbox."""
        if vm.graphics:
            argv = ["-display", DISPLAYS[vm.graphics_backend],
                    "-device", gpu_device(vm, dev), *_input_devices(dev)]
        else:
            argv = ["-display", "none"]
        if vm.qemu.serial_console:
            argv += ["-chardev", SERIAL_STDIO,
                     "-serial", "chardev:stdio"]
        if (seccomp := sandbox(vm)) is not None:
            argv += ["-sandbox", seccomp]
        return argv

    def _boot(self, vm: MicroVM, accel: Accel, dev: str, enc: Encoder) -> list[str]:
        """Kernel, initrd and command line; the QMP socket, the machine UUID, entropy."""
        argv = ["-kernel", vm.kernel]
        if vm.initrd is not None:
            argv += ["-initrd", vm.initrd]
        argv += ["-append", cmdline(vm, accel, enc)]
        if vm.socket is not None:
            argv += ["-qmp", opts(f"unix:{vm.socket.replace(',', ',,')}",
                                  {"server": True, "wait": False})]
        return [*argv, "-smbios", f"type=1,uuid={vm.machine_uuid}",
                "-device", f"virtio-rng-{dev}"]

    def _vsock(self, vm: MicroVM, dev: str) -> list[str]:
        """vhost-vsock, and where a systemd guest reports readiness (READY=1) to the host's
        notify relay: the credential as an SMBIOS OEM string."""
        credential = notify_credential(vm)
        if vm.vsock_cid is None or credential is None:
            return []
        return ["-device", opts(f"vhost-vsock-{dev}", {"guest-cid": vm.vsock_cid}),
                "-smbios", f"type=11,value=io.systemd.credential:{credential}"]

    def _memory_devices(self, vm: MicroVM, dev: str) -> list[str]:
        """The balloon and the virtio-mem hotplug region."""
        argv: list[str] = []
        if vm.balloon:
            argv += ["-device", opts(f"virtio-balloon-{dev}", {
                "id": "balloon0", "deflate-on-oom": vm.deflate_on_oom,
                "free-page-reporting": True})]
        if vm.hotplug_mem:
            argv += ["-object", opts("memory-backend-ram", {
                         "id": "hotmem", "size": f"{vm.hotplug_mem}M"}),
                     "-device", opts("virtio-mem-pci", {
                         "id": "hotmem0", "memdev": "hotmem",
                         "requested-size": f"{vm.hotplugged_mem}M"})]
        return argv

    def _credentials(self, vm: MicroVM) -> list[str]:
        argv: list[str] = []
        for name, path in vm.credential_files:
            argv += ["-fw_cfg", opts(None, {"name": f"opt/io.systemd.credentials/{name}",
                                            "file": path})]
        return argv

    def _disks(self, vm: MicroVM, dev: str) -> list[str]:
        argv: list[str] = []
        for d in disks(vm):
            argv += ["-drive", opts(None, {
                "id": d.id, "format": QEMU_IMAGE_FORMATS[d.image_type][0],
                "file": d.path, "if": "none",
                "read-only": True if d.read_only else None,
                "cache.direct": True if d.direct else None,
                # the guest's TRIM frees the blocks in the (sparse) image file
                "discard": None if d.read_only else "unmap"})]
            argv += ["-device", opts(f"virtio-blk-{dev}", {
                "drive": d.id, "serial": d.serial,
                # modern virtio only: no legacy I/O ports to allocate on the PCI bus
                "disable-legacy": True if dev == "pci" else None})]
        return argv

    def _shares(self, vm: MicroVM, dev: str) -> list[str]:
        argv: list[str] = []
        for i, s in enumerate(vm.shares):
            if s.proto is ShareProto.NINEP:
                model = {"mapped": "mapped-xattr"}.get(s.security_model, s.security_model)
                argv += ["-fsdev", opts("local", {
                    "id": f"fs{i}", "path": s.source, "security_model": model,
                    "readonly": True if s.read_only else None})]
                argv += ["-device", opts(f"virtio-9p-{dev}", {"fsdev": f"fs{i}",
                                                              "mount_tag": s.tag})]
            else:
                assert s.socket is not None
                argv += ["-chardev", opts("socket", {"id": f"fs{i}", "path": s.socket})]
                argv += ["-device", opts(f"vhost-user-fs-{dev}", {"chardev": f"fs{i}",
                                                                  "tag": s.tag})]
        return argv

    def _net(self, vm: MicroVM, dev: str) -> list[str]:
        argv: list[str] = []
        fds = macvtap_fds(vm)
        q = queues(vm)
        users = vm.interfaces_of(InterfaceType.USER)
        for i, iface in enumerate(vm.interfaces):
            # a bridge's tap is made by qemu-bridge-helper, single queue
            multiqueue = q > 1 and iface.type in (InterfaceType.TAP, InterfaceType.NETWORK,
                                                  InterfaceType.MACVTAP)
            # the port forwards go on the first user network
            forwards = _host_fwd(vm) if users and iface is users[0] else []
            device: dict[str, str | int | bool | None] = {"netdev": f"net{i}", "mac": iface.mac}
            if dev == "pci":
                device["romfile"] = ""  # no iPXE option ROM: the kernel boots directly
            if multiqueue:
                device["mq"] = True
                if dev == "pci":
                    device["vectors"] = 2 * q + 2
            argv += ["-netdev", _netdev(iface, f"net{i}", fds, q if multiqueue else None,
                                        forwards),
                     "-device", opts(f"virtio-net-{dev}", device)]
        return argv

    def rules(self, vm: MicroVM) -> list[Problem]:
        """Root ports need a PCI Express machine; a passed-through PCI device's qemu.bus names a
        bus that exists (else QEMU refuses to start); Vulkan needs a GL display."""
        out: list[Problem] = []
        if vm.qemu.pcie_root_ports and not has_pcie(vm):
            out.append(Problem("microvm.qemu.pcieRootPorts", "root ports need a PCI Express " +
                               f"machine, and {machine_type(vm)!r} has none here: use q35 " +
                               "(the default when ports are declared), or microvm with " +
                               'microvm.qemu.machineOpts.pcie = "on"'))
        if vm.graphics and vm.graphics_vulkan is not None and vm.graphics_backend == "cocoa":
            out.append(Problem("microvm.graphics.vulkan", "the cocoa display has no GL, so " +
                               "its GPU (virtio-gpu) has no Vulkan: use graphics.backend " +
                               '"gtk" or "headless", or graphics.vulkan = null'))
        known = buses(vm)
        ports = ", ".join(p.id for p in vm.qemu.pcie_root_ports) or "none"
        for i, d in enumerate(vm.devices):
            if d.bus == "pci" and d.qemu_bus is not None and d.qemu_bus not in known:
                out.append(Problem(f"microvm.devices[{i}].qemu.bus", "names no bus: " +
                                   f"{d.qemu_bus!r} is neither a root port of " +
                                   f"microvm.qemu.pcieRootPorts (declared: {ports}) nor " +
                                   f"{' or '.join(ROOT_BUSES)}"))
        return out

    def _devices(self, vm: MicroVM) -> list[str]:
        # the root ports first: the devices that sit on them come after
        argv: list[str] = []
        for port in vm.qemu.pcie_root_ports:
            argv += ["-device", opts("pcie-root-port", {
                "id": port.id, "bus": port.bus, "chassis": port.chassis, "slot": port.slot,
                "addr": port.addr})]
        if any(d.bus == "usb" for d in vm.devices):
            argv += ["-device", "qemu-xhci,id=usb-bus"]
        for d in vm.devices:
            if d.bus == "pci":
                # multifunction=on, as microvm.nix passes it: a card's other functions
                # (a GPU's audio) may then share its slot
                spec = opts("vfio-pci", {"host": d.path, "multifunction": True,
                                         "id": d.qemu_id, "bus": d.qemu_bus})
            else:
                # a USB path is a list of usb-host properties (vendorid=...,productid=...)
                spec = opts("usb-host", {"id": d.qemu_id, "bus": d.qemu_bus or "usb-bus.0"})
                spec += "," + d.path
            if d.qemu_device_extra_args:
                spec += "," + d.qemu_device_extra_args
            argv += ["-device", spec]
        return argv

    def launch(self, vm: MicroVM, ctx: RunContext) -> Launch:
        tcg = self.command(vm, ctx, Accel.TCG)
        console = (SERIAL_STDIO, SERIAL_SOCKET) if vm.qemu.serial_console else None
        fallbacks = _fallbacks(vm)
        if vm.cpu is not None:
            return Launch(variants={Accel.TCG: tcg}, console_socket=console,
                          fallbacks=fallbacks)
        hw = hardware_accel(vm)
        return Launch(variants={hw: self.command(vm, ctx, hw), Accel.TCG: tcg}, probe=hw,
                      kvm_modules=KVM_MODULES.get(vm.arch, ()) if hw is Accel.KVM else (),
                      console_socket=console, fallbacks=fallbacks)

    def runner_taps(self, vm: MicroVM) -> list[Interface]:
        """Tap and network interfaces: QEMU has qemu-bridge-helper make the tap of a bridge
        interface and attach it (`-netdev bridge`)."""
        return vm.interfaces_of(InterfaceType.TAP, InterfaceType.NETWORK)

    def shutdown(self, vm: MicroVM) -> Control | None:
        if vm.socket is None:
            return None
        return Control(kind=ControlKind.QMP, socket=vm.socket,
                       payload=json.dumps({"execute": "system_powerdown"}))

    def balloon(self, vm: MicroVM) -> Control | None:
        if vm.socket is None or not vm.balloon:
            return None
        # QMP `balloon` takes the guest's target memory in bytes
        return Control(kind=ControlKind.QMP, socket=vm.socket,
                       payload='{"execute":"balloon","arguments":{"value":@GUEST_BYTES@}}')
