"""The reviewed differences between this project's runners and upstream microvm.nix's.

tests/test_upstream.py evaluates upstream microvm.nix's runner code and this project's backends
for every configuration of tests/nix/upstream/matrix.nix, decomposes both command lines into
items, and requires every item that only one side has to match exactly one entry here; an
entry that no longer matches anything fails too. docs/microvm-nix-differences.md is rendered
from this table
by `scripts/regen`.

kind "deliberate": this project differs on purpose; `reason` says why and `source` names the
upstream file or the hypervisor's documentation that justifies it. kind "defect": this project
should change (or the difference be argued deliberate with a source); `reason` has the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

HYPERVISORS = (
    "qemu",
    "cloud-hypervisor",
    "firecracker",
    "crosvm",
    "kvmtool",
    "stratovirt",
    "alioth",
    "vfkit",
)

# the configurations of tests/nix/upstream/matrix.nix every hypervisor is evaluated with (its
# `cases`; tests/test_upstream.py counts them)
MATRIX_CASES = 17


@dataclass(frozen=True)
class Entry:
    id: str
    # which side alone has the item: "upstream" or "project"
    side: str
    # configurations (names in tests/nix/upstream/matrix.nix, fnmatch globs) it appears in: each
    # name, and some configuration of each glob, shows it (tests/test_upstream.py)
    configs: tuple[str, ...]
    # regular expression matched in full against the item (see tests/test_upstream.py)
    item: str
    kind: str
    # summary and reason: every hypervisor flag they name (`-x`, `--x`) is in the command line
    # of one side for a configuration that shows the difference (tests/test_upstream.py)
    summary: str
    reason: str
    source: str


def _e(
    id: str, side: str, configs: str, item: str, kind: str, summary: str, reason: str, source: str
) -> Entry:
    return Entry(id, side, tuple(configs.split()), item, kind, summary, reason, source)


@dataclass(frozen=True)
class CorpusEntry:
    """A reviewed difference of the corpus differential (tests/test_upstream_corpus.py)."""

    id: str
    # snippets (KEY:ENTRY names, fnmatch globs) it may appear in
    snippets: tuple[str, ...]
    # regular expression matched in full against the item
    item: str
    kind: str
    summary: str
    reason: str
    source: str


def _c(
    id: str, snippets: str, item: str, kind: str, summary: str, reason: str, source: str
) -> CorpusEntry:
    return CorpusEntry(id, tuple(snippets.split()), item, kind, summary, reason, source)


U, P = "upstream", "project"
D, X = "deliberate", "defect"
Q_RUNNER = "microvm.nix lib/runners/qemu.nix"
CH_RUNNER = "microvm.nix lib/runners/cloud-hypervisor.nix"
FC_RUNNER = "microvm.nix lib/runners/firecracker.nix"
QEMU_DOC = "QEMU documentation, qemu(1) (system/invocation)"
CH_DOC = "cloud-hypervisor --help / docs in github.com/cloud-hypervisor/cloud-hypervisor"
FC_SPEC = (
    "firecracker's API spec (src/firecracker/swagger/firecracker.yaml), "
    + "vendored in tests/specs"
)
DEFAULT_OFF = "the hypervisor's default for the omitted option is the value upstream spells out"

TABLE: tuple[Entry, ...] = (
    # -- every hypervisor: option semantics -------------------------------------------------
    _e(
        "refuse-ignored-options",
        U,
        "kvmtool.user-forward vfkit.user-forward stratovirt.user-forward vfkit.volume-options",
        r"accepts \(project: .*(forwardPorts|volumes\[0\]\.direct|interfaces\[0\]\.type).*\)",
        D,
        "options a hypervisor cannot honour are refused, not dropped",
        "Upstream's runners drop forwardPorts on kvmtool and vfkit and direct I/O on vfkit "
        + "without a word, and pass `-netdev user` to stratovirt, which has no user networking "
        + "(upstream's NixOS module also refuses forwardPorts outside QEMU, by a failed "
        + "assertion this comparison of runners does not evaluate). Here the option path is "
        + "named in an error instead.",
        "microvm.nix lib/runners/{kvmtool,vfkit,stratovirt}.nix (unused options), "
        + "nixos-modules/microvm/asserts.nix (forwardPorts); "
        + "StratoVirt docs/config_guidebook.md (netdev: tap and vhost-user only)",
    ),
    _e(
        "balloon-firecracker-stratovirt",
        P,
        "firecracker.balloon stratovirt.balloon",
        r"accepts \(upstream refuses\)",
        D,
        "balloon on firecracker and stratovirt",
        "Both have a virtio balloon device (firecracker's /balloon resource, stratovirt's "
        + "virtio-balloon-device); upstream refuses the option for them.",
        FC_SPEC + "; StratoVirt docs/config_guidebook.md (Balloon)",
    ),
    _e(
        "firecracker-no-socket",
        P,
        "firecracker.no-socket",
        r"accepts \(upstream refuses\)",
        D,
        "firecracker without an API socket",
        "firecracker boots from --config-file alone; with socket = null the runner passes "
        + "--no-api (no shutdown or balloon requests then). Upstream requires the socket.",
        "firecracker docs/getting-started.md (--config-file, --no-api)",
    ),
    # -- QEMU --------------------------------------------------------------------------------
    _e(
        "qemu-accel",
        U,
        "qemu.*",
        r"-machine (microvm|q35) accel=kvm:tcg|-enable-kvm",
        D,
        "QEMU accelerator chosen by the runner",
        "The runner checks for working hardware KVM at start and runs one of two argv "
        + "(accel=kvm with the host CPU, or accel=tcg with what TCG needs); upstream asks QEMU "
        + "to fall back (kvm:tcg) and adds -enable-kvm, which QEMU treats as accel=kvm.",
        QEMU_DOC + " (-accel, -enable-kvm); README.md (Users without KVM)",
    ),
    _e(
        "qemu-accel-kvm",
        P,
        "qemu.*",
        r"-machine (microvm|q35) accel=kvm",
        D,
        "QEMU accelerator chosen by the runner (the KVM variant compared here)",
        "See qemu-accel: this is the argv used when KVM works.",
        QEMU_DOC,
    ),
    _e(
        "qemu-name",
        U,
        "qemu.*",
        r"-name vm-qemu",
        D,
        "QEMU -name also names the process",
        "`-name guest=NAME,process=NAME` titles the QEMU process with the VM's name, as "
        + "upstream's runner does by executing microvm-run under that name (prettyProcnames).",
        QEMU_DOC + " (-name)",
    ),
    _e(
        "qemu-name-project",
        P,
        "qemu.*",
        r"-name \[\]( guest=vm-qemu| process=vm-qemu)?",
        D,
        "QEMU -name also names the process",
        "See qemu-name.",
        QEMU_DOC + " (-name)",
    ),
    _e(
        "qemu-i8042",
        U,
        "qemu.*",
        r"-device i8042",
        D,
        "no i8042 keyboard controller",
        "Shutdown goes through QMP system_powerdown (ACPI power button, acpi=on) rather than "
        + "a Ctrl-Alt-Del key press on an emulated i8042, so the device is not needed; booted "
        + "and shut down under QEMU in tests/test_e2e_qemu.py.",
        Q_RUNNER + " (input-send-event ctrl-alt-delete); " + QEMU_DOC + " (microvm machine)",
    ),
    _e(
        "qemu-nographic",
        U,
        "qemu.*",
        r"-nographic",
        D,
        "-display none instead of -nographic",
        "-nographic also redirects the serial port and monitor to stdio implicitly; the "
        + "runner wires the serial console explicitly (-chardev stdio + -serial chardev:stdio, "
        + "swappable for console.sock) and only needs no display.",
        QEMU_DOC + " (-nographic, -display none)",
    ),
    _e(
        "qemu-display-none",
        P,
        "qemu.*",
        r"-display none",
        D,
        "-display none instead of -nographic",
        "See qemu-nographic.",
        QEMU_DOC,
    ),
    _e(
        "qemu-sandbox",
        P,
        "qemu.*",
        r"-sandbox on (obsolete|elevateprivileges|spawn|resourcecontrol)=deny",
        D,
        "stricter QEMU seccomp sandbox",
        "Upstream enables `-sandbox on` when QEMU is built with seccomp; here the sandbox also "
        + "denies obsolete syscalls, privilege elevation (unless QEMU drops to microvm.user), "
        + "spawning (unless a guest forwarding rule runs a command) and resource control. With "
        + "a bridge interface there is no sandbox: QEMU then runs the setuid "
        + "qemu-bridge-helper.",
        QEMU_DOC + " (-sandbox)",
    ),
    _e(
        "qemu-mmio-modern",
        P,
        "qemu.*",
        r"-global \[\]( virtio-mmio\.force-legacy=false)?",
        D,
        "modern virtio-mmio devices",
        "vhost-user devices (virtiofsd) refuse legacy virtio-mmio; forcing modern mmio lets "
        + "virtiofs work on the microvm machine without PCI (booted in tests/test_e2e_qemu.py).",
        QEMU_DOC + " (-global virtio-mmio.force-legacy)",
    ),
    _e(
        "qemu-shares-pci",
        U,
        "qemu.share-9p qemu.share-virtiofs",
        r"-machine microvm pcie=on|-device (virtio-rng-pci|virtio-9p-pci\[.*"
        + r"|vhost-user-fs-pci\[.*|virtio-blk-pci\[.*)",
        D,
        "shares keep the microvm machine on virtio-mmio",
        "Upstream switches the microvm machine to PCIe as soon as there is a share; here 9p "
        + "and virtiofs devices stay on virtio-mmio (modern, see qemu-mmio-modern), booted with "
        + "both share types in tests/test_e2e_qemu.py.",
        Q_RUNNER + " (requirePci)",
    ),
    _e(
        "qemu-shares-mmio",
        P,
        "qemu.share-9p qemu.share-virtiofs",
        r"-machine microvm pcie=off|-device (virtio-rng-device|virtio-9p-device\[.*"
        + r"|vhost-user-fs-device\[.*|virtio-blk-device\[drive=drive0\]( drive=drive0)?)",
        D,
        "shares keep the microvm machine on virtio-mmio",
        "See qemu-shares-pci.",
        Q_RUNNER,
    ),
    _e(
        "qemu-numa-memory",
        U,
        "qemu.share-9p qemu.share-virtiofs",
        r"-numa node( memdev=object0)?"
        + r"|-object memory-backend-memfd\[id=object0\]( id=object0| share=on| size=512M)?",
        D,
        "shared guest memory only for virtiofs, through -machine memory-backend",
        "vhost-user needs the guest memory shared; `-machine memory-backend=mem` names the "
        + "memfd backend without a NUMA node. 9p needs no shared memory, upstream shares it "
        + "for any share.",
        QEMU_DOC + " (-machine memory-backend, -object memory-backend-memfd)",
    ),
    _e(
        "qemu-memory-backend",
        P,
        "qemu.share-virtiofs",
        r"-machine microvm memory-backend=mem",
        D,
        "shared guest memory through -machine memory-backend",
        "See qemu-numa-memory.",
        QEMU_DOC,
    ),
    _e(
        "qemu-qmp-syntax",
        U,
        "qemu.*",
        r"-qmp unix:vm-qemu\.sock (server|nowait)",
        D,
        "QMP socket options spelled server=on,wait=off",
        "Same socket; QEMU deprecated the bare `server`/`nowait` flags in favour of "
        + "`server=on,wait=off`.",
        QEMU_DOC + " (-chardev socket); QEMU deprecated.rst",
    ),
    _e(
        "qemu-qmp-syntax-project",
        P,
        "qemu.*",
        r"-qmp unix:vm-qemu\.sock (server=on|wait=off)",
        D,
        "QMP socket options spelled server=on,wait=off",
        "See qemu-qmp-syntax.",
        QEMU_DOC,
    ),
    _e(
        "qemu-store-serial",
        P,
        "qemu.*",
        r"-device virtio-blk-(device|pci)\[drive=drive0\] serial=store",
        D,
        "the store disk has a serial",
        "The guest finds the store disk as /dev/disk/by-id/virtio-store instead of by position.",
        "nix/modules/microvm/guest.nix (store disk mount); Linux virtio_blk serial attribute",
    ),
    _e(
        "qemu-graphics-q35",
        U,
        "qemu.graphics-*",
        r"-machine microvm( (acpi|mem-merge|pcie|pic|pit|rtc|usb)=(on|off))?",
        D,
        "graphics on the q35 machine, not on microvm with pcie=on",
        "Upstream keeps QEMU's microvm machine and turns its PCIe host bridge on for the GPU "
        + "and the USB controller. Here graphics pick q35 (as PCI passthrough and memory "
        + "hotplug do): the machine QEMU documents for a VGA device and a USB controller, "
        + "with its ACPI and mem-merge defaults; the guest sees the same GPU, tablet and "
        + "keyboard. A user who wants microvm sets microvm.qemu.machine.",
        QEMU_DOC + " (-machine q35; docs/system/i386/microvm.rst: no VGA, legacy-free)",
    ),
    _e(
        "qemu-graphics-q35-project",
        P,
        "qemu.graphics-*",
        r"-machine q35( mem-merge=on)?",
        D,
        "graphics on the q35 machine",
        "See qemu-graphics-q35.",
        QEMU_DOC + " (-machine q35)",
    ),
    _e(
        "qemu-q35-acpi",
        U,
        "qemu.pcie-root-ports",
        r"-machine q35 acpi=on",
        D,
        "q35's ACPI left at QEMU's default",
        "Upstream spells acpi=on for every machine; q35 has ACPI on by default, so the runner "
        + "sets it only for the microvm machine, where the default is off.",
        QEMU_DOC + " (-machine q35, microvm acpi)",
    ),
    _e(
        "qemu-aio",
        U,
        "qemu.*",
        r"-drive \[id=drive\d\] aio=io_uring",
        D,
        "QEMU disks use QEMU's default AIO engine (upstream: io_uring on Linux)",
        "Upstream passes aio=io_uring for the store disk and volumes on Linux hosts. Where "
        + "io_uring is switched off (sysctl kernel.io_uring_disabled, a container's seccomp "
        + "profile, a unit's SystemCallFilter) QEMU then refuses to open the disk and the VM "
        + "does not start; the default (threads) works everywhere. The gain is throughput "
        + "only, so portability wins here.",
        Q_RUNNER + " (aioEngine); " + QEMU_DOC + " (-drive aio); Linux "
        + "Documentation/admin-guide/sysctl/kernel.rst (io_uring_disabled)",
    ),
    _e(
        "qemu-discard",
        U,
        "qemu.volumes",
        r"-drive \[id=drive\d\] discard=unmap",
        D,
        "no discard=unmap on read-only QEMU volumes",
        "Both sides pass the guest's TRIM through on writable volumes (fstrim frees space in "
        + "the image file). Upstream also sets it on read-only volumes, where a guest cannot "
        + "discard anything; here it is left out there.",
        Q_RUNNER + "; " + QEMU_DOC + " (-drive discard)",
    ),
    _e(
        "qemu-volume-image-type",
        U,
        "qemu.volume-qcow2",
        r"-drive \[id=drive\d\] format=raw",
        D,
        "QEMU is told a volume's imageType, and an image the runner creates is in that format",
        "Upstream passes imageType to cloud-hypervisor only (its option text: the format is "
        + "only passed to the hypervisor and does not change the image autoCreate makes); QEMU "
        + "gets format=raw whatever it says, and a missing image is made raw. Here QEMU gets "
        + "the volume's format (vhd as vpc), and a missing image is made in it: a raw file with "
        + "the file system, written by qemu-img convert (tests/test_runner.py reads the result "
        + "with qemu-img).",
        "microvm.nix nixos-modules/microvm/options.nix (volumes.*.imageType), lib/volumes.nix, "
        + Q_RUNNER + " (-drive format=raw); " + QEMU_DOC + " (-drive format)",
    ),
    _e(
        "qemu-volume-image-type-given",
        P,
        "qemu.volume-qcow2",
        r"-drive \[id=drive\d\] format=qcow2",
        D,
        "(the other half of the row above: QEMU gets the volume's format)",
        "See the row above.",
        QEMU_DOC + " (-drive format)",
    ),
    _e(
        "qemu-volume-defaults",
        U,
        "qemu.volumes qemu.volume-options qemu.volume-qcow2",
        r"-drive \[id=drive\d\] (read-only=off|cache=none)",
        D,
        "default and equivalent -drive options",
        "read-only=off is QEMU's default; cache=none is cache.direct=on with writeback, which "
        + "is what the project writes for direct volumes.",
        QEMU_DOC + " (-drive cache)",
    ),
    _e(
        "qemu-direct",
        P,
        "qemu.volume-options",
        r"-drive \[id=drive1\] cache\.direct=on",
        D,
        "direct I/O spelled cache.direct=on",
        "See qemu-volume-defaults.",
        QEMU_DOC,
    ),
    _e(
        "qemu-fsdev-readonly",
        U,
        "qemu.share-9p",
        r"-fsdev local\[id=fsdev0\] readonly=false",
        D,
        "default -fsdev readonly omitted",
        DEFAULT_OFF + " (readonly is off unless given).",
        QEMU_DOC + " (-fsdev)",
    ),
    _e(
        "qemu-forward-guest-port-zero",
        U,
        "qemu.user-forward-guest-port-zero",
        r"accepts \(project: microvm\.forwardPorts\[0\]\.guest\.port: .*QEMU refuses.*\)",
        D,
        "a forwarded guest port 0 is refused when the runner is built",
        "Both take 0 to 65535 for the ports (types.port), and host port 0 means the same on both "
        + "sides (the kernel picks a free port). Upstream writes a rule with guest port 0, which "
        + "QEMU 7.2 refuses when it starts (`Bad guest port`, `Invalid guest forwarding rule`); "
        + "here the build fails naming the option instead (tests/test_qemu.py runs QEMU).",
        Q_RUNNER + " (forwardingOptions); QEMU net/slirp.c (hostfwd, guestfwd parsing)",
    ),
    _e(
        "qemu-hostfwd-comma",
        U,
        "qemu.user-forward qemu.user-forward-any-port",
        r"-netdev user\[id=netdev0\] ",
        D,
        "no empty option after hostfwd",
        "Upstream ends each forwarding rule with a comma, leaving an empty option that QEMU "
        + "ignores.",
        Q_RUNNER + " (forwardingOptions)",
    ),
    _e(
        "qemu-net-mq",
        P,
        "qemu.tap-multiqueue",
        r"-device virtio-net-device\[netdev=netdev\d\] mq=on",
        D,
        "multiqueue virtio-net on virtio-mmio too",
        "The tap is opened with one queue per vCPU (queues=N on both sides); the device "
        + "advertises them with mq=on. Upstream only does so on PCI.",
        QEMU_DOC + " (virtio-net-device mq)",
    ),
    _e(
        "qemu-notify-credential",
        P,
        "qemu.vsock",
        r"-smbios \[type=11\]( type=11"
        + r"| value=io\.systemd\.credential:vmm\.notify_socket=vsock-stream:2:8930)?",
        D,
        "sd_notify readiness over vsock for QEMU",
        "With a vsock CID the guest's systemd gets vmm.notify_socket (port 8888 + CID, so "
        + "several VMs can share the host relay) and the host unit learns when the guest is up; "
        + "upstream does this for cloud-hypervisor only.",
        "systemd.system-credentials(7) (vmm.notify_socket); " + QEMU_DOC + " (-smbios type=11)",
    ),
    _e(
        "qemu-earlyprintk",
        U,
        "qemu.*",
        r"cmdline earlyprintk=ttyS0",
        D,
        "no earlyprintk on the kernel command line",
        "console=ttyS0 shows the kernel log once the console is up; earlyprintk only helps "
        + "debugging crashes before that and the user can add it to boot.kernelParams.",
        "Linux Documentation/admin-guide/kernel-parameters.txt (earlyprintk)",
    ),
    # -- cloud-hypervisor --------------------------------------------------------------------
    _e(
        "ch-earlyprintk",
        U,
        "cloud-hypervisor.*",
        r"cmdline earlyprintk=ttyS0",
        D,
        "no earlyprintk on the kernel command line",
        "See qemu-earlyprintk.",
        "Linux Documentation/admin-guide/kernel-parameters.txt (earlyprintk)",
    ),
    _e(
        "ch-defaults",
        U,
        "cloud-hypervisor.*",
        r"--seccomp( true)?|--memory \[\] shared=off|--platform "
        + r"|--disk \[path=[^\]]*\] (direct|readonly)=off",
        D,
        "default cloud-hypervisor options omitted",
        DEFAULT_OFF
        + ": --seccomp true, shared=off, direct=off, readonly=off; an empty "
        + "--platform is no platform option.",
        CH_DOC + " (--seccomp, --memory, --disk)",
    ),
    _e(
        "ch-console",
        U,
        "cloud-hypervisor.*",
        r"--console null",
        D,
        "--console off instead of null",
        "null keeps a virtio-console device that discards output; off creates none. The "
        + "guest console is the serial port (--serial tty) on both sides.",
        CH_DOC + " (--console)",
    ),
    _e(
        "ch-console-project",
        P,
        "cloud-hypervisor.*",
        r"--console off",
        D,
        "--console off instead of null",
        "See ch-console.",
        CH_DOC,
    ),
    _e(
        "ch-image-type",
        P,
        "cloud-hypervisor.*",
        r"--disk \[path=@storeDisk\] image_type=raw",
        D,
        "the store disk's image type is given",
        "cloud-hypervisor otherwise probes the format of a read-only raw image (and warns); "
        + "volumes get image_type on both sides.",
        CH_DOC + " (--disk image_type)",
    ),
    _e(
        "ch-notify-credential",
        U,
        "cloud-hypervisor.vsock cloud-hypervisor.vsock-extra-args",
        r"--platform \[\]( oem_strings="
        + r"\[io\.systemd\.credential:vmm\.notify_socket=vsock-stream:2:8888\])?",
        D,
        "the readiness credential's port is 8888 + CID",
        "Both sides pass vmm.notify_socket as an OEM string; upstream's port is 8888 for every "
        + "VM, here it is 8888 + CID on every hypervisor (with native vsock all guests reach "
        + "the same host, so each needs a port of its own; see ch-notify-credential-p).",
        CH_RUNNER + " (oemStringValues); " + CH_DOC + " (--platform oem_strings)",
    ),
    _e(
        "ch-machine-id",
        P,
        "cloud-hypervisor.*",
        r"--platform \[\]( uuid=[0-9a-f-]{36})?",
        D,
        "machineId as the platform UUID",
        "cloud-hypervisor exposes --platform uuid= as the SMBIOS system UUID, like QEMU's "
        + "SMBIOS type 1 table, so the guest's firmware tells the same machine id as its "
        + "/etc/machine-id (derived from the host name when unset, as on both sides); upstream "
        + "passes machineId to QEMU only.",
        CH_DOC + " (--platform uuid)",
    ),
    # -- firecracker -------------------------------------------------------------------------
    _e(
        "fc-enable-pci",
        U,
        "firecracker.*",
        r"--enable-pci",
        D,
        "firecracker devices stay on virtio-mmio",
        "--enable-pci (firecracker >= 1.13) is optional; virtio-mmio works with every "
        + "firecracker version and the kernels microvm builds.",
        FC_RUNNER + "; firecracker CHANGELOG 1.13",
    ),
    _e(
        "fc-console",
        U,
        "firecracker.*",
        r"cmdline console=ttyS0,115200",
        D,
        "console=ttyS0 without a baud rate",
        "The emulated 8250 UART has no line speed; the rate is ignored.",
        "Linux Documentation/admin-guide/serial-console.rst",
    ),
    _e(
        "fc-console-p",
        P,
        "firecracker.*",
        r"cmdline console=ttyS0",
        D,
        "console=ttyS0 without a baud rate",
        "See fc-console.",
        "Linux serial-console.rst",
    ),
    _e(
        "fc-smt",
        U,
        "firecracker.*",
        r"config\.machine-config\.smt=true",
        D,
        "firecracker's default SMT (off)",
        "smt defaults to false: each vCPU is its own core. Upstream turns SMT on on x86_64.",
        FC_SPEC + " (MachineConfiguration.smt)",
    ),
    _e(
        "fc-vsock-null",
        U,
        "firecracker.*",
        r"config\.vsock=null",
        D,
        "no vsock key without a vsock",
        "An absent key and null mean no vsock device.",
        FC_SPEC,
    ),
    _e(
        "fc-ids",
        U,
        "firecracker.volumes firecracker.volume-options firecracker.tap firecracker.tap-multiqueue",
        r"config\.(drives\[[^\]]*\]\.drive_id|network-interfaces\[[^\]]*\]\.iface_id)=\"[^\"]*\"",
        D,
        "firecracker drive and interface ids",
        "Ids are internal names (vol0, net0); upstream uses the image path and the tap name.",
        FC_SPEC + " (drive_id, iface_id)",
    ),
    _e(
        "fc-ids-p",
        P,
        "firecracker.volumes firecracker.volume-options firecracker.tap firecracker.tap-multiqueue",
        r"config\.(drives\[[^\]]*\]\.drive_id|network-interfaces\[[^\]]*\]\.iface_id)=\"(vol|net)\d\"",
        D,
        "firecracker drive and interface ids",
        "See fc-ids.",
        FC_SPEC,
    ),
    _e(
        "fc-store-disk-off",
        U,
        "firecracker.no-store-disk",
        r"config\.drives\[/nix/store/microvm-store-disk\.erofs\]\..*",
        D,
        "no store disk when storeOnDisk is false",
        "Upstream's firecracker runner always attaches the store disk, even with "
        + "storeOnDisk = false.",
        FC_RUNNER + " (drives)",
    ),
    # -- crosvm ------------------------------------------------------------------------------
    _e(
        "crosvm-gpu-type",
        U,
        "crosvm.graphics",
        r"--vhost-user gpu\[socket=gpu\.sock\]( socket=gpu\.sock)?",
        D,
        "the GPU's vhost-user device spelled type=gpu",
        "Upstream passes `--vhost-user gpu,socket=...`, relying on crosvm taking a bare first "
        + "word as the device type; the runner spells out the key crosvm's "
        + "VhostUserFrontendOption names (`type` and `socket` required), `type=gpu`, as upstream "
        + "itself does for `type=fs`. Not verified here whether crosvm also takes the bare word "
        + "(the grammar table does not assume it).",
        "crosvm src/crosvm/config.rs (VhostUserFrontendOption); microvm.nix lib/runners/crosvm.nix",
    ),
    _e(
        "crosvm-gpu-type-project",
        P,
        "crosvm.graphics",
        r"--vhost-user \[type=gpu\]( socket=gpu\.sock| type=gpu)?",
        D,
        "the GPU's vhost-user device spelled type=gpu",
        "See crosvm-gpu-type.",
        "crosvm src/crosvm/config.rs (VhostUserFrontendOption)",
    ),
    _e(
        "crosvm-root",
        U,
        "crosvm.*",
        r"--block \[path=@storeDisk\].*|-r @storeDisk",
        D,
        "store disk as a read-only --block, not -r",
        "-r (crosvm's root disk) also puts root=/dev/vda on the kernel command line; the store "
        + "disk is not the root file system (the guest mounts it at /nix/.ro-store).",
        "crosvm run --help (--root, --block)",
    ),
    _e(
        "crosvm-root-p",
        P,
        "crosvm.*",
        r"--block \[id=store\]( id=store| path=@storeDisk| ro=true)?",
        D,
        "store disk as a read-only --block, not -r",
        "See crosvm-root. Its id is `store`, the serial the guest finds it by "
        + "(/dev/disk/by-id/virtio-store), like every other disk with a serial.",
        "crosvm run --help",
    ),
    _e(
        "crosvm-serial",
        P,
        "crosvm.*",
        r"--serial \[type=stdout\] (hardware=serial|num=1)",
        D,
        "serial port named explicitly",
        "hardware=serial,num=1 are crosvm's defaults spelled out, so the console is ttyS0 "
        + "whatever the crosvm version.",
        "crosvm run --help (--serial)",
    ),
    _e(
        "crosvm-block-defaults",
        U,
        "crosvm.volumes crosvm.volume-options",
        r"--block \[(path=[^\]]*|id=data0)\] (o_direct|ro)=false",
        D,
        "default --block options omitted",
        DEFAULT_OFF + " (o_direct, ro).",
        "crosvm run --help (--block)",
    ),
    _e(
        "crosvm-direct",
        U,
        "crosvm.volume-options",
        r"--block \[id=data0\] o_direct=true",
        D,
        "direct I/O spelled direct=true",
        "crosvm's --block key is `direct`; `o_direct` is kept as an alias.",
        "crosvm devices/src/virtio/block (DiskOption: direct, alias o_direct)",
    ),
    _e(
        "crosvm-direct-p",
        P,
        "crosvm.volume-options",
        r"--block \[id=data0\] direct=true",
        D,
        "direct I/O spelled direct=true",
        "See crosvm-direct.",
        "crosvm run --help",
    ),
    # -- kvmtool -----------------------------------------------------------------------------
    _e(
        "kvmtool-no-network",
        P,
        "kvmtool.*",
        r"--network \[\]( mode=none)?",
        D,
        "no network device unless an interface is declared",
        "Without --network kvmtool adds a user-mode NIC; `--network mode=none` keeps the "
        + "guest without one, as declared. Upstream's guests get the default NIC.",
        "kvmtool virtio/net.c (set_net_param: mode=none)",
    ),
    _e(
        "kvmtool-macvtap",
        U,
        "kvmtool.macvtap",
        r"--network \[tapif=/dev/tap\$\(</sys/class/net/vm-mvt1/ifindex\)\].*",
        D,
        "macvtap passed as an open fd",
        "The runner opens /dev/tapN itself (as for the other hypervisors) and passes fd=3; "
        + "upstream lets kvmtool open the device path computed by an unquoted shell expansion.",
        "kvmtool virtio/net.c (set_net_param: fd=, tapif=)",
    ),
    _e(
        "kvmtool-macvtap-p",
        P,
        "kvmtool.macvtap",
        r"--network \[\] (fd=3|guest_mac=02:00:00:00:01:01|mode=tap)",
        D,
        "macvtap passed as an open fd",
        "See kvmtool-macvtap.",
        "kvmtool virtio/net.c",
    ),
    # -- stratovirt --------------------------------------------------------------------------
    _e(
        "stratovirt-unbuffer",
        U,
        "stratovirt.*",
        r"program unbuffer stratovirt",
        D,
        "stratovirt runs without expect's unbuffer",
        "unbuffer only gives stratovirt a pseudo-terminal; the serial console works on the "
        + "runner's stdio, and expect is not needed on the host.",
        "microvm.nix lib/runners/stratovirt.nix",
    ),
    _e(
        "stratovirt-program",
        P,
        "stratovirt.*",
        r"program stratovirt",
        D,
        "stratovirt runs without expect's unbuffer",
        "See stratovirt-unbuffer.",
        "microvm.nix lib/runners/stratovirt.nix",
    ),
    _e(
        "stratovirt-edd",
        U,
        "stratovirt.*",
        r"cmdline edd=off",
        D,
        "no edd=off",
        "EDD data comes from BIOS calls in the kernel's real-mode setup, which a direct "
        + "64-bit kernel boot never runs.",
        "Linux Documentation/admin-guide/kernel-parameters.txt (edd)",
    ),
    _e(
        "stratovirt-drive-defaults",
        U,
        "stratovirt.*",
        r"-drive \[id=drive\d\] (format=raw|if=none|direct=false)",
        D,
        "default -drive options omitted",
        DEFAULT_OFF
        + " (format=raw, if=none); the store disk's direct=off is the same value "
        + "as upstream's direct=false.",
        "StratoVirt docs/config_guidebook.md (-drive)",
    ),
    _e(
        "stratovirt-direct",
        P,
        "stratovirt.*",
        r"-drive \[id=drive0\] direct=off",
        D,
        "direct=off spelled with on/off",
        "See stratovirt-drive-defaults.",
        "StratoVirt docs/config_guidebook.md",
    ),
    _e(
        "stratovirt-aio",
        U,
        "stratovirt.*",
        r"-drive \[id=drive\d\] aio=io_uring",
        D,
        "StratoVirt disks use the default AIO engine (upstream: io_uring)",
        "As for QEMU (qemu-aio): where io_uring is switched off (sysctl "
        + "kernel.io_uring_disabled, seccomp, a unit's SystemCallFilter) the disk cannot be "
        + "opened and the VM does not start; the gain is throughput only.",
        "microvm.nix lib/runners/stratovirt.nix; StratoVirt docs/config_guidebook.md (aio)",
    ),
    _e(
        "stratovirt-net-queues",
        U,
        "stratovirt.tap stratovirt.macvtap stratovirt.tap-multiqueue",
        r"-netdev tap\[id=netdev\d\] queues=\d"
        + r"|-device virtio-net-device\[id=device\d\] mq=(on|off)",
        X,
        "no multiqueue taps for StratoVirt",
        "Upstream opens StratoVirt's taps with one queue per vCPU (queues=N, mq=on; it even "
        + "writes queues= twice); the project uses one queue (performance only).",
        "microvm.nix lib/runners/stratovirt.nix (tapMultiQueue); "
        + "StratoVirt docs/config_guidebook.md (netdev queues)",
    ),
    _e(
        "stratovirt-ids",
        U,
        "stratovirt.share-virtiofs",
        r"-device vhost-user-fs-device\[id=chardev0\].*",
        D,
        "StratoVirt device ids",
        "Upstream gives the virtiofs device the chardev's id; the project numbers devices.",
        "StratoVirt docs/config_guidebook.md (id)",
    ),
    _e(
        "stratovirt-ids-p",
        P,
        "stratovirt.share-virtiofs",
        r"-device vhost-user-fs-device\[id=device2\].*",
        D,
        "StratoVirt device ids",
        "See stratovirt-ids.",
        "StratoVirt docs/config_guidebook.md",
    ),
    _e(
        "stratovirt-mem-share",
        P,
        "stratovirt.share-virtiofs",
        r"-machine microvm mem-share=on",
        D,
        "shared guest memory for virtiofs",
        "vhost-user-fs needs the guest memory shared with virtiofsd (StratoVirt: "
        + "mem-share=on); upstream's runner does not share it.",
        "StratoVirt docs/config_guidebook.md (mem-share, virtio-fs)",
    ),
    _e(
        "stratovirt-vsock",
        P,
        "stratovirt.vsock",
        r"-device vhost-vsock-device\[id=device2\]( guest-cid=42| id=device2)?",
        D,
        "vsock for StratoVirt",
        "StratoVirt has vhost-vsock; upstream's runner ignores microvm.vsock.cid.",
        "StratoVirt docs/config_guidebook.md (vhost-vsock)",
    ),
    # -- alioth ------------------------------------------------------------------------------
    _e(
        "alioth-boot",
        U,
        "alioth.*",
        r"subcommand run",
        D,
        "alioth's subcommand spelled boot",
        "alioth-cli names the subcommand boot (run is an alias of it from 0.10 on). Both "
        + "sides pass --num-cpu, which alioth 0.9 to 0.12 all take.",
        "alioth-cli/src/boot/boot.rs; generator/microvm/hypervisors/alioth.py",
    ),
    _e(
        "alioth-boot-p",
        P,
        "alioth.*",
        r"subcommand boot",
        D,
        "alioth's subcommand spelled boot",
        "See alioth-boot.",
        "alioth-cli/src/boot/boot.rs",
    ),
    _e(
        "alioth-blk",
        U,
        "alioth.*",
        r"--blk \[path=[^\]]*\].*",
        D,
        "alioth --blk with the file variant and readonly=",
        "The project names the block backend (`file,`); upstream spells the volume key "
        + "readOnly=, which alioth's parser does not know (its key is readonly, as upstream "
        + "uses for the store disk).",
        "alioth-cli/src/boot/config.rs (BlkParam); microvm.nix lib/runners/alioth.nix",
    ),
    _e(
        "alioth-blk-p",
        P,
        "alioth.*",
        r"--blk file\[path=[^\]]*\].*",
        D,
        "alioth --blk with the file variant and readonly=",
        "See alioth-blk.",
        "alioth-cli/src/boot/config.rs",
    ),
    _e(
        "alioth-queue-pairs",
        U,
        "alioth.tap",
        r"--net \[if_name=vm-tap1\] queue_pairs=1",
        D,
        "queue_pairs omitted for one vCPU",
        DEFAULT_OFF + " (one queue pair).",
        "alioth/src/virtio/dev/net/tap.rs",
    ),
    _e(
        "alioth-shared-memory",
        P,
        "alioth.share-virtiofs",
        r"--memory \[\] shared=true",
        D,
        "shared guest memory for virtiofs",
        "vhost-user-fs needs memory virtiofsd can map; upstream does not share it.",
        "/work/shared/hypervisors.md section 9 (--memory shared=true)",
    ),
    # -- vfkit -------------------------------------------------------------------------------
    _e(
        "vfkit-readonly",
        P,
        "vfkit.volumes",
        r"--device virtio-blk\[path=/srv/data\.img\] readonly",
        D,
        "read-only volumes are read-only",
        "Upstream ignores readOnly for vfkit volumes.",
        "vfkit doc/usage.md (virtio-blk readonly); upstream uses it for the store disk",
    ),
    # -- reviewed after the backend fixes of the "every hypervisor boots" issue ----------
    _e(
        "vfkit-rosetta-ignore-if-missing",
        U,
        "vfkit.rosetta",
        r"--device rosetta ignoreIfMissing",
        D,
        "Rosetta's ignoreIfMissing spelt as vfkit parses it",
        "vfkit's `--device rosetta` takes `ignore-if-missing` (RosettaShare.FromOptions); "
        + "upstream passes `ignoreIfMissing`, the spelling of vfkit's doc/usage.md and JSON "
        + "field, which vfkit refuses as an unknown option. Same meaning: start without "
        + "Rosetta when it is missing.",
        "crc-org/vfkit pkg/config/virtio.go (RosettaShare.FromOptions, ToCmdLine)",
    ),
    _e(
        "vfkit-rosetta-ignore-if-missing-p",
        P,
        "vfkit.rosetta",
        r"--device rosetta ignore-if-missing",
        D,
        "Rosetta's ignoreIfMissing spelt as vfkit parses it",
        "See vfkit-rosetta-ignore-if-missing.",
        "crc-org/vfkit pkg/config/virtio.go",
    ),
    _e(
        "store-serial",
        P,
        "cloud-hypervisor.* stratovirt.* vfkit.*",
        r"--disk \[path=@storeDisk\] serial=store"
        + r"|-device virtio-blk-device\[id=device\d+\] serial=store"
        + r"|--device virtio-blk\[path=@storeDisk\] deviceId=store",
        D,
        "the store disk carries the serial `store`",
        "Where the hypervisor passes virtio-blk serials, the guest module mounts the store disk "
        + "as /dev/disk/by-id/virtio-store, so every backend gives it that serial (QEMU and "
        + "crosvm too); upstream finds it by its file system label. Without the serial "
        + "cloud-hypervisor derives one from the file and the guest would not find its store.",
        "nix/modules/microvm/guest.nix; tests/test_contract.py (guest and backend agree); "
        + "systemd's 60-persistent-storage.rules (virtio serial -> by-id)",
    ),
    _e(
        "stratovirt-console-p",
        P,
        "stratovirt.*",
        r"-chardev stdio\[id=chardev0\]( id=chardev0)?|-serial chardev:chardev0",
        D,
        "stratovirt's console is a chardev the runner can move to console.sock",
        "-serial stdio puts stdin into raw mode and fails when stdin is no terminal, as under "
        + "microvm@.service. A named chardev lets the runner serve the console on console.sock "
        + "there (MICROVM_CONSOLE=socket), as QEMU's runner does.",
        "openeuler-mirror/stratovirt docs/config_guidebook.md (chardev, serial); "
        + "tests/test_backend_specifics.py (the runner run without a terminal)",
    ),
    _e(
        "stratovirt-console",
        U,
        "stratovirt.*",
        r"-serial stdio",
        D,
        "stratovirt's console is a chardev the runner can move to console.sock",
        "See stratovirt-console-p.",
        "openeuler-mirror/stratovirt docs/config_guidebook.md",
    ),
    _e(
        "stratovirt-chardev-ids",
        U,
        "stratovirt.share-virtiofs",
        r"-chardev socket\[id=chardev0\].*",
        D,
        "virtiofs chardev ids shift by one (the console is chardev0)",
        "Internal ids only; the socket path is the same on both sides.",
        "openeuler-mirror/stratovirt docs/config_guidebook.md (chardev id)",
    ),
    _e(
        "stratovirt-chardev-ids-p",
        P,
        "stratovirt.share-virtiofs",
        r"-chardev socket\[id=chardev1\].*",
        D,
        "virtiofs chardev ids shift by one (the console is chardev0)",
        "See stratovirt-chardev-ids.",
        "openeuler-mirror/stratovirt docs/config_guidebook.md (chardev id)",
    ),
    _e(
        "alioth-pty",
        P,
        "alioth.*",
        r"wrapper: a pseudo-terminal without a terminal",
        D,
        "alioth gets a pseudo-terminal when stdin is none",
        "alioth 0.9 to 0.12 put stdin into raw mode and stop when it is not a terminal, as under "
        + "microvm@.service; the runner then starts it under util-linux's script(1). With a "
        + "terminal it runs alioth directly, as upstream does.",
        "google/alioth alioth-cli (console set-up); tests/test_backend_specifics.py",
    ),
    _e(
        "notify-credential-cmdline",
        P,
        "crosvm.vsock firecracker.vsock kvmtool.vsock alioth.vsock stratovirt.vsock",
        r"cmdline systemd\.set_credential=vmm\.notify_socket:vsock-stream:2:\d+",
        D,
        "readiness over vsock on every hypervisor with vsock",
        "The guest's systemd learns where to send READY=1 from the vmm.notify_socket "
        + "credential. Hypervisors without SMBIOS or OEM strings get it on the kernel command "
        + "line, so `microvm@` can wait for the guest on all of them (upstream: QEMU and "
        + "cloud-hypervisor only). The port is 8888 + CID, one per VM for native vsock.",
        "systemd's kernel-command-line(7) (systemd.set_credential=) and "
        + "systemd.system-credentials(7) (vmm.notify_socket)",
    ),
    _e(
        "ch-notify-credential-p",
        P,
        "cloud-hypervisor.vsock cloud-hypervisor.vsock-extra-args",
        r"--platform \[\] oem_strings=\[io\.systemd\.credential:vmm\.notify_socket="
        + r"vsock-stream:2:\d+\]",
        D,
        "the readiness credential's port is 8888 + CID",
        "As upstream does, but with the port every backend uses (8888 + CID).",
        "cloud-hypervisor --help (--platform oem_strings, since v26); "
        + "systemd.system-credentials(7)",
    ),
    _e(
        "hybrid-vsock-file",
        P,
        "cloud-hypervisor.vsock cloud-hypervisor.vsock-extra-args firecracker.vsock",
        r"config (notify|my)\.vsock\n?",
        D,
        "share/microvm/hybrid-vsock names the vsock socket",
        "The host's notify relay reads it to listen on notify.vsock_PORT, where these "
        + "hypervisors hand over a guest's connection to host port PORT (hybrid vsock); for "
        + "cloud-hypervisor the socket= of a --vsock in extraArgs replaces notify.vsock.",
        "cloud-hypervisor docs/vsock.md; firecracker docs/vsock.md (host-initiated and "
        + "guest-initiated connections)",
    ),

)


UP_OPTIONS = "microvm.nix nixos-modules/microvm/options.nix"
UP_MOUNTS = "microvm.nix nixos-modules/microvm/mounts.nix"

# the corpus differential (tests/test_upstream_corpus.py): microvm.nix's handbook, examples and
# templates evaluated with its modules and this project's; items are `value microvm.PATH: ...`
# (the VM document against upstream's option values), `fileSystems ...`, `refused: ...`,
# `warning: ...` and `host ...` (the units a host declares)
CORPUS: tuple[CorpusEntry, ...] = (
    _c(
        "corpus-interface-network",
        "*",
        r'value microvm\.interfaces\[\d+\]\.(network|ipv4|ipv6): upstream="@absent" ' +
        r'project=null|value microvm\.interfaces\[\d+\]\.addressing: upstream="@absent" ' +
        r'project="auto"',
        D,
        "interfaces.*.network, addressing, ipv4, ipv6 for declared host networks",
        "Upstream has no declared host networks; here an interface may join one "
        + "(type = \"network\") with its addressing and pinned addresses; every other "
        + "interface has network, ipv4 and ipv6 = null and addressing = \"auto\" (which only a "
        + "network interface reads), so nothing changes for upstream's configurations.",
        "docs/networking.md; docs/options.md",
    ),
    _c(
        "corpus-extra-args",
        "*",
        r'value microvm\.(alioth|kvmtool|stratovirt)\.extraArgs: upstream="@absent" project=\[\]',
        D,
        "extraArgs for every hypervisor",
        "Upstream has no extraArgs option for kvmtool, StratoVirt and alioth; here every backend "
        + "takes extra arguments (empty by default), so nothing changes for its users.",
        UP_OPTIONS + "; docs/options.md",
    ),
    _c(
        "corpus-hotplugged-mem",
        "*",
        r"value microvm\.hotpluggedMem: upstream=\d+ project=null",
        D,
        "hotpluggedMem unset means hotplugMem",
        "Upstream's default is the value of hotplugMem; here the option stays null and the "
        + "generator reads null as hotplugMem, so the hypervisor gets the same size.",
        UP_OPTIONS + " (hotpluggedMem); generator/microvm/config.py (hotplugged_mem)",
    ),
    _c(
        "corpus-qemu-machine",
        "*",
        r'value microvm\.qemu\.machine: upstream="(microvm|virt)" project=null',
        D,
        "qemu.machine unset: the QEMU backend picks the machine",
        "Upstream's default is microvm on x86_64 and virt on aarch64; here null lets the backend "
        + "choose the same machines per architecture (the command lines are compared in "
        + "tests/test_upstream.py).",
        UP_OPTIONS + " (qemu.machine); generator/microvm/hypervisors/qemu.py",
    ),
    _c(
        "corpus-socket-unused",
        "*",
        r'value microvm\.socket: upstream="[^"]*\.sock" project=null',
        D,
        "no control socket for kvmtool and alioth",
        "Upstream's default names a socket for every hypervisor, but its kvmtool and alioth "
        + "runners never use it (canShutdown = false); here the default is null for hypervisors "
        + "without a control socket, so nothing claims a socket that does not exist.",
        "microvm.nix lib/runners/kvmtool.nix, lib/runners/alioth.nix; "
        + "nix/modules/microvm/options.nix (socket)",
    ),
    _c(
        "corpus-store-disk-type",
        "*",
        r'value microvm\.storeDiskType: upstream=null project="erofs"',
        D,
        "storeDiskType keeps its default without a store disk",
        "Upstream sets storeDiskType only when there is a store disk; here the option has its "
        + "default (erofs) always and is unused with storeOnDisk = false.",
        "microvm.nix nixos-modules/microvm/store-disk.nix",
    ),
    _c(
        "corpus-store-ro",
        "*",
        r"fileSystems /nix/store option ro: only project",
        D,
        "the store disk is mounted with ro",
        "erofs and squashfs are read-only file systems; the mount says so, as the store disk "
        + "under a writable overlay is on both sides.",
        UP_MOUNTS,
    ),
    _c(
        "corpus-store-serial",
        "*",
        r'fileSystems /nix/(store|\.ro-store)\.device: upstream="/dev/disk/by-label/nix-store" '
        + r'project="/dev/disk/by-id/virtio-store"',
        D,
        "the store disk is found by its serial",
        "See store-serial: where the hypervisor passes virtio-blk serials the guest mounts "
        + "/dev/disk/by-id/virtio-store; upstream finds the disk by its file system label.",
        "nix/modules/microvm/guest.nix; tests/test_contract.py",
    ),
    _c(
        "corpus-store-position",
        "*",
        r'fileSystems /nix/(store|\.ro-store)\.device: upstream="/dev/disk/by-label/nix-store" '
        + r'project="/dev/vda"',
        D,
        "without disk serials the store disk is the first disk",
        "On hypervisors without virtio-blk serials every backend attaches the store disk first, "
        + "so the guest mounts /dev/vda (tests/test_contract.py checks the guest's expectation "
        + "against each backend); upstream mounts it by label.",
        "nix/modules/microvm/guest.nix; nix/lib/default.nix (blockSerials)",
    ),
    _c(
        "corpus-store-bind",
        "*",
        r'fileSystems /nix/store\.(depends: upstream=\[\] project=\["[^"]+"\]'
        + r'|fsType: upstream="(9p|virtiofs)" project="none")',
        D,
        "the shared store is bind-mounted with fsType none, after the share",
        "With the host's /nix/store shared, both sides bind-mount the share at /nix/store. A "
        + "bind mount has no file system type (mount ignores it with bind); `depends` orders it "
        + "after the share's own mount.",
        UP_MOUNTS + "; NixOS fileSystems.<name>.depends",
    ),
    _c(
        "corpus-duplicate-mac",
        "flake.nix:*-qemu-example-with-tap",
        r"refused: only project: microvm\.interfaces\[1\]\.mac: duplicate MAC .*",
        D,
        "two interfaces of one VM with the same MAC are refused",
        "Upstream's own qemu-example-with-tap gives its tap the MAC of its user-network NIC "
        + "(02:00:00:01:01:0 plus the hypervisor's index, 1 for qemu); two NICs with one MAC on "
        + "one guest confuse neighbour discovery and networkd's MAC matches. Refused here with "
        + "both option paths.",
        "microvm.nix flake.nix (tapExamples); generator/microvm/validate.py",
    ),
    _c(
        "corpus-notify-warning",
        "*",
        r"warning: only upstream: \(trace\) cloud-hypervisor supports systemd-notify via vsock, "
        + r"but `microvm\.vsock\.cid` must be set to enable this\.",
        D,
        "no warning for a cloud-hypervisor VM without vsock.cid",
        "Upstream's cloud-hypervisor runner warns for every VM without a vsock CID (the default) "
        + "that it cannot report readiness. Here readiness over vsock is the host's choice "
        + "(microvm.host.useNotifySockets), works on every hypervisor with vsock, and a VM "
        + "without a CID counts as started when its hypervisor is, so there is nothing to warn "
        + "about.",
        "microvm.nix lib/runners/cloud-hypervisor.nix (warnIf); "
        + "generator/microvm/templates/units/libexec/notify-relay.sh.j2",
    ),
    _c(
        "corpus-flake-without-update",
        "declarative.md#1~without-updateFlake:host",
        r'host vms\.[^.]+\.flake: upstream="/nix/store/[^"]*" project=null',
        D,
        "a VM declared with `flake` alone follows the host; no flake is recorded for it",
        "Upstream writes the flake's store path into such a VM's state directory, so `microvm -u` "
        + "rebuilds that same locked snapshot: nothing new. Here the VM is installed at every "
        + "switch like one declared with `config`, `microvm list` shows it as declared, and "
        + "`microvm update NAME` says to change the host configuration or to set "
        + "`microvm.vms.NAME.updateFlake`, the flake a later `microvm update` builds from.",
        "microvm.nix nixos-modules/host/default.nix (install-microvm-*: echo ... > flake); "
        + "generator/microvm/host/commands.py (update)",
    ),
    _c(
        "corpus-host-state-dirs",
        "*",
        r'host tmpfiles: upstream=\["/var/lib/microvms"\] '
        + r'project=\["/var/lib/microvms", "/var/lib/microvms/\.control"'
        + r'(, "/var/lib/microvms/[^"]+")*\]',
        D,
        "root-owned control directory; root-owned, sticky data directory per VM",
        "Upstream's state directory belongs to the microvm user, which can therefore replace "
        + "the runner links root acts on. Here root owns the state directory and .control "
        + "(runner links, metadata); install-microvm-NAME makes each declared VM's data "
        + "directory root's, writable by the VM's group and sticky, with root's links "
        + "current and booted into .control, so upstream's paths keep their meaning.",
        "SECURITY.md; microvm.nix nixos-modules/host/default.nix (systemd.tmpfiles)",
    ),
)


def render() -> str:
    """docs/microvm-nix-differences.md: the table for users of microvm.nix."""
    lines = [
        "# Differences from microvm.nix",
        "",
        "<!-- generated from tests/support/upstream_diff.py by scripts/regen; do not edit -->",
        "",
        "How to move a configuration from microvm.nix: [migrating.md](migrating.md). This page "
        + "is the measured list of what then differs.",
        "",
        "The option names are microvm.nix's, and most configurations produce the same "
        + "hypervisor command line. `tests/test_upstream.py` checks this: it evaluates "
        + "microvm.nix's own runner code and this project's backends for "
        + f"{MATRIX_CASES} configurations on each of the eight hypervisors "
        + "(`tests/nix/upstream/matrix.nix`) "
        + "and compares the command lines and config files option by option. Every difference "
        + "it finds is listed below; a new or vanished difference fails the test.",
        "",
        "Compared after normalising what has to differ: store paths (hashes), the store "
        + "disk's path, the hypervisor binary's directory, internal ids that only link options "
        + "within one command line (QEMU/StratoVirt `id=`, `drive=`, `netdev=`...), short and "
        + "long spellings of one flag, and the order of options (the order of disks is "
        + "compared: without serials the guest finds volumes by position).",
        "",
        "**defect** rows are known gaps this project intends to close; **deliberate** rows "
        + "are choices, with the reason and the source behind them.",
        "",
    ]
    by_hv: dict[str, list[Entry]] = {"all hypervisors": []}
    for hv in HYPERVISORS:
        by_hv[hv] = []
    for e in TABLE:
        hvs = {c.split(".")[0] for c in e.configs}
        key = (
            hvs.pop()
            if len(hvs) == 1 and "*" not in next(iter(e.configs)).split(".")[0]
            else "all hypervisors"
        )
        by_hv[key].append(e)
    for hv, entries in by_hv.items():
        seen: set[str] = set()
        rows = []
        for e in entries:
            if e.summary in seen:
                continue
            seen.add(e.summary)
            rows.append(f"| {e.kind} | {e.summary} | {_cell(e.reason)} | {_cell(e.source)} |")
        if not rows:
            continue
        lines += [f"## {hv}", "", "| kind | difference | why | source |", "|---|---|---|---|"]
        lines += rows
        lines.append("")
    lines += _render_corpus()
    return "\n".join(lines)


def _render_corpus() -> list[str]:
    from support import upstream_corpus

    lines = [
        "## Configurations from microvm.nix's handbook and examples",
        "",
        "`tests/test_upstream_corpus.py` reads microvm.nix's own configurations from its "
        + "source: every Nix block of its handbook (`doc/src/*.md`), its examples, its flake "
        + "template and the example configurations of its `flake.nix`, and a few blocks again "
        + "without an optional setting (`updateFlake`). Each is evaluated with "
        + "microvm.nix's modules and with this project's, on the same stand-in NixOS, and "
        + "compared: the VM document's values against microvm.nix's option values, "
        + "`fileSystems`, refusals (failed assertions, runners that cannot be evaluated, and "
        + "here the generator's checks) and warnings (also those upstream's runners print), "
        + "and for hosts the units declared for each VM and their settings "
        + "(installed, started at boot, restarted when changed, readiness, installed once with "
        + "`updateFlake`, the state directories). Every difference is listed here.",
        "",
        "| kind | difference | why | source |",
        "|---|---|---|---|",
    ]
    lines += [f"| {e.kind} | {e.summary} | {_cell(e.reason)} | {_cell(e.source)} |"
              for e in CORPUS]
    lines += [
        "",
        "Handbook blocks left out of the comparison:",
        "",
    ]
    lines += [f"- `{key}`: {why}" for key, why in sorted(upstream_corpus.SKIP.items())]
    lines.append("")
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
