"""microvm.nix users' host and guest configurations mean the same here (issue: drop-in).

Evaluated with the NixOS stub and stand-in packages (tests/nix/), like tests/test_nix.py; the
runners and units are really built with nix-build through the real generator.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from microvm import runner, units
from microvm.document import from_document
from support import REPO
from support.documents import DOCS
from support.nixeval import NIX_OPTS, NIXDIR, guest_inline, nix_eval, nix_problem

pytestmark = [pytest.mark.nix]


@pytest.fixture(autouse=True)
def _need_nix() -> None:
    if why := nix_problem():
        pytest.skip(why)


def host(attr: str, host_options: str = "{ }", user_module: str = "{ }") -> str:
    return (f"(import ./dropin/host.nix {{ python = {json.dumps(sys.executable)}; " +
            f"repo = {json.dumps(str(REPO))}; hostOptions = {host_options}; " +
            f"userModule = {user_module}; }}).{attr}")


def build(expr: str) -> Path:
    r = subprocess.run(["nix-build", *NIX_OPTS, "--no-out-link", "-E", expr], cwd=NIXDIR,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    return Path(r.stdout.strip().splitlines()[-1])


def test_vm_config_reads_as_the_evaluated_system_and_each_vm_is_evaluated_once() -> None:
    r = nix_eval(host("summary"))
    s = json.loads(r.stdout)
    assert s["hostNames"] == {"alpha": "alpha", "beta": "beta-host"}
    # microvm.nix: restart by default for an inline `config`
    assert s["restart"] == {"alpha": True, "beta": True}
    assert s["runners"] == ["microvm-units"]
    counts = {name: len(re.findall(rf"trace: GUEST-EVALUATED {name}\b", r.stderr))
              for name in ("alpha", "beta")}
    assert counts == {"alpha": 1, "beta": 1}, r.stderr[-2000:]


def test_bin_scripts_extend_the_generated_script() -> None:
    """microvm.nix's handbook: `microvm.binScripts.tap-up = lib.mkAfter ''…''` adds to the
    tap creation; it must not replace it."""
    runner = build(host("alphaRunner"))
    tap_up = (runner / "bin/tap-up").read_text()
    generated = tap_up.index("ip tuntap add name vm-alpha mode tap")
    extra = tap_up.index('echo "EXTRA-TAP-UP $1"')
    assert generated < extra
    assert tap_up.count("set -euo pipefail") == 1
    hello = (runner / "bin/hello").read_text()
    assert hello.startswith("#!") and "set -euo pipefail\necho hello" in hello
    assert (runner / "bin/hello").stat().st_mode & 0o111


def test_bin_scripts_cannot_extend_scripts_that_end_in_exec_or_exit(tmp_path: Path) -> None:
    """The names Nix refuses (nix/lib: closedScripts) are exactly the generated scripts whose
    last command is exec or exit: lines appended there would never run."""
    closed = json.loads(nix_eval(
        "(import ../../nix/lib { lib = import <nixpkgs/lib>; }).closedScripts").stdout)
    always: dict[str, bool] = {}
    for i, doc in enumerate(DOCS.values()):
        out = runner.write(from_document(doc), tmp_path / f"r{i}")
        for script in (out / "bin").iterdir():
            lines = [x.strip() for x in script.read_text().splitlines()
                     if x.strip() and not x.strip().startswith(("#", "fi", "done", "esac"))]
            ends = lines[-1].startswith(("exec ", "exit "))
            always[script.name] = always.get(script.name, True) and ends
    assert sorted(n for n, ends in always.items() if ends) == sorted(closed)
    r = nix_eval(guest_inline(tmp_path, '{ microvm.binScripts.microvm-run = "echo x"; }',
                              "json"), check=False)
    assert r.returncode != 0
    assert "microvm.binScripts.microvm-run: bin/microvm-run is generated" in r.stderr


def test_host_options_shape_the_units() -> None:
    texts = json.loads(nix_eval(
        host("texts", "{ startupTimeout = 42; useNotifySockets = true; }")).stdout)
    unit = texts["microvm@.service"]
    assert "TimeoutStartSec=42\n" in unit
    assert "Type=notify\n" in unit and "notify-relay" in unit
    unit = json.loads(nix_eval(host("texts")).stdout)["microvm@.service"]
    assert "TimeoutStartSec=150\n" in unit and "Type=exec\n" in unit


def _normal(sections: units.Sections) -> units.Sections:
    """A parsed unit as systemd reads it, whoever wrote it: [Install] left out (NixOS enables
    units with links of its own), lists of unit names as words, Environment= unquoted and
    sorted (NixOS writes `environment` quoted, by name)."""
    out: units.Sections = {}
    for name, keys in sections.items():
        if name == "Install":
            continue
        section = out.setdefault(name, {})
        for key, values in keys.items():
            if key in NAME_LISTS:
                values = [w for v in values for w in v.split()]
            elif key == "Environment":
                values = sorted(json.loads(v) if v.startswith('"') else v for v in values)
            section[key] = values
    return out


NAME_LISTS = {"After", "Before", "Requires", "Wants", "PartOf", "BindsTo", "Conflicts",
              "Requisite"}


@pytest.mark.parametrize("options", [
    units.UnitOptions(),
    units.UnitOptions(state_dir="/srv/vms", user="vmuser", group="vmgroup", start_timeout=42,
                      readiness=units.Readiness.VSOCK)], ids=["default", "custom"])
def test_nixos_unit_definitions_are_the_rendered_units(options: units.UnitOptions) -> None:
    """NixOS declares the units every VM uses (systemd.services/targets, from nix/lib/units.json)
    and a unit of its own for each declared VM; in the unit directory NixOS makes of them, each
    means what `microvm units` renders from the same templates, with the same helpers."""
    tree = build(host(
        "tree", f"{{ startupTimeout = {options.start_timeout}; user = {json.dumps(options.user)}; "
        + f"useNotifySockets = {json.dumps(options.readiness == units.Readiness.VSOCK)}; "
        + f"group = {json.dumps(options.group)}; }}",
        f"{{ microvm.stateDir = {json.dumps(options.state_dir)}; }}"))
    libexec = os.readlink(tree / "install-microvm-alpha.service").rsplit(
        "/lib/systemd/", 1)[0] + "/libexec/microvm"
    # the `microvm` command microvm-networks runs: the host's package's
    package = json.loads(nix_eval(host("config.microvm.host.package.outPath")).stdout)
    rendered = units.build(dataclasses.replace(options, command=f"{package}/bin/microvm"),
                           libexec)
    for name in units.NIXOS_UNITS:
        text = rendered[f"{units.UNIT_DIR}/{name}"]
        assert isinstance(text, tuple)
        assert not (tree / f"{name}.d").exists(), name  # a definition, not a drop-in
        assert _normal(units.parse_unit((tree / name).read_text())) == _normal(
            units.parse_unit(text[0])), name
    # a declared VM's unit is the template's, with the package's drop-in on top
    for vm in ("alpha", "beta"):
        assert _normal(units.parse_unit((tree / f"microvm@{vm}.service").read_text())) == \
            _normal(units.parse_unit((tree / "microvm@.service").read_text()))
        assert (tree / f"microvm@{vm}.service.d/50-declared.conf").exists()
        assert (tree / f"microvms.target.wants/microvm@{vm}.service").is_symlink()
    assert (tree / "multi-user.target.wants/microvms.target").is_symlink()


OVERRIDES = """{ lib, ... }: {
  systemd.services."microvm@alpha" = {
    serviceConfig.ExecStop = lib.mkForce [ "/bin/true" ];
    serviceConfig.TimeoutStopSec = 7;
    serviceConfig.SystemCallFilter = lib.mkAfter [ "@mount" ];
    after = [ "x.service" ];
    requires = [ "y.service" ];
    restartIfChanged = false;
    environment.MICROVM_SHUTDOWN_TIMEOUT = "30";
    environment.EXTRA = "1";
  };
  systemd.services."microvm@".serviceConfig.LimitNOFILE = lib.mkForce 4096;
  systemd.services."microvm@".serviceConfig.TimeoutStopSec = 11;
  systemd.services."microvm@".environment.MICROVM_SHUTDOWN_TIMEOUT = "9";
  systemd.services."microvm@".description = "VM %i";
}"""


def effective(tree: Path, name: str) -> units.Sections:
    """A unit as systemd loads it from the directory NixOS links: its own file (for an
    instance without one, its template's), then its drop-ins in name order; a setting's values
    add up, an empty value empties it (for a setting systemd takes once, the last counts)."""
    own = tree / name
    if not own.exists():
        own = tree / re.sub(r"@[^.]*\.", "@.", name)
    merged: units.Sections = {}
    for path in [own, *sorted((tree / f"{name}.d").glob("*.conf"))]:
        for section, keys in units.parse_unit(path.read_text()).items():
            for key, values in keys.items():
                for value in values:
                    if value == "":
                        merged.setdefault(section, {})[key] = []
                    else:
                        merged.setdefault(section, {}).setdefault(key, []).append(value)
    return merged


def words(values: list[str]) -> list[str]:
    return [w for v in values for w in v.split()]


def test_a_users_override_of_a_vms_unit_acts_as_on_any_nixos_service() -> None:
    """`systemd.services."microvm@NAME"` as microvm.nix users write it, checked on the units
    NixOS would write: lib.mkForce replaces the module's value (one ExecStop=), a plain
    definition adds (after, requires; for a setting systemd takes once, the last line wins),
    lib.mkAfter appends, restartIfChanged and environment are NixOS's; an override of
    microvm@ reaches the declared VMs too."""
    tree = build(host("tree", user_module=OVERRIDES))
    alpha = effective(tree, "microvm@alpha.service")
    service, unit = alpha["Service"], alpha["Unit"]
    assert service["ExecStop"] == ["/bin/true"]
    assert service["TimeoutStopSec"][-2:] == ["11", "7"]
    assert service["SystemCallFilter"][-1] == "@mount" and len(service["SystemCallFilter"]) == 4
    after = words(unit["After"])
    assert "x.service" in after and "microvm-set-booted@%i.service" in after
    assert set(words(unit["Requires"])) == {
        "y.service", "install-microvm-alpha.service", *(f"{d}@%i.service" for d in
                                                       units.DEPENDENCIES)}
    assert service["X-RestartIfChanged"] == ["false"]
    env = [json.loads(v) if v.startswith('"') else v for v in service["Environment"]]
    assert "MICROVM_SHUTDOWN_TIMEOUT=30" in env and "EXTRA=1" in env
    assert not any(e.startswith("MICROVM_SHUTDOWN_TIMEOUT=6") for e in env)
    assert service["LimitNOFILE"] == ["4096"]
    # the other VM keeps the defaults, but has the override of microvm@
    beta = effective(tree, "microvm@beta.service")["Service"]
    assert beta["ExecStop"] == ["-%S/microvms/.control/%i/booted/bin/microvm-shutdown"]
    assert beta["LimitNOFILE"] == ["4096"] and "X-RestartIfChanged" not in beta
    assert beta["TimeoutStopSec"][-1] == "11"
    assert '"MICROVM_SHUTDOWN_TIMEOUT=9"' in beta["Environment"]
    assert effective(tree, "microvm@beta.service")["Unit"]["Description"] == ["VM %i"]
    # a VM made with `microvm create` runs the template, with the override of microvm@
    made = effective(tree, "microvm@made.service")["Service"]
    assert made["LimitNOFILE"] == ["4096"] and len(made["ExecStop"]) == 1


def guest(configuration: str, attr: str) -> str:
    return (f"(import ./eval.nix {{ configuration = ./dropin/{configuration}.nix; " +
            f"python = {json.dumps(sys.executable)}; repo = {json.dumps(str(REPO))}; }}).{attr}")


def test_a_users_needed_for_boot_on_a_share_or_volume_is_no_conflict() -> None:
    """The module leaves neededForBoot alone where it does not need it (as microvm.nix, which
    only ever sets true), so a user's `fileSystems."/etc/ssh".neededForBoot = true` on a share
    (or a volume) evaluates instead of failing with conflicting definitions."""
    fs = json.loads(nix_eval(guest("needed-for-boot", "glue.fileSystems")).stdout)
    assert fs["/etc/ssh"]["neededForBoot"] is True
    assert (fs["/etc/ssh"]["device"], fs["/etc/ssh"]["fsType"]) == ("ssh", "virtiofs")
    assert fs["/var/lib/data"]["neededForBoot"] is True


FAKE_SSH = """#!/bin/bash
# ssh TARGET -- COMMAND: what a remote shell would do with the one command line it gets
echo "ssh-target $1" >> "$LOG"
shift; [ "$1" = -- ] && shift
exec bash -c "$*"
"""
FAKE_LOGGER = """#!/bin/bash
printf '%s' "$(basename "$0")" >> "$LOG"; printf ' [%s]' "$@" >> "$LOG"; echo >> "$LOG"
"""


def test_deploy_scripts_install_create_then_update_and_switch(tmp_path: Path) -> None:
    """installOnHost copies the runner and runs `microvm create` the first time, `microvm
    update --runner` after; sshSwitch checks the host name and switches (stand-ins for ssh,
    nix, microvm, nix-env that log what they get; ssh runs the remote command line locally)."""
    scripts = {name: build(guest("deploy", f"config.microvm.deploy.{name}"))
               for name in ("installOnHost", "sshSwitch", "rebuild")}
    runner = build(guest("deploy", "runner"))
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ssh").write_text(FAKE_SSH)
    for tool in ("nix", "microvm", "nix-env", "cat"):
        (fake / tool).write_text(FAKE_LOGGER)
    (fake / "cat").write_text('#!/bin/bash\necho deployed\n')  # /etc/hostname of the VM
    for f in fake.iterdir():
        f.chmod(0o755)
    log, state = tmp_path / "log", tmp_path / "state"
    env = {"PATH": f"{fake}:/usr/bin:/bin", "LOG": str(log), "MICROVM_STATE_DIR": str(state)}

    def run(script: str, *args: str) -> list[str]:
        log.write_text("")
        exe = scripts[script] / "bin" / {"installOnHost": "microvm-install-on-host",
                                         "sshSwitch": "microvm-switch",
                                         "rebuild": "microvm-rebuild"}[script]
        p = subprocess.run([str(exe), *args], env=env, text=True, capture_output=True)
        assert p.returncode == 0, p.stderr
        return log.read_text().splitlines()

    first = run("installOnHost", "root@host")
    assert first == ["nix [copy] [--to] [ssh-ng://root@host] " + f"[{runner}]",
                     "ssh-target root@host",
                     f"microvm [create] [deployed] [--runner] [{runner}]"]
    (state / "deployed" / "current").mkdir(parents=True)
    again = run("installOnHost", "root@host")
    assert again[-1] == f"microvm [update] [deployed] [--runner] [{runner}]"
    switch = run("sshSwitch", "root@vm", "test")
    assert switch[0].startswith("nix [copy] [--to] [ssh-ng://root@vm] [/nix/store/")
    assert switch[2].startswith("nix-env [-p] [/nix/var/nix/profiles/system] [--set]")
    assert switch[3] == "switch-to-configuration [test]"
    both = run("rebuild", "root@host", "root@vm")
    assert [x.split(" [")[0] for x in both] == ["nix", "ssh-target root@host", "microvm",
                                              "nix", "ssh-target root@vm", "nix-env",
                                              "switch-to-configuration"]
    bad = subprocess.run([str(scripts["installOnHost"] / "bin/microvm-install-on-host")],
                         env=env, text=True, capture_output=True)
    assert bad.returncode == 2 and "usage:" in bad.stderr
    for s in scripts.values():
        for exe in (s / "bin").iterdir():
            r = subprocess.run(["shellcheck", "-s", "bash", str(exe)], text=True,
                               capture_output=True)
            assert r.returncode == 0, r.stdout


def test_removed_and_compat_options(tmp_path: Path) -> None:
    r = nix_eval(guest_inline(tmp_path, "{ microvm.balloonMem = 512; }", "json"), check=False)
    assert r.returncode != 0 and "microvm.balloon (a boolean)" in r.stderr
    r = nix_eval(guest_inline(tmp_path, "{ microvm.vsock.ssh.enable = true; }", "json"),
                 check=False)
    assert r.returncode != 0
    assert "microvm.vsock.ssh.enable: needs microvm.vsock.cid" in r.stderr
    ok = json.loads(nix_eval(guest_inline(
        tmp_path, "{ microvm.vsock.ssh.enable = true; microvm.vsock.cid = 5; }",
        "config.services.openssh.enable")).stdout)
    assert ok is True


def test_a_volume_made_in_another_format_puts_qemu_img_on_the_runners_path(
        tmp_path: Path) -> None:
    """The runner writes a missing qcow2 (vhd, vhdx) volume with qemu-img: the Nix runner's
    PATH has it then (qemu-utils), and not for raw volumes or ones it does not create."""
    def path(volumes: str) -> list[str]:
        doc = json.loads(json.loads(nix_eval(guest_inline(
            tmp_path, f"{{ microvm.volumes = [ {volumes} ]; }}", "json")).stdout))
        return [p for p in doc["runtimePath"] if "qemu-utils" in p]

    qcow2 = '{ image = "a.qcow2"; mountPoint = "/a"; imageType = "qcow2"; '
    assert len(path(qcow2 + "size = 8; }")) == 1
    assert path('{ image = "a.img"; mountPoint = "/a"; size = 8; }') == []
    assert path(qcow2 + "autoCreate = false; }") == []


LIB_CASES = """{
  a = m.extractOptValues "-b" ["-a" "a" "-b" "b" "-c" "c" "-b" "b2"];
  b = m.extractOptValues ["-p" "-platform"] ["-p" "short" "-vnc" ":0" "-platform" "long" "-usb"];
  c = m.extractOptValues ["-p"] ["-vnc" ":0" "-usb"];
  d = m.extractOptValues "-x" [];
  e = m.extractParamValue "socket" "cid=5,socket=notify.vsock";
  f = m.extractParamValue "socket" "cid=5";
  g = m.extractParamValue "cid" "cid=5,socket=notify.vsock";
  h = m.extractParamValue "socket" "";
  i = m.withDriveLetters { volumes = [ { image = "a"; } { image = "b"; } ]; storeOnDisk = true; };
  j = m.withDriveLetters { volumes = [ { image = "a"; } ]; storeOnDisk = false; };
  k = m.defaultFsType;
  l = m.hypervisorsWithNetwork;
  n = m.hypervisors;
}"""


def test_lib_helpers_answer_as_upstreams_do() -> None:
    """The flake's lib helpers microvm.nix users call give what upstream's own lib gives
    (evaluated from its source, as tests/test_upstream.py finds it)."""
    from support.upstream import problem, upstream_src

    if why := problem():
        pytest.skip(why)
    ours = json.loads(nix_eval(
        f"let m = import ../../nix/lib {{ lib = import <nixpkgs/lib>; }}; in {LIB_CASES}").stdout)
    theirs = json.loads(nix_eval(
        f"let m = import {upstream_src()}/lib {{ lib = import <nixpkgs/lib>; }}; " +
        f"in {LIB_CASES}").stdout)
    assert ours == theirs


def test_flake_check_validates_the_example_documents() -> None:
    """`nix flake check` builds checks.<system>.<example>-document: the generator's validation
    of each example, so a bad example fails the check (built here with nix-build)."""
    expr = (f"(import ./flake-eval.nix {{ python = {json.dumps(sys.executable)}; " +
            f"repo = {json.dumps(str(REPO))}; }}).self.checks.x86_64-linux.qemu-demo-document")
    out = build(expr)
    assert out.is_file()


@pytest.mark.parametrize(("flags", "compression"), [
    (None, "zstd"),                     # the default: [ "-c" "zstd" "-j" "$NIX_BUILD_CORES" ]
    ('[ "-c" "xz" ]', "xz"),           # microvm.nix's handbook spelling (gensquashfs)
])
def test_squashfs_store_disk_takes_microvms_flags(tmp_path: Path, flags: str | None,
                                                  compression: str) -> None:
    """storeDiskSquashfsFlags are gensquashfs flags, as in microvm.nix; the image holds the
    closure's store paths at its root (read back with squashfs-tools' unsquashfs)."""
    module = "{ microvm.storeDiskType = \"squashfs\"; " + (
        f"microvm.storeDiskSquashfsFlags = {flags}; " if flags else "") + "}"
    image = build(guest_inline(tmp_path, module, "config.microvm.storeDisk"))
    info = subprocess.run(["unsquashfs", "-s", str(image)], text=True, capture_output=True,
                          check=True).stdout
    assert f"Compression {compression}" in info
    listing = subprocess.run(["unsquashfs", "-l", "-d", "", str(image)], text=True,
                             capture_output=True, check=True).stdout.split()
    assert any(re.fullmatch(r"/[0-9a-z]{32}-nixos-system-nixos", p) for p in listing), listing


@pytest.mark.parametrize(("version", "flags"), [
    ("5.10.0", ["-zlz4hc"]),
    ("5.16.0", ["-zlz4hc", "-Eztailpacking"]),
    ("6.6.1", ["-zlz4hc", "-Eztailpacking", "-Efragments"]),
])
def test_erofs_flags_follow_the_guest_kernel(tmp_path: Path, version: str,
                                             flags: list[str]) -> None:
    module = ("{ boot.kernelPackages = { kernel = { version = \"" + version + "\"; " +
              "outPath = \"/k\"; }; }; }")
    got = json.loads(nix_eval(guest_inline(tmp_path, module,
                                           "config.microvm.storeDiskErofsFlags")).stdout)
    assert got == flags


@pytest.mark.parametrize("host", ["web", "db-01", "alioth-vm"])
def test_machine_id_is_derived_from_the_host_name_on_both_sides(tmp_path: Path,
                                                                 host: str) -> None:
    """Unset, microvm.machineId is derived from the host name as microvm.nix derives it; the
    guest's /etc/machine-id and networking.hostId follow it, and the generator derives the
    same for a document whose machineId is null (QEMU's SMBIOS UUID; the differential test
    compares that UUID with upstream's)."""
    from microvm.config import derived_machine_id

    c = guest_inline(tmp_path, f'{{ networking.hostName = "{host}"; }}', "config")
    got = json.loads(nix_eval(
        f"let c = {c}; in {{ id = c.microvm.machineId; " +
        "etc = c.environment.etc.\"machine-id\".text; host = c.networking.hostId; }").stdout)
    want = derived_machine_id(host)
    assert got == {"id": want, "etc": want.replace("-", "") + "\n",
                   "host": want.replace("-", "")[:8]}


def test_runner_attributes_agree_with_the_backends(tmp_path: Path) -> None:
    """declaredRunner's passthru (canShutdown, supportsNotifySocket, tapMultiQueue,
    hypervisor, machineId, registerWithMachined), as microvm.nix's tooling reads them, say
    what the generator's backends really do, for every hypervisor."""
    from microvm.capabilities import Hypervisor
    from microvm.hypervisors import RunContext, backend
    from microvm.hypervisors.base import queues

    for hv in Hypervisor:
        system = "aarch64-darwin" if hv is Hypervisor.VFKIT else "x86_64-linux"
        for extra in ("", "microvm.vcpu = 2; microvm.vsock.cid = 7; microvm.socket = null;"):
            if hv is Hypervisor.VFKIT and "vsock" in extra:
                continue
            cfg = tmp_path / f"{hv}-{len(extra)}.nix"
            cfg.write_text(f'{{ system = "{system}"; module = {{ microvm.hypervisor = "{hv}"; ' +
                           f'{extra} }}; }}\n')
            expr = (f"let e = import ./eval.nix {{ configuration = {cfg}; " +
                    f"python = {json.dumps(sys.executable)}; repo = {json.dumps(str(REPO))}; }};" +
                    " r = e.config.microvm.declaredRunner; in { inherit (r) canShutdown " +
                    "supportsNotifySocket tapMultiQueue hypervisor machineId " +
                    "registerWithMachined; doc = e.uncheckedJson; }")
            facts = json.loads(nix_eval(expr).stdout)
            vm = from_document(json.loads(facts.pop("doc")))
            be = backend(vm.hypervisor)
            launch = be.launch(vm, RunContext("/r"))
            text = json.dumps([launch.variants, launch.files])
            assert facts == {
                "canShutdown": be.shutdown(vm) is not None,
                "supportsNotifySocket": "vmm.notify_socket" in text,
                "tapMultiQueue": queues(vm) > 1,
                "hypervisor": str(hv),
                "machineId": vm.machine_uuid,
                "registerWithMachined": False,
            }, (hv, extra)


def test_host_build_refuses_two_declared_vms_sharing_a_vsock_cid() -> None:
    """The host's unit package checks its declared VMs together (microvm validate-host) and
    fails the build naming both VMs; distinct CIDs build (test_host_options_shape_the_units)."""
    expr = (f"(import ./dropin/host.nix {{ python = {json.dumps(sys.executable)}; " +
            f"repo = {json.dumps(str(REPO))}; betaCid = 10; }}).units")
    r = subprocess.run(["nix-build", *NIX_OPTS, "--no-out-link", "-E", expr], cwd=NIXDIR,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "beta-host: microvm.vsock.cid: vsock CID '10' is also used by alpha" in r.stderr, \
        r.stderr[-3000:]


UPDATE_FLAKE_HOST = """
let
  lib = import <nixpkgs/lib>;
  pkgs = import ./pkgs-standin.nix { inherit lib python repo; };
  guest = import ./fake-nixpkgs/nixos/lib/eval-config.nix {
    inherit pkgs;
    modules = [ ../../nix/modules/microvm { networking.hostName = "web"; } ];
  };
  host = vms: (lib.evalModules {
    modules = [ ./stub.nix ../../nix/modules/host.nix { _module.args.pkgs = pkgs; }
      { microvm.vms = vms; } ];
  }).config;
  failed = c: map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
  flakeVm = {
    flake = { outPath = "/nix/store/00000000000000000000000000000000-source";
              nixosConfigurations.web = guest; };
    updateFlake = "git+file:///etc/nixos";
  };
  ok = host { web = flakeVm; };
in {
  declared = map (vm: { inherit (vm) name updateFlake restartIfChanged; })
    (lib.head ok.systemd.packages).unitArgs.declared;
  okFailed = failed ok;
  units = lib.head ok.systemd.packages;
  inlineFailed = failed (host { web = { config = { }; updateFlake = "path:/x"; }; });
}
"""


def test_update_flake_reaches_the_install_unit() -> None:
    """microvm.vms.NAME.updateFlake (microvm.nix: recorded for `microvm -u`, the VM installed
    once) is handed to the unit generator; a VM declared with `config` cannot have one."""
    got = json.loads(nix_eval(f"let python = {json.dumps(sys.executable)}; repo = " +
                              f"{json.dumps(str(REPO))}; in {UPDATE_FLAKE_HOST}").stdout)
    assert got["declared"] == [{"name": "web", "updateFlake": "git+file:///etc/nixos",
                                "restartIfChanged": False}]
    assert got["okFailed"] == []
    assert any(m.startswith("microvm.vms.web.updateFlake: only a VM built from `flake`")
               for m in got["inlineFailed"]), got["inlineFailed"]
    # the units package built by the generator (microvm units --update-flake)
    units = build(f"(let python = {json.dumps(sys.executable)}; repo = " +
                  f"{json.dumps(str(REPO))}; in {UPDATE_FLAKE_HOST}).units")
    install = (units / "lib/systemd/system/install-microvm-web.service").read_text()
    assert "ConditionPathExists=!%S/microvms/.control/web/current\n" in install
    assert re.search(r"^ExecStart=\S+/install-runner web /nix/store/\S+ false "
                     + r"git\+file:///etc/nixos$", install, re.M), install


MACVTAP_CASES = """{
  one = m.makeMacvtap {
    microvmConfig = { vcpu = 4; interfaces = [
      { type = "tap"; id = "vm-t"; }
      { type = "macvtap"; id = "vm-a"; }
      { type = "user"; id = "u"; }
      { type = "macvtap"; id = "vm-b"; }
    ]; };
    hypervisorConfig = { };
  };
  multi = m.makeMacvtap {
    microvmConfig = { vcpu = 3; interfaces = [
      { type = "macvtap"; id = "vm-a"; } { type = "macvtap"; id = "vm-b"; } ]; };
    hypervisorConfig = { tapMultiQueue = true; };
  };
  none = m.makeMacvtap {
    microvmConfig = { vcpu = 2; interfaces = [ ]; };
    hypervisorConfig = { tapMultiQueue = true; };
  };
}"""


def test_make_macvtap_means_what_upstreams_does() -> None:
    """lib.makeMacvtap { microvmConfig, hypervisorConfig }: the same descriptor numbers per
    interface and the same devices opened on them as microvm.nix's own lib gives."""
    from support.upstream import problem, upstream_src

    if why := problem():
        pytest.skip(why)
    ours = json.loads(nix_eval(
        f"let m = import ../../nix/lib {{ lib = import <nixpkgs/lib>; }}; in {MACVTAP_CASES}"
    ).stdout)
    theirs = json.loads(nix_eval(
        f"let m = import {upstream_src()}/lib {{ lib = import <nixpkgs/lib>; }}; " +
        f"in {MACVTAP_CASES}").stdout)
    opened = re.compile(r"^exec (\d+)<>/dev/tap\$\(< /sys/class/net/'?([^/']+)'?/ifindex\)$")

    def opens(script: str) -> list[tuple[str, str]]:
        return [m.groups() for line in script.splitlines()  # type: ignore[misc]
                if (m := opened.match(line.strip()))]

    for case in ("one", "multi", "none"):
        assert ours[case]["macvtapFds"] == theirs[case]["macvtapFds"], case
        assert opens(ours[case]["openMacvtapFds"]) == opens(theirs[case]["openMacvtapFds"])
    assert ours["multi"]["macvtapFds"] == {"vm-a": [3, 4, 5], "vm-b": [6, 7, 8],
                                           "nextFreeFd": 9}
    assert len(opens(ours["multi"]["openMacvtapFds"])) == 6


def test_build_runner_takes_upstreams_arguments(tmp_path: Path) -> None:
    """lib.buildRunner { pkgs, microvmConfig, toplevel }, called as microvm.nix's guest module
    calls it, gives the very runner the guest module builds (same derivation); a problem (here
    vfkit on Linux) fails its build in the check, as it does for microvm.runner.<hypervisor>."""
    c = guest_inline(tmp_path, '{ networking.hostName = "web"; microvm.hypervisor = ' +
                     '"cloud-hypervisor"; microvm.vsock.cid = 9; }', "config")
    expr = (f"let c = {c}; m = import ../../nix/lib {{ lib = import <nixpkgs/lib>; }}; " +
            "built = m.buildRunner { pkgs = c.microvm.vmHostPackages; " +
            "microvmConfig = c.microvm // { inherit (c.networking) hostName; " +
            "hypervisor = \"cloud-hypervisor\"; }; toplevel = c.system.build.toplevel; }; " +
            "in { same = built.drvPath == c.microvm.declaredRunner.drvPath; " +
            "inherit (built) hypervisor supportsNotifySocket registerWithMachined; " +
            "}")
    got = json.loads(nix_eval(expr).stdout)
    assert got == {"same": True, "hypervisor": "cloud-hypervisor",
                   "supportsNotifySocket": True, "registerWithMachined": False}
    bad = (f"let c = {c}; m = import ../../nix/lib {{ lib = import <nixpkgs/lib>; }}; in " +
           "m.buildRunner { pkgs = c.microvm.vmHostPackages; microvmConfig = c.microvm // " +
           "{ hostName = c.networking.hostName; hypervisor = \"vfkit\"; }; " +
           "toplevel = c.system.build.toplevel; }")
    r = subprocess.run(["nix-build", *NIX_OPTS, "--no-out-link", "-E", bad], cwd=NIXDIR,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "-check.drv' failed" in r.stderr, r.stderr[-3000:]
    assert "error: microvm.hypervisor: vfkit" in r.stderr, r.stderr[-3000:]


def test_template_input_resolves_through_the_documented_registry_name(tmp_path: Path) -> None:
    """The template's microvm input is no placeholder: `nix flake init -t REF` plus the one
    step docs/quickstart.md names (`nix registry add microvm-generator REF`) locks it to this
    project (real `nix flake lock`; nixpkgs is a stand-in flake, nothing is fetched). The
    template's outputs are evaluated with this flake by tests/test_nix.py (flake-eval.nix)."""
    import shutil

    template = (REPO / "flake-templates/default/flake.nix").read_text()
    m = re.search(r'microvm\.url = "flake:([\w-]+)";', template)
    assert m, "the template's microvm input is not a registry name"
    name = m.group(1)
    quickstart = (REPO / "docs/quickstart.md").read_text()
    assert f"nix registry add {name} " in quickstart
    # this project as a flake: flake.nix and what it refers to (nix/, flake-templates/)
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "flake.nix", project)
    for d in ("nix", "flake-templates"):
        shutil.copytree(REPO / d, project / d)
    fake = tmp_path / "nixpkgs"
    fake.mkdir()
    (fake / "flake.nix").write_text("{ outputs = _: { }; }\n")
    host = tmp_path / "host"
    shutil.copytree(REPO / "flake-templates/default", host)
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"version": 2, "flakes": [
        {"from": {"type": "indirect", "id": name}, "to": {"type": "path", "path": str(project)}},
    ]}))
    r = subprocess.run(["nix", "--extra-experimental-features", "nix-command flakes",
                        "--option", "flake-registry", str(registry), "flake", "lock",
                        "--override-input", "nixpkgs", f"path:{fake}"],
                       cwd=host, capture_output=True, text=True, timeout=120)
    if r.returncode != 0 and "experimental" in r.stderr:
        pytest.skip(f"nix flakes do not work here: {r.stderr.strip()[:200]}")
    assert r.returncode == 0, r.stderr[-2000:]
    lock = json.loads((host / "flake.lock").read_text())
    microvm = lock["nodes"][lock["nodes"]["root"]["inputs"]["microvm"]]
    assert microvm["original"] == {"id": name, "type": "indirect"}
    assert microvm["locked"]["type"] == "path"
    assert microvm["locked"]["path"] == str(project) and microvm["locked"]["narHash"]
    assert microvm["inputs"]["nixpkgs"] == ["nixpkgs"]  # follows the host's nixpkgs


