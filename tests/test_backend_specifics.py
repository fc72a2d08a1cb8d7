"""Hypervisor-specific backend behaviour, one test each (the contract and grammar tests cover
the backends in general: tests/test_contract.py, tests/test_grammar.py).

The stratovirt test runs the generated bin/microvm-run for real with a stand-in `stratovirt`
on PATH that records its argv (stratovirt itself needs KVM), stdin not a terminal, as under
microvm@.service.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from microvm.capabilities import CAPABILITIES, STORE_DISK_SERIAL, Feature, Hypervisor
from microvm.errors import ValidationError
from microvm.hypervisors import RunContext, backend
from microvm.hypervisors.base import NOTIFY_VSOCK_PORT_BASE
from support.backend_cases import document, load

CTX = RunContext("/run/microvm/demo")


def argv(hv: Hypervisor, **microvm: object) -> list[str]:
    vm = load(document(hv, **microvm))
    return next(iter(backend(hv).launch(vm, CTX).variants.values()))


def test_store_disk_has_the_serial_the_guest_mounts() -> None:
    """Item 1: every hypervisor that sets serials gives the store disk `store`."""
    got = {hv: " ".join(argv(hv, storeOnDisk=True,
                               storeDisk="/nix/store/s-store-disk/store.erofs"))
           for hv in Hypervisor if CAPABILITIES[hv].supports(Feature.VOLUME_SERIAL)}
    assert STORE_DISK_SERIAL == "store"
    assert "serial=store,image_type=raw" in got[Hypervisor.CLOUD_HYPERVISOR]
    assert "ro=true,id=store" in got[Hypervisor.CROSVM]
    assert "id=blk_store,serial=store" in got[Hypervisor.STRATOVIRT]
    assert "readonly,deviceId=store" in got[Hypervisor.VFKIT]
    assert "serial=store" in got[Hypervisor.QEMU]


def test_alioth_speaks_the_0_9_to_0_12_spelling_and_gives_taps_an_mtu() -> None:
    """Item 2."""
    a = argv(Hypervisor.ALIOTH, vcpu=2,
             interfaces=[{"type": "tap", "id": "vm-a", "mac": "02:00:00:00:00:01"}])
    assert a[a.index("--num-cpu") + 1] == "2"
    assert "--cmd-line" in a
    assert "--cpu" not in a and "--cmdline" not in a
    assert a[a.index("--net") + 1] == "if_name=vm-a,mac=02:00:00:00:00:01,mtu=1500,queue_pairs=2"
    assert "0.9.0 to 0.12.0" in CAPABILITIES[Hypervisor.ALIOTH].versions


def generated(tmp_path: Path, doc: dict[str, Any]) -> Path:
    """`microvm generate` of `doc` into tmp_path/runner, as a user runs it."""
    src = tmp_path / "vm.json"
    src.write_text(json.dumps(doc), "utf-8")
    out = tmp_path / "runner"
    subprocess.run([sys.executable, "-m", "microvm.cli", "generate", str(src), "--out",
                    str(out)], check=True)
    return out


def test_stratovirt_console_is_a_socket_without_a_terminal(tmp_path: Path) -> None:
    """Item 3: under microvm@.service (MICROVM_CONSOLE=socket, stdin not a TTY) stratovirt gets
    a socket console instead of stdio, which it would put into raw mode and fail."""
    out = generated(tmp_path, document(Hypervisor.STRATOVIRT))
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "stratovirt").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGV_OUT"\n', "utf-8")
    (fake / "stratovirt").chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    (state / "console.sock").write_text("stale? no: a regular file is left alone")
    results = {}
    for mode in ("socket", "stdio"):
        record = tmp_path / f"argv-{mode}"
        env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "ARGV_OUT": str(record)}
        if mode == "socket":
            env["MICROVM_CONSOLE"] = "socket"
        else:
            env.pop("MICROVM_CONSOLE", None)
        r = subprocess.run([str(out / "bin" / "microvm-run")], cwd=state, env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60, check=False)
        assert r.returncode == 0, r.stderr
        results[mode] = record.read_text().splitlines()
    sock = results["socket"]
    assert sock[sock.index("-chardev") + 1] == (
        "socket,id=console0,path=console.sock,server,nowait")
    assert sock[sock.index("-serial") + 1] == "chardev:console0"
    assert "stdio" not in " ".join(sock)
    tty = results["stdio"]
    assert tty[tty.index("-chardev") + 1] == "stdio,id=console0"
    # only a socket is removed before start, never a regular file
    assert (state / "console.sock").is_file()


def test_kvmtool_keeps_its_socket_in_the_state_directory() -> None:
    """Item 11 (socket): as microvm.nix does with HOME=$PWD."""
    vm = load(document(Hypervisor.KVMTOOL, socket="demo.sock"))
    assert backend(Hypervisor.KVMTOOL).launch(vm, CTX).env == {"HOME": "."}


FAKE_ALIOTH = """#!/bin/sh
# stands in for alioth: like alioth 0.9-0.12 it stops when stdin is no terminal
[ -t 0 ] || { echo "alioth: stdin is not a terminal" >&2; exit 7; }
printf '%s\\n' "$@" > "$ARGV_OUT"
if [ -n "${SLEEP:-}" ]; then
  trap 'echo terminated > "$ARGV_OUT.term"; exit 0' TERM
  sleep 30 & wait
