"""The host's defaults: where the VMs live and whom they run as (the user microvm@.service runs
VMs as, and its group, which may open /dev/kvm). Declared once, in defaults.json beside this
file, which the Nix host module reads too (nix/lib/host-defaults.nix). Read by the `microvm`
command's options (this module imports only json, so `microvm --help` stays fast), the state
directory, the units, `host install` and doctor; and the host's network declaration and
the name of its nftables tables."""

import json
from pathlib import Path

_DEFAULTS: dict[str, str] = json.loads(
    Path(__file__).with_name("defaults.json").read_text("utf-8"))

STATE_DIR = _DEFAULTS["stateDir"]
USER = _DEFAULTS["user"]
GROUP = _DEFAULTS["group"]
# the host's network declaration (`microvm network`; the NixOS host module writes it), which
# `create` and `update` check a VM's network interfaces against when it exists
NETWORKS_FILE = _DEFAULTS["networksFile"]
# the name of the declared networks' nftables tables (one per family: host/network.FAMILIES),
# which the NixOS host module declares in networking.nftables.tables too
NFT_TABLE = _DEFAULTS["nftTable"]
