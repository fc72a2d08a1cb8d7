"""One declaration per option: a property added to vm.schema.json alone is an option of the
Nix module (with the schema's type and default), is written into the VM document by the
module, is held by the Python model (in `others` until a field names it) and goes back into
the document unchanged, and appears in the option reference. One declaration per rule: a rule
added where docs/concepts.md says ("Where things live") is enforced by `microvm validate` and
by the Nix build alike, with the same line. The tests add two options and a rule to a copy of
the tree and follow them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from microvm import options
from microvm.config import MicroVM
from microvm.document import from_document
from microvm.errors import ValidationError
from support import REPO
from support.nixeval import nix_problem

SCHEMA = REPO / "generator" / "microvm" / "schema" / "vm.schema.json"

NEW_TOP = {"type": "integer", "minimum": 0, "maximum": 99, "default": 7,
           "description": "An option that exists only in this test's schema."}
NEW_ITEM = {"type": "boolean", "default": False,
            "description": "A volume option that exists only in this test's schema."}


def extended_schema() -> dict[str, Any]:
    sch: dict[str, Any] = json.loads(SCHEMA.read_text("utf-8"))
    m = sch["properties"]["microvm"]["properties"]
    m["exampleNew"] = NEW_TOP
    m["volumes"]["items"]["properties"]["exampleFlag"] = NEW_ITEM
    return sch


@pytest.fixture
def schema_with_new_options(monkeypatch: pytest.MonkeyPatch) -> str:
    text = json.dumps(extended_schema(), indent=2)
    options._schema_text.cache_clear()
    monkeypatch.setattr(options, "_schema_text", lambda: text)
    return text


def doc(**m: Any) -> dict[str, Any]:
    return {"hostName": "s", "microvm": {"kernel": "/k", "storeOnDisk": False, **m}}


def test_every_option_of_the_shipped_schema_has_a_field() -> None:
    vm = from_document(doc(volumes=[{"image": "a.img", "size": 8}],
                           shares=[{"tag": "t", "source": "/s", "mountPoint": "/m"}]))
    assert vm.others == {}
    assert vm.volumes[0].others == {} and vm.shares[0].others == {}


def test_the_python_model_holds_a_new_option(schema_with_new_options: str) -> None:
    vm = from_document(doc(volumes=[{"image": "a.img", "size": 8, "exampleFlag": True}]))
    assert vm.others == {"microvm.exampleNew": 7}
    assert vm.volumes[0].others == {"exampleFlag": True}
    out = vm.to_json()
    assert out["microvm"]["exampleNew"] == 7
    assert out["microvm"]["volumes"][0]["exampleFlag"] is True
    assert MicroVM.from_json(out) == vm
    with pytest.raises(ValidationError) as e:
        from_document(doc(exampleNew=100))
    assert [p.path for p in e.value.problems] == ["microvm.exampleNew"]


# a rule between options, added the way docs/concepts.md says: a _check_* function in
# generator/microvm/validate.py, listed in CHECKS
NEW_RULE = """

def _check_example(c: _Checker) -> None:
    if c.vm.others.get("microvm.exampleNew") == 13 and c.vm.vcpu > 1:
        c.add("microvm.exampleNew", "must not be 13 with more than one vCPU (a test's rule)")


CHECKS = (*CHECKS, _check_example)
"""
RULE_LINE = ("microvm.exampleNew: must not be 13 with more than one vCPU (a test's rule)")


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """The Nix side, the generator and the schema, laid out as in the repository, with the
    extended schema and the new rule."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "nix", root / "nix")
    shutil.copytree(REPO / "tests" / "nix", root / "tests" / "nix",
                    ignore=shutil.ignore_patterns("golden", "upstream"))
    shutil.copytree(REPO / "generator" / "microvm", root / "generator" / "microvm",
                    ignore=shutil.ignore_patterns("__pycache__", "_templates"))
    (root / "generator" / "microvm" / "schema" / "vm.schema.json").write_text(
        json.dumps(extended_schema(), indent=2))
    with (root / "generator" / "microvm" / "validate.py").open("a") as f:
        f.write(NEW_RULE)
    return root