fi
"""


def _alioth_runner(tmp_path: Path) -> tuple[Path, Path, dict[str, str], list[str]]:
    """The generated runner of an alioth VM with awkward values, a stand-in alioth on PATH,
    and the argv the backend meant alioth to get."""
    doc = document(Hypervisor.ALIOTH, kernelParams=["quiet", "x=it's \"quoted\" $(no)"],
                   volumes=[{"image": "my vol's.img", "size": 8, "autoCreate": False}])
    path = tmp_path / "vm.json"
    path.write_text(json.dumps(doc), "utf-8")
    out = tmp_path / "runner"
    subprocess.run([sys.executable, "-m", "microvm.cli", "generate", str(path), "--out",
                    str(out)], check=True)
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "alioth").write_text(FAKE_ALIOTH, "utf-8")
    (fake / "alioth").chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}",
           "ARGV_OUT": str(tmp_path / "argv")}
    want = backend(Hypervisor.ALIOTH).command(load(doc), CTX)[1:]
    return out / "bin" / "microvm-run", state, env, want


def test_alioth_starts_without_a_terminal(tmp_path: Path) -> None:
    """Like stratovirt (item 3), alioth cannot start with stdin not a terminal; the runner gives
    it a pseudo-terminal then, and the argv arrives byte for byte."""
    run, state, env, want = _alioth_runner(tmp_path)
    r = subprocess.run([str(run)], cwd=state, env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "argv").read_text().splitlines() == want


def test_alioth_under_a_pseudo_terminal_stops_on_sigterm(tmp_path: Path) -> None:
    """systemd stops microvm@ with SIGTERM to the main process: it reaches alioth."""
    run, state, env, _ = _alioth_runner(tmp_path)
    p = subprocess.Popen([str(run)], cwd=state, env={**env, "SLEEP": "1"},
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            if (tmp_path / "argv").exists():
                break
            time.sleep(0.1)
        assert (tmp_path / "argv").exists()
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)
    finally:
        p.kill()
    for _ in range(50):
        if (tmp_path / "argv.term").exists():
            break
        time.sleep(0.1)
    assert (tmp_path / "argv.term").read_text() == "terminated\n"


def test_kvmtool_balloon_translates_sizes_into_steps(tmp_path: Path) -> None:
    """Item 11 (balloon): bin/microvm-balloon SIZE, run for real with a stand-in `lkvm` that
    records its arguments, asks lkvm for the difference to the size it set last; a size older
    than lkvm's socket (a new run) counts as 0."""
    out = generated(tmp_path, document(Hypervisor.KVMTOOL, mem=1024, balloon=True))
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "lkvm").write_text('#!/bin/sh\necho "HOME=$HOME $*" >> "$LKVM_LOG"\n', "utf-8")
    (fake / "lkvm").chmod(0o755)
    state = tmp_path / "state"
    (state / ".lkvm").mkdir(parents=True)
    sock = state / ".lkvm" / "demo.sock"
    sock.write_text("")  # stands in for lkvm's socket: only its age matters
    os.utime(sock, (time.time() - 60, time.time() - 60))
    log = tmp_path / "lkvm.log"
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "LKVM_LOG": str(log)}

    def balloon(size: int) -> None:
        subprocess.run([str(out / "bin" / "microvm-balloon"), str(size)], cwd=state, env=env,
                       check=True, timeout=30)

    for size in (512, 256, 256, 0, 300):
        balloon(size)
    os.utime(sock, (time.time() + 60, time.time() + 60))  # lkvm started again
    balloon(100)
    assert log.read_text().splitlines() == [
        "HOME=. balloon --name demo --inflate 512",
        "HOME=. balloon --name demo --deflate 256",
        "HOME=. balloon --name demo --deflate 256",
        "HOME=. balloon --name demo --inflate 300",
        "HOME=. balloon --name demo --inflate 100",
    ]


