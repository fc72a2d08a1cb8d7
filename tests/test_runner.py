"""The runner tree: deterministic, shellcheck-clean, atomic, and its scripts do what they say.

The script logic (volume creation, preStart, extraArgsScript, argv hand-off) is exercised here
with a stand-in hypervisor binary that records its argv; tests/test_e2e_qemu.py boots the real
QEMU with the same scripts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from microvm import runner
from microvm.document import from_document
from support.documents import DOCS, FULL, HOSTILE, doc


@pytest.mark.parametrize("name", sorted(DOCS))
def test_scripts_pass_shellcheck_and_are_strict(tmp_path: Path, name: str) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    out = runner.write(from_document(DOCS[name]), tmp_path / "r")
    scripts = sorted((out / "bin").iterdir())
    assert {p.name for p in scripts} >= {"microvm-run", "microvm-shutdown", "microvm-balloon",
                                         "tap-up", "tap-down", "macvtap-up", "macvtap-down"}
    for s in scripts:
        text = s.read_text()
        assert text.startswith("#!/usr/bin/env bash\n"), s
        assert "\nset -euo pipefail\n" in text, s
        assert os.access(s, os.X_OK)
        subprocess.run(["bash", "-n", str(s)], check=True)
    r = subprocess.run(["shellcheck", "--severity=style", *map(str, scripts)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_output_is_deterministic(tmp_path: Path) -> None:
    vm = from_document(FULL)

    def snapshot() -> dict[str, bytes]:
        out = tmp_path / "r"
        runner.write(vm, out, force=True)
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
                if p.is_file()}

    first = snapshot()
    assert first == snapshot()
    meta = json.loads(first["share/microvm/vm.json"])
    assert from_document(meta) == vm
    assert first["share/microvm/hypervisor"] == b"qemu\n"
    assert first["share/microvm/tap-interfaces"] == b"vm-full\n"
    assert first["share/microvm/macvtap-interfaces"] == b"mvt-full 02:00:00:00:00:03 eth0 bridge\n"
    assert first["share/microvm/virtiofs/ro-store/socket"] == b"full-virtiofs-ro-store.sock\n"
    assert first["share/microvm/virtiofs/ro-store/source"] == b"/nix/store\n"
    assert first["share/microvm/vsock-cid"] == b"42\n"
    assert first["share/microvm/pci-devices"] == b"0000:01:00.0\n"
    assert first["share/microvm/usb-devices"] == b"vendorid=0x1234,productid=0x5678\n"


def test_failed_generation_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def boom(template: str, **kw: Any) -> str:
        calls.append(template)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return "x"

    monkeypatch.setattr(runner, "render", boom)
    with pytest.raises(RuntimeError):
        runner.write(from_document(DOCS["minimal"]), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_removes_the_directories_it_made(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def half_fill(tree: runner.Tree, root: Path) -> None:
        (root / "bin").mkdir()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runner, "_fill", half_fill)
    with pytest.raises(OSError, match="No space"):
        runner.write(from_document(DOCS["minimal"]), tmp_path / "a" / "b" / "out")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force_and_is_replaced_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale").write_text("old")
    src = tmp_path / "vm.json"
    src.write_text(json.dumps(DOCS["minimal"]))
    cli = [sys.executable, "-m", "microvm.cli", "generate", str(src), "--out", str(out)]
    r = subprocess.run(cli, capture_output=True, text=True)
    assert r.returncode == 2 and "exists; pass --force" in r.stderr
    assert (out / "stale").exists()
    subprocess.run([*cli, "--force"], check=True)
    assert not (out / "stale").exists() and (out / "bin" / "microvm-run").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "vm.json"]


def test_the_output_is_the_old_tree_or_the_new_at_every_moment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--force swaps the trees in one step: a process killed after any single rename still
    leaves a whole tree at the output (here the first rename happens, then the process
    "dies"; two renames would leave no output at all)."""
    out = tmp_path / "out"
    runner.write(from_document(DOCS["minimal"]), out)
    real = Path.rename

    class Killed(BaseException):
        pass

    def rename_then_die(self: Path, target: Any) -> Path:
        real(self, target)
        raise Killed("killed after one rename")

    monkeypatch.setattr(Path, "rename", rename_then_die)
    runner.write(from_document(DOCS["minimal"]), out, force=True)
    assert (out / "bin" / "microvm-run").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


