"""Smoke test of bench/run.py: every non-booting section runs once with tiny iterations and
writes a report, so the benchmark code cannot rot. No timing is asserted (they vary)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
from support import REPO


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module
    spec.loader.exec_module(module)
    return module


def test_hypervisor_binary_is_read_from_each_runner(tmp_path: Path) -> None:
    """The overhead bench puts its stand-in under the name the runner execs."""
    bench = load_bench()
    names = {}
    for hv in bench.BACKENDS:
        doc = {"hostName": "b", "microvm": {"hypervisor": hv, "kernel": "/k/vmlinux",
                                            "storeOnDisk": False}}
        if hv == "vfkit":
            doc["system"] = "aarch64-darwin"
        names[hv] = bench.hypervisor_binary(bench.generate(doc, tmp_path / hv))
    assert names == {"qemu": "qemu-system-x86_64", "cloud-hypervisor": "cloud-hypervisor",
                     "firecracker": "firecracker", "crosvm": "crosvm", "kvmtool": "lkvm",
                     "stratovirt": "stratovirt", "alioth": "alioth", "vfkit": "vfkit"}


def test_upstream_argv_flips_only_pit_and_pic() -> None:
    bench = load_bench()
    off = bench.upstream_argv(Path("/k"), Path("/i"), "off", "s.sock")
    on = bench.upstream_argv(Path("/k"), Path("/i"), "on", "s.sock")
    diff = [(a, b) for a, b in zip(off, on, strict=True) if a != b]
    assert diff == [("microvm,accel=tcg,acpi=on,mem-merge=on,pcie=off,pic=off,pit=off,rtc=on,"
                     + "usb=off",
                     "microvm,accel=tcg,acpi=on,mem-merge=on,pcie=off,pic=on,pit=on,rtc=on,"
                     + "usb=off")]


@pytest.mark.skipif(shutil.which("mkfs.erofs") is None, reason="erofs-utils is not installed")
def test_quick_run_writes_a_report_with_ratios(tmp_path: Path) -> None:
    bench = load_bench()
    sample = tmp_path / "sample"
    (sample / "sub").mkdir(parents=True)
    (sample / "a").write_text("hello\n" * 1000)
    (sample / "sub" / "b").write_bytes(bytes(range(256)) * 64)
    report = tmp_path / "out" / "REPORT.md"
    report.parent.mkdir()
    assert bench.main(["--quick", "--no-boot", "--sample", str(sample),
                       "--report", str(report)]) == 0
    text = report.read_text()
    for heading in ("## Machine", "## 1. Runner overhead", "## 4. Generation cost",
                    "## 6. Store images and shares"):
        assert heading in text
    for hv in bench.BACKENDS:
        assert f"| {hv}: microvm-run to exec of the stand-in |" in text
    assert "MICROVM_ACCEL=kvm: kvm." in text  # the override reaches QEMU's argv
    assert "| `microvm generate` (demo VM) as a process |" in text
    assert "| erofs -zlz4: build time |" in text
    assert "cProfile of one `microvm generate` process" in text
    if importlib.util.find_spec("matplotlib") is None:
        assert "Plots skipped" in text
    else:
        for png in ("generation.png", "store.png"):
            assert (report.parent / png).stat().st_size > 1000
            assert f"]({png})" in text


@pytest.mark.boot
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, taps)")
def test_network_bench_measures_every_path(tmp_path: Path) -> None:
    """bench/network.py once, with 1 MiB: a row per path, each a ratio to the plain tap."""
    spec = importlib.util.spec_from_file_location("bench_network",
                                                  REPO / "bench" / "network.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = tmp_path / "NETWORK.md"
    assert module.main(["--rounds", "1", "--mib", "1", "--report", str(report)]) == 0
    rows = [line for line in report.read_text().splitlines() if line.startswith("| ")][1:]
    assert [r.split(" | ")[0].lstrip("| ") for r in rows] == [
        "plain tap (reference)", "declared network", "passt (rootless)",
        "QEMU user networking", "guest to guest, declared network"]
    assert rows[0].endswith("| 1.00x |")