def test_cloud_hypervisor_readiness() -> None:
    """Item 7: notify.vsock, the OEM-string credential and the watchdog."""
    a = argv(Hypervisor.CLOUD_HYPERVISOR, vsock={"cid": 3})
    cid = 3
    assert a[a.index("--vsock") + 1] == f"cid={cid},socket=notify.vsock"
    assert a[a.index("--platform") + 1].endswith(
        ",oem_strings=[io.systemd.credential:vmm.notify_socket=vsock-stream:2:" +
        f"{NOTIFY_VSOCK_PORT_BASE + cid}]")
    assert a.count("--watchdog") == 1
    vm = load(document(Hypervisor.CLOUD_HYPERVISOR, vsock={"cid": 3}))
    # the host's listener for guest-initiated connections learns the socket from here
    files = backend(Hypervisor.CLOUD_HYPERVISOR).launch(vm, CTX).files
    assert files["hybrid-vsock"] == "notify.vsock\n"
    # a user's own --watchdog is not doubled (clap refuses a repeated flag)
    b = argv(Hypervisor.CLOUD_HYPERVISOR, **{"cloud-hypervisor": {"extraArgs": ["--watchdog"]}})
    assert b.count("--watchdog") == 1


def test_firecracker_readiness() -> None:
    """Item 7: notify.vsock and the credential on the kernel command line."""
    vm = load(document(Hypervisor.FIRECRACKER, vsock={"cid": 3}))
    cfg = json.loads(backend(Hypervisor.FIRECRACKER).launch(vm, CTX).files["firecracker.json"])
    assert cfg["vsock"]["uds_path"] == "notify.vsock"
    assert backend(Hypervisor.FIRECRACKER).launch(vm, CTX).files["hybrid-vsock"] == (
        "notify.vsock\n")
    assert ("systemd.set_credential=vmm.notify_socket:vsock-stream:2:" +
            f"{NOTIFY_VSOCK_PORT_BASE + 3}") in cfg["boot-source"]["boot_args"].split()


def test_console_device_follows_the_uart() -> None:
    """Item 8: 8250 (ttyS0) on firecracker, crosvm, kvmtool on aarch64 too; PL011 (ttyAMA0)
    on qemu, cloud-hypervisor, stratovirt, alioth; hvc0 on vfkit."""
    want = {Hypervisor.FIRECRACKER: "ttyS0", Hypervisor.CROSVM: "ttyS0",
            Hypervisor.KVMTOOL: "ttyS0", Hypervisor.CLOUD_HYPERVISOR: "ttyAMA0",
            Hypervisor.STRATOVIRT: "ttyAMA0", Hypervisor.ALIOTH: "ttyAMA0",
            Hypervisor.QEMU: "ttyAMA0", Hypervisor.VFKIT: "hvc0"}
    for hv, dev in want.items():
        assert CAPABILITIES[hv].console("aarch64") == dev, hv
        doc = document(hv)
        if hv is not Hypervisor.VFKIT:
            doc["system"] = "aarch64-linux"
        vm = load(doc)
        launch = backend(hv).launch(vm, CTX)
        text = "\n".join([*next(iter(launch.variants.values())), *launch.files.values()])
        assert f"console={dev}" in text, hv


