"""docs/migrating.md's table of what a microvm.nix configuration meets here is true: every row
tools/gen_migrating.py renders is run through the real generator (`from_document`, the
validator's warnings, the backends' argv) or the Nix module. The rows are rendered from the
sources of the facts (the capability table, the Nix module's options); these tests check that
the behaviour is what those sources say, so a behaviour that changes while its source does not
fails here naming the row. docs/microvm-nix-differences.md's texts are checked against both
command lines by tests/test_upstream.py; that microvm.nix derives the same default machineId is
checked by tests/test_upstream_corpus.py (option values compared).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import pytest
from microvm.capabilities import Feature, Hypervisor
from microvm.config import derived_machine_id
from microvm.document import from_document
from microvm.errors import ValidationError
from microvm.hypervisors import RunContext, backend
from microvm.validate import warnings
from support import REPO
from support.backend_cases import document
from support.nixeval import nix_eval, nix_problem

sys.path.insert(0, str(REPO / "tools"))

import gen_migrating

PAGE = REPO / "docs" / "migrating.md"
UUID = "a67472e5-570e-5c8a-b18c-ae3c77701050"
USER_NIC = {"type": "user", "id": "u", "mac": "02:00:00:00:00:01"}
# per feature of gen_migrating.PER_HYPERVISOR: the options that ask for it, and the path of the
# option a refusal or a warning names
FEATURE_CASES: dict[Feature, tuple[dict[str, Any], str]] = {
    Feature.NET_USER: ({"interfaces": [USER_NIC]}, "microvm.interfaces[0].type"),
    Feature.FORWARD_PORTS: ({"interfaces": [USER_NIC],
                             "forwardPorts": [{"host": {"port": 2222}, "guest": {"port": 22}}]},
                            "microvm.forwardPorts[0]"),
    Feature.VOLUME_SERIAL: ({"volumes": [{"image": "v.img", "size": 8, "mountPoint": "/v",
                                          "serial": "v0"}]}, "microvm.volumes[0].serial"),
    Feature.VOLUME_DIRECT: ({"volumes": [{"image": "v.img", "size": 8, "mountPoint": "/v",
                                          "direct": True}]}, "microvm.volumes[0].direct"),
}
# rows rendered from neither list above, each checked by a test below
OTHER_ROWS = {"`microvm.machineId`": "test_machine_id_row",
              '`type = "bridge"` with qemu': "test_bridge_row"}


def outcome(hv: Hypervisor, microvm: dict[str, Any], path: str) -> str:
    """"refused", "ignored" (accepted with a warning at `path`) or "accepted"."""
    try:
        vm = from_document(document(hv, **microvm))
    except ValidationError as e:
        return "refused" if any(p.path == path for p in e.problems) else f"refused: {e}"
    return "ignored" if any(w.path == path for w in warnings(vm)) else "accepted"


@pytest.mark.parametrize("row", gen_migrating.feature_rows(), ids=lambda r: r.feature.name)
def test_feature_row(row: gen_migrating.FeatureRow) -> None:
    assert row.feature in FEATURE_CASES, (
        f"tests/test_migration_docs.py: FEATURE_CASES needs a document for {row.feature.name}, "
        + "a row of docs/migrating.md")
    microvm, path = FEATURE_CASES[row.feature]
    said = {hv: "refused" for hv in row.refused} | {hv: "ignored" for hv in row.ignored}
    wrong = []
    for hv in Hypervisor:
        want = said.get(hv, "accepted")
        got = outcome(hv, microvm, path)
        if got != want:
            wrong.append(f"{hv}: {got}, the row says {want}")
    assert not wrong, (f"docs/migrating.md, row `microvm.{row.feature.option}` "
                       + "(tools/gen_migrating.py, from the capability table): "
                       + "; ".join(wrong))


def launched_text(hv: Hypervisor, microvm: dict[str, Any]) -> str:
    """Everything the backend hands the hypervisor: its argv and the files it writes."""
    vm = from_document(document(hv, **microvm))
    launch = backend(hv).launch(vm, RunContext(runner_dir="/runner"))
    words = [w for argv in launch.variants.values() for w in argv]
    return "\n".join(words + list(launch.files.values()))


def test_machine_id_row() -> None:
    """Accepted on every hypervisor; in the argv (or config file) exactly of those the row
    names, set or derived from the host name."""
    firmware = set(gen_migrating.machine_id_firmware())
    derived = derived_machine_id(document(Hypervisor.QEMU)["hostName"])
    wrong = []
    for hv in Hypervisor:
        for microvm, uuid in (({"machineId": UUID}, UUID), ({}, derived)):
            try:
                passed = uuid in launched_text(hv, microvm)
            except ValidationError as e:
                wrong.append(f"{hv}: refused ({e})")
                continue
            if passed != (hv in firmware):
                wrong.append(f"{hv}: {'passes' if passed else 'does not pass'} {uuid}")
    assert not wrong, ("docs/migrating.md, row `microvm.machineId` (tools/gen_migrating.py, "
                       + "Feature.MACHINE_ID of the capability table): " + "; ".join(wrong))


def test_bridge_row() -> None:
    """QEMU makes a bridge interface's tap with qemu-bridge-helper (the setuid program the
    unit's sandbox must allow: docs/host.md, tests/test_unit_sandbox.py)."""
    text = launched_text(Hypervisor.QEMU, {"interfaces": [
        {"type": "bridge", "id": "vm-b", "mac": "02:00:00:00:00:09", "bridge": "br0"}]})
    assert re.search(r"^bridge,.*helper=\S*qemu-bridge-helper", text, re.M), (
        'docs/migrating.md, row `type = "bridge"` with qemu: QEMU no longer runs '
        + "qemu-bridge-helper:\n" + text)


