"""systemd units from `microvm units`: layout, determinism, `systemd-analyze verify` of every
unit (in a --root tree with stand-in runners), exposure scores (checked against the table in
docs/host.md), and the helpers the units run (shellcheck, and each run on a scratch directory).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from microvm import managed, units
from microvm.host import defaults
from microvm.units import DeclaredVM, UnitOptions
from support import REPO, machine
from support.host_cli import cli, make_runner
from support.unit_root import INSTANCE, analyze, verify_root

DOC = REPO / "docs" / "host.md"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed")


def tree(tmp_path: Path, opts: UnitOptions, name: str = "out") -> Path:
    out = tmp_path / name
    units.write(out, opts)
    return out


def instances(declared: bool = True) -> list[str]:
    names = [f"{u.removesuffix('@.service')}@{INSTANCE}.service" for u in units.TEMPLATE_UNITS]
    return [*names, *([f"install-microvm-{INSTANCE}.service"] if declared else []),
            "microvms.target", units.NETWORKS_UNIT]


OPTION_SETS = {
    "default": UnitOptions(declared=(DeclaredVM(INSTANCE, "/nix/store/abc-microvm-web"),)),
    "custom": UnitOptions(state_dir="/srv/vms", user="vmuser", group="vmgroup",
                          readiness=units.Readiness.VSOCK, console=units.Console.JOURNAL,
                          virtiofsd_notify=True, start_timeout=30, shutdown_timeout=5,
                          declared=(DeclaredVM(INSTANCE, "/nix/store/x-r", False, False,
                                               "git+file:///etc/nixos?ref=main"),)),
}


@needs_analyze
@pytest.mark.parametrize("variant", sorted(OPTION_SETS))
def test_systemd_analyze_verify(tmp_path: Path, variant: str) -> None:
    opts = OPTION_SETS[variant]
    out = tree(tmp_path, opts)
    root = verify_root(tmp_path, out, opts.state_dir)
    r = analyze(root, "verify", "--man=no", *instances())
    assert r.returncode == 0, r.stderr
    assert r.stdout + r.stderr == ""  # no warnings (unknown keys, bad values, missing paths)


@needs_analyze
def test_verify_notices_a_missing_runner(tmp_path: Path) -> None:
    """The stand-ins matter: without them verify fails (so the test above tests something)."""
    opts = OPTION_SETS["default"]
    out = tree(tmp_path, opts)
    root = verify_root(tmp_path, out, opts.state_dir)
    (root / "var/lib/microvms/.control/web/booted/bin/microvm-run").unlink()
    r = analyze(root, "verify", "--man=no", f"microvm@{INSTANCE}.service")
    assert r.returncode != 0
    assert "microvm-run is not executable" in r.stderr


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="no systemd-tmpfiles")
def test_tmpfiles_creates_the_state_directory(tmp_path: Path) -> None:
    out = tree(tmp_path, OPTION_SETS["default"])
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n" +
                                     "microvm:x:990:990::/var/empty:/bin/false\n")
    (root / "etc/group").write_text("root:x:0:\nkvm:x:990:\n")
    r = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create",
                        str(out / units.TMPFILES)], text=True, capture_output=True)
    assert r.returncode == 0, r.stderr
    # root owns the state directory and .control: the VM's user cannot replace what root
    # follows and runs (links, metadata); its data directories are made by install-runner
    for d in ("var/lib/microvms", "var/lib/microvms/.control"):
        st = (root / d).stat()
        assert (st.st_uid, st.st_gid, oct(st.st_mode & 0o7777)) == (0, 0, "0o755")


def exposure(root: Path, unit: str) -> float:
    r = analyze(root, "security", "--offline=true", unit)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    return float(m.group(1))


def documented_scores() -> dict[str, float]:
    """The table in docs/host.md: | `unit` | score | ... |"""
    rows = re.findall(r"^\| `([^`]+)` \| (\d+\.\d) \|", DOC.read_text("utf-8"), re.M)
    return {unit: float(score) for unit, score in rows}


@needs_analyze
def test_security_scores_match_docs(tmp_path: Path) -> None:
    opts = OPTION_SETS["default"]
    out = tree(tmp_path, opts)
    root = verify_root(tmp_path, out, opts.state_dir)
    got = {u.replace(f"@{INSTANCE}.", "@.").replace(f"-{INSTANCE}.", "-NAME."): exposure(root, u)
           for u in instances() if u.endswith(".service")}
    assert got == documented_scores(), f"update the table in {DOC}: {got}"
    # the VM itself stays well inside systemd's "OK" band although QEMU needs devices and JIT
    assert got["microvm@.service"] <= 2.0
    assert max(got.values()) < 4.0


def test_layout_links_and_determinism(tmp_path: Path) -> None:
    opts = OPTION_SETS["default"]
    a = units.build(opts, "/usr/libexec/microvm")
    b = units.build(opts, "/usr/libexec/microvm")
    assert a == b
    system = units.UNIT_DIR
    assert a[f"{system}/multi-user.target.wants/microvms.target"] == managed.Link(
        "../microvms.target")
    assert a[f"{system}/microvms.target.wants/microvm@web.service"] == managed.Link(
        "../microvm@.service")
    assert a[f"{system}/microvms.target.wants/install-microvm-web.service"] == managed.Link(
        "../install-microvm-web.service")
    service = a[f"{system}/microvm@.service"]
    assert isinstance(service, tuple)
    text = service[0]
    for line in ("WorkingDirectory=%S/microvms/%i",
                 "ExecStart=%S/microvms/.control/%i/booted/bin/microvm-run",
                 "ExecStop=-%S/microvms/.control/%i/booted/bin/microvm-shutdown",
                 "Environment=MICROVM_VIRTIOFSD=external", "Environment=MICROVM_CONSOLE=socket",
                 "Restart=always", "User=microvm", "Group=kvm", "LimitMEMLOCK=infinity",
                 "LimitNOFILE=1048576", "KillMode=mixed", "TimeoutStopSec=90",
                 "Requires=microvm-set-booted@%i.service", "Type=exec"):
        assert line in text.splitlines(), line
    helpers = {k: v for k, v in a.items() if k.startswith(units.LIBEXEC_DIR)}
    assert sorted(Path(k).name for k in helpers) == sorted(units.HELPERS)
    assert all(isinstance(v, tuple) and v[1] == 0o755 for v in helpers.values())


def test_state_dir_spelling(tmp_path: Path) -> None:
    assert units.state_specifier("/var/lib/microvms") == "%S/microvms"
    assert units.state_specifier("/srv/vms") == "/srv/vms"
    files = units.build(OPTION_SETS["custom"], "/opt/x")
    text = files[f"{units.UNIT_DIR}/microvm@.service"]
    assert isinstance(text, tuple)
    assert "WorkingDirectory=/srv/vms/%i" in text[0]
    assert "Type=notify" in text[0]
    assert "ExecStart=/opt/x/notify-relay /srv/vms/.control/%i/booted/bin/microvm-run" in text[0]
    assert "MICROVM_CONSOLE" not in text[0]
    assert "TimeoutStartSec=30" in text[0]
    dropin = files[f"{units.UNIT_DIR}/microvm@web.service.d/50-declared.conf"]
    assert isinstance(dropin, tuple)
    assert "X-RestartIfChanged=false" in dropin[0]
    assert f"{units.UNIT_DIR}/microvms.target.wants/microvm@web.service" not in files


needs_nix = pytest.mark.skipif(shutil.which("nix-instantiate") is None,
                               reason="nix-instantiate is not installed")


@needs_nix
def test_the_nix_host_defaults_are_the_generators() -> None:
    """The host module and buildUnits take their defaults from nix/lib/host-defaults.nix, the
    `microvm` command from microvm.host.defaults: both read defaults.json."""
    out = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json",
                          str(REPO / "nix" / "lib" / "host-defaults.nix")],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == {"stateDir": defaults.STATE_DIR, "user": defaults.USER,
                               "group": defaults.GROUP, "networksFile": defaults.NETWORKS_FILE,
                               "nftTable": defaults.NFT_TABLE}


def test_the_state_directory_is_declared_once() -> None:
    """No module of the package and no Nix file spells the default state directory but the
    two declarations (the units spell the one they are given)."""
    declarations: set[Path] = set()  # generator/microvm/host/defaults.json
    sources = [*(REPO / "generator" / "microvm").rglob("*.py"),
               *(REPO / "generator" / "microvm" / "templates").rglob("*.j2"),
               *(REPO / "nix").rglob("*.nix")]
    spelled = sorted(str(p.relative_to(REPO)) for p in sources
                     if p not in declarations and "_templates" not in p.parts
                     and re.search(r"[\"=-]/var/lib/microvms\b", p.read_text("utf-8")))
    assert spelled == []


def test_declared_dropin_lists_writable_paths_outside(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, "web", volumes=[
        {"image": "inside.img", "size": 8, "mountPoint": "/a"},
        {"image": "/srv/data/outside.img", "size": 8, "mountPoint": "/b"},
        {"image": "/srv/ro/ro.img", "size": 8, "mountPoint": "/c", "readOnly": True}],
        shares=[{"proto": "9p", "tag": "s", "source": "/srv/share", "mountPoint": "/s"}])
    files = units.build(UnitOptions(declared=(DeclaredVM("web", str(runner)),)), "/x")
    dropin = files[f"{units.UNIT_DIR}/microvm@web.service.d/50-declared.conf"]
    assert isinstance(dropin, tuple)
    paths = [x for x in dropin[0].splitlines() if x.startswith("ReadWritePaths=")]
    assert paths == ["ReadWritePaths=-/srv/data", "ReadWritePaths=-/srv/share"]


def test_a_declared_guest_with_vsock_is_ready_when_it_says_so(tmp_path: Path) -> None:
    """As microvm.nix's host makes a VM whose runner supports the notify socket Type=notify:
    the drop-in of a declared VM with microvm.vsock.cid waits for the guest's READY=1 (relayed),
    a VM without vsock keeps the host-wide readiness."""
    with_vsock = make_runner(tmp_path / "a", "web", vsock={"cid": 5})
    without = make_runner(tmp_path / "b", "db")
    files = units.build(UnitOptions(declared=(DeclaredVM("web", str(with_vsock)),
                                              DeclaredVM("db", str(without)))), "/x")
    web = files[f"{units.UNIT_DIR}/microvm@web.service.d/50-declared.conf"]
    db = files[f"{units.UNIT_DIR}/microvm@db.service.d/50-declared.conf"]
    assert isinstance(web, tuple) and isinstance(db, tuple)
    lines = web[0].splitlines()
    assert "Type=notify" in lines and "NotifyAccess=all" in lines
    # the template's ExecStart is reset before the relay's
    assert lines.index("ExecStart=") + 1 == lines.index(
        "ExecStart=/x/notify-relay %S/microvms/.control/%i/booted/bin/microvm-run")
    assert "Type=" not in db[0]


@needs_analyze
def test_systemd_analyze_verify_of_a_notify_dropin(tmp_path: Path) -> None:
    runner = make_runner(tmp_path / "r", INSTANCE, vsock={"cid": 5})
    opts = UnitOptions(declared=(DeclaredVM(INSTANCE, str(runner)),))
    out = tree(tmp_path, opts)
    root = verify_root(tmp_path, out, opts.state_dir)
    r = analyze(root, "verify", "--man=no", *instances())
    assert r.returncode == 0, r.stderr
    assert r.stdout + r.stderr == ""


@pytest.mark.parametrize(("args", "message"), [
    (["--state-dir", "/var/lib/my vms"], "--state-dir must be an absolute path"),
    (["--state-dir", "/var/lib/%i"], "--state-dir must be an absolute path"),
    (["--command", "microvm"], "--command must be an absolute path"),
    (["--command", "/opt/my venv/bin/microvm"], "--command must be an absolute path"),
    (["--user", "bad user"], "--user must be a user/group name"),
    (["--declare", "web"], "--declare wants NAME=RUNNER"),
    (["--declare", "../x=/nix/store/a"], "invalid VM name"),
    (["--declare", "a=/nix/store/a", "--declare", "a=/nix/store/b"], "declared twice"),
    (["--no-autostart", "b"], "not declared with --declare: b"),
])
def test_cli_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    p = cli("units", "--out", str(tmp_path / "o"), *args)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr
    assert not (tmp_path / "o").exists()


def test_cli_command_is_what_microvm_networks_runs(tmp_path: Path) -> None:
    out = tmp_path / "o"
    cli("units", "--out", str(out), "--command", "/opt/microvm/bin/microvm", check=True)
    unit = units.parse_unit((out / units.UNIT_DIR / units.NETWORKS_UNIT).read_text())
    for key in ("ExecStart", "ExecReload", "ExecStop"):
        [line] = unit["Service"][key]
        assert line.startswith("/opt/microvm/bin/microvm network "), line


def test_cli_declared_json_and_force(tmp_path: Path) -> None:
    spec = tmp_path / "declared.json"
    spec.write_text('{"a": {"runner": "/nix/store/a-r", "autostart": false},' +
                    ' "b": {"runner": "/nix/store/b-r", "restartIfChanged": false}}')
    out = tmp_path / "o"
    cli("units", "--out", str(out), "--declared-file", str(spec), check=True)
    wants = sorted(p.name for p in (out / units.UNIT_DIR / "microvms.target.wants").iterdir())
    assert wants == ["install-microvm-a.service", "install-microvm-b.service",
                     units.NETWORKS_UNIT, "microvm@b.service"]
    assert cli("units", "--out", str(out)).returncode == 2
    cli("units", "--out", str(out), "--force", check=True)
    assert [p.name for p in (out / units.UNIT_DIR / "microvms.target.wants").iterdir()] == [
        units.NETWORKS_UNIT]
    spec.write_text('{"a": {"runner": 3}}')
    p = cli("units", "--out", str(tmp_path / "p"), "--declared-file", str(spec))
    assert p.returncode == 2
    assert "--declared-file: a: needs \"runner\"" in p.stderr


def test_cli_declared_is_the_old_spelling_of_declared_file(tmp_path: Path) -> None:
    """`units --declared FILE` (before it was --declared-file) still works, unlisted: scripts
    use it; `reconcile --declared NAME` is another option."""
    spec = tmp_path / "declared.json"
    spec.write_text('{"a": {"runner": "/nix/store/a-r"}}')
    for flag in ("--declared", "--declared-file"):
        out = tmp_path / flag
        cli("units", "--out", str(out), flag, str(spec), check=True)
        assert (out / units.UNIT_DIR / "install-microvm-a.service").is_file()
    help_text = cli("units", "--help", check=True).stdout
    assert "--declared-file FILE" in help_text
    assert "--declared " not in help_text


def test_update_flake_installs_once_and_records_the_flake(tmp_path: Path) -> None:
    """microvm.vms.NAME.updateFlake (as in microvm.nix): install-microvm-NAME runs only while
    the VM has no runner yet and hands install-runner the flake `microvm update` uses later."""
    ref = "git+file:///etc/nixos?ref=main"
    files = units.build(UnitOptions(declared=(DeclaredVM("web", "/nix/store/a-r", True, True,
                                                         ref),
                                              DeclaredVM("db", "/nix/store/b-r"))), "/x")
    web = files[f"{units.UNIT_DIR}/install-microvm-web.service"][0]  # type: ignore[index]
    assert "ConditionPathExists=!%S/microvms/.control/web/current\n" in web
    assert f"ExecStart=/x/install-runner web /nix/store/a-r true {ref}\n" in web
    db = files[f"{units.UNIT_DIR}/install-microvm-db.service"][0]  # type: ignore[index]
    assert "ConditionPathExists" not in db
    assert "ExecStart=/x/install-runner db /nix/store/b-r true\n" in db
    out = tmp_path / "o"
    cli("units", "--out", str(out), "--declare", "web=/nix/store/a-r", "--update-flake",
        f"web={ref}", check=True)
    assert ref in (out / units.UNIT_DIR / "install-microvm-web.service").read_text()
    spec = tmp_path / "declared.json"
    spec.write_text('{"web": {"runner": "/nix/store/a-r", "updateFlake": "' + ref + '"}}')
    cli("units", "--out", str(tmp_path / "j"), "--declared-file", str(spec), check=True)
    assert ref in (tmp_path / "j" / units.UNIT_DIR / "install-microvm-web.service").read_text()
    for args, message in (
        (["--declare", "web=/r", "--update-flake", "web=a b"], "must be a flake reference"),
        (["--declare", "web=/r", "--update-flake", "web=$(x)"], "must be a flake reference"),
        (["--declare", "web=/r", "--update-flake", "db=path:/x"], "not declared"),
        (["--declare", "web=/r", "--update-flake", "web"], "--update-flake wants NAME=FLAKE"),
    ):
        p = cli("units", "--out", str(tmp_path / "bad"), *args)
        assert p.returncode == 2 and message in p.stderr, (args, p.stderr)


# -- the helpers -----------------------------------------------------------------------------

@pytest.fixture
def helpers(tmp_path: Path) -> Path:
    """Helpers generated for a scratch state directory and the current user."""
    import grp
    import pwd

    opts = UnitOptions(state_dir=str(tmp_path / "state"),
                       user=pwd.getpwuid(os.getuid()).pw_name,
                       group=grp.getgrgid(os.getgid()).gr_name)
    return tree(tmp_path, opts, "units") / units.LIBEXEC_DIR


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_helpers_pass_shellcheck(helpers: Path) -> None:
    r = subprocess.run(["shellcheck", "-s", "sh", *sorted(map(str, helpers.iterdir()))],
                       text=True, capture_output=True)
    assert r.returncode == 0, r.stdout


def test_set_booted(helpers: Path, tmp_path: Path) -> None:
    d = tmp_path / "vm"
    d.mkdir()
    (d / "current").symlink_to("/nix/store/new")
    (d / "booted").symlink_to("/nix/store/old")
    subprocess.run([helpers / "set-booted", "vm"], cwd=d, check=True)
    assert os.readlink(d / "booted") == "/nix/store/new"
    assert sorted(p.name for p in d.iterdir()) == ["booted", "current"]
    subprocess.run([helpers / "set-booted", "--clear", "vm"], cwd=d, check=True)
    assert sorted(p.name for p in d.iterdir()) == ["current"]
    (d / "current").unlink()
    r = subprocess.run([helpers / "set-booted", "vm"], cwd=d, text=True, capture_output=True)
    assert r.returncode == 1
    assert "is not a symlink to a runner" in r.stderr
    r = subprocess.run([helpers / "set-booted"], cwd=d, text=True, capture_output=True)
    assert r.returncode != 0 and "usage: set-booted" in r.stderr


def fake_systemctl(bin_dir: Path, n_restarts: int) -> dict[str, str]:
    """A `systemctl` that answers `show -P NRestarts` with n_restarts (what systemd counts)."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "systemctl"
    script.write_text(f"#!/bin/sh\necho {n_restarts}\n")
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.parametrize(("recorded", "now", "kept"), [
    (None, 0, False),  # a first start this boot (nothing recorded in /run)
    (0, 0, False),  # a requested start or restart: systemd reset the count at the last start
    (2, 2, False),  # requested again after automatic restarts
    (0, 1, True),  # the VM exited or crashed and systemd restarts it by itself
    (3, 4, True),
    (3, 0, False),  # reset-failed in between
])
def test_set_booted_keeps_the_runner_on_an_automatic_restart(
        helpers: Path, tmp_path: Path, recorded: int | None, now: int, kept: bool) -> None:
    """An automatic restart (systemd's restart count above what mark-started recorded at the
    VM's last start) boots the runner that ran, not a pending update, and keeps it on stop."""
    name = f"settest-{os.getpid()}-{now}-{recorded}"
    record = units.RUN_DIR + f"/{name}.restarts"
    d = tmp_path / "vm"
    d.mkdir()
    (d / "current").symlink_to("/nix/store/new")
    (d / "booted").symlink_to("/nix/store/old")
    env = fake_systemctl(tmp_path / "bin", now)
    try:
        if recorded is not None:
            Path(units.RUN_DIR).mkdir(exist_ok=True)
            Path(record).write_text(f"{recorded}\n")
        subprocess.run([helpers / "set-booted", "--clear", name], cwd=d, env=env, check=True)
        assert (d / "booted").is_symlink() == kept
        (d / "booted").unlink(missing_ok=True)
        (d / "booted").symlink_to("/nix/store/old")
        subprocess.run([helpers / "set-booted", name], cwd=d, env=env, check=True)
        assert os.readlink(d / "booted") == ("/nix/store/old" if kept else "/nix/store/new")
        # mark-started records what the start saw
        subprocess.run([helpers / "mark-started", name], env=env, check=True)
        assert Path(record).read_text() == f"{now}\n"
    finally:
        Path(record).unlink(missing_ok=True)


