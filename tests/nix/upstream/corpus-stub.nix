# The NixOS options upstream microvm.nix's full guest and host modules read or set beyond the
# test stub (../stub.nix): one set for both sides of the corpus differential
# (./corpus.nix), so that upstream's modules and this project's see the same "NixOS".
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
    nixpkgs = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf types.anything;
        options.overlays = mkOption { type = types.listOf types.unspecified; default = [ ]; };
      };
      default = { };
    };
    virtualisation = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf types.anything;
        options.libvirtd.enable = off;
      };
      default = { };
    };
    nix.optimise.automatic = off;
    nix.nixPath = strings;
    security.virtualisation.flushL1DataCache = mkOption { type = types.nullOr types.str; default = null; };
    security.pam.loginLimits = mkOption { type = types.listOf types.anything; default = [ ]; };
    hardware = free;
    system.activationScripts = free;
    system.nixos.label = mkOption { type = types.str; default = "26.05"; };
    nix.settings = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf types.anything;
        options.auto-optimise-store = off;
      };
      default = { };
    };
  };

  # NixOS option trees a snippet may set beyond these (services.getty, security.sudo, ...):
  # accepted as they are
  imports = map
    (tree: {
      options.${tree} = mkOption {
        type = types.submodule { freeformType = types.attrsOf types.anything; };
        default = { };
      };
    })
    [ "services" "security" "environment" "programs" "i18n" "time" "console" "fonts" "xdg" ];
}
