"""cloud-hypervisor: one `--flag key=value,...` per device, REST API on the control socket.

Checked against cloud-hypervisor/cloud-hypervisor: vmm/src/config.rs (the SYNTAX strings and
parsers), cloud-hypervisor/src/main.rs (flags and defaults), option_parser/src/lib.rs (quoting),
vmm/src/vm_config.rs (JSON names), docs/api.md. tests/test_backends.py reads the argv back
as the REST body of `PUT /api/v1/vm.create` (components.schemas.VmConfig of the OpenAPI file),
which tests/test_specs.py checks against that file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..capabilities import Hypervisor
from ..config import JSON, InterfaceType, MicroVM, ShareProto
from ..errors import Problem
from .base import (
    CROSVM_GPU_PARAMS,
    HYBRID_VSOCK_FILE,
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
EXTRA_ARGS = "microvm.cloud-hypervisor.extraArgs"
OEM_STRINGS = "microvm.cloud-hypervisor.platformOEMStrings"
# flags of extraArgs whose values are merged into the generated flag (as microvm.nix merges
# them): cloud-hypervisor refuses a flag given twice
MERGED = ("--cpus", "--platform", "--vsock")
# flags of extraArgs that replace the generated one
REPLACING = ("--serial", "--console")
# what an OEM string cannot hold: OptionParser splits the list at ',' (v36 to v53) and
# brackets and quotes change the splitting (v36 drops '"', v50 keeps it)
OEM_UNSAFE = ',[]"'
# a vsock socket the host reaches by name in the VM's directory (host/commands.py)
_SOCKET_NAME = re.compile(r"[A-Za-z0-9._-]+")


def value(v: str | int) -> str:
    """An option value as OptionParser reads it: quoted when it holds ',', '[', ']', '"' or
    edge whitespace; a '"' inside quotes is written twice (option_parser dequote)."""
    s = str(v)
    if s and not any(c in s for c in ',[]"') and s == s.strip():
        return s
    return '"' + s.replace('"', '""') + '"'


def split_items(value: str) -> list[str]:
    """A `key=value,...` string split at ',' outside quotes and brackets (option_parser's
    split_commas)."""
    items, cur, depth, quoted = [], "", 0, False
    for c in value:
        if c == '"':
            quoted = not quoted
        elif not quoted and c in "[]":
            depth += 1 if c == "[" else -1
        elif c == "," and not quoted and depth <= 0:
            items.append(cur)
            cur = ""
            continue
        cur += c
    return [*items, cur]


def _keys(value: str) -> dict[str, str]:
    """The `key=value` items of an option string (the first of a key given twice)."""
    out: dict[str, str] = {}
    for item in split_items(value):
        key, _, v = item.partition("=")
        out.setdefault(key.strip(), v)
    return out


@dataclass(frozen=True)
class UserArgs:
    """microvm.cloud-hypervisor.extraArgs taken apart: the values of MERGED and REPLACING
    flags (`--flag VALUE` or `--flag=VALUE`) with the index of the value, and the rest."""

    values: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    rest: list[str] = field(default_factory=list)

    def of(self, flag: str) -> list[tuple[int, str]]:
        return self.values.get(flag, [])


def user_args(vm: MicroVM) -> UserArgs:
    args = vm.hypervisor_extra_args
    out = UserArgs()
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        if flag in MERGED + REPLACING and (eq or i + 1 < len(args)):
            at = i if eq else i + 1
            out.values.setdefault(flag, []).append((at, value if eq else args[at]))
            if flag in REPLACING:
                out.rest.extend(args[i:at + 1])
            i = at + 1
            continue
        out.rest.append(args[i])
        i += 1
    return out


def _vsock(vm: MicroVM, user: UserArgs, enc: Encoder | None = None) -> str | None:
    """The --vsock value: microvm.vsock.cid with the hybrid socket, merged with the keys of a
    --vsock in extraArgs (as microvm.nix merges them: its socket= names the socket, its cid=
    is refused when microvm.vsock.cid is set); None: no vsock. `enc` records what cannot be
    merged."""
    def refuse(at: int, why: str) -> None:
        if enc is not None:
            enc.refuse(f"{EXTRA_ARGS}[{at}]", why)

    given = user.of("--vsock")
    for at, _ in given[1:]:
        refuse(at, "cloud-hypervisor takes one --vsock; this one is the second")
    if not given:
        if vm.vsock_cid is None:
            return None
        return ",".join([f"cid={vm.vsock_cid}", f"socket={hybrid_vsock_socket(vm)}"])
    at, value = given[0]
    keys = _keys(value)
    others = [item for item in split_items(value)
              if item.partition("=")[0].strip() not in ("cid", "socket")]
    if vm.vsock_cid is not None:
        if "cid" in keys:
            refuse(at, "--vsock cid= cannot be given together with microvm.vsock.cid " +
                   "(set one of them)")
        socket = keys.get("socket") or hybrid_vsock_socket(vm)
        if not _SOCKET_NAME.fullmatch(socket):
            refuse(at, "--vsock socket= must be a file name in the VM's directory (letters, " +
                   "digits, '.', '_', '-'), where the host's readiness relay and `microvm ssh` " +
                   f"reach it; got {socket!r}")
        return ",".join([f"cid={vm.vsock_cid}", f"socket={socket}", *others])
    if "cid" not in keys:
        refuse(at, "--vsock needs cid= (or set microvm.vsock.cid)")
    socket = keys.get("socket") or hybrid_vsock_socket(vm)
    return ",".join([f"cid={keys.get('cid', '')}", f"socket={socket}", *others])


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
    # with hotplug memory the boot memory is hotplugMem, as microvm.nix gives it
    memory: dict[str, str | int | bool | None] = {
        "size": f"{vm.hotplug_mem or vm.mem}M"}
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
        user = user_args(vm)
        cpus = enc.kv(None, {"boot": vm.vcpu})
        for at, value in user.of("--cpus"):
            if "boot" in _keys(value):
                enc.refuse(f"{EXTRA_ARGS}[{at}]", "--cpus boot= is microvm.vcpu's; set that " +
                           f"instead, got {value!r}")
            cpus += "," + value
        # a --serial of extraArgs replaces the console on the runner's stdio; the kernel's
        # console= stays only where that is a tty too (as microvm.nix does)
        serial = [v for _, v in user.of("--serial")]
        argv = ["cloud-hypervisor",
                "--cpus", cpus,
                "--memory", enc.kv(None, _memory(vm)),
                "--kernel", vm.kernel]
        if vm.initrd is not None:
            argv += ["--initramfs", vm.initrd]
        argv += ["--cmdline", kernel_cmdline(vm, enc=enc,
                                             with_console=all(v == "tty" for v in serial))]
        if not serial:
            # the guest console is the serial port on the runner's stdio
            argv += ["--serial", "tty"]
        if not user.of("--console"):
            argv += ["--console", "off"]
        if vm.socket is not None:
            argv += ["--api-socket", enc.kv(None, {"path": vm.socket})]
        argv += ["--platform", self._platform(vm, user, enc)]
        if "--watchdog" not in vm.hypervisor_extra_args:
            # the guest's systemd pings the watchdog; cloud-hypervisor resets a hung guest (a
            # flag given twice is an error)
            argv.append("--watchdog")
        return argv + self._devices(vm, user, enc) + user.rest

    def _platform(self, vm: MicroVM, user: UserArgs, enc: Encoder) -> str:
        """The platform uuid (the VM's machine id, derived from the host name when unset), the
        SMBIOS OEM strings (type 11): platformOEMStrings, then the notify credential (read by
        the guest's systemd), then the --platform values of extraArgs."""
        platform = enc.kv(None, {"uuid": vm.machine_uuid})
        oem = [self._oem_string(i, s, enc) for i, s in enumerate(vm.ch_platform_oem_strings)]
        if (credential := notify_credential(vm)) is not None:
            # the credential holds no ',', '[', ']' or '"'
            oem.append(f"io.systemd.credential:{credential}")
            assert not any(c in oem[-1] for c in OEM_UNSAFE)
        if oem:
            # a list is bracket syntax, its items unquoted (StringList keeps quotes)
            platform += ",oem_strings=[" + ",".join(oem) + "]"
        for at, value in user.of("--platform"):
            if "oem_strings" in _keys(value):
                enc.refuse(f"{EXTRA_ARGS}[{at}]", f"set OEM strings in {OEM_STRINGS}, not " +
                           f"in --platform oem_strings=, got {value!r}")
            platform += "," + value
        return platform

    @staticmethod
    def _oem_string(i: int, s: str, enc: Encoder) -> str:
        """One of platformOEMStrings as oem_strings=[...] carries it byte for byte, or a
        problem at its option path."""
        path = f"{OEM_STRINGS}[{i}]"
        enc.given(path, s, unsafe=OEM_UNSAFE, where="an OEM string (oem_strings=[...])")
        if "oem_strings" in s:
            # microvm.nix's assertion
            enc.refuse(path, f"must not contain oem_strings, got {s!r}")
        if s != s.strip() or not s:
            # cloud-hypervisor trims the list's ends; an empty string ends SMBIOS's string set
            enc.refuse(path, "must be non-empty, without whitespace at either end, " +
                       f"got {s!r}")
        return s

    def _devices(self, vm: MicroVM, user: UserArgs, enc: Encoder) -> list[str]:
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
        if (vsock := _vsock(vm, user, enc)) is not None:
            argv += ["--vsock", vsock]
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
        files, sockets = hybrid_vsock_files(vm), created_sockets(vm)
        if (vsock := _vsock(vm, user_args(vm))) is not None:
            # the default, or socket= of a --vsock in extraArgs
            socket = _keys(vsock)["socket"]
            sockets.append(socket)
            if vm.vsock_cid is not None:
                files[HYBRID_VSOCK_FILE] = socket + "\n"
        return Launch(variants={Accel.KVM: self.command(vm, ctx)}, files=files,
                      sockets=sockets, gpu=gpu_daemon(vm, GPU_PARAMS))

    def rules(self, vm: MicroVM) -> list[Problem]:
        """With hotplug memory the guest boots with hotplugMem plus hotpluggedMem (_memory):
        the balloon must be smaller than that."""
        total = vm.hotplug_mem + vm.hotplugged_mem
        if vm.hotplug_mem and vm.initial_balloon_mem and \
                total <= vm.initial_balloon_mem < vm.mem + vm.hotplugged_mem:
            return [Problem("microvm.initialBalloonMem",
                            "must be less than the guest's memory (on cloud-hypervisor with " +
                            f"hotplugMem: hotplugMem + hotpluggedMem = {total} MiB), got " +
                            f"{vm.initial_balloon_mem}")]
        return []

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
