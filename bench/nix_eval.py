#!/usr/bin/env python3
"""Nix evaluation cost of a host with N declared VMs: this project against microvm.nix.

Both sides evaluate a host whose `microvm.vms.vmI.config` is the same guest module
(tests/nix/evalcost-vm.nix), with the same NixOS stub (tests/nix/stub.nix) and the same
stand-in package set (tests/nix/upstream/host-pkgs.nix); only the modules differ:
  - project:  nix/modules/host.nix, guests evaluated by tests/nix/fake-nixpkgs' eval-config
              with nix/modules/microvm (tests/nix/evalcost-project.nix);
  - upstream: microvm.nix's nixos-modules/host, guests evaluated by
              tests/nix/upstream/host-nixpkgs' eval-config with its full nixos-modules/microvm
              and the extra options it needs (tests/nix/upstream/host-eval.nix).
Each side is evaluated in two modes with `nix-instantiate --eval --strict --json`:
  - host:   every VM's runner drvPath plus the host's systemd services, targets and tmpfiles
            (and this project's unit package drvPath: its units live in a derivation);
  - guests: only the N guests on their own (no host module), every runner drvPath;
  - toplevel: the same guests, forcing only the stub's toplevel drvPath (no runner);
so host minus guests is what the host module costs on top of its guests, and guests minus
toplevel what a guest's runner (guest module and runner code) costs on top of the stub.

Measured per evaluation: NIX_SHOW_STATS (written to NIX_SHOW_STATS_PATH: cpuTime, Nix's own
user time; nrThunks, nrFunctionCalls, gc.totalBytes allocated) and the process's resource usage
as wait4(2) reports it (user+system time to the microsecond, max RSS). Each (side, mode, N) is
repeated, the two sides alternating; the medians are reported, and for the times also the
spread of the per-repeat ratios (the runs of one repeat are paired), which says how much of a
difference of a few per cent is noise. The per-VM slope is
(cost at the largest N - cost at the smallest N) / (difference of N). Ratios are
project / upstream: below 1 means this project is cheaper.

Run: python3 bench/nix_eval.py [--vms 1,10,50] [--repeats 9]; prints a Markdown table.
Upstream's source: $MICROVM_NIX_SRC, else /opt/microvm.nix; <nixpkgs/lib> from $NIX_PATH,
else /opt/nixpkgs-lib.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NIXDIR = REPO / "tests" / "nix"
SIDES = ("project", "upstream")
MODES = ("host", "guests", "toplevel")
# metric -> (label, unit, how to print)
METRICS: dict[str, tuple[str, str, str]] = {
    "cpu": ("user time (NIX_SHOW_STATS cpuTime)", "s", "{:.4f}"),
    "usersys": ("user+system time (wait4)", "s", "{:.4f}"),
    "rss": ("max RSS (wait4)", "MiB", "{:.1f}"),
    "thunks": ("thunks (nrThunks)", "", "{:,.0f}"),
    "calls": ("function calls (nrFunctionCalls)", "", "{:,.0f}"),
    "alloc": ("allocated (gc.totalBytes)", "MiB", "{:.1f}"),
}
# the metrics measured as time, which vary from run to run (the others are counts)
TIMES = ("cpu", "usersys")
# the targets: project / upstream at most this (per VM slope, per host total)
TARGET_RATIO = 1.0


def upstream_src() -> Path:
    return Path(os.environ.get("MICROVM_NIX_SRC", "/opt/microvm.nix"))


def nix_env() -> dict[str, str]:
    env = dict(os.environ)
    if "nixpkgs=" not in env.get("NIX_PATH", "") and Path("/opt/nixpkgs-lib").is_dir():
        env["NIX_PATH"] = "nixpkgs=/opt/nixpkgs-lib"
    return env


def command(side: str, mode: str, n: int) -> list[str]:
    """The nix-instantiate argv evaluating one side's host (or guests only) with n VMs."""
    if side == "project":
        expr = [str(NIXDIR / "evalcost-project.nix")]
    else:
        expr = [str(NIXDIR / "upstream" / "host-eval.nix"),
                "--arg", "upstream", str(upstream_src())]
    return ["nix-instantiate", "--eval", "--strict", "--json", *expr,
            "--arg", "n", str(n), "--argstr", "mode", mode]