def test_mark_started_without_a_restart_count_still_lets_the_vm_start(
        helpers: Path, tmp_path: Path) -> None:
    """A systemctl that cannot answer: the VM starts all the same, with no record (so its next
    start boots `current`, as microvm.nix's always does)."""
    name = f"marktest-{os.getpid()}"
    record = Path(units.RUN_DIR, f"{name}.restarts")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "systemctl").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    try:
        Path(units.RUN_DIR).mkdir(exist_ok=True)
        record.write_text("3\n")
        r = subprocess.run([helpers / "mark-started", name], env=env, text=True,
                           capture_output=True)
        assert r.returncode == 0, r.stderr
        assert "cannot read the restart count" in r.stderr
        assert not record.exists()
    finally:
        record.unlink(missing_ok=True)


def test_install_runner(helpers: Path, tmp_path: Path) -> None:
    run = [str(helpers / "install-runner")]
    subprocess.run([*run, "web", "/nix/store/one", "false"], check=True)
    d = tmp_path / "state" / ".control" / "web"
    assert os.readlink(d / "current") == "/nix/store/one"
    for path in (tmp_path / "state", d.parent, d, d / "current", d / "declared.json"):
        assert path.lstat().st_uid == 0
    assert (tmp_path / "state" / "web").is_dir()  # the VM's data directory
    assert (d / "declared.json").read_text() == '{"declared": true, "restartIfChanged": false}\n'
    subprocess.run([*run, "web", "/nix/store/two", "true"], check=True)
    assert os.readlink(d / "current") == "/nix/store/two"
    assert sorted(p.name for p in d.iterdir()) == ["account.json", "current", "declared.json"]
    subprocess.run([*run, "web", "/nix/store/three", "true", "git+file:///etc/nixos?ref=a"],
                   check=True)
    assert json.loads((d / "declared.json").read_text()) == {
        "declared": True, "restartIfChanged": True, "updateFlake": "git+file:///etc/nixos?ref=a"}
    for bad in (["../x", "/r", "true"], ["web", "/r", "maybe"], ["web"],
                ["web", "/r", "true", 'a"b'], ["web", "/r", "true", "x", "y"]):
        assert subprocess.run([*run, *bad], capture_output=True).returncode == 2


