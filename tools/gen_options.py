"""Render docs/options.md, the option reference, from the declarations of the options.

The VM document's options are declared once, in generator/microvm/schema/vm.schema.json (the
Nix module's options are checked equal to it by tests/test_nix.py); which hypervisors take an
option comes from the capability table (generator/microvm/capabilities.py); the options only
the Nix module has (package choices, compatibility options, read-only results) come from
evaluating the module (tests/nix/dump-options.nix, needs `nix-instantiate` and <nixpkgs/lib>).
A development tool: scripts/regen rewrites the page (tools/regen.py), tests/test_regen.py fails
when it is stale.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "generator"))

from microvm.capabilities import CAPABILITIES, Feature, Hypervisor  # noqa: E402

SCHEMA_PATH = REPO / "generator" / "microvm" / "schema" / "vm.schema.json"
DUMP = REPO / "tests" / "nix" / "dump-options.nix"
HYPERVISORS = [str(hv) for hv in Hypervisor]


# Example values where the type alone says too little (keys: the path without `microvm.`).
EXAMPLES: dict[str, Any] = {
    "cpu": "max",
    "cloud-hypervisor.extraArgs": ["--cpus", "max=4"],
    "cloud-hypervisor.platformOEMStrings": ["io.systemd.credential:greeting=hello"],
    "credentialFiles": {"token": "/run/secrets/token"},
    "crosvm.pivotRoot": "/var/empty",
    "devices.*.path": "0000:01:00.0",
    "devices.*.qemu.bus": "pcie.0",
    "graphics.hostmem": "8G",
    "devices.*.qemu.deviceExtraArgs": "x-igd-opregion=on",
    "devices.*.qemu.id": "gpu0",
    "extraArgsScript": "/etc/microvm/extra-args",
    "forwardPorts.*.guest.port": 80,
    "forwardPorts.*.host.port": 8080,
    "hotplugMem": 1024,
    "hotpluggedMem": 512,
    "initialBalloonMem": 128,
    "forwardPorts.*.guest.address": "10.0.2.15",
    "forwardPorts.*.host.address": "127.0.0.1",
    "initrdPath": "/nix/store/…-initrd/initrd",
    "interfaces.*.bridge": "br0",
    "interfaces.*.id": "vm-web",
    "interfaces.*.mac": "02:00:00:00:00:01",
    "interfaces.*.network": "lan",
    "interfaces.*.addressing": "dhcp",
    "interfaces.*.ipv4": "10.231.0.5",
    "interfaces.*.ipv6": "fd00:0:0:1::5",
    "interfaces.*.macvtap.link": "eth0",
    "kernel": "/nix/store/…-linux/bzImage",
    "kernelParams": ["console=ttyS0"],
    "machineId": "a67472e5-570e-5c8a-b18c-ae3c77701050",
    "preStart": "mkdir -p data",
    "qemu.machine": "q35",
    "qemu.machineOpts": {"accel": "kvm"},
    "qemu.pcieRootPorts": [{"id": "pci_hotplug_1", "chassis": 1}],
    "qemu.pcieRootPorts.*.id": "pci_hotplug_1",
    "qemu.pcieRootPorts.*.bus": "pcie.0",
    "qemu.pcieRootPorts.*.slot": "1",
    "qemu.pcieRootPorts.*.addr": "1c.0",
    "shares.*.extraArgs": ["--sandbox=chroot"],
    "shares.*.mountPoint": "/srv/data",
    "shares.*.socket": "data.sock",
    "shares.*.source": "/srv/data",
    "shares.*.tag": "data",
    "socket": "web.sock",
    "storeDisk": "/nix/store/…-store.erofs",
    "user": "microvm",
    "virtiofsd.group": "kvm",
    "volumes.*.fsType": "xfs",
    "volumes.*.image": "var.img",
    "volumes.*.label": "var",
    "volumes.*.mkfsExtraArgs": ["-m", "0"],
    "volumes.*.mountPoint": "/var",
    "volumes.*.serial": "var",
    "vsock.cid": 3,
    "writableStoreOverlay": "/nix/.rw-store",
}
# The smallest element of each list, that an example of one of its fields is added to.
ELEMENTS: dict[str, dict[str, Any]] = {
    "volumes": {"image": "var.img", "mountPoint": "/var", "size": 1024},
    "shares": {"tag": "data", "source": "/srv/data", "mountPoint": "/srv/data"},
    "interfaces": {"type": "tap", "id": "vm-web", "mac": "02:00:00:00:00:01"},
    "forwardPorts": {"host": {"port": 2222}, "guest": {"port": 22}},
    "devices": {"bus": "pci", "path": "0000:01:00.0"},
    "qemu.pcieRootPorts": {"id": "pci_hotplug_1", "chassis": 1},
}

# Fields that only mean something in a particular kind of element.
ELEMENT_VARIANTS: dict[str, dict[str, Any]] = {
    "interfaces.*.macvtap": {"type": "macvtap", "id": "vm-web", "mac": "02:00:00:00:00:01",
                             "macvtap": {"link": "eth0", "mode": "bridge"}},
    "interfaces.*.bridge": {"type": "bridge", "id": "vm-web", "mac": "02:00:00:00:00:01"},
    "interfaces.*.network": {"type": "network"},
    "interfaces.*.addressing": {"type": "network", "network": "lan"},
    "interfaces.*.ipv4": {"type": "network", "network": "lan"},
    "interfaces.*.ipv6": {"type": "network", "network": "lan"},
    "volumes.*.imageType": {"image": "data.qcow2", "mountPoint": "/srv", "autoCreate": False},
}
# Options an example needs set as well (keys: a path prefix without `microvm.`).
COMPANIONS: dict[str, dict[str, Any]] = {
    "hotpluggedMem": {"hotplugMem": 1024},
    "initialBalloonMem": {"balloon": True},
    "forwardPorts": {"interfaces": [{"type": "user", "id": "qemu", "mac": "02:00:00:00:00:01"}]},
}


def element_for(rel: str) -> dict[str, Any]:
    """A fresh copy of the element an example of the field `rel` is shown in."""
    head = rel.split(".*.", 1)[0]
    base = next((v for k, v in ELEMENT_VARIANTS.items() if rel.startswith(k)), ELEMENTS[head])
    copy: dict[str, Any] = json.loads(json.dumps(base))
    return copy


@dataclass(frozen=True)
class Option:
    path: str            # as written in Nix, lists as `*`: microvm.volumes.*.image
    type: str
    default: str         # Nix syntax, or "" when there is none
    description: str
    hypervisors: str
    example: str         # one line of Nix
    example_value: Any   # the value it gives to `microvm.<first path component>`


def nix_value(value: Any) -> str:
    """A JSON value in Nix syntax."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("${", "\\${")
    if isinstance(value, list):
        return "[ " + " ".join(nix_value(v) for v in value) + " ]" if value else "[ ]"
    if isinstance(value, dict):
        if not value:
            return "{ }"
        return "{ " + " ".join(f"{_attr(k)} = {nix_value(v)};" for k, v in value.items()) + " }"
    raise TypeError(f"no Nix syntax for {value!r}")


def _attr(name: str) -> str:
    return name if name.replace("-", "").replace("_", "").isalnum() else json.dumps(name)


def _types(node: dict[str, Any]) -> list[str]:
    t = node.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def code(text: str) -> str:
    """Markdown inline code that may itself hold backticks."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def type_text(node: dict[str, Any]) -> str:
    """A short type description of a schema node."""
    if "const" in node:
        return code(nix_value(node['const']))
    nullable = "null" in _types(node)
    if "enum" in node:
        text = "one of " + ", ".join(code(nix_value(v)) for v in node["enum"] if v is not None)
    else:
        kinds = [t for t in _types(node) if t != "null"]
        parts = []
        for k in kinds:
            if k == "array":
                parts.append("list of " + type_text(node.get("items", {})))
            elif k == "object" and "additionalProperties" in node \
                    and isinstance(node["additionalProperties"], dict):
                parts.append("attribute set of " + type_text(node["additionalProperties"]))
            elif k == "object":
                parts.append("attribute set" if "properties" not in node else "submodule")
            else:
                # each JSON type with the keywords that apply to it
                bounds = []
                if k in ("integer", "number"):
                    bounds += [f"≥ {node['minimum']}"] if "minimum" in node else []
                    bounds += [f"≤ {node['maximum']}"] if "maximum" in node else []
                if k == "string" and node.get("minLength") == 1:
                    bounds.append("non-empty")
                if k == "string" and "pattern" in node:
                    bounds.append(f"matching {code(node['pattern'])}")
                parts.append(k + (" (" + ", ".join(bounds) + ")" if bounds else ""))
        text = " or ".join(parts) or "anything"
    return text + (" or `null`" if nullable else "")


def example_value(node: dict[str, Any], path: str = "") -> Any:
    """A value the option accepts, different from its default where that is easy."""
    if path in EXAMPLES:
        return EXAMPLES[path]
    default = node.get("default")
    if "const" in node:
        return node["const"]
    if "enum" in node:
        choices = [v for v in node["enum"] if v is not None and v != default]
        return choices[0] if choices else node["enum"][0]
    kinds = [t for t in _types(node) if t != "null"]
    kind = kinds[0] if kinds else "string"
    if kind == "boolean":
        return not default if isinstance(default, bool) else True
    if kind in ("integer", "number"):
        low = node.get("minimum", 0)
        if isinstance(default, int) and default > 0:
            return default * 2
        return max(low, 1)
    if kind == "array":
        item = node.get("items", {})
        list_name = path.rsplit(".", 1)[-1]
        if list_name in ELEMENTS:
            return [ELEMENTS[list_name]]
        return [example_value(item)]
    if kind == "object":
        if "properties" in node:
            return {k: example_value(v, f"{path}.{k}") for k, v in node["properties"].items()
                    if k in node.get("required", [])}
        add = node.get("additionalProperties")
        return {"name": example_value(add)} if isinstance(add, dict) else {}
    return "…"


def support(path: str) -> str:
    """Which hypervisors take an option, from the capability table."""
    rel = path.removeprefix("microvm.")
    head = rel.split(".", 1)[0]
    if head in HYPERVISORS:
        return head
    rows = []
    for feature in Feature:
        option = feature.option
        if option.startswith("("):
            continue
        name, _, rest = option.partition(" ")
        if name != rel:
            continue
        hvs = [hv for hv in Hypervisor if CAPABILITIES[hv].supports(feature)]
        what = rest.removeprefix("= ").strip() or "set"
        rows.append(f"{what}: " + (", ".join(hvs) if len(hvs) < len(HYPERVISORS) else "all"))
    return "; ".join(rows) if rows else "all"


def walk_schema(node: dict[str, Any], path: str) -> Iterator[Option]:
    for name, sub in node.get("properties", {}).items():
        sub_path = f"{path}.{name}" if path else name
        items = sub.get("items", {})
        if "properties" in sub and _types(sub) == ["object"]:
            yield from walk_schema(sub, sub_path)
            continue
        rel = sub_path.removeprefix("microvm.")
        value = example_value(sub, rel)
        head, star, field = rel.partition(".*.")
        if star:
            # a field of a list element: shown in a whole element of that list
            element = element_for(rel)
            _set(element, field.split("."), value)
            top, line = head, f"microvm.{head} = [ {nix_value(element)} ];"
            value = [element]
            # a list inside a group (qemu.pcieRootPorts): the group holds it
            for part in reversed(head.split(".")[1:]):
                value = {part: value}
            top = head.split(".")[0]
        elif sub_path.startswith("microvm."):
            top, line = rel, f"{sub_path} = {nix_value(value)};"
            for part in reversed(rel.split(".")[1:]):
                value = {part: value}
            top = rel.split(".")[0]
        else:
            top, line = "", f"{sub_path} = {nix_value(value)};"
        settings = {top: value} if top else {}
        for prefix, extra in COMPANIONS.items():
            if rel == prefix or rel.startswith(prefix + "."):
                line = " ".join(f"microvm.{k} = {nix_value(v)};" for k, v in extra.items()) \
                    + " " + line
                settings = {**extra, **settings}
        yield Option(
            path=sub_path,
            type=type_text(sub),
            default=nix_value(sub["default"]) if "default" in sub else "",
            description=sub.get("description", ""),
            hypervisors=support(sub_path),
            example=line,
            example_value=settings,
        )
        if "properties" in items:
            yield from walk_schema(items, f"{sub_path}.*")


def _set(tree: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
    tree[parts[-1]] = value


def schema_options() -> list[Option]:
    schema = json.loads(SCHEMA_PATH.read_text())
    return list(walk_schema(schema, ""))


def nix_options() -> dict[str, dict[str, Any]]:
    """Every microvm.* option of the Nix module, flattened, from tests/nix/dump-options.nix."""
    env = dict(os.environ)
    if "nixpkgs=" not in env.get("NIX_PATH", "") and Path("/opt/nixpkgs-lib").is_dir():
        env["NIX_PATH"] = "nixpkgs=/opt/nixpkgs-lib"
    out = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", str(DUMP)],
                         capture_output=True, text=True, env=env, check=True).stdout
    flat: dict[str, dict[str, Any]] = {}

    def go(tree: dict[str, Any], path: str) -> None:
        for name, node in tree.items():
            p = f"{path}.{name}"
            if "group" in node:
                go(node["group"], p)
                continue
            flat[p] = node
            items = node["type"].get("items", {})
            if "properties" in items:
                go(items["properties"], f"{p}.*")
            if "properties" in node["type"]:
                go(node["type"]["properties"], p)
    go(json.loads(out), "microvm")
    return flat


def nix_type(view: dict[str, Any]) -> str:
    kinds = view.get("types", [])
    names = [k.removeprefix("nix:") for k in kinds if k != "null"]
    text = " or ".join(names) or "anything"
    if "array" in kinds and "items" in view:
        text = "list of " + nix_type(view["items"])
    return text + (" or `null`" if "null" in kinds else "")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render() -> str:
    options = schema_options()
    lines = [
        "# Option reference",
        "",
        "<!-- generated by tools/gen_options.py from generator/microvm/schema/vm.schema.json,",
        "     generator/microvm/capabilities.py and nix/modules/microvm; do not edit -->",
        "",
        "Every `microvm.*` option a VM document carries, with its type, default, the",
        "hypervisors that take it (from the capability table: `microvm validate` refuses it",
        "elsewhere, naming the option) and an example. `*` stands for one element of a list:",
        "`microvm.volumes.*.size` is `size` in an element of `microvm.volumes`. Regenerate with",
        "`scripts/regen`; `tests/test_regen.py` fails when this page is stale.",
        "See [hypervisors.md](hypervisors.md) for the capability table itself.",
        "",
    ]
    groups: dict[str, list[Option]] = {}
    for o in options:
        if not o.path.startswith("microvm."):
            groups.setdefault("document", []).append(o)
            continue
        head = o.path.split(".")[1]
        key = head if head in HYPERVISORS or "." in o.path.removeprefix(f"microvm.{head}") \
            else "general"
        groups.setdefault(key, []).append(o)
    order = ["general"] + sorted(k for k in groups if k not in ("general", "document")
                                 and k not in HYPERVISORS) + \
        [h for h in HYPERVISORS if h in groups] + ["document"]
    header = ["| option | type | default | hypervisors | description | example |",
              "| --- | --- | --- | --- | --- | --- |"]
    for key in order:
        title = {"general": "General", "document": "Computed by the NixOS module"}.get(
            key, f"`microvm.{key}`")
        lines += [f"## {title}", ""]
        if key == "document":
            lines += ["Top-level fields of the VM document. The guest module fills them in;",
                      "write them yourself only for a document used without Nix.", ""]
        lines += header
        for o in groups[key]:
            lines.append("| " + " | ".join([
                f"`{o.path}`", _cell(o.type), code(_cell(o.default)) if o.default else "—",
                _cell(o.hypervisors), _cell(o.description), code(_cell(o.example))]) + " |")
        lines.append("")

    documented = {o.path for o in options}
    extra = {p: n for p, n in nix_options().items() if p not in documented}
    lines += [
        "## Options of the Nix module only",
        "",
        "These are not part of the VM document: they choose packages, build the runner, or",
        "exist so that microvm.nix configurations keep evaluating (those say so and warn).",
        "",
        "| option | type | default | description |",
        "| --- | --- | --- | --- |",
    ]
    for path, node in sorted(extra.items()):
        if node["computed"]:
            default = "computed"
        elif isinstance(node.get("default"), str) and node["default"].startswith("/nix/store/"):
            default = "a package"
        elif "default" in node:
            default = code(_cell(nix_value(node['default'])))
        else:
            default = "—"
        lines.append("| " + " | ".join([f"`{path}`", _cell(nix_type(node["type"])), default,
                                        _cell(node.get("description") or "removed")]) + " |")
    lines.append("")
    return "\n".join(lines)
