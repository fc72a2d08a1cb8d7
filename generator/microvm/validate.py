"""Checks of a VM document: JSON Schema first, then rules the schema cannot express.

Each problem names the option path a user writes (`microvm.shares[0].tag`), says what is wrong,
and where it helps, what would work instead.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jsonschema

from . import netplan
from .capabilities import CAPABILITIES, Feature, Hypervisor, supporting
from .config import Interface, InterfaceType, MicroVM, ShareProto
from .errors import Problem
from .hypervisors import backend
from .options import JSON, MAX_NUMBER_DIGITS, option_path, schema

IFNAMSIZ = 16
VIRTIOFS_TAG_MAX = 36
VSOCK_CID_MIN = 3
VSOCK_CID_MAX = 0xFFFFFFFE

# used with fullmatch, like Nix's builtins.match: "$" would accept a trailing newline
_PCI = re.compile(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# a multicast MAC (the schema's x-match checks the form)
_MAC_MULTICAST = re.compile(r"[0-9a-fA-F][13579bdfBDF](:[0-9a-fA-F]{2}){5}")
_SURROGATE = re.compile("[\ud800-\udfff]")
# lists and objects inside each other; the deepest option is 4 levels down
MAX_DEPTH = 32
# an int below 2**_MAX_INT_BITS has at most MAX_NUMBER_DIGITS digits: Python can print it
_MAX_INT_BITS = int(MAX_NUMBER_DIGITS * math.log2(10))
_TYPE_NAMES = {
    "string": "a string", "integer": "an integer", "boolean": "a boolean (true or false)",
    "object": "an object", "array": "a list", "null": "null", "number": "a number",
}


def _json_type(value: Any) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "boolean"
        case int():
            return "integer"
        case float():
            return "number"
        case str():
            return "string"
        case list():
            return "list"
        case _:
            return "object"


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else _json_type(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        huge = isinstance(value, int) and value.bit_length() > _MAX_INT_BITS
        text = f"a number of more than {MAX_NUMBER_DIGITS} digits" if huge else str(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(err: jsonschema.ValidationError) -> list[Problem]:
    path = list(err.absolute_path)
    # the stubs allow "unset" values; a reported error always has them set
    v: Any = err.validator_value
    inst: Any = err.instance
    sch: Any = err.schema
    match err.validator:
        case "additionalProperties":
            allowed = sorted(sch.get("properties", {}))
            extras = [k for k in inst if k not in allowed]
            notes = []
            for key in extras:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                notes.append(Problem(option_path([*path, key]), f"unknown option{hint}"))
            return notes
        case "required":
            missing = [k for k in v if k not in inst]
            return [Problem(option_path([*path, missing[0]]), "must be set (it has no default)")]
        case "type":
            types = [v] if isinstance(v, str) else v
            want = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
            return [Problem(option_path(path), f"must be {want}, got {_show(inst)}")]
        case "enum":
            choices = ", ".join("null" if c is None else repr(c) for c in v)
            close = difflib.get_close_matches(str(inst), [str(c) for c in v if c], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            msg = f"must be one of {choices}; got {_show(inst)}{hint}"
            return [Problem(option_path(path), msg)]
        case "const":
            return [Problem(option_path(path), f"must be {v!r}, got {_show(inst)}")]
        case "minimum":
            return [Problem(option_path(path), f"must be at least {v}, got {_show(inst)}")]
        case "maximum":
            return [Problem(option_path(path), f"must be at most {v}, got {_show(inst)}")]
        case "minLength":
            return [Problem(option_path(path), "must not be empty")]
        case "pattern":
            return [Problem(option_path(path), f"must match {v}, got {_show(inst)}")]
        case _:
            return [Problem(option_path(path), err.message)]


def _is_integer(_checker: Any, instance: Any) -> bool:
    # JSON Schema counts 1024.0 as an integer; an option that is an integer takes only ints
    return isinstance(instance, int) and not isinstance(instance, bool)


def _pattern(validator: Any, pattern: str, instance: Any, _schema: Any) -> Any:
    # the schema's patterns are anchored with ^...$; "$" also matches before a final newline
    if validator.is_type(instance, "string") and not re.search(
            pattern.removesuffix("$") + r"\Z", instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator: Any = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
    validators={"pattern": _pattern})


def document_problems(doc: Any, duplicate_keys: Mapping[int, Sequence[str]]
                      ) -> tuple[list[Problem], bool]:
    """What no option may hold, wherever it is: keys given twice, NUL bytes (bash drops them),
    lone surrogates (not writable as UTF-8), NaN and infinities (not JSON), deep nesting,
    integers too long to print. True with them when the schema validator cannot be run on
    the document (it recurses, and prints the values it refuses)."""
    found: list[Problem] = []
    blocking = False

    def text(where: list[str | int], s: str) -> None:
        if "\x00" in s:
            found.append(Problem(option_path(where), "must not contain NUL bytes"))
        if _SURROGATE.search(s):
            found.append(Problem(option_path(where),
                                 "must be valid Unicode (it has a lone surrogate \\ud800-\\udfff)"))

    stack: list[tuple[Any, list[str | int]]] = [(doc, [])]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict | list) and len(where) >= MAX_DEPTH:
            blocking = True
            found.append(Problem(option_path(where),
                                 f"lists and objects are nested more than {MAX_DEPTH} deep"))
        elif isinstance(value, dict):
            for key in duplicate_keys.get(id(value), ()):
                found.append(Problem(option_path([*where, key]),
                                     "given more than once (duplicate key in a JSON object)"))
            for key, item in value.items():
                if isinstance(key, str):
                    text([*where, key], key)
                stack.append((item, [*where, key]))
        elif isinstance(value, list):
            stack.extend((item, [*where, i]) for i, item in enumerate(value))
        elif isinstance(value, str):
            text(where, value)
        elif isinstance(value, float) and not math.isfinite(value):
            found.append(Problem(option_path(where), f"must be a finite number, got {value}"))
        elif isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
            # Python cannot even print it (sys.get_int_max_str_digits)
            blocking = True
            found.append(Problem(option_path(where),
                                 f"must be a number of at most {MAX_NUMBER_DIGITS} digits"))
    return found, blocking


def schema_problems(doc: Any, sch: Mapping[str, Any],
                    duplicate_keys: Mapping[int, Sequence[str]] | None = None) -> list[Problem]:
    """Problems the JSON Schema finds, sorted by path, one per line."""
    if not isinstance(doc, dict):
        return [Problem("", f"a VM document must be a JSON object, got {_json_type(doc)}")]
    problems, blocking = document_problems(doc, duplicate_keys or {})
    found = set(problems)
    if not blocking:
        validator = _Validator(sch)
        found |= {p for e in validator.iter_errors(doc) for p in _describe(e)}
    return sorted(found, key=lambda p: (p.path, p.message))


# -- semantic checks -----------------------------------------------------------------------

class _Checker:
    def __init__(self, vm: MicroVM) -> None:
        self.vm = vm
        self.caps = CAPABILITIES[vm.hypervisor]
        self.problems: list[Problem] = []
        # accepted options the hypervisor ignores (capabilities' `ignored`)
        self.warnings: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def need(self, feature: Feature, path: str, what: str | None = None) -> bool:
        """Report `path` when the chosen hypervisor lacks `feature`; True when accepted (also
        when the hypervisor ignores it: then a warning is recorded)."""
        if self.caps.supports(feature, self.vm.system):
            return True
        if feature in self.caps.ignored:
            self.warnings.append(Problem(path, f"{what or feature} not supported by " +
                                         f"{self.vm.hypervisor}, ignored: " +
                                         self.caps.ignored[feature]))
            return True
        where = ""
        if self.caps.supports(feature):
            only = ", ".join(sorted(self.caps.feature_platforms[feature]))
            where = f" on {self.vm.system} (only on {only})"
        others = [str(h) for h in supporting(feature) if h is not self.vm.hypervisor]
        alt = f"; hypervisors that support it: {', '.join(others)}" if others else ""
        self.add(path, f"{what or feature} not supported by {self.vm.hypervisor}{where}{alt}")
        return False

    def unique(self, items: Iterable[tuple[str, str]], what: str) -> None:
        """items: (path, value); report every later duplicate with the first one's path."""
        seen: dict[str, str] = {}
        for path, value in items:
            if value in seen:
                self.add(path, f"duplicate {what} {value!r} (also used by {seen[value]})")
            else:
                seen[value] = path


