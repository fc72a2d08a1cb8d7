"""The `microvm` host CLI: microvm.nix's short flags, exit codes, the exact argv of ssh and
console (vsock cannot work here), colour rules, doctor's findings on this machine, reconcile
through a fake systemctl, --debug logging."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from microvm.cli import _short_flags
from microvm.errors import UsageError
from microvm.host.service import all_units
from support.host_cli import calls, cli, fake_systemctl, make_runner, write_exe

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.parametrize(("argv", "expected"), [
    (["-c", "vm"], ["create", "vm"]),
    (["-c", "vm", "-f", "git+file:///src"], ["create", "vm", "--flake", "git+file:///src"]),
    (["-f", "git+file:///src", "-c", "vm"], ["create", "vm", "--flake", "git+file:///src"]),
    (["-c", "vm", "-R"], ["create", "vm"]),  # -R only matters to -u
    (["-u", "a", "b"], ["update", "a", "b"]),
    (["-Ru", "a", "b"], ["update", "a", "b", "--restart"]),
    (["-u", "-f", "x", "a"], ["update", "a"]),  # an update rebuilds from the recorded flake
    (["-r", "vm"], ["run", "vm"]),
    (["-s", "vm"], ["ssh", "vm", "--"]),
    (["-s", "vm", "uptime", "-a"], ["ssh", "vm", "--", "uptime", "-a"]),
    # getopts (and getopt) eat the first "--": a second one marks ssh options, as in
    # microvm.nix's `[ "$1" = "--" ]` after `shift $((OPTIND-1))`
    (["-s", "vm", "--", "-i", "key"], ["ssh", "vm", "--", "-i", "key"]),
    (["-s", "vm", "--", "--", "-i", "key"], ["ssh", "--ssh-arg=-i", "--ssh-arg=key", "vm"]),
    (["-l"], ["list"]),
    (["-c", "a", "-r", "b"], ["run", "b"]),  # the last action wins, as with getopts
    (["-h"], ["--help"]),
    (["list"], ["list"]),
    (["--debug", "list"], ["--debug", "list"]),
])
def test_short_flags(argv: list[str], expected: list[str]) -> None:
    assert _short_flags(argv) == expected


@pytest.mark.parametrize(("argv", "message"), [
    (["-x"], "option -x not recognized"),
    (["-c"], "option -c requires argument"),
    (["-f", "flake"], "give an action"),
])
def test_short_flag_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        _short_flags(argv)
    p = cli(*argv)
    assert p.returncode == 2
    assert message in p.stderr


def test_exit_codes(tmp_path: Path) -> None:
    root = tmp_path / "s"
    for args, code, message in (
            (["nosuchcommand"], 2, "No such command"),
            (["run", "vm"], 1, "no MicroVM 'vm'"),
            (["run", "../x"], 2, "invalid VM name"),
            (["balloon", "vm", "-1"], 2, "No such option '-1'"),
            (["balloon", "vm", "--", "-1"], 2, "-1 is not in the range"),
            (["update"], 2, "Missing argument"),
            (["create", "vm", "--runner", str(tmp_path)], 1, "no MicroVM runner"),
            (["create", "vm", "--runner", str(tmp_path / "x")], 2, "does not exist")):
        p = cli(*args, state_dir=root)
        assert (p.returncode, message in p.stderr) == (code, True), (args, p.stderr)


def test_balloon_passes_the_scripts_exit_code(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, "vm")
    root = tmp_path / "s"
    cli("create", "vm", "--runner", str(runner), state_dir=root, check=True)
    p = cli("balloon", "vm", "10", state_dir=root)
    assert p.returncode == 1
    assert "vm is not running" in p.stderr
    with_lock = subprocess.Popen(
        [sys.executable, "-c", ("import sys, time; from pathlib import Path; " +
                                "from microvm.host.state import VMDir; " +
                                "l = VMDir(Path(sys.argv[1]), 'vm').hold_run_lock(); " +
                                "l.__enter__(); print('held', flush=True); time.sleep(60)"),
         str(root)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert with_lock.stdout is not None
        assert with_lock.stdout.readline() == "held\n"
        p = cli("balloon", "vm", "10", state_dir=root)
        assert p.returncode == 1  # from bin/microvm-balloon
        assert "no balloon device (set microvm.balloon = true)" in p.stderr
    finally:
        with_lock.kill()
        with_lock.wait()
        assert with_lock.stdout is not None
        with_lock.stdout.close()


@pytest.fixture
def systemd_env(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    bin_dir, log, active = tmp_path / "bin", tmp_path / "systemctl.log", tmp_path / "active"
    fake_systemctl(bin_dir, log, active)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "MICROVM_SERVICE_MANAGER": "systemd"}
    return env, log, active


def record_argv(bin_dir: Path, name: str, out: Path) -> None:
    write_exe(bin_dir / name, f"""
        #!{sys.executable}
        import json, os, sys
        with open({str(out)!r}, "w") as f:
            json.dump({{"argv": sys.argv[1:], "cwd": os.getcwd()}}, f)
        """)


def test_ssh_argv(tmp_path: Path, systemd_env: tuple[dict[str, str], Path, Path]) -> None:
    env, _, active = systemd_env
    runner = make_runner(tmp_path, "vm", vsock={"cid": 5})
    root = tmp_path / "s"
    cli("create", "vm", "--runner", str(runner), state_dir=root, env=env, check=True)
    record_argv(tmp_path / "bin", "ssh", tmp_path / "ssh.json")
    p = cli("ssh", "vm", state_dir=root, env=env)
    assert p.returncode == 1
    assert "vm is not running" in p.stderr
    active.write_text("microvm@vm.service")
    common = ["-o", "ProxyCommand=socat - VSOCK-CONNECT:5:22", "-o",
              "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
              "-o", "LogLevel=ERROR"]
    cli("ssh", "vm", "uptime", "-a", state_dir=root, env=env, check=True)
    got = json.loads((tmp_path / "ssh.json").read_text())["argv"]
    assert got == [*common, "-l", "root", "vsock/5", "uptime", "-a"]
    cli("ssh", "-l", "admin", "-o", "ConnectTimeout=3", "vm", state_dir=root, env=env,
        check=True)
    got = json.loads((tmp_path / "ssh.json").read_text())["argv"]
    assert got == [*common, "-o", "ConnectTimeout=3", "-l", "admin", "vsock/5"]
    cli("-s", "vm", "--", "--", "-i", "key", state_dir=root, env=env, check=True)
    got = json.loads((tmp_path / "ssh.json").read_text())["argv"]
    assert got == [*common, "-i", "key", "-l", "root", "vsock/5"]


@pytest.mark.parametrize("hv", ["qemu", "cloud-hypervisor", "firecracker", "crosvm"])
def test_ssh_goes_where_the_runner_says(tmp_path: Path, hv: str) -> None:
    """The proxy is the hypervisor's vsock multiplexer socket where the runner names one
    (share/microvm/hybrid-vsock), else the kernel's vsock to the CID."""
    from microvm.host.commands import ssh_argv
    from microvm.host.state import Runner, VMDir

    runner = Runner(make_runner(tmp_path, "vm", hypervisor=hv, vsock={"cid": 5}))
    vm = VMDir(tmp_path / "100% s", "vm")
    proxy = ssh_argv(vm, runner, "root", [], [])[2]
    if runner.hybrid_vsock is None:
        assert proxy == "ProxyCommand=socat - VSOCK-CONNECT:5:22"
    else:
        assert hv in ("cloud-hypervisor", "firecracker")
        assert proxy.startswith("ProxyCommand=sh -c ")
    assert (runner.hybrid_vsock is not None) == (hv in ("cloud-hypervisor", "firecracker"))


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")
def test_the_hybrid_vsock_proxy_reaches_the_socket_of_any_directory(tmp_path: Path) -> None:
    """The ProxyCommand, run as ssh runs it (%% is %, then the user's shell), connects to the
    runner's socket in a state directory whose name has a space, quotes, $ and %, and says
    CONNECT 22 (cloud-hypervisor's and firecracker's hybrid vsock handshake)."""
    import threading

    from microvm.host.commands import ssh_argv
    from microvm.host.state import Runner, VMDir

    runner = Runner(make_runner(tmp_path, "vm", hypervisor="firecracker", vsock={"cid": 5}))
    assert runner.hybrid_vsock is not None
    vm = VMDir(tmp_path / "100% it's \"$x\"", "vm")
    vm.path.mkdir(parents=True)
    got: list[bytes] = []
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(vm.path / runner.hybrid_vsock))
        server.listen(1)
        server.settimeout(10)

        def accept() -> None:
            conn, _ = server.accept()
            with conn:
                got.append(conn.recv(64))

        t = threading.Thread(target=accept, daemon=True)
        t.start()
        proxy = ssh_argv(vm, runner, "root", [], [])[2].removeprefix("ProxyCommand=")
        r = subprocess.run(["sh", "-c", proxy.replace("%%", "%")], input=b"", timeout=10,
                           capture_output=True)
        t.join(10)
    assert r.returncode == 0, r.stderr
    assert got == [b"CONNECT 22\n"]


