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
from microvm.hypervisors.base import KERNEL_CMDLINE_BYTES
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
        record["argv"] = {"kvm": qemu.command(vm, CTX, Accel.KVM),
                          "tcg": qemu.command(vm, CTX, Accel.TCG)}
    else:
        launch = be.launch(vm, CTX)
        assert list(launch.variants) == [Accel.KVM]
        record["argv"] = {str(k): v for k, v in launch.variants.items()}
        if launch.files:
            record["files"] = {name: json.loads(text) if name.endswith(".json") else text
                               for name, text in launch.files.items()}
        if launch.sockets:
            record["sockets"] = launch.sockets
        if launch.gpu is not None:
            record["gpu"] = {"socket": launch.gpu.socket, "argv": list(launch.gpu.argv)}
    if hv is Hypervisor.CLOUD_HYPERVISOR:
        record["vm_config"] = vm_config(record["argv"]["kvm"])
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
        launch = backend(hv).launch(load(doc), CTX)
        assert set(launch.variants) == {Accel.KVM}, name
        assert all(isinstance(a, str) for a in launch.variants[Accel.KVM]), name


# words no backend writes itself, one with the characters option syntaxes split at
EXTRA_MARK = ["--microvm-test-extra", "a b,c=d:e"]


def with_extra_args(doc: Doc, hv: Hypervisor, extra: list[str]) -> Doc:
    """`doc` with microvm.<hv>.extraArgs (microvm.qemu.extraArgs for QEMU) set to `extra`."""
    m = {**doc["microvm"], str(hv): {**doc["microvm"].get(str(hv), {}), "extraArgs": extra}}
    return {**doc, "microvm": m}


@pytest.mark.parametrize("case", ALL, ids=_id)
def test_extra_args_arrive_once_whole_and_change_nothing_else(
        case: tuple[Hypervisor, str, Doc]) -> None:
    hv, _, doc = case
    plain = backend(hv).launch(load(with_extra_args(doc, hv, [])), CTX).variants
    marked = backend(hv).launch(load(with_extra_args(doc, hv, EXTRA_MARK)), CTX).variants
    assert list(marked) == list(plain)
    n = len(EXTRA_MARK)
    for accel, argv in marked.items():
        at = [i for i in range(len(argv)) if argv[i:i + n] == EXTRA_MARK]
        assert len(at) == 1, (accel, argv)
        assert argv[:at[0]] + argv[at[0] + n:] == plain[accel], accel


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
    argv = Alioth().command(vm, CTX)
    assert argv[argv.index("--blk") + 1] == "file,path=id_0"
    assert argv[-4:] == ["-o", "id_0,/srv/disk,2024.img", "-o", "id_1,/srv/a=b.img"]


def test_vfkit_makes_a_relative_socket_absolute_at_start() -> None:
    vm = load(document(Hypervisor.VFKIT))
    argv = Vfkit().command(vm, CTX)
    assert argv[:2] == ["bash", "-c"]
    assert argv[3:6] == ["vfkit", "demo.sock", "vfkit"]
    out = subprocess.run([*argv[:5], "printf", "%s\\n"], capture_output=True, text=True,
                         cwd="/tmp", check=True).stdout.split()
    assert out == ["--restful-uri", "unix:///tmp/demo.sock"]
    absolute = load(document(Hypervisor.VFKIT, socket="/run/vm/demo.sock"))
    assert Vfkit().command(absolute, CTX)[-2:] == ["--restful-uri", "unix:///run/vm/demo.sock"]


def test_firecracker_merge_is_recursive() -> None:
    base = {"a": {"x": 1, "y": [1]}, "b": 2}
    assert merge(base, {"a": {"y": [2], "z": 3}, "c": 4}) == {
        "a": {"x": 1, "y": [2], "z": 3}, "b": 2, "c": 4}
    assert base == {"a": {"x": 1, "y": [1]}, "b": 2}


# -- cloud-hypervisor: the argv read back as the REST API's VmConfig (tests/test_specs.py) ----

MIB = 1 << 20
# --disk image_type -> the ImageType name in JSON (block/src/lib.rs)
CH_IMAGE_TYPE = {"raw": "Raw", "qcow2": "Qcow2", "vhd": "FixedVhd", "vhdx": "Vhdx"}
# virtio-fs defaults of vm_config.rs, required by the OpenAPI FsConfig
CH_FS_DEFAULTS = {"num_queues": 1, "queue_size": 1024}


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


def _on(items: dict[str, str], key: str) -> bool:
    return items.get(key) == "on"