# -- the per-field rules the schema declares (x- keywords) ----------------------------------

def _is_set(value: JSON) -> bool:
    return value is not None and value is not False and value not in (0, "", [], {})


def _field_rules(c: _Checker, sch: Mapping[str, JSON], value: JSON, path: str) -> bool:
    """The x- keywords of one option's schema on its value; False when the option needs a
    feature the hypervisor lacks (then nothing below it is checked)."""
    if (req := sch.get("x-requires")) is not None and _is_set(value):
        feature, what = (req, None) if isinstance(req, str) else (req["feature"], req["what"])
        if not c.need(Feature[feature], path, what):
            return False
    if isinstance(value, str):
        if sch.get("x-noControl") and _CONTROL.search(value):
            c.add(path, "must not contain control characters (newline, tab...)")
        if sch.get("x-absolute") and not value.startswith("/"):
            c.add(path, f"must be an absolute guest path, got {value!r}")
        if (most := sch.get("x-maxBytes")) is not None and len(value.encode()) > most:
            c.add(path, f"must be at most {most} bytes, got {len(value.encode())}")
        if (match := sch.get("x-match")) is not None and not re.fullmatch(match["regex"], value):
            c.add(path, f"must be {match['what']}, got {value!r}")
    return True


def _walk(c: _Checker, sch: Mapping[str, JSON], value: JSON, where: list[str | int]) -> None:
    if value is None or not _field_rules(c, sch, value, option_path(where)):
        return
    if isinstance(value, dict):
        extra = sch.get("additionalProperties")
        for key, item in value.items():
            sub = sch.get("properties", {}).get(key, extra)
            if isinstance(sub, dict):
                _walk(c, sub, item, [*where, key])
    elif isinstance(value, list) and isinstance(items := sch.get("items"), dict):
        for i, item in enumerate(value):
            _walk(c, items, item, [*where, i])
        for key, sub in items.get("properties", {}).items():
            if "x-unique" in sub:
                c.unique(((option_path([*where, i, key]), x[key]) for i, x in enumerate(value)
                          if x.get(key) is not None), sub["x-unique"])


