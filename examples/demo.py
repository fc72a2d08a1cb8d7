#!/usr/bin/env python3
"""Build, generate and boot the example VM (examples/demo/vm.json) under QEMU.

Steps: fetch a Debian kernel and build a busybox initramfs (examples/testguest.py), run
`microvm generate`, start the generated bin/microvm-run, wait for the guest's ready marker on
the serial console, then power it off with the generated bin/microvm-shutdown. With
--interactive the guest gives you a shell on the console instead (power off: `poweroff -f`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import testguest  # noqa: E402

MARKER = "MICROVM-EXAMPLE-READY"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("out/demo"),
                    help="working directory (default: out/demo)")
    ap.add_argument("--interactive", action="store_true", help="keep a shell in the guest")
    args = ap.parse_args()
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    t0 = time.monotonic()
    kernel = testguest.kernel()
    guest = work / "guest"
    guest.mkdir(exist_ok=True)
    (guest / "vmlinux").unlink(missing_ok=True)
    (guest / "vmlinux").symlink_to(kernel.vmlinux)
    testguest.build_initramfs(kernel, guest / "initrd.gz", testguest.EXAMPLE_SCRIPT)
    doc = json.loads((HERE / "demo" / "vm.json").read_text())
    if args.interactive:
        doc["microvm"]["kernelParams"] = [p for p in doc["microvm"]["kernelParams"]
                                          if p != "e2e.shell=0"]
    (work / "vm.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"demo: guest ready in {time.monotonic() - t0:.1f} s; generating the runner",
          flush=True)
    subprocess.run([sys.executable, "-m", "microvm.cli", "generate", str(work / "vm.json"),
                    "--out", str(work / "runner"), "--force"], check=True)
    run = work / "runner" / "bin" / "microvm-run"
    if args.interactive:
        os.chdir(work)
        os.execv(run, [str(run)])

    t1 = time.monotonic()
    proc = subprocess.Popen([str(run)], cwd=work, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    ready = False
    for line in proc.stdout:
        print(f"  | {line.rstrip()}", flush=True)
        if MARKER in line and not ready:
            ready = True
            print(f"demo: guest is up after {time.monotonic() - t1:.1f} s; " +
                  "asking it to power off with bin/microvm-shutdown", flush=True)
            subprocess.run([str(work / "runner" / "bin" / "microvm-shutdown")], cwd=work,
                           check=True, timeout=90)
    rc = proc.wait()
    if not ready:
        print(f"demo: the guest never printed {MARKER} (exit code {rc})", file=sys.stderr)
        return 1
    print(f"demo: QEMU exited with {rc} after {time.monotonic() - t1:.1f} s; " +
          f"the runner is in {work / 'runner'}, the volume in {work / 'data.img'}")
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main())
    except testguest.GuestBuildError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        sys.exit(2)
