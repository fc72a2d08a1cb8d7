"""The capability table: every unsupported (hypervisor, feature) pair is refused by
`microvm validate` with the option path, the hypervisor and the alternatives; every supported one
validates and generates; docs/hypervisors.md is rendered from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from microvm.capabilities import CAPABILITIES, Feature, Hypervisor, supporting
from microvm.document import from_document
from microvm.hypervisors import RunContext, backend
from microvm.runner import build
from support import REPO

PAGE = REPO / "docs" / "hypervisors.md"
sys.path.insert(0, str(REPO / "tools"))

import gen_hypervisors as docs  # noqa: E402

F = Feature

# a feature that needs another one first: asking for it where the other is missing is refused
# for the other
DEPENDS = {
    F.SHARE_9P_READONLY: F.SHARE_9P, F.SHARE_VIRTIOFS_READONLY: F.SHARE_VIRTIOFS,
    F.FORWARD_PORTS: F.NET_USER, F.VHOST_NET: F.NET_TAP, F.INITIAL_BALLOON: F.BALLOON,
    F.HOTPLUGGED_MEM: F.HOTPLUG_MEM,
}
USER_NET = {"type": "user", "id": "usernet", "mac": "02:00:00:00:00:01"}
TAP = {"type": "tap", "id": "vm-tap", "mac": "02:00:00:00:00:02"}


def request(feature: Feature) -> tuple[dict[str, Any], str]:
    """microvm.* options that ask for `feature`, and the option path a refusal names."""
    match feature:
        case F.SHARE_9P:
            return {"shares": [{"tag": "data", "source": "/srv/data", "mountPoint": "/data",
                                "proto": "9p"}]}, "microvm.shares[0].proto"
        case F.SHARE_9P_READONLY:
            return {"shares": [{"tag": "data", "source": "/srv/data", "mountPoint": "/data",
                                "proto": "9p", "readOnly": True}]}, "microvm.shares[0].readOnly"
        case F.SHARE_VIRTIOFS:
            return {"shares": [{"tag": "data", "source": "/srv/data", "mountPoint": "/data",
                                "proto": "virtiofs"}]}, "microvm.shares[0].proto"
        case F.SHARE_VIRTIOFS_READONLY:
            return {"shares": [{"tag": "data", "source": "/srv/data", "mountPoint": "/data",
                                "proto": "virtiofs", "readOnly": True}]}, \
                "microvm.shares[0].readOnly"
        case F.NET_USER:
            return {"interfaces": [USER_NET]}, "microvm.interfaces[0].type"
        case F.FORWARD_PORTS:
            return {"interfaces": [USER_NET], "forwardPorts": [
                {"host": {"port": 2222}, "guest": {"port": 22}}]}, "microvm.forwardPorts[0]"
        case F.NET_TAP:
            return {"interfaces": [TAP]}, "microvm.interfaces[0].type"
        case F.NET_MACVTAP:
            return {"interfaces": [{"type": "macvtap", "id": "vm-mvt", "mac": "02:00:00:00:00:03",
                                    "macvtap": {"link": "eth0", "mode": "bridge"}}]}, \
                "microvm.interfaces[0].type"
        case F.NET_BRIDGE:
            return {"interfaces": [{"type": "bridge", "id": "vm-br", "mac": "02:00:00:00:00:04",
                                    "bridge": "br0"}]}, "microvm.interfaces[0].type"
        case F.VHOST_NET:
            return {"interfaces": [{**TAP, "tap": {"vhost": True}}]}, \
                "microvm.interfaces[0].tap.vhost"
        case F.VSOCK:
            return {"vsock": {"cid": 3}}, "microvm.vsock.cid"
        case F.BALLOON:
            return {"balloon": True}, "microvm.balloon"
        case F.INITIAL_BALLOON:
            return {"balloon": True, "initialBalloonMem": 64}, "microvm.initialBalloonMem"
        case F.HOTPLUG_MEM:
            return {"hotplugMem": 1024, "hotpluggedMem": 0}, "microvm.hotplugMem"
        case F.HOTPLUGGED_MEM:
            return {"hotplugMem": 1024, "hotpluggedMem": 512}, "microvm.hotpluggedMem"
        case F.HUGEPAGES:
            return {"hugepageMem": True}, "microvm.hugepageMem"
        case F.VOLUME_SERIAL:
            return {"volumes": [{"image": "data.img", "size": 64, "serial": "data"}]}, \
                "microvm.volumes[0].serial"
        case F.VOLUME_DIRECT:
            return {"volumes": [{"image": "data.img", "size": 64, "direct": True}]}, \
                "microvm.volumes[0].direct"
        case F.PCI_PASSTHROUGH:
            return {"devices": [{"bus": "pci", "path": "0000:01:00.0"}]}, \
                "microvm.devices[0].bus"
        case F.USB_PASSTHROUGH:
            return {"devices": [{"bus": "usb", "path": "vendorid=0x1234,productid=0x5678"}]}, \
                "microvm.devices[0].bus"
        case F.GRAPHICS:
            return {"graphics": {"enable": True}}, "microvm.graphics.enable"
        case F.CONTROL_SOCKET:
            return {"socket": "control.sock"}, "microvm.socket"
        case F.CREDENTIALS:
            return {"credentialFiles": {"token": "/run/secrets/token"}}, \
                "microvm.credentialFiles"
        case F.CPU_EMULATION:
            return {"cpu": "max"}, "microvm.cpu"
        case F.CHANGE_USER:
            return {"user": "microvm"}, "microvm.user"
        case F.MACHINE_ID:
            return {"machineId": "5e0c3b4a-8f2d-4c51-9a6e-2b7d1f0e9c3a"}, "microvm.machineId"
        case F.GRACEFUL_SHUTDOWN:
            raise ValueError("graceful shutdown is not asked for by an option")
    raise AssertionError(feature)


def system(hv: Hypervisor) -> str:
    return "aarch64-darwin" if hv is Hypervisor.VFKIT else "x86_64-linux"


def document(hv: Hypervisor, microvm: dict[str, Any]) -> dict[str, Any]:
    kernel = "/nix/store/kkkk-linux/Image" if hv is Hypervisor.VFKIT else "/nix/store/k/kernel"
    return {"hostName": "demo", "system": system(hv), "microvm": {
        "hypervisor": str(hv), "kernel": kernel, "initrdPath": "/nix/store/i/initrd",
        "storeOnDisk": False, **microvm}}


def refused_for(hv: Hypervisor, feature: Feature) -> Feature:
    """The feature a refusal names: a missing prerequisite before the feature itself."""
    first = DEPENDS.get(feature)
    if first is not None and not CAPABILITIES[hv].supports(first, system(hv)):
        return refused_for(hv, first)
    return feature


# machineId is taken by every hypervisor (it is the guest's /etc/machine-id); MACHINE_ID says
# which also hand it to the firmware (test_machine_id_is_accepted_everywhere)
REQUESTABLE = [f for f in Feature if f not in docs.NOT_ASKED]
UNSUPPORTED = [(hv, f) for hv in Hypervisor for f in REQUESTABLE
               if not CAPABILITIES[hv].supports(f, system(hv))
               and f not in CAPABILITIES[hv].ignored]
# accepted with a warning (microvm.nix accepts them too): the hypervisor ignores the option
IGNORED = [(hv, f) for hv in Hypervisor for f in REQUESTABLE
           if not CAPABILITIES[hv].supports(f, system(hv)) and f in CAPABILITIES[hv].ignored]
SUPPORTED = [(hv, f) for hv in Hypervisor for f in REQUESTABLE
             if CAPABILITIES[hv].supports(f, system(hv))]


def _ids(pair: tuple[Hypervisor, Feature]) -> str:
    return f"{pair[0]}-{pair[1].name.lower()}"


def validate_cli(doc: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "vm.json"
    path.write_text(json.dumps(doc), "utf-8")
    return subprocess.run([sys.executable, "-m", "microvm.cli", "validate", str(path)],
                          capture_output=True, text=True, check=False, timeout=60)


@pytest.mark.parametrize("pair", UNSUPPORTED, ids=_ids)
def test_unsupported_pair_is_refused_by_the_cli(pair: tuple[Hypervisor, Feature],
                                                tmp_path: Path) -> None:
    hv, feature = pair
    named = refused_for(hv, feature)
    _, path = request(named)
    options, _ = request(feature)
    result = validate_cli(document(hv, options), tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    others = [str(h) for h in supporting(named) if h is not hv]
    # an explicit socket is refused with the way out in the phrase itself
    what = ("a control socket (set microvm.socket = null)" if named is F.CONTROL_SOCKET
            else named.value)
    expected = f"error: {path}: {what} not supported by {hv}"
    if named in CAPABILITIES[hv].features:
        only = ", ".join(sorted(CAPABILITIES[hv].feature_platforms[named]))
        expected += f" on {system(hv)} (only on {only})"
    if others:
        expected += f"; hypervisors that support it: {', '.join(others)}"
    assert expected in result.stderr.splitlines(), result.stderr


@pytest.mark.parametrize("pair", IGNORED, ids=_ids)
def test_ignored_pair_is_accepted_with_a_warning(pair: tuple[Hypervisor, Feature],
                                                 tmp_path: Path) -> None:
    hv, feature = pair
    options, path = request(feature)
    result = validate_cli(document(hv, options), tmp_path)
    assert result.returncode == 0, result.stderr
    what = ("a control socket (set microvm.socket = null)" if feature is F.CONTROL_SOCKET
            else feature.value)
    assert result.stderr.splitlines() == [
        f"warning: {path}: {what} not supported by {hv}, ignored: " +
        CAPABILITIES[hv].ignored[feature]]
    build(from_document(document(hv, options)), "/run/microvm/demo")


def test_configurations_microvm_nix_accepts_are_not_refused() -> None:
    """Issue 9, item 11: microvm.nix evaluates these (kvmtool.nix adds --balloon, sets HOME for
    lkvm's socket and warns on serials; firecracker.nix and alioth.nix warn on serial/direct)."""
    accepted = {(Hypervisor.KVMTOOL, F.BALLOON), (Hypervisor.KVMTOOL, F.CONTROL_SOCKET),
                (Hypervisor.KVMTOOL, F.VOLUME_SERIAL),
                (Hypervisor.FIRECRACKER, F.VOLUME_SERIAL),
                (Hypervisor.FIRECRACKER, F.VOLUME_DIRECT),
                (Hypervisor.ALIOTH, F.VOLUME_SERIAL), (Hypervisor.ALIOTH, F.VOLUME_DIRECT)}
    for hv, feature in accepted:
        assert (hv, feature) not in UNSUPPORTED, (hv, feature)
    # a share on firecracker would misbehave (no device at all): still refused
    assert (Hypervisor.FIRECRACKER, F.SHARE_VIRTIOFS) in UNSUPPORTED
    assert (Hypervisor.FIRECRACKER, F.SHARE_9P) in UNSUPPORTED


def test_kvmtool_offers_the_balloon_device() -> None:
    vm = from_document(document(Hypervisor.KVMTOOL, {"balloon": True}))
    argv = backend(Hypervisor.KVMTOOL).launch(vm, RunContext("/run/microvm/demo")).variants
    assert "--balloon" in next(iter(argv.values()))


@pytest.mark.parametrize("pair", SUPPORTED, ids=_ids)
def test_supported_pair_validates_and_generates(pair: tuple[Hypervisor, Feature]) -> None:
    hv, feature = pair
    options, _ = request(feature)
    vm = from_document(document(hv, options))
    tree = build(vm, "/run/microvm/demo")
    assert "bin/microvm-run" in tree.files


def test_every_unsupported_pair_is_covered() -> None:
    # every hypervisor lacks something (QEMU: a balloon inflated at boot); every feature is
    # supported somewhere
    assert {hv for hv, _ in UNSUPPORTED} == set(Hypervisor)
    assert [f for hv, f in UNSUPPORTED if hv is Hypervisor.QEMU] == [F.INITIAL_BALLOON]
    for feature in REQUESTABLE:
        assert supporting(feature), f"{feature}: nobody supports it"


def test_platform_restricted_feature_is_refused_on_the_other_platform(tmp_path: Path) -> None:
    doc = document(Hypervisor.KVMTOOL, {"graphics": {"enable": True}})
    doc["system"] = "aarch64-linux"
    result = validate_cli(doc, tmp_path)
    assert result.returncode == 2
    assert ("error: microvm.graphics.enable: graphics not supported by kvmtool on aarch64-linux " +
            "(only on x86_64-linux); hypervisors that support it: qemu, cloud-hypervisor, " +
            "crosvm, vfkit"
            ) in result.stderr.splitlines()


@pytest.mark.parametrize("hv", [hv for hv in Hypervisor
                                if not CAPABILITIES[hv].supports(F.CONTROL_SOCKET)], ids=str)
def test_no_control_socket_by_default_where_there_is_none(hv: Hypervisor) -> None:
    vm = from_document(document(hv, {}))
    assert vm.socket is None
    assert backend(hv).shutdown(vm) is None
    assert backend(hv).balloon(vm) is None


@pytest.mark.parametrize("hv", [hv for hv in Hypervisor
                                if not CAPABILITIES[hv].supports(F.GRACEFUL_SHUTDOWN)], ids=str)
def test_shutdown_script_refuses_plainly(hv: Hypervisor, tmp_path: Path) -> None:
    doc_path = tmp_path / "vm.json"
    doc_path.write_text(json.dumps(document(hv, {})), "utf-8")
    out = tmp_path / "runner"
    subprocess.run([sys.executable, "-m", "microvm.cli", "generate", str(doc_path),
                    "--out", str(out)], check=True)
    result = subprocess.run([str(out / "bin" / "microvm-shutdown")], capture_output=True,
                            text=True, cwd=tmp_path, check=False, timeout=30)
    assert result.returncode == 1
    assert result.stderr.startswith(f"microvm: {hv} has no way to ask the guest to power off (")
    assert CAPABILITIES[hv].shutdown in result.stderr


@pytest.mark.parametrize("hv", [hv for hv in Hypervisor
                                if CAPABILITIES[hv].supports(F.GRACEFUL_SHUTDOWN, system(hv))],
                         ids=str)
def test_shutdown_request_exists_where_the_table_says(hv: Hypervisor) -> None:
    vm = from_document(document(hv, {}))
    assert backend(hv).shutdown(vm) is not None


@pytest.mark.parametrize("hv", [hv for hv in Hypervisor
                                if CAPABILITIES[hv].supports(F.BALLOON)], ids=str)
def test_balloon_request_exists_where_the_table_says(hv: Hypervisor) -> None:
    vm = from_document(document(hv, {"balloon": True}))
    control = backend(hv).balloon(vm)
    assert control is not None
    text = control.payload or " ".join(control.argv)
    assert any(f"@{p}@" in text for p in ("BALLOON_MIB", "BALLOON_BYTES", "GUEST_MIB",
                                           "GUEST_BYTES"))


def test_table_is_consistent() -> None:
    for hv, caps in CAPABILITIES.items():
        assert caps.platforms, hv
        assert "raw" in caps.image_types, hv
        assert caps.kernel_formats, hv
        for feature, platforms in caps.feature_platforms.items():
            assert feature in caps.features, (hv, feature)
            assert platforms < caps.platforms, (hv, feature)
        assert caps.supports(F.SHARE_9P) or not caps.supports(F.SHARE_9P_READONLY), hv
        assert caps.supports(F.SHARE_VIRTIOFS) or not caps.supports(
            F.SHARE_VIRTIOFS_READONLY), hv
        assert caps.supports(F.BALLOON) or not caps.supports(F.INITIAL_BALLOON), hv
        assert caps.supports(F.HOTPLUG_MEM) or not caps.supports(F.HOTPLUGGED_MEM), hv
        # a runtime request needs the channel it goes through (kvmtool's balloon goes through
        # lkvm's own instance socket, not microvm.socket)
        if caps.supports(F.GRACEFUL_SHUTDOWN) or caps.supports(F.INITIAL_BALLOON):
            assert caps.supports(F.CONTROL_SOCKET), hv
        # an ignored option is one the hypervisor does not support
        assert not set(caps.ignored) & caps.features, hv
        assert set(caps.consoles) == {"x86_64", "aarch64"}, hv
        assert caps.versions, hv
    assert list(CAPABILITIES) == list(Hypervisor)


def test_only_qemu_emulates() -> None:
    assert supporting(F.CPU_EMULATION) == [Hypervisor.QEMU]
    for hv in Hypervisor:
        if hv is not Hypervisor.QEMU:
            launch = backend(hv).launch(from_document(document(hv, {})),
                                        RunContext("/run/microvm/demo"))
            assert [str(a) for a in launch.variants] == ["kvm"]
            assert launch.probe is None


# -- docs -----------------------------------------------------------------------------------

def test_feature_table_has_a_row_per_feature_and_a_column_per_hypervisor() -> None:
    """Each cell says what the tests of this module check: "—" in an option's row is
    refused (UNSUPPORTED), "ignored" accepted with a warning (IGNORED)."""
    table = docs.feature_table()
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("| Feature |"))
    assert all(f"`{hv}`" in header for hv in Hypervisor)
    for feature in Feature:
        row = next(line for line in lines if line.startswith(f"| {feature.value} |"))
        cells = [c.strip() for c in row.strip("|").split("|")][2:]
        assert len(cells) == len(Hypervisor)
        for hv, cell in zip(Hypervisor, cells, strict=True):
            caps = CAPABILITIES[hv]
            kind = ("supported" if caps.supports(feature) else
                    "ignored" if feature in caps.ignored else "refused")
            assert kind == {docs.NO: "refused", docs.IGNORED: "ignored"}.get(
                cell, "supported"), (feature, hv)
            if feature in REQUESTABLE and not caps.supports(feature, system(hv)):
                assert ((hv, feature) in UNSUPPORTED) == (cell == docs.NO), (feature, hv)
    assert "| graphics |" in table
    assert "x86_64 only" in table


