"""Under CI=true a skip is a failure unless tests/support/machine.py lists the reason."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from support import machine

TESTS = Path(__file__).resolve().parent

SAMPLE = '''
import shutil
import pytest
from support import machine

def test_missing_tool():
    if shutil.which("no-such-tool-anywhere") is None:
        pytest.skip("no-such-tool-anywhere is not installed")

def test_no_kvm():
    machine.cannot("kvm", "sample")

@pytest.mark.xfail(reason="expected")
def test_expected_failure():
    raise AssertionError
'''


def run(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(TESTS)}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-q", "-rA",
                           "-p", "no:cacheprovider", str(tmp_path / "test_sample.py")],
                          cwd=tmp_path, env=env, text=True, capture_output=True)


def test_ci_fails_a_skip_for_a_missing_tool_and_keeps_a_listed_one(tmp_path: Path) -> None:
    p = run(tmp_path, "true")
    assert p.returncode == 1, p.stdout
    assert "FAILED test_sample.py::test_missing_tool" in p.stdout
    assert "only what tests/support/machine.py lists" in p.stdout
    assert re.search(r"SKIPPED \[1\] \S+: machine cannot: kvm: .*\(sample\)", p.stdout)
    assert "1 failed, 1 skipped, 1 xfailed" in p.stdout
    assert "1 skipped, and why" in p.stdout


def test_outside_ci_both_skip(tmp_path: Path) -> None:
    p = run(tmp_path, "")
    assert p.returncode == 0, p.stdout
    assert "2 skipped, 1 xfailed" in p.stdout
    assert "no-such-tool-anywhere is not installed" in p.stdout


def test_the_list_is_what_the_guide_allows() -> None:
    assert set(machine.CANNOT) == {"kvm", "vhost", "hypervisor", "passthrough", "cgroup2"}
    assert machine.allowed("machine cannot: kvm: anything")
    assert not machine.allowed("machine cannot: shellcheck: missing")
    assert not machine.allowed("nix is not installed")
