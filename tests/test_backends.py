"""Hypervisor backends: exact argv/config against reviewed golden files, and the runner scripts
they produce pass shellcheck.

None of these hypervisors can run on the CI machine (no KVM), so the argv is the contract: each
golden file under tests/golden/<hypervisor>/ was checked by hand against the upstream files its
README names. `MICROVM_UPDATE_GOLDEN=1 python -m pytest tests/test_backends.py` rewrites them;
review the diff before committing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from microvm.capabilities import Feature, Hypervisor
from microvm.errors import ValidationError
from microvm.hypervisors import Accel, RunContext, backend
from microvm.hypervisors.alioth import Alioth
from microvm.hypervisors.cloud_hypervisor import CloudHypervisor, vm_config
from microvm.hypervisors.cloud_hypervisor import value as ch_value
from microvm.hypervisors.crosvm import value as crosvm_value
from microvm.hypervisors.firecracker import merge
from microvm.hypervisors.qemu import Qemu
from microvm.hypervisors.vfkit import Vfkit
from microvm.runner import build, virtiofsd_argv
from support.backend_cases import ALL, CASES, OTHERS, QEMU_CASES, Doc, document, full, has, load

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("MICROVM_UPDATE_GOLDEN") == "1"
RUNNER_DIR = "/nix/store/00000000000000000000000000000000-microvm-runner"
CTX = RunContext(runner_dir=RUNNER_DIR)
F = Feature


def control(c: Any) -> Any:
    """A Control as JSON: the fields its kind uses."""
    if c is None:
        return None
    d = dataclasses.asdict(c)
    if c.kind != "http":
        del d["method"], d["path"]
    return {k: v for k, v in d.items() if v not in (None, ())}


def golden_record(hv: Hypervisor, doc: Doc) -> dict[str, Any]:
    vm = load(doc)
    be = backend(hv)
    record: dict[str, Any] = {"document": doc["microvm"]}
    if hv is Hypervisor.QEMU:
        qemu = Qemu()
        record["argv"] = {"kvm": qemu.argv(vm, CTX, Accel.KVM),
                          "tcg": qemu.argv(vm, CTX, Accel.TCG)}
    else:
        launch = be.launch(vm, CTX)
        assert list(launch.variants) == [Accel.KVM]
        record["argv"] = {str(k): v for k, v in launch.variants.items()}
        if launch.files:
            record["files"] = {name: json.loads(text) if name.endswith(".json") else text
                               for name, text in launch.files.items()}
        if launch.sockets:
            record["sockets"] = launch.sockets
    if hv is Hypervisor.CLOUD_HYPERVISOR:
        record["vm_config"] = vm_config(vm)
    record["shutdown"] = control(be.shutdown(vm))
    record["balloon"] = control(be.balloon(vm))
    return record


def _id(case: tuple[Hypervisor, str, Doc]) -> str:
    return f"{case[0]}/{case[1]}"


@pytest.mark.parametrize("case", ALL, ids=_id)
def test_golden(case: tuple[Hypervisor, str, Doc]) -> None:
    hv, name, doc = case
    path = GOLDEN / str(hv) / f"{name}.json"
    got = json.dumps(golden_record(hv, doc), indent=2, ensure_ascii=False) + "\n"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got, "utf-8")
    assert path.exists(), f"no golden file {path}; run with MICROVM_UPDATE_GOLDEN=1 and review"
    assert path.read_text("utf-8") == got, (
        f"{path} differs; if the change is intended, rerun with MICROVM_UPDATE_GOLDEN=1 and " +
        "review the diff against the upstream docs named in its README")


def test_no_stray_golden_files() -> None:
    expected = {GOLDEN / str(hv) / f"{name}.json" for hv, name, _ in ALL}
    found = set(GOLDEN.glob("*/*.json"))
    assert found - expected == set(), "golden files without a case"
    for hv in Hypervisor:
        assert (GOLDEN / str(hv) / "README.md").exists(), f"{hv}: golden README missing"


@pytest.mark.parametrize("hv", OTHERS, ids=str)
def test_each_case_is_valid_and_has_one_kvm_variant(hv: Hypervisor) -> None:
    for name, make in CASES.items():
        doc = make(hv)
        if doc is None:
            continue
        vm = load(doc)
        launch = backend(hv).launch(vm, CTX)
        assert set(launch.variants) == {Accel.KVM}, name
        argv = launch.variants[Accel.KVM]
        assert all(isinstance(a, str) for a in argv), name
        extra = list(vm.hypervisor_extra_args)
        assert any(argv[i:i + len(extra)] == extra for i in range(len(argv))), name


# -- shellcheck over every generated runner -------------------------------------------------

@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_generated_scripts_pass_shellcheck(tmp_path: Path) -> None:
    scripts = []
    for hv, name, doc in ALL:
        tree = build(load(doc), f"/run/microvm/{hv}-{name}")
        for rel, (content, executable) in tree.files.items():
            if executable:
                path = tmp_path / str(hv) / name / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content, "utf-8")
                scripts.append(str(path))
    assert len(scripts) > 50
    result = subprocess.run(["shellcheck", "--shell=bash", "--severity=style", *scripts],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


# -- runner integration ---------------------------------------------------------------------

def test_vfkit_serves_virtiofs_itself() -> None:
    vm = load(CASES["shares"](Hypervisor.VFKIT) or {})
    tree = build(vm, RUNNER_DIR)
    assert "bin/virtiofsd-run" not in tree.files
    run = tree.files["bin/microvm-run"][0]
    assert "virtiofsd-run" not in run


def test_crosvm_gets_the_tag_from_virtiofsd() -> None:
    vm = load(CASES["shares"](Hypervisor.CROSVM) or {})
    share = vm.shares[0]
    assert f"--tag={share.tag}" in virtiofsd_argv(vm, share)["rust"]
    qemu_vm = load(QEMU_CASES["virtiofs"])
    assert not any(a.startswith("--tag") for a in virtiofsd_argv(qemu_vm,
                                                                 qemu_vm.shares[0])["rust"])


@pytest.mark.parametrize("hv", [Hypervisor.FIRECRACKER, Hypervisor.KVMTOOL, Hypervisor.CROSVM,
                                Hypervisor.STRATOVIRT], ids=str)
def test_single_queue_hypervisors_get_single_queue_taps(hv: Hypervisor) -> None:
    vm = load(CASES["net"](hv) or {})
    tree = build(vm, RUNNER_DIR)
    assert "multi_queue" not in tree.files["bin/tap-up"][0]
    if has(hv, F.NET_MACVTAP):
        # one fd per macvtap: an unread queue would drop the flows steered to it
        assert tree.files["bin/microvm-run"][0].count("<>\"/dev/tap$ifindex\"") == 1


def test_multiqueue_hypervisor_gets_multiqueue_taps() -> None:
    vm = load(CASES["net"](Hypervisor.CLOUD_HYPERVISOR) or {})
    tree = build(vm, RUNNER_DIR)
    assert "multi_queue" in tree.files["bin/tap-up"][0]
    assert tree.files["bin/microvm-run"][0].count("<>\"/dev/tap$ifindex\"") == 2


def test_stale_sockets_are_removed_before_start() -> None:
    vm = load(CASES["vsock"](Hypervisor.FIRECRACKER) or {})
    run = build(vm, RUNNER_DIR).files["bin/microvm-run"][0]
    assert "if [ -S demo.sock ]; then rm -f -- demo.sock; fi" in run
    assert "if [ -S notify.vsock ]; then rm -f -- notify.vsock; fi" in run


def test_firecracker_writes_its_config_beside_the_runner() -> None:
    vm = load(full(Hypervisor.FIRECRACKER))
    tree = build(vm, RUNNER_DIR)
    config = json.loads(tree.files["share/microvm/firecracker.json"][0])
    argv = backend(Hypervisor.FIRECRACKER).launch(vm, CTX).variants[Accel.KVM]
    assert argv[1:3] == ["--config-file", f"{RUNNER_DIR}/share/microvm/firecracker.json"]
    assert config["cpu-config"] == f"{RUNNER_DIR}/share/microvm/cpu-config.json"
    assert json.loads(tree.files["share/microvm/cpu-config.json"][0]) == vm.firecracker_cpu
    # extraConfig merges into the generated sections instead of replacing them
    assert config["machine-config"] == {"vcpu_count": 2, "mem_size_mib": 1024,
                                        "huge_pages": "2M", "track_dirty_pages": True}


def test_shutdown_script_says_plainly_when_there_is_no_way() -> None:
    for hv in (Hypervisor.KVMTOOL, Hypervisor.ALIOTH, Hypervisor.STRATOVIRT):
        script = build(load(document(hv)), RUNNER_DIR).files["bin/microvm-shutdown"][0]
        assert f"microvm: {hv} has no way to ask the guest to power off" in script
        assert "exit 1" in script


def test_firecracker_on_aarch64_has_no_shutdown_request() -> None:
    doc = document(Hypervisor.FIRECRACKER)
    doc["system"] = "aarch64-linux"
    vm = load(doc)
    assert backend(Hypervisor.FIRECRACKER).shutdown(vm) is None
    assert backend(Hypervisor.FIRECRACKER).balloon(vm) is None
    x86 = load(document(Hypervisor.FIRECRACKER))
    assert backend(Hypervisor.FIRECRACKER).shutdown(x86) is not None


# -- value encoding -------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "encoded"), [
    ("plain.img", "plain.img"),
    ("a,b.img", '"a,b.img"'),
    ('say "hi".img', '"say ""hi"".img"'),
    ("[x].img", '"[x].img"'),
    (" lead", '" lead"'),
])
def test_cloud_hypervisor_quotes_values_like_option_parser(raw: str, encoded: str) -> None:
    assert ch_value(raw) == encoded


@pytest.mark.parametrize(("raw", "encoded"), [
    ("plain.img", "plain.img"),
    ("a,b.img", '"a,b.img"'),
    ('q"uote', '"q\\"uote"'),
    ("back\\slash", '"back\\\\slash"'),
])
def test_crosvm_quotes_values_like_serde_keyvalue(raw: str, encoded: str) -> None:
    assert crosvm_value(raw) == encoded


def test_alioth_moves_awkward_values_into_objects() -> None:
    vm = load(document(Hypervisor.ALIOTH, volumes=[
        {"image": "/srv/disk,2024.img", "autoCreate": False},
        {"image": "/srv/a=b.img", "autoCreate": False}]))
    argv = Alioth().argv(vm)
    assert argv[argv.index("--blk") + 1] == "file,path=id_0"
    assert argv[-4:] == ["-o", "id_0,/srv/disk,2024.img", "-o", "id_1,/srv/a=b.img"]


def test_vfkit_makes_a_relative_socket_absolute_at_start() -> None:
    vm = load(document(Hypervisor.VFKIT))
    argv = Vfkit().argv(vm)
    assert argv[:2] == ["bash", "-c"]
    assert argv[3:6] == ["vfkit", "demo.sock", "vfkit"]
    out = subprocess.run([*argv[:5], "printf", "%s\\n"], capture_output=True, text=True,
                         cwd="/tmp", check=True).stdout.split()
    assert out == ["--restful-uri", "unix:///tmp/demo.sock"]
    absolute = load(document(Hypervisor.VFKIT, socket="/run/vm/demo.sock"))
    assert Vfkit().argv(absolute)[-2:] == ["--restful-uri", "unix:///run/vm/demo.sock"]


def test_firecracker_merge_is_recursive() -> None:
    base = {"a": {"x": 1, "y": [1]}, "b": 2}
    assert merge(base, {"a": {"y": [2], "z": 3}, "c": 4}) == {
        "a": {"x": 1, "y": [2], "z": 3}, "b": 2, "c": 4}
    assert base == {"a": {"x": 1, "y": [1]}, "b": 2}


# -- cloud-hypervisor: the JSON body says what the argv says --------------------------------

def _flags(argv: list[str], flag: str) -> list[dict[str, str]]:
    out = []
    for i, a in enumerate(argv):
        if a == flag:
            items = {}
            for part in _split(argv[i + 1]):
                key, _, val = part.partition("=")
                items[key] = val.strip('"')
            out.append(items)
    return out


def _split(s: str) -> list[str]:
    parts, cur, quoted, depth = [], "", False, 0
    for c in s:
        if c == '"':
            quoted = not quoted
        elif not quoted and c == "[":
            depth += 1
        elif not quoted and c == "]":
            depth -= 1
        elif c == "," and not quoted and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += c
    return [*parts, cur]


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n](Hypervisor.CLOUD_HYPERVISOR)])
def test_cloud_hypervisor_vm_config_matches_argv(name: str) -> None:
    vm = load(CASES[name](Hypervisor.CLOUD_HYPERVISOR) or {})
    argv = CloudHypervisor().argv(vm)
    config = vm_config(vm)
    mib = 1 << 20
    assert config["payload"]["kernel"] == argv[argv.index("--kernel") + 1]
    assert config["payload"]["cmdline"] == argv[argv.index("--cmdline") + 1]
    assert config["payload"].get("initramfs") == (
        argv[argv.index("--initramfs") + 1] if "--initramfs" in argv else None)
    assert f"boot={config['cpus']['boot_vcpus']}" == argv[argv.index("--cpus") + 1]
    memory = _flags(argv, "--memory")[0]
    assert int(memory["size"].rstrip("M")) * mib == config["memory"]["size"]
    assert (memory.get("shared") == "on") == config["memory"]["shared"]
    assert (memory.get("mergeable") == "on") == config["memory"]["mergeable"]
    assert (memory.get("hugepages") == "on") == config["memory"]["hugepages"]
    if "hotplug_size" in memory:
        assert int(memory["hotplug_size"].rstrip("M")) * mib == config["memory"]["hotplug_size"]
    disks = _flags(argv, "--disk")
    assert [d["path"] for d in disks] == [d["path"] for d in config.get("disks", [])]
    assert [d.get("readonly") == "on" for d in disks] == [
        d["readonly"] for d in config.get("disks", [])]
    assert [d.get("serial") for d in disks] == [d.get("serial") for d in config.get("disks", [])]
    fs = _flags(argv, "--fs")
    assert [(f["tag"], f["socket"]) for f in fs] == [
        (f["tag"], f["socket"]) for f in config.get("fs", [])]
    nets = _flags(argv, "--net")
    assert [(n.get("tap"), n["mac"]) for n in nets] == [
        (n.get("tap"), n["mac"]) for n in config.get("net", [])]
    vsock = _flags(argv, "--vsock")
    assert [(int(v["cid"]), v["socket"]) for v in vsock] == (
        [(config["vsock"]["cid"], config["vsock"]["socket"])] if "vsock" in config else [])
    balloon = _flags(argv, "--balloon")
    assert [int(b["size"].rstrip("M")) * mib for b in balloon] == (
        [config["balloon"]["size"]] if "balloon" in config else [])
    devices = _flags(argv, "--device")
    assert [d["path"] for d in devices] == [d["path"] for d in config.get("devices", [])]


def test_validation_error_names_unencodable_values() -> None:
    doc = document(Hypervisor.STRATOVIRT, volumes=[{"image": "a,b.img", "size": 8}])
    with pytest.raises(ValidationError) as err:
        load(doc)
    assert [str(p) for p in err.value.problems] == [
        ("microvm.volumes[0].image: stratovirt cannot take ',' in option values, " +
         "got 'a,b.img'")]