def test_ssh_needs_vsock(tmp_path: Path, systemd_env: tuple[dict[str, str], Path, Path]) -> None:
    env, _, active = systemd_env
    root = tmp_path / "s"
    cli("create", "vm", "--runner", str(make_runner(tmp_path, "vm")), state_dir=root, env=env,
        check=True)
    active.write_text("microvm@vm.service")
    p = cli("ssh", "vm", state_dir=root, env=env)
    assert p.returncode == 1
    assert "has no vsock: set microvm.vsock.cid" in p.stderr


def test_console_argv(tmp_path: Path, systemd_env: tuple[dict[str, str], Path, Path]) -> None:
    env, _, active = systemd_env
    root = tmp_path / "s"
    cli("create", "vm", "--runner", str(make_runner(tmp_path, "vm")), state_dir=root, env=env,
        check=True)
    active.write_text("microvm@vm.service")
    p = cli("console", "vm", state_dir=root, env=env)
    assert p.returncode == 1
    assert "no console socket" in p.stderr
    record_argv(tmp_path / "bin", "socat", tmp_path / "socat.json")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(root / "vm" / "console.sock"))
        cli("console", "vm", state_dir=root, env=env, check=True)
    got = json.loads((tmp_path / "socat.json").read_text())
    # run in root's directory with console.sock linked in (state.pinned_sockets)
    assert got["argv"] == ["-", "UNIX-CONNECT:console.sock"]
    assert re.fullmatch(re.escape(str(root / ".control" / "vm")) + r"/\.connect\.new\.\d+",
                        got["cwd"]), got
    assert not list((root / ".control" / "vm").glob(".connect*"))  # removed after