def resolved(vm: MicroVM) -> dict[str, JSON]:
    """The document with the defaults that depend on other options resolved (the control
    socket, storeOnDisk): what the Nix modules serialise, and what the field rules read."""
    doc = vm.to_json()
    doc["microvm"].update(socket=vm.socket, storeOnDisk=vm.store_on_disk)
    return doc


def _check_fields(c: _Checker) -> None:
    start = len(c.problems)
    _walk(c, schema(), resolved(c.vm), [])
    if _hostname_problem(c.vm.host_name) is not None:
        # a default made from a bad host name (the control socket, a virtiofs socket) is the
        # host name's problem, reported once, by its own name: not an option the user set
        made = _made_from_host_name(c.vm)
        c.problems[start:] = [p for p in c.problems[start:] if p.path not in made]


def _made_from_host_name(vm: MicroVM) -> set[str]:
    """The option paths whose value is the default computed from networking.hostName."""
    made = {"microvm.socket"} if vm.socket == f"{vm.host_name}.sock" else set()
    return made | {f"microvm.shares[{i}].socket" for i, s in enumerate(vm.shares)
                   if s.socket == f"{vm.host_name}-virtiofs-{s.tag}.sock"}


def _hostname_problem(name: str) -> str | None:
    if _CONTROL.search(name):
        return "must not contain control characters (newline, tab, NUL...)"
    if "/" in name or name in (".", ".."):
        return "must not contain '/' or be '.' or '..' (it names files and sockets)"
    if len(name.encode()) > 253:
        return "must be at most 253 bytes"
    return None


def _ifname_problem(name: str) -> str | None:
    if len(name.encode()) >= IFNAMSIZ:
        return f"interface names are at most {IFNAMSIZ - 1} bytes (IFNAMSIZ), got {name!r}"
    if name in (".", "..") or any(c in name for c in "/:") or any(c.isspace() for c in name):
        return f"not a valid interface name: {name!r} (no '/', ':' or whitespace)"
    if _CONTROL.search(name):
        return "must not contain control characters"
    return None