def test_wait_virtiofsd(helpers: Path, tmp_path: Path) -> None:
    """Ready once every share has a socket made after the unit's start (--mark): a socket left
    by an earlier virtiofsd (killed on stop) does not count."""
    d = tmp_path / "vm"
    share = d / "booted/share/microvm/virtiofs/fs"
    share.mkdir(parents=True)
    (share / "socket").write_text("fs.sock\n")
    name = f"wvtest-{os.getpid()}"
    wait: list[str | Path] = [helpers / "wait-virtiofsd", "1", "booted", name]
    try:
        with socket.socket(socket.AF_UNIX) as old:
            old.bind(str(d / "fs.sock"))  # the stale socket of the last run
            time.sleep(0.05)
            mark: list[str | Path] = [helpers / "wait-virtiofsd", "--mark", name]
            subprocess.run(mark, check=True)
            r = subprocess.run(wait, cwd=d, text=True, capture_output=True)
            assert r.returncode == 1
            assert "no new virtiofsd socket after 1 s: fs.sock" in r.stderr
        (d / "fs.sock").unlink()
        time.sleep(0.05)
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(d / "fs.sock"))
            subprocess.run(wait, cwd=d, check=True)
    finally:
        Path(units.RUN_DIR, f"{name}.virtiofsd").unlink(missing_ok=True)


