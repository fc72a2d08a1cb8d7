#!/usr/bin/env python3
"""Benchmarks, each figure a ratio to the reference a user would pick instead, same run.

Run: .venv/bin/python bench/run.py [--quick] [--no-boot] [--report PATH]; it rewrites
bench/REPORT.md and the PNG plots beside it (matplotlib, `pip install .[bench]`; without it the
report says the plots were skipped). Nothing here is asserted: tests/test_bench.py only runs the
code once with tiny iterations so that it cannot rot. Boots take the machine-wide boot lock of
tests/support/vmtest.py, one at a time.

Sections (issue 13): 1 runner overhead, 2 shutdown latency, 3 boot under TCG, 4 generation
cost (of the wheel built from the checkout, installed in a fresh venv), 6 store images and
share throughput (5, Nix evaluation, is measured elsewhere).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "examples"))
sys.path.insert(0, str(REPO / "tests"))

from support import vmtest  # noqa: E402

PY = sys.executable
QEMU = "qemu-system-x86_64"
CMDLINE = "console=ttyS0 reboot=t panic=-1 quiet tsc_early_khz=2000000"
MARK = "BENCH-READY"
# The guest prints its own uptime (the kernel's clock, started at kernel entry) with the marker.
BOOT_SCRIPT = f'echo "{MARK} $(cut -d" " -f1 /proc/uptime)"\n'
FAIL_TIMEOUT = 30.0  # a command line expected not to boot gets this long


# --------------------------------------------------------------------------------------------
# Statistics and results


@dataclass
class Row:
    """One figure: samples against the reference's samples (same unit, same run)."""

    section: str
    name: str
    unit: str
    samples: list[float]
    ref_name: str = ""
    ref: list[float] = field(default_factory=list)
    target: str = ""
    note: str = ""

    def stats(self) -> tuple[float, float, float]:
        return min(self.samples), statistics.median(self.samples), max(self.samples)

    def ratio(self) -> tuple[float, float, float] | None:
        if not self.ref or not self.samples:
            return None
        r = statistics.median(self.ref)
        lo, mid, hi = self.stats()
        return (lo / r, mid / r, hi / r) if r else None


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    plots: list[tuple[str, str]] = field(default_factory=list)  # (section, file name)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def note(self, section: str, text: str) -> None:
        self.notes.setdefault(section, []).append(text)


def clock(argv: Sequence[str], env: dict[str, str] | None = None,
          cwd: Path | None = None) -> float:
    """Wall time of one process, in ms; it must succeed."""
    t = time.perf_counter()
    subprocess.run(list(argv), env=env, cwd=cwd, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1000


def interleaved(cases: dict[str, Callable[[], float]], rounds: int,
                warmup: int = 2) -> dict[str, list[float]]:
    """Run each case `rounds` times, alternating between cases so that load drifts hit all."""
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    out: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for k, fn in cases.items():
            out[k].append(fn())
    return out


def kvm_state() -> str:
    return ("/dev/kvm present" if Path("/dev/kvm").exists() else "no /dev/kvm") + (
        ", VT-x/AMD-V module loaded" if any(Path(f"/sys/module/{m}").is_dir()
                                            for m in ("kvm_intel", "kvm_amd"))
        else ", no kvm_intel/kvm_amd module")


def machine() -> list[str]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / (1 << 20):.1f} GiB RAM"
    qemu = "QEMU not found"
    if shutil.which(QEMU):
        qemu = subprocess.run([QEMU, "--version"], capture_output=True,
                              text=True).stdout.splitlines()[0]
    kvm = kvm_state()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [f"{os.cpu_count()} CPUs ({cpu}), {mem}, Linux {platform.release()}, " +
            f"{platform.machine()}",
            f"Python {platform.python_version()}; {qemu}; {kvm}",
            f"load average at start: {load} (other work shares this machine: read ratios, " +
            "not absolute times)"]


# --------------------------------------------------------------------------------------------
# 1. Runner overhead

BACKENDS = ("qemu", "cloud-hypervisor", "firecracker", "crosvm", "kvmtool", "stratovirt",
            "alioth", "vfkit")


def generate(doc: dict[str, Any], work: Path, name: str = "runner") -> Path:
    """Validate and write the runner for doc in work/name (in-process: no CLI start-up)."""
    from microvm import runner
    from microvm.document import from_document

    work.mkdir(parents=True, exist_ok=True)
    return runner.write(from_document(doc), work / name, force=True)


def hypervisor_binary(runner: Path) -> str:
    """The hypervisor binary the generated microvm-run execs (first `args=(` entry).

    A runner may wrap the hypervisor in `bash -c SCRIPT NAME ARGS...` (vfkit, to make its
    socket path absolute); then the hypervisor is NAME ($0, and what the script execs)."""
    lines = (runner / "bin" / "microvm-run").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "args=(":
            argv = [ln.strip() for ln in lines[i + 1:i + 5]]
            binary = argv[3] if argv[:2] == ["bash", "-c"] else argv[0]
            if binary in ("bash", "sh", "env", "true"):  # a stand-in must never shadow these
                raise ValueError(f"{runner}: cannot tell the hypervisor from {argv}")
            return binary
    raise ValueError(f"{runner}: no args=( in microvm-run")


# The stand-in hypervisor: its first command stamps the time it was executed (bash's
# EPOCHREALTIME, the clock of time.time()). The reference execs the same stand-in.
STANDIN = '#!/bin/bash\nprintf "%s\\n" "$EPOCHREALTIME" > "$MICROVM_BENCH_STAMP"\n'