def test_ignored_options_warn_and_generate(tmp_path: Path) -> None:
    """Item 11: accepted with a warning naming the option; a share on firecracker refused."""
    cases: dict[Hypervisor, tuple[dict[str, Any], list[str]]] = {
        Hypervisor.KVMTOOL: ({"balloon": True, "socket": "demo.sock"},
                             ["warning: microvm.socket: a control socket (set microvm.socket " +
                              "= null) not supported by kvmtool, ignored: lkvm keeps its own " +
                              "instance socket, `.lkvm/<hostName>.sock` in the working " +
                              "directory (the runner sets HOME=.; `HOME=. lkvm stop --name " +
                              "<hostName>` there finds it), and creates no socket at " +
                              "microvm.socket"]),
        Hypervisor.FIRECRACKER: ({"volumes": [{"image": "v.img", "size": 8, "serial": "v",
                                               "direct": True}]},
                                 ["warning: microvm.volumes[0].direct: direct I/O volumes not " +
                                  "supported by firecracker, ignored: the image is opened " +
                                  "through the host page cache",
                                  "warning: microvm.volumes[0].serial: volume serial numbers " +
                                  "not supported by firecracker, ignored: the guest finds the " +
                                  "volume by its label or as /dev/vdX in attachment order"]),
    }
    for hv, (options, warnings) in cases.items():
        path = tmp_path / f"{hv}.json"
        path.write_text(json.dumps(document(hv, **options)), "utf-8")
        r = subprocess.run([sys.executable, "-m", "microvm.cli", "generate", str(path),
                            "--out", str(tmp_path / str(hv))], capture_output=True, text=True,
                           check=False)
        assert r.returncode == 0, r.stderr
        assert r.stderr.splitlines() == warnings
    share = document(Hypervisor.FIRECRACKER, shares=[{"proto": "9p", "tag": "t",
                                                      "source": "/srv", "mountPoint": "/t"}])
    path = tmp_path / "share.json"
    path.write_text(json.dumps(share), "utf-8")
    r = subprocess.run([sys.executable, "-m", "microvm.cli", "validate", str(path)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2
    assert r.stderr.startswith("error: microvm.shares[0].proto: 9p shares not supported by " +
                               "firecracker")


# -- cloud-hypervisor: what microvm.nix's runner merges ----------------------------------------

CH = Hypervisor.CLOUD_HYPERVISOR


def ch_split_commas(s: str, v36: bool) -> list[str]:
    """cloud-hypervisor's option_parser split_commas: v36.0 drops '"' and keeps brackets;
    v50.0 and later keep both (only '"' is special inside quotes). ValueError: unbalanced."""
    out, cur, depth, quoted = [], "", 0, False
    for c in s.strip():
        if c == '"':
            quoted = not quoted
            if v36:
                continue
        elif (not quoted or v36) and c in "[]":
            depth += 1 if c == "[" else -1
            if depth < 0:
                raise ValueError(s)
        elif c == "," and not quoted and depth == 0:
            out.append(cur)
            cur = ""
            continue
        cur += c
    if quoted or depth:
        raise ValueError(s)
    return [*out, cur]


def ch_oem_strings(platform: str, v36: bool) -> list[str]:
    """The OEM strings cloud-hypervisor reads from a --platform value: OptionParser.parse
    (the value trimmed), then StringList (v36.0: split at every ','; v50.0: split_commas of the
    value without its outer brackets). Read from option_parser/src/lib.rs at both tags."""
    value = next(item.split("=", 1)[1].strip() for item in ch_split_commas(platform, v36)
                 if item.split("=", 1)[0] == "oem_strings")
    inner = value.strip().strip("[]")
    return inner.split(",") if v36 else ch_split_commas(inner, v36)


def ch_argv(**microvm: object) -> list[str]:
    return argv(CH, **microvm)


def flag_values(a: list[str], flag: str) -> list[str]:
    return [a[i + 1] for i, w in enumerate(a) if w == flag]


def refusals(hv: Hypervisor, **microvm: object) -> list[str]:
    with pytest.raises(ValidationError) as e:
        load(document(hv, **microvm))
    return [str(p) for p in e.value.problems]


def test_cloud_hypervisor_oem_strings_arrive_byte_for_byte() -> None:
    """platformOEMStrings reach the guest's SMBIOS table as given, before the readiness
    credential, read back with cloud-hypervisor's own parser (both ends of the range)."""
    given = ["io.systemd.credential:greeting=hello world", "x=1;y=(2)", "caf\u00e9 'q' $HOME"]
    a = ch_argv(vsock={"cid": 3}, **{"cloud-hypervisor": {"platformOEMStrings": given}})
    [platform] = flag_values(a, "--platform")
    for v36 in (True, False):
        assert ch_oem_strings(platform, v36) == [
            *given, f"io.systemd.credential:vmm.notify_socket=vsock-stream:2:{8888 + 3}"]
    assert ch_oem_strings(flag_values(ch_argv(**{"cloud-hypervisor": {
        "platformOEMStrings": ["only"]}}), "--platform")[0], False) == ["only"]


@pytest.mark.parametrize("bad", ["a,b", "[a]", "a]", 'say "hi"', " lead", "trail ", "",
                                 "x=oem_strings"])
def test_cloud_hypervisor_refuses_oem_strings_its_parser_cannot_carry(bad: str) -> None:
    """What would not arrive as given (split, trimmed, unbalanced, an empty string that ends
    SMBIOS's string set) or that microvm.nix refuses (`oem_strings` in an item) is an error at
    the item's option path."""
    got = refusals(CH, **{"cloud-hypervisor": {"platformOEMStrings": ["ok", bad]}})
    assert len(got) == 1 and got[0].startswith("microvm.cloud-hypervisor.platformOEMStrings[1]: ")
    if bad not in ("", "x=oem_strings"):
        # the reason: first or last in the list, cloud-hypervisor v36 or v50 reads something
        # else, or fails
        def misread(strings: list[str], v36: bool) -> bool:
            try:
                return ch_oem_strings("oem_strings=[" + ",".join(strings) + "]", v36) != strings
            except ValueError:
                return True

        assert any(misread(strings, v36) for strings in (["ok", bad], [bad, "ok"])
                   for v36 in (True, False))


def test_cloud_hypervisor_merges_extra_args_into_its_own_flags() -> None:
    """As microvm.nix: --cpus and --platform values of extraArgs join the runner's, a --vsock
    is merged with microvm.vsock.cid, --serial and --console replace the runner's; each flag
    once (cloud-hypervisor refuses a repeated one); other arguments are appended."""
    extra = ["--cpus", "max=4", "--platform=serial_number=vm7", "--serial", "off",
             "--console", "tty", "--vsock", "socket=my.vsock,id=vsock0", "--pvpanic"]
    a = ch_argv(vcpu=2, vsock={"cid": 5}, **{"cloud-hypervisor": {"extraArgs": extra}})
    for flag in ("--cpus", "--platform", "--serial", "--console", "--vsock"):
        assert sum(w == flag or w.startswith(flag + "=") for w in a) == 1, flag
    assert flag_values(a, "--cpus") == ["boot=2,max=4"]
    assert flag_values(a, "--platform")[0].endswith(
        f"oem_strings=[io.systemd.credential:vmm.notify_socket=vsock-stream:2:{8888 + 5}]," +
        "serial_number=vm7")
    assert flag_values(a, "--vsock") == ["cid=5,socket=my.vsock,id=vsock0"]
    assert flag_values(a, "--serial") == ["off"] and flag_values(a, "--console") == ["tty"]
    assert a[-1] == "--pvpanic"
    # the serial port is not the console any more: no console= for the kernel
    assert not any(w.startswith("console=") for w in flag_values(a, "--cmdline")[0].split())
    # the host finds the socket a --vsock names (readiness relay, microvm ssh)
    launch = backend(CH).launch(load(document(CH, vsock={"cid": 5}, **{
        "cloud-hypervisor": {"extraArgs": extra}})), CTX)
    assert launch.files["hybrid-vsock"] == "my.vsock\n"
    assert "my.vsock" in launch.sockets
    # a --serial tty keeps the console on it
    b = ch_argv(**{"cloud-hypervisor": {"extraArgs": ["--serial", "tty"]}})
    assert "console=ttyS0" in flag_values(b, "--cmdline")[0].split()
    # a --vsock without microvm.vsock.cid is the VM's vsock (its socket defaulted)
    assert flag_values(ch_argv(**{"cloud-hypervisor": {"extraArgs": ["--vsock", "cid=9"]}}),
                       "--vsock") == ["cid=9,socket=notify.vsock"]


@pytest.mark.parametrize(("extra", "vsock", "at", "says"), [
    (["--cpus", "boot=4"], None, 1, "microvm.vcpu"),
    (["--pvpanic", "--platform", "oem_strings=[a]"], None, 2, "platformOEMStrings"),
    (["--vsock", "cid=7"], 5, 1, "microvm.vsock.cid"),
    (["--vsock", "socket=/run/x.vsock"], 5, 1, "file name"),
    (["--vsock", "socket=x.vsock"], None, 1, "needs cid="),
    (["--vsock", "cid=7,socket=a", "--vsock", "cid=8,socket=b"], None, 3, "one --vsock"),
])
def test_cloud_hypervisor_refuses_what_it_cannot_merge(extra: list[str], vsock: int | None,
                                                       at: int, says: str) -> None:
    """Where microvm.nix throws (boot= with microvm.vcpu, oem_strings= in --platform, cid= with
    microvm.vsock.cid) or a --vsock could not work, the error names the extraArgs item."""
    microvm: dict[str, Any] = {"cloud-hypervisor": {"extraArgs": extra}}
    if vsock is not None:
        microvm["vsock"] = {"cid": vsock}
    [got] = refusals(CH, **microvm)
    assert got.startswith(f"microvm.cloud-hypervisor.extraArgs[{at}]: ") and says in got


def test_cloud_hypervisor_boots_with_hotplug_memory_as_microvm_nix() -> None:
    """With hotplugMem, microvm.nix gives cloud-hypervisor `size=hotplugMem` (mem unused),
    hotplug_size=hotplugMem and hotplugged_size=hotpluggedMem; the balloon must fit that."""
    [memory] = flag_values(ch_argv(mem=4096, hotplugMem=1024, hotpluggedMem=256), "--memory")
    items = dict(item.split("=") for item in memory.split(","))
    assert (items["size"], items["hotplug_size"], items["hotplugged_size"]) == (
        "1024M", "1024M", "256M")
    assert dict(i.split("=") for i in flag_values(ch_argv(mem=4096), "--memory")[0].split(
        ","))["size"] == "4096M"
    [got] = refusals(CH, mem=4096, hotplugMem=1024, hotpluggedMem=256, balloon=True,
                     initialBalloonMem=2048)
    assert got.startswith("microvm.initialBalloonMem: ") and "1280 MiB" in got


def test_vfkit_rosetta_device() -> None:
    """microvm.vfkit.rosetta: `--device rosetta` on the tag the guest mounts, with `install`
    and `ignore-if-missing` as vfkit's RosettaShare.FromOptions spells them."""
    def devices(**rosetta: bool) -> list[str]:
        return flag_values(argv(Hypervisor.VFKIT, vfkit={"rosetta": rosetta}), "--device")

    assert not any(d.startswith("rosetta") for d in devices(enable=False, install=True))
    assert "rosetta,mountTag=rosetta" in devices(enable=True)
    assert "rosetta,mountTag=rosetta,install,ignore-if-missing" in devices(
        enable=True, install=True, ignoreIfMissing=True)
