"""Hostile values that pass a naive check: the Nix module hands them to the document as they
are and `microvm validate` (the Nix build's check) refuses them with the option's path, and
what is accepted reaches the hypervisor's own parser whole (QEMU 7.2 here, for real)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from microvm.document import from_document
from microvm.hypervisors.base import Accel, RunContext
from microvm.hypervisors.qemu import Qemu
from support.nixeval import nix_eval, nix_problem, validate

# a value Python's re.match("^...$") accepts and Nix's builtins.match does not
NEWLINE_OPTIONS = {
    "mac": ('microvm.interfaces = [ { type = "tap"; id = "vm0"; ' +
            'mac = "02:00:00:00:00:01\\n"; } ];', "microvm.interfaces[0].mac"),
    "machineId": ('microvm.machineId = "01234567-89ab-cdef-0123-456789abcdef\\n";',
                  "microvm.machineId"),
    "pci": ('microvm.devices = [ { bus = "pci"; path = "0000:01:00.0\\n"; } ];',
            "microvm.devices[0].path"),
    "extraArgsScript": ('microvm.extraArgsScript = "/bin/a\\n/bin/b";',
                        "microvm.extraArgsScript"),
}


@pytest.mark.nix
@pytest.mark.parametrize("name", sorted(NEWLINE_OPTIONS))
def test_a_trailing_newline_reaches_the_check_and_is_refused(name: str, tmp_path: Path) -> None:
    """The module's types let the value through unchanged (Nix's regex matching is not
    Python's); the generator's check, which the Nix build runs, refuses it by its path."""
    if why := nix_problem():
        pytest.skip(why)
    setting, path = NEWLINE_OPTIONS[name]
    conf = tmp_path / "conf.nix"
    conf.write_text('{ module = { networking.hostName = "nl"; ' + setting + " }; }\n")
    base = (f"{{ python, repo }}: (import ./eval.nix {{ configuration = {conf}; " +
            "inherit python repo; })")
    doc = json.loads(nix_eval(f"{base}.uncheckedJson").stdout)
    r = validate(doc, tmp_path)
    assert r.returncode == 2, r
    lines = re.findall(r"^error: (microvm\.\S+): ", r.stderr, re.M)
    assert path in lines, r.stderr


QEMU = shutil.which("qemu-system-x86_64")


@pytest.mark.parametrize("machine", ["q35,x", "q35,accel=kvm"])
def test_qemu_reads_a_machine_name_with_commas_whole(machine: str) -> None:
    """QEMU 7.2 takes no ',,' in -machine's implied first value; given as type=..., a
    comma neither ends the name nor injects a property: QEMU looks for that machine."""
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    vm = from_document({"hostName": "m", "microvm": {
        "kernel": "/k", "storeOnDisk": False, "qemu": {"machine": machine}}})
    argv = Qemu().command(vm, RunContext(runner_dir="/r"), Accel.TCG)
    value = argv[argv.index("-machine") + 1]
    r = subprocess.run([QEMU, "-machine", value, "-nodefaults", "-display", "none"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "unsupported machine type" in r.stderr, (value, r.stderr)
