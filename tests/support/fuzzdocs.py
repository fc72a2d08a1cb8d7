"""hypothesis strategies for VM documents of every hypervisor, valid and corrupted, and the
property every one of them must have (`check`): it validates and then generates a complete
runner tree, or it is refused with `error:` lines naming option paths -- no traceback, no
document that validates and fails to generate, no partial output.

Used by tests/test_fuzz.py (a few thousand examples in CI) and bench/fuzz.py (100,000).
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from microvm import runner
from microvm.capabilities import CAPABILITIES, Hypervisor
from microvm.config import MicroVM
from microvm.document import from_document, parse
from microvm.errors import MicrovmError, Problem, ValidationError

# pieces that have broken a parser, a script or a terminal somewhere: legal in most strings...
TRICKY_PIECES = [
    ",", ",,", "=", "'", '"', "$(touch PWNED)", "`id`", ";", "%", "%25", "?", "#", "-", "--",
    "/", "..", " ", "\\", "\\,", "λ", "ü", "\U0001f600", ":", "[", "{", "\u00a0",
]
# ...and never legal (control characters, NUL, lone surrogates, bidi overrides)
CONTROL_PIECES = ["\n", "\x00", "\ud800", "\udfff", "\x1b[2J", "\r", "\t", "\x7f", "\x85",
                  "\u202e", "\u2028"]
HOSTILE_NUMBERS: list[Any] = [
    0, -1, 1.0, 2.0, 8.0, 1024.0, 1e12, 1e19, 1e308, -0.0, math.nan, math.inf, -math.inf,
    2**31, 2**32, 2**53 + 1, 2**63, 2**64, 10**19, 10**40, 65536, 4294967295, True, False,
    1024, 16777216, 16777217, 1073741824,
]

plain = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=8)
tricky_text = st.lists(st.sampled_from(TRICKY_PIECES) | plain, min_size=1, max_size=4).map(
    "".join)
hostile_text = st.lists(st.sampled_from(TRICKY_PIECES + CONTROL_PIECES) | plain, min_size=1,
                        max_size=4).map("".join)
# mostly usable names, sometimes anything (surrogates included: st.text leaves them out)
names = st.one_of(plain, plain, tricky_text, plain, hostile_text, st.text(max_size=6))
paths = names.map(lambda s: f"/srv/{s}") | names
numbers = st.integers(1, 64) | st.sampled_from(HOSTILE_NUMBERS) | st.integers() | st.floats()

json_leaf = (st.none() | st.booleans() | st.integers() | st.floats() | names)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=10,
)


def macs() -> st.SearchStrategy[str]:
    ok = st.integers(0, 255).map(lambda n: f"02:00:00:00:00:{n:02x}")
    return ok | ok.map(lambda s: s + "\n") | names


@st.composite
def volume(draw: st.DrawFn) -> dict[str, Any]:
    v: dict[str, Any] = {"image": draw(paths.map(lambda s: f"{s}.img")),
                         "size": draw(st.integers(1, 64) | numbers)}
    if draw(st.booleans()):
        v["mountPoint"] = draw(paths)
    if draw(st.booleans()):
        v["label"] = draw(names)
    if draw(st.booleans()):
        v["serial"] = draw(names)
    if draw(st.booleans()):
        v["fsType"] = draw(st.sampled_from(["ext4", "xfs", "vfat", "ext4\n"]) | names)
    if draw(st.booleans()):
        v["mkfsExtraArgs"] = draw(st.lists(names, max_size=2))
    if draw(st.booleans()):
        v["autoCreate"] = draw(st.booleans())
    return v


@st.composite
def share(draw: st.DrawFn) -> dict[str, Any]:
    s: dict[str, Any] = {"tag": draw(names), "source": draw(paths),
                         "mountPoint": draw(paths),
                         "proto": draw(st.sampled_from(["9p", "virtiofs"]))}
    if draw(st.booleans()):
        s["socket"] = draw(paths.map(lambda p: f"{p}.sock"))
    if draw(st.booleans()):
        s["readOnly"] = draw(st.booleans())
    if draw(st.booleans()):
        s["extraArgs"] = draw(st.lists(names, max_size=2))
    return s


@st.composite
def interface(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["user", "tap", "macvtap", "bridge"]))
    i: dict[str, Any] = {"type": kind, "id": draw(names), "mac": draw(macs())}
    if kind == "macvtap":
        i["macvtap"] = {"link": draw(names), "mode": draw(st.sampled_from(["bridge", "vepa"]))}
    if kind == "bridge":
        i["bridge"] = draw(names)
    if draw(st.booleans()):
        i["tap"] = {"vhost": draw(st.booleans())}
    return i


@st.composite
def forward(draw: st.DrawFn) -> dict[str, Any]:
    return {"from": draw(st.sampled_from(["host", "guest"])),
            "proto": draw(st.sampled_from(["tcp", "udp"])),
            "host": {"port": draw(st.integers(1, 65535) | numbers),
                     "address": draw(st.sampled_from(["", "127.0.0.1"]) | names)},
            "guest": {"port": draw(st.integers(1, 65535))}}


OPTIONAL: dict[str, Any] = {
    "vcpu": st.integers(1, 8) | numbers,
    "mem": st.integers(64, 4096) | numbers,
    "balloon": st.booleans(),
    "initialBalloonMem": st.integers(0, 128) | numbers,
    "hotplugMem": st.integers(0, 512) | numbers,
    "socket": st.none() | paths.map(lambda p: f"{p}.sock"),
    "user": st.none() | names,
    "cpu": st.none() | names,
    "kernelParams": st.lists(names, max_size=3),
    "preStart": hostile_text,
    "extraArgsScript": st.none() | paths,
    "machineId": st.none() | st.just("01234567-89ab-cdef-0123-456789abcdef") | names,
    "vsock": st.fixed_dictionaries({"cid": st.none() | st.integers(3, 100) | numbers}),
    "volumes": st.lists(volume(), max_size=2),
    "shares": st.lists(share(), max_size=2),
    "interfaces": st.lists(interface(), max_size=2),
    "forwardPorts": st.lists(forward(), max_size=2),
    "devices": st.lists(st.fixed_dictionaries({
        "bus": st.sampled_from(["pci", "usb"]),
        "path": st.sampled_from(["0000:01:00.0", "1-1"]) | names}), max_size=2),
    "credentialFiles": st.dictionaries(names, paths, max_size=2),
    "qemu": st.fixed_dictionaries({}, optional={
        "machine": st.none() | st.sampled_from(["microvm", "q35", "q35,x"]) | names,
        "extraArgs": st.lists(names, max_size=2)}),
    "virtiofsd": st.fixed_dictionaries({}, optional={
        "threadPoolSize": st.none() | st.integers(0, 8) | numbers}),
    "firecracker": st.fixed_dictionaries({}, optional={
        "extraConfig": st.dictionaries(names, json_values, max_size=2)}),
}


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A VM document for any hypervisor, on a platform it runs on (mostly)."""
    hv = draw(st.sampled_from(list(Hypervisor)))
    system = draw(st.sampled_from(sorted(CAPABILITIES[hv].platforms)) |
                  st.sampled_from(["x86_64-linux", "aarch64-linux"]))
    m: dict[str, Any] = {"hypervisor": str(hv), "kernel": draw(paths),
                         "storeOnDisk": draw(st.booleans())}
    if m["storeOnDisk"] or draw(st.booleans()):
        m["storeDisk"] = draw(paths)
    keys = draw(st.lists(st.sampled_from(sorted(OPTIONAL)), unique=True, max_size=8))
    for key in keys:
        m[key] = draw(OPTIONAL[key])
    return {"hostName": draw(names), "system": system, "microvm": m}


