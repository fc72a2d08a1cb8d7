"""Differential test against upstream microvm.nix (the oracle): same configuration, both runners.

For every configuration of tests/nix/upstream/matrix.nix (17 cases x 8 hypervisors), one
`nix-instantiate` evaluates
  - upstream: microvm.nix's option modules and its runner code for the hypervisor, with nixpkgs'
    lib and stand-in packages (tests/nix/upstream/{eval,pkgs,stub}.nix) -> the command line
    string, split with shlex;
  - this project: the guest module's VM document (what `microvm generate` reads in the runner
    derivation), then in Python the hypervisor backend's argv and config files - the same code
    path as `microvm generate`, without writing the tree.
Both argv are decomposed into items (flag, device identity, sub-option; kernel command line
words; config file keys) and compared as multisets. Every difference must match exactly one
reviewed entry of tests/support/upstream_diff.py, and every entry must match at least one
difference, so a new difference or a vanished one fails. docs/microvm-nix-differences.md is
generated from that table (scripts/regen; tests/test_regen.py fails while it is stale).

Upstream's source: $MICROVM_NIX_SRC, else /opt/microvm.nix; without it the tests skip (a
failure under CI=true, see tests/conftest.py).
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from microvm.document import from_document
from microvm.errors import ValidationError
from microvm.hypervisors import Accel, RunContext, backend
from support import REPO, upstream_diff
from support.upstream import nix_env, problem, upstream_src

NIXDIR = REPO / "tests" / "nix" / "upstream"
RUNNER_DIR = "/nix/store/00000000000000000000000000000000-microvm-runner"
STORE_HASH = re.compile(r"/nix/store/[0-9a-df-np-sv-z]{32}-")
FILE_MARKER = re.compile(r"@file:([^@]*)@(.*)@end@", re.S)

pytestmark = [pytest.mark.nix]
# tests of the table itself, which run without upstream's source or nix
NO_ORACLE = {"test_table_entries_are_well_formed"}


@pytest.fixture(autouse=True)
def _need_oracle(request: pytest.FixtureRequest) -> None:
    if request.node.originalname not in NO_ORACLE and (why := problem()):
        pytest.skip(why)


# -- evaluation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One side's result: argv and files, or the refusal."""

    argv: tuple[str, ...] | None
    files: tuple[tuple[str, str], ...]
    refusal: str | None


@dataclass(frozen=True)
class Evaluated:
    name: str
    hypervisor: str
    upstream: Side
    project: Side
    store_disks: tuple[str, ...]


def matrix_names() -> list[str]:
    r = subprocess.run(
        [
            "nix-instantiate",
            "--eval",
            "--strict",
            "--json",
            "-E",
            "builtins.attrNames (import ./matrix.nix)",
        ],
        cwd=NIXDIR,
        capture_output=True,
        text=True,
        env=nix_env(),
        check=True,
    )
    names: list[str] = json.loads(r.stdout)
    return names


def nix_eval(name: str, sides: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "nix-instantiate",
            "--eval",
            "--strict",
            "--json",
            "eval.nix",
            "--arg",
            "upstream",
            str(upstream_src()),
            "--argstr",
            "name",
            name,
            "--arg",
            "sides",
            "[ " + " ".join(json.dumps(s) for s in sides) + " ]",
            "--arg",
            "python",
            json.dumps(sys.executable),
            "--arg",
            "repo",
            json.dumps(str(REPO)),
        ],
        cwd=NIXDIR,
        capture_output=True,
        text=True,
        env=nix_env(),
        timeout=120,
    )


