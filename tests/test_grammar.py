"""Hypervisor grammar: every flag and every option key the backends emit is one the hypervisor
accepts, and every field it requires is there.

The tables below were read from each hypervisor's own source (file and commit in `source`);
firecracker's config file and cloud-hypervisor's REST body are checked against their API specs
in tests/test_specs.py, so this file covers the command lines: cloud-hypervisor, crosvm,
kvmtool, stratovirt, alioth (both ends of the supported 0.9.0-0.12.0 range) and vfkit. Each
golden case of tests/test_backends.py (minimal, full, store disk, shares, network, vsock,
balloon) is parsed flag by flag. These checks read the argv only; no hypervisor runs here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from microvm.capabilities import Hypervisor
from microvm.config import MicroVM
from microvm.hypervisors import RunContext, backend
from support.backend_cases import CASES, load


@dataclass(frozen=True)
class Opt:
    """The value of one flag: comma-separated items, `key=value` or a bare word."""

    keys: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()
    # accepted bare words (a device type, an enum variant, a valueless switch); None: any
    # single bare first word is not allowed, an empty set: none at all
    words: frozenset[str] = frozenset()


def opt(keys: str = "", required: str = "", words: str = "") -> Opt:
    return Opt(frozenset(keys.split()), frozenset(required.split()), frozenset(words.split()))


FLAG = "flag"    # takes no value
VALUE = "value"  # takes one opaque value (a path, a number, the kernel command line)


@dataclass(frozen=True)
class Grammar:
    source: str
    # argv words before the flags (binary, subcommand)
    prefix: tuple[str, ...]
    flags: Mapping[str, str | Opt | Mapping[str, Opt]]
    # trailing positional arguments (crosvm's kernel)
    positional: int = 0
    # how a value's items are split: quotes and brackets group (cloud-hypervisor, crosvm)
    quoted: bool = False
    objects: bool = False  # alioth's `-o id_N,VALUE` objects stand for values


CLOUD_HYPERVISOR = Grammar(
    source="cloud-hypervisor/cloud-hypervisor@ae44c2971: cloud-hypervisor/src/main.rs " +
           "(flags), vmm/src/config.rs (each `parse`: OptionParser keys; vsock: cid and " +
           "socket required; fs: tag and socket required)",
    prefix=("cloud-hypervisor",),
    quoted=True,
    flags={
        "--cpus": opt("boot max topology kvm_hyperv max_phys_bits affinity features nested " +
                      "core_scheduling profile"),
        "--memory": opt("size file mergeable hotplug_method hotplug_size hotplugged_size " +
                        "shared hugepages hugepage_size prefault reserve thp"),
        "--kernel": VALUE, "--initramfs": VALUE, "--cmdline": VALUE,
        "--serial": opt("file socket iobase", words="off pty tty null"),
        "--console": opt("file socket iobase", words="off pty tty null"),
        "--api-socket": opt("path fd"),
        "--platform": opt("num_pci_segments iommu_segments iommu_address_width serial_number " +
                          "uuid oem_strings iommufd iommufd_fd vfio_p2p_dma tdx sev_snp"),
        "--watchdog": FLAG,
        "--disk": opt("path readonly direct queue_size num_queues vhost_user socket bw_size " +
                      "bw_one_time_burst bw_refill_time ops_size ops_one_time_burst " +
                      "ops_refill_time serial rate_limit_group queue_affinity backing_files " +
                      "sparse image_type lock_granularity id pci_segment iommu"),
        "--fs": opt("tag queue_size num_queues socket id pci_segment", required="tag socket"),
        "--net": opt("tap ip mask mac host_mac offload_tso offload_ufo offload_csum mtu " +
                     "queue_size num_queues vhost_user socket vhost_mode fd bw_size " +
                     "bw_one_time_burst bw_refill_time ops_size ops_one_time_burst " +
                     "ops_refill_time id pci_segment iommu"),
        "--vsock": opt("cid socket id pci_segment iommu", required="cid socket"),
        "--balloon": opt("size deflate_on_oom free_page_reporting"),
        "--device": opt("path fd x_nv_gpudirect_clique x_exclude_mmap_bars id pci_segment " +
                        "iommu", required="path"),
        # not mainline's: the GPU build microvm.nix's overlay ships (cloud-hypervisor-graphics,
        # spectrum's branch) adds --gpu socket=PATH; taken from microvm.nix's runner, which
        # tests/test_upstream.py compares with; that branch's source is not at hand here
        "--gpu": opt("socket", required="socket"),
    },
)

CROSVM = Grammar(
    source="google/crosvm@f1e797a68: src/crosvm/cmdline.rs (`RunCommand` fields, kebab-case), " +
           "devices/src/serial_device.rs (`SerialParameters`), devices/src/virtio/block/mod.rs " +
           "(`DiskOption`), devices/src/virtio/net.rs (`NetParameters`, `NetParametersMode`), " +
           "devices/src/virtio/vsock/sys/linux.rs (`VsockConfig`: cid required), " +
           "src/crosvm/config.rs (`VhostUserFrontendOption`: type and socket required)",
    prefix=("crosvm", "run"),
    positional=1,
    quoted=True,
    flags={
        "--cpus": VALUE, "--mem": VALUE, "--params": VALUE, "--init-mem": VALUE,
        "--socket": VALUE, "--pivot-root": VALUE, "--initrd": VALUE, "--vfio": VALUE,
        "--balloon-page-reporting": FLAG, "--no-balloon": FLAG,
        "--serial": opt("type hardware name path input input-unix-stream num console " +
                        "earlycon stdin out-timestamp debugcon-port pci-address " +
                        "max-queue-sizes"),
        "--block": opt("path ro root sparse direct o_direct lock block-size block_size id " +
                       "io-concurrency multiple-workers async-executor packed-queue " +
                       "bootindex pci-address dontcache", required="path"),
        "--net": opt("tap-name tap-fd host-ip netmask mac vq-pairs packed-queue pci-address " +
                     "mrg-rxbuf", words="vhost-net"),
        "--vsock": opt("cid device max-queue-sizes", required="cid"),
        "--vhost-user": opt("type socket max-queue-size pci-address", required="type socket"),
        "--shared-dir": VALUE,
    },
)

KVMTOOL = Grammar(
    source="kvmtool/kvmtool@b48735e: builtin-run.c (KVM_RUN_OPTIONS), virtio/net.c " +
           "(`set_net_param`), disk/core.c (`,ro` and `,direct` suffixes)",
    prefix=("lkvm", "run"),
    flags={
        "--name": VALUE, "--cpus": VALUE, "--mem": VALUE, "--console": VALUE,
        "--kernel": VALUE, "--initrd": VALUE, "--params": VALUE, "--hugetlbfs": VALUE,
        "--disk": VALUE, "--9p": VALUE, "--vsock": VALUE, "--vfio-pci": VALUE,
        "--rng": FLAG, "--balloon": FLAG, "--gtk": FLAG, "--vnc": FLAG, "--sdl": FLAG,
        "--network": opt("guest_mac mode script downscript guest_ip host_ip trans tapif " +
                         "vhost fd mq", required="mode"),
    },
)

STRATOVIRT_DEVICES: dict[str, Opt] = {
    "virtio-rng-device": opt("rng id max-bytes period", required="rng"),
    "virtio-blk-device": opt("drive id iothread serial", required="drive id"),
    "vhost-user-fs-device": opt("id chardev tag", required="id chardev tag"),
    "virtio-net-device": opt("id netdev iothread rx-iothread tx-iothread mac",
                             required="id netdev"),
    "vhost-vsock-device": opt("id guest-cid", required="id guest-cid"),
    "virtio-balloon-device": opt("id deflate-on-oom free-page-reporting"),
}
STRATOVIRT = Grammar(
    source="openeuler-mirror/stratovirt@d5b32037: docs/config_guidebook.md (sections 1.1-1.7, " +
           "2.2-2.8, 2.12, 2.17), machine_manager/src/config/network.rs (`fd`/`fds` aliases), " +
           "machine_manager/src/cmdline.rs",
    prefix=("stratovirt",),
    flags={
        "-name": VALUE, "-smp": VALUE, "-m": VALUE, "-mem-path": VALUE, "-kernel": VALUE,
        "-initrd": VALUE, "-append": VALUE,
        "-machine": opt("type dump-guest-core mem-share", words="microvm"),
        "-serial": opt("path", words="stdio pty socket file chardev:console0"),
        "-qmp": VALUE,
        "-chardev": {"stdio": opt("id", required="id"), "pty": opt("id", required="id"),
                     "socket": opt("id path server nowait", required="id path",
                                   words="server nowait")},
        "-object": {"rng-random": opt("id filename", required="id filename")},
        "-drive": opt("id file readonly direct throttling.iops-total discard detect-zeroes " +
                      "aio format if", required="id file"),
        "-netdev": {"tap": opt("id ifname path macnat queues vhost vhostfd vhostfds fd fds",
                               required="id")},
        "-device": STRATOVIRT_DEVICES,
    },
)


def _alioth(version: str, cpu: str, cmdline: str, source: str) -> Grammar:
    return Grammar(
        source=source, prefix=("alioth", "boot"), objects=True,
        flags={
            cpu: VALUE, cmdline: VALUE, "--kernel": VALUE, "--initramfs": VALUE,
            "--entropy": FLAG, "--pvpanic": FLAG,
            "--memory": opt("size backend shared transparent_hugepage thp" if version != "0.9"
                            else "size backend shared transparent_hugepage"),
            "--blk": {"file": opt("path readonly api", required="path")},
            "--fs": {"vu": opt("socket tag dax_window", required="socket")},
            # the tap variant is the fallback without a variant word; mtu and mac required
            "--net": opt("mac mtu queue_pairs qp tap if_name if api", required="mac mtu"),
            "--vsock": {"vhost": opt("cid dev", required="cid")},
        })


ALIOTH_0_9 = _alioth("0.9", "--num-cpu", "--cmd-line",
                     "google/alioth@v0.9.0: alioth-cli/src/boot.rs (`BootArgs`, `add_net`, " +
                     "`add_blk`), alioth/src/virtio/dev/net/net.rs (`NetTapParam`: mac, mtu " +
                     "required), alioth/src/mem/mem.rs (`MemConfig`), .../blk.rs, " +
                     ".../fs/vu.rs, .../vsock/vhost_vsock.rs")
ALIOTH_0_12 = _alioth("0.12", "--num-cpu", "--cmd-line",
                      "google/alioth@v0.12.0 and c78f8bd: alioth-cli/src/boot/boot.rs " +
                      "(`num_cpu` deprecated but kept, `cmdline` alias `cmd-line`), " +
                      "alioth-cli/src/boot/config.rs (`NetSpec`, `BlkSpec`, `FsSpec`, " +
                      "`VsockSpec`), alioth/src/virtio/dev/net/tap.rs (`TapNetSpec`: mac, mtu " +
                      "required)")

VFKIT_DEVICES: dict[str, Opt] = {
    "virtio-rng": opt(),
    "virtio-serial": opt("logFilePath", words="stdio pty"),
    "virtio-blk": opt("path type readonly deviceId", required="path", words="readonly"),
    "virtio-fs": opt("sharedDir mountTag", required="sharedDir mountTag"),
    "virtio-net": opt("nat mac fd unixSocketPath type vfkitMagic offloading", words="nat"),
    "virtio-gpu": opt("width height"),
    "virtio-input": opt(words="keyboard pointing"),
    "virtio-balloon": opt(),
    "rosetta": opt("mountTag install ignore-if-missing", required="mountTag",
                   words="install ignore-if-missing"),
}
VFKIT = Grammar(
    source="crc-org/vfkit@b2bc27e: pkg/cmdline/cmdline.go (flags), pkg/config/virtio.go " +
           "(`deviceFromCmdLine` and each `FromOptions`; rosetta: `RosettaShare`), " +
           "pkg/config/bootloader.go",
    prefix=("vfkit",),
    flags={
        "--cpus": VALUE, "--memory": VALUE, "--log-level": VALUE, "--restful-uri": VALUE,
        "--gui": FLAG,
        "--bootloader": {"linux": opt("kernel initrd cmdline", required="kernel")},
        "--device": VFKIT_DEVICES,
    },
)

GRAMMARS: dict[Hypervisor, list[Grammar]] = {
    Hypervisor.CLOUD_HYPERVISOR: [CLOUD_HYPERVISOR],
    Hypervisor.CROSVM: [CROSVM],
    Hypervisor.KVMTOOL: [KVMTOOL],
    Hypervisor.STRATOVIRT: [STRATOVIRT],
    Hypervisor.ALIOTH: [ALIOTH_0_9, ALIOTH_0_12],
    Hypervisor.VFKIT: [VFKIT],
}


def split_items(value: str, quoted: bool) -> list[str]:
    """Split at ',' outside double quotes and brackets (when the syntax has them)."""
    items, cur, depth, in_q = [], "", 0, False
    for c in value:
        if quoted and c == '"':
            in_q = not in_q
        elif quoted and not in_q and c == "[":
            depth += 1
        elif quoted and not in_q and c == "]":
            depth -= 1
        if c == "," and not in_q and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += c
    items.append(cur)
    return items


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)


def check_value(flag: str, spec: Opt | Mapping[str, Opt], value: str, g: Grammar,
                objects: Mapping[str, str], out: Report) -> None:
    items = split_items(value, g.quoted)
    if isinstance(spec, Mapping):
        head = items[0]
        if head not in spec:
            out.errors.append(f"{flag} {value!r}: {head!r} is not one of {sorted(spec)}")
            return
        spec, items = spec[head], items[1:]
    keys: set[str] = set()
    for i, item in enumerate(items):
        if "=" not in item:
            if item not in spec.words:
                out.errors.append(f"{flag} {value!r}: bare {item!r} not accepted")
            elif i and item not in spec.keys and item not in spec.words:
                out.errors.append(f"{flag} {value!r}: {item!r} misplaced")
            keys.add(item)
            continue
        key, v = item.split("=", 1)
        if key not in spec.keys:
            out.errors.append(f"{flag} {value!r}: unknown key {key!r}")
        if g.objects and v.startswith("id_") and v not in objects:
            out.errors.append(f"{flag} {value!r}: object {v} not defined")
        keys.add(key)
    missing = spec.required - keys
    if missing:
        out.errors.append(f"{flag} {value!r}: missing required {sorted(missing)}")


def check_argv(argv: list[str], g: Grammar) -> list[str]:
    out = Report()
    assert tuple(argv[:len(g.prefix)]) == g.prefix, argv[:3]
    rest = argv[len(g.prefix):]
    objects: dict[str, str] = {}
    if g.objects:
        # trailing `-o id_N,VALUE` pairs
        while len(rest) >= 2 and rest[-2] == "-o":
            key, _, v = rest[-1].partition(",")
            objects[key] = v
            rest = rest[:-2]
    if g.positional:
        rest = rest[:-g.positional]
    i = 0
    while i < len(rest):
        flag = rest[i]
        spec = g.flags.get(flag)
        if spec is None:
            out.errors.append(f"unknown flag {flag!r}")
            i += 1
            continue
        if spec == FLAG:
            i += 1
            continue
        if i + 1 >= len(rest):
            out.errors.append(f"{flag} has no value")
            break
        value = rest[i + 1]
        if isinstance(spec, (Opt, Mapping)):
            check_value(flag, spec, value, g, objects, out)
        i += 2
    return out.errors


def cases() -> list[tuple[Hypervisor, str]]:
    return [(hv, name) for hv in GRAMMARS for name, make in CASES.items()
            if make(hv) is not None]


@pytest.mark.parametrize(("hv", "name"), cases(), ids=[f"{h}-{n}" for h, n in cases()])
def test_every_emitted_key_is_accepted(hv: Hypervisor, name: str) -> None:
    doc = CASES[name](hv)
    assert doc is not None
    vm = load(doc)
    launch = backend(hv).launch(vm, RunContext("/run/microvm/demo"))
    for argv in launch.variants.values():
        generated = argv[:len(argv) - len(vm.hypervisor_extra_args)]
        if generated[0] == "bash":
            # bash -c SCRIPT NAME [...] ARGV: vfkit with a relative socket (the script appends
            # --restful-uri), alioth's pseudo-terminal wrapper
            prefix = list(GRAMMARS[hv][0].prefix)
            start = next(i for i in range(4, len(generated))
                         if generated[i:i + len(prefix)] == prefix)
            generated = generated[start:]
        for g in GRAMMARS[hv]:
            assert check_argv(generated, g) == [], g.source


def test_the_checker_catches_what_issue_9_found() -> None:
    """The defects that motivated the tables fail the check: alioth 0.10's spellings under
    0.9, a tap without mtu, and stratovirt's `-serial stdio` console (not a chardev the
    socket console can replace)."""
    old = ["alioth", "boot", "--cpu", "count=1", "--cmdline", "console=ttyS0",
           "--net", "if_name=tap0,mac=02:00:00:00:00:01"]
    errors = check_argv(old, ALIOTH_0_9)
    assert "unknown flag '--cpu'" in errors
    assert "unknown flag '--cmdline'" in errors
    assert any("missing required ['mtu']" in e for e in errors)
    assert check_argv(["cloud-hypervisor", "--vsock", "cid=3"], CLOUD_HYPERVISOR) == [
        "--vsock 'cid=3': missing required ['socket']"]
    assert check_argv(["crosvm", "run", "--block", "path=/s,ro=true,serial=x", "/k"], CROSVM) == [
        "--block 'path=/s,ro=true,serial=x': unknown key 'serial'"]


def test_cloud_hypervisor_extra_args_merged_into_its_flags_parse() -> None:
    """extraArgs of flags the runner gives itself (--cpus, --platform, --vsock, --serial,
    --console) are merged into one flag each, which parses as cloud-hypervisor's grammar."""
    doc = load_extra(Hypervisor.CLOUD_HYPERVISOR, [
        "--cpus", "max=4", "--platform", "serial_number=vm7", "--vsock", "socket=my.vsock",
        "--serial", "off", "--console", "tty"])
    argv = backend(Hypervisor.CLOUD_HYPERVISOR).command(doc, RunContext("/run/microvm/demo"))
    assert check_argv(argv, CLOUD_HYPERVISOR) == []
    flags = [w for w in argv if w.startswith("--")]
    assert len(flags) == len(set(flags)), flags


def load_extra(hv: Hypervisor, extra: list[str]) -> MicroVM:
    doc = CASES["vsock"](hv)
    assert doc is not None
    return load({**doc, "microvm": {**doc["microvm"], str(hv): {"extraArgs": extra}}})