def _locations(value: Any, where: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [where]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _locations(v, (*where, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _locations(v, (*where, i))
    return out


@st.composite
def corrupted_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A document with one to three values (or keys) replaced by something hostile."""
    doc = draw(documents())
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(_locations(doc)[1:]))
        parent = doc
        for part in where[:-1]:
            parent = parent[part]
        new = draw(numbers | hostile_text | json_values | st.just(None))
        if isinstance(parent, dict) and draw(st.booleans()):
            parent[draw(hostile_text | names)] = parent.pop(where[-1])  # a hostile key
        else:
            parent[where[-1]] = new
    return doc


@st.composite
def document_texts(draw: st.DrawFn) -> str:
    """JSON text, sometimes broken: duplicate keys, NaN, deep nesting, huge numbers, cuts."""
    text = json.dumps(draw(documents() | corrupted_documents()))
    match draw(st.integers(0, 5)):
        case 0:
            return text
        case 1:  # a key given twice
            return text.replace('{"hostName": ', '{"hostName": "x", "hostName": ', 1)
        case 2:
            return text.replace('"microvm": {', '"microvm": {"mem": NaN, ', 1)
        case 3:
            depth = draw(st.integers(1, 3000))
            return text[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
        case 4:
            return text.replace('"microvm": {', '"microvm": {"vcpu": ' + "9" * 5000 + ", ", 1)
        case _:
            return text[:draw(st.integers(0, len(text)))]


@dataclass
class Tally:
    """What the examples did, for bench/fuzz.py's report."""

    valid: int = 0
    refused: int = 0
    problems: dict[str, int] = field(default_factory=dict)


def check(doc: Any, out: Path, tally: Tally | None = None) -> None:
    """The property: validated -> a complete tree is written; refused -> located, printable
    problems and nothing written. Any other exception propagates (the test fails)."""
    vm: MicroVM | None = None
    problems: list[Problem] = []
    try:
        if isinstance(doc, str):
            parsed, dups = parse(doc, "vm.json")
            vm = from_document(parsed, duplicate_keys=dups)
        else:
            vm = from_document(doc)
    except ValidationError as e:
        problems = e.problems
    if vm is None:
        assert problems
        for p in problems:
            line = f"error: {p}"
            assert line.isprintable(), repr(line)
            line.encode("utf-8")
            if tally is not None:
                key = p.path.split("[")[0].split(".")[-1] if p.path else "(document)"
                tally.problems[key] = tally.problems.get(key, 0) + 1
        if tally is not None:
            tally.refused += 1
        return
    try:
        runner.write(vm, out)
    except MicrovmError:
        assert not out.exists(), "a failed generate left output behind"
        raise
    try:
        files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        assert "bin/microvm-run" in files and "share/microvm/vm.json" in files, files
        for rel in files:
            (out / rel).read_text("utf-8")
        # what was generated describes the VM it was generated from
        again = from_document(json.loads((out / "share/microvm/vm.json").read_text("utf-8")))
        assert again == vm
    finally:
        shutil.rmtree(out)
    if tally is not None:
        tally.valid += 1