FAKE_QEMU = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["ARGV_LOG"], "w") as f:
    json.dump({"argv": sys.argv, "cwd": os.getcwd(), "pre": os.environ.get("PRE_START")}, f)
"""


@pytest.fixture
def fake_path(tmp_path: Path) -> Path:
    """A PATH directory whose qemu-system-x86_64 records its argv instead of running."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    fake = bindir / "qemu-system-x86_64"
    fake.write_text(FAKE_QEMU)
    fake.chmod(0o755)
    return bindir


def run_runner(out: Path, cwd: Path, fake_path: Path, log: Path) -> dict[str, Any]:
    env = {**os.environ, "PATH": f"{fake_path}:{os.environ['PATH']}",
           "ARGV_LOG": str(log), "MICROVM_ACCEL": "tcg"}
    subprocess.run([str(out / "bin" / "microvm-run")], cwd=cwd, env=env, check=True,
                   capture_output=True, timeout=60)
    result: dict[str, Any] = json.loads(log.read_text())
    return result


def test_runner_hands_argv_over_exactly(tmp_path: Path, fake_path: Path) -> None:
    """preStart runs first, volumes appear, extraArgsScript lines are appended, and the
    hypervisor gets the argv of launch.json byte for byte."""
    script = tmp_path / f"extra {HOSTILE}"
    script.write_text("#!/bin/sh\nprintf '%s\\n' '-arg with space' \"$(printf 'x\\ty')\"\n")
    script.chmod(0o755)
    d = doc(preStart='export PRE_START="ran in $PWD"',
            volumes=[{"image": f"vols/{HOSTILE}.img", "size": 8, "label": "vol"}],
            extraArgsScript=str(script))
    out = runner.write(from_document(d), tmp_path / "r")
    work = tmp_path / "state"
    work.mkdir()
    got = run_runner(out, work, fake_path, tmp_path / "argv.json")
    launch = json.loads((out / "share/microvm/launch.json").read_text())
    assert got["argv"][1:] == [*launch["variants"]["tcg"][1:], "-arg with space", "x\ty"]
    assert got["pre"] == f"ran in {work}"
    image = work / "vols" / f"{HOSTILE}.img"
    assert image.stat().st_size == 8 << 20
    blkid = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True)
    assert "Filesystem volume name:   vol" in blkid.stdout
    assert not list((work / "vols").glob("*.microvm-new.*"))


def test_runner_never_recreates_a_volume(tmp_path: Path, fake_path: Path) -> None:
    d = doc(volumes=[{"image": "data.img", "size": 8}, {"image": "link.img", "size": 8}])
    out = runner.write(from_document(d), tmp_path / "r")
    (tmp_path / "data.img").write_bytes(b"user data")
    (tmp_path / "link.img").symlink_to(tmp_path / "elsewhere.img")  # dangling on purpose
    run_runner(out, tmp_path, fake_path, tmp_path / "argv.json")
    assert (tmp_path / "data.img").read_bytes() == b"user data"
    assert not (tmp_path / "elsewhere.img").exists()


