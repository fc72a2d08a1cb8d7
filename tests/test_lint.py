"""scripts/test runs ruff with the project's configuration: a missing comma in an argv list
(two strings on two lines, silently joined by Python) is an error, not a quiet bug."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from support import REPO

MISSING_COMMA = '''def argv() -> list[str]:
    return [
        "-machine", "microvm",
        "-nodefaults"
        "-no-user-config",
    ]
'''


def ruff(source: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is not installed (scripts/setup installs it with the test extras)")
    return subprocess.run([exe, "check", "--stdin-filename",
                           "generator/microvm/hypervisors/example.py", "-"],
                          input=source, cwd=REPO, text=True, capture_output=True)


def test_a_missing_comma_between_argv_strings_is_reported() -> None:
    p = ruff(MISSING_COMMA)
    assert p.returncode == 1
    assert "ISC002" in p.stdout


def test_the_same_list_with_the_comma_passes() -> None:
    p = ruff(MISSING_COMMA.replace('"-nodefaults"', '"-nodefaults",'))
    assert p.returncode == 0, p.stdout
