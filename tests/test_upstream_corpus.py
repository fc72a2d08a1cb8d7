"""Differential test over microvm.nix's own configurations: its handbook, examples and templates.

tests/support/upstream_corpus.py reads the corpus from upstream's source ($MICROVM_NIX_SRC, else
/opt/microvm.nix): every Nix block of the handbook (doc/src/*.md), the examples, the flake
template and the example configurations of upstream's flake.nix; and real users' public
configurations reduced to their microvm part (tests/nix/users/*.nix, each naming its source).
Each is evaluated by tests/nix/upstream/corpus.nix twice with one stand-in NixOS and package
set: with upstream's modules and with this project's. Compared, for every guest: the VM
document's values (this project: what nix/lib/document.nix gives the generator; upstream: its
microvm.* option values at the same paths), fileSystems, whether the configuration is refused
(failed assertions and runners that throw; here also the Nix checks and the generator's own
checks of the document, as when the runner is built) and the warnings (here also the
generator's); for every host: the units it declares for each VM and their settings (this
project: rendered by the generator from what the host module gives it). Warnings are
config.warnings and what either side prints with lib.warn while an entry is evaluated
(upstream's runners warn that way).

Every difference must match exactly one reviewed entry of tests/support/upstream_diff.py
(CORPUS), and every entry must match a difference; docs/microvm-nix-differences.md shows them
(scripts/regen rewrites it).
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from microvm import units, validate
from microvm.document import from_document
from microvm.errors import ValidationError
from support import REPO, upstream_corpus, upstream_diff
from support.upstream import nix_env, problem, upstream_src

NIXDIR = REPO / "tests" / "nix" / "upstream"
STORE_HASH = re.compile(r"/nix/store/[0-9a-df-np-sv-z]{32}-")
BATCHES = 2  # one nix-instantiate per core

pytestmark = [pytest.mark.nix]


@pytest.fixture(autouse=True)
def _need_oracle() -> None:
    if why := problem():
        pytest.skip(why)


# -- evaluation --------------------------------------------------------------------------------


@cache
def corpus() -> tuple[tuple[upstream_corpus.Snippet, ...], dict[str, str]]:
    found, skipped = upstream_corpus.snippets(upstream_src())
    return tuple(found), skipped


def _run(manifest: Path, ids: list[str] | None = None,
         sides: tuple[str, ...] = ("upstream", "project")) -> subprocess.CompletedProcess[str]:
    args = ["nix-instantiate", "--eval", "--strict", "--json", "corpus.nix",
            "--arg", "upstream", str(upstream_src()), "--arg", "manifest", str(manifest),
            "--arg", "python", json.dumps(sys.executable), "--arg", "repo", json.dumps(str(REPO)),
            "--arg", "sides", "[ " + " ".join(json.dumps(s) for s in sides) + " ]"]
    if ids is not None:
        args += ["--arg", "only", "[ " + " ".join(json.dumps(i) for i in ids) + " ]"]
    return subprocess.run(args, cwd=NIXDIR, capture_output=True, text=True, env=nix_env(),
                          timeout=600)


def _error_line(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return stderr.strip().splitlines()[-1] if stderr.strip() else "evaluation failed"


TRACE = re.compile(r"^trace: (?:evaluation )?warning: (.*)$")
MARK = re.compile(r"^trace: @@corpus-(begin|end) (upstream|project) ([^:]+):(.*)$")


def _with_traces(result: dict[str, Any], stderr: str) -> dict[str, Any]:
    """Add to each entry's facts the warnings traced while it was evaluated (corpus.nix puts
    markers around each entry): upstream's runners warn with lib.warn, not config.warnings."""
    where: tuple[str, str, str] | None = None
    for line in stderr.splitlines():
        if m := MARK.match(line):
            where = (m.group(3), m.group(2), m.group(4)) if m.group(1) == "begin" else None
        elif where and (w := TRACE.match(line)):
            key, side, name = where
            facts = result.get(key, {}).get(side, {}).get(name)
            if isinstance(facts, dict):
                facts.setdefault("traces", []).append(w.group(1))
    return result