def test_pci_setup_on_a_fake_sysfs(helpers: Path, tmp_path: Path) -> None:
    sys_, dev = tmp_path / "sys", tmp_path / "dev"
    address = "0000:01:00.0"
    pci = sys_ / "bus/pci"
    device = pci / "devices" / address
    (pci / "drivers/e1000e").mkdir(parents=True)
    (pci / "drivers/vfio-pci").mkdir(parents=True)
    (pci / "drivers/e1000e/unbind").write_text("")
    (pci / "drivers_probe").write_text("")
    (sys_ / "kernel/iommu_groups/7").mkdir(parents=True)
    device.mkdir(parents=True)
    (device / "driver").symlink_to(pci / "drivers/e1000e")
    (device / "iommu_group").symlink_to(sys_ / "kernel/iommu_groups/7")
    (device / "driver_override").write_text("")
    (dev / "vfio").mkdir(parents=True)
    (dev / "vfio/7").write_text("")
    listing = tmp_path / "runner/share/microvm/pci-devices"
    listing.parent.mkdir(parents=True)
    listing.write_text(f"{address}\n")
    link = tmp_path / "booted"
    link.symlink_to(tmp_path / "runner")
    env = {**os.environ, "MICROVM_SYSFS": str(sys_), "MICROVM_DEVFS": str(dev)}
    r = subprocess.run([helpers / "pci-setup", link], env=env, text=True,
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    assert (pci / "drivers/e1000e/unbind").read_text() == f"{address}\n"
    assert (device / "driver_override").read_text() == "vfio-pci\n"
    assert (pci / "drivers_probe").read_text() == f"{address}\n"
    assert f"{address} -> vfio-pci" in r.stdout
    listing.write_text("0000:02:00.0\n")
    r = subprocess.run([helpers / "pci-setup", link], env=env, text=True,
                       capture_output=True)
    assert r.returncode == 1
    assert "no PCI device 0000:02:00.0" in r.stderr


def test_notify_relay_without_systemd_just_runs(helpers: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    r = subprocess.run([helpers / "notify-relay", sys.executable, "-c", "print('ran')"],
                       cwd=tmp_path, env=env, text=True, capture_output=True, check=True)
    assert r.stdout == "ran\n"


def test_notify_relay_listens_on_the_cid_port(helpers: Path, tmp_path: Path) -> None:
    """With NOTIFY_SOCKET and a vsock CID, socat listens on 8888+CID (AF_VSOCK sockets work
    here even without /dev/vhost-vsock; nothing can connect, see docs/host.md)."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed")
    d = tmp_path / "vm"
    (d / "booted/share/microvm").mkdir(parents=True)
    (d / "booted/share/microvm/vsock-cid").write_text("40\n")
    (d / "booted/bin").mkdir()
    (d / "booted/bin/python").symlink_to(sys.executable)
    try:
        probe = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        probe.close()
    except OSError:
        machine.cannot("vhost", "no AF_VSOCK sockets on this kernel")
    notify = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(notify))
        code = ("import os,socket,time\nfor _ in range(50):\n" +
                " t=socket.socket(socket.AF_VSOCK,socket.SOCK_STREAM)\n" +
                " try: t.bind((socket.VMADDR_CID_ANY, 8928))\n" +
                " except OSError: print('busy'); break\n" +
                " finally: t.close()\n" +
                " time.sleep(0.1)\n" +
                "print(open(f'/proc/self/task/{os.getpid()}/children').read())\n")
        with (tmp_path / "out").open("w") as out:
            subprocess.run([helpers / "notify-relay", d / "booted/bin/python", "-c", code],
                           cwd=d,
                           env={**os.environ, "NOTIFY_SOCKET": str(notify)}, stdout=out,
                           stderr=subprocess.STDOUT, timeout=30)
    text = (tmp_path / "out").read_text()
    busy, children = text.splitlines()[-2:]
    for pid in children.split():  # the relay (socat), a child of the command it ran
        os.kill(int(pid), signal.SIGTERM)
    assert busy == "busy", text


def test_notify_relay_takes_hybrid_vsock_connections(helpers: Path, tmp_path: Path) -> None:
    """cloud-hypervisor and firecracker hand a guest's vsock connection to host port P to the
    Unix socket notify.vsock_P (their hybrid vsock): the relay listens there and passes what
    the guest says to systemd's NOTIFY_SOCKET."""
    d = tmp_path / "vm"
    (d / "booted/share/microvm").mkdir(parents=True)
    (d / "booted/share/microvm/vsock-cid").write_text("40\n")
    (d / "booted/share/microvm/hybrid-vsock").write_text("notify.vsock\n")
    (d / "booted/bin").mkdir()
    (d / "booted/bin/python").symlink_to(sys.executable)
    notify = tmp_path / "notify"
    # the "hypervisor": connects to notify.vsock_8928 as cloud-hypervisor would for the guest
    code = ("import socket,time\nfor _ in range(100):\n" +
            " s=socket.socket(socket.AF_UNIX)\n" +
            " try: s.connect('notify.vsock_8928'); break\n" +
            " except OSError: time.sleep(0.05)\n" +
            "s.sendall(b'READY=1'); s.close(); time.sleep(0.5)\n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(notify))
        s.settimeout(10)
        p = subprocess.Popen([helpers / "notify-relay", d / "booted/bin/python", "-c", code],
                             cwd=d, env={**os.environ, "NOTIFY_SOCKET": str(notify)},
                             start_new_session=True)
        try:
            assert s.recv(100) == b"READY=1"
            assert p.wait(timeout=20) == 0
        finally:
            os.killpg(p.pid, signal.SIGTERM)


def _sparse(path: Path) -> Path:
    with path.open("wb") as f:
        f.truncate(1 << 40)  # 1 TiB of holes: reading it whole would exhaust memory
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)  # no writer: reading it would block forever
    return path


def assert_refused(src: Path, out: Path, fragment: str) -> None:
    """`units --declared-file SRC` fails with exit 2 and one `error:` line naming SRC, writes
    nothing."""
    p = cli("units", "--out", str(out), "--declared-file", str(src), timeout=30)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("error: ") and len(p.stderr.splitlines()) == 1, p.stderr
    assert str(src) in p.stderr and fragment in p.stderr, p.stderr
    assert not out.exists()


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda d: Path("/dev/zero"), "/dev/zero is not a regular file"),
    (lambda d: Path("/dev/urandom"), "/dev/urandom is not a regular file"),
    (lambda d: _sparse(d / "sparse.json"), "sparse.json is larger than 16 MiB"),
    (lambda d: _fifo(d / "fifo.json"), "fifo.json is not a regular file"),
    (lambda d: d, ": is a directory"),
    (lambda d: d / "missing.json", "missing.json: No such file or directory"),
], ids=["dev-zero", "dev-urandom", "sparse", "fifo", "directory", "missing"])
def test_cli_declared_file_is_read_like_a_vm_document(tmp_path: Path,
                                                      make: Any, fragment: str) -> None:
    """`units --declared-file FILE` goes through the VM documents' bounded reader: no hang, no
    traceback, exit 2 with one `error:` line naming the file, nothing written."""
    src = make(tmp_path)
    out = tmp_path / "o"
    assert_refused(src, out, fragment)


