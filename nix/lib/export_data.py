"""Write the data the Nix side reads, as Nix expressions (`import` is cheaper than `fromJSON`:
Nix 2.8 allocates about ten times a JSON text's size to parse it, a third of a small host's
evaluation; bench/nix_eval.py):

  nix/lib/capabilities.nix  generator/microvm/capabilities.py and the backends' limits
  nix/lib/vm-schema.nix     generator/microvm/schema/vm.schema.json as a Nix value, with the
                            SHA-256 of the file it was made from: nix/lib/data.nix uses it only
                            while that hash matches and parses the JSON otherwise, so an edited
                            schema takes effect at once (more slowly) until this is run again

Run from a checkout: `python3 nix/lib/export_data.py` (writes both; `--check` exits 1 when a
file is stale). tests/test_nix.py fails when a committed file differs from this output.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "generator"))

from microvm.capabilities import CAPABILITIES, STORE_DISK_SERIAL, Feature, Hypervisor
from microvm.hypervisors import crosvm, firecracker, kvmtool, stratovirt, vfkit

REPO = Path(__file__).resolve().parents[2]
HERE = REPO / "nix" / "lib"
SCHEMA = REPO / "generator" / "microvm" / "schema" / "vm.schema.json"


def export() -> dict[str, Any]:
    return {
        "hypervisors": [str(hv) for hv in Hypervisor],
        "features": {f.name: str(f) for f in Feature},
        # the serial the store disk gets where the hypervisor sets serials (VOLUME_SERIAL)
        "storeDiskSerial": STORE_DISK_SERIAL,
        # the backends' own limits (their problems(); nix/lib/checks.nix applies the same)
        "limits": {
            "crosvm": {"sharedDirUnsafe": crosvm.SHARED_DIR_UNSAFE},
            "firecracker": {"maxVcpus": firecracker.MAX_VCPUS,
                            "hotplugSlotMiB": firecracker.HOTPLUG_SLOT_MIB},
            "kvmtool": {"maxDisks": kvmtool.MAX_DISKS, "ui": sorted(kvmtool._UI)},
            "stratovirt": {"memMinMiB": stratovirt.MEM_MIN_MIB,
                           "memMaxMiB": stratovirt.MEM_MAX_MIB,
                           "maxDevices": stratovirt.MAX_DEVICES, "unsafe": stratovirt._UNSAFE},
            "vfkit": {"deviceUnsafe": vfkit.DEVICE_UNSAFE, "bootUnsafe": vfkit.BOOT_UNSAFE},
        },
        "capabilities": {
            str(hv): {
                "features": sorted(f.name for f in caps.features),
                "imageTypes": sorted(caps.image_types),
                "platforms": sorted(caps.platforms),
                "shutdown": caps.shutdown,
                # features that work on some platforms only: feature -> those platforms
                "featurePlatforms": {
                    f.name: sorted(systems)
                    for f, systems in getattr(caps, "feature_platforms", {}).items()
                },
                # accepted but without effect: feature -> what happens instead (a warning)
                "ignored": {f.name: text for f, text in caps.ignored.items()},
                # the guest's console device by architecture (x86_64, aarch64)
                "console": dict(caps.consoles),
                # virtiofs shares need an external virtiofsd (false: built into the hypervisor)
                "virtiofsd": getattr(caps, "virtiofsd", True),
                # taps are opened with one queue pair per vCPU
                "multiqueueTap": caps.multiqueue_tap,
            }
            for hv, caps in CAPABILITIES.items()
        },
    }


def nix_string(text: str) -> str:
    """A Nix string literal of `text`: backslash, quote and dollar escaped, so nothing
    interpolates."""
    if "\0" in text:
        raise ValueError("Nix strings cannot hold NUL")
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
               .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


NIX_KEYWORDS = {"if", "then", "else", "assert", "with", "let", "in", "rec", "inherit", "or"}


def nix_name(name: str) -> str:
    """An attribute name: bare where Nix allows it, else a string literal."""
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_'-]*", name) and name not in NIX_KEYWORDS
    return name if plain else nix_string(name)


def nix_value(value: Any) -> str:
    """A Nix expression that evaluates to what `builtins.fromJSON` makes of json.dumps(value).
    Compact (an attribute a line, no indentation): Nix parses these files on every
    evaluation, and their bytes are its time."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"({value})" if value < 0 else str(value)
    if isinstance(value, str):
        return nix_string(value)
    if isinstance(value, list):
        return "[" + " ".join(nix_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + "".join(f"\n{nix_name(k)}={nix_value(v)};" for k, v in value.items()) + "}"
    raise TypeError(f"no Nix value for {type(value).__name__} {value!r}")


def _file(source: str, value: Any) -> str:
    return (f"# Generated by nix/lib/export_data.py from {source}; do not edit.\n"
            + nix_value(value) + "\n")


def render_capabilities() -> str:
    return _file("generator/microvm/capabilities.py", export())


def render_schema(schema_bytes: bytes | None = None) -> str:
    data = SCHEMA.read_bytes() if schema_bytes is None else schema_bytes
    return _file("generator/microvm/schema/vm.schema.json", {
        "sha256": hashlib.sha256(data).hexdigest(),
        "schema": json.loads(data),
    })


def outputs() -> dict[Path, str]:
    return {HERE / "capabilities.nix": render_capabilities(),
            HERE / "vm-schema.nix": render_schema()}


def main(argv: list[str]) -> int:
    stale = [p for p, text in outputs().items()
             if not p.exists() or p.read_text("utf-8") != text]
    if argv[1:] == ["--check"]:
        for p in stale:
            print(f"{p.relative_to(REPO)} is stale: python3 nix/lib/export_data.py",
                  file=sys.stderr)
        return 1 if stale else 0
    if argv[1:]:
        print("usage: export_data.py [--check]", file=sys.stderr)
        return 2
    for p, text in outputs().items():
        p.write_text(text, "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
