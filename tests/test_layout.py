"""The runner tree is a typed contract (microvm.layout): runner.write writes it and the host
side reads it back through one API, equal; a malformed launch.json is a clear error; doctor's
programs are the backends' own."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import pytest
from microvm import runner
from microvm.capabilities import CAPABILITIES, Hypervisor
from microvm.config import InterfaceType
from microvm.document import from_document
from microvm.errors import HostError
from microvm.host import commands, doctor
from microvm.host.state import Runner
from microvm.hypervisors import RunContext, backend
from microvm.layout import (
    BIN_DIR,
    META_DIR,
    LaunchRecord,
    Meta,
    Program,
    program_of,
    virtiofs_meta,
)
from support.backend_cases import ALL

# one case per hypervisor and kind, enough to cover every file the writer can produce
CASES = [(hv, name, doc) for hv, name, doc in ALL
         if name in ("minimal", "full", "net", "vsock", "balloon", "virtiofs", "macvtap")]


@pytest.mark.parametrize(("hv", "name", "doc"), CASES,
                         ids=[f"{hv}-{name}" for hv, name, _ in CASES])
def test_written_tree_reads_back_equal(tmp_path: Path, hv: Hypervisor, name: str,
                                       doc: dict[str, Any]) -> None:
    vm = from_document(doc)
    out = runner.write(vm, tmp_path / "r")
    be = backend(vm.hypervisor)
    launch = be.launch(vm, RunContext(str(out)))
    r = Runner(out)
    assert r.valid
    assert r.launch() == runner.launch_record(launch)
    record = r.launch()
    assert record is not None
    assert list(record.variants) == [str(a) for a in launch.variants]
    assert r.hypervisor == str(vm.hypervisor)
    assert r.vsock_cid == vm.vsock_cid
    assert r.lines(Meta.TAP_INTERFACES) == [i.id for i in be.runner_taps(vm)]
    assert [line.split()[0] for line in r.lines(Meta.MACVTAP_INTERFACES)] == [
        i.id for i in vm.interfaces_of(InterfaceType.MACVTAP)]
    assert r.lines(Meta.PCI_DEVICES) == [d.path for d in vm.devices if d.bus == "pci"]
    assert r.lines(Meta.USB_DEVICES) == [d.path for d in vm.devices if d.bus == "usb"]
    assert (r.meta(Meta.CONTROL_SOCKET) or "").strip() == (vm.socket or "")
    assert json.loads(r.meta(Meta.VM_JSON) or "") == vm.to_json()
    assert from_document(json.loads(r.meta(Meta.VM_JSON) or "")) == vm
    # every file is one the layout names (or a file the backend asked for)
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = str(path.relative_to(out))
        if rel.startswith(f"{BIN_DIR}/"):
            assert Program(rel.removeprefix(f"{BIN_DIR}/")).path == rel
            continue
        assert rel.startswith(f"{META_DIR}/"), rel
        name_ = rel.removeprefix(f"{META_DIR}/")
        tags = [s.tag for s in vm.shares]
        assert (name_ in set(Meta) or name_ in launch.files
                or any(name_ in (virtiofs_meta(t, "socket"), virtiofs_meta(t, "source"))
                       for t in tags)), rel
    # the programs doctor looks for are the ones the runner starts
    assert record.programs == tuple(dict.fromkeys(
        p for p in (program_of(argv) for argv in launch.variants.values()) if p))


def test_launch_record_json_round_trip() -> None:
    record = LaunchRecord(variants={"kvm": ("qemu-system-x86_64", "-m", "256"),
                                    "tcg": ("qemu-system-x86_64", "-accel", "tcg")},
                          probe="kvm", kvm_modules=("/sys/module/kvm_intel",),
                          env={"HOME": "."})
    assert LaunchRecord.from_json(record.to_json()) == record
    assert LaunchRecord.from_text(record.to_text()) == record
    assert json.loads(record.to_text()) == {
        "variants": {"kvm": ["qemu-system-x86_64", "-m", "256"],
                     "tcg": ["qemu-system-x86_64", "-accel", "tcg"]},
        "probe": "kvm", "kvmModules": ["/sys/module/kvm_intel"], "env": {"HOME": "."}}


GOOD: dict[str, Any] = {"variants": {"kvm": ["x"]}, "probe": None, "kvmModules": [],
                        "env": {}}
MALFORMED: list[tuple[str, str]] = [
    ("{", "not JSON"),
    ("[]", "expected an object, got list"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "env"}), "missing key 'env'"),
    (json.dumps({**GOOD, "extra": 1}), "unknown key 'extra'"),
    (json.dumps({**GOOD, "variants": {}}), "variants must be a non-empty object"),
    (json.dumps({**GOOD, "variants": {"kvm": "x"}}), "variants.kvm must be a list of strings"),
    (json.dumps({**GOOD, "variants": {"kvm": ["x", 5]}}),
     "variants.kvm must be a list of strings"),
    (json.dumps({**GOOD, "variants": {"kvm": []}}), "every variant needs an argv"),
    (json.dumps({**GOOD, "probe": "hvf"}), "probe must be null or one of the variants"),
    (json.dumps({**GOOD, "kvmModules": None}), "kvmModules must be a list of strings"),
    (json.dumps({**GOOD, "env": {"A": 1}}), "env must be an object of strings"),
]


@pytest.mark.parametrize(("text", "why"), MALFORMED)
def test_malformed_launch_json_is_a_clear_error(tmp_path: Path, text: str, why: str) -> None:
    out = runner.write(from_document({"hostName": "t", "microvm": {
        "kernel": "/k", "storeOnDisk": False}}), tmp_path / "r")
    path = out / Meta.LAUNCH.path
    path.write_text(text)
    with pytest.raises(HostError) as e:
        Runner(out).launch()
    assert str(e.value).startswith(f"{path}: malformed launch record: ")
    assert why in str(e.value)
    # the readers pass it on: `microvm update`'s comparison and `microvm doctor`
    with pytest.raises(HostError, match="malformed launch record"):
        commands.runner_diff(Runner(out), Runner(out))


def test_missing_launch_json_reads_as_none(tmp_path: Path) -> None:
    out = runner.write(from_document({"hostName": "t", "microvm": {
        "kernel": "/k", "storeOnDisk": False}}), tmp_path / "r")
    (out / Meta.LAUNCH.path).unlink()
    assert Runner(out).launch() is None
    assert commands.runner_diff(Runner(out), Runner(out)) == []


# every platform a hypervisor runs on: doctor is run on each
PLATFORMS = sorted({p for caps in CAPABILITIES.values() for p in caps.platforms})


@pytest.mark.parametrize("system", PLATFORMS)
def test_doctor_reports_the_programs_the_runners_start(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       system: str) -> None:
    """doctor's programs per hypervisor come from the backends (what a runner starts on this
    host's architecture), and it reports each: found (ok, with its path), missing (warn,
    naming it), or not applicable (vfkit off macOS)."""
    arch, kernel = system.split("-")
    monkeypatch.setattr(doctor, "_arch", lambda: arch)
    monkeypatch.setattr(platform, "system",
                        lambda: "Darwin" if kernel == "darwin" else "Linux")
    expected = {Hypervisor.QEMU: f"qemu-system-{arch}",
                Hypervisor.CLOUD_HYPERVISOR: "cloud-hypervisor",
                Hypervisor.FIRECRACKER: "firecracker", Hypervisor.CROSVM: "crosvm",
                Hypervisor.KVMTOOL: "lkvm", Hypervisor.STRATOVIRT: "stratovirt",
                Hypervisor.ALIOTH: "alioth", Hypervisor.VFKIT: "vfkit"}
    assert {hv: doctor.hypervisor_programs(hv) for hv in Hypervisor} == {
        hv: (program,) for hv, program in expected.items()}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    missing = Hypervisor.CROSVM
    for hv, program in expected.items():
        if hv is not missing:
            (bin_dir / program).write_text("#!/bin/sh\n")
            (bin_dir / program).chmod(0o755)
    findings = {f.check: f for f in doctor.check_binaries(str(bin_dir))}
    assert set(findings) == {f"hypervisor {hv}" for hv in Hypervisor}
    for hv, program in expected.items():
        found = findings[f"hypervisor {hv}"]
        if hv is Hypervisor.VFKIT and kernel != "darwin":
            assert (found.level, found.detail) == (doctor.Level.OK,
                                                   "macOS only; not applicable here")
        elif hv is missing:
            assert (found.level, found.detail) == (doctor.Level.WARN,
                                                   f"missing on PATH: {program}")
            assert f'microvm.hypervisor = "{hv}"' in found.fix
        else:
            assert (found.level, found.detail) == (doctor.Level.OK, str(bin_dir / program))


def test_doctor_kvm_findings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """check_kvm's steps: no /dev/kvm, one that cannot be opened, and QEMU's verdict."""
    exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: p != "/dev/kvm" and exists(p))
    [missing] = doctor.check_kvm(None)
    assert (missing.level, missing.detail) == (doctor.Level.WARN,
                                               "missing: no hardware virtualisation")
    monkeypatch.setattr(os.path, "exists", lambda p: p == "/dev/kvm" or exists(p))
    monkeypatch.setattr(doctor, "_open", lambda path: (None, "Permission denied"))
    [closed] = doctor.check_kvm(None)
    assert closed.detail == "present but cannot be opened: Permission denied"
    qemu = tmp_path / "qemu"
    for code, level, detail in ((0, doctor.Level.OK, "usable by"),
                                (1, doctor.Level.WARN, "QEMU with -accel kvm fails: no kvm")):
        qemu.write_text(f"#!/bin/sh\ncat >/dev/null\necho 'no kvm' >&2\nexit {code}\n")
        qemu.chmod(0o755)
        found = doctor._try_qemu(str(qemu), "")
        assert found.level is level and detail in found.detail, found


def test_program_of() -> None:
    assert program_of(["qemu-system-x86_64", "-m", "1"]) == "qemu-system-x86_64"
    # alioth's pty wrapper and vfkit's socket wrapper are named after what they run
    assert program_of(["bash", "-c", "exec \"$@\"", "alioth", "alioth", "boot"]) == "alioth"
    assert program_of(["bash", "-c", "s", "vfkit", "x.sock", "vfkit", "--cpus"]) == "vfkit"
    # kvmtool's balloon script names no program it runs (lkvm is the hypervisor's)
    assert program_of(["bash", "-c", "s", "microvm-balloon", "@BALLOON_MIB@", "t"]) is None
    assert program_of([]) is None


def test_unit_templates_use_the_layout(tmp_path: Path) -> None:
    from microvm import units

    tree = units.build(units.UnitOptions(), "/usr/libexec/microvm")
    unit = tree[f"{units.UNIT_DIR}/microvm@.service"]
    assert isinstance(unit, tuple)
    assert f"/booted/{Program.RUN.path}\n" in unit[0]
    assert f"/booted/{Program.SHUTDOWN.path}\n" in unit[0]
    relay = tree[f"{units.LIBEXEC_DIR}/notify-relay"]
    assert isinstance(relay, tuple)
    assert f'"$runner/{Meta.VSOCK_CID.path}"' in relay[0]
    assert f'"$runner/{Meta.HYBRID_VSOCK.path}"' in relay[0]


def test_doctor_reports_a_malformed_launch_json(tmp_path: Path) -> None:
    from microvm.host.service import Service

    out = runner.write(from_document({"hostName": "vm", "microvm": {
        "kernel": "/k", "storeOnDisk": False}}), tmp_path / "r")
    host = commands.Host(root=tmp_path / "state", service=Service(use_systemd=False),
                         echo=lambda _: None)
    commands.create(host, "vm", runner=str(out), user=None, group=None)
    findings = {f.check: f for f in doctor.check_state(host.root)}
    assert findings["vm vm"].level in (doctor.Level.OK, doctor.Level.FAIL)
    (out / Meta.LAUNCH.path).write_text("{}")
    finding = {f.check: f for f in doctor.check_state(host.root)}["vm vm"]
    assert finding.level is doctor.Level.FAIL
    assert "malformed launch record: missing key" in finding.detail