def stamped(argv: Sequence[str], env: dict[str, str], cwd: Path, stamp: Path,
            exits: list[float]) -> float:
    """ms from launching argv until the stand-in it ends in was executed (read from the stamp
    the stand-in writes); the time until argv itself exited is appended to `exits`."""
    stamp.unlink(missing_ok=True)
    t = time.time()
    subprocess.run(list(argv), env=env, cwd=cwd, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    exits.append((time.time() - t) * 1000)
    return (float(stamp.read_text().strip().replace(",", ".")) - t) * 1000


def bench_overhead(res: Results, work: Path, rounds: int) -> None:
    sec = "1. Runner overhead"
    standin = work / "standin-bin"
    standin.mkdir()
    stamp = work / "stamp"
    (standin / "bench-standin").write_text(STANDIN)
    (standin / "bench-standin").chmod(0o755)
    env = {**os.environ, "PATH": f"{standin}:{os.environ['PATH']}",
           "MICROVM_BENCH_STAMP": str(stamp)}
    env.pop("MICROVM_ACCEL", None)  # the runner decides KVM itself, as on a user's host
    exits: dict[str, list[float]] = {"ref": []}
    cases: dict[str, Callable[[], float]] = {
        "ref": lambda: stamped(["bash", "-c", "exec bench-standin"], env, work, stamp,
                               exits["ref"])}
    for hv in BACKENDS:
        doc = {"hostName": "ovh", "microvm": {"hypervisor": hv, "kernel": "/k/vmlinux",
                                              "storeOnDisk": False}}
        if hv == "vfkit":
            doc["system"] = "aarch64-darwin"
        d = work / f"ovh-{hv}"
        runner = generate(doc, d)
        binary = hypervisor_binary(runner)
        run = runner / "bin" / "microvm-run"
        # first prove the runner reaches the stand-in: one run with a recording script
        (standin / binary).unlink(missing_ok=True)
        ran = work / f"ran-{hv}"
        (standin / binary).write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {ran}\n")
        (standin / binary).chmod(0o755)
        subprocess.run([str(run)], env=env, cwd=d, check=True, capture_output=True,
                       stdin=subprocess.DEVNULL)
        if not ran.exists():
            raise RuntimeError(f"{hv}: microvm-run did not exec {binary}")
        if hv == "qemu":
            auto = ran.read_text()
            subprocess.run([str(run)], env={**env, "MICROVM_ACCEL": "kvm"}, cwd=d, check=True,
                           capture_output=True)
            forced = ran.read_text()
            res.note(sec, f"KVM decision of the qemu runner on this host ({kvm_state()}), " +
                     "read from the argv its stand-in received: " + ", ".join(
                         f"{how}: {acc}" for how, text in (("unset", auto),
                                                           ("MICROVM_ACCEL=kvm", forced))
                         for acc in re.findall(r"accel=(\w+)", text)) + ".")
        (standin / binary).unlink()
        (standin / binary).symlink_to("bench-standin")
        exits[hv] = []
        cases[hv] = lambda run=run, d=d, hv=hv: stamped(  # type: ignore[misc]
            [str(run)], env, d, stamp, exits[hv])
    got = interleaved(cases, rounds)
    for hv in BACKENDS:
        over = [a - b for a, b in zip(got[hv], got["ref"], strict=True)]
        done = exits[hv][-rounds:]
        res.add(Row(sec, f"{hv}: microvm-run to exec of the stand-in", "ms", got[hv],
                    "`bash -c 'exec STAND-IN'`", got["ref"], "overhead <= 10 ms",
                    f"overhead median {statistics.median(over):.1f} ms, " +
                    f"max {max(over):.1f} ms; microvm-run exits after " +
                    f"{statistics.median(done):.1f} ms (reference " +
                    f"{statistics.median(exits['ref'][-rounds:]):.1f} ms)"))
    res.note(sec, "The hypervisor is a stand-in: a bash script under each backend's binary " +
             "name, first on PATH, whose first command stamps the time it was executed " +
             "(`$EPOCHREALTIME`); the reference execs the same stand-in from `bash -c`, so " +
             "the overhead is the runner's own (bash start, KVM decision, argv, exec). stdin " +
             "is /dev/null, as under microvm@.service. MICROVM_ACCEL is unset: the runner " +
             "tests /dev/kvm and the kvm_intel/kvm_amd modules itself (a few shell tests, no " +
             "QEMU probe).")
    res.note(sec, "alioth runs under util-linux `script` when stdin is no terminal (alioth " +
             "stops without one): `script` starts it within the overhead above, but after " +
             "the hypervisor has exited it polls its pseudo-terminal for 10 ms to drain " +
             "output (and, stdin being /dev/null, it also waited 10 ms before passing EOF " +
             "on), which is why microvm-run exits later than it for alioth (notes column). " +
             "That happens when the VM stops, not before it starts.")


# --------------------------------------------------------------------------------------------
# Boots


class Guest(vmtest.VM):
    """A QEMU (or runner) process started from an argv, console read like vmtest.VM's.

    Holds the machine-wide boot lock while it lives; `exited` is the monotonic time the
    process ended, taken by a thread blocked in wait() (not by polling)."""

    def __init__(self, argv: Sequence[str], cwd: Path, runner: Path | None = None) -> None:
        super().__init__(runner or cwd, cwd, argv=argv)
        self.exited = 0.0
        self._waiter = threading.Thread(target=self._wait, daemon=True)
        self._waiter.start()

    def __enter__(self) -> Guest:
        return self

    def _wait(self) -> None:
        self.proc.wait()
        self.exited = time.monotonic()

    def exit_time(self, timeout: float = 30) -> float:
        self._waiter.join(timeout)
        if not self.exited:
            raise AssertionError("the VM did not exit")
        return self.exited


@dataclass
class Boot:
    host_s: float  # launch to marker line, on the host
    guest_s: float  # guest uptime when it printed the marker (kernel clock)
    off_s: float  # marker line to process exit (the guest's own poweroff -f)


def boot_once(argv: Sequence[str], cwd: Path, timeout: float) -> Boot:
    with Guest(argv, cwd) as g:
        line = g.wait_for(MARK, timeout)
        seen = time.monotonic()
        uptime = float(line.split(MARK, 1)[1].split()[0])
        end = g.exit_time()
        g.wait_exit()
        return Boot(seen - g.started, uptime, end - seen)


def console_tail(exc: AssertionError) -> str:
    tail = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()][-2:]
    return " / ".join(tail) or "none"


