"""Generated Firecracker configs and Cloud Hypervisor VM configs validate against the vendored
upstream API specifications (vendored in tests/specs: firecracker.yaml is Swagger
2.0, cloud-hypervisor.yaml is OpenAPI 3.0.1).

The specs are converted to JSON Schema 2020-12 here: `#/definitions/X` and
`#/components/schemas/X` become `#/$defs/X`, siblings of `$ref` are dropped (both formats ignore
them), OpenAPI `nullable` becomes a "null" type, `example`/`readOnly` are dropped, and every
object with `properties` is closed (`additionalProperties: false`), so a misspelt key fails here
instead of being rejected (Firecracker: serde `deny_unknown_fields`) or silently ignored (Cloud
Hypervisor) at run time. YAML is read with YAML 1.2 booleans so that `enum: [..., Off]` stays a
string.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest

if TYPE_CHECKING:
    import yaml
else:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the API specifications")

# byte-exact copies of the hypervisors' API descriptions (tests/specs/README.md: origin,
# commit, licence), so a clean clone checks against them without anything beside it
SPECS = Path(__file__).resolve().parent / "specs"
GOLDEN = Path(__file__).resolve().parent / "golden"

pytestmark = pytest.mark.skipif(
    not (SPECS / "firecracker.yaml").exists() or not (SPECS / "cloud-hypervisor.yaml").exists(),
    reason=f"API specifications not found in {SPECS}")

# Fields cloud-hypervisor accepts that the vendored OpenAPI file does not list yet:
# vmm/src/vm_config.rs `DiskConfig.image_type` (serde names of block/src/lib.rs `ImageType`).
CH_EXTRA_PROPERTIES = {
    "DiskConfig": {"image_type": {"type": "string",
                                  "enum": ["FlatVmdk", "FixedVhd", "Qcow2", "Raw", "Vhdx",
                                           "Unknown"]}},
}


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core booleans only (no yes/no/on/off)."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    _Yaml12Loader.yaml_implicit_resolvers.setdefault(_first, []).append(
        ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")))


def _read(name: str) -> dict[str, Any]:
    with (SPECS / name).open(encoding="utf-8") as f:
        result: dict[str, Any] = yaml.load(f, Loader=_Yaml12Loader)
    return result


def convert(node: Any, ref_prefix: str, openapi3: bool) -> Any:
    """One Swagger/OpenAPI schema object -> JSON Schema 2020-12 (see the module docstring)."""
    if isinstance(node, list):
        return [convert(x, ref_prefix, openapi3) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith(ref_prefix), ref
        return {"$ref": "#/$defs/" + ref[len(ref_prefix):]}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("example", "readOnly", "nullable", "xml", "discriminator"):
            continue
        if key == "properties":
            out[key] = {name: convert(sub, ref_prefix, openapi3) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "allOf", "anyOf", "oneOf", "not"):
            out[key] = convert(value, ref_prefix, openapi3)
        else:
            out[key] = copy.deepcopy(value)
    if openapi3 and node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


@cache
def firecracker_defs() -> dict[str, Any]:
    spec = _read("firecracker.yaml")
    assert spec["swagger"] == "2.0"
    return {name: convert(d, "#/definitions/", openapi3=False)
            for name, d in spec["definitions"].items()}


@cache
def cloud_hypervisor_defs() -> dict[str, Any]:
    spec = _read("cloud-hypervisor.yaml")
    assert spec["openapi"].startswith("3.0")
    defs = {name: convert(d, "#/components/schemas/", openapi3=True)
            for name, d in spec["components"]["schemas"].items()}
    for name, extra in CH_EXTRA_PROPERTIES.items():
        assert not set(extra) & set(defs[name]["properties"]), "spec caught up: drop the extra"
        defs[name]["properties"].update(extra)
    return defs


def validator(defs: dict[str, Any], name: str,
              override: dict[str, Any] | None = None) -> jsonschema.Validator:
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": defs,
            **copy.deepcopy(defs[name])}
    for key, sub in (override or {}).items():
        root["properties"][key] = sub
    jsonschema.Draft202012Validator.check_schema(root)
    return jsonschema.Draft202012Validator(root)


def errors(v: jsonschema.Validator, instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in v.iter_errors(instance)]


def goldens(hv: str) -> list[Path]:
    found = sorted((GOLDEN / hv).glob("*.json"))
    assert found, f"no golden files for {hv}"
    return found


def fill(payload: str) -> Any:
    """A balloon payload with its placeholders replaced, as the balloon script does."""
    for name, value in (("BALLOON_MIB", 100), ("BALLOON_BYTES", 100 << 20),
                        ("GUEST_MIB", 412), ("GUEST_BYTES", 412 << 20)):
        payload = payload.replace(f"@{name}@", str(value))
    return json.loads(payload)


# -- the converters -------------------------------------------------------------------------

def test_yaml_12_keeps_off_a_string() -> None:
    level = firecracker_defs()["Logger"]["properties"]["level"]
    assert "Off" in level["enum"]
    assert False not in level["enum"]


def test_conversion_is_strict_and_resolves_references() -> None:
    v = validator(firecracker_defs(), "Drive")
    good = {"drive_id": "d", "is_root_device": False, "path_on_host": "/x", "is_read_only": True,
            "rate_limiter": {"bandwidth": {"size": 1, "refill_time": 1}}}
    assert errors(v, good) == []
    assert errors(v, {**good, "is_readonly": True}) != []
    assert errors(v, {**good, "rate_limiter": {"bandwidth": {"size": "x"}}}) != []
    assert errors(v, {**good, "io_engine": "Fast"}) != []


def test_openapi_nullable_becomes_a_null_type() -> None:
    node = {"type": "object", "properties": {"a": {"type": "string", "nullable": True}}}
    schema = convert(node, "#/components/schemas/", openapi3=True)
    assert schema["properties"]["a"] == {"type": ["string", "null"]}
    assert schema["additionalProperties"] is False


# -- Firecracker ----------------------------------------------------------------------------

# config file section -> definition (tests/specs/README.md, plus the other FullVmConfiguration
# sections the generator writes)
SECTIONS = {"boot-source": "BootSource", "machine-config": "MachineConfiguration",
            "vsock": "Vsock", "balloon": "Balloon", "logger": "Logger",
            "entropy": "EntropyDevice", "memory-hotplug": "MemoryHotplugConfig"}
LISTS = {"drives": "Drive", "network-interfaces": "NetworkInterface"}


@pytest.mark.parametrize("path", goldens("firecracker") if SPECS.exists() else [],
                         ids=lambda p: p.stem)
def test_firecracker_config_matches_the_swagger_definitions(path: Path) -> None:
    record = json.loads(path.read_text("utf-8"))
    config = record["files"]["firecracker.json"]
    defs = firecracker_defs()
    assert set(config) <= {*SECTIONS, *LISTS, "cpu-config"}, "a section without a definition"
    for section, name in SECTIONS.items():
        if section in config:
            assert errors(validator(defs, name), config[section]) == [], section
    for section, name in LISTS.items():
        for i, item in enumerate(config[section]):
            assert errors(validator(defs, name), item) == [], f"{section}[{i}]"
    # the whole file as FullVmConfiguration; `cpu-config` is given as a path to the template
    # (resources.rs CustomCpuTemplateOrPath), the template itself is checked below
    full = validator(defs, "FullVmConfiguration", {"cpu-config": {"type": "string"}})
    assert errors(full, config) == []
    if "cpu-config" in config:
        assert config["cpu-config"].endswith("/cpu-config.json")
        assert errors(validator(defs, "CpuConfig"), record["files"]["cpu-config.json"]) == []
    if record["shutdown"] is not None:
        body = json.loads(record["shutdown"]["payload"])
        assert errors(validator(defs, "InstanceActionInfo"), body) == []
        assert (record["shutdown"]["method"], record["shutdown"]["path"]) == ("PUT", "/actions")
    if record["balloon"] is not None:
        body = fill(record["balloon"]["payload"])
        assert errors(validator(defs, "BalloonUpdate"), body) == []
        assert (record["balloon"]["method"], record["balloon"]["path"]) == ("PATCH", "/balloon")


def test_firecracker_spec_routes_exist() -> None:
    paths = _read("firecracker.yaml")["paths"]
    assert "put" in paths["/actions"]
    assert "patch" in paths["/balloon"]


# -- Cloud Hypervisor -----------------------------------------------------------------------

@pytest.mark.parametrize("path", goldens("cloud-hypervisor") if SPECS.exists() else [],
                         ids=lambda p: p.stem)
def test_cloud_hypervisor_vm_config_matches_openapi(path: Path) -> None:
    record = json.loads(path.read_text("utf-8"))
    defs = cloud_hypervisor_defs()
    assert errors(validator(defs, "VmConfig"), record["vm_config"]) == []
    if record["balloon"] is not None:
        assert errors(validator(defs, "VmResize"), fill(record["balloon"]["payload"])) == []


def test_cloud_hypervisor_spec_routes_exist() -> None:
    paths = _read("cloud-hypervisor.yaml")["paths"]
    assert "put" in paths["/vm.power-button"]
    assert "put" in paths["/vm.resize"]
    assert "put" in paths["/vm.create"]
    assert _read("cloud-hypervisor.yaml")["servers"][0]["url"].endswith("/api/v1")