def test_the_microvm_command_is_installed_unless_turned_off() -> None:
    """microvm.host.installCommand (microvm.nix made its command optional, default on): the
    generator is in environment.systemPackages by default and not when it is false, while the
    units still run the same generator."""
    def get(attr: str, options: str = "{ }") -> Any:
        return json.loads(nix_eval(host(attr, host_options=options)).stdout)

    packages = "config.environment.systemPackages"
    assert [p.endswith("-microvm-generator") for p in get(packages)] == [True]
    assert get(packages, "{ installCommand = false; }") == []
    reconcile = "config.systemd.services.microvm-reconcile.serviceConfig.ExecStart"
    assert get(reconcile, "{ installCommand = false; }") == get(reconcile)


def test_network_interfaces_derive_the_same_tap_and_mac_in_nix_and_python() -> None:
    """A type = "network" interface's tap name and MAC: the Nix module's (nix/lib) and the
    generator's (netplan.py) over 300 random network and host names."""
    import random
    import string

    from microvm import netplan

    rng = random.Random(23)
    cases = [("".join(rng.choice(string.ascii_lowercase + string.digits)
                      for _ in range(rng.randint(1, 31))),
              "".join(rng.choice(string.ascii_letters + string.digits + "-_.")
                      for _ in range(rng.randint(1, 63)))) for _ in range(300)]
    expr = ("let m = import ../../nix/lib { lib = import <nixpkgs/lib>; }; in map (c: " +
            "[ (m.netTapName c) (m.netMac c) ]) (builtins.fromJSON " +
            json.dumps(json.dumps([{"network": n, "hostName": h} for n, h in cases])) + ")")
    got = json.loads(nix_eval(expr).stdout)
    assert got == [[netplan.tap_name(n, h), netplan.mac_address(n, h)] for n, h in cases]


