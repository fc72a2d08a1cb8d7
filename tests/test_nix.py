"""The Nix side: guest and host modules, nix/lib, flake.nix, without nixpkgs.

The modules are evaluated with `lib.evalModules`, a stub of the NixOS options they touch
(tests/nix/stub.nix) and a stand-in package set (tests/nix/pkgs-standin.nix). Needs `nix` and
`<nixpkgs/lib>` on NIX_PATH (e.g. NIX_PATH=nixpkgs=/opt/nixpkgs-lib); skips otherwise.
MICROVM_UPDATE_GOLDEN=1 rewrites tests/nix/golden/*.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from support import REPO, vmtest
from support.nixeval import NIX_OPTS, NIXDIR, nix_args, nix_eval, nix_json, nix_problem, validate

GOLDEN = NIXDIR / "golden"
CONFIGS = sorted(p.stem for p in (NIXDIR / "configs").glob("*.nix"))
UPDATE = os.environ.get("MICROVM_UPDATE_GOLDEN") == "1"
SCHEMA = json.loads((REPO / "generator/microvm/schema/vm.schema.json").read_text())
STORE_HASH = re.compile(r"/nix/store/[0-9a-df-np-sv-z]{32}-")

sys.path.insert(0, str(REPO / "nix" / "lib"))
import export_capabilities  # noqa: E402

pytestmark = [pytest.mark.nix]


@pytest.fixture(autouse=True)
def _need_nix() -> None:
    if why := nix_problem():
        pytest.skip(why)


def normalise(value: Any) -> Any:
    """Store hashes out of everything (the stand-ins' paths are not what is under test)."""
    return json.loads(STORE_HASH.sub("/nix/store/<hash>-", json.dumps(value)))


def check_golden(name: str, value: Any) -> None:
    path = GOLDEN / name
    text = json.dumps(normalise(value), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if UPDATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if not UPDATE:
            pytest.fail(f"wrote missing golden file {path}; review and commit it")
    assert text == path.read_text(), f"{path} differs (MICROVM_UPDATE_GOLDEN=1 rewrites it)"


# -- files -----------------------------------------------------------------------------------

def nix_files() -> list[Path]:
    roots = [REPO / "flake.nix", REPO / "nix", REPO / "flake-templates", NIXDIR]
    return sorted(p for r in roots for p in ([r] if r.is_file() else r.rglob("*.nix")))


def test_every_nix_file_parses() -> None:
    files = nix_files()
    assert len(files) > 20
    for f in files:
        r = subprocess.run(["nix-instantiate", "--parse", str(f)], capture_output=True, text=True)
        assert r.returncode == 0, f"{f}: {r.stderr}"


# -- the guest module on example configurations -----------------------------------------------

@pytest.fixture(scope="module")
def examples() -> dict[str, Any]:
    """Every tests/nix/configs/*.nix evaluated in one nix call."""
    if why := nix_problem():
        pytest.skip(why)
    attrs = " ".join(f'"{n}" = let e = import ./eval.nix {{ configuration = ./configs/{n}.nix; ' +
                     'inherit python repo; }; in { inherit (e) json uncheckedJson glue; };'
                     for n in CONFIGS)
    found: dict[str, Any] = nix_json(f"{{ {attrs} }}")
    return found


def test_configurations_cover_every_hypervisor(examples: dict[str, Any]) -> None:
    assert len(examples) >= 5
    used = {json.loads(e["json"])["microvm"]["hypervisor"] for e in examples.values()}
    assert used == set(export_capabilities.export()["hypervisors"])


@pytest.mark.parametrize("name", CONFIGS)
def test_document_validates_and_matches_golden(name: str, examples: dict[str, Any],
                                               tmp_path: Path) -> None:
    e = examples[name]
    assert e["json"] == e["uncheckedJson"]
    r = validate(e["json"], tmp_path)
    assert r.returncode == 0, r.stderr
    check_golden(f"{name}.json", json.loads(e["json"]))
    check_golden(f"{name}.glue.json", e["glue"])


def test_document_holds_only_its_own_hypervisors_settings(examples: dict[str, Any]) -> None:
    """microvm.<hypervisor>.* of the other hypervisors stay out of a VM's document (no runner
    reads them; each would cost an option evaluation); microvm.runner.<other> has its own."""
    groups = set(export_capabilities.export()["hypervisors"]) & set(
        SCHEMA["properties"]["microvm"]["properties"])
    assert len(groups) == 8
    for e in examples.values():
        m = json.loads(e["json"])["microvm"]
        assert groups & set(m) == {m["hypervisor"]}
    own = nix_json("let e = import ./eval.nix { configuration = ./configs/firecracker.nix; " +
                   "inherit python repo; }; m = e.config.microvm; in map (r: " +
                   "builtins.attrNames r.document.microvm) [ m.runner.qemu m.declaredRunner ]")
    assert [groups & set(names) for names in own] == [{"qemu"}, {"firecracker"}]


def test_the_check_needs_nothing_of_the_guest() -> None:
    """The runner depends on a check (`microvm validate` on its document: nix/lib/runner.nix)
    whose only input is the generator, so Nix can build it before the guest's system: a bad
    option fails within seconds. Every example's check and toplevel evaluate, and the check's
    inputs name neither the toplevel nor the kernel."""
    evals = [f"(import ./eval.nix {{ configuration = ./configs/{n}.nix; inherit python repo; }})"
             for n in CONFIGS]
    toplevels = nix_json("[ " + " ".join(f"{e}.config.system.build.toplevel.drvPath"
                                          for e in evals) + " ]")
    r = subprocess.run(["nix-instantiate", *nix_args(), "-E",
                        "{ python, repo }: [ " + " ".join(f"{e}.check" for e in evals) + " ]"],
                       cwd=NIXDIR, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    checks = r.stdout.split()
    assert len(checks) == len(toplevels) == len(CONFIGS)
    for name, check, toplevel in zip(CONFIGS, checks, toplevels, strict=True):
        assert check.endswith("-check.drv") and toplevel.endswith(".drv"), name
        needed = subprocess.run(["nix-store", "--query", "--requisites", check],
                                capture_output=True, text=True, check=True).stdout.split()
        assert toplevel not in needed, name
        assert not [p for p in needed if "linux" in p or "nixos-system" in p], (name, needed)
        assert [p for p in needed if p.endswith("-microvm-generator.drv")], (name, needed)


def test_runner_and_store_disk_are_built_locally() -> None:
    """As microvm.nix (its runner since PR 593, its store disk before), the runner and the store
    disk are runCommandLocal derivations: preferLocalBuild, never substituted, so a remote
    builder is not sent the store disk to write a few scripts."""
    got = nix_json("let m = (import ./eval.nix { configuration = ./configs/firecracker.nix; " +
                   "inherit python repo; }).config.microvm; in map (d: { inherit (d) name; " +
                   "local = d.preferLocalBuild or false; subst = d.allowSubstitutes or true; }) " +
                   "[ m.declaredRunner m.storeDisk ]")
    assert [(g["local"], g["subst"]) for g in got] == [(True, False)] * 2, got
    assert got[1]["name"].startswith("microvm-store-disk."), got


def nix_build(expr: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nix-build", *NIX_OPTS, "--no-out-link", *nix_args(), "-E", expr],
                          cwd=NIXDIR, capture_output=True, text=True, timeout=300)


def test_kernel_file_per_hypervisor(examples: dict[str, Any]) -> None:
    kernels = {n: json.loads(e["json"])["microvm"]["kernel"].split("-", 1)[1]
               for n, e in examples.items()}
    assert kernels["qemu-full"] == "linux-standin/bzImage"
    assert kernels["kvmtool"] == kernels["alioth"] == "linux-standin/bzImage"
    assert kernels["cloud-hypervisor"] == kernels["firecracker"] == kernels["crosvm"] == (
        "linux-standin-dev/vmlinux")
    assert kernels["stratovirt"] == kernels["vfkit"] == "linux-standin/Image"


def test_guest_file_systems(examples: dict[str, Any]) -> None:
    fs = examples["qemu-full"]["glue"]["fileSystems"]
    assert fs["/nix/.ro-store"]["device"] == "/dev/disk/by-id/virtio-store"
    assert fs["/nix/store"]["overlay"]["upperdir"] == "/nix/.rw-store/store"
    assert fs["/nix/.rw-store"]["device"] == "/dev/disk/by-id/virtio-rw-store"
    assert fs["/nix/.rw-store"]["neededForBoot"] is True
    assert fs["/data"]["device"] == "/dev/disk/by-label/data"
    assert fs["/scratch"]["device"] == "/dev/vdd"  # store disk, two volumes, then this one
    assert fs["/home/alice"]["fsType"] == "9p"
    assert "ro" in fs["/etc/vm-config"]["options"]
    fc = examples["firecracker"]["glue"]["fileSystems"]
    # the store disk's file system module is loaded before it is mounted (as in microvm.nix)
    # (the stub has NixOS's fileSystems types: every option is there; x-initrd.mount is NixOS's
    # own for a file system the initrd mounts)
    assert {k: fc["/nix/store"][k] for k in ("device", "fsType", "options", "neededForBoot",
                                             "noCheck")} == {
        "device": "/dev/vda", "fsType": "squashfs",
        "options": ["x-initrd.mount", "ro", "x-systemd.after=systemd-modules-load.service"],
        "neededForBoot": True, "noCheck": True}
    assert fc["/var"]["device"] == "/dev/vdb"
    ch = examples["cloud-hypervisor"]["glue"]["fileSystems"]
    assert ch["/nix/store"]["overlay"]["lowerdir"] == ["/nix/.ro-store"]
    assert "userxattr" in ch["/nix/.rw-store"]["options"]


def test_mount_points_with_a_trailing_slash_mount_where_they_say() -> None:
    """NixOS refuses a fileSystems mount point with a trailing slash (the stub has its types);
    "/mnt/data/" is the mount point "/mnt/data", so the module mounts it there."""
    conf = ('{ module = { networking.hostName = "s"; microvm = { writableStoreOverlay = ' +
            '"/nix/.rw-store/"; shares = [ { tag = "a"; source = "/srv/a"; mountPoint = ' +
            '"/mnt/data/"; } { tag = "ro-store"; source = "/nix/store"; mountPoint = ' +
            '"/nix/.ro-store//"; } ]; volumes = [ { image = "v.img"; size = 8; mountPoint = ' +
            '"/nix/.rw-store/"; } ]; }; }; }')
    fs = nix_json(f"(import ./eval.nix {{ configuration = {conf}; inherit python repo; }})" +
                  ".glue.fileSystems")
    assert sorted(fs) == ["/", "/mnt/data", "/nix/.ro-store", "/nix/.rw-store", "/nix/store"]
    assert fs["/nix/store"]["overlay"] == {"lowerdir": ["/nix/.ro-store"],
                                           "upperdir": "/nix/.rw-store/store",
                                           "workdir": "/nix/.rw-store/work",
                                           "useStage1BaseDirectories": True}
    assert fs["/nix/.rw-store"]["neededForBoot"] is True


# -- options and schema agree -----------------------------------------------------------------

# Options that are not part of vm.json: packages, outputs, how Nix builds the store disk and the
# runner, and the established interface's options this project accepts but ignores.
NIX_ONLY = {
    "guest.enable", "vmHostPackages", "runner", "declaredRunner", "binScripts", "systemSymlink",
    "storeDiskErofsFlags", "storeDiskSquashfsFlags", "registerClosure",
    *(f"{hv}.package" for hv in ("qemu", "cloud-hypervisor", "firecracker", "crosvm",
                                 "kvmtool", "stratovirt", "alioth", "vfkit", "virtiofsd")),
    "graphics.crosvmPackage",
    "bootDisk", "balloonMem", "vsock.ssh.enable", "deploy.installOnHost", "deploy.sshSwitch",
    "deploy.rebuild", "networkAddresses",
}
# Schema properties without a default, and what the Nix option does instead.
NO_SCHEMA_DEFAULT = {
    "kernel": "computed",           # the kernel package's file for the hypervisor
    "socket": "computed",           # "<hostName>.sock", or null without a control socket
    "storeOnDisk": "computed",      # unless a share has source /nix/store
    "shares.*.socket": "computed",  # "<hostName>-virtiofs-<tag>.sock" for virtiofs
    "volumes.*.size": "null",       # omitted from vm.json while null
    "machineId": "computed",        # derived from the host name (microvm.nix's derivation)
    "graphics.socket": "computed",  # "<hostName>-gpu.sock"
    "interfaces.*.id": "computed",  # derived for type = "network", required otherwise
    "interfaces.*.mac": "computed",  # derived for type = "network", required otherwise
}


def schema_view(s: dict[str, Any]) -> dict[str, Any]:
    """A schema property in the shape tests/nix/dump-options.nix gives a Nix type."""
    types = s.get("type", [])
    types = sorted([types] if isinstance(types, str) else types)
    view: dict[str, Any] = {"types": types}
    if "enum" in s:
        view["enum"] = sorted(v for v in s["enum"] if v is not None)
    for key in ("minimum", "maximum", "minLength"):
        if key in s:
            view[key] = s[key]
    if "pattern" in s:
        view["pattern"] = s["pattern"].removeprefix("^").removesuffix("$")
    if "items" in s:
        view["items"] = schema_view(s["items"])
    if isinstance(s.get("additionalProperties"), dict):
        view["additionalProperties"] = schema_view(s["additionalProperties"])
    return view


def nix_view(t: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {"types": sorted(t["types"])}
    if "enum" in t:
        view["enum"] = sorted(t["enum"])
    for key in ("minimum", "maximum", "minLength", "pattern"):
        if t.get(key) is not None:
            view[key] = t[key]
    if "pattern" in view:  # a pattern that needs a character says minLength itself
        view.pop("minLength", None)
    if "items" in t:
        view["items"] = nix_view(t["items"])
    if "additionalProperties" in t:
        view["additionalProperties"] = nix_view(t["additionalProperties"])
    return view


def flatten(opts: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, o in opts.items():
        if "group" in o:
            out.update(flatten(o["group"], f"{prefix}{name}."))
            continue
        out[prefix + name] = o
        t = o["type"]
        sub = t.get("properties") or t.get("items", {}).get("properties")
        if sub is not None:
            out.update(flatten(sub, f"{prefix}{name}.{'*.' if 'items' in t else ''}"))
    return out


def schema_flatten(props: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, s in props.items():
        if "properties" in s:
            out.update(schema_flatten(s["properties"], f"{prefix}{name}."))
            continue
        out[prefix + name] = s
        sub = s.get("items", {}).get("properties")
        if sub is not None:
            out.update(schema_flatten(sub, f"{prefix}{name}.*."))
    return out


def test_options_and_schema_agree() -> None:
    options = flatten(json.loads(nix_eval("import ./dump-options.nix").stdout))
    schema = schema_flatten(SCHEMA["properties"]["microvm"]["properties"])
    # the schema says which defaults are computed (x-computedDefault); the kernel is required in
    # a document and computed in Nix (the kernel package's file)
    computed = {p for p, k in NO_SCHEMA_DEFAULT.items() if k == "computed"}
    assert computed == {p for p, s in schema.items() if s.get("x-computedDefault")} | {"kernel"}
    contract = {k: v for k, v in options.items() if k not in NIX_ONLY}
    assert not NIX_ONLY - options.keys(), "NIX_ONLY names options that do not exist"
    assert sorted(schema.keys() - contract.keys()) == [], "schema properties without an option"
    assert sorted(contract.keys() - schema.keys()) == [], "options missing from the schema"
    for path, s in schema.items():
        o = contract[path]
        assert o["description"], f"microvm.{path} has no description"
        if path == "kernel":  # a package or a path in Nix, its file's path in vm.json
            assert o["computed"]
            continue
        want, got = schema_view(s), nix_view(o["type"])
        if o["type"].get("path"):
            want.pop("minLength", None)
        sub_object = "properties" in o["type"] or "properties" in o["type"].get("items", {})
        if sub_object:  # compared property by property
            want.pop("items", None)
            got.pop("items", None)
        if NO_SCHEMA_DEFAULT.get(path) == "null":
            assert got["types"] == sorted([*want["types"], "null"]), path
            got["types"] = want["types"]
        assert got == want, f"microvm.{path}: option type {got} != schema {want}"
        if "default" in s:
            assert not o["computed"], f"microvm.{path}: computed default, schema has one"
            assert o.get("default", "<none>") == s["default"], (
                f"microvm.{path}: default {o.get('default', '<none>')!r} != {s['default']!r}")
        elif path in NO_SCHEMA_DEFAULT:
            kind = NO_SCHEMA_DEFAULT[path]
            assert (o["computed"] if kind == "computed" else o.get("default", 0) is None), path
        else:  # required in the schema: no default in Nix either
            assert not o["hasDefault"], f"microvm.{path} has a default the schema lacks"


# -- bad configurations ------------------------------------------------------------------------

BAD = {
    "duplicate-tag": "microvm.shares[1].tag: duplicate tag 'data' (also used by " +
                     "microvm.shares[0].tag)",
    "virtiofs-on-firecracker": "microvm.shares[0].proto: virtiofs shares not supported by " +
                               "firecracker",
    "forward-without-user": "microvm.forwardPorts[0]: port forwarding needs an interface with " +
                            "type = \"user\"",
    "volumes": "microvm.volumes[1].serial: duplicate serial 'disk' (also used by " +
               "microvm.volumes[0].serial)",
}


def bad_expr(name: str, attr: str) -> str:
    return (f"{{ python, repo }}: (import ./eval.nix {{ configuration = ./bad/{name}.nix; " +
            f"inherit python repo; }}).{attr}")


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_configuration_fails_with_the_generators_errors(name: str, tmp_path: Path) -> None:
    """Evaluation succeeds; building the runner fails in its check, with exactly the lines
    `microvm validate` prints for the document (one validator: the generator's)."""
    r = nix_build(bad_expr(name, "runner"))
    assert r.returncode != 0
    assert "-check.drv' failed" in r.stderr, r.stderr[-3000:]
    assert BAD[name] in r.stderr, r.stderr[-3000:]
    unchecked = json.loads(nix_eval(bad_expr(name, "uncheckedJson")).stdout)
    v = validate(unchecked, tmp_path)
    assert v.returncode == 2
    nix_lines = sorted(set(re.findall(r"error: (microvm\.\S+: .*)$", r.stderr, re.M)))
    py_lines = sorted(set(re.findall(r"^error: (microvm\.\S+: .*)$", v.stderr, re.M)))
    assert BAD[name] in "\n".join(py_lines)
    assert nix_lines == py_lines


@pytest.mark.parametrize(("name", "message"), [
    ("wrong-type", "microvm.vcpu' is not of type `integer between 1 and 1024"),
    ("unknown-option", "microvm.vcpus' does not exist"),
])
def test_bad_type_or_name_fails_evaluation(name: str, message: str) -> None:
    r = nix_eval(bad_expr(name, "json"), check=False)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr[-3000:]


# -- host module and flake -------------------------------------------------------------------

def test_host_module() -> None:
    s = nix_json("(import ./host-eval.nix { inherit python repo; }).summary")
    assert s["assertions"] == []
    assert s["users"]["users"]["microvm"] == {"group": "kvm", "isSystemUser": True}
    assert s["autostart"] == ["imperative", "web"]
    services = dict(s["services"])
    reconcile = services.pop("microvm-reconcile")
    enabled = {n: v["wantedBy"] for n, v in services.items() if v["wantedBy"]}
    assert enabled == {"install-microvm-manual": ["microvms.target"],
                       "install-microvm-web": ["microvms.target"],
                       "microvm@imperative": ["microvms.target"],
                       "microvm@web": ["microvms.target"]}
    # the package's install units are switched on by drop-ins; the units every VM uses, and
    # each VM's microvm@NAME, are NixOS definitions of their own (tests/test_nix_dropin.py)
    assert {n for n, v in services.items() if v["overrideStrategy"] == "asDropin"} == {
        "install-microvm-manual", "install-microvm-web"}
    assert {"microvm@", "microvm-set-booted@", "microvm-virtiofsd@", "microvm@manual"} <= set(
        services)
    assert services["microvm@web"]["execStart"] == services["microvm@"]["execStart"] == [
        "%S/microvms/.control/%i/booted/bin/microvm-run"]
    # after a switch, VMs no longer declared are stopped (the generator's `reconcile`)
    assert reconcile["wantedBy"] == ["multi-user.target"]
    assert reconcile["execStart"].endswith(
        "/bin/microvm reconcile --state-dir /var/lib/microvms '--declared=manual' " +
        "'--declared=web'")
    assert s["targets"]["microvms"]["wantedBy"] == ["multi-user.target"]
    assert s["packages"] == ["microvm-units"]
    assert s["etc"]["qemu/bridge.conf"]["text"] == "allow br-lan\n"
    helper = s["wrappers"]["qemu-bridge-helper"]
    assert helper["capabilities"] == "cap_net_admin+ep" and helper["owner"] == "root"
    assert helper["source"].endswith("/libexec/qemu-bridge-helper")
    tmp = s["tmpfiles"]
    assert tmp["/var/lib/microvms"]["d"] == {"user": "root", "group": "root", "mode": "0755"}
    assert tmp["/var/lib/microvms/.control"]["d"] == {"user": "root", "group": "root",
                                                      "mode": "0755"}
    # the same as the units package's own tmpfiles.d (one layout: generator/microvm/units.py)
    units_conf = (REPO / "generator/microvm/templates/units/microvm.tmpfiles.j2").read_text()
    assert "d {{ state_dir }} 0755 root root -" in units_conf
    assert "d {{ state_dir }}/.control 0755 root root -" in units_conf
    assert tmp["/var/lib/microvms/web/www"]["d"]["mode"] == ":0775"


def test_host_units_build_with_the_generator(tmp_path: Path) -> None:
    """The host module's unit package really runs `microvm units` with the flags it passes."""
    expr = (f"(import ./host-eval.nix {{ python = {json.dumps(sys.executable)};" +
            f" repo = {json.dumps(str(REPO))}; }}).units")
    r = subprocess.run(["nix-build", *NIX_OPTS, "--no-out-link", "-E", expr], cwd=NIXDIR,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    units = Path(r.stdout.strip().splitlines()[-1]) / "lib/systemd/system"
    names = {p.name for p in units.iterdir()}
    # the units every VM uses are NixOS definitions (nix/lib/units.json), not the package's
    assert {"install-microvm-web.service", "install-microvm-manual.service",
            "microvm@web.service.d"} <= names
    assert not {"microvm@.service", "microvms.target"} & names
    web = (units / "install-microvm-web.service").read_text()
    assert "-microvm-qemu-web" in web


def test_flake_outputs() -> None:
    s = nix_json("(import ./flake-eval.nix { inherit python repo; }).summary")
    assert s["nixosModules"] == ["default", "host", "microvm", "microvm-options"]
    # not paths: Nix 2.8's `nix flake check` refuses a module given as a path
    assert all(s["modulesAreValues"].values())
    assert s["overlays"] == ["default"] and s["overlay"] is True
    assert s["templates"] == ["default", "microvm"]
    assert s["defaultTemplate"] == s["templateDescription"]
    assert set(s["hypervisors"]) == set(export_capabilities.export()["hypervisors"])
    for system in ("x86_64-linux", "aarch64-linux"):
        assert {"qemu-demo", "qemu-shared-store", "microvm-generator"} <= set(
            s["packages"][system])
        assert set(s["apps"][system]) == {"default", "qemu-demo", "qemu-shared-store"}
        assert s["checks"][system] == sorted(
            s["packages"][system] + ["qemu-demo-document", "qemu-shared-store-document"])
    assert s["runners"]["qemu-demo"] == "microvm-qemu-qemu-demo"
    assert s["templateHost"] == {"vms": ["my-vm"], "autostart": ["my-vm"],
                                 "packages": ["microvm-units"], "root": "ext4",
                                 "grub": "nodev"}
    docs = {**s["exampleDocuments"], "template": s["templateVm"]}
    for name, doc in docs.items():
        assert json.loads(doc)["formatVersion"] == 1, name


@pytest.mark.parametrize("name", ["qemu-demo", "qemu-shared-store", "template"])
def test_flake_example_documents_validate(name: str, tmp_path: Path) -> None:
    s = nix_json("(import ./flake-eval.nix { inherit python repo; }).summary")
    doc = s["templateVm"] if name == "template" else s["exampleDocuments"][name]
    r = validate(doc, tmp_path)
    assert r.returncode == 0, r.stderr


# -- build with nix-build and boot -------------------------------------------------------------

@pytest.mark.boot
def test_runner_builds_with_nix_and_boots(tmp_path: Path) -> None:
    if not vmtest.have("qemu-system-x86_64") or not vmtest.have("mkfs.erofs"):
        pytest.skip("needs qemu-system-x86_64 and mkfs.erofs (erofs-utils)")
    try:
        kernel = vmtest.guest_kernel()
        # a stage 1 in miniature: mount the store disk, run the toplevel's init from it
        initrd = vmtest.initrd(tmp_path, r"""
init=$(sed -n 's/.*init=\([^ ]*\).*/\1/p' /proc/cmdline)
mkdir -p /nix/store
mount -t erofs -o ro /dev/vda /nix/store
sh "$init"
""")
    except Exception as e:
        pytest.skip(f"test guest unavailable: {e}")
    expr = ("(import ./eval.nix { configuration = ./boot.nix;" +
            f" python = {json.dumps(sys.executable)}; repo = {json.dumps(str(REPO))};" +
            f" hostKernel = {json.dumps(str(kernel.vmlinux))};" +
            f" hostInitrd = {json.dumps(str(initrd))}; }}).runner")
    r = subprocess.run(["nix-build", *NIX_OPTS, "--no-out-link", "-E", expr], cwd=NIXDIR,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    runner = Path(r.stdout.strip().splitlines()[-1])
    doc = json.loads((runner / "share/microvm/vm.json").read_text())
    assert doc["microvm"]["storeDisk"].endswith("-microvm-store-disk.erofs")
    assert (runner / "bin/microvm-run").read_text().startswith("#!/bin/bash\n")
    work = tmp_path / "state"
    work.mkdir()
    # nothing but the runner's own PATH (the runtimePath Nix put in vm.json)
    with vmtest.VM(runner, work, env={"PATH": "/nonexistent"}) as vm:
        line = vm.wait_for("MICROVM-NIX-TOPLEVEL")
        assert line.endswith("MICROVM-NIX-TOPLEVEL nixboot: hello from the store disk of nixboot")
        assert vm.wait_exit() == 0


def test_graphics_loads_the_gpu_driver_in_the_guest() -> None:
    """As microvm.nix's guest does: drm and virtio_gpu are loaded at boot with a display."""
    mods = {}
    for enable in ("true", "false"):
        conf = (f'{{ module = {{ networking.hostName = "g"; microvm.graphics.enable = {enable};' +
                ' }; }')
        mods[enable] = nix_json(f"(import ./eval.nix {{ configuration = {conf}; " +
                                "inherit python repo; }).config.boot.kernelModules")
    assert mods == {"true": ["drm", "virtio_gpu"], "false": []}


def test_graphics_runners_get_the_gpu_builds_on_their_path() -> None:
    """cloud-hypervisor's GPU build where the package set has it (microvm.nix's overlay names
    it cloud-hypervisor-graphics; kvmtool's stand-in plays it here), and
    graphics.crosvmPackage (the GPU device) on the runner's PATH."""
    def path(hv: str, graphics: str, extra: str = "") -> list[str]:
        conf = ('{ module = { pkgs, ... }: { networking.hostName = "g"; microvm = { ' +
                f'hypervisor = "{hv}"; graphics.enable = {graphics}; {extra} }}; }}; }}')
        found: list[str] = json.loads(nix_json(
            f"(import ./eval.nix {{ configuration = {conf}; inherit python repo; }}).json"
        ))["runtimePath"]
        return [p.split("-", 1)[1] for p in found
                if any(n in p for n in ("cloud-hypervisor", "crosvm", "kvmtool"))]
    gpu_build = "vmHostPackages = pkgs // { cloud-hypervisor-graphics = pkgs.kvmtool; };"
    assert path("cloud-hypervisor", "true") == ["cloud-hypervisor/bin", "crosvm/bin"]
    assert path("cloud-hypervisor", "true", gpu_build) == ["kvmtool/bin", "crosvm/bin"]
    assert path("cloud-hypervisor", "false", gpu_build) == ["cloud-hypervisor/bin"]
    assert path("crosvm", "true") == ["crosvm/bin"]


def test_vfkit_rosetta_is_mounted_in_the_guest_on_the_devices_tag() -> None:
    """microvm.vfkit.rosetta.enable turns on NixOS's virtualisation.rosetta (a stand-in of its
    options here) on the tag of vfkit's `--device rosetta` (hypervisors/vfkit.py), as
    microvm.nix's rosetta.nix does; not for another hypervisor, and a NixOS without that
    module (the stub) evaluates."""
    from microvm.hypervisors.vfkit import ROSETTA_TAG

    standin = ("{ lib, ... }: { options.virtualisation.rosetta = { enable = lib.mkOption " +
               "{ default = false; }; mountTag = lib.mkOption { default = \"unset\"; }; }; }")
    got = {}
    for hv, enable in (("vfkit", "true"), ("vfkit", "false"), ("qemu", "true")):
        conf = ('{ system = "aarch64-linux"; module = { pkgs, ... }: { imports = [ (' +
                standin + ') ]; networking.hostName = "r"; microvm = { hypervisor = "' + hv +
                '"; vmHostPackages = pkgs.forSystem "aarch64-darwin"; ' +
                f'vfkit.rosetta.enable = {enable}; }}; }}; }}')
        got[(hv, enable)] = nix_json(f"(import ./eval.nix {{ configuration = {conf}; " +
                                     "inherit python repo; }).config.virtualisation.rosetta")
    assert got == {("vfkit", "true"): {"enable": True, "mountTag": ROSETTA_TAG},
                   ("vfkit", "false"): {"enable": False, "mountTag": "unset"},
                   ("qemu", "true"): {"enable": False, "mountTag": "unset"}}
    # without the module (tests/nix/stub.nix has none) nothing is set, nothing fails
    conf = ('{ system = "aarch64-linux"; module = { pkgs, ... }: { networking.hostName = "r"; ' +
            'microvm = { hypervisor = "vfkit"; vmHostPackages = pkgs.forSystem ' +
            '"aarch64-darwin"; vfkit.rosetta.enable = true; }; }; }')
    doc = json.loads(nix_json(f"(import ./eval.nix {{ configuration = {conf}; " +
                              "inherit python repo; }).json"))
    assert doc["microvm"]["vfkit"]["rosetta"] == {"enable": True, "install": False,
                                                   "ignoreIfMissing": False}


def test_host_networks_write_the_declaration_microvm_network_reads() -> None:
    """microvm.host.networks: /etc/microvm/networks.json is a declaration `microvm network`
    accepts, with the joining VMs by host name and the MACs their own guests derived or
    pinned; microvm-networks (the unit of nix/lib/units.json every host has) runs `network up`
    before microvms.target, is enabled where networks are declared, and only the VMs that join
    require it."""
    from microvm import netplan
    from microvm.netplan import derive

    got = nix_json("(import ./host-network-eval.nix { inherit python repo; })")
    decl = json.loads(got["declaration"])
    assert decl["hostName"] == "h1" and decl["hostAddresses"] == ["192.168.1.10/24"]
    assert set(decl["vms"]) == {"web", "db"}
    plan = derive(decl)
    assert plan.member("db", "lan").mac == "02:00:00:00:00:42"
    assert [plan.member("web", "lan").mac] == got["macs"]["web"]
    assert plan.network("lan").forwards[0].host_port == 8443
    unit = got["unit"]
    [start] = unit["ExecStart"]
    assert start.startswith("/nix/store/") and start.endswith(
        "/bin/microvm network up /etc/microvm/networks.json --state-dir /var/lib/microvms")
    assert "microvms.target" in unit["before"] and unit["Type"] == ["oneshot"]
    assert unit["wantedBy"] == ["microvms.target"]
    # a changed declaration reloads it (`up` applies the change); a restart would take the
    # bridges from under the running VMs
    assert unit["reloadTriggers"] == [got["declaration"]] and unit["restartTriggers"] == []
    # a reload of nftables.service (which may flush the ruleset) is passed on: `up` puts the
    # tables back
    assert unit["ExecReload"] == unit["ExecStart"]
    assert unit["ReloadPropagatedFrom"] == ["nftables.service"]
    assert "nftables.service" in unit["after"]
    # the host's own network managers leave the bridges and taps alone
    prefixes = [f"{p}*" for p in (netplan.BRIDGE_PREFIX, netplan.TAP_PREFIX)]
    assert got["unmanaged"] == {
        "networkmanager": [f"interface-name:{p}" for p in prefixes], "dhcpcd": prefixes,
        "networkd": {"matchConfig": {"Name": " ".join(prefixes)},
                     "linkConfig": {"Unmanaged": True}}}
    assert "microvm-networks.service" in got["requires"]["microvm@web"]
    assert "microvm-networks.service" in got["requires"]["microvm@db"]
    assert "microvm-networks.service" not in got["requires"].get("microvm@plain", [])
    path = Path(tempfile.mkdtemp()) / "networks.json"
    path.write_text(got["declaration"])
    check = subprocess.run([sys.executable, "-m", "microvm.cli", "network", "check", str(path),
                            "--state-dir", str(path.parent / "state")], text=True,
                           capture_output=True)
    assert check.returncode == 0, check.stderr