def _bytes(size: str) -> int:
    return int(size.removesuffix("M")) * MIB


def vm_config(argv: list[str]) -> dict[str, Any]:
    """cloud-hypervisor's argv as the body of `PUT /api/v1/vm.create` (config.rs parses each
    flag into these vm_config.rs names; sizes in bytes). macvtap fds are not part of it: over
    the API they travel as SCM_RIGHTS data."""
    def arg(flag: str) -> str:
        return argv[argv.index(flag) + 1]

    boot = int(_flags(argv, "--cpus")[0]["boot"])
    payload = {"kernel": arg("--kernel"), "cmdline": arg("--cmdline")}
    if "--initramfs" in argv:
        payload["initramfs"] = arg("--initramfs")
    platform: dict[str, Any] = dict(_flags(argv, "--platform")[0])
    if "oem_strings" in platform:
        platform["oem_strings"] = platform["oem_strings"][1:-1].split(",")
    config: dict[str, Any] = {
        "cpus": {"boot_vcpus": boot, "max_vcpus": boot},
        "memory": _ch_memory(_flags(argv, "--memory")[0]), "payload": payload,
        "serial": {"mode": arg("--serial").capitalize()},
        "console": {"mode": arg("--console").capitalize()},
        "platform": platform, "watchdog": "--watchdog" in argv}
    return config | {key: value for key, value in _ch_devices(argv).items() if value}


def _ch_memory(m: dict[str, str]) -> dict[str, Any]:
    memory: dict[str, Any] = {"size": _bytes(m["size"]), "shared": _on(m, "shared"),
                              "mergeable": _on(m, "mergeable"), "hugepages": _on(m, "hugepages")}
    if "hotplug_size" in m:
        memory.update({"hotplug_method": "VirtioMem", "hotplug_size": _bytes(m["hotplug_size"]),
                       "hotplugged_size": _bytes(m["hotplugged_size"])})
    return memory


def _ch_devices(argv: list[str]) -> dict[str, Any]:
    disks = []
    for d in _flags(argv, "--disk"):
        disk: dict[str, Any] = {"path": d["path"], "readonly": _on(d, "readonly"),
                                "direct": _on(d, "direct"),
                                "image_type": CH_IMAGE_TYPE[d["image_type"]]}
        disk |= {k: int(d[k]) if k == "num_queues" else d[k]
                 for k in ("serial", "num_queues") if k in d}
        disks.append(disk)
    nets = [{"mac": n["mac"], "num_queues": int(n.get("num_queues", 2)),
             **({"tap": n["tap"]} if "tap" in n else {})} for n in _flags(argv, "--net")]
    vsock = [{"cid": int(v["cid"]), "socket": v["socket"]} for v in _flags(argv, "--vsock")]
    balloon = [{"size": _bytes(b["size"]), "deflate_on_oom": _on(b, "deflate_on_oom"),
                "free_page_reporting": _on(b, "free_page_reporting")}
               for b in _flags(argv, "--balloon")]
    return {"disks": disks,
            "fs": [{"tag": f["tag"], "socket": f["socket"], **CH_FS_DEFAULTS}
                   for f in _flags(argv, "--fs")],
            "net": nets, "vsock": vsock[0] if vsock else None,
            "balloon": balloon[0] if balloon else None,
            "devices": [{"path": d["path"]} for d in _flags(argv, "--device")]}


def test_validation_error_names_unencodable_values() -> None:
    doc = document(Hypervisor.STRATOVIRT, volumes=[{"image": "a,b.img", "size": 8}])
    with pytest.raises(ValidationError) as err:
        load(doc)
    assert [str(p) for p in err.value.problems] == [
        ("microvm.volumes[0].image: stratovirt cannot take ',' in option values, " +
         "got 'a,b.img'")]


# -- what a backend cannot express: the capability table's limits, the values its syntax
# cannot carry (found where the argv encodes them), by option path ----------------------------

