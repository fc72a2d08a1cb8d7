"""The installed package is the tested one: build the wheel from the files git tracks (as the
Nix package does from pyproject.toml, setup.py, README.md, generator/ and the template
compiler in tools/), install it into a fresh virtual environment, and run the commands from
there, outside the source tree, with the working directory elsewhere: every program and data
file they use (templates, the schema, the units' helper templates, microvm-prefetch-git) must
come with it, and the templates compiled by the build (setup.py) must be in it and be the ones
used. How it is built and installed, offline: tests/support/wheelinstall.py.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import REPO, wheelinstall

PACKAGE = REPO / "generator" / "microvm"
EXAMPLE = REPO / "examples" / "demo" / "vm.json"

pytestmark = pytest.mark.wheel


@dataclass(frozen=True)
class Installed:
    venv: Path
    package: Path  # site-packages/microvm of the fresh venv
    work: Path  # a scratch directory outside the source tree (the commands' cwd)

    @property
    def microvm(self) -> Path:
        return self.venv / "bin" / "microvm"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTHON", "MICROVM_"))}
        return {**env, "MICROVM_SERVICE_MANAGER": "none"}

    def run(self, *argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([str(a) for a in argv], cwd=self.work, env=self.env(), text=True,
                           capture_output=True, timeout=120)
        assert "Traceback" not in p.stderr, p.stderr
        if check:
            assert p.returncode == 0, f"{argv}: {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    top = tmp_path_factory.mktemp("wheel")
    try:
        venv, package = wheelinstall.install(top)
    except wheelinstall.CannotBuild as e:
        pytest.skip(str(e))
    work = top / "elsewhere"
    work.mkdir()
    return Installed(venv=venv, package=package, work=work)


def test_the_commands_import_the_installed_package(installed: Installed) -> None:
    code = "import microvm, microvm.cli; print(microvm.__file__)"
    p = installed.run(installed.python, "-c", code)
    assert Path(p.stdout.strip()).parent == installed.package
    assert installed.run(installed.microvm, "--version").stdout.startswith("microvm, version")


def test_every_file_of_the_package_is_installed(installed: Installed) -> None:
    """Each file git tracks in generator/microvm (programs, templates, schema) is installed,
    byte for byte; scripts keep no mode that matters (run by sh)."""
    files = [Path(f).relative_to("generator/microvm")
             for f in wheelinstall.tracked(["generator/microvm"])]
    assert Path("libexec/microvm-prefetch-git") in files
    assert Path("schema/vm.schema.json") in files
    missing = [str(f) for f in files if not (installed.package / f).is_file()]
    assert not missing, f"not in the wheel (pyproject.toml's package-data): {missing}"
    differ = [str(f) for f in files
              if (installed.package / f).read_bytes() != (PACKAGE / f).read_bytes()]
    assert not differ


def test_schema_templates_and_compiled_templates(installed: Installed) -> None:
    schema = json.loads(installed.run(installed.microvm, "schema").stdout)
    assert schema == json.loads((PACKAGE / "schema" / "vm.schema.json").read_text())
    # the build compiled every template, for the jinja2 the package runs with, and the
    # installer byte-compiled them with the rest of the package
    compiled = installed.package / "_templates"
    code = "\n".join(["import jinja2, json",
                      "from microvm import _templates as t, render",
                      "env = render.environment()",
                      "print(json.dumps([jinja2.__version__, t.JINJA2, sorted(t.SOURCES),",
                      "                  [env.get_template(n).filename for n in t.SOURCES]]))"])
    version, built_with, names, filenames = json.loads(
        installed.run(installed.python, "-c", code).stdout)
    assert built_with == version
    sources = sorted(str(p.relative_to(PACKAGE / "templates"))
                     for p in (PACKAGE / "templates").rglob("*.j2"))
    assert names == sources
    assert {Path(f).parent for f in filenames} == {compiled}
    assert len(list(compiled.glob("tmpl_*.py"))) == len(sources)
    assert list(compiled.glob("__pycache__/tmpl_*.pyc"))


def same_tree(a: Path, b: Path) -> None:
    cmp = filecmp.dircmp(a, b)
    stack = [cmp]
    while stack:
        c = stack.pop()
        assert not c.left_only and not c.right_only, (c.left, c.left_only, c.right_only)
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        assert not mismatch and not errors, (c.left, mismatch, errors)
        stack += c.subdirs.values()
    for dirpath, _, filenames in os.walk(a):
        for n in filenames:
            x = Path(dirpath, n)
            y = b / x.relative_to(a)
            assert x.is_symlink() == y.is_symlink(), x
            if x.is_symlink():
                assert os.readlink(x) == os.readlink(y), x
            else:
                assert x.stat().st_mode == y.stat().st_mode, x


def test_generate_and_units_from_the_installed_wheel(installed: Installed,
                                                     tmp_path: Path) -> None:
    """The same bytes as the source tree makes (its tests check what they mean)."""
    installed.run(installed.microvm, "generate", EXAMPLE, "--out", "runner")
    mine = tmp_path / "runner"
    subprocess.run([sys.executable, "-m", "microvm.cli", "generate", str(EXAMPLE), "--out",
                    str(mine)], check=True, capture_output=True)
    same_tree(installed.work / "runner", mine)

    args = ["units", "--declare", "web=/nix/store/a-r", "--libexec-dir", "/usr/libexec/microvm"]
    installed.run(installed.microvm, *args, "--out", "units")
    subprocess.run([sys.executable, "-m", "microvm.cli", *args, "--out", str(tmp_path / "u")],
                   check=True, capture_output=True)
    same_tree(installed.work / "units", tmp_path / "u")
    assert (installed.work / "units" / "libexec/microvm/install-runner").is_file()


def test_prefetch_script_runs_from_the_installed_package(installed: Installed,
                                                         tmp_path: Path) -> None:
    code = "from microvm.host import pin; print(*pin.script_argv(), sep='\\n')"
    argv = installed.run(installed.python, "-c", code).stdout.splitlines()
    assert argv == ["sh", str(installed.package / "libexec" / "microvm-prefetch-git")]
    usage = installed.run(*argv, "--help").stdout
    assert usage.startswith("usage: microvm-prefetch-git")
    if shutil.which("git") is None or shutil.which("nix-hash") is None:
        return  # pinning itself: tests/test_host_prefetch.py (skipped there too)
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}
    for git in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "one"]):
        if git[0] == "add":
            (repo / "flake.nix").write_text("{ outputs = _: { }; }\n")
        subprocess.run(["git", "-C", str(repo), *git], check=True, env={**os.environ, **env})
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, text=True,
                          capture_output=True).stdout.strip()
    code = (f"from microvm.host import pin; p = pin.prefetch({str(repo)!r}, 'main'); " +
            "print(p.rev, p.sha256)")
    rev, sha256 = installed.run(installed.python, "-c", code).stdout.split()
    assert rev == head and len(sha256) == 52


def test_host_install_links_the_installed_command(installed: Installed) -> None:
    root = installed.work / "image"
    root.mkdir()
    installed.run(installed.microvm, "host", "install", "--root", root)
    link = root / "usr/local/bin/microvm"
    assert os.readlink(link) == str(installed.microvm)
    assert (root / "usr/local/libexec/microvm/set-booted").is_file()
    installed.run(installed.microvm, "host", "uninstall", "--root", root)
    assert not os.path.lexists(link)