def upstream_argv(kernel: Path, initrd: Path, pit_pic: str, sock: str,
                  params: str = "") -> list[str]:
    """The QEMU argv microvm.nix's lib/runners/qemu.nix builds for this guest (transcribed).

    Config: hostName "bench", machine "microvm", mem 256, vcpu 1, no shares/volumes/
    interfaces/balloon, storeOnDisk false, serialConsole true, kernelParams ["quiet"], x86_64-
    linux. Sources in /opt/microvm.nix/lib/runners/qemu.nix: machine options lines 76-108
    (attribute names sorted: accel=kvm:tcg, acpi, mem-merge, pcie, pic=off, pit=off, rtc, usb),
    the argv lines 173-187 and 217-267 (-serial, -enable-kvm, -cpu host,+x2apic,-sgx, -device
    i8042, -append with "earlyprintk=ttyS0 console=ttyS0 reboot=t panic=-1", -nographic,
    -sandbox on, -qmp). Substituted to run here at all: accel=tcg for kvm:tcg, no -enable-kvm
    and -cpu max for host,+x2apic,-sgx (this host has no usable KVM; the generated runner's TCG
    branch does the same). `pit_pic` is "off" (upstream) or "on" (flipped); `params` is added
    to microvm.kernelParams.
    """
    machine = (f"microvm,accel=tcg,acpi=on,mem-merge=on,pcie=off,pic={pit_pic}," +
               f"pit={pit_pic},rtc=on,usb=off")
    return [QEMU, "-name", "bench", "-M", machine, "-m", "256M", "-smp", "1",
            "-nodefaults", "-no-user-config", "-no-reboot",
            "-kernel", str(kernel), "-initrd", str(initrd),
            "-chardev", "stdio,id=stdio,signal=off", "-device", "virtio-rng-device",
            "-serial", "chardev:stdio", "-cpu", "max", "-device", "i8042",
            "-append", f"earlyprintk=ttyS0 console=ttyS0 reboot=t panic=-1 quiet {params}".strip(),
            "-nographic", "-sandbox", "on", "-qmp", f"unix:{sock},server,nowait"]


def hand_argv(machine: str, kernel: Path, initrd: Path) -> list[str]:
    """The hand-tuned command line of /work/shared/e2e-recipes.md section 2."""
    return [QEMU, "-M", machine, "-cpu", "max", "-accel", "tcg", "-m", "256", "-nographic",
            "-no-reboot", "-kernel", str(kernel), "-initrd", str(initrd), "-append", CMDLINE]


HAND_MICROVM = "microvm,acpi=on,pcie=off,pic=on,pit=on,rtc=on,usb=off"


def host_tsc_mhz() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1])
    return 0.0


