"""Children get an environment allow-list (microvm.process): a variable outside it (LD_PRELOAD,
BASH_ENV, an exported bash function, FOO) reaches no program the tool starts, one in it does,
through every way process.py starts programs and through `microvm run` to the hypervisor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from microvm import process
from support.host_cli import cli, make_runner

KEPT = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/home/u", "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8", "TERM": "xterm", "TZ": "UTC", "MICROVM_ACCEL": "tcg",
        "NIX_PATH": "nixpkgs=/x", "NIX_CONFIG": "x", "SSH_AUTH_SOCK": "/run/a",
        "https_proxy": "http://p", "GIT_SSH_COMMAND": "ssh", "SYSTEMD_PAGER": ""}
DROPPED = {"FOO": "bar", "LD_PRELOAD": "/tmp/evil.so", "LD_LIBRARY_PATH": "/tmp",
           "BASH_ENV": "/tmp/evil.sh", "ENV": "/tmp/evil.sh", "SHELLOPTS": "xtrace",
           "BASH_FUNC_ip%%": "() { echo evil; }", "PYTHONPATH": "/tmp", "IFS": "x",
           "CDPATH": "/tmp", "MICROVMX": "1", "MICROVM_TEST_CRASH_AT": "x",
           "MICROVM_PREFETCH_GIT": "/tmp/evil"}
DUMP = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        monkeypatch.delenv(k)
    for k, v in {**KEPT, **DROPPED}.items():
        monkeypatch.setenv(k, v)


def without_runtime(env: dict[str, str]) -> dict[str, str]:
    # what the C library or Python add on their own
    return {k: v for k, v in env.items() if k not in ("LC_CTYPE", "PWD", "SHLVL", "_")}


def test_allow_list() -> None:
    for name in KEPT:
        assert process.allowed_env(name), name
    for name in DROPPED:
        assert not process.allowed_env(name), name
    # of this tool's variables, only the runner's settings: its scripts read them
    for name in process.RUNNER_ENV:
        assert process.allowed_env(name), name


def test_run_passes_the_allow_list_and_extra_env(environ: None) -> None:
    out = process.run([*DUMP], extra_env={"MICROVM_SHUTDOWN_TIMEOUT": "5", "EXTRA": "x"})
    assert without_runtime(json.loads(out.stdout)) == {
        **KEPT, "MICROVM_SHUTDOWN_TIMEOUT": "5", "EXTRA": "x"}


def test_spawn_passes_only_the_allow_list(environ: None, tmp_path: Path) -> None:
    dump = tmp_path / "env.json"
    proc = process.spawn([sys.executable, "-c", "import json, os, sys; " +
                          "open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))",
                          str(dump)])
    assert process.wait(proc) == 0
    assert without_runtime(json.loads(dump.read_text())) == KEPT


def test_exec_passes_only_the_allow_list(tmp_path: Path) -> None:
    code = ("import sys; from microvm import process; " +
            f"process.exec_({DUMP!r}, extra_env={{'MICROVM_X': '1'}})")
    env = {**KEPT, **DROPPED, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=tmp_path).stdout
    assert without_runtime(json.loads(out)) == {**KEPT, "MICROVM_X": "1"}


def test_bash_env_and_exported_functions_do_not_reach_a_bash_child(
        environ: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BASH_ENV is sourced by every non-interactive bash (the runner's scripts), an exported
    function overrides a command: neither may reach them."""
    marker = tmp_path / "sourced"
    evil = tmp_path / "evil.sh"
    evil.write_text(f"touch {marker}\n")
    monkeypatch.setenv("BASH_ENV", str(evil))
    out = process.run(["bash", "-c", "type -t ip || echo none; echo ${FOO:-unset}"]).stdout
    assert not marker.exists()
    assert "function" not in out
    assert out.splitlines()[-1] == "unset"


def test_microvm_run_hands_the_hypervisor_only_the_allow_list(tmp_path: Path) -> None:
    """`microvm run` -> bin/microvm-run (bash) -> the hypervisor: FOO, LD_PRELOAD and BASH_ENV
    stay behind, and so do the tool's own settings (MICROVM_STATE_DIR); the runner's settings
    (MICROVM_ACCEL) and PATH arrive."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    dump = tmp_path / "hypervisor-env.json"
    fake = bindir / "qemu-system-x86_64"
    fake.write_text(f"#!{sys.executable}\nimport json, os\n" +
                    f"open({str(dump)!r}, 'w').write(json.dumps(dict(os.environ)))\n")
    fake.chmod(0o755)
    marker = tmp_path / "sourced"
    evil = tmp_path / "evil.sh"
    evil.write_text(f"touch {marker}\n")
    root = tmp_path / "state"
    cli("create", "vm", "--runner", str(make_runner(tmp_path, "vm")), state_dir=root,
        check=True)
    cli("run", "vm", state_dir=root, check=True, env={
        "PATH": f"{bindir}:{os.environ['PATH']}", "MICROVM_ACCEL": "tcg", "FOO": "bar",
        "LD_PRELOAD": "", "BASH_ENV": str(evil), "BASH_FUNC_ip%%": "() { :; }"})
    env = json.loads(dump.read_text())
    assert env["MICROVM_ACCEL"] == "tcg"
    assert env["PATH"].split(":")[-len(os.environ["PATH"].split(":")):] == \
        os.environ["PATH"].split(":")
    for name in ("FOO", "LD_PRELOAD", "BASH_ENV", "BASH_FUNC_ip%%", "MICROVM_STATE_DIR",
                 "MICROVM_SERVICE_MANAGER"):
        assert name not in env, name
    assert not marker.exists()


def test_the_allow_list_is_documented() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "host.md").read_text()
    doc = process.__doc__ or ""
    for name in [*process.ALLOWED_ENV, *(f"{p}*" for p in process.ALLOWED_ENV_PREFIXES)]:
        spelled = name.lower() if name.endswith("_PROXY") else name
        assert f"`{spelled}`" in docs or (name.startswith("XDG_") and "`XDG_*`" in docs), name
        assert spelled in doc, name