def _evaluate_batch(manifest: Path, ids: list[str]) -> dict[str, Any]:
    r = _run(manifest, ids)
    if r.returncode == 0:
        return _with_traces(json.loads(r.stdout), r.stderr)
    # an error tryEval cannot catch (a missing attribute): find the snippet, and the side
    if len(ids) > 1:
        half = len(ids) // 2
        return _evaluate_batch(manifest, ids[:half]) | _evaluate_batch(manifest, ids[half:])
    result: dict[str, Any] = {}
    for side in ("upstream", "project"):
        one = _run(manifest, ids, (side,))
        result[side] = (_with_traces(json.loads(one.stdout), one.stderr)[ids[0]][side]
                        if one.returncode == 0 else {"@error": _error_line(one.stderr)})
    return {ids[0]: result}


@cache
def evaluated() -> dict[str, Any]:
    found, _ = corpus()
    with tempfile.TemporaryDirectory(prefix="microvm-corpus-") as scratch:
        tmp = Path(scratch)
        entries = []
        for i, s in enumerate(found):
            f = tmp / f"s{i:03}.nix"
            f.write_text(s.text)
            entries.append({"id": s.key, "file": str(f)})
        manifest = tmp / "manifest.json"
        manifest.write_text(json.dumps(entries))
        ids = [s.key for s in found]
        batches = [ids[i::BATCHES] for i in range(BATCHES)]
        with ThreadPoolExecutor(max_workers=BATCHES) as pool:
            results = list(pool.map(lambda b: _evaluate_batch(manifest, b), batches))
    out: dict[str, Any] = {}
    for r in results:
        out |= r
    return out


# -- comparison --------------------------------------------------------------------------------


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        return STORE_HASH.sub("/nix/store/", value)
    if isinstance(value, list):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    return value


