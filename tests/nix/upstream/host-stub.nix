# The host options upstream microvm.nix's host module sets beyond this project's stub
# (../stub.nix, the host stub on both sides of the evaluation-cost benchmark).
{ lib, ... }:

let
  inherit (lib) mkOption types;
  free = mkOption { type = types.attrsOf types.anything; default = { }; };
in
{
  options = {
    security.pam.loginLimits = mkOption { type = types.listOf types.anything; default = [ ]; };
    hardware.ksm.enable = mkOption { type = types.bool; default = false; };
    system.activationScripts = free;
    virtualisation.libvirtd.enable = mkOption { type = types.bool; default = false; };
  };
}
