"""`systemd-analyze` on the units `microvm units` writes: a --root with the distribution's units,
ours, the helpers and stand-in runners for the instance `INSTANCE`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from microvm import units

INSTANCE = "web"


STAND_INS = ("microvm-run", "microvm-shutdown", "tap-up", "tap-down", "macvtap-up",
             "macvtap-down", "virtiofsd-run")


def verify_root(tmp_path: Path, out: Path, state_dir: str,
                command: str = units.UnitOptions().command) -> Path:
    """A --root for systemd-analyze: the distribution's units, ours in /etc/systemd/system, the
    helpers at their absolute path, stand-in runners below the state directory and a stand-in
    `microvm` command (microvm-networks.service's) at `command`."""
    root = tmp_path / "root"
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    shutil.copytree(out / units.UNIT_DIR, root / "etc/systemd/system", symlinks=True)
    shutil.copytree(out / units.LIBEXEC_DIR, root / str(out / units.LIBEXEC_DIR).lstrip("/"))
    for link in ("current", "booted"):
        bin_dir = root / state_dir.lstrip("/") / ".control" / INSTANCE / link / "bin"
        bin_dir.mkdir(parents=True)
        for exe in STAND_INS:
            (bin_dir / exe).write_text("#!/bin/sh\n")
            (bin_dir / exe).chmod(0o755)
    stand_in = root / command.lstrip("/")
    stand_in.parent.mkdir(parents=True, exist_ok=True)
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    return root


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args, f"--root={root}"], text=True,
                          capture_output=True, cwd=root / "etc/systemd/system")