def _unset(value: Any) -> Any:
    """Upstream's value of an option that has none (no default, not set: reading it fails) is
    compared as null."""
    if isinstance(value, dict):
        if value == {"@error": True}:
            return None
        return {k: _unset(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unset(v) for v in value]
    return value


def _kernel_package(values: Any) -> Any:
    """The document names the file the hypervisor boots inside the kernel package
    (bzImage, Image, or vmlinux of its dev output); upstream's option is the package."""
    if isinstance(values, dict) and isinstance(values.get("kernel"), str):
        values = dict(values)
        values["kernel"] = re.sub(r"(-dev)?/(bzImage|Image|vmlinux)$", "", values["kernel"])
    return values


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value and "@error" not in value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            _flatten(f"{prefix}[{i}]", v, out)
    else:
        out[prefix] = value


def _show(value: Any) -> str:
    if value is _MISSING:
        return "(none)"
    return json.dumps(value, sort_keys=True)


_MISSING = object()


def _compare(what: str, up: dict[str, Any], pr: dict[str, Any]) -> list[str]:
    items = []
    for k in sorted(set(up) | set(pr)):
        a, b = up.get(k, _MISSING), pr.get(k, _MISSING)
        if a != b:
            items.append(f"{what} {k}: upstream={_show(a)} project={_show(b)}")
    return items


# what NixOS's fileSystems.<name> gives an attribute nobody sets (nixos/modules/tasks/
# filesystems.nix); the stand-in NixOS keeps fileSystems as they are defined
FS_DEFAULTS: dict[str, Any] = {"options": ["defaults"], "neededForBoot": False, "depends": [],
                               "noCheck": False}


def _mount_options(fs: dict[str, Any]) -> dict[str, Any]:
    """fileSystems with NixOS's defaults filled in and each entry's options as a sorted set
    (`a,b` in one string is two)."""
    out = {}
    for mount, entry in fs.items():
        e = FS_DEFAULTS | (dict(entry) if isinstance(entry, dict) else {"@value": entry})
        if isinstance(e.get("options"), list):
            e["options"] = sorted({o for opt in e["options"] for o in str(opt).split(",")})
        out[mount] = e
    return out


def generator_findings(facts: dict[str, Any]) -> tuple[list[str], list[str]]:
    """What the generator says of this project's document when the runner is built: its
    problems (a refusal) and its warnings (options the hypervisor ignores)."""
    document = facts.get("document")
    if not isinstance(document, str):
        return [], []
    try:
        vm = from_document(json.loads(document))
    except ValidationError as e:
        return [str(p) for p in e.problems], []
    return [], [str(p) for p in validate.warnings(vm)]


def refusals(facts: dict[str, Any]) -> list[str]:
    """Why a guest is refused: its failed assertions (here: also the Nix checks, which the
    module turns into assertions too, and the generator's problems: each message once), or a
    runner that throws."""
    found = sorted(set(facts["refusals"]) | set(generator_findings(facts)[0]))
    if not found and not facts["runner"]:
        found = ["(its runner fails to evaluate)"]
    return found


def guest_items(up: dict[str, Any], pr: dict[str, Any]) -> list[str]:
    items: list[str] = []
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _flatten("microvm", _kernel_package(_unset(_norm(up["values"]))), a)
    _flatten("microvm", _kernel_package(_norm(pr["values"])), b)
    items += _compare("value", a, b)
    ufs, pfs = _mount_options(_norm(up["fileSystems"])), _mount_options(_norm(pr["fileSystems"]))
    a, b = {}, {}
    for fs, flat in ((ufs, a), (pfs, b)):
        for mount, e in fs.items():
            _flatten(mount, {k: v for k, v in e.items() if k != "options"}, flat)
    items += _compare("fileSystems", a, b)
    # mount options one by one (a mount only one side has is reported above)
    for mount in sorted(set(ufs) & set(pfs)):
        uo, po = set(ufs[mount]["options"]), set(pfs[mount]["options"])
        items += [f"fileSystems {mount} option {o}: only upstream" for o in sorted(uo - po)]
        items += [f"fileSystems {mount} option {o}: only project" for o in sorted(po - uo)]
    ur, prr = refusals(up), refusals(pr)
    if bool(ur) != bool(prr):
        items += [f"refused: only upstream: {m}" for m in ur]
        items += [f"refused: only project: {m}" for m in prr]
    uw = Counter(up["warnings"] + [f"(trace) {w}" for w in up.get("traces", [])])
    pw = Counter(pr["warnings"] + [f"(trace) {w}" for w in pr.get("traces", [])]
                 + [f"(generator) {w}" for w in generator_findings(pr)[1]])
    items += [f"warning: only upstream: {m}" for m in sorted((uw - pw).elements())]
    items += [f"warning: only project: {m}" for m in sorted((pw - uw).elements())]
    return items


def _ini(text: str) -> configparser.RawConfigParser:
    p = configparser.RawConfigParser(strict=False, interpolation=None)
    p.optionxform = str  # type: ignore[assignment,method-assign]
    p.read_string(text)
    return p


def project_host_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """The project's units, rendered by the generator from what its host module hands
    nix/lib/units.nix, read back into the facts corpus.nix gives for upstream's host."""
    args = facts["units"]
    failed = {vm["name"] for vm in args["declared"] if not isinstance(vm["runner"], str)
              or generator_findings(vm)[0]}
    declared = tuple(units.DeclaredVM(name=vm["name"], runner=_norm(vm["runner"]),
                                      restart_if_changed=vm["restartIfChanged"],
                                      autostart=vm["autostart"],
                                      update_flake=vm.get("updateFlake"))
                     for vm in args["declared"] if vm["name"] not in failed)
    opts = units.UnitOptions(
        state_dir=args["stateDir"], user=args["user"], group=args["group"],
        start_timeout=args["startupTimeout"],
        readiness=units.Readiness.VSOCK if args["useNotifySockets"] else units.Readiness.STARTED,
        declared=declared)
    files = units.build(opts, "/libexec")

    def text(name: str) -> str | None:
        entry = files.get(f"{units.UNIT_DIR}/{name}")
        return entry[0] if isinstance(entry, tuple) else None

    main = _ini(text("microvm@.service") or "")
    vms = {}
    for vm in declared:
        install = text(f"install-microvm-{vm.name}.service")
        drop = _ini(text(f"microvm@{vm.name}.service.d/50-declared.conf") or "")
        unit = _ini(install or "")
        vms[vm.name] = {
            "installed": install is not None,
            "installOnce": unit.has_option("Unit", "ConditionPathExists"),
            "flake": vm.update_flake,
            "restartIfChanged": drop.get("Service", "X-RestartIfChanged") == "true",
            "readiness": "notify" if main.get("Service", "Type") == "notify" else "started",
        }
    vms |= {name: {"@error": True} for name in failed}
    return {
        "stateDir": args["stateDir"],
        "startupTimeout": int(main.get("Service", "TimeoutStartSec")),
        "autostart": facts["autostart"],
        "tmpfiles": facts["tmpfiles"],
        "vms": vms,
    }


def host_items(up: dict[str, Any], pr: dict[str, Any]) -> list[str]:
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    up = dict(up)
    pr = project_host_facts(pr)
    for facts in (up, pr):
        facts["autostart"] = sorted(facts["autostart"])
        facts["tmpfiles"] = sorted(facts["tmpfiles"])
    _flatten("", _norm(up), a)
    _flatten("", _norm(pr), b)
    return _compare("host", a, b)


@dataclass(frozen=True)
class Difference:
    snippet: str  # KEY or KEY:ENTRY
    item: str

    def __str__(self) -> str:
        return f"{self.snippet}: {self.item}"


def entry_items(up: dict[str, Any], pr: dict[str, Any]) -> list[str]:
    if up.get("@error") or not up.get("ok", False):
        if pr.get("@error") or not pr.get("ok", False):
            return []
        return ["evaluation: upstream fails" + (f" ({up['@error']})"
                                                  if isinstance(up.get("@error"), str) else "")]
    if pr.get("@error") or not pr.get("ok", False):
        return ["evaluation: project fails" + (f" ({pr['@error']})"
                                                 if isinstance(pr.get("@error"), str) else "")]
    items: list[str] = []
    if (up["guest"] is None) != (pr["guest"] is None):
        items.append("guest module: only " + ("upstream" if pr["guest"] is None else "project"))
    elif up["guest"] is not None:
        items += guest_items(up["guest"] | {"traces": up.get("traces", [])},
                             pr["guest"] | {"traces": pr.get("traces", [])})
    if (up["host"] is None) != (pr["host"] is None):
        items.append("host module: only " + ("upstream" if pr["host"] is None else "project"))
    elif up["host"] is not None and ("@error" in up["host"] or "@error" in pr["host"]):
        if "@error" not in pr["host"] or "@error" not in up["host"]:
            items.append("host units: only " + ("upstream" if "@error" in pr["host"] else "project")
                         + " evaluate")
    elif up["host"] is not None:
        items += host_items(up["host"], pr["host"])
    return items


def all_entries() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """ENTRY -> (upstream facts, project facts), ENTRY = KEY:NAME (NAME: a system of the
    snippet, or SYSTEM/vms.VM for a VM a host declares inline)."""
    out: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    def pick(side: dict[str, Any], name: str) -> dict[str, Any]:
        # a side that failed as a whole fails for every entry
        return side if "@error" in side else side.get(name, {"ok": False})

    for key, sides in evaluated().items():
        up, pr = sides["upstream"], sides["project"]
        names = sorted({n for side in (up, pr) if "@error" not in side for n in side})
        if not names:
            out[key] = (up, pr)
        for name in names:
            out[f"{key}:{name}"] = (pick(up, name), pick(pr, name))
    return out


def all_differences() -> list[Difference]:
    return [Difference(entry, item) for entry, (up, pr) in all_entries().items()
            for item in entry_items(up, pr)]


def matches(entry: upstream_diff.CorpusEntry, d: Difference) -> bool:
    return (any(fnmatch.fnmatchcase(d.snippet, g) for g in entry.snippets)
            and re.fullmatch(entry.item, d.item) is not None)


# -- tests -------------------------------------------------------------------------------------


def test_corpus_is_read_from_upstream_and_large_enough() -> None:
    found, skipped = corpus()
    keys = [s.key for s in found]
    handbook = [k for k in keys if k.endswith(tuple(f"#{i}" for i in range(100)))]
    assert len(handbook) >= 25, handbook
    assert any(k.startswith("examples/") for k in keys)
    assert "flake-template/flake.nix" in keys
    # real users' configurations (tests/nix/users), each naming its source
    users = [k for k in keys if k.startswith("users/")]
    assert len(users) >= 6, users
    # every listed fix and skip still names a block of the handbook (upstream moved text?)
    blocks = {k for k, _, _ in upstream_corpus.handbook_blocks(upstream_src())}
    stale = (set(upstream_corpus.SKIP) | set(upstream_corpus.FIXES)) - blocks
    assert not stale, f"fixes or skips for blocks upstream's handbook no longer has: {stale}"
    assert all(skipped.values())
    entries = all_entries()
    assert len(entries) >= 60, len(entries)


def test_no_configuration_fails_on_both_sides() -> None:
    """A configuration neither side can evaluate compares nothing: it belongs in
    upstream_corpus.SKIP with the reason (one side failing is a difference, reviewed above)."""
    entries = all_entries()
    dead = [e for e, (up, pr) in entries.items() if not up.get("ok") and not pr.get("ok")]
    assert not dead, dead
    both = [e for e, (up, pr) in entries.items() if up.get("ok") and pr.get("ok")]
    assert len(both) >= 60, len(both)
    hosts = [e for e, (up, _) in entries.items() if up.get("host")]
    assert len(hosts) >= 10, hosts


def test_every_corpus_difference_is_reviewed() -> None:
    unlisted, ambiguous = [], []
    for d in all_differences():
        hits = [e.id for e in upstream_diff.CORPUS if matches(e, d)]
        if not hits:
            unlisted.append(str(d))
        elif len(hits) > 1:
            ambiguous.append(f"{d} (entries {', '.join(hits)})")
    assert not unlisted, ("differences from upstream microvm.nix's corpus not in "
                          + "tests/support/upstream_diff.py (CORPUS):\n" + "\n".join(unlisted))
    assert not ambiguous, "differences matching several entries:\n" + "\n".join(ambiguous)


def test_every_listed_corpus_difference_still_exists() -> None:
    diffs = all_differences()
    gone = [f"{e.id}: {e.summary}" for e in upstream_diff.CORPUS
            if not any(matches(e, d) for d in diffs)]
    assert not gone, ("CORPUS entries of tests/support/upstream_diff.py that no snippet shows any "
                      + "more (fixed? remove them):\n" + "\n".join(gone))


if __name__ == "__main__":  # print the current differences (for reviewing the table)
    if os.environ.get("CORPUS_RAW"):
        print(json.dumps(evaluated(), indent=1))
    for diff in all_differences():
        hit = [e.id for e in upstream_diff.CORPUS if matches(e, diff)]
        print(f"{diff}    <- {','.join(hit) or 'UNLISTED'}")


@pytest.mark.parametrize(("module", "expected"), [
    # nothing set: every script is there (the guest has sshd and the host's store)
    ("{ }", {"installOnHost": "package", "sshSwitch": "package", "rebuild": "package"}),
    # a configuration drops the SSH scripts, as microvm.nix's types (nullOr package) allow
    ("{ lib, ... }: { microvm.deploy.rebuild = lib.mkForce null; " +
     "microvm.deploy.sshSwitch = lib.mkForce null; }",
     {"installOnHost": "package", "sshSwitch": "null", "rebuild": "null"}),
    # without mkForce, null conflicts with the module's own definition, on both sides
    ("{ microvm.deploy.rebuild = null; }",
     {"installOnHost": "package", "sshSwitch": "package", "rebuild": "error"}),
    # no sshd in the guest: no sshSwitch
    ("{ lib, ... }: { services.openssh.enable = lib.mkForce false; }",
     {"installOnHost": "package", "sshSwitch": "null", "rebuild": "package"}),
])
def test_deploy_options_take_what_microvm_nix_takes(tmp_path: Path, module: str,
                                                    expected: dict[str, str]) -> None:
    """microvm.deploy.* defined by a configuration (tests/nix/upstream/deploy-eval.nix): each
    option evaluates, is null, or fails, as with upstream's guest module."""
    (tmp_path / "m.nix").write_text(module + "\n")
    r = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "deploy-eval.nix",
                        "--arg", "upstream", str(upstream_src()),
                        "--arg", "module", str(tmp_path / "m.nix"),
                        "--arg", "python", json.dumps(sys.executable),
                        "--arg", "repo", json.dumps(str(REPO))],
                       cwd=NIXDIR, capture_output=True, text=True, env=nix_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = {side: {o: "error" if not f["ok"] else "null" if f["null"] else "package"
                  for o, f in facts.items()} for side, facts in json.loads(r.stdout).items()}
    assert got == {"upstream": expected, "project": expected}