S = Hypervisor.STRATOVIRT
V = Hypervisor.VFKIT
K = Hypervisor.KVMTOOL
C = Hypervisor.CROSVM
FC = Hypervisor.FIRECRACKER
VOL = {"size": 8, "autoCreate": False}
VIRTIOFS = {"proto": "virtiofs", "mountPoint": "/m"}
NINEP = {"proto": "9p", "mountPoint": "/m"}
TAP = {"type": "tap", "mac": "02:00:00:00:00:01"}
PROBLEM_CASES: list[tuple[str, Hypervisor, dict[str, Any], list[str]]] = [
    ("stratovirt values", S, {
        "socket": "a=b.sock", "storeOnDisk": True, "storeDisk": "/s,d",
        "volumes": [{"image": "v=1.img", "serial": "s,1", **VOL}],
        "shares": [{"tag": "t=1", "source": "/x", "socket": "f,s.sock", **VIRTIOFS}],
        "interfaces": [{"id": "t=ap", **TAP}]}, [
        "microvm.socket: stratovirt cannot take '=' in option values, got 'a=b.sock'",
        "microvm.storeDisk: stratovirt cannot take ',' in option values, got '/s,d'",
        "microvm.volumes[0].image: stratovirt cannot take '=' in option values, got 'v=1.img'",
        "microvm.volumes[0].serial: stratovirt cannot take ',' in option values, got 's,1'",
        "microvm.shares[0].socket: stratovirt cannot take ',' in option values, " +
        "got 'f,s.sock'",
        "microvm.shares[0].tag: stratovirt cannot take '=' in option values, got 't=1'",
        "microvm.interfaces[0].id: stratovirt cannot take '=' in option values, got 't=ap'"]),
    ("stratovirt limits", S, {"mem": 64, "vsock": {"cid": 3}, "balloon": True,
                              "volumes": [{"image": f"v{i}.img", **VOL} for i in range(9)]}, [
        "microvm.mem: stratovirt takes 128 MiB to 524288 MiB of memory, got 64",
        "microvm: stratovirt's microvm machine has at most 11 devices on x86_64, this VM " +
        "needs 12 (entropy, disks, shares, interfaces, vsock, balloon)"]),
    ("vfkit values", V, {
        "kernel": '/k"', "initrdPath": '/i"', "kernelParams": ["ok", 'a="b"'],
        "storeOnDisk": True, "storeDisk": "/s,d",
        "volumes": [{"image": "v,1.img", "serial": "s,1", **VOL}],
        "shares": [{"tag": "t", "source": "/x,y", **VIRTIOFS}]}, [
        "microvm.kernel: vfkit cannot take '\"' in --bootloader paths, got '/k\"'",
        "microvm.initrdPath: vfkit cannot take '\"' in --bootloader paths, got '/i\"'",
        "microvm.kernelParams[1]: vfkit cannot take '\"' in the kernel command line, " +
        "got 'a=\"b\"'",
        "microvm.storeDisk: vfkit cannot take ',' in --device values, got '/s,d'",
        "microvm.volumes[0].image: vfkit cannot take ',' in --device values, got 'v,1.img'",
        "microvm.volumes[0].serial: vfkit cannot take ',' in --device values, got 's,1'",
        "microvm.shares[0].source: vfkit cannot take ',' in --device values, got '/x,y'"]),
    ("kvmtool", K, {
        "storeOnDisk": True, "storeDisk": "/s,d",
        "volumes": [{"image": f"v,{i}.img", **VOL} for i in range(4)],
        "shares": [{"tag": "t", "source": "/x,y", **NINEP}],
        "interfaces": [{"id": "t,ap", **TAP}],
        "graphics": {"enable": True, "backend": "cocoa"}}, [
        "microvm.volumes: kvmtool attaches at most 4 disks (the store disk counts), got 5",
        "microvm.storeDisk: kvmtool cannot take ',' in disk paths, got '/s,d'",
        *(f"microvm.volumes[{i}].image: kvmtool cannot take ',' in disk paths, got 'v,{i}.img'"
          for i in range(4)),
        "microvm.shares[0].source: kvmtool cannot take ',' in 9p directories, got '/x,y'",
        "microvm.interfaces[0].id: kvmtool cannot take ',' in interface names, got 't,ap'",
        "microvm.graphics.backend: kvmtool offers gtk or headless, got 'cocoa'"]),
    ("crosvm", C, {"balloon": True, "deflateOnOOM": False,
                   "shares": [{"tag": "t:1", "source": "/x:y", **NINEP}]}, [
        "microvm.deflateOnOOM: crosvm's balloon always lets the guest deflate it on OOM; " +
        "set deflateOnOOM = true",
        "microvm.shares[0].source: crosvm cannot take ':' in --shared-dir paths, got '/x:y'",
        "microvm.shares[0].tag: crosvm cannot take ':' in --shared-dir tags, got 't:1'"]),
    ("firecracker", FC, {"vcpu": 33, "mem": 1025, "hugepageMem": True, "hotplugMem": 100}, [
        "microvm.vcpu: firecracker runs at most 32 vCPUs, got 33",
        "microvm.mem: with 2 MiB huge pages the memory must be a multiple of 2 MiB, got 1025",
        "microvm.hotplugMem: firecracker's hotplug memory is a multiple of its 128 MiB slot " +
        "size, got 100"]),
]