def test_the_page_keeps_its_text_around_the_generated_blocks() -> None:
    """render_page replaces what is between the markers, nothing else (whether the committed
    page is current: tests/test_regen.py)."""
    page = (f"intro\n{docs.TABLE_BEGIN}\nold\n{docs.TABLE_END}\n" +
            f"{docs.NOTES_BEGIN}\n{docs.NOTES_END}\nend\n")
    text = docs.render_page(page)
    assert text.startswith(f"intro\n{docs.TABLE_BEGIN}\n")
    assert text.endswith(f"{docs.NOTES_END}\nend\n")
    assert docs.feature_table() in text and "\nold\n" not in text
    assert docs.render_page(text) == text
    assert docs.TABLE_BEGIN in PAGE.read_text("utf-8")


def test_wrong_platform_is_one_problem_not_a_crash(tmp_path: Path) -> None:
    doc = document(Hypervisor.VFKIT, {"socket": "/run/vm.sock", "graphics": {"enable": True}})
    doc["system"] = "x86_64-linux"
    result = validate_cli(doc, tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: microvm.hypervisor: vfkit does not run on x86_64-linux (it runs on aarch64-darwin)"]


@pytest.mark.parametrize("hv", list(Hypervisor), ids=str)
def test_machine_id_is_accepted_everywhere(hv: Hypervisor, tmp_path: Path) -> None:
    """microvm.nix takes machineId whatever the hypervisor: no refusal, no warning; those
    with MACHINE_ID put it in the firmware (QEMU SMBIOS, cloud-hypervisor platform uuid)."""
    uuid = "5e0c3b4a-8f2d-4c51-9a6e-2b7d1f0e9c3a"
    doc = document(hv, {"machineId": uuid})
    p = validate_cli(doc, tmp_path)
    assert p.returncode == 0 and "warning" not in p.stderr, p.stderr
    vm = from_document(doc)
    launch = backend(hv).launch(vm, RunContext("/run/microvm/demo"))
    text = json.dumps([launch.variants, launch.files])
    assert (uuid in text) == CAPABILITIES[hv].supports(F.MACHINE_ID, system(hv))
