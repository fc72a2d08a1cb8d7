"""docs/migrating.md's generated blocks (between the BEGIN/END markers): what a microvm.nix
configuration meets here, rendered from where each fact is declared, never restated by hand:

- the options the Nix module removed or accepts and ignores: the Nix module's own options
  (tools/gen_options.py's `nix_options`, from nix/modules/microvm/compat.nix);
- what each hypervisor refuses or ignores of the options microvm.nix's runners let through:
  the capability table (generator/microvm/capabilities.py: `features`, `ignored`);
- where `microvm.machineId` reaches the firmware: the capability table (Feature.MACHINE_ID);
- what microvm.nix's runners refuse and this project accepts: the reviewed differences
  (tests/support/upstream_diff.py, kept true by tests/test_upstream.py).

tests/test_migration_docs.py runs every row through the real generator and the Nix module (a
refused option is refused with its path, an ignored one warns, machineId reaches the argv of
the hypervisors named), so a behaviour that changes without its source changing fails there
naming the row; scripts/regen rewrites the page (tools/regen.py), tests/test_regen.py fails
while it is stale. Needs nix-instantiate and nixpkgs' lib (the Nix module's options).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for _d in ("generator", "tools", "tests"):
    if str(REPO / _d) not in sys.path:
        sys.path.insert(0, str(REPO / _d))

from gen_hypervisors import replace_block  # noqa: E402
from microvm.capabilities import CAPABILITIES, Feature, Hypervisor  # noqa: E402

CHECKS_BEGIN = "<!-- BEGIN CONFIGURATION CHECKS -->"
CHECKS_END = "<!-- END CONFIGURATION CHECKS -->"
NEW_BEGIN = "<!-- BEGIN ACCEPTED HERE -->"
NEW_END = "<!-- END ACCEPTED HERE -->"

# the description nix/modules/microvm/compat.nix gives the options it accepts and ignores
COMPAT_DESCRIPTION = "Accepted for compatibility"
# options a microvm.nix configuration may carry to a hypervisor that lacks them (what microvm.nix
# does with them there: docs/microvm-nix-differences.md, refuse-ignored-options)
PER_HYPERVISOR = (Feature.NET_USER, Feature.FORWARD_PORTS, Feature.VOLUME_SERIAL,
                  Feature.VOLUME_DIRECT)
# the differential's item for a configuration only this project accepts
UPSTREAM_REFUSES = r"accepts \(upstream refuses\)"


@dataclass(frozen=True)
class FeatureRow:
    """What happens to `feature`'s option on each hypervisor that lacks it."""

    feature: Feature
    refused: tuple[Hypervisor, ...]  # validation refuses it, naming the option
    ignored: tuple[Hypervisor, ...]  # accepted; validation warns, the runner leaves it out


def feature_rows() -> list[FeatureRow]:
    rows = []
    for f in PER_HYPERVISOR:
        lacking = [hv for hv in Hypervisor if not CAPABILITIES[hv].supports(f)]
        rows.append(FeatureRow(f, tuple(hv for hv in lacking if f not in CAPABILITIES[hv].ignored),
                               tuple(hv for hv in lacking if f in CAPABILITIES[hv].ignored)))
    return rows


def machine_id_firmware() -> tuple[Hypervisor, ...]:
    """The hypervisors that hand microvm.machineId to the guest's firmware."""
    return tuple(hv for hv in Hypervisor if CAPABILITIES[hv].supports(Feature.MACHINE_ID))


def nix_only_options() -> tuple[list[str], list[str]]:
    """(removed options, options accepted and ignored) of the Nix module."""
    import gen_options

    options = gen_options.nix_options()
    removed = sorted(p for p, node in options.items() if node.get("description") is None)
    compat = sorted(p for p, node in options.items()
                    if (node.get("description") or "").startswith(COMPAT_DESCRIPTION))
    return removed, compat


def accepted_here() -> list[str]:
    """The summaries of the reviewed differences where microvm.nix's runner refuses a
    configuration this project runs."""
    from support import upstream_diff

    return [e.summary for e in upstream_diff.TABLE if e.item == UPSTREAM_REFUSES]


def _names(hvs: Sequence[Hypervisor]) -> str:
    return ", ".join(str(hv) for hv in hvs)


def options_cell(paths: Sequence[str]) -> str:
    return ", ".join(f"`{p}`" for p in paths)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def checks_table() -> str:
    removed, compat = nix_only_options()
    lines = [_row(["you use", "here"]), _row(["---", "---"])]
    if removed:
        lines.append(_row([options_cell(removed),
                           "removed: evaluation fails and says what to use instead"]))
    if compat:
        lines.append(_row([options_cell(compat),
                           "accepted and ignored: evaluation warns when one is set "
                           + "([options.md](options.md#options-of-the-nix-module-only))"]))
    for r in feature_rows():
        said = []
        if r.refused:
            said.append(f"refused, naming the option, on {_names(r.refused)}")
        if r.ignored:
            said.append(f"accepted with a warning and ignored on {_names(r.ignored)}")
        if said:
            lines.append(_row([f"`microvm.{r.feature.option}`", "; ".join(said)]))
    firmware = machine_id_firmware()
    lines.append(_row([
        "`microvm.machineId`",
        "accepted on every hypervisor: the guest's `/etc/machine-id`"
        + (f", and the firmware's system UUID on {_names(firmware)}" if firmware else "")
        + "; unset, it is derived from the host name as microvm.nix derives it"]))
    # not derived: the unit sandbox's need (tests/test_unit_sandbox.py's table) and the argv
    # (checked by tests/test_migration_docs.py)
    lines.append(_row([
        '`type = "bridge"` with qemu',
        "needs a unit drop-in for `qemu-bridge-helper` ([host.md](host.md#sandboxing)); a "
        + "networkd rule that enslaves plain taps needs none "
        + "([networking.md](networking.md#tap-with-a-host-bridge-and-nat))"]))
    return "\n".join(lines) + "\n"


def accepted_block() -> str:
    return ("- **Accepted here, refused by microvm.nix's runners** "
            + "([microvm-nix-differences.md](microvm-nix-differences.md)): "
            + "; ".join(accepted_here()) + ".\n")


def render_page(text: str) -> str:
    """`text` with its generated blocks replaced by the current ones."""
    text = replace_block(text, CHECKS_BEGIN, CHECKS_END, checks_table())
    return replace_block(text, NEW_BEGIN, NEW_END, accepted_block())