def _check_machine(c: _Checker) -> None:
    vm = c.vm
    caps = c.caps
    if vm.system not in caps.platforms:
        c.add("microvm.hypervisor",
              f"{vm.hypervisor} does not run on {vm.system} " +
              f"(it runs on {', '.join(sorted(caps.platforms))})")
    if (p := _hostname_problem(vm.host_name)) is not None:
        c.add("networking.hostName", p)
    if vm.store_on_disk and not vm.store_disk:
        c.add("microvm.storeDisk",
              "must be set when microvm.storeOnDisk is true (Nix builds it; or share /nix/store)")
    for name, _ in vm.credential_files:
        if not name or "/" in name or _CONTROL.search(name):
            c.add(f"microvm.credentialFiles.{name}", "not a valid credential name")
    if vm.qemu.machine_opts is not None:
        for key, _ in vm.qemu.machine_opts:
            if "," in key or "=" in key:
                c.add(f"microvm.qemu.machineOpts.{key}", "a property name has no ',' or '='")


def _check_memory(c: _Checker) -> None:
    vm = c.vm
    if vm.initial_balloon_mem and not vm.balloon:
        c.add("microvm.initialBalloonMem", "needs microvm.balloon = true")
    if vm.balloon and c.need(Feature.BALLOON, "microvm.balloon") and vm.initial_balloon_mem:
        c.need(Feature.INITIAL_BALLOON, "microvm.initialBalloonMem")
    if vm.initial_balloon_mem >= vm.mem + vm.hotplugged_mem and vm.initial_balloon_mem:
        c.add("microvm.initialBalloonMem",
              f"must be less than the guest's memory ({vm.mem + vm.hotplugged_mem} MiB), " +
              f"got {vm.initial_balloon_mem}")
    if vm.hotplugged_mem > vm.hotplug_mem:
        c.add("microvm.hotpluggedMem",
              f"must be at most microvm.hotplugMem ({vm.hotplug_mem}), got {vm.hotplugged_mem}")
    if vm.hotplug_mem and (c.need(Feature.HOTPLUG_MEM, "microvm.hotplugMem")
            and vm.hypervisor is Hypervisor.QEMU and vm.qemu.machine == "microvm"):
        c.add("microvm.hotplugMem",
              "virtio-mem needs PCI; the QEMU microvm machine has none " +
              "(leave microvm.qemu.machine unset, or use q35)")
    if vm.hotplug_mem and vm.hotplugged_mem and c.caps.supports(Feature.HOTPLUG_MEM):
        c.need(Feature.HOTPLUGGED_MEM, "microvm.hotpluggedMem")


def _check_volumes(c: _Checker) -> None:
    vm = c.vm
    for i, v in enumerate(vm.volumes):
        p = f"microvm.volumes[{i}]"
        if v.auto_create and v.size is None:
            c.add(f"{p}.size", "must be set when autoCreate is true (size in MiB)")
        if v.image_type not in c.caps.image_types:
            known = ", ".join(sorted(c.caps.image_types))
            c.add(f"{p}.imageType",
                  f"{vm.hypervisor} reads only {known} images, got {v.image_type!r}")


def _check_shares(c: _Checker) -> None:
    vm = c.vm
    for i, s in enumerate(vm.shares):
        p = f"microvm.shares[{i}]"
        if s.proto is ShareProto.NINEP:
            if c.need(Feature.SHARE_9P, f"{p}.proto") and s.read_only:
                c.need(Feature.SHARE_9P_READONLY, f"{p}.readOnly")
        else:
            if c.need(Feature.SHARE_VIRTIOFS, f"{p}.proto") and s.read_only:
                c.need(Feature.SHARE_VIRTIOFS_READONLY, f"{p}.readOnly")
            if len(s.tag.encode()) > VIRTIOFS_TAG_MAX:
                c.add(f"{p}.tag", f"virtiofs tags are at most {VIRTIOFS_TAG_MAX} bytes, " +
                      f"got {len(s.tag.encode())}")
        if _CONTROL.search(s.tag) or any(ch in s.tag for ch in ",/") or s.tag in (".", ".."):
            c.add(f"{p}.tag", f"must not contain ',', '/' or control characters, got {s.tag!r}")
    mounts = [(f"microvm.shares[{i}].mountPoint", s.mount_point.rstrip("/") or "/")
              for i, s in enumerate(vm.shares)]
    mounts += [(f"microvm.volumes[{i}].mountPoint", v.mount_point.rstrip("/") or "/")
               for i, v in enumerate(vm.volumes) if v.mount_point is not None]
    c.unique(mounts, "mount point")