@pytest.mark.parametrize(("content", "fragment"), [
    (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    (b'{"a": {"runner": "/nix/store/\xff-r"}}', "is not UTF-8 text"),
    (b'{"a": {"runner": "/nix/store/a-r"}, "a": {"runner": "/nix/store/b-r"}}',
     "key given more than once in one object: 'a'"),
    (b'{"a": {"runner": "/nix/store/a-r", "autostart": false, "autostart": true}}',
     "key given more than once in one object: 'autostart'"),
    (b'{"a": ', "invalid JSON at line 1 column 7"),
    (b'{"a": {"runner": "/nix/store/a-r", "x": ' + b"9" * 5000 + b"}}", "more than 4300 digits"),
], ids=["deep", "not-utf8", "duplicate-vm", "duplicate-setting", "truncated", "long-number"])
def test_cli_declared_hostile_json(tmp_path: Path, content: bytes, fragment: str) -> None:
    src = tmp_path / "declared.json"
    src.write_bytes(content)
    out = tmp_path / "o"
    assert_refused(src, out, fragment)


def test_for_nixos_the_tree_holds_only_what_is_per_declared_vm(tmp_path: Path) -> None:
    """`microvm units --for-nixos` (the NixOS host module): the units every VM uses and the
    enablement links are NixOS definitions (nix/lib/units.json), restartIfChanged is the unit's
    NixOS option; the install units, drop-ins, tmpfiles and helpers are the package's."""
    out = tmp_path / "o"
    cli("units", "--out", str(out), "--for-nixos", "--declare", "web=/nix/store/x-r",
        "--no-restart-if-changed", "web", check=True)
    system = out / units.UNIT_DIR
    assert sorted(p.name for p in system.iterdir()) == [
        "install-microvm-web.service", "microvm@web.service.d"]
    dropin = (system / "microvm@web.service.d/50-declared.conf").read_text()
    assert "Requires=install-microvm-web.service\n" in dropin
    assert "X-RestartIfChanged" not in dropin
    assert sorted(p.name for p in (out / units.LIBEXEC_DIR).iterdir()) == sorted(units.HELPERS)
    assert (out / units.TMPFILES).exists()
    # without the flag the same tree has them (the unchanged non-NixOS output)
    full = tree(tmp_path, UnitOptions(declared=(DeclaredVM("web", "/nix/store/x-r", False),)))
    assert "X-RestartIfChanged=false\n" in (
        full / units.UNIT_DIR / "microvm@web.service.d/50-declared.conf").read_text()
    assert set(units.NIXOS_UNITS) <= {p.name for p in (full / units.UNIT_DIR).iterdir()}


def test_nix_unit_data_is_the_templates_with_placeholders() -> None:
    """nix/lib/units.json: each unit every VM uses, parsed, for each readiness; what the host
    module sets appears only as a placeholder (no default state directory, user or group)."""
    data = units.nixos_data()
    assert set(data) == {str(r) for r in units.Readiness}
    text = json.dumps(data)
    for value in (defaults.STATE_DIR, json.dumps(defaults.USER), json.dumps(defaults.GROUP),
                  "/libexec"):
        assert value not in text, value
    vm = data["vsock"]["microvm@.service"]["Service"]
    assert vm["Type"] == ["notify"] and vm["User"] == ["@user@"]
    assert vm["TimeoutStartSec"] == ["@startupTimeout@"]
    assert data["started"]["microvm@.service"]["Service"]["Type"] == ["exec"]
    assert (REPO / "nix/lib/units.json").read_text() == units.nixos_json()


@pytest.mark.parametrize("text", ["Key=value\n", "[Unit]\nno equals sign\n",
                                  "[Unit]\nA=b \\\n"])
def test_parse_unit_refuses_what_is_not_a_unit_file(text: str) -> None:
    with pytest.raises(ValueError, match="not a unit file line"):
        units.parse_unit(text)


@pytest.mark.parametrize(("state", "enabled"), [("enabled", True), ("static", False),
                                                 ("disabled", False)])
def test_a_vm_is_started_at_boot_only_when_its_unit_is_enabled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: str, enabled: bool) -> None:
    """On NixOS microvm@ has no [Install] (NixOS writes none without wantedBy), so an instance
    of it is `static`, for which `systemctl is-enabled` exits 0 too: not started at boot."""
    from microvm.host.service import Service
    from microvm.host.state import VMDir
    from support.host_cli import write_exe

    write_exe(tmp_path / "bin/systemctl", f"#!/bin/sh\necho {state}\n"
              + f"exit {0 if state != 'disabled' else 1}\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    assert Service(use_systemd=True).enabled(VMDir(tmp_path, "web")) is enabled


# -- machined (microvm.registerWithMachined) ---------------------------------------------------

MACHINE1_MAN = Path("/usr/share/man/man5/org.freedesktop.machine1.5.gz")
UUID = "a67472e5-570e-5c8a-b18c-ae3c77701050"


def machine1_in_args(method: str) -> list[str]:
    """The D-Bus types of a Manager method's in-arguments, read from systemd's own manual
    (org.freedesktop.machine1(5), installed with this machine's systemd)."""
    import gzip

    text = gzip.decompress(MACHINE1_MAN.read_bytes()).decode()
    text = re.sub(r"\\f[BIRP]|\\-|\\&", lambda m: "-" if m.group() == "\\-" else "", text)
    m = re.search(rf"\b{method}\(([^)]*)\)", text)
    assert m, method
    return re.findall(r"\bin +(\S+) ", m.group(1))


def machined_runner(tmp_path: Path, uuid: str | None, taps: list[str]) -> Path:
    runner = tmp_path / "runner"
    meta = runner / "share" / "microvm"
    meta.mkdir(parents=True)
    if uuid is not None:
        (meta / "machined").write_text(uuid + "\n")
    (meta / "tap-interfaces").write_text("".join(t + "\n" for t in taps))
    link = tmp_path / "booted"
    link.symlink_to(runner)
    return link


@pytest.mark.skipif(not (shutil.which("dbus-run-session") and shutil.which("dbus-monitor")
                         and shutil.which("busctl") and MACHINE1_MAN.is_file()),
                    reason="needs dbus-daemon, dbus-monitor, busctl and systemd's manual")
@pytest.mark.parametrize("taps", [[], ["vm-a", "vm-b", "vm-gone"]])
def test_machined_registers_with_the_documented_call(helpers: Path, tmp_path: Path,
                                                     taps: list[str]) -> None:
    """The helper's call, made by the real busctl on a private bus and read back by
    dbus-monitor, is the method of org.freedesktop.machine1(5) with the argument types the
    manual gives: the VM's name, its UUID as 16 bytes, service microvm.nix, class vm, the
    leader PID, root directory /, and the ifindex of each tap interface that exists."""
    link = machined_runner(tmp_path, UUID, taps)
    sysfs = tmp_path / "sys"
    for tap, index in (("vm-a", 7), ("vm-b", 12)):
        (sysfs / "class/net" / tap).mkdir(parents=True)
        (sysfs / "class/net" / tap / "ifindex").write_text(f"{index}\n")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "busctl").write_text(f'#!/bin/sh\nexec {shutil.which("busctl")} --user "$@"\n')
    (fake / "busctl").chmod(0o755)
    log = tmp_path / "monitor.txt"
    script = (f"dbus-monitor --session --monitor > {log} 2>&1 & m=$!; sleep 0.5; " +
              f"{helpers}/machined register vm {link} 4242; echo rc=$?; sleep 0.5; kill $m")
    r = subprocess.run(["dbus-run-session", "--", "sh", "-c", script], text=True,
                       capture_output=True, timeout=60,
                       env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}",
                            "MICROVM_SYSFS": str(sysfs)})
    # no machined on the private bus: the call is made, and only the destination is missing
    assert "rc=1" in r.stdout and "was not provided by any .service files" in r.stderr, r
    calls = log.read_text().split("method call ")
    [call] = [c for c in calls if "interface=org.freedesktop.machine1.Manager" in c]
    method = re.search(r"member=(\w+)", call)
    assert method
    expected = {
        "RegisterMachine": ["s", "ay", "s", "s", "u", "s"],
        "RegisterMachineWithNetwork": ["s", "ay", "s", "s", "u", "s", "ai"],
    }
    assert method.group(1) == ("RegisterMachineWithNetwork" if taps else "RegisterMachine")
    assert machine1_in_args(method.group(1)) == expected[method.group(1)]
    body = call.split("\n", 1)[1].split("\nerror ", 1)[0]
    assert re.findall(r'(?m)^   (string "[^"]*"|uint32 \d+)', body) == [
        'string "vm"', 'string "microvm.nix"', 'string "vm"', "uint32 4242", 'string "/"']
    uuid = re.search(r"array of bytes \[\s*([0-9a-f ]+?)\s*\]", body)
    assert uuid and uuid.group(1).replace(" ", "") == UUID.replace("-", ""), body
    assert re.findall(r"int32 (\d+)", body.replace("uint32", "")) == (
        ["7", "12"] if taps else [])