def run_with_usage(argv: list[str], env: dict[str, str]) -> tuple[int, str, str, Any]:
    """Run argv; its exit code, stdout, stderr and resource usage (wait4: this process alone,
    to the microsecond)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=REPO)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return p.returncode, out.read().decode(), err.read().decode(errors="replace"), usage


def measure_once(side: str, mode: str, n: int, tmp: Path) -> dict[str, float]:
    """Evaluate once; check the result names a derivation (runner, or toplevel) for each of
    the n VMs."""
    stats_path = tmp / "stats.json"
    stats_path.unlink(missing_ok=True)
    env = nix_env() | {"NIX_SHOW_STATS": "1", "NIX_SHOW_STATS_PATH": str(stats_path)}
    code, stdout, stderr, usage = run_with_usage(command(side, mode, n), env)
    if code != 0:
        raise RuntimeError(f"{side} {mode} n={n}: nix-instantiate failed:\n{stderr[-4000:]}")
    result = json.loads(json.loads(stdout))
    runners = result["toplevels" if mode == "toplevel" else "runners"]
    if sorted(runners) != sorted(f"vm{i}" for i in range(1, n + 1)) or not all(
        isinstance(p, str) and p.startswith("/nix/store/") and p.endswith(".drv")
        for p in runners.values()
    ):
        raise RuntimeError(f"{side} {mode} n={n}: unexpected runners {runners!r}")
    if mode == "host" and not result["services"]:
        raise RuntimeError(f"{side} host n={n}: no systemd services")
    stats = json.loads(stats_path.read_text())
    return {
        "cpu": float(stats["cpuTime"]),
        "usersys": usage.ru_utime + usage.ru_stime,
        "rss": usage.ru_maxrss / 1024,  # KiB on Linux
        "thunks": float(stats["nrThunks"]),
        "calls": float(stats["nrFunctionCalls"]),
        "alloc": float(stats["gc"]["totalBytes"]) / (1024 * 1024),
    }


def quartiles(values: list[float]) -> tuple[float, float] | None:
    """The first and third quartile, or None without values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def ratio(a: float, b: float) -> float | None:
    """a / b, or None where it means nothing (b or a not above zero: timing noise in a
    difference of two small medians)."""
    return a / b if a > 0 and b > 0 else None