def bench_boots(res: Results, work: Path, rounds: int) -> None:
    import testguest

    sec = "3. Boot under TCG"
    kernel = testguest.kernel().vmlinux
    initrd = testguest.build_initramfs(testguest.kernel(), work / "boot-initrd.gz", BOOT_SCRIPT)
    runner = generate(vmtest.document("bench", kernel, initrd), work / "gen")
    up_on = "microvm.nix argv, pit/pic flipped on"
    up_tsc = "microvm.nix argv, pit/pic on + tsc_early_khz"
    variants: dict[str, list[str]] = {
        "generated runner (microvm-run)": [str(runner / "bin" / "microvm-run")],
        "hand-tuned (e2e-recipes, -M microvm)": hand_argv(HAND_MICROVM, kernel, initrd),
        "same guest, -M pc": hand_argv("pc", kernel, initrd),
        "same guest, -M q35": hand_argv("q35", kernel, initrd),
        up_on: upstream_argv(kernel, initrd, "on", "up1.sock"),
        up_tsc: upstream_argv(kernel, initrd, "on", "up2.sock", "tsc_early_khz=2000000"),
    }
    # Upstream as is first: it is expected not to boot under TCG (a result, reported).
    try:
        b = boot_once(upstream_argv(kernel, initrd, "off", "up0.sock"), work / "gen",
                      FAIL_TIMEOUT)
        res.note(sec, "microvm.nix argv as upstream writes it (pit=off,pic=off): booted, " +
                 f"marker at {b.host_s:.2f} s.")
    except AssertionError as exc:
        res.note(sec, "microvm.nix argv as upstream writes it (pit=off,pic=off): **no marker " +
                 f"within {FAIL_TIMEOUT:.0f} s** under TCG (last console lines: " +
                 f"{console_tail(exc)}).")
    boots: dict[str, list[Boot]] = {k: [] for k in variants}
    failed: dict[str, list[str]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, argv in variants.items():
            # microvm.nix's lines may hang (a result): they get FAIL_TIMEOUT, not the full one
            wait = FAIL_TIMEOUT if name.startswith("microvm.nix") else vmtest.BOOT_TIMEOUT
            try:
                boots[name].append(boot_once(argv, work / "gen", wait))
            except AssertionError as exc:
                failed[name].append(console_tail(exc))
    ref = "hand-tuned (e2e-recipes, -M microvm)"
    for name, bs in boots.items():
        if failed[name]:
            res.note(sec, f"{name}: **{len(failed[name])} of {len(failed[name]) + len(bs)} " +
                     f"boots showed no marker** within {FAIL_TIMEOUT:.0f} s (last console " +
                     f"lines of the last: {failed[name][-1]}).")
        if not bs or not boots[ref]:
            continue
        target = "within 5 % of hand-tuned" if name.startswith("generated") else ""
        note = f"booted {len(bs)} of {len(bs) + len(failed[name])}" if failed[name] else ""
        res.add(Row(sec, f"{name}: launch to marker (host clock)", "s",
                    [b.host_s for b in bs], ref, [b.host_s for b in boots[ref]], target, note))
        res.add(Row(sec, f"{name}: kernel uptime at marker (guest clock)", "s",
                    [b.guest_s for b in bs], ref, [b.guest_s for b in boots[ref]]))
    res.note(sec, "Same kernel (Debian generic, uncompressed vmlinux) and initramfs for every " +
             "line; the guest prints its /proc/uptime with the marker, so host time minus " +
             "guest time is QEMU start-up plus firmware/loader before the kernel runs. The " +
             "generated runner runs with MICROVM_ACCEL=tcg (its TCG branch) and adds " +
             "virtio-rng, -sandbox and QMP, as a user gets it.")
    res.note(sec, "The microvm.nix argv is transcribed from its qemu.nix (see " +
             "`upstream_argv` in bench/run.py for the lines) with KVM-only parts replaced by " +
             "their TCG equivalents. Unlike the other lines it has no tsc_early_khz=2000000 " +
             "(the generated runner adds it under TCG, the hand-tuned line has it); the last " +
             "line adds it as a microvm.nix user would, through microvm.kernelParams.")
    mhz = host_tsc_mhz()
    if mhz:
        res.note(sec, f"Caution with the guest clock: this host's TSC runs at {mhz:.0f} MHz, " +
                 f"so a guest told tsc_early_khz=2000000 counts time {mhz / 2000:.2f} x too " +
                 "fast (its uptime can exceed the host's launch-to-marker time). Compare guest " +
                 "clocks only between lines with the same kernel command line; the host clock " +
                 "is the fair measure.")
    res.plots.append((sec, plot_rows(work, "boot.png", "Boot to marker under TCG (host clock)",
                                     [r for r in res.rows if r.section == sec
                                      and "host clock" in r.name], "s")))


def bench_shutdown(res: Results, work: Path, rounds: int) -> None:
    import testguest

    sec = "2. Control round trips"
    kern = testguest.kernel()
    initrd = testguest.build_initramfs(kern, work / "sd-initrd.gz",
                                       f"power_button\n{BOOT_SCRIPT}while :; do sleep 1; done\n")
    runner = generate(vmtest.document("sd", kern.vmlinux, initrd), work / "sd")
    own_init = testguest.build_initramfs(kern, work / "own-initrd.gz", BOOT_SCRIPT)
    own_runner = generate(vmtest.document("own", kern.vmlinux, own_init), work / "own")
    total, late, own = [], [], []
    for _ in range(rounds):
        with Guest([str(runner / "bin" / "microvm-run")], runner.parent, runner) as g:
            g.wait_for(MARK)
            t = time.monotonic()
            g.run_tool("microvm-shutdown")
            back = time.monotonic()
            end = g.exit_time()
            g.wait_exit()
            total.append(back - t)
            late.append((back - end) * 1000)
        own.append(boot_once([str(own_runner / "bin" / "microvm-run")], own_runner.parent,
                             vmtest.BOOT_TIMEOUT).off_s)
    res.add(Row(sec, "microvm-shutdown: call to return (ACPI power button, guest powers off)",
                "s", total, "guest's own `poweroff -f` (marker to QEMU exit)", own))
    res.add(Row(sec, "microvm-shutdown returns after QEMU's exit by", "ms", late,
                target="<= 50 ms",
                note="negative: returned before the exit was reaped (QMP closed first)"))
    if statistics.median(late) > 400:
        res.note(sec, "A return about 500 ms after QEMU's exit matches socat's default " +
                 "half-close timeout (`-t 0.5`): the control script's `socat -` lingers that " +
                 "long after QEMU closes the socket. A copy of the script with `socat -t 0 -` " +
                 "returned within 1 ms of the exit when this bench was written (generator " +
                 "change, not made here).")
    res.note(sec, "QEMU's exit time is taken by a thread blocked in wait() on the QEMU process " +
             "(the runner execs it); microvm-shutdown sends system_powerdown over QMP and " +
             "returns when QEMU closes the connection. The guest reacts to the power button " +
             "with `poweroff -f` (testguest's power_button).")


# --------------------------------------------------------------------------------------------
# 4. Generation cost

@dataclass(frozen=True)
class Package:
    """The microvm package as a user installs it: the wheel built from the checkout and
    installed into a fresh venv (tests/support/wheelinstall.py). Start-up is measured on it, not
    on the checkout: its build compiled the templates (a checkout compiles them in memory at every
    start) and pip byte-compiled it."""

    python: str
    cli: list[str]


def installed_package(work: Path) -> Package:
    from support import wheelinstall

    venv, _ = wheelinstall.install(work / "wheel")
    return Package(python=str(venv / "bin" / "python"), cli=[str(venv / "bin" / "microvm")])


def demo_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((REPO / "examples" / "demo" / "vm.json").read_text())
    return doc


def bench_generation(res: Results, work: Path, rounds: int, counts: Sequence[int]) -> None:
    sec = "4. Generation cost"
    pkg = installed_package(work)
    vm_json = work / "gen-vm.json"
    vm_json.write_text(json.dumps(demo_doc()))
    out = work / "gen-out"
    got = interleaved({
        "floor": lambda: clock([pkg.python, "-c", "pass"]),
        "import": lambda: clock([pkg.python, "-c", "import microvm.cli"]),
        "generate": lambda: clock([*pkg.cli, "generate", str(vm_json), "--out", str(out),
                                   "--force"]),
    }, rounds, warmup=min(rounds, 2))
    over = [g - f for g, f in zip(got["generate"], got["floor"], strict=True)]
    res.add(Row(sec, "`microvm generate` (demo VM) as a process", "ms", got["generate"],
                "`python3 -c pass`", got["floor"], "<= floor + 150 ms",
                f"above the floor: median {statistics.median(over):.0f} ms, " +
                f"max {max(over):.0f} ms"))
    res.add(Row(sec, "`python3 -c 'import microvm.cli'`", "ms", got["import"],
                "`python3 -c pass`", got["floor"]))
    batch_rows = bench_batch(res, sec, pkg, work, rounds, counts)
    bench_nix_derivations(res, sec, batch_rows, 0 if len(counts) < 3 else 20)
    profile(res, sec, pkg, vm_json, work)
    res.note(sec, "These measures run the wheel built from this checkout, installed into a " +
             "fresh virtual environment (pip byte-compiles it; its build compiled the " +
             "templates), as a user runs it.")
    res.plots.append((sec, plot_rows(work, "generation.png", "Generation cost (ms)",
                                     [r for r in res.rows if r.section == sec], "ms")))


def vm_documents(work: Path, n: int) -> list[Path]:
    """n copies of the demo VM with their own host names and MACs."""
    paths = []
    for i in range(n):
        doc = demo_doc()
        doc["hostName"] = f"vm{i}"
        doc["microvm"]["interfaces"][0]["mac"] = f"02:00:00:00:{i // 256:02x}:{i % 256:02x}"
        path = work / "batch-docs" / f"vm{i}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
        paths.append(path)
    return paths


def bench_batch(res: Results, sec: str, pkg: Package, work: Path, rounds: int,
                counts: Sequence[int]) -> dict[int, Row]:
    """n runner trees written by n `microvm generate` processes against one
    `microvm generate --batch` process: per VM, in ms."""
    cli = pkg.cli
    docs = vm_documents(work, max(counts))
    rows: dict[int, Row] = {}
    for n in counts:
        out = work / f"batch-out-{n}"

        def separate(n: int = n, out: Path = out) -> float:
            shutil.rmtree(out, ignore_errors=True)
            return sum(clock([*cli, "generate", str(d), "--out", str(out / d.stem)])
                       for d in docs[:n]) / n

        def batch(n: int = n, out: Path = out) -> float:
            shutil.rmtree(out, ignore_errors=True)
            pairs = [a for d in docs[:n] for a in ("--batch", str(d), str(out / d.stem))]
            return clock([*cli, "generate", *pairs]) / n

        # n separate processes take n times as long: fewer rounds of them for large n
        got = interleaved({"batch": batch}, rounds, warmup=1)
        sep = interleaved({"separate": separate}, max(1, rounds // max(1, n // 10)),
                          warmup=0)
        total = statistics.median(got["batch"]) * n
        rows[n] = res.add(Row(
            sec, f"{n} VM(s) in one `microvm generate --batch`: per VM", "ms", got["batch"],
            f"{n} `microvm generate` process(es): per VM", sep["separate"],
            "100 VMs in one batch < 2 s" if n >= 100 else "",
            f"the batch takes {total / 1000:.2f} s in all; separate processes " +
            f"{statistics.median(sep['separate']) * n / 1000:.2f} s"))
    return rows


NIX_TRIVIAL = """{ n, salt }: builtins.genList (i: derivation {
  name = "microvm-bench-${toString i}"; system = builtins.currentSystem; builder = "/bin/sh";
  args = [ "-c" "echo ${salt} > $out" ]; }) n
"""


def bench_nix_derivations(res: Results, sec: str, batch: dict[int, Row], extra: int) -> None:
    """What one more derivation costs nix-build here (a trivial /bin/sh builder), to weigh one
    runner derivation per VM against one derivation running `generate --batch` for a host."""
    if extra == 0 or shutil.which("nix-build") is None:
        res.note(sec, "Nix derivation overhead not measured (quick run or no nix-build).")
        return
    expr = Path(tempfile.mkdtemp(prefix="microvm-bench-nix-")) / "trivial.nix"
    expr.write_text(NIX_TRIVIAL)

    def build(n: int) -> float:
        salt = f"{time.time_ns()}-{n}"  # new derivations every time: nothing is cached
        return clock(["nix-build", str(expr), "--no-out-link", "--arg", "n", str(n),
                      "--argstr", "salt", salt])

    try:
        got = interleaved({"one": lambda: build(1), "more": lambda: build(1 + extra)}, 3,
                          warmup=0)
    except subprocess.CalledProcessError as e:
        res.note(sec, f"Nix derivation overhead not measured: nix-build failed ({e}).")
        return
    finally:
        shutil.rmtree(expr.parent, ignore_errors=True)
    per = [(m - o) / extra for m, o in zip(got["more"], got["one"], strict=True)]
    big = max(batch)
    row = batch[big]
    res.add(Row(sec, "Nix: one more derivation in a nix-build (trivial /bin/sh builder)", "ms",
                per, f"one `microvm generate` process ({big}-VM run, per VM)", row.ref,
                note=f"nix-build of 1 derivation: {statistics.median(got['one']):.0f} ms " +
                     f"(fixed cost of a nix-build here); of {1 + extra}: " +
                     f"{statistics.median(got['more']):.0f} ms"))
    proc, in_batch, nix = (statistics.median(row.ref), statistics.median(row.samples),
                           statistics.median(per))
    res.note(sec, "**Decision (nix/lib): keep one runner derivation per VM.** Regenerating " +
             f"all runners of a {big}-VM host costs {big} x ({proc:.0f} ms generate + " +
             f"{nix:.0f} ms per derivation) = {big * (proc + nix) / 1000:.1f} s of CPU " +
             f"(spread over max-jobs), against {big * in_batch / 1000:.1f} s for one " +
             "derivation running `generate --batch`. But that happens only when the " +
             "generator itself changes; the common change touches one VM, which costs one " +
             f"small derivation ({(proc + nix) / 1000:.2f} s) per VM and the whole batch " +
             f"({big * in_batch / 1000:.1f} s) with a host-wide one, whose new output would " +
             "also give every VM a new runner path (restartIfChanged would restart them " +
             "all) unless it were split into per-VM derivations again. A runner is also the " +
             "guest's own `microvm.declaredRunner` (flake VMs, deploy, `nix run`), built " +
             "without the host, and a few tenths of a second next to the guest's NixOS " +
             "system closure. `--batch` serves many VMs outside Nix (scripts, tests, other " +
             "tooling).")


def profile(res: Results, sec: str, pkg: Package, vm_json: Path, work: Path) -> None:
    """cProfile of one `generate` process, and -X importtime of the CLI import."""
    prof = work / "gen.prof"
    subprocess.run([pkg.python, "-m", "cProfile", "-o", str(prof), "-m", "microvm.cli", "generate",
                    str(vm_json), "--out", str(work / "prof-out"), "--force"],
                   check=True, capture_output=True)
    buf = io.StringIO()
    stats = pstats.Stats(str(prof), stream=buf)
    stats.sort_stats("cumulative").print_stats(r"microvm|jsonschema|jinja2|click|referencing",
                                               18)
    table = [ln for ln in buf.getvalue().splitlines()
             if re.match(r"\s*\d", ln) or "ncalls" in ln]
    buf = io.StringIO()
    stats.stream = buf  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(12)
    own = [ln for ln in buf.getvalue().splitlines() if re.match(r"\s*\d", ln)]
    res.note(sec, "cProfile of one `microvm generate` process (profiling inflates times), " +
             "cumulative, project and library frames only:\n\n```\n" + "\n".join(table) +
             "\n```\n\nThe same profile by own time (tottime):\n\n```\n" +
             "\n".join(own[1:]) + "\n```")
    p = subprocess.run([pkg.python, "-X", "importtime", "-m", "microvm.cli", "generate",
                        str(vm_json), "--out", str(work / "prof-out"), "--force"],
                       capture_output=True, text=True, check=True)
    imports: list[tuple[int, int, str]] = []
    for ln in p.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+)\s*\|\s*(\d+)\s*\|(\s*)(\S+)", ln)
        if m and len(m.group(3)) <= 3:  # top-level imports (and their first level)
            imports.append((int(m.group(2)), int(m.group(1)), m.group(4)))
    imports.sort(reverse=True)
    lines = [f"{c / 1000:8.1f} ms cumulative {s / 1000:7.1f} ms self  {n}"
             for c, s, n in imports[:12]]
    res.note(sec, "`python3 -X importtime -m microvm.cli generate ...` (one VM), largest " +
             "top-level imports, including those made on first use inside functions:\n\n" +
             "```\n" + "\n".join(lines) + "\n```")


# --------------------------------------------------------------------------------------------
# 6. Store images and shares

STORE_VARIANTS: dict[str, list[str]] = {
    "erofs, uncompressed": ["mkfs.erofs", "--quiet", "{out}", "{src}"],
    "erofs -zlz4": ["mkfs.erofs", "--quiet", "-zlz4", "{out}", "{src}"],
    "erofs -zlz4hc": ["mkfs.erofs", "--quiet", "-zlz4hc", "{out}", "{src}"],
    "erofs -zlz4hc -Eztailpacking": ["mkfs.erofs", "--quiet", "-zlz4hc", "-Eztailpacking",
                                     "{out}", "{src}"],
    "squashfs (gzip, default)": ["mksquashfs", "{src}", "{out}", "-noappend", "-quiet",
                                 "-no-progress"],
    "squashfs -comp zstd": ["mksquashfs", "{src}", "{out}", "-noappend", "-quiet",
                            "-no-progress", "-comp", "zstd"],
}


def tree_bytes(src: Path) -> int:
    return sum(p.lstat().st_size for p in src.rglob("*") if p.is_file() and not p.is_symlink())


def bench_store(res: Results, work: Path, rounds: int, sample: Path) -> None:
    sec = "6. Store images and shares"
    out = work / "img"
    times: dict[str, list[float]] = {}
    sizes: dict[str, float] = {}
    firsts: dict[str, float] = {}
    cases: dict[str, Callable[[], float]] = {
        "tar": lambda: clock(["tar", "-cf", str(out), "-C", str(sample), "."])}
    for name, argv in STORE_VARIANTS.items():
        if shutil.which(argv[0]) is None:
            res.note(sec, f"{name}: {argv[0]} is not installed")
            continue
        cmd = [a.format(out=out, src=sample) for a in argv]
        out.unlink(missing_ok=True)
        t = time.perf_counter()
        probe = subprocess.run(cmd, capture_output=True, text=True)
        first = (time.perf_counter() - t) * 1000  # a run like the others: the first sample
        if probe.returncode:
            res.note(sec, f"{name}: fails here: {(probe.stderr or probe.stdout).strip()[-200:]}")
            continue
        cases[name] = lambda cmd=cmd: clock(cmd)  # type: ignore[misc]
        firsts[name] = first
        sizes[name] = out.stat().st_size / (1 << 20)
    for name, fn in cases.items():
        times[name] = [] if name == "tar" else [firsts[name]]
        for _ in range(rounds if name == "tar" else rounds - 1):
            out.unlink(missing_ok=True)
            times[name].append(fn())
        sizes.setdefault(name, out.stat().st_size / (1 << 20))  # tar: not probed
    src_mb = tree_bytes(sample) / (1 << 20)
    for name in cases:
        if name == "tar":
            continue
        res.add(Row(sec, f"{name}: build time", "ms", times[name], "`tar -cf` of the sample",
                    times["tar"], note=f"image {sizes[name]:.1f} MiB = " +
                    f"{sizes[name] / sizes['tar']:.2f} x the tar ({sizes['tar']:.1f} MiB)"))
    res.note(sec, f"Sample closure: {sample} ({src_mb:.1f} MiB of file data), built " +
             f"{rounds} time(s) per variant on the host's disk; -zlz4hc with -Eztailpacking " +
             "is microvm.nix's default erofs store (-Efragments needs erofs-utils 1.6+); " +
             "squashfs zstd is its gensquashfs default.")
    labels = [n for n in cases if n != "tar"]
    res.plots.append((sec, plot_store(work, labels, times, sizes)))


def bench_shares(res: Results, work: Path, mib: int, files: int) -> None:
    import testguest

    sec = "6. Store images and shares"
    data = work / "share-data"
    data.mkdir()
    for i in range(files):
        with (data / f"f{i}").open("wb") as f:
            for _ in range(mib):
                f.write(os.urandom(1 << 20))
    image = work / "shares" / "blk.img"
    image.parent.mkdir()
    size = mib * files + 32 + mib * files // 10
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "blk", "-d", str(data), str(image),
                    f"{size}M"], check=True, capture_output=True)
    readers = []
    for i in range(files):
        for m in ("blk", "9p", "vfs"):
            readers.append(f'a=$(now); cat /mnt/{m}/f{i} >/dev/null; ' +
                           f'echo "BENCH-READ {m} $a $(now)"')
    # the kernel's monotonic clock in ns (/proc/uptime has 10 ms steps)
    script = ("now() { awk '/^now at/ { print $3; exit }' /proc/timer_list; }\n" +
              "mkdir -p /mnt/blk /mnt/9p /mnt/vfs\n" +
              "mount -t ext4 -o ro \"$(disk_by_serial blk)\" /mnt/blk\n" +
              "mount -t 9p -o trans=virtio,version=9p2000.L,msize=65536 ninep /mnt/9p\n" +
              "mount -t virtiofs vfs /mnt/vfs\n" + "\n".join(readers) + "\necho BENCH-DONE\n")
    kern = testguest.kernel()
    initrd = testguest.build_initramfs(kern, work / "shares-initrd.gz", script)
    doc = vmtest.document(
        "shares", kern.vmlinux, initrd,
        volumes=[{"image": "blk.img", "size": size, "serial": "blk"}],
        shares=[{"tag": "ninep", "source": str(data), "mountPoint": "/mnt/9p"},
                {"tag": "vfs", "proto": "virtiofs", "source": str(data),
                 "mountPoint": "/mnt/vfs"}],
        virtiofsd={"group": None})
    runner = generate(doc, image.parent)
    with Guest([str(runner / "bin" / "microvm-run")], image.parent) as g:
        g.wait_for("BENCH-DONE", 300)
        g.wait_exit()
    mbps: dict[str, list[float]] = {"blk": [], "9p": [], "vfs": []}
    for ln in g.lines:
        hit = re.search(r"BENCH-READ (\S+) (\d+) (\d+)", ln)
        if hit:
            took = (int(hit.group(3)) - int(hit.group(2))) / 1e9
            mbps[hit.group(1)].append(mib / max(took, 0.01))
    ref = "virtio-blk volume (ext4, read-only)"
    for key, name in (("9p", "9p share (msize=65536)"), ("vfs", "virtiofs share"),
                      ("blk", ref)):
        res.add(Row(sec, f"{name}: read throughput in the guest", "MiB/s", mbps[key], ref,
                    mbps["blk"], note="higher is better"))
    res.note(sec, f"Throughput: {files} files of {mib} MiB of random data, each read once with " +
             "`cat` inside one TCG guest (a fresh file per read, so the guest's cache is cold; " +
             "the host's is warm), timed with the guest kernel's clock (/proc/timer_list). The " +
             "media are interleaved. virtiofs runs the C virtiofsd the runner starts " +
             "(/usr/lib/qemu/virtiofsd); 9p is mounted with the options of this project's " +
             "guest module (nix/modules/microvm/guest.nix). The guest clock runs fast by the " +
             "factor in section 3 (tsc_early_khz), which scales all three alike: compare " +
             "the ratios.")