def test_machined_does_nothing_unless_asked_and_refuses_what_it_cannot_trust(
        helpers: Path, tmp_path: Path) -> None:
    """No share/microvm/machined: no call at all. A bad UUID, a runner the VM's user could
    have changed, a bad PID or name: refused before any call. unregister leaves a machine of
    another unit alone."""
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "calls"
    (fake / "busctl").write_text(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> " + str(calls) + "\n" +
        'case "$*" in *GetMachine*) echo \'o "/org/freedesktop/machine1/machine/vm"\' ;;\n' +
        '  *get-property*) echo "s \\"$UNIT\\"" ;; esac\n')
    (fake / "busctl").chmod(0o755)

    def run(*args: str, unit: str = "microvm@vm.service") -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(helpers / "machined"), *args], text=True, capture_output=True,
                              env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}",
                                   "UNIT": unit})

    quiet = tmp_path / "quiet"
    quiet.mkdir()
    assert run("register", "vm", str(machined_runner(quiet, None, [])), "1").returncode == 0
    bad = tmp_path / "bad"
    bad.mkdir()
    r = run("register", "vm", str(machined_runner(bad, "not-a-uuid", [])), "1")
    assert r.returncode == 1 and "not a UUID" in r.stderr
    open_ = tmp_path / "open"
    open_.mkdir()
    link = machined_runner(open_, UUID, [])
    (open_ / "runner" / "share").chmod(0o777)
    r = run("register", "vm", str(link), "1")
    assert r.returncode == 1 and "writable by group or others" in r.stderr, r.stderr
    for args in (("register", "vm", str(link), "1x"), ("register", "../vm", str(link), "1"),
                 ("register", "vm"), ("stop", "vm")):
        assert run(*args).returncode == 2, args
    assert not calls.exists()
    assert run("unregister", "vm", unit="microvm@other.service").returncode == 0
    assert "UnregisterMachine" not in calls.read_text()
    assert run("unregister", "vm").returncode == 0
    assert calls.read_text().splitlines()[-1] == (
        "call org.freedesktop.machine1 /org/freedesktop/machine1 " +
        "org.freedesktop.machine1.Manager UnregisterMachine s vm")


