"""The host commands run as a user runs them, on runners `microvm generate` made: `cli` runs
`python -m microvm.cli`, `make_runner` writes a runner tree, and stand-in programs
(`write_exe`, `fake_systemctl`) record what they were asked (`calls`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from support import faults, vmtest


def make_runner(work: Path, host_name: str = "vm", *, kernel: Path | None = None,
                initrd: Path | None = None, name: str = "runner",
                **microvm: Any) -> Path:
    """A real runner tree from `microvm generate` (kernel paths need not exist to generate)."""
    doc = vmtest.document(host_name, kernel or Path("/nonexistent/vmlinux"),
                          initrd or Path("/nonexistent/initrd"), **microvm)
    return vmtest.generate(doc, work / f"{name}-src", name=name)


def cli(*args: str, env: Mapping[str, str] | None = None, state_dir: Path | None = None,
        check: bool | None = None, input: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `python -m microvm.cli ARGS` (no systemd unless env says so)."""
    full = {**os.environ, "MICROVM_SERVICE_MANAGER": "none", **(env or {})}
    if state_dir is not None:
        full["MICROVM_STATE_DIR"] = str(state_dir)
    # a fault asked for (faults.py's variables): through the tests' own entry point
    entry = [str(faults.SCRIPT)] if faults.wanted(full) else ["-m", "microvm.cli"]
    p = subprocess.run([sys.executable, *entry, *args], env=full, text=True,
                       capture_output=True, input=input, timeout=timeout)
    if check:
        assert p.returncode == 0, f"microvm {' '.join(args)}: {p.returncode}\n{p.stderr}"
    assert "Traceback" not in p.stderr, p.stderr
    return p


def write_exe(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), "utf-8")
    path.chmod(0o755)
    return path


def fake_systemctl(bin_dir: Path, log: Path, active: Path) -> None:
    """`systemctl` that logs its argv (one JSON list a line); `is-active --quiet UNIT` succeeds
    when `active` lists UNIT; start/restart/stop add/remove it."""
    write_exe(bin_dir / "systemctl", f"""
        #!{sys.executable}
        import json, sys
        from pathlib import Path
        log, active = Path({str(log)!r}), Path({str(active)!r})
        with log.open("a") as f:
            f.write(json.dumps(sys.argv[1:]) + "\\n")
        units = set(active.read_text().split()) if active.exists() else set()
        verb, unit = sys.argv[1], sys.argv[-1]
        if verb == "is-active":
            sys.exit(0 if unit in units else 3)
        if verb in ("start", "restart"):
            units.add(unit)
        if verb == "stop":
            units.discard(unit)
        active.write_text("\\n".join(sorted(units)))
        """)


def calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


UPDATE_STEPS = ["update:built", "meta.json.pending:before-write", "meta.json.pending:written",
                "update:before-switch", "current:before-link", "current:link-written",
                "current:renamed", "update:switched"]