_FEATURE_OF_INTERFACE = {
    InterfaceType.USER: Feature.NET_USER, InterfaceType.TAP: Feature.NET_TAP,
    InterfaceType.MACVTAP: Feature.NET_MACVTAP, InterfaceType.BRIDGE: Feature.NET_BRIDGE,
    InterfaceType.NETWORK: Feature.NET_TAP,  # a tap the runner makes and joins to the bridge
}


def _check_interface(c: _Checker, p: str, iface: Interface) -> None:
    """One of microvm.interfaces, at option path `p`."""
    c.need(_FEATURE_OF_INTERFACE[iface.type], f"{p}.type")
    if iface.type is InterfaceType.NETWORK:
        if iface.network is None:
            c.add(f"{p}.network", "must be set for a network interface (the name of a network " +
                  "the host declares)")
            return
        if iface.id.startswith(netplan.SYSTEMD_PREFIXES):
            c.add(f"{p}.id", f"{iface.id!r} starts with a prefix systemd's own network files " +
                  f"claim ({', '.join(netplan.SYSTEMD_PREFIXES)}): networkd would configure it")
        for family, value, version in (("ipv4", iface.ipv4, 4), ("ipv6", iface.ipv6, 6)):
            try:
                ok = value is None or ipaddress.ip_address(value).version == version
            except ValueError:
                ok = False
            if not ok:
                c.add(f"{p}.{family}", f"must be an IPv{version} address, got {value!r}")
    else:
        for key in ("network", "ipv4", "ipv6"):
            if getattr(iface, key) is not None:
                c.add(f"{p}.{key}", f'applies to type = "network" only, got type = "{iface.type}"')
        if iface.addressing != "auto":
            c.add(f"{p}.addressing",
                  f'applies to type = "network" only, got type = "{iface.type}"')
    missing = [key for key in ("id", "mac") if getattr(iface, key) is None]
    for key in missing:
        c.add(f"{p}.{key}", f"must be set for a {iface.type} interface (only type = " +
              '"network" derives it)')
    if missing:
        return
    if _MAC_MULTICAST.fullmatch(iface.mac):
        c.add(f"{p}.mac", f"must be a unicast address (first octet even), got {iface.mac!r}")
    if iface.type is not InterfaceType.USER and (e := _ifname_problem(iface.id)):
        c.add(f"{p}.id", e)
    if iface.type is InterfaceType.USER and _CONTROL.search(iface.id):
        c.add(f"{p}.id", "must not contain control characters")
    if iface.type is InterfaceType.MACVTAP:
        _host_interface(c, f"{p}.macvtap.link", iface.macvtap_link, "macvtap")
        if not iface.macvtap_mode:
            c.add(f"{p}.macvtap.mode", "must be set for a macvtap interface")
    if iface.type is InterfaceType.BRIDGE:
        _host_interface(c, f"{p}.bridge", iface.bridge, "bridge")
    if iface.vhost:
        if iface.type is InterfaceType.USER:
            c.add(f"{p}.tap.vhost", "vhost-net applies to tap, bridge, network and macvtap " +
                  "only")
        else:
            c.need(Feature.VHOST_NET, f"{p}.tap.vhost")


def _host_interface(c: _Checker, path: str, name: str | None, kind: str) -> None:
    """The host interface a macvtap or bridge interface needs: set, and a valid name."""
    if not name:
        c.add(path, f"must be set for a {kind} interface")
    elif (e := _ifname_problem(name)):
        c.add(path, e)


def _check_interfaces(c: _Checker) -> None:
    vm = c.vm
    for i, iface in enumerate(vm.interfaces):
        _check_interface(c, f"microvm.interfaces[{i}]", iface)
    c.unique(((f"microvm.interfaces[{i}].mac", x.mac.lower())
              for i, x in enumerate(vm.interfaces) if x.mac is not None), "MAC")
    if len(vm.interfaces_of(InterfaceType.USER)) > 1 and vm.hypervisor is Hypervisor.KVMTOOL:
        c.add("microvm.interfaces", "kvmtool has one user-mode network per VM")