def test_failed_mkfs_leaves_no_image(tmp_path: Path, fake_path: Path) -> None:
    d = doc(volumes=[{"image": "data.img", "size": 8, "fsType": "nosuchfs"}])
    out = runner.write(from_document(d), tmp_path / "r")
    env = {**os.environ, "PATH": f"{fake_path}:{os.environ['PATH']}",
           "ARGV_LOG": str(tmp_path / "argv.json"), "MICROVM_ACCEL": "tcg"}
    r = subprocess.run([str(out / "bin" / "microvm-run")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "cannot create volume data.img" in r.stderr
    assert not (tmp_path / "argv.json").exists()  # the hypervisor never started
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fakebin", "r"]


def test_balloon_script_refuses_bad_sizes_and_explains_missing_balloon(tmp_path: Path) -> None:
    out = runner.write(from_document(doc(balloon=True, mem=256)), tmp_path / "r")
    for arg, msg in (("x", "whole number"), ("256", "less than the guest's 256 MiB")):
        r = subprocess.run([str(out / "bin" / "microvm-balloon"), arg], capture_output=True,
                           text=True)
        assert r.returncode == 2 and msg in r.stderr
    out2 = runner.write(from_document(doc()), tmp_path / "r2")
    r = subprocess.run([str(out2 / "bin" / "microvm-balloon"), "10"], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "no balloon device (set microvm.balloon = true)" in r.stderr


# any printable text, including quotes, $, backticks, commas, spaces and non-ASCII letters
hostile_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\x00"),
    min_size=1, max_size=20)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile_text, source=hostile_text, image=hostile_text)
def test_hostile_strings_reach_the_hypervisor_byte_for_byte(
        tmp_path_factory: pytest.TempPathFactory, fake_path: Path, name: str, source: str,
        image: str) -> None:
    """Property: whatever printable text a host name, share source or volume path holds, the
    argv the hypervisor receives is the backend's argv, byte for byte (no shell ever reads it)."""
    if name in (".", ".."):
        name = f"x{name}"
    work = tmp_path_factory.mktemp("hostile")
    d = {"hostName": name, "microvm": {
        "kernel": "/k/vmlinux", "storeOnDisk": False,
        "shares": [{"tag": "t", "source": f"/srv/{source}", "mountPoint": "/t"}],
        "volumes": [{"image": image, "autoCreate": False}]}}
    out = runner.write(from_document(d), work / "r")
    got = run_runner(out, work, fake_path, work / "argv.json")
    launch = json.loads((out / "share/microvm/launch.json").read_text())
    # (argv[0], the process name, is checked on a real QEMU in test_e2e_qemu.py: an
    # interpreter replaces it for this stand-in)
    assert got["argv"][1:] == launch["variants"]["tcg"][1:]
    assert f"guest={name.replace(',', ',,')}," in got["argv"][2]
    assert f"path=/srv/{source.replace(',', ',,')},security_model" in " ".join(got["argv"])


def test_unwritable_output_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    src = tmp_path / "vm.json"
    src.write_text(json.dumps(DOCS["minimal"]))
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = subprocess.run([sys.executable, "-m", "microvm.cli", "generate", str(src), "--out",
                        str(blocker / "out")], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.startswith(f"error: {blocker}")
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "vm.json"]


def test_volume_image_starting_with_a_dash_is_made_by_mkfs(tmp_path: Path,
                                                          fake_path: Path) -> None:
    """mkfs would read "-n.img.microvm-new.XXXXXX" as options (-n: make nothing)."""
    d = doc(volumes=[{"image": "-n.img", "size": 8, "label": "dash"}])
    out = runner.write(from_document(d), tmp_path / "r")
    run_runner(out, tmp_path, fake_path, tmp_path / "argv.json")
    image = tmp_path / "-n.img"
    info = subprocess.run(["dumpe2fs", "-h", "--", str(image)], capture_output=True, text=True)
    assert "Filesystem volume name:   dash" in info.stdout, info.stderr
    assert not list(tmp_path.glob("*.microvm-new.*"))


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed")
def test_volumes_of_other_image_types_are_created_in_their_format(tmp_path: Path,
                                                                  fake_path: Path) -> None:
    """autoCreate with imageType qcow2, vhd or vhdx (microvm.nix accepts them; it would write a
    raw image the hypervisor is then told is qcow2): a missing image is made in that format,
    holding the file system, its virtual size the volume's size, as qemu-img itself reads it;
    an existing one, of any content, is left alone; names with ':' or a leading '-' work."""
    names = {"qcow2": "data:1.qcow2", "vhd": "-d.vhd", "vhdx": "sub/d.vhdx"}
    d = doc(volumes=[{"image": names[t], "size": 8, "label": f"l-{t}", "imageType": t}
                     for t in names] + [{"image": "kept.qcow2", "size": 8, "imageType": "qcow2"}])
    out = runner.write(from_document(d), tmp_path / "r")
    work = tmp_path / "state"
    work.mkdir()
    (work / "kept.qcow2").write_bytes(b"user data")
    run_runner(out, work, fake_path, tmp_path / "argv.json")
    assert (work / "kept.qcow2").read_bytes() == b"user data"
    for image_type, name in names.items():
        fmt = {"vhd": "vpc"}.get(image_type, image_type)
        info = json.loads(subprocess.run(
            ["qemu-img", "info", "-f", fmt, "--output=json", f"./{name}"], cwd=work,
            capture_output=True, text=True, check=True).stdout)
        assert (info["format"], info["virtual-size"]) == (fmt, 8 << 20), (name, info)
        raw = tmp_path / f"{image_type}.raw"
        subprocess.run(["qemu-img", "convert", "-f", fmt, "-O", "raw", f"./{name}", str(raw)],
                       cwd=work, check=True)
        label = subprocess.run(["dumpe2fs", "-h", str(raw)], capture_output=True, text=True)
        assert f"Filesystem volume name:   l-{image_type}" in label.stdout, name
    assert not [p for p in work.rglob("*") if ".microvm-new." in p.name]


C_VIRTIOFSD = Path("/usr/lib/qemu/virtiofsd")


@pytest.mark.parametrize("source", ["a,sandbox=chroot", "b\\,c", "d\\\\,e\\057"])
def test_c_virtiofsd_gets_a_source_with_commas_whole(tmp_path: Path, source: str) -> None:
    """The real C virtiofsd (QEMU 7.2's) names the exact source it could not find: a comma
    in the source neither splits it nor injects an option (sandbox=chroot)."""
    if not C_VIRTIOFSD.exists():
        pytest.skip(f"{C_VIRTIOFSD} is not installed (Debian's qemu-system-common)")
    path = str(tmp_path / "missing" / source)
    vm = from_document(doc(shares=[{"tag": "s", "source": path, "mountPoint": "/s",
                                    "proto": "virtiofs"}]))
    argv = runner.virtiofsd_argv(vm, vm.shares[0])["c"]
    argv = [a for a in argv if not a.startswith("--socket-group=")]  # no kvm group here
    r = subprocess.run([str(C_VIRTIOFSD), *argv[1:]], cwd=tmp_path, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0
    assert f'failed to stat source ("{path}")' in r.stderr, r.stderr


def test_vfkit_rest_uri_escapes_percent_and_question_mark(tmp_path: Path) -> None:
    """Go's url.ParseRequestURI (vfkit) decodes %XX in the path and cuts the query at '?'."""
    from urllib.parse import unquote, urlsplit

    from microvm.hypervisors import RunContext, vfkit

    for sock in ("/run/a%41b?c#d.sock", "rel %25?.sock"):
        vm = from_document({**doc(hypervisor="vfkit", socket=sock), "system": "aarch64-darwin"})
        argv = vfkit.Vfkit().command(vm, RunContext(runner_dir="/r"))
        if sock.startswith("/"):
            uri = argv[argv.index("--restful-uri") + 1]
        else:  # the wrapper makes it absolute at start: run it with printf for vfkit
            assert argv[:2] == ["bash", "-c"]
            r = subprocess.run([*argv[:4], sock, "printf", "%s\n"], cwd=tmp_path,
                               capture_output=True, text=True, check=True)
            uri = r.stdout.splitlines()[-1]
            sock = f"{tmp_path}/{sock}"
        parts = urlsplit(uri)
        assert (parts.scheme, parts.netloc, parts.query, parts.fragment) == ("unix", "", "", "")
        assert unquote(parts.path) == sock


@pytest.mark.parametrize("name", sorted(DOCS))
def test_runner_dir_is_set_exactly_where_a_script_uses_it(name: str) -> None:
    """The template decides when microvm-run needs $runner_dir (Python does not repeat it)."""
    vm = from_document(DOCS[name])
    for rel, (content, _) in runner.build(vm, "/r").files.items():
        if rel.startswith("bin/"):
            uses = "$runner_dir" in content
            assert ("\nrunner_dir=" in content) == uses, rel


def test_the_backend_decides_which_taps_the_runner_makes() -> None:
    """QEMU makes the tap of a bridge interface itself (qemu-bridge-helper); the others get it
    from tap-up, attached to the bridge."""
    from microvm.capabilities import Hypervisor
    from microvm.hypervisors import backend

    ifaces = [{"type": "bridge", "id": "vm-b", "mac": "02:00:00:00:00:09", "bridge": "br0"},
              {"type": "tap", "id": "vm-t", "mac": "02:00:00:00:00:0a"}]
    qemu = from_document(doc(interfaces=ifaces))
    tree = runner.build(qemu, "/r").files
    assert [i.id for i in backend(Hypervisor.QEMU).runner_taps(qemu)] == ["vm-t"]
    assert tree["share/microvm/tap-interfaces"][0] == "vm-t\n"
    assert "br0" not in tree["bin/tap-up"][0]
    ch = from_document(doc(hypervisor="cloud-hypervisor", interfaces=ifaces))
    tree = runner.build(ch, "/r").files
    assert tree["share/microvm/tap-interfaces"][0] == "vm-b\nvm-t\n"
    assert "ip link set dev vm-b master br0" in tree["bin/tap-up"][0]


def test_balloon_and_shutdown_share_one_request_template() -> None:
    """_request.sh.j2 is the one place a control request is spelled; the balloon script passes
    its words through fill, the shutdown script waits for QMP's end of connection."""
    from microvm.hypervisors import ControlKind

    templates = Path(runner.__file__).parent / "templates"
    for name in ("microvm-balloon.sh.j2", "microvm-shutdown.sh.j2"):
        text = (templates / name).read_text()
        assert '{% include "_request.sh.j2" %}' in text
        for kind in ControlKind:
            assert f'"{kind}"' not in text.replace('control.kind != "argv"', "")
    vm = from_document(doc(balloon=True))
    files = runner.build(vm, "/r").files
    assert 'qmp "$socket" "$(fill ' in files["bin/microvm-balloon"][0]
    assert '"$timeout"\n' in files["bin/microvm-shutdown"][0]


@pytest.mark.parametrize(("size", "argv", "per_cpu"), [
    ("4", "--thread-pool-size=4", False), (4, "--thread-pool-size=4", False),
    ("`nproc`", None, True), ("$(nproc)", None, True), (None, None, False)])
def test_virtiofsd_thread_pool_size_as_microvm_nix_users_write_it(
        tmp_path: Path, size: object, argv: str | None, per_cpu: bool) -> None:
    """microvm.virtiofsd.threadPoolSize takes a number, a string of digits, "`nproc`" or
    "$(nproc)" (microvm.nix's option is any string, handed to its shell); none of it runs as
    shell text: digits become the argument, the nproc spellings the CPU count."""
    doc = {"hostName": "t", "microvm": {"kernel": "/k", "storeOnDisk": False, "shares": [
        {"proto": "virtiofs", "tag": "s", "source": "/s", "mountPoint": "/m"}],
        "virtiofsd": {"threadPoolSize": size}}}
    (tmp_path / "vm.json").write_text(json.dumps(doc))
    subprocess.run([sys.executable, "-m", "microvm.cli", "generate", str(tmp_path / "vm.json"),
                    "--out", str(tmp_path / "r")], check=True)
    script = (tmp_path / "r/bin/virtiofsd-run").read_text()
    assert (argv in script) if argv else ("--thread-pool-size=4" not in script)
    assert ('threads=(--thread-pool-size="$(nproc)")' in script) == per_cpu
    assert "$(nproc)" not in script.replace('threads=(--thread-pool-size="$(nproc)")', "")


FAKE_CROSVM = """#!/usr/bin/env python3
import json, os, signal, socket, sys, time
log = os.environ["ARGV_LOG"]
if sys.argv[1:3] == ["device", "gpu"]:
    if os.environ.get("GPU_FAILS"):
        sys.exit("no render node")
    path = sys.argv[sys.argv.index("--socket") + 1]
    time.sleep(0.3)  # the hypervisor must wait for the socket
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.listen()
    def stop(*_):
        open(log + ".gpu-stopped", "w").close()
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    with open(log + ".gpu", "w") as f:
        json.dump(sys.argv, f)
    while True:
        signal.pause()
with open(log, "w") as f:
    json.dump({"argv": sys.argv, "socket_there": os.path.exists("t-gpu.sock")}, f)
"""


def test_crosvm_graphics_start_the_gpu_device_first_and_stop_it_after(tmp_path: Path) -> None:
    """microvm.graphics on crosvm: the runner starts crosvm's GPU device on the Wayland session
    (WAYLAND_DISPLAY below XDG_RUNTIME_DIR), the hypervisor starts once its socket is there,
    and the device is stopped when the hypervisor exits. Without a Wayland session, or when
    the device exits, the runner says so and starts no hypervisor."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    (bindir / "crosvm").write_text(FAKE_CROSVM)
    (bindir / "crosvm").chmod(0o755)
    out = runner.write(from_document(doc(hypervisor="crosvm", graphics={"enable": True})),
                       tmp_path / "r")
    work = tmp_path / "state"
    work.mkdir()
    log = tmp_path / "argv.json"
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "ARGV_LOG": str(log),
           "XDG_RUNTIME_DIR": "/run/user/1000", "WAYLAND_DISPLAY": "wayland-1"}
    subprocess.run([str(out / "bin" / "microvm-run")], cwd=work, env=env, check=True,
                   capture_output=True, timeout=60)
    got = json.loads(log.read_text())
    at = got["argv"].index("--vhost-user")
    assert got["socket_there"] and got["argv"][at:at + 2] == ["--vhost-user",
                                                             "type=gpu,socket=t-gpu.sock"]
    gpu = json.loads(Path(f"{log}.gpu").read_text())
    assert gpu[1:] == ["device", "gpu", "--socket", "t-gpu.sock", "--params",
                       '{"context-types":"virgl:virgl2:cross-domain","egl":true,"vulkan":true}',
                       "--wayland-sock", "/run/user/1000/wayland-1"]
    for _ in range(100):
        if Path(f"{log}.gpu-stopped").exists():
            break
        time.sleep(0.1)
    assert Path(f"{log}.gpu-stopped").exists()
    log.unlink()
    del env["WAYLAND_DISPLAY"]
    r = subprocess.run([str(out / "bin" / "microvm-run")], cwd=work, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "WAYLAND_DISPLAY is not set" in r.stderr
    assert not log.exists()
    # a device that exits at once ends the run at once, the hypervisor never started
    r = subprocess.run([str(out / "bin" / "microvm-run")], cwd=work, timeout=5,
                       env={**env, "WAYLAND_DISPLAY": "/run/w", "GPU_FAILS": "1"},
                       capture_output=True, text=True)
    assert r.returncode == 1 and "GPU device exited before the VM started" in r.stderr
    assert not log.exists()


def test_every_image_type_has_a_qemu_format() -> None:
    """The schema's image types, and every type a hypervisor reads, have a qemu-img format the
    runner can create a missing image in (hypervisors/base.py QEMU_IMAGE_FORMATS)."""
    from microvm.capabilities import CAPABILITIES
    from microvm.hypervisors.base import QEMU_IMAGE_FORMATS
    from microvm.options import schema

    volume = schema()["properties"]["microvm"]["properties"]["volumes"]["items"]["properties"]
    types = set(volume["imageType"]["enum"])
    assert set().union(*(c.image_types for c in CAPABILITIES.values())) <= types
    assert set(QEMU_IMAGE_FORMATS) == types
