"""microvm-prefetch-git (generator/microvm/libexec/) on a local repository, and
`create/update --flake` pinning with a fake `nix` that builds runners by copying one and
records its argv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from microvm.host import pin as pin_module
from microvm.host.pin import parse_git_flake
from support import REPO
from support.host_cli import cli, make_runner, write_exe

SCRIPT = REPO / "generator" / "microvm" / "libexec" / "microvm-prefetch-git"
NIX = ["nix", "--extra-experimental-features", "nix-command flakes"]

pytestmark = pytest.mark.skipif(shutil.which("git") is None or shutil.which("nix-hash") is None,
                                reason="needs git and nix-hash")
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, text=True,
                          capture_output=True, env={**os.environ, **GIT_ENV}).stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    commit(r, {"flake.nix": "{ outputs = _: { }; }\n", "sub/data": "1\n"}, "one")
    (r / "run.sh").write_text("#!/bin/sh\n")
    (r / "run.sh").chmod(0o755)
    (r / "link").symlink_to("sub/data")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "exec bit and symlink")
    return r


def prefetch(*args: str) -> dict[str, str]:
    p = subprocess.run(["sh", str(SCRIPT), "--quiet", *args], text=True, capture_output=True)
    assert p.returncode == 0, p.stderr
    data: dict[str, str] = json.loads(p.stdout)
    return data


def nar_hash_of_checkout(repo: Path, rev: str, tmp: Path) -> str:
    """An independent reference: `git archive` the commit, unpack, nix-hash (no .git)."""
    tree = tmp / f"tree-{rev[:8]}"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return subprocess.run(["nix-hash", "--type", "sha256", "--base32", str(tree)], check=True,
                          text=True, capture_output=True).stdout.strip()


def test_pins_a_local_repository_and_notices_a_new_commit(repo: Path, tmp_path: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    pin = prefetch(str(repo))
    assert pin["url"] == str(repo)
    assert pin["rev"] == head
    assert pin["sha256"] == nar_hash_of_checkout(repo, head, tmp_path)
    assert "path" not in pin
    # the same through a file:// URL and by branch name
    assert prefetch("--rev", "main", f"file://{repo}")["sha256"] == pin["sha256"]

    new = commit(repo, {"sub/data": "2\n"}, "two")
    again = prefetch(str(repo))
    assert again["rev"] == new != head
    assert again["sha256"] != pin["sha256"]
    assert again["sha256"] == nar_hash_of_checkout(repo, new, tmp_path)
    # an explicit older revision still resolves to the old content
    assert prefetch(str(repo), head)["sha256"] == pin["sha256"]


def test_hash_matches_nix_flake_prefetch(repo: Path, tmp_path: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    registry = tmp_path / "registry.json"
    registry.write_text('{"flakes": [], "version": 2}')
    p = subprocess.run([*NIX, "--option", "flake-registry", str(registry), "flake", "prefetch",
                        "--json", f"git+file://{repo}?rev={head}"], text=True,
                       capture_output=True)
    if p.returncode != 0:
        pytest.skip(f"nix flake prefetch does not work here: {p.stderr.strip()[:200]}")
    reference = json.loads(p.stdout)["hash"]
    assert prefetch(str(repo))["hash"] == reference


def test_tags_out_dir_and_errors(repo: Path, tmp_path: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "-a", "v1", "-m", "annotated")
    assert prefetch(str(repo), "v1")["rev"] == head  # the commit, not the tag object
    out = tmp_path / "kept"
    pin = prefetch("--out", str(out), str(repo))
    assert pin["path"] == str(out)
    assert sorted(p.name for p in out.iterdir()) == ["flake.nix", "link", "run.sh", "sub"]
    assert os.access(out / "run.sh", os.X_OK)
    assert os.readlink(out / "link") == "sub/data"
    for args, code, message in (
            ([str(repo), "nosuchbranch"], 1, "no reference nosuchbranch"),
            (["--out", str(out), str(repo)], 1, "already exists"),
            (["--bogus"], 2, "unknown option --bogus"),
            ([], 2, "usage:"),
            ([str(tmp_path / "missing")], 1, "cannot list the references"),
            ([f"{repo}\nx"], 1, "")):
        p = subprocess.run(["sh", str(SCRIPT), "--quiet", *args], text=True,
                           capture_output=True)
        assert p.returncode == code, (args, p.stderr)
        assert message in p.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck() -> None:
    r = subprocess.run(["shellcheck", "-s", "sh", str(SCRIPT)], text=True, capture_output=True)
    assert r.returncode == 0, r.stdout


def test_the_commands_run_the_packaged_script(monkeypatch: pytest.MonkeyPatch) -> None:
    """One copy, inside the package (so a wheel or the Nix package carries it), run by sh;
    $MICROVM_PREFETCH_GIT overrides it; PATH is not consulted."""
    monkeypatch.delenv(pin_module.SCRIPT_ENV, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert pin_module.script_argv() == ["sh", str(SCRIPT)]
    assert pin_module.PACKAGED == SCRIPT
    monkeypatch.setenv(pin_module.SCRIPT_ENV, "/opt/prefetch")
    assert pin_module.script_argv() == ["/opt/prefetch"]
    assert not (REPO / "scripts" / "microvm-prefetch-git").exists()


def test_parse_git_flake() -> None:
    f = parse_git_flake("git+file:///etc/nixos?ref=main&dir=sub#ignored")
    assert f is not None
    assert (f.url, f.ref, f.rev, f.params) == ("file:///etc/nixos", "main", None,
                                               (("dir", "sub"),))
    assert f.wanted == "main"
    assert f.with_rev("a" * 40) == f"git+file:///etc/nixos?dir=sub&ref=main&rev={'a' * 40}"
    assert parse_git_flake("github:owner/repo") is None
    assert parse_git_flake("/etc/nixos") is None


# -- create/update --flake with a fake nix ---------------------------------------------------

@pytest.fixture
def fake_nix(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """`nix build --out-link L REF#ATTR` copies a template runner to a fresh "store" path
    named after REF and links L to it; `nix eval --raw` prints what `build` would make;
    anything else goes to the real nix (the prefetch script's `nix hash to-sri`)."""
    template = make_runner(tmp_path, "vm", name="template")
    store, log = tmp_path / "store", tmp_path / "nix.log"
    real = shutil.which("nix")
    write_exe(tmp_path / "bin" / "nix", f"""
        #!{sys.executable}
        import hashlib, json, os, shutil, sys
        from pathlib import Path
        args = sys.argv[1:]
        with open({str(log)!r}, "a") as f:
            f.write(json.dumps(args) + "\\n")
        rest = [a for a in args if a not in ("--extra-experimental-features",
                                             "nix-command flakes")]
        def path_for(ref):
            return Path({str(store)!r}) / (hashlib.sha256(ref.encode()).hexdigest()[:12]
                                          + "-microvm-runner")
        if rest[:1] == ["build"]:
            link, ref = Path(rest[rest.index("--out-link") + 1]), rest[-1]
            out = path_for(ref)
            if not out.exists():
                shutil.copytree({str(template)!r}, out, symlinks=True)
            if link.is_symlink():
                link.unlink()
            link.symlink_to(out)
        elif rest[:2] == ["eval", "--raw"]:
            print(path_for(rest[-1].removesuffix(".outPath")), end="")
        else:
            os.execv({real!r}, [{real!r}, *args])
        """)
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    return env, log


def nix_calls(log: Path) -> list[list[str]]:
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def test_create_and_update_pin_a_git_flake(repo: Path, tmp_path: Path,
                                           fake_nix: tuple[dict[str, str], Path]) -> None:
    env, log = fake_nix
    root = tmp_path / "state"
    flake = f"git+file://{repo}"
    head = git(repo, "rev-parse", "HEAD")
    out = cli("-c", "vm", "-f", flake, state_dir=root, env=env, check=True).stderr
    assert f"pinned file://{repo} at {head[:12]}" in out
    meta = json.loads((root / ".control" / "vm" / "meta.json").read_text())
    pin = meta["pin"]
    assert (pin["rev"], pin["url"]) == (head, f"file://{repo}")
    assert meta["flake"] == flake
    builds = [c for c in nix_calls(log) if "build" in c]
    assert builds == [["--extra-experimental-features", "nix-command flakes", "build",
                       "--out-link", str(root / ".control" / "vm" / ".build"),
                       (f"{flake}?rev={head}#nixosConfigurations.vm.config.microvm." +
                        "declaredRunner")]]
    first = os.readlink(root / ".control" / "vm" / "current")
    assert not (root / ".control" / "vm" / ".build").is_symlink()  # the GC root moved to current

    out = cli("update", "vm", state_dir=root, env=env, check=True).stderr
    assert "pin unchanged" in out
    assert "vm: no change" in out

    new = commit(repo, {"sub/data": "3\n"}, "three")
    listed = json.loads(cli("list", "--check", "--json", state_dir=root, env=env,
                            check=True).stdout)
    assert listed[0]["outdated"] is True  # what the flake evaluates to now is not current
    out = cli("-Ru", "vm", state_dir=root, env=env, check=True).stderr
    assert f"pin changed: file://{repo}: rev {head[:12]} -> {new[:12]}" in out
    meta = json.loads((root / ".control" / "vm" / "meta.json").read_text())
    assert meta["pin"]["rev"] == new
    assert os.readlink(root / ".control" / "vm" / "current") != first
    assert f"{flake}?rev={new}#" in nix_calls(log)[-1][-1]
    assert "vm: not running; `microvm run vm` starts the new runner" in out


def test_create_flake_failures_are_clear(tmp_path: Path,
                                         fake_nix: tuple[dict[str, str], Path]) -> None:
    env, _ = fake_nix
    p = cli("create", "vm", "--flake", f"git+file://{tmp_path}/nothing",
            state_dir=tmp_path / "s", env=env)
    assert p.returncode == 1
    assert "cannot list the references" in p.stderr
    assert not (tmp_path / "s" / ".control" / "vm" / "current").exists()