def _check_forward_ports(c: _Checker) -> None:
    vm = c.vm
    users = vm.interfaces_of(InterfaceType.USER)
    # without a user interface, forwards go to passt's user-mode network of the first network
    # interface, where the VM runs without its tap (rootless; hypervisors with `passt`)
    passt = not users and bool(vm.interfaces_of(InterfaceType.NETWORK)) and \
        CAPABILITIES[vm.hypervisor].passt
    for i, f in enumerate(vm.forward_ports):
        p = f"microvm.forwardPorts[{i}]"
        if not users and not passt:
            c.add(p, "port forwarding needs an interface with type = \"user\" (or, on " +
                  "hypervisors with passt, type = \"network\", for when it runs rootless)")
        elif passt and f.direction != "host":
            c.add(f"{p}.from", "passt forwards ports from the host only (from = \"host\"); " +
                  "a guest-side forward needs an interface with type = \"user\"")
        c.need(Feature.FORWARD_PORTS, p)
        for side, addr in (("host", f.host_address), ("guest", f.guest_address)):
            if addr:
                try:
                    ipaddress.IPv4Address(addr)
                except ValueError:
                    c.add(f"{p}.{side}.address", f"must be an IPv4 address or empty, got {addr!r}")
        # the option's type (as microvm.nix's types.port) takes 0; QEMU 7.2 refuses a rule
        # with guest port 0 ("Bad guest port", "Invalid guest forwarding rule") at start
        if f.guest_port == 0:
            c.add(f"{p}.guest.port", "must be between 1 and 65535: QEMU refuses a forwarding " +
                  "rule with guest port 0 (microvm.nix passes it on and QEMU fails to start)")
    # host port 0 asks the kernel for a free port, a different one for each rule
    c.unique(((f"microvm.forwardPorts[{i}].host.port", f"{f.proto}/{f.host_port}")
              for i, f in enumerate(vm.forward_ports)
              if f.direction == "host" and f.host_port != 0), "host port")


def _check_vsock(c: _Checker) -> None:
    cid = c.vm.vsock_cid
    if cid is not None and c.need(Feature.VSOCK, "microvm.vsock.cid") and not (
            VSOCK_CID_MIN <= cid <= VSOCK_CID_MAX):
        c.add("microvm.vsock.cid", f"must be between {VSOCK_CID_MIN} and {VSOCK_CID_MAX} " +
              f"(0-2 are reserved), got {cid}")


def _check_devices(c: _Checker) -> None:
    vm = c.vm
    for i, d in enumerate(vm.devices):
        p = f"microvm.devices[{i}]"
        if d.bus == "pci":
            c.need(Feature.PCI_PASSTHROUGH, f"{p}.bus")
            if not _PCI.fullmatch(d.path):
                c.add(f"{p}.path", f"must be a PCI address like 0000:01:00.0, got {d.path!r}")
        else:
            c.need(Feature.USB_PASSTHROUGH, f"{p}.bus")
            if _CONTROL.search(d.path):
                c.add(f"{p}.path", "must not contain control characters")
    c.unique(((f"microvm.devices[{i}].path", f"{d.bus}:{d.path}")
              for i, d in enumerate(vm.devices)), "device")


CHECKS: tuple[Callable[[_Checker], None], ...] = (
    _check_fields, _check_machine, _check_memory, _check_volumes, _check_shares, _check_interfaces,
    _check_forward_ports, _check_vsock, _check_devices,
)


def warnings(vm: MicroVM) -> list[Problem]:
    """Options accepted although the hypervisor ignores them, with what happens instead, by
    option path."""
    c = _Checker(vm)
    for check in CHECKS:
        check(c)
    return sorted(c.warnings, key=lambda p: (p.path, p.message))


def semantic_problems(vm: MicroVM) -> list[Problem]:
    """Rules beyond the schema, in document order within each area."""
    c = _Checker(vm)
    for check in CHECKS:
        check(c)
    return c.problems + backend(vm.hypervisor).problems(vm)