def table_rows() -> list[str]:
    """The first cell of each row of the page's generated table."""
    block = PAGE.read_text().split(gen_migrating.CHECKS_BEGIN, 1)[1]
    block = block.split(gen_migrating.CHECKS_END, 1)[0]
    lines = [line for line in block.splitlines() if line.startswith("| ")][2:]  # no header
    return [line.split(" | ")[0].removeprefix("| ") for line in lines]


def need_nix() -> None:
    if why := nix_problem():
        pytest.skip(why)


def guest(module: str, attr: str, check: bool = True) -> Any:
    r = nix_eval("{ python, repo }: (import ./eval.nix { configuration = { module = "
                 + module + "; }; inherit python repo; })." + attr, check=check)
    return r if not check else json.loads(r.stdout)


def nix_value(option: dict[str, Any]) -> str:
    """A value other than the default for a Nix-only option, by its type."""
    types = option["type"]["types"]
    return "true" if "boolean" in types else '[ "x" ]' if "array" in types else '"/x"'


@pytest.mark.nix
def test_every_row_is_checked() -> None:
    """Each row of the table (the page as generated) is one these tests check."""
    need_nix()
    removed, compat = gen_migrating.nix_only_options()
    checked = {gen_migrating.options_cell(removed), gen_migrating.options_cell(compat), *OTHER_ROWS}
    checked |= {f"`microvm.{f.option}`" for f in FEATURE_CASES}
    unchecked = [row for row in table_rows() if row not in checked]
    assert not unchecked, ("rows of docs/migrating.md's generated table no test in "
                           + f"tests/test_migration_docs.py checks: {unchecked}")


@pytest.mark.nix
def test_removed_options_fail_evaluation() -> None:
    need_nix()
    import gen_options

    options = gen_options.nix_options()
    removed, _ = gen_migrating.nix_only_options()
    assert removed, "no removed option: drop the row's test"
    for path in removed:
        r = guest(f"{{ {path} = {nix_value(options[path])}; }}", "json", check=False)
        assert r.returncode != 0 and path.removeprefix("microvm.") in r.stderr, (
            f"docs/migrating.md, row `{path}`: evaluation does not fail naming it:\n"
            + r.stderr[-2000:])


@pytest.mark.nix
def test_ignored_options_warn() -> None:
    need_nix()
    import gen_options

    options = gen_options.nix_options()
    _, compat = gen_migrating.nix_only_options()
    assert compat
    module = "{ " + " ".join(f"{p} = {nix_value(options[p])};" for p in compat) + " }"
    said = guest(module, "config.warnings")
    silent = [p for p in compat if not any(w.startswith(f"{p} ") and "ignored" in w
                                           for w in said)]
    assert not silent, (f"docs/migrating.md, row {gen_migrating.options_cell(compat)}: "
                        + f"setting these gives no warning: {silent} (warnings: {said})")


@pytest.mark.nix
def test_machine_id_reaches_etc_on_any_hypervisor() -> None:
    """The guest's /etc/machine-id, set or derived from the host name, whatever the
    hypervisor (the row's first half)."""
    need_nix()
    for hv, set_id in (("firecracker", UUID), ("vfkit", None)):
        machine_id = f'microvm.machineId = "{set_id}";' if set_id else ""
        etc = guest(f'{{ networking.hostName = "m"; microvm.hypervisor = "{hv}"; {machine_id} }}',
                    'config.environment.etc."machine-id".text')
        want = (set_id or derived_machine_id("m")).replace("-", "") + "\n"
        assert etc == want, f"docs/migrating.md, row `microvm.machineId`: {hv}: {etc!r}"