def list_on_a_tty(root: Path, extra_env: dict[str, str]) -> str:
    main, sub = pty.openpty()
    env = {**os.environ, "MICROVM_STATE_DIR": str(root), "MICROVM_SERVICE_MANAGER": "none",
           **extra_env}
    env.pop("NO_COLOR", None) if "NO_COLOR" not in extra_env else None
    p = subprocess.run([sys.executable, "-m", "microvm.cli", "list"], stdout=sub, env=env,
                       timeout=60)
    os.close(sub)
    out = b""
    try:
        while chunk := os.read(main, 4096):
            out += chunk
    except OSError:
        pass
    os.close(main)
    assert p.returncode == 0
    return out.decode()


def test_list_colour_only_on_a_tty_without_no_color(tmp_path: Path) -> None:
    root = tmp_path / "s"
    cli("create", "vm", "--runner", str(make_runner(tmp_path, "vm")), state_dir=root,
        check=True)
    piped = cli("list", state_dir=root, check=True).stdout
    assert not ANSI.search(piped)
    assert re.search(r"^vm\s+stopped\s+qemu\s+not booted$", piped, re.M)
    assert ANSI.search(list_on_a_tty(root, {}))
    assert not ANSI.search(list_on_a_tty(root, {"NO_COLOR": "1"}))


def test_reconcile_through_systemd(tmp_path: Path,
                                   systemd_env: tuple[dict[str, str], Path, Path]) -> None:
    env, log, active = systemd_env
    a, b = make_runner(tmp_path, "vm", name="a"), make_runner(tmp_path, "vm", name="b")
    root = tmp_path / "s"
    for name, restart in (("keep", "false"), ("auto", "true"), ("gone", "true")):
        cli("create", name, "--runner", str(b), state_dir=root, env=env, check=True)
        (root / ".control" / name / "booted").symlink_to(a)  # running the old runner
        (root / ".control" / name / "declared.json").write_text(
            f'{{"restartIfChanged": {restart}}}')
    cli("create", "mine", "--runner", str(b), state_dir=root, env=env, check=True)
    active.write_text("\n".join(f"microvm@{n}.service" for n in ("keep", "auto", "gone",
                                                                  "mine")))
    p = cli("reconcile", "--declared", "keep", "--declared", "auto", state_dir=root, env=env,
            check=True)
    mutating = [c for c in calls(log) if c[0] not in ("is-active", "reset-failed")]
    assert mutating == [["restart", "microvm@auto.service"], ["stop", *all_units("gone")]]
    # a restart first forgets an earlier failure (and the start limit a failing VM hit)
    assert ["reset-failed", *all_units("auto")] in calls(log)
    assert "keep: runner changed; restartIfChanged is off" in p.stderr
    assert "gone: no longer declared" in p.stderr
    assert (root / ".control" / "gone" / "current").is_symlink()
    assert not (root / ".control" / "gone" / "declared.json").exists()
    assert "mine" not in p.stderr  # imperative VMs are left alone


def test_debug_logs_programs(tmp_path: Path,
                             systemd_env: tuple[dict[str, str], Path, Path]) -> None:
    env, _, _ = systemd_env
    root = tmp_path / "s"
    cli("create", "vm", "--runner", str(make_runner(tmp_path, "vm")), state_dir=root, env=env,
        check=True)
    p = cli("--debug", "list", state_dir=root, env=env, check=True)
    assert "+ systemctl is-active --quiet microvm@vm.service" in p.stderr