def run(vms_counts: list[int] | tuple[int, ...] = (1, 10, 50), repeats: int = 9) -> dict[str, Any]:
    """Measure both sides; the result (JSON-able):
    {"nix", "upstream", "vms", "repeats",
     "medians": {side: {mode: {str(n): {metric: value}}}},
     "per_vm": {side: {mode: {metric: slope}}},
     "host_overhead": {side: {str(n): {metric: host - guests}}},
     "runner_per_vm": {side: {metric: guests slope - toplevel slope}},
     "spread": {str(n): {time metric: (q1, q3) of the paired per-repeat host ratios}},
     "ratios": {"per_host": {str(n): {metric: r}}, "per_vm": {metric: r},
                "guests_per_vm": {metric: r}, "runner_per_vm": {metric: r},
                "host_overhead": {str(n): {metric: r}}}}
    """
    counts = sorted(set(vms_counts))
    if not counts or counts[0] < 1 or repeats < 1:
        raise ValueError("need at least one VM count >= 1 and one repeat")
    samples: dict[str, dict[str, dict[int, list[dict[str, float]]]]] = {
        s: {m: {n: [] for n in counts} for m in MODES} for s in SIDES
    }
    env = nix_env()
    with tempfile.TemporaryDirectory(prefix="nix-eval-bench-") as tmpdir:
        tmp = Path(tmpdir)
        # one unmeasured evaluation per side and mode writes the .drv files, so that every
        # measured run finds the store in the same state
        for side in SIDES:
            for mode in MODES:
                measure_once(side, mode, counts[-1], tmp)
        # interleaved, so that drift in the machine's load spreads over both sides
        for _ in range(repeats):
            for n in counts:
                for mode in MODES:
                    for side in SIDES:
                        samples[side][mode][n].append(measure_once(side, mode, n, tmp))
    medians = {
        s: {m: {n: {k: statistics.median(x[k] for x in samples[s][m][n]) for k in METRICS}
                for n in counts} for m in MODES} for s in SIDES
    }
    lo, hi = counts[0], counts[-1]
    span = hi - lo
    per_vm = {
        s: {m: {k: ((medians[s][m][hi][k] - medians[s][m][lo][k]) / span if span else
                    medians[s][m][hi][k] / hi) for k in METRICS} for m in MODES}
        for s in SIDES
    }
    overhead = {
        s: {n: {k: medians[s]["host"][n][k] - medians[s]["guests"][n][k] for k in METRICS}
            for n in counts} for s in SIDES
    }
    # per VM: a guest's runner on top of the stub's toplevel
    runner_part = {
        s: {k: per_vm[s]["guests"][k] - per_vm[s]["toplevel"][k] for k in METRICS}
        for s in SIDES
    }
    p, u = "project", "upstream"
    # the per-repeat ratios of the times, paired (a repeat runs both sides back to back): their
    # interquartile range per host size
    spread = {
        str(n): {k: quartiles([a[k] / b[k] for a, b in zip(samples[p]["host"][n],
                                                          samples[u]["host"][n], strict=True)
                               if a[k] > 0 and b[k] > 0])
                 for k in TIMES}
        for n in counts
    }
    ratios = {
        "per_host": {str(n): {k: ratio(medians[p]["host"][n][k], medians[u]["host"][n][k])
                              for k in METRICS} for n in counts},
        "per_vm": {k: ratio(per_vm[p]["host"][k], per_vm[u]["host"][k]) for k in METRICS},
        "guests_per_vm": {k: ratio(per_vm[p]["guests"][k], per_vm[u]["guests"][k])
                          for k in METRICS},
        "runner_per_vm": {k: ratio(runner_part[p][k], runner_part[u][k]) for k in METRICS},
        "host_overhead": {str(n): {k: ratio(overhead[p][n][k], overhead[u][n][k])
                                   for k in METRICS} for n in counts},
    }
    version = subprocess.run(["nix-instantiate", "--version"], capture_output=True, text=True,
                             env=env).stdout.strip()
    return {
        "nix": version,
        "upstream": str(upstream_src()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "vms": counts,
        "repeats": repeats,
        "medians": {s: {m: {str(n): v for n, v in medians[s][m].items()} for m in MODES}
                    for s in SIDES},
        "per_vm": per_vm,
        "host_overhead": {s: {str(n): v for n, v in overhead[s].items()} for s in SIDES},
        "runner_per_vm": runner_part,
        "ratios": ratios,
        "spread": spread,
    }


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return METRICS[metric][2].format(value)


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    mark = "" if value <= TARGET_RATIO else " (over)"
    return f"{value:.2f}x{mark}"


def markdown(res: dict[str, Any]) -> str:
    counts: list[int] = res["vms"]
    lo, hi = counts[0], counts[-1]
    med = res["medians"]
    rat = res["ratios"]
    out = [
        "### Nix evaluation cost: this project against microvm.nix",
        "",
        f"{res['nix']}; {res['machine']}; medians of {res['repeats']} runs per cell; both "
        + "sides evaluate the same guest module per VM with the same NixOS stub and stand-in "
        + "packages (bench/nix_eval.py). Ratio = this project / microvm.nix (target: "
        + f"at most {TARGET_RATIO:.2f}x).",
        "",
        "Per host (host module + every guest: runner drvPaths and the host's units):",
        "",
        "| metric | " + " | ".join(f"{n} VM{'s' if n > 1 else ''}: project / microvm.nix / "
                                    + "ratio" for n in counts) + " |",
        "|---|" + "---|" * len(counts),
    ]
    for k, (label, unit, _) in METRICS.items():
        cells = [
            f"{_fmt(k, med['project']['host'][str(n)][k])} / "
            + f"{_fmt(k, med['upstream']['host'][str(n)][k])} / "
            + _ratio(rat["per_host"][str(n)][k])
            for n in counts
        ]
        out.append(f"| {label}{f' ({unit})' if unit else ''} | " + " | ".join(cells) + " |")
    spread = res.get("spread", {})
    parts = []
    for n in counts:
        ranges = [f"{METRICS[k][0].split(' (')[0]} {q[0]:.2f}-{q[1]:.2f}x"
                  for k in TIMES if (q := spread.get(str(n), {}).get(k))]
        if ranges:
            parts.append(f"{n} VM{'s' if n > 1 else ''}: " + ", ".join(ranges))
    if parts:
        out += ["", "The times' ratios from one repeat to the next (interquartile range of the "
                + "paired per-repeat ratios; the counts do not vary): " + "; ".join(parts) + "."]
    out += [
        "",
        f"Per VM (slope of the host evaluation from {lo} to {hi} VMs), to attribute it: the "
        + "guest evaluated alone (no host module), its runner part (guest alone minus the "
        + f"stub's toplevel alone) and the host module's own cost at {hi} VMs (host minus "
        + "guests alone):",
        "",
        "| metric | per VM: project / microvm.nix / ratio | guest alone per VM: ratio "
        + "| runner part per VM: project / microvm.nix / ratio "
        + f"| host module at {hi} VMs: project / microvm.nix / ratio |",
        "|---|---|---|---|---|",
    ]
    pv = res["per_vm"]
    ov = res["host_overhead"]
    rp = res["runner_per_vm"]
    for k, (label, unit, _) in METRICS.items():
        out.append(
            f"| {label}{f' ({unit})' if unit else ''} | "
            + f"{_fmt(k, pv['project']['host'][k])} / {_fmt(k, pv['upstream']['host'][k])} / "
            + f"{_ratio(rat['per_vm'][k])} | {_ratio(rat['guests_per_vm'][k])} | "
            + f"{_fmt(k, rp['project'][k])} / {_fmt(k, rp['upstream'][k])} / "
            + f"{_ratio(rat['runner_per_vm'][k])} | "
            + f"{_fmt(k, ov['project'][str(hi)][k])} / {_fmt(k, ov['upstream'][str(hi)][k])} / "
            + f"{_ratio(rat['host_overhead'][str(hi)][k])} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--vms", default="1,10,50", help="comma-separated VM counts (default 1,10,50)")
    ap.add_argument("--repeats", type=int, default=9, help="runs per cell (default 9)")
    ap.add_argument("--json", action="store_true", help="print the raw result as JSON too")
    args = ap.parse_args(argv)
    try:
        counts = [int(x) for x in args.vms.split(",") if x.strip()]
    except ValueError:
        print(f"error: --vms: not a list of integers: {args.vms!r}", file=sys.stderr)
        return 2
    res = run(counts, args.repeats)
    print(markdown(res))
    if args.json:
        print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
