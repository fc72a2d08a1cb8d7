# Rosetta in a vfkit guest (microvm.vfkit.rosetta.enable): vfkit shares it on the virtiofs tag
# "rosetta" (hypervisors/vfkit.py); NixOS's virtualisation.rosetta mounts that tag and
# registers the Rosetta binary for x86_64 executables (binfmt_misc).
{ config, lib, options, ... }:

let
  cfg = config.microvm;
in
{
  # a stand-in NixOS without virtualisation.rosetta (the tests') has nothing to set
  config = lib.optionalAttrs (options ? virtualisation.rosetta.mountTag) (
    lib.mkIf (cfg.hypervisor == "vfkit" && cfg.vfkit.rosetta.enable) {
      virtualisation.rosetta.enable = true;
      # the tag of vfkit's device (hypervisors/vfkit.py ROSETTA_TAG; tests/test_nix.py)
      virtualisation.rosetta.mountTag = "rosetta";
    });
}