# --------------------------------------------------------------------------------------------
# Plots and report


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_rows(work: Path, name: str, title: str, rows: list[Row], unit: str) -> str:
    plt = _plt()
    if plt is None or not rows:
        return ""
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.5))
    labels = [r.name.split(":")[0] if ":" in r.name else r.name for r in rows]
    mids = [r.stats()[1] for r in rows]
    err = [[m - r.stats()[0] for m, r in zip(mids, rows, strict=True)],
           [r.stats()[2] - m for m, r in zip(mids, rows, strict=True)]]
    ys = list(range(len(rows)))
    ax.barh(ys, mids, xerr=err, capsize=3, color="#4c72b0")
    ax.set_yticks(ys, labels)
    for y, r in zip(ys, rows, strict=True):
        if r.ref:  # each row's own reference, as a tick across its bar
            ref = statistics.median(r.ref)
            ax.plot([ref, ref], [y - 0.45, y + 0.45], color="#dd8452", linewidth=2)
        ax.text(r.stats()[2], y, f"  {r.stats()[1]:.3g}", va="center", fontsize=8)
    if min(mids) > 0 and max(mids) / min(mids) > 20:
        ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel(f"{unit}: median, whiskers min-max; orange: the row's reference median")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(work / name, dpi=90)
    plt.close(fig)
    return name


