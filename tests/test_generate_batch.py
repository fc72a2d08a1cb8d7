"""`microvm generate --batch DOCUMENT OUT ...`: many runner trees in one process, each the same
bytes as a single `generate` writes, each written completely or not at all; every document and
every output is checked before anything is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "microvm.cli", "generate"]


def doc(name: str, **microvm: Any) -> dict[str, Any]:
    return {"hostName": name, "microvm": {"kernel": "/k/vmlinux", "storeOnDisk": False,
                                          **microvm}}


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes (its own directory's name replaced by ROOT) and mode."""
    return {str(p.relative_to(root)): (p.read_bytes().replace(os.fsencode(root), b"ROOT"),
                                       p.stat().st_mode)
            for p in sorted(root.rglob("*")) if p.is_file()}


def documents(tmp_path: Path) -> list[Path]:
    docs = [doc("web", balloon=True), doc("db", hypervisor="firecracker"),
            doc("ch", hypervisor="cloud-hypervisor", vcpu=2)]
    paths = []
    for d in docs:
        p = tmp_path / f"{d['hostName']}.json"
        p.write_text(json.dumps(d))
        paths.append(p)
    return paths


def batch_args(pairs: list[tuple[Path, Path]]) -> list[str]:
    return [a for d, o in pairs for a in ("--batch", str(d), str(o))]


def test_a_batch_writes_what_single_runs_write(tmp_path: Path) -> None:
    docs = documents(tmp_path)
    pairs = [(d, tmp_path / "batch" / d.stem) for d in docs]
    subprocess.run([*CLI, *batch_args(pairs)], check=True)
    for d, out in pairs:
        single = tmp_path / "single" / d.stem
        subprocess.run([*CLI, str(d), "--out", str(single)], check=True)
        assert tree(out) == tree(single), d


def test_document_and_out_combine_with_batch(tmp_path: Path) -> None:
    web, db, _ = documents(tmp_path)
    subprocess.run([*CLI, str(web), "--out", str(tmp_path / "w"),
                    "--batch", str(db), str(tmp_path / "d")], check=True)
    assert (tmp_path / "w" / "share" / "microvm" / "hostname").read_text() == "web\n"
    assert (tmp_path / "d" / "share" / "microvm" / "hypervisor").read_text() == "firecracker\n"


def test_an_invalid_document_writes_nothing_and_names_the_document(tmp_path: Path) -> None:
    web, db, _ = documents(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc("bad", vcpu=-1)))
    before = sorted(p.name for p in tmp_path.iterdir())
    r = subprocess.run([*CLI, *batch_args([(web, tmp_path / "o" / "web"),
                                           (bad, tmp_path / "o" / "bad"),
                                           (db, tmp_path / "o" / "db")])],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr == f"error: {bad}: microvm.vcpu: must be at least 1, got -1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_an_existing_output_needs_force_before_anything_is_written(tmp_path: Path) -> None:
    web, db, _ = documents(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine").write_text("kept")
    pairs = [(web, tmp_path / "w"), (db, tmp_path / "d")]
    r = subprocess.run([*CLI, *batch_args(pairs)], capture_output=True, text=True)
    assert r.returncode == 2 and "exists; pass --force" in r.stderr
    assert not (tmp_path / "w").exists() and (tmp_path / "d" / "mine").exists()
    subprocess.run([*CLI, *batch_args(pairs), "--force"], check=True)
    assert not (tmp_path / "d" / "mine").exists()
    assert (tmp_path / "d" / "bin" / "microvm-run").exists()


def test_one_output_inside_another_is_refused(tmp_path: Path) -> None:
    web, db, _ = documents(tmp_path)
    for second in (tmp_path / "o", tmp_path / "o" / "inner"):
        r = subprocess.run([*CLI, *batch_args([(web, tmp_path / "o"), (db, second)])],
                           capture_output=True, text=True)
        assert r.returncode == 2 and "given for two runner trees" in r.stderr, r.stderr
        assert not (tmp_path / "o").exists()


def test_a_failed_output_leaves_the_complete_ones_and_nothing_of_itself(tmp_path: Path
                                                                        ) -> None:
    web, db, ch = documents(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    pairs = [(web, tmp_path / "w"), (db, blocker / "d"), (ch, tmp_path / "c")]
    r = subprocess.run([*CLI, *batch_args(pairs)], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith(f"error: {blocker}"), r.stderr
    assert (tmp_path / "w" / "share" / "microvm" / "vm.json").exists()  # complete
    assert not (tmp_path / "c").exists()
    assert blocker.read_text() == ""


def test_usage_errors() -> None:
    for args in ([], ["vm.json"], ["--out", "x"]):
        r = subprocess.run([*CLI, *args], capture_output=True, text=True)
        assert r.returncode == 2 and "Usage:" in r.stderr, args


def test_shell_completion_completes_paths_after_batch() -> None:
    env = {**os.environ, "COMP_WORDS": "microvm generate --batch vm.json ru", "COMP_CWORD": "4",
           "_MICROVM_COMPLETE": "bash_complete"}
    p = subprocess.run([sys.executable, "-c",
                        "from microvm.cli import main; main(prog_name='microvm')"],
                       env=env, capture_output=True, text=True)
    assert p.stdout.split() == ["file,ru"], p.stderr
