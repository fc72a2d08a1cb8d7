# The NixOS options upstream microvm.nix's options.nix and system.nix read or set, for
# lib.evalModules without nixpkgs' NixOS modules (as in NixOS, networking.hostName and
# networking.hostId are separate options: upstream's machineId default reads the one, its
# system.nix sets the other). microvm.storeDisk is declared by upstream's store-disk.nix, which
# builds the image; here it is a fixed stand-in path.
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption types;
  strings = mkOption { type = types.listOf types.str; default = [ ]; };
  free = mkOption { type = types.attrsOf types.anything; default = { }; };
in
{
  options = {
    networking.hostName = mkOption { type = types.str; default = "nixos"; };
    networking.hostId = mkOption { type = types.nullOr types.str; default = null; };
    boot.kernelPackages = mkOption { type = types.attrsOf types.raw; default = { kernel = pkgs.linux; }; };
    boot.kernelParams = strings;
    boot.initrd.kernelModules = strings;
    boot.initrd.availableKernelModules = strings;
    boot.blacklistedKernelModules = strings;
    boot.loader.grub.enable = mkOption { type = types.bool; default = true; };
    # what upstream's optimization.nix sets
    boot.initrd.systemd = free;
    boot.swraid = free;
    documentation = free;
    networking.useNetworkd = mkOption { type = types.bool; default = false; };
    nixpkgs.overlays = mkOption { type = types.listOf types.raw; default = [ ]; };
    services.openssh.enable = mkOption { type = types.bool; default = false; };
    system.switch.enable = mkOption { type = types.bool; default = true; };
    system.build = mkOption { type = types.lazyAttrsOf types.raw; default = { }; };
    system.boot.loader.initrdFile = mkOption { type = types.str; default = "initrd"; };
    systemd = free;
    environment.etc = free;
    nix.optimise.automatic = mkOption { type = types.bool; default = false; };
    nix.settings = free;
    assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    microvm.storeDisk = mkOption {
      type = types.path;
      default = "${pkgs.runCommand "microvm-store-disk.erofs" { } "touch $out"}";
    };
  };

  config.system.build = {
    initialRamdisk = pkgs.initrd;
    toplevel = pkgs.runCommand "nixos-system-${config.networking.hostName}" { } ''mkdir -p "$out"'';
  };
}
