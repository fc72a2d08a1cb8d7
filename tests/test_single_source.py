"""One declaration per option: a property added to vm.schema.json alone is an option of the
Nix module (with the schema's type and default), is written into the VM document by the
module, is held by the Python model (in `others` until a field names it) and goes back into
the document unchanged, is checked by both validators alike, and appears in the option
reference. The test adds two options to a copy of the schema and follows them."""

from __future__ import annotations

import json
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
from test_nix import nix_problem

REPO = Path(__file__).resolve().parents[1]
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


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """The Nix side and the schema, laid out as in the repository, with the extended schema."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "nix", root / "nix")
    shutil.copytree(REPO / "tests" / "nix", root / "tests" / "nix",
                    ignore=shutil.ignore_patterns("golden", "upstream"))
    (root / "generator" / "microvm" / "schema").mkdir(parents=True)
    (root / "generator" / "microvm" / "schema" / "vm.schema.json").write_text(
        json.dumps(extended_schema(), indent=2))
    return root


def nix(root: Path, expr: str) -> Any:
    r = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expr],
                       cwd=root / "tests" / "nix", capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


@pytest.mark.nix
def test_the_nix_module_declares_and_writes_a_new_option(repo_copy: Path) -> None:
    if why := nix_problem():
        pytest.skip(why)
    opts = nix(repo_copy, "import ./dump-options.nix")
    assert opts["exampleNew"]["default"] == 7
    assert opts["exampleNew"]["type"]["types"] == ["integer"]
    assert opts["exampleNew"]["description"] == NEW_TOP["description"]
    conf = repo_copy / "conf.nix"
    conf.write_text('{ module = { networking.hostName = "s"; microvm.exampleNew = 9; ' +
                    'microvm.volumes = [ { image = "a.img"; size = 8; exampleFlag = true; } ]; ' +
                    "}; }")
    d = json.loads(nix(repo_copy,
                       f"(import ./eval.nix {{ configuration = {conf}; }}).uncheckedJson"))
    assert d["microvm"]["exampleNew"] == 9
    assert d["microvm"]["volumes"][0]["exampleFlag"] is True
    # the Nix checks refuse what the schema refuses, with the same path
    bad = repo_copy / "bad.json"
    bad.write_text(json.dumps(doc(exampleNew=100)))
    paths = nix(repo_copy, "let lib = import <nixpkgs/lib>; mlib = import ../../nix/lib " +
                "{ inherit lib; }; in map (p: p.path) (mlib.documentProblems " +
                f"(builtins.fromJSON (builtins.readFile {bad})))")
    assert paths == ["microvm.exampleNew"]


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