def plot_store(work: Path, labels: list[str], times: dict[str, list[float]],
               sizes: dict[str, float]) -> str:
    plt = _plt()
    if plt is None or not labels:
        return ""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 0.45 * len(labels) + 1.8), sharey=True)
    a.barh(labels, [statistics.median(times[n]) / 1000 for n in labels], color="#4c72b0")
    a.axvline(statistics.median(times["tar"]) / 1000, color="#dd8452", linestyle="--")
    a.set_xlabel("build time, s (median; dashed: tar -cf)")
    b.barh(labels, [sizes[n] for n in labels], color="#55a868")
    b.axvline(sizes["tar"], color="#dd8452", linestyle="--")
    b.set_xlabel("image size, MiB (dashed: tar)")
    a.invert_yaxis()
    fig.suptitle("Store image builds on the sample closure")
    fig.tight_layout()
    fig.savefig(work / "store.png", dpi=90)
    plt.close(fig)
    return "store.png"


def fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def find(res: Results, section: str, prefix: str) -> Row | None:
    for r in res.rows:
        if r.section == section and r.name.startswith(prefix):
            return r
    return None


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def meaning(res: Results) -> dict[str, str]:
    """One sentence per section, for a user, computed from this run's figures."""
    out: dict[str, str] = {}
    sec = "1. Runner overhead"
    rows = [r for r in res.rows if r.section == sec]
    if rows:
        worst = max(rows, key=lambda r: med(r.samples) - med(r.ref))
        extra = med(worst.samples) - med(worst.ref)
        out[sec] = (f"Starting a VM through the generated runner costs at most {extra:.1f} ms "
                    + f"(median, {worst.name.split(':')[0]}) more than a bare `bash -c exec`; "
                    + "next to a boot of a second or more this is noise.")
    sec = "2. Control round trips"
    total, late = find(res, sec, "microvm-shutdown: call"), find(res, sec, "microvm-shutdown ret")
    if total and late:
        out[sec] = (f"`microvm-shutdown` returns {med(late.samples):.0f} ms after the "
                    + "hypervisor has exited (target 50 ms); the whole call takes "
                    + f"{med(total.samples):.2f} s, against {med(total.ref):.3f} s for the "
                    + "guest's own power-off once it has decided to.")
    sec = "3. Boot under TCG"
    gen = find(res, sec, "generated runner (microvm-run): launch")
    if gen:
        parts = [f"the generated runner boots in {med(gen.samples) / med(gen.ref):.2f} x the "
                 + "hand-tuned command line's time (target <= 1.05)"]
        for prefix, label in (("same guest, -M pc: launch", "-M pc"),
                              ("same guest, -M q35: launch", "-M q35"),
                              ("microvm.nix argv, pit/pic flipped on: launch",
                               "microvm.nix's argv with pit/pic on")):
            r = find(res, sec, prefix)
            if r:
                parts.append(f"{label} {med(r.samples) / med(r.ref):.2f} x")
        out[sec] = "Host clock, medians: " + "; ".join(parts) + "."
    sec = "4. Generation cost"
    proc = find(res, sec, "`microvm generate`")
    if proc:
        text = (f"One `microvm generate` process takes {med(proc.samples):.0f} ms, "
                + f"{med(proc.samples) - med(proc.ref):.0f} ms above Python's own start-up "
                + "(target 150 ms)")
        many = [r for r in res.rows if r.section == sec and "--batch`: per VM" in r.name]
        if many:
            last = many[-1]
            n = int(last.name.split()[0])
            text += (f"; {n} VMs in one `microvm generate --batch` take "
                     + f"{med(last.samples) * n / 1000:.2f} s ({med(last.samples):.1f} ms per "
                     + f"VM, against {med(last.ref):.0f} ms per VM as separate processes)")
        out[sec] = text + "."
    sec = "6. Store images and shares"
    builds = [r for r in res.rows if r.section == sec and r.name.endswith("build time")]
    reads = {k: find(res, sec, k) for k in ("9p share", "virtiofs share")}
    parts = []
    if builds:
        fast = min(builds, key=lambda r: med(r.samples))
        parts.append(f"fastest store image to build: {fast.name.split(':')[0]} "
                    + f"({med(fast.samples) / med(fast.ref):.1f} x a tar of the same files)")
    for k, r in reads.items():
        if r and r.samples and r.ref:
            parts.append(f"{k} reads at {med(r.samples) / med(r.ref):.2f} x a virtio-blk volume")
    if parts:
        out[sec] = "; ".join(parts) + " (sizes in the notes column)."
    return out


