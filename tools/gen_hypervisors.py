"""docs/hypervisors.md's generated blocks (between the BEGIN/END markers), rendered from the
capability table (generator/microvm/capabilities.py, the one source of what is supported).
A development tool, not part of the installed package: scripts/regen rewrites the page
(tools/regen.py), tests/test_regen.py fails when it is stale.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "generator") not in sys.path:
    sys.path.insert(0, str(REPO / "generator"))

from microvm.capabilities import CAPABILITIES, Capabilities, Feature, Hypervisor  # noqa: E402

TABLE_BEGIN = "<!-- BEGIN FEATURE TABLE -->"
TABLE_END = "<!-- END FEATURE TABLE -->"
NOTES_BEGIN = "<!-- BEGIN HYPERVISOR NOTES -->"
NOTES_END = "<!-- END HYPERVISOR NOTES -->"

YES = "yes"
NO = "—"
IGNORED = "ignored"
# rows no option asks for on its own: "—" there is what the runner cannot do, not a refusal
NOT_ASKED = {Feature.GRACEFUL_SHUTDOWN: "`bin/microvm-shutdown` cannot ask the guest to "
             + "power off (the VM is stopped by a signal)",
             Feature.MACHINE_ID: "`machineId` is still the guest's `/etc/machine-id`, only "
             + "not the firmware's system UUID"}


def _arches(platforms: frozenset[str]) -> str:
    return ", ".join(sorted(p.split("-", 1)[0] for p in platforms))


def _cell(caps: Capabilities, feature: Feature) -> str:
    if not caps.supports(feature):
        return IGNORED if feature in caps.ignored else NO
    only = caps.feature_platforms.get(feature)
    if only is not None and only != caps.platforms:
        return f"{_arches(only)} only"
    return YES


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def feature_table() -> str:
    """Markdown: one row per feature, one column per hypervisor, then platforms and images."""
    hvs = list(Hypervisor)
    legend = [
        f'"{YES}" means the generated runner does it; "x86_64 only" means on that platform '
        + f'only; "{IGNORED}" means `microvm validate` accepts the option with a warning and '
        + f'the runner ignores it (the notes below say what happens instead); "{NO}" means '
        + "`microvm validate` refuses the option for that hypervisor, naming it, except in "
        + "these rows, which no option asks for on its own: "
        + "; ".join(f"{f.value}, where {NO} means {why}" for f, why in NOT_ASKED.items())
        + ".", ""]
    lines = [*legend, _row(["Feature", "Option (`microvm.`…)", *(f"`{hv}`" for hv in hvs)]),
             _row(["---"] * (len(hvs) + 2))]
    for feature in Feature:
        cells = [_cell(CAPABILITIES[hv], feature) for hv in hvs]
        lines.append(_row([feature.value, f"`{feature.option}`", *cells]))
    lines.append(_row(["platforms", "`system`",
                       *(", ".join(sorted(CAPABILITIES[hv].platforms)) for hv in hvs)]))
    lines.append(_row(["image types", "`volumes.*.imageType`",
                       *(", ".join(sorted(CAPABILITIES[hv].image_types)) for hv in hvs)]))
    lines.append(_row(["multiqueue taps", "(`vcpu` > 1)",
                       *(YES if CAPABILITIES[hv].multiqueue_tap else NO for hv in hvs)]))
    lines.append(_row(["rootless network (passt)", "`interfaces.*.type = \"network\"`",
                       *(YES if CAPABILITIES[hv].passt else NO for hv in hvs)]))
    return "\n".join(lines) + "\n"


def hypervisor_notes() -> str:
    """Markdown: per hypervisor, the kernel it boots, how it shuts down, sources and notes."""
    out: list[str] = []
    for hv in Hypervisor:
        caps = CAPABILITIES[hv]
        out += [f"### {hv}", "",
                f"- Kernel (`microvm.kernel`): {caps.kernel_formats}.",
                f"- Shutdown: {caps.shutdown}.",
                f"- Versions: {caps.versions}.",
                "- Console (kernel `console=` and the guest's getty): " +
                ", ".join(f"`{dev}` on {arch}" for arch, dev in caps.consoles.items()) + ".",
                f"- Checked against {caps.source}."]
        out += [f"- `{feature.option}` is accepted with a warning and ignored: {text}."
                for feature, text in caps.ignored.items()]
        out += [f"- {note}" for note in caps.notes]
        out.append("")
    return "\n".join(out)


def replace_block(text: str, begin: str, end: str, body: str) -> str:
    """`text` with what lies between the markers `begin` and `end` replaced by `body` (the
    generated pages' blocks: this page's and docs/migrating.md's)."""
    try:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
    except ValueError:
        raise ValueError(f"markers {begin} ... {end} not found") from None
    return f"{head}{begin}\n{body}{end}{tail}"


def render_page(text: str) -> str:
    """`text` with its generated blocks replaced by the current ones."""
    text = replace_block(text, TABLE_BEGIN, TABLE_END, feature_table())
    return replace_block(text, NOTES_BEGIN, NOTES_END, hypervisor_notes())
