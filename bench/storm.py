#!/usr/bin/env python3
"""Start storms (microvm.nix #317, #231): N VMs started together by microvms.target, as at boot,
on a Debian 12 host with systemd as PID 1 in a container (tests/support/hostsys.py), QEMU TCG
guests.

Run: .venv/bin/python bench/storm.py [--rounds R] [--counts 1,4,8] [--report bench/STORM.md]
(as root). For each N it measures the time from `systemctl start microvms.target` until every
guest printed its ready line, and reports it as a ratio to one VM alone, same run; it also
starts 8 VMs in waves of 2 (each wave waits for the last to be ready), the staggered start a
concurrency limit would give, against all 8 at once. Nothing is asserted here;
tests/test_systemd_host.py starts 8 together once and checks that every one is ready with no
timeout and no restart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "examples"))

from support import hostsys, vmtest  # noqa: E402

# the ready line of tests/test_systemd_host.py's guest too (its tag: the VM's name here)
GUEST = 'power_button\necho "GUEST-READY tag=$(param e2e.tag)"\nwhile :; do sleep 1; done\n'
READY = re.compile(r"GUEST-READY tag=(\S+)")
NO_LIMIT = ("starting fewer at a time does not bring the last VM up sooner (the guests' boots " +
            "are CPU-bound and share the cores either way), so microvm offers no concurrency " +
            "limit; systemd starts the VMs microvms.target wants together.")


def create(h: hostsys.Host, names: Sequence[str], mem: int = 256) -> None:
    """VMs NAME with the test guest, each enabled (microvm create --autostart)."""
    for name in names:
        doc = {"hostName": name, "microvm": {
            "kernel": f"{hostsys.ASSETS}/vmlinux", "initrdPath": f"{hostsys.ASSETS}/initrd.gz",
            "storeOnDisk": False, "mem": mem, "socket": f"{name}.sock",
            "kernelParams": ["quiet", f"e2e.tag={name}"]}}
        d = f"/srv/storm/{name}"
        h.path(d).mkdir(parents=True, exist_ok=True)
        h.path(f"{d}/vm.json").write_text(json.dumps(doc))
        h.microvm("generate", f"{d}/vm.json", "--out", f"{d}/runner", "--force")
        h.microvm("create", name, "--runner", f"{d}/runner", "--autostart")


def ready_count(h: hostsys.Host, names: Sequence[str], cursor: str) -> set[str]:
    """The VMs whose ready line is in the journal after `cursor`."""
    out = h.run("journalctl", "--no-pager", "-o", "cat", f"--after-cursor={cursor}",
                *(f"--unit=microvm@{n}.service" for n in names), check=False).stdout
    return {m.group(1) for line in out.splitlines() if (m := READY.search(line))}


def cursor(h: hostsys.Host) -> str:
    out = h.run("journalctl", "-n", "0", "--show-cursor", "--no-pager", check=False).stdout
    return out.strip().rsplit("cursor: ", 1)[-1]


def stop_all(h: hostsys.Host, names: Sequence[str]) -> None:
    h.systemctl("stop", *(f"microvm@{n}" for n in names), "microvms.target")


def storm(h: hostsys.Host, names: Sequence[str], waves: int | None = None,
          timeout: float = 300.0) -> tuple[float, int]:
    """Seconds until every VM of `names` is ready: all started by microvms.target at once, or
    in waves of `waves` VMs (each started when the last wave is ready); and how many automatic
    restarts that took (0 unless one timed out or failed)."""
    stop_all(h, names)
    mark = cursor(h)
    t0 = time.monotonic()
    groups = [list(names)] if waves is None else [
        list(names[i:i + waves]) for i in range(0, len(names), waves)]
    for group in groups:
        if waves is None:
            h.systemctl("start", "microvms.target")
        else:
            h.systemctl("start", *(f"microvm@{n}" for n in group))
        deadline = time.monotonic() + timeout
        while not set(group) <= ready_count(h, group, mark):
            if time.monotonic() > deadline:
                raise AssertionError(f"not all of {group} ready after {timeout} s")
            time.sleep(0.1)
    took = time.monotonic() - t0
    return took, sum(restarts(h, names).values())


def restarts(h: hostsys.Host, names: Sequence[str]) -> dict[str, int]:
    return {n: int(h.prop(f"microvm@{n}.service", "NRestarts") or 0) for n in names}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--counts", default="1,4,8")
    ap.add_argument("--report", type=Path, default=REPO / "bench" / "STORM.md")
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    most = max(counts)
    names = [f"s{i}" for i in range(most)]
    times: dict[str, list[float]] = {}
    restarted = 0
    with tempfile.TemporaryDirectory(prefix="microvm-storm-") as tmp, vmtest.boot_lock():
        h = hostsys.installed_host(Path(tmp), GUEST)
        try:
            create(h, names)
            for _ in range(args.rounds):
                for n in counts:
                    # only the first n VMs are enabled for this measure
                    for i, name in enumerate(names):
                        h.microvm("enable" if i < n else "disable", name)
                    took, again = storm(h, names[:n])
                    times.setdefault(f"{n} at once", []).append(took)
                    restarted += again
                if most >= 4:
                    for name in names:
                        h.microvm("enable", name)
                    took, again = storm(h, names, waves=2)
                    times.setdefault(f"{most} in waves of 2", []).append(took)
                    restarted += again
            stop_all(h, names)
        finally:
            h.close()
    one = statistics.median(times[f"{counts[0]} at once"])
    cores = len(os.sched_getaffinity(0))
    lines = ["# Start storms: N VMs started together, time until all are ready", "",
             f"Measured by `bench/storm.py` on {platform.machine()} with {cores} cores: QEMU " +
             "TCG guests (256 MiB, the busybox test guest), systemd 252 as PID 1 in a " +
             f"container; {args.rounds} rounds, median (min-max). Reference: {counts[0]} VM " +
             "alone, same run.", "",
             "| start | seconds until all ready | ratio to one VM alone |", "|---|---|---|"]
    for key, samples in times.items():
        med = statistics.median(samples)
        lines.append(f"| {key} | {med:.2f} ({min(samples):.2f}-{max(samples):.2f}) | " +
                     f"{med / one:.2f}x |")
    lines += ["", f"Automatic restarts (a timeout or a failed start) in all rounds: {restarted}."]
    waves, at_once = times.get(f"{most} in waves of 2"), times.get(f"{most} at once")
    if waves and at_once:
        ratio = statistics.median(waves) / statistics.median(at_once)
        verdict = NO_LIMIT if ratio >= 0.95 else "a concurrency limit would help here."
        lines += ["", f"Waves of 2 took {ratio:.2f}x the time of all {most} at once: {verdict}"]
    args.report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