def report(res: Results, path: Path, argv: list[str], elapsed: float,
           header: list[str]) -> str:
    out = ["# Benchmark report", "",
           f"Regenerate with `{' '.join(['.venv/bin/python bench/run.py', *argv])}`" +
           f" (this run: {elapsed / 60:.1f} min). Every figure is a ratio to the reference a " +
           "user would pick instead, measured in the same run: ratio = sample / reference " +
           "median, shown as min / median / max. Nothing is asserted; targets are from issue " +
           "13.", "", "## Machine", ""]
    out += [f"- {h}" for h in header]
    means = meaning(res)
    for sec in sorted({r.section for r in res.rows} | set(res.notes)):
        out += ["", f"## {sec}", ""]
        if sec in means:
            out += [f"*For a user:* {means[sec]}", ""]
        rows = [r for r in res.rows if r.section == sec]
        if rows:
            out += ["| measure | min / median / max | reference (median) | ratio min / med / " +
                    "max | target | notes |", "|---|---|---|---|---|---|"]
            for r in rows:
                lo, mid, hi = r.stats()
                ratio = r.ratio()
                rtxt = " / ".join(f"{x:.2f}" for x in ratio) if ratio else "-"
                ref = (f"{r.ref_name} ({fmt(statistics.median(r.ref))} {r.unit})"
                       if r.ref else "-")
                out.append(f"| {r.name} | {fmt(lo)} / {fmt(mid)} / {fmt(hi)} {r.unit} | {ref} " +
                           f"| {rtxt} | {r.target or '-'} | {r.note or ''} |")
        for name in [p for s, p in res.plots if s == sec and p]:
            out += ["", f"![{sec}]({name})"]
        for n in res.notes.get(sec, []):
            out += ["", n]
    if not any(p for _, p in res.plots):
        out += ["", "Plots skipped: matplotlib is not installed (`pip install .[bench]`)."]
    text = "\n".join(out) + "\n"
    path.write_text(text)
    return text