@pytest.mark.parametrize(("hv", "options", "want"), [c[1:] for c in PROBLEM_CASES],
                         ids=[c[0] for c in PROBLEM_CASES])
def test_backend_problems_name_the_option(hv: Hypervisor, options: dict[str, Any],
                                          want: list[str]) -> None:
    with pytest.raises(ValidationError) as err:
        load(document(hv, **options))
    got = [str(p) for p in err.value.problems]
    assert [line for line in got if line in want] == want, got


# -- the kernel command line: bounded by what the guest kernel takes, on the longest line the
# runner passes (every acceleration's argv, firecracker's config file) ------------------------

MARK = "microvm.test.mark="


def _cmdlines(hv: Hypervisor, doc: Doc) -> dict[str, int]:
    """Bytes of the kernel command line (the text holding MARK) in each place the runner of
    `doc` passes one: each acceleration's argv, firecracker's config file."""
    launch = backend(hv).launch(load(doc), CTX)
    texts = {str(accel): [w for w in argv if MARK in w] for accel, argv in launch.variants.items()}
    if "firecracker.json" in launch.files:
        texts["config"] = [json.loads(launch.files["firecracker.json"])["boot-source"][
            "boot_args"]]
    out = {}
    for where, found in texts.items():
        if found:
            (line,) = found
            if hv is Hypervisor.VFKIT:  # cmdline="..." inside --bootloader
                line = line.split('cmdline="', 1)[1].rstrip('"')
            out[where] = len(line.encode())
    return out


def _with_params(hv: Hypervisor, mark: str, every: bool = True) -> Doc:
    """`hv`'s document with every option it takes (else the least one), and `mark` last in
    its kernelParams."""
    doc = full(hv) if every else document(hv)
    doc["microvm"]["kernelParams"] = [*doc["microvm"].get("kernelParams", []), mark]
    return doc


# every option (the longest notify and console words); QEMU's microvm machine adds TCG words
BOUND_CASES = [(hv, True) for hv in Hypervisor] + [(Hypervisor.QEMU, False)]


@pytest.mark.parametrize(("hv", "every"), BOUND_CASES,
                         ids=[f"{hv}{'' if every else '-least'}" for hv, every in BOUND_CASES])
def test_kernel_command_line_just_within_the_bound_is_taken(hv: Hypervisor,
                                                            every: bool) -> None:
    pad = KERNEL_CMDLINE_BYTES - 1 - max(_cmdlines(hv, _with_params(hv, MARK, every)).values())

    def padded(extra: int) -> Doc:  # counted in bytes, not characters
        return _with_params(hv, MARK + "é" * (pad // 2) + "x" * (pad % 2 + extra), every)

    assert max(_cmdlines(hv, padded(0)).values()) == KERNEL_CMDLINE_BYTES - 1  # + its NUL
    with pytest.raises(ValidationError) as err:
        load(padded(1))
    assert [str(p) for p in err.value.problems] == [
        f"microvm.kernelParams: the kernel command line would be {KERNEL_CMDLINE_BYTES + 1} " +
        f"bytes with its NUL; the guest kernel takes at most {KERNEL_CMDLINE_BYTES} " +
        "(Linux COMMAND_LINE_SIZE)"]


def test_qemu_kernel_command_line_is_longest_under_tcg() -> None:
    # the bound is checked on the TCG variant, whose line is longer (tsc_early_khz=)
    lines = _cmdlines(Hypervisor.QEMU, _with_params(Hypervisor.QEMU, MARK, every=False))
    assert lines["tcg"] > lines["kvm"]


def test_firecracker_kernel_command_line_is_in_its_config_file() -> None:
    assert list(_cmdlines(FC, _with_params(FC, MARK))) == ["config"]


@pytest.mark.parametrize("hv", list(Hypervisor))
def test_huge_kernel_params_are_refused(hv: Hypervisor) -> None:
    with pytest.raises(ValidationError) as err:
        load(document(hv, kernelParams=["quiet", "a" * 10_000_000]))
    got = [str(p) for p in err.value.problems]
    assert len(got) == 1 and got[0].startswith(
        "microvm.kernelParams: the kernel command line would be 100000"), got
    assert got[0].endswith(f"takes at most {KERNEL_CMDLINE_BYTES} (Linux COMMAND_LINE_SIZE)")