def nix(root: Path, expr: str, *, build: bool = False) -> subprocess.CompletedProcess[str]:
    args = ["--arg", "python", json.dumps(sys.executable), "--arg", "repo", json.dumps(str(root))]
    cmd = (["nix-build", "--no-out-link", "--option", "sandbox", "false", "--option",
            "build-users-group", "", "--option", "substituters", ""] if build
           else ["nix-instantiate", "--eval", "--strict", "--json"])
    return subprocess.run([*cmd, *args, "-E", "{ python, repo }: " + expr],
                          cwd=root / "tests" / "nix", capture_output=True, text=True, timeout=300)


def nix_value(root: Path, expr: str) -> Any:
    r = nix(root, expr)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def configuration(root: Path, name: str, settings: str) -> str:
    conf = root / f"{name}.nix"
    conf.write_text('{ module = { networking.hostName = "s"; ' + settings + " }; }")
    return f"(import ./eval.nix {{ configuration = {conf}; inherit python repo; }})"


@pytest.mark.nix
def test_the_nix_module_declares_and_writes_a_new_option(repo_copy: Path) -> None:
    if why := nix_problem():
        pytest.skip(why)
    opts = nix_value(repo_copy, "import ./dump-options.nix")
    assert opts["exampleNew"]["default"] == 7
    assert opts["exampleNew"]["type"]["types"] == ["integer"]
    assert opts["exampleNew"]["description"] == NEW_TOP["description"]
    conf = configuration(repo_copy, "conf", "microvm.exampleNew = 9; microvm.volumes = " +
                         "[ { image = \"a.img\"; size = 8; exampleFlag = true; } ];")
    d = json.loads(nix_value(repo_copy, f"{conf}.uncheckedJson"))
    assert d["microvm"]["exampleNew"] == 9
    assert d["microvm"]["volumes"][0]["exampleFlag"] is True
    # the schema's bounds are the option's type: evaluation refuses 100 by the option's name
    r = nix(repo_copy, configuration(repo_copy, "big", "microvm.exampleNew = 100;") + ".json")
    assert r.returncode != 0 and "microvm.exampleNew" in r.stderr, r.stderr[-3000:]


@pytest.mark.nix
def test_a_new_rule_is_enforced_by_the_generator_and_the_nix_build(repo_copy: Path,
                                                                   tmp_path: Path) -> None:
    if why := nix_problem():
        pytest.skip(why)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc(exampleNew=13, vcpu=2)))
    r = subprocess.run([sys.executable, "-m", "microvm.cli", "validate", str(bad)],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(repo_copy / "generator")})
    assert r.returncode == 2 and r.stderr == f"error: {RULE_LINE}\n", r.stderr
    good = configuration(repo_copy, "good", "microvm.exampleNew = 13; microvm.vcpu = 1;")
    assert nix(repo_copy, f"{good}.check", build=True).returncode == 0
    built = nix(repo_copy, configuration(repo_copy, "bad", "microvm.exampleNew = 13; " +
                                         "microvm.vcpu = 2;") + ".runner", build=True)
    assert built.returncode != 0
    assert f"error: {RULE_LINE}\n" in built.stderr, built.stderr[-3000:]
    # and the checkout without the rule accepts the same configuration
    r = subprocess.run([sys.executable, "-m", "microvm.cli", "validate", str(bad)],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO / "generator")})
    assert "exampleNew: must not be 13" not in r.stderr


def test_the_option_reference_lists_a_new_option(tmp_path: Path) -> None:
    sch = tmp_path / "vm.schema.json"
    sch.write_text(json.dumps(extended_schema()))
    code = ("import sys, pathlib; sys.path.insert(0, 'tools'); import gen_options as g; " +
            f"g.SCHEMA_PATH = pathlib.Path({str(sch)!r}); " +
            "print('\\n'.join(o.path for o in g.schema_options()))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "microvm.exampleNew" in r.stdout.split()
    assert "microvm.volumes.*.exampleFlag" in r.stdout.split()
