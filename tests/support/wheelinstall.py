"""The package as a user installs it: a wheel built from the files git tracks (what a release
and the Nix package are built from), installed into a fresh virtual environment. Used by
tests/test_wheel.py and by bench/run.py (start-up is measured on the installed package, whose
templates the build compiled, not on the checkout, which compiles them in memory).

Offline: the dependencies come from this venv's site-packages (a .pth file in the fresh venv;
the wheel itself is installed with --no-deps --no-index). Building the wheel needs setuptools'
`wheel` package (or setuptools >= 70.1): from this venv when it has one, else pip's isolated
build gets setuptools, wheel and jinja2 from the package index, as `pip install -e .` did.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import click
import jinja2
import jsonschema

from support import REPO

# what a release is built from (nix/pkgs/microvm-generator.nix's fileset, MANIFEST.in)
SOURCE = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "generator",
          "tools/compile_templates.py"]


class CannotBuild(Exception):
    """No wheel could be built offline (setuptools' `wheel` missing, no package index)."""


def tracked(paths: list[str]) -> list[str]:
    """The files git tracks below paths (the source of a release), else every file there."""
    if (REPO / ".git").exists() and shutil.which("git"):
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--", *paths],
                             check=True, capture_output=True, text=True).stdout
        return [f for f in out.split("\0") if f and (REPO / f).is_file()]
    found: list[str] = []
    for d in paths:
        if (REPO / d).is_file():
            found.append(d)
            continue
        found += [str(p.relative_to(REPO)) for p in sorted((REPO / d).rglob("*"))
                  if p.is_file() and not {"__pycache__", "_templates"} & set(p.parts)
                  and ".egg-info" not in str(p)]
    return found


def can_build_offline() -> bool:
    major, minor = (int(x) for x in importlib.metadata.version("setuptools").split(".")[:2])
    return importlib.util.find_spec("wheel") is not None or (major, minor) >= (70, 1)


def build_wheel(src: Path, dist: Path) -> Path:
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist)]
    if can_build_offline():
        argv += ["--no-build-isolation", "--no-index"]
    p = subprocess.run([*argv, str(src)], capture_output=True, text=True, timeout=600)
    if p.returncode != 0 and not can_build_offline():
        raise CannotBuild("building a wheel needs setuptools' `wheel` package: this venv has " +
                          "none and pip could not fetch it (offline?): " +
                          p.stderr.strip()[-200:])
    assert p.returncode == 0, p.stderr
    wheels = list(dist.glob("microvm-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def install(top: Path) -> tuple[Path, Path]:
    """Build the wheel below `top` and install it into the venv `top`/venv; returns the venv
    and the installed package directory (site-packages/microvm)."""
    src = top / "src"
    for rel in tracked(SOURCE):
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
    return venv, Path(purelib) / "microvm"
