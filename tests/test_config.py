"""The contract: schema, defaults, the typed model and its JSON round trip."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from microvm.capabilities import Hypervisor
from microvm.config import MicroVM
from microvm.document import from_document
from microvm.errors import ValidationError
from microvm.options import option_path, schema
from support.documents import FULL


def test_schema_is_valid_and_documented() -> None:
    sch = schema()
    jsonschema.Draft202012Validator.check_schema(sch)

    def walk(node: dict[str, Any], path: str) -> None:
        for key, sub in node.get("properties", {}).items():
            p = f"{path}.{key}" if path else key
            assert sub.get("description"), f"{p} has no description"
            assert "type" in sub or "const" in sub, f"{p} has no type"
            walk(sub, p)
            if isinstance(sub.get("items"), dict):
                walk(sub["items"], p + "[]")
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} allows unknown keys"

    walk(sch, "")


def test_schema_command_prints_the_shipped_schema() -> None:
    out = subprocess.run([sys.executable, "-m", "microvm.cli", "schema"], capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out) == schema()


def test_defaults_follow_the_established_interface() -> None:
    vm = from_document({"hostName": "d", "microvm": {"kernel": "/k", "storeDisk": "/s"}})
    assert vm.hypervisor is Hypervisor.QEMU
    assert (vm.vcpu, vm.mem, vm.balloon, vm.deflate_on_oom) == (1, 512, False, True)
    assert vm.socket == "d.sock"
    assert vm.store_on_disk and vm.store_disk_type == "erofs"
    assert vm.qemu.serial_console and vm.pretty_procnames


def test_computed_defaults() -> None:
    vm = from_document(FULL)
    assert vm.hotplugged_mem == 256
    assert not vm.store_on_disk  # /nix/store is shared
    assert vm.shares[0].socket == "full-virtiofs-ro-store.sock"
    assert vm.shares[1].socket is None
    no_hotplugged = json.loads(json.dumps(FULL))
    del no_hotplugged["microvm"]["hotpluggedMem"]
    assert from_document(no_hotplugged).hotplugged_mem == 512
    alioth = from_document({"hostName": "a", "microvm": {
        "kernel": "/k", "hypervisor": "alioth", "storeOnDisk": False}})
    assert alioth.socket is None  # alioth has no control socket
    nosock = from_document({"hostName": "n", "microvm": {
        "kernel": "/k", "socket": None, "storeOnDisk": False}})
    assert nosock.socket is None


def test_json_round_trip_is_exact() -> None:
    vm = from_document(FULL)
    doc = vm.to_json()
    assert from_document(doc) == vm
    assert MicroVM.from_json(doc) == vm
    assert from_document(doc).to_json() == doc
    # the completed document is itself valid against the schema
    jsonschema.Draft202012Validator(schema()).validate(doc)


@pytest.mark.parametrize(("parts", "text"), [
    (["microvm", "volumes", 1, "size"], "microvm.volumes[1].size"),
    (["hostName"], "networking.hostName"),
    (["microvm", "qemu", "machineOpts", "acpi"], "microvm.qemu.machineOpts.acpi"),
    ([], ""),
])
def test_option_paths(parts: list[str | int], text: str) -> None:
    assert option_path(parts) == text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
KEYS = ["hypervisor", "vcpu", "mem", "volumes", "shares", "interfaces", "forwardPorts",
        "vsock", "balloon", "initialBalloonMem", "hotplugMem", "devices", "qemu", "socket",
        "kernelParams", "storeOnDisk", "credentialFiles", "machineId"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5))
def test_fuzzed_documents_never_crash(extra: dict[str, Any]) -> None:
    """Any JSON at any option either validates or is refused with located problems."""
    doc = {"hostName": "f", "microvm": {"kernel": "/k", "storeOnDisk": False, **extra}}
    problems = []
    try:
        from_document(doc)
    except ValidationError as e:
        problems = e.problems
        assert problems
    for p in problems:
        assert p.path.startswith("microvm") or p.path == "", p


def test_the_model_restates_no_default() -> None:
    """The schema is the one declaration of every default: no field of the model (MicroVM and
    the classes of its items) that holds an option has a default of its own."""
    import dataclasses

    seen: set[type] = set()
    todo: list[type] = [MicroVM]
    restated = []
    while todo:
        cls = todo.pop()
        seen.add(cls)
        for f in dataclasses.fields(cls):
            if "json" not in f.metadata:
                continue
            if (f.default is not dataclasses.MISSING
                    or f.default_factory is not dataclasses.MISSING):
                restated.append(f"{cls.__name__}.{f.name}")
            if f.metadata["item"] is not None and f.metadata["item"] not in seen:
                todo.append(f.metadata["item"])
    assert len(seen) == 9
    assert restated == []
