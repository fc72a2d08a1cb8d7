"""Smoke test of the Nix evaluation-cost benchmark (bench/nix_eval.py): one VM, one run.

It checks that both sides evaluate (each names a runner derivation for its VM and the host has
systemd services; bench/nix_eval.py checks that on every run) and that the counters are
positive. Timings are never asserted (they vary between machines); bench/nix_eval.py reports
them.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
from support import REPO

pytestmark = [pytest.mark.nix]


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nix_eval", REPO / "bench" / "nix_eval.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["nix_eval"] = mod
    spec.loader.exec_module(mod)
    return mod


bench = load_bench()


@pytest.fixture(autouse=True)
def _need_nix() -> None:
    if shutil.which("nix-instantiate") is None:
        pytest.skip("nix is not installed")
    if not (bench.upstream_src() / "nixos-modules" / "host" / "default.nix").is_file():
        pytest.skip(f"upstream microvm.nix source not found at {bench.upstream_src()} " +
                    "(set MICROVM_NIX_SRC to a checkout of github.com/microvm-nix/microvm.nix)")
    if not Path("/usr/bin/time").is_file():
        pytest.skip("GNU time is not installed at /usr/bin/time")


def test_both_sides_evaluate_one_vm() -> None:
    res = bench.run([1], 1)
    for side in ("project", "upstream"):
        for mode in ("host", "guests"):
            cell = res["medians"][side][mode]["1"]
            for metric in ("thunks", "calls", "alloc", "rss"):
                assert cell[metric] > 0, (side, mode, metric)
    # the host evaluates its guest and more: its counters exceed the guest's alone
    for side in ("project", "upstream"):
        assert res["medians"][side]["host"]["1"]["thunks"] > \
            res["medians"][side]["guests"]["1"]["thunks"], side
    table = bench.markdown(res)
    assert "| thunks (nrThunks) |" in table


def test_a_side_that_fails_to_evaluate_is_an_error(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # an upstream checkout without the host module: the benchmark reports it, never a number
    monkeypatch.setenv("MICROVM_NIX_SRC", str(tmp_path))
    with pytest.raises(RuntimeError, match="upstream host n=1: nix-instantiate failed"):
        bench.measure_once("upstream", "host", 1, tmp_path)
