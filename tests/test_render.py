"""The templates compiled when the package is built (tools/compile_templates.py, run by setup.py;
the installed wheel's are checked by tests/test_wheel.py) are used when they are current and
render what the sources render; a stale one (edited template, other jinja2) and a checkout
without any are compiled from source, in memory, with the same output."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import jinja2
import pytest
from microvm import render
from microvm.document import from_document
from microvm.runner import build
from support import REPO


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_compiler() -> ModuleType:
    return load("compile_templates", REPO / "tools" / "compile_templates.py")


def compiled_loader(monkeypatch: pytest.MonkeyPatch, target: Path) -> render._Loader:
    """render's loader as in a built package whose compiled templates are in `target`."""
    names = load_compiler().compile_templates(target / "_templates")
    assert "microvm-run.sh.j2" in names and "units/microvm@.service.j2" in names
    monkeypatch.setattr(render, "COMPILED", target / "_templates")
    monkeypatch.setitem(sys.modules, "microvm._templates",
                        load("microvm._templates", target / "_templates" / "__init__.py"))
    return render._Loader()


def runner_files() -> dict[str, str]:
    doc = {"hostName": "r", "microvm": {"hypervisor": "qemu", "kernel": "/k/vmlinux",
                                        "storeOnDisk": False}}
    return {str(k): str(v) for k, v in build(from_document(doc), "/run/r").files.items()}


def test_a_checkout_has_no_compiled_templates() -> None:
    """Generated code is not committed: a checkout compiles its templates in memory."""
    assert not render.COMPILED.exists(), \
        f"{render.COMPILED} is made by the build (setup.py): delete it from the checkout"
    env = render.environment()
    template = env.get_template("microvm-run.sh.j2")
    assert template.filename is not None and Path(template.filename).parent == render.TEMPLATES


def test_compiled_templates_are_used_and_render_the_same(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    from_source = runner_files()
    env = render.make_environment(compiled_loader(monkeypatch, tmp_path))
    assert env.loader is not None
    for name in env.loader.list_templates():
        filename = env.get_template(name).filename
        assert filename is not None and Path(filename).parent == tmp_path / "_templates", name
    monkeypatch.setattr(render, "environment", lambda: env)
    assert runner_files() == from_source


def test_compiling_is_deterministic(tmp_path: Path) -> None:
    compiler = load_compiler()
    compiler.compile_templates(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "tmpl_stale.py").write_text("")
    compiler.compile_templates(tmp_path / "b")
    a = {p.name: p.read_text() for p in (tmp_path / "a").iterdir()}
    b = {p.name: p.read_text() for p in (tmp_path / "b").iterdir()}
    assert a == b


def test_a_stale_compiled_template_is_compiled_from_source(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    from_source = runner_files()
    loader = compiled_loader(monkeypatch, tmp_path)
    assert loader._sources
    # as if a template had been edited after the package was built
    monkeypatch.setattr(loader, "_sources", {name: "0" * 64 for name in loader._sources})
    env = render.make_environment(loader)
    template = env.get_template("microvm-run.sh.j2")
    assert template.filename is not None
    assert Path(template.filename).parent == render.TEMPLATES
    monkeypatch.setattr(render, "environment", lambda: env)
    assert runner_files() == from_source


def test_another_jinja2_version_compiles_from_source(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    compiled_loader(monkeypatch, tmp_path)
    monkeypatch.setattr(jinja2, "__version__", "0.0")
    env = render.make_environment(render._Loader())
    template = env.get_template("tap-up.sh.j2")
    assert template.filename is not None
    assert Path(template.filename).parent == render.TEMPLATES
    assert template.render(script="tap-up", version="1", host_name="h", hypervisor="qemu",
                           runtime_path="", runner_dir="/r", taps=[], user=None) == \
        render.render("tap-up.sh.j2", script="tap-up", version="1", host_name="h",
                      hypervisor="qemu", runtime_path="", runner_dir="/r", taps=[], user=None)
