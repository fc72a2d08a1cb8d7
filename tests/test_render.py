"""The templates compiled ahead of time (microvm/_templates) are current, are the ones used,
and a template whose compiled form is stale is compiled from its source instead."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from microvm import render
from microvm.document import from_document
from microvm.runner import build

REGENERATE = "run `python -m microvm.render` and commit generator/microvm/_templates"


def test_compiled_templates_are_current(tmp_path: Path) -> None:
    names = render.compile_templates(tmp_path)
    shipped = {p.name: p.read_text() for p in render.COMPILED.iterdir() if p.suffix == ".py"}
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert sorted(shipped) == sorted(fresh), REGENERATE
    for name in sorted(fresh):
        assert shipped[name] == fresh[name], f"{name}: {REGENERATE}"
    assert "microvm-run.sh.j2" in names and "units/microvm@.service.j2" in names


def test_every_template_is_loaded_from_its_compiled_module() -> None:
    env = render.environment()
    assert env.loader is not None
    for name in env.loader.list_templates():
        filename = env.get_template(name).filename
        assert filename is not None and Path(filename).parent == render.COMPILED, name


def test_a_stale_compiled_template_is_compiled_from_source(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    doc = {"hostName": "r", "microvm": {"hypervisor": "qemu", "kernel": "/k/vmlinux",
                                        "storeOnDisk": False}}
    vm = from_document(doc)
    compiled = build(vm, "/run/r").files
    loader = render._Loader()
    assert loader._sources
    # as if a template had been edited after the last `python -m microvm.render`
    stale = {name: "0" * 64 for name in loader._sources}
    monkeypatch.setattr(loader, "_sources", stale)
    env = render._environment(loader)
    template = env.get_template("microvm-run.sh.j2")
    assert template.filename is not None
    assert Path(template.filename).parent.name == "templates"
    monkeypatch.setattr(render, "environment", lambda: env)
    assert build(vm, "/run/r").files == compiled


def test_another_jinja2_version_compiles_from_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jinja2, "__version__", "0.0")
    env = render._environment(render._Loader())
    template = env.get_template("tap-up.sh.j2")
    assert template.filename is not None
    assert Path(template.filename).parent.name == "templates"
    assert template.render(script="tap-up", version="1", host_name="h", hypervisor="qemu",
                           runtime_path="", runner_dir="/r", taps=[], user=None) == \
        render.render("tap-up.sh.j2", script="tap-up", version="1", host_name="h",
                      hypervisor="qemu", runtime_path="", runner_dir="/r", taps=[], user=None)
