"""The options of a VM document as the JSON Schema declares them (generator/microvm/schema/
vm.schema.json): the schema itself, option paths as a user writes them, the schema's defaults."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

JSON = Any

# Python refuses to convert longer digit strings (sys.get_int_max_str_digits); no option needs
# more than 20 digits
MAX_NUMBER_DIGITS = 4300

# Top-level keys whose Nix option lives outside `microvm.*`.
_TOP_LEVEL_OPTION = {
    "hostName": "networking.hostName",
    "system": "nixpkgs.hostPlatform.system",
    "toplevel": "system.build.toplevel",
}



@cache
def _schema_text() -> str:
    return resources.files("microvm").joinpath("schema/vm.schema.json").read_text("utf-8")


def schema() -> dict[str, JSON]:
    """The JSON Schema of a VM document (draft 2020-12)."""
    result: dict[str, JSON] = json.loads(_schema_text())
    return result


def option_path(parts: Sequence[str | int]) -> str:
    """["microvm", "volumes", 1, "size"] -> "microvm.volumes[1].size"."""
    out = ""
    for i, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i == 0:
            out = _TOP_LEVEL_OPTION.get(part, part)
        else:
            out += f".{part}"
    return out


def apply_defaults(instance: JSON, sch: Mapping[str, JSON]) -> JSON:
    """A copy of a schema-valid instance with every schema default filled in, recursively."""
    if isinstance(instance, dict) and "properties" in sch:
        out = dict(instance)
        for key, sub in sch["properties"].items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = apply_defaults(out[key], sub)
        return out
    if isinstance(instance, list) and isinstance(sch.get("items"), dict):
        return [apply_defaults(x, sch["items"]) for x in instance]
    return instance
