"""Guest <-> backend contract, for every hypervisor x architecture.

The guest side is the real guest module: tests/nix/contract.nix evaluates
nix/modules/microvm/guest.nix (with tests/nix/eval.nix, as tests/test_nix.py does) for a VM
with a store disk, a volume with a serial and one without, 9p and virtiofs shares, an
interface, vsock and a credential file (each where the hypervisor takes it). The backend side
is the launch of the document that evaluation produces. For each row the test checks that
what the guest looks for exists in what the hypervisor is told: the store disk and volumes at
the device path the guest mounts (/dev/disk/by-id/virtio-SERIAL needs that serial on that
image; /dev/vdX needs that image at that position), the shares' tags, the interface's MAC,
the console the getty runs on named in `console=`, the guest's own kernel parameters, the
credential files, and the readiness credential with the port the host's notify relay
listens on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from microvm.capabilities import CAPABILITIES, Feature, Hypervisor
from microvm.config import MicroVM, ShareProto
from microvm.document import from_document
from microvm.host.state import Runner
from microvm.hypervisors import backend
from microvm.hypervisors.base import HYBRID_VSOCK_SOCKET, NOTIFY_VSOCK_PORT_BASE, RunContext
from microvm.runner import build, write
from support.nixeval import nix_json, nix_problem

RUNNER_DIR = "/nix/store/00000000000000000000000000000000-microvm-runner"
ROWS = [(hv, system) for hv in Hypervisor
        for system in ("x86_64-linux", "aarch64-linux")
        if hv is not Hypervisor.VFKIT or system == "aarch64-linux"]
CID = 42


@pytest.fixture(scope="module")
def guests() -> dict[str, Any]:
    if why := nix_problem():
        pytest.skip(why)
    attrs = " ".join(f'"{hv}/{system}" = import ./contract.nix {{ hypervisor = "{hv}"; ' +
                     f'system = "{system}"; inherit python repo; }};' for hv, system in ROWS)
    guests: dict[str, Any] = nix_json(f"{{ {attrs} }}")
    return guests


def _kv(option: str) -> dict[str, str]:
    """key=value items of a comma-separated option string (test values hold no ',')."""
    return dict(item.split("=", 1) for item in option.split(",") if "=" in item)


def _after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def _qemu_like(argv: list[str], blk: str) -> list[tuple[str, str | None]]:
    drives = {_kv(d)["id"]: _kv(d)["file"] for d in _after(argv, "-drive")}
    return [(drives[_kv(d)["drive"]], _kv(d).get("serial"))
            for d in _after(argv, "-device") if d.startswith(blk)]


# hypervisor -> (argv, files) -> the disks in attachment order, as (image, serial or None)
DISKS: dict[Hypervisor, Callable[[list[str], dict[str, str]], list[tuple[str, str | None]]]] = {
    Hypervisor.QEMU: lambda argv, _: _qemu_like(argv, "virtio-blk"),
    Hypervisor.CLOUD_HYPERVISOR: lambda argv, _: [
        (_kv(d)["path"], _kv(d).get("serial")) for d in _after(argv, "--disk")],
    Hypervisor.FIRECRACKER: lambda _, files: [
        (d["path_on_host"], None) for d in json.loads(files["firecracker.json"])["drives"]],
    Hypervisor.CROSVM: lambda argv, _: [
        (_kv(d)["path"], _kv(d).get("id")) for d in _after(argv, "--block")],
    Hypervisor.KVMTOOL: lambda argv, _: [(d.split(",")[0], None) for d in _after(argv, "--disk")],
    Hypervisor.STRATOVIRT: lambda argv, _: _qemu_like(argv, "virtio-blk-device"),
    Hypervisor.ALIOTH: lambda argv, _: [(_kv(d)["path"], None) for d in _after(argv, "--blk")],
    Hypervisor.VFKIT: lambda argv, _: [
        (_kv(d)["path"], _kv(d).get("deviceId")) for d in _after(argv, "--device")
        if d.startswith("virtio-blk,")],
}


def _launch(vm: MicroVM) -> tuple[list[str], dict[str, str], str]:
    """argv (first variant), generated files and every text of the runner tree."""
    launch = backend(vm.hypervisor).launch(vm, RunContext(RUNNER_DIR))
    argv = next(iter(launch.variants.values()))
    tree = build(vm, RUNNER_DIR)
    text = "\n".join(content for content, _ in tree.files.values())
    return argv, launch.files, text


def _cmdline(vm: MicroVM, argv: list[str], files: dict[str, str]) -> list[str]:
    """The kernel command line the backend passes (the string holding the guest's init=)."""
    init = vm.kernel_params[0]
    texts: list[str] = [*argv, *(json.loads(f)["boot-source"]["boot_args"]
                      for n, f in files.items() if n == "firecracker.json")]
    found = [t for t in texts if init in t]
    assert len(found) == 1, f"no single kernel command line holding {init!r}: {found}"
    words = found[0].split()
    if vm.hypervisor is Hypervisor.VFKIT:  # cmdline="..." inside --bootloader
        words = found[0].split('cmdline="', 1)[1].rstrip('"').split()
    return words


@pytest.mark.parametrize(("hv", "system"), ROWS, ids=[f"{h}-{s}" for h, s in ROWS])
def test_backend_provides_what_the_guest_expects(hv: Hypervisor, system: str,
                                                 guests: dict[str, Any]) -> None:
    guest = guests[f"{hv}/{system}"]
    vm = from_document(json.loads(guest["json"]))
    fs = guest["fileSystems"]
    argv, files, tree_text = _launch(vm)

    # disks: the store disk first, then the volumes, found where the guest mounts them
    disks = DISKS[hv](argv, files)
    store_mount = "/nix/.ro-store" if "/nix/.ro-store" in fs else "/nix/store"
    assert vm.store_disk_path is not None
    wanted = [(store_mount, vm.store_disk_path)]
    wanted += [(v.mount_point, v.image) for v in vm.volumes if v.mount_point is not None]
    assert [d[0] for d in disks] == [vm.store_disk_path, *(v.image for v in vm.volumes)]
    for mount, image in wanted:
        device = fs[mount]["device"]
        if m := re.fullmatch(r"/dev/disk/by-id/virtio-(.+)", device):
            assert (image, m.group(1)) in disks, (
                f"guest mounts {mount} from {device}, the backend gives {image} no such serial")
        else:
            m2 = re.fullmatch(r"/dev/vd([a-z])", device)
            assert m2, f"{mount}: unexpected device {device}"
            assert disks[ord(m2.group(1)) - ord("a")][0] == image, (
                f"guest mounts {mount} from {device}, the backend attaches {image} elsewhere")

    # the console: the guest's getty runs on the device the kernel is told to use
    gettys = [g.removeprefix("serial-getty@") for g in guest["gettys"]]
    words = _cmdline(vm, argv, files)
    consoles = [w.removeprefix("console=") for w in words if w.startswith("console=")]
    assert gettys == consoles[-1:], f"getty on {gettys}, kernel console {consoles}"
    assert consoles[-1] == CAPABILITIES[hv].console(vm.arch)
    # the guest's own parameters reach the kernel
    assert all(p in words for p in vm.kernel_params)

    # shares: the tag the guest mounts is the one the device (or its virtiofsd) carries
    for s in vm.shares:
        assert fs[s.mount_point]["device"] == s.tag
        assert fs[s.mount_point]["fsType"] == str(s.proto)
        if CAPABILITIES[hv].virtiofsd_tag and s.proto is ShareProto.VIRTIOFS:
            assert re.search(rf"--tag[= ']+{s.tag}\b", tree_text), "virtiofsd gets no --tag"
        else:
            # key=TAG (QEMU, cloud-hypervisor, stratovirt, alioth, vfkit), or DIR,TAG (kvmtool
            # --9p) and DIR:TAG:type=p9 (crosvm --shared-dir)
            assert any(re.search(rf"(mount_tag|tag|mountTag)={s.tag}(,|$)", a)
                       or re.fullmatch(rf"[^,:]+[,:]{s.tag}(:type=p9)?", a)
                       for a in argv), f"no device carries tag {s.tag!r}"

    # interfaces: the MAC the guest sees
    for iface in vm.interfaces:
        assert iface.mac in "\n".join([*argv, *files.values()])

    # credential files: systemd in the guest imports them from fw_cfg
    # (opt/io.systemd.credentials/NAME)
    for name, path in vm.credential_files:
        assert any(f"opt/io.systemd.credentials/{name}" in a and path in a for a in argv)
    if CAPABILITIES[hv].supports(Feature.CREDENTIALS):
        assert vm.credential_files, "the contract VM should ask for a credential file"

    # vsock readiness: the credential names the port the host's notify relay listens on
    if CAPABILITIES[hv].supports(Feature.VSOCK):
        assert vm.vsock_cid == CID
        port = NOTIFY_VSOCK_PORT_BASE + CID
        smbios = f"io.systemd.credential:vmm.notify_socket=vsock-stream:2:{port}"
        kernel = f"systemd.set_credential=vmm.notify_socket:vsock-stream:2:{port}"
        given = "\n".join([*argv, *files.values()])
        assert smbios in given or kernel in words, "the guest is not told where to send READY=1"


@pytest.mark.parametrize("hv", [hv for hv in Hypervisor
                                if CAPABILITIES[hv].supports(Feature.VSOCK)])
def test_hybrid_vsock_socket_is_the_one_the_host_commands_use(hv: Hypervisor,
                                                              tmp_path: Path) -> None:
    """`microvm ssh` connects through the socket the written runner names in
    share/microvm/hybrid-vsock (host Runner.hybrid_vsock): the one the hypervisor is given,
    for a hypervisor with hybrid vsock; none for one with the kernel's vsock."""
    vm = from_document({"hostName": "demo", "system": "x86_64-linux", "microvm": {
        "hypervisor": hv.value, "vsock": {"cid": 3}, "kernel": "/k", "initrdPath": "/i",
        "storeDisk": "/s.img"}})
    argv, files, _ = _launch(vm)
    named = Runner(write(vm, tmp_path / "runner")).hybrid_vsock
    if hv in (Hypervisor.CLOUD_HYPERVISOR, Hypervisor.FIRECRACKER):
        assert named == HYBRID_VSOCK_SOCKET
        assert named in "\n".join([*argv, *files.values()])
    else:
        assert named is None