def test_machined_is_asked_for_by_the_runner_and_wired_into_the_units(tmp_path: Path) -> None:
    """microvm.registerWithMachined writes the machine UUID into the runner; microvm@.service
    runs the helper as root after start and stop; a declared VM that registers wants machined
    and starts after it, as microvm.nix's host module orders it."""
    from microvm import runner
    from microvm.document import from_document

    doc: dict[str, Any] = {"hostName": "vm", "microvm": {"kernel": "/k", "storeOnDisk": False,
                                                         "machineId": UUID.upper()}}
    plain = runner.write(from_document(doc), tmp_path / "plain")
    doc["microvm"]["registerWithMachined"] = True
    asks = runner.write(from_document(doc), tmp_path / "asks")
    assert not (plain / "share/microvm/machined").exists()
    assert (asks / "share/microvm/machined").read_text() == UUID + "\n"
    opts = UnitOptions(state_dir="/var/lib/microvms", declared=(
        DeclaredVM("a", str(asks)), DeclaredVM("b", str(plain))))
    out = tree(tmp_path, opts)
    unit = (out / units.UNIT_DIR / "microvm@.service").read_text()
    libexec = out / units.LIBEXEC_DIR
    assert (f"ExecStartPost=+{libexec}/machined register %i " +
            "%S/microvms/.control/%i/booted $MAINPID") in unit
    assert f"ExecStopPost=+{libexec}/machined unregister %i" in unit
    for name, wants in (("a", True), ("b", False)):
        drop = (out / units.UNIT_DIR / f"microvm@{name}.service.d/50-declared.conf").read_text()
        assert ("Wants=systemd-machined.service\nAfter=systemd-machined.service" in drop) == wants
