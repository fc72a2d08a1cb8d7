"""The installed package is the tested one: build the wheel from the files git tracks (as the
Nix package does from pyproject.toml, README.md and generator/), install it into a fresh
virtual environment, and run the commands from there, outside the source tree, with the
working directory elsewhere: every program and data file they use (templates, compiled
templates, the schema, the units' helper templates, microvm-prefetch-git) must come with it.

Offline: the dependencies come from this venv's site-packages (a .pth file in the fresh venv;
the wheel itself is installed with --no-deps --no-index). Building the wheel needs setuptools'
`wheel` package (or setuptools >= 70.1): from this venv when it has one, else pip's isolated
build gets setuptools and wheel from the package index, as `pip install -e .` did.
"""

from __future__ import annotations

import filecmp
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import jinja2
import jsonschema
import pytest
from support import REPO

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


def tracked(paths: list[str]) -> list[str]:
    """The files git tracks below paths (the source of a release), else every file there."""
    if (REPO / ".git").exists() and shutil.which("git"):
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--", *paths],
                             check=True, capture_output=True, text=True).stdout
        return [f for f in out.split("\0") if f and (REPO / f).is_file()]
    return [str(p.relative_to(REPO)) for d in paths for p in sorted((REPO / d).rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p)]


def can_build_offline() -> bool:
    major, minor = (int(x) for x in importlib.metadata.version("setuptools").split(".")[:2])
    return importlib.util.find_spec("wheel") is not None or (major, minor) >= (70, 1)


def build_wheel(src: Path, dist: Path) -> Path:
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist)]
    if can_build_offline():
        argv += ["--no-build-isolation", "--no-index"]
    p = subprocess.run([*argv, str(src)], capture_output=True, text=True, timeout=600)
    if p.returncode != 0 and not can_build_offline():
        pytest.skip("building a wheel needs setuptools' `wheel` package: this venv has none " +
                    "and pip could not fetch it (offline?): " + p.stderr.strip()[-200:])
    assert p.returncode == 0, p.stderr
    wheels = list(dist.glob("microvm-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    top = tmp_path_factory.mktemp("wheel")
    src = top / "src"
    for rel in tracked(["pyproject.toml", "README.md", "generator"]):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    wheel = build_wheel(src, top / "dist")
    venv = top / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # the runtime dependencies, from the site-packages they are installed in here (a plain
    # directory line: the .pth files there, such as the editable install's, are not read)
    deps = sorted({str(Path(m.__file__ or "").parent.parent) for m in (click, jinja2, jsonschema)})
    Path(purelib, "_microvm_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    work = top / "elsewhere"
    work.mkdir()
    return Installed(venv=venv, package=Path(purelib) / "microvm", work=work)


def test_the_commands_import_the_installed_package(installed: Installed) -> None:
    code = "import microvm, microvm.cli; print(microvm.__file__)"
    p = installed.run(installed.python, "-c", code)
    assert Path(p.stdout.strip()).parent == installed.package
    assert installed.run(installed.microvm, "--version").stdout.startswith("microvm, version")


def test_every_file_of_the_package_is_installed(installed: Installed) -> None:
    """Each file git tracks in generator/microvm (programs, templates, schema, compiled
    templates) is installed, byte for byte; scripts keep no mode that matters (run by sh)."""
    files = [Path(f).relative_to("generator/microvm") for f in tracked(["generator/microvm"])]
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
    code = "\n".join(["from microvm import render",
                      "env = render.environment()",
                      "print(env.get_template('microvm-run.sh.j2').filename)",
                      "print(env.get_template('units/microvm@.service.j2').filename)"])
    for line in installed.run(installed.python, "-c", code).stdout.splitlines():
        assert Path(line).parent == installed.package / "_templates", line


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