def test_doctor_on_this_machine(tmp_path: Path) -> None:
    """The findings match facts checked independently here."""
    p = cli("doctor", state_dir=tmp_path / "s")
    out = p.stdout
    lines = {line.split(":", 1)[0].split(None, 1)[1]: line for line in out.splitlines()
             if not line.startswith(" ")}
    if not os.path.exists("/dev/vhost-vsock"):
        assert lines["/dev/vhost-vsock"].startswith("warn")
        assert "missing: no vsock" in lines["/dev/vhost-vsock"]
    if not os.path.exists("/dev/vhost-net"):
        assert "missing" in lines["/dev/vhost-net"]
    cpu = Path("/proc/cpuinfo").read_text()
    if os.path.exists("/dev/kvm") and not re.search(r"\b(vmx|svm)\b", cpu) \
            and shutil.which("qemu-system-x86_64"):
        # kvm_intel/kvm_amd need vmx/svm: whatever /dev/kvm is here, an ordinary kernel
        # cannot run on it, and the runners emulate
        assert "present but unusable" in lines["/dev/kvm"]
    for hv, binary in (("firecracker", "firecracker"), ("crosvm", "crosvm")):
        if shutil.which(binary) is None:
            assert f"missing on PATH: {binary}" in lines[f"hypervisor {hv}"]
    # the REST control scripts (cloud-hypervisor, firecracker, vfkit) call curl
    assert lines["curl"].startswith("ok" if shutil.which("curl") else "warn")
    assert "fix:" in out
    assert p.returncode == 0  # nothing here is a failure, only warnings


def test_doctor_fails_for_a_vm_whose_hypervisor_is_missing(tmp_path: Path) -> None:
    root = tmp_path / "s"
    runner = make_runner(tmp_path, "vm")
    cli("create", "vm", "--runner", str(runner), state_dir=root, check=True)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    for tool in ("socat",):  # keep doctor's own required tool
        if shutil.which(tool):
            (empty / tool).symlink_to(shutil.which(tool) or "")
    p = cli("doctor", state_dir=root, env={"PATH": str(empty)})
    assert p.returncode == 1
    assert "missing on PATH: qemu-system-x86_64" in p.stdout
    assert re.search(r"^fail\s+vm vm: qemu: missing qemu-system-x86_64", p.stdout, re.M)


def test_every_command_shows_examples_that_use_its_real_options() -> None:
    """Each subcommand's --help ends with examples (cli.EXAMPLES); every option an example
    uses exists on that command, so the examples cannot drift from the CLI."""
    from microvm import cli as microvm_cli

    assert set(microvm_cli.EXAMPLES) == set(microvm_cli.main.commands)
    for name, command in microvm_cli.main.commands.items():
        help_text = subprocess.run([sys.executable, "-m", "microvm.cli", name, "--help"],
                                   capture_output=True, text=True, check=True).stdout
        assert "Examples:" in help_text, name
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        for example in microvm_cli.EXAMPLES[name]:
            words = example.split()
            if words[0] != "microvm":
                continue
            assert words[1] == name, example
            for w in words[2:]:
                if w == "--":
                    break
                if w.startswith("-"):
                    assert w in known, (example, w)


def test_shell_completion_offers_subcommands() -> None:
    env = {**os.environ, "COMP_WORDS": "microvm valid", "COMP_CWORD": "1",
           "_MICROVM_COMPLETE": "bash_complete"}
    p = subprocess.run([sys.executable, "-c",
                        "from microvm.cli import main; main(prog_name='microvm')"],
                       env=env, capture_output=True, text=True)
    assert p.stdout.split() == ["plain,validate", "plain,validate-host"], p.stderr


@pytest.mark.parametrize("size", ["18446744073709551716", "16777217", str(1 << 64)])
def test_balloon_size_is_bounded_before_it_reaches_a_shell(tmp_path: Path, size: str) -> None:
    """2**64 + 100 would wrap to 100 MiB in the balloon script's shell arithmetic: refused (exit
    2) before anything runs, with the range allowed (microvm.mem's maximum)."""
    runner = make_runner(tmp_path, "vm")
    root = tmp_path / "s"
    cli("create", "vm", "--runner", str(runner), state_dir=root, check=True)
    p = cli("balloon", "vm", size, state_dir=root)
    assert p.returncode == 2, p.stderr
    assert f"{size} is not in the range 0<=x<=16777216" in p.stderr, p.stderr


def test_balloon_maximum_is_the_schemas_memory_maximum() -> None:
    from microvm.cli import BALLOON_MAX_MIB
    from microvm.options import schema

    assert schema()["properties"]["microvm"]["properties"]["mem"]["maximum"] == BALLOON_MAX_MIB