def error_line(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return stderr.strip().splitlines()[-1] if stderr.strip() else "evaluation failed"


def upstream_side(result: dict[str, Any]) -> Side:
    if not result["ok"]:
        return Side(None, (), "refused (throw)")
    files: list[tuple[str, str]] = []

    def unmark(word: str) -> str:
        m = FILE_MARKER.fullmatch(word)
        if m is None:
            return word
        files.append((m.group(1), m.group(2)))
        return f"@file:{m.group(1)}"

    # kvmtool's macvtap: upstream leaves `$(< /sys/...)` unquoted for the shell to expand
    command = result["command"].replace("$(< ", "$(<")
    argv = tuple(unmark(w) for w in shlex.split(command))
    return Side(argv, tuple(files), None)


def project_side(document: str | None) -> Side:
    if document is None:
        return Side(None, (), "refused at evaluation (throw)")
    try:
        vm = from_document(json.loads(document))
    except ValidationError as e:
        return Side(None, (), "; ".join(str(p) for p in e.problems))
    launch = backend(vm.hypervisor).launch(vm, RunContext(runner_dir=RUNNER_DIR))
    argv = launch.variants.get(Accel.KVM) or next(iter(launch.variants.values()))
    share = f"{RUNNER_DIR}/share/microvm/"
    out = tuple(f"@file:{w.removeprefix(share)}" if w.startswith(share) else w for w in argv)
    return Side(out, tuple(sorted(launch.files.items())), None)


def evaluate(name: str) -> Evaluated:
    r = nix_eval(name, ["upstream", "project"])
    if r.returncode == 0:
        data = json.loads(r.stdout)
        up = upstream_side(data["upstream"])
        disks = [data["upstream"]["storeDisk"]]
    else:
        # an error tryEval cannot catch (a missing attribute): upstream cannot evaluate it
        why = error_line(r.stderr)
        r = nix_eval(name, ["project"])
        if r.returncode != 0:
            raise AssertionError(f"{name}: this project's module fails:\n{r.stderr[-3000:]}")
        data = json.loads(r.stdout)
        up = Side(None, (), f"refused ({why})")
        disks = []
    project = project_side(data["project"])
    if data["project"] is not None:
        disks.append(json.loads(data["project"])["microvm"].get("storeDisk"))
    return Evaluated(name, name.split(".")[0], up, project, tuple(d for d in disks if d))


@cache
def evaluated() -> dict[str, Evaluated]:
    names = matrix_names()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(zip(names, pool.map(evaluate, names), strict=True))


# -- decomposition into comparable items --------------------------------------------------------

# the flag carrying the kernel command line, per hypervisor (after ALIASES)
CMDLINE_FLAGS = {
    "qemu": "-append",
    "cloud-hypervisor": "--cmdline",
    "crosvm": "--params",
    "kvmtool": "--params",
    "stratovirt": "-append",
    "alioth": "--cmdline",
}
# short and long spellings of one flag (qemu -h; crosvm run --help; kvmtool's builtin-run.c;
# alioth boot --help): compared under the long name
ALIASES = {
    "qemu": {"-M": "-machine"},
    "crosvm": {"-m": "--mem", "-c": "--cpus", "-s": "--socket", "-p": "--params"},
    "kvmtool": {
        "-m": "--mem",
        "-c": "--cpus",
        "-d": "--disk",
        "-k": "--kernel",
        "-i": "--initrd",
        "-n": "--network",
        "-p": "--params",
    },
    # --cmd-line: 0.9's spelling, an alias of --cmdline from 0.10 (alioth-cli's main.rs)
    "alioth": {"-k": "--kernel", "-i": "--initramfs", "-c": "--cmdline", "--cmd-line": "--cmdline"},
}
# flags whose first positional part is a named key: crosvm's `--block PATH,...` is
# `--block path=PATH,...` (and `--vsock CID` is `--vsock cid=CID`); cloud-hypervisor's
# `--api-socket PATH` is `--api-socket path=PATH`
POSITIONAL_KEY = {
    ("crosvm", "--block"): "path",
    ("crosvm", "--vsock"): "cid",
    ("cloud-hypervisor", "--api-socket"): "path",
}
# sub-options that name one of several values of a flag (which drive, netdev, share...)
IDENTITY_KEYS = (
    "type",
    "id",
    "drive",
    "netdev",
    "chardev",
    "fsdev",
    "path",
    "tap",
    "tag",
    "socket",
    "if_name",
    "tapif",
    "tap-name",
    "tap-fd",
    "mac",
    "guest-cid",
    "cid",
    "host",
    "sharedDir",
    "name",
)


def normalise(text: str, disks: tuple[str, ...]) -> str:
    for d in disks:
        text = text.replace(d, "@storeDisk")
    return STORE_HASH.sub("/nix/store/", text)


def split_opts(value: str) -> list[str]:
    """`a,b=c,d="e f"`: comma-separated parts (QEMU's doubled commas kept in one part)."""
    parts: list[str] = []
    cur = ""
    i = 0
    quoted = False
    while i < len(value):
        c = value[i]
        if c == '"':
            quoted = not quoted
        if c == "," and not quoted:
            if value[i + 1 : i + 2] == ",":
                cur += ",,"
                i += 2
                continue
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    return parts


def value_items(flag: str, value: str, positional: str | None = None) -> list[str]:
    """Items for one value of `flag`: the device it names, then each of its sub-options."""
    if positional and not split_opts(value)[0].count("="):
        value = f"{positional}={value}"
    if "=" not in value and "," not in value:
        return [f"{flag} {value}"]
    parts = split_opts(value)
    head = parts[0] if "=" not in parts[0] else ""
    kv = parts[1:] if head else parts
    ident = head
    keys = dict(p.split("=", 1) for p in kv if "=" in p)
    for k in IDENTITY_KEYS:
        if k in keys:
            ident = f"{head}[{k}={keys[k]}]" if head else f"[{k}={keys[k]}]"
            break
    name = f"{flag} {ident or '[]'}"
    items = [name] + [f"{name} {p}" for p in kv]
    return items


def cmdline_items(words: str) -> list[str]:
    return [f"cmdline {w}" for w in words.split()]


def unwrap_vfkit(argv: tuple[str, ...]) -> tuple[list[str], tuple[str, ...]]:
    """vfkit wants an absolute socket path: both runners start it from `bash -c SCRIPT`, which
    makes the relative socket absolute. Returns (items for the socket, vfkit's own argv)."""
    if argv[:2] != ("bash", "-c"):
        return [], argv
    script = argv[2]
    if len(argv) > 3:  # this project: bash -c SCRIPT NAME SOCKET ARGV...
        return [f"--restful-uri unix://$PWD/{argv[4]}"], argv[5:]
    # upstream: SOCKET_ABS=SOCKET; make it absolute; exec ARGV --restful-uri ...
    socket = shlex.split(re.search(r"^SOCKET_ABS=(.*)$", script, re.M).group(1))[0]  # type: ignore[union-attr]
    exec_line = next(line for line in script.splitlines() if line.startswith("exec "))
    words = shlex.split(exec_line.removeprefix("exec "))
    at = words.index("--restful-uri")
    return [f"--restful-uri unix://$PWD/{socket}"], tuple(words[:at] + words[at + 2 :])


def argv_items(hv: str, argv: tuple[str, ...]) -> list[str]:
    wrapper: list[str] = []
    if hv == "vfkit":
        wrapper, argv = unwrap_vfkit(argv)
    if hv == "alioth" and argv[:2] == ("bash", "-c"):
        # this project: bash -c SCRIPT NAME ARGV... gives alioth a pseudo-terminal (util-linux
        # script) when stdin is none, as under systemd
        wrapper, argv = ["wrapper: a pseudo-terminal without a terminal"], argv[4:]
    items = [f"program {Path(argv[0]).name}", *wrapper]
    rest = list(argv[1:])
    if hv == "stratovirt" and items[0] == "program unbuffer":
        items = [f"program unbuffer {Path(rest.pop(0)).name}"]
    while rest and not rest[0].startswith("-"):
        items.append(f"subcommand {rest.pop(0)}")
    if (
        hv == "crosvm"
        and rest
        and not rest[-1].startswith("-")
        and (len(rest) < 2 or rest[-2] == "--initrd" or not rest[-2].startswith("-"))
    ):
        items.append(f"kernel {rest.pop()}")
    flag = "<positional>"
    valueless = False  # a flag standing alone (a switch) is an item of its own
    for word in rest:
        if word.startswith("-") and not re.fullmatch(r"-\d+", word):
            if valueless:
                items.append(flag)
            flag = ALIASES.get(hv, {}).get(word, word)
            valueless = True
            continue
        valueless = False
        if flag == CMDLINE_FLAGS.get(hv):
            items += cmdline_items(word)
        elif hv == "vfkit" and flag == "--bootloader":
            m = re.search(r'cmdline="([^"]*)"', word)
            if m:
                items += cmdline_items(m.group(1))
                word = word.replace(m.group(0), "cmdline=@cmdline")
            items += value_items(flag, word)
        else:
            items += value_items(flag, word, POSITIONAL_KEY.get((hv, flag)))
    if valueless:
        items.append(flag)
    return items


def json_items(prefix: str, value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "boot_args" and isinstance(v, str):
                yield from cmdline_items(v)
            else:
                yield from json_items(f"{prefix}.{k}", v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            key = i
            if isinstance(v, dict):
                key = next(
                    (v[k] for k in ("path_on_host", "host_dev_name", "tag", "id") if k in v), i
                )
            yield from json_items(f"{prefix}[{key}]", v)
    else:
        yield f"{prefix}={json.dumps(value)}"


def file_items(files: tuple[tuple[str, str], ...]) -> list[str]:
    items: list[str] = []
    for _, content in files:
        try:
            items += json_items("config", json.loads(content))
        except json.JSONDecodeError:
            items.append(f"config {content}")
    return items


# flags whose `id=` names an object that other options refer to; those names are internal to
# the command line (QEMU, StratoVirt) and are renamed by order of definition: drive0, netdev0...
DEFINING = ("-drive", "-netdev", "-chardev", "-fsdev", "-object", "-device")
REFERENCE_KEYS = ("id", "drive", "netdev", "chardev", "fsdev", "memdev", "rng")


def canonical_ids(argv: tuple[str, ...]) -> tuple[str, ...]:
    names: dict[str, str] = {}
    count: Counter[str] = Counter()
    for flag, value in itertools.pairwise(argv):
        if flag in DEFINING:
            for part in split_opts(value):
                if part.startswith("id=") and part[3:] not in names:
                    kind = flag.lstrip("-")
                    names[part[3:]] = f"{kind}{count[kind]}"
                    count[kind] += 1

    def rename(value: str) -> str:
        if value.startswith("chardev:") and value[8:] in names:
            return "chardev:" + names[value[8:]]
        parts = []
        for part in split_opts(value):
            k, eq, v = part.partition("=")
            parts.append(f"{k}={names[v]}" if eq and k in REFERENCE_KEYS and v in names else part)
        return ",".join(parts)

    return tuple(rename(w) if "=" in w or w.startswith("chardev:") else w for w in argv)


def side_items(ev: Evaluated, side: Side) -> Counter[str]:
    if side.argv is None:
        return Counter()
    argv = tuple(normalise(w, ev.store_disks) for w in side.argv)
    if ev.hypervisor in ("qemu", "stratovirt"):
        argv = canonical_ids(argv)
    argv = tuple("@file" if w.startswith("@file:") else w for w in argv)
    files = tuple((n, normalise(c, ev.store_disks)) for n, c in side.files)
    return Counter(argv_items(ev.hypervisor, argv) + file_items(files) + [disk_order(argv, files)])


# the disk images of tests/nix/upstream/matrix.nix: without serials the guest finds volumes by
# position (/dev/vda, vdb...), so the order in which they are attached is compared too
DISKS = ("@storeDisk", "var.img", "/srv/data.img", "direct.img")


def disk_order(argv: tuple[str, ...], files: tuple[tuple[str, str], ...]) -> str:
    text = "\0".join(argv + tuple(c for _, c in files))
    found = sorted((text.find(d), d) for d in DISKS if d in text)
    return "disk order: " + " ".join(d for _, d in found)


@dataclass(frozen=True)
class Difference:
    config: str
    side: str  # "upstream" (only upstream has it) or "project" (only this project has it)
    item: str

    def __str__(self) -> str:
        return f"{self.config}: only {self.side}: {self.item}"


def differences(ev: Evaluated) -> list[Difference]:
    up, pr = ev.upstream, ev.project
    if up.refusal is not None or pr.refusal is not None:
        if up.refusal is not None and pr.refusal is not None:
            return []
        if up.refusal is not None:
            return [Difference(ev.name, "project", "accepts (upstream refuses)")]
        return [Difference(ev.name, "upstream", f"accepts (project: {pr.refusal})")]
    a, b = side_items(ev, up), side_items(ev, pr)
    out = [Difference(ev.name, "upstream", i) for i in sorted((a - b).elements())]
    out += [Difference(ev.name, "project", i) for i in sorted((b - a).elements())]
    return out


def all_differences() -> list[Difference]:
    return [d for ev in evaluated().values() for d in differences(ev)]


def matches(entry: upstream_diff.Entry, d: Difference) -> bool:
    return (
        d.side == entry.side
        and any(fnmatch.fnmatchcase(d.config, g) for g in entry.configs)
        and re.fullmatch(entry.item, d.item) is not None
    )


# -- tests -------------------------------------------------------------------------------------


def test_matrix_covers_every_hypervisor_and_feature() -> None:
    evs = evaluated()
    assert len(evs) >= 40
    per_hv = Counter(ev.hypervisor for ev in evs.values())
    assert set(per_hv) == set(upstream_diff.HYPERVISORS), per_hv
    # the count docs/microvm-nix-differences.md states
    common = Counter(ev.name.split(".", 1)[1] for ev in evs.values())
    shared = [case for case, n in common.items() if n == len(upstream_diff.HYPERVISORS)]
    assert len(shared) == upstream_diff.MATRIX_CASES, sorted(shared)
    # both sides produce a command line for most configurations: the comparison is not vacuous
    both = [ev for ev in evs.values() if ev.upstream.argv and ev.project.argv]
    assert len(both) >= 40, len(both)
    assert {ev.hypervisor for ev in both} == set(upstream_diff.HYPERVISORS)


def test_every_difference_is_reviewed() -> None:
    diffs = all_differences()
    unlisted: list[str] = []
    ambiguous: list[str] = []
    for d in diffs:
        hits = [e.id for e in upstream_diff.TABLE if matches(e, d)]
        if not hits:
            unlisted.append(str(d))
        elif len(hits) > 1:
            ambiguous.append(f"{d} (entries {', '.join(hits)})")
    assert not unlisted, (
        "differences from upstream microvm.nix not in tests/support/upstream_diff.py:\n"
        + "\n".join(unlisted)
    )
    assert not ambiguous, "differences matching several entries:\n" + "\n".join(ambiguous)


def test_every_listed_difference_still_exists() -> None:
    diffs = all_differences()
    gone = [
        f"{e.id}: {e.summary}" for e in upstream_diff.TABLE if not any(matches(e, d) for d in diffs)
    ]
    assert not gone, (
        "entries of tests/support/upstream_diff.py that no configuration shows any more "
        + "(fixed? remove them):\n"
        + "\n".join(gone)
    )


def test_every_listed_configuration_shows_its_difference() -> None:
    """An entry's configurations are where it appears, not where it might: a name (or every
    configuration of a glob) that no longer shows the difference is a stale claim."""
    diffs = all_differences()
    stale = [
        f"{e.id}: {c}"
        for e in upstream_diff.TABLE
        for c in e.configs
        if not any(matches(e, d) and fnmatch.fnmatchcase(d.config, c) for d in diffs)
    ]
    assert not stale, (
        "configurations named by entries of tests/support/upstream_diff.py that do not show "
        + "the difference (remove them from the entry, and its text if it names them):\n"
        + "\n".join(stale)
    )


# a hypervisor flag as the reviewed texts write it: `-name`, `--num-cpu`
FLAG = re.compile(r"(?<![\w/.:=,+-])--?[a-zA-Z][a-zA-Z0-9_-]*")


def flags_of(ev: Evaluated, side: Side) -> set[str]:
    """The flags of one side's command line (also those of a `bash -c` script), with the other
    spelling of each aliased flag."""
    words = [w for arg in side.argv or () for w in arg.split()]
    found = {m for w in words for m in FLAG.findall(w) if m == w or w.startswith(m + "=")}
    aliases = ALIASES.get(ev.hypervisor, {})
    return found | {aliases[f] for f in found if f in aliases} | {
        short for short, long in aliases.items() if long in found}


def test_flags_named_by_the_reviewed_texts_are_in_the_command_lines() -> None:
    """docs/microvm-nix-differences.md is the summary and reason of each entry: every flag they
    name is in the command line of upstream or of this project, for a configuration that shows
    the difference (a text naming a flag neither side passes is wrong)."""
    diffs = all_differences()
    evs = evaluated()
    wrong = []
    for e in upstream_diff.TABLE:
        configs = {d.config for d in diffs if matches(e, d)}
        named = set(FLAG.findall(e.summary)) | set(FLAG.findall(e.reason))
        passed = {f for c in configs for side in (evs[c].upstream, evs[c].project)
                  for f in flags_of(evs[c], side)}
        shown = ", ".join(sorted(configs)[:3]) + (", ..." if len(configs) > 3 else "")
        wrong += [f"{e.id}: {f} (in neither command line of {shown})"
                  for f in sorted(named - passed)]
    assert not wrong, (
        "flags named by entries of tests/support/upstream_diff.py that neither side passes:\n"
        + "\n".join(wrong)
    )


def test_table_entries_are_well_formed() -> None:
    ids = [e.id for e in upstream_diff.TABLE]
    assert len(ids) == len(set(ids)), "duplicate entry ids"
    for e in upstream_diff.TABLE:
        assert e.kind in ("deliberate", "defect"), e.id
        assert e.reason and e.source, e.id
        assert e.side in ("upstream", "project"), e.id
        re.compile(e.item)


if __name__ == "__main__":  # print the current differences (for reviewing the table)
    for diff in all_differences():
        hit = [e.id for e in upstream_diff.TABLE if matches(e, diff)]
        print(f"{diff}    <- {','.join(hit) or 'UNLISTED'}")
