# A minimal stand-in for the NixOS options the MicroVM modules read and write, so that
# lib.evalModules can evaluate them without nixpkgs. The toplevel and the initrd are small
# derivations of the stand-in package set (pkgs-standin.nix).
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption types;
  strings = mkOption { type = types.listOf types.str; default = [ ]; };
  free = mkOption { type = types.attrsOf types.anything; default = { }; };
  hostName = config.networking.hostName;

  # something for the toplevel to refer to, so its closure has more than one path
  greeting = pkgs.runCommand "greeting" { } ''
    echo "hello from the store disk of ${hostName}" > "$out"
  '';
in
{
  # fileSystems with NixOS's own types and checks
  imports = [ ./filesystems-stub.nix ];

  options = {
    networking = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf types.anything;
        options.hostName = mkOption { type = types.str; default = "nixos"; };
        options.hostId = mkOption { type = types.nullOr types.str; default = null; };
      };
      default = { };
    };
    boot.kernelPackages = mkOption { type = types.attrsOf types.raw; default = { kernel = pkgs.linux; }; };
    boot.kernelParams = strings;
    boot.kernelModules = strings;
    boot.initrd.kernelModules = strings;
    boot.initrd.availableKernelModules = strings;
    boot.loader.grub.enable = mkOption { type = types.bool; default = true; };
    boot.initrd.systemd = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf types.anything;
        options.enable = mkOption { type = types.bool; default = false; };
      };
      default = { };
    };
    boot.swraid = free;
    documentation = free;
    system.switch.enable = mkOption { type = types.bool; default = true; };
    boot.postBootCommands = mkOption { type = types.lines; default = ""; };
    system.build = mkOption { type = types.lazyAttrsOf types.raw; default = { }; };
    system.boot.loader.initrdFile = mkOption { type = types.str; default = "initrd"; };
    system.stateVersion = mkOption { type = types.str; default = "26.05"; };
    systemd = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf types.anything;
        # services and targets as NixOS types and merges them (./dropin/systemd-units.nix)
        options = (import ./dropin/systemd-units.nix { inherit lib; }).options // {
          packages = mkOption { type = types.listOf types.package; default = [ ]; };
        };
      };
      default = { };
    };
    users = free;
    environment.etc = free;
    security.wrappers = free;
    services.openssh.enable = mkOption { type = types.bool; default = false; };
    environment.systemPackages = mkOption { type = types.listOf types.package; default = [ ]; };
    nix.enable = mkOption { type = types.bool; default = false; };
    nix.package = mkOption { type = types.raw; default = pkgs.runCommand "nix-standin" { } "mkdir -p $out/bin"; };
    assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    # not NixOS: the tests turn it off to look at the document of a VM whose assertions fail
    stub.checkAssertions = mkOption { type = types.bool; default = true; };
    warnings = mkOption { type = types.listOf types.str; default = [ ]; };
  };

  config.system.build = {
    initialRamdisk = pkgs.initrd;
    # init prints a marker; the boot test's initramfs runs it from the mounted store disk
    # as NixOS's top-level.nix: the system is built only when no assertion failed, so what the
    # assertions read must not need the toplevel (infinite recursion otherwise)
    toplevel = let failed = lib.filter (a: !a.assertion) config.assertions; in
      if config.stub.checkAssertions && failed != [ ] then throw ("Failed assertions:\n"
        + lib.concatMapStrings (a: "- ${a.message}\n") failed)
      else pkgs.runCommand "nixos-system-${hostName}" { } ''
      mkdir -p "$out"
      {
        echo '#!/bin/sh'
        echo 'read -r greeting < ${greeting}'
        echo 'echo "MICROVM-NIX-TOPLEVEL ${hostName}: $greeting"'
      } > "$out/init"
      chmod +x "$out/init"
      # what a NixOS system has for `switch`; this one only logs (to $LOG, when set)
      mkdir -p "$out/bin"
      {
        echo '#!/bin/sh'
        echo 'echo "switch-to-configuration [$*]" >> "''${LOG:-/dev/null}"'
      } > "$out/bin/switch-to-configuration"
      chmod +x "$out/bin/switch-to-configuration"
      printf '%s\n' ${lib.escapeShellArgs config.boot.kernelParams} > "$out/kernel-params"
      printf '%s\n' ${lib.escapeShellArgs config.boot.initrd.kernelModules} > "$out/initrd-modules"
    '';
  };
}