def bench_nix_eval(res: Results, vms: Sequence[int], repeats: int) -> None:
    """5. Nix evaluation cost, this project against microvm.nix (bench/nix_eval.py)."""
    sys.path.insert(0, str(REPO / "bench"))
    import nix_eval

    sec = "5. Nix evaluation"
    try:
        measured = nix_eval.run(list(vms), repeats)
    except RuntimeError as e:  # no upstream source or no nixpkgs lib here: say so
        res.note(sec, f"Not run: {e}")
        return
    res.note(sec, nix_eval.markdown(measured))


SECTIONS = ("overhead", "generation", "store", "shutdown", "boot", "shares", "nixeval")
BOOTS = {"shutdown", "boot", "shares"}


def main(args_in: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="one tiny iteration of everything (the smoke test)")
    ap.add_argument("--no-boot", action="store_true", help="skip everything that boots")
    ap.add_argument("--rounds", type=int, default=5, help="boots per variant (default 5)")
    ap.add_argument("--sample", type=Path, default=Path("/usr/lib/python3.11"),
                    help="directory the store images are built from")
    ap.add_argument("--report", type=Path, default=REPO / "bench" / "REPORT.md")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})")
    args = ap.parse_args(args_in)
    start = time.monotonic()
    header = machine()
    res = Results()
    q = args.quick
    with tempfile.TemporaryDirectory(prefix="microvm-bench-") as tmp:
        work = Path(tmp)
        only = set(args.only.split(","))
        if args.no_boot:
            only -= BOOTS
            res.note("3. Boot under TCG", "Not run (--no-boot).")
        if "overhead" in only:
            bench_overhead(res, work, 2 if q else 30)
        if "generation" in only:
            bench_generation(res, work, 1 if q else 10, (1, 3) if q else (1, 10, 100))
        if "store" in only:
            bench_store(res, work, 1 if q else 3, args.sample)
        if "shutdown" in only:
            bench_shutdown(res, work, 1 if q else args.rounds)
        if "boot" in only:
            bench_boots(res, work, 1 if q else args.rounds)
        if "shares" in only:
            bench_shares(res, work, 4 if q else 64, 1 if q else 3)
        if "nixeval" in only:
            bench_nix_eval(res, (1,) if q else (1, 10, 50), 1 if q else 9)
        # 7 boots a container with systemd as PID 1: its own script and report
        res.note("7. Start storms", "Measured separately by `bench/storm.py` (N VMs started " +
                 "together by microvms.target in a container with systemd as PID 1, time until " +
                 "all are ready as ratios to one VM alone): [STORM.md](STORM.md).")
        for _, name in res.plots:
            if name:
                shutil.copy(work / name, args.report.parent / name)
        flags = [f for f, on in (("--quick", q), ("--no-boot", args.no_boot)) if on]
        text = report(res, args.report, flags, time.monotonic() - start, header)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
