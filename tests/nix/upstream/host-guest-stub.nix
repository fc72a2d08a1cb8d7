# The NixOS options upstream microvm.nix's full guest module (nixos-modules/microvm, all of its
# imports) reads or sets beyond this project's stub (../stub.nix, which both sides' guests use
# in the evaluation-cost benchmark, bench/nix_eval.py).
{ lib, ... }:

let
  inherit (lib) mkOption types;
  strings = mkOption { type = types.listOf types.str; default = [ ]; };
  free = mkOption { type = types.attrsOf types.anything; default = { }; };
  off = mkOption { type = types.bool; default = false; };
in
{
  options = {
    boot.blacklistedKernelModules = strings;
    boot.initrd.postDeviceCommands = mkOption { type = types.lines; default = ""; };
    nixpkgs.overlays = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    virtualisation = free;
    # declared (not freeform): upstream sets it under a condition that reads the host name
    networking = mkOption {
      type = types.submodule { options.hostId = mkOption { type = types.nullOr types.str; default = null; }; };
    };
    nix.optimise.automatic = off;
    nix.settings = free;
    security.virtualisation.flushL1DataCache = mkOption { type = types.nullOr types.str; default = null; };
    system.nixos.label = mkOption { type = types.str; default = "26.05"; };
  };
}