def test_a_guests_network_interface_is_written_as_the_generator_reads_it(tmp_path: Path) -> None:
    """The NixOS guest writes a network interface's derived id and mac into vm.json, and they
    are what the generator derives for the same document without them; a tap without its id
    fails evaluation with the reason."""
    from microvm import netplan

    doc = json.loads(json.loads(nix_eval(guest_inline(
        tmp_path, '{ networking.hostName = "web"; microvm.interfaces = [ { type = "network"; ' +
        'network = "lan"; } ]; }', "json")).stdout))
    [iface] = doc["microvm"]["interfaces"]
    assert (iface["id"], iface["mac"], iface["network"]) == (
        netplan.tap_name("lan", "web"), netplan.mac_address("lan", "web"), "lan")
    bare = {**doc, "microvm": {**doc["microvm"], "interfaces": [
        {"type": "network", "network": "lan"}]}}
    assert from_document(bare).interfaces == from_document(doc).interfaces
    r = nix_eval(guest_inline(tmp_path, '{ microvm.interfaces = [ { type = "tap"; ' +
                              'mac = "02:00:00:00:00:01"; } ]; }', "json"), check=False)
    assert r.returncode != 0
    assert "an interface of type tap needs its id" in r.stderr


def test_a_guest_configures_its_network_interface_by_mac(tmp_path: Path) -> None:
    """The guest's systemd-networkd takes the network interface by its (derived) MAC, by DHCP
    and router advertisements; a guest without one gets no network configuration from us."""
    from microvm import netplan

    got = json.loads(nix_eval(guest_inline(
        tmp_path, '{ networking.hostName = "web"; microvm.interfaces = [ { type = "network"; ' +
        'network = "lan"; } { type = "tap"; id = "t0"; mac = "02:00:00:00:00:09"; } ]; }',
        "config.systemd.network")).stdout)
    assert got["enable"] is True
    assert got["networks"] == {"10-microvm-lan": {
        "matchConfig": {"MACAddress": netplan.mac_address("lan", "web")},
        "networkConfig": {"DHCP": "ipv4", "IPv6AcceptRA": True}}}
    none = json.loads(nix_eval(guest_inline(tmp_path, "{ }", "config.systemd.network")).stdout)
    assert "networks" not in none and "enable" not in none
