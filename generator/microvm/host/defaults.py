"""The host's defaults, declared once: where the VMs live and whom they run as. Read by the
`microvm` command's options (this module imports nothing, so `microvm --help` stays fast), the
state directory, the units, `host install` and doctor; the Nix host module's defaults
(nix/lib/host-defaults.nix) are tested to be the same (tests/test_units.py)."""

STATE_DIR = "/var/lib/microvms"
# the user microvm@.service runs VMs as, and its group (which may open /dev/kvm)
USER = "microvm"
GROUP = "kvm"
