# flake.nix's outputs, evaluated with a fake nixpkgs input: its lib is nixpkgs' lib plus a
# nixosSystem made of the NixOS stub, its legacyPackages are the stand-in package sets. Also
# the flake template's outputs, with this flake as their `microvm` input.
{ python ? "python3", repo ? toString ../.. }:

let
  lib = import <nixpkgs/lib>;
  standin = system: import ./pkgs-standin.nix { inherit lib python repo system; } // {
    # the overlay builds the generator with nixpkgs' Python; the stand-in keeps its own
    extend = _overlay: standin system;
  };
  # NixOS options the examples set beyond what the stub declares are accepted as they are
  freeform = { _module.freeformType = lib.types.attrsOf lib.types.anything; };
  nixpkgs = {
    lib = lib // {
      nixosSystem = { system, modules, ... }: import ./fake-nixpkgs/nixos/lib/eval-config.nix {
        pkgs = standin system;
        modules = modules ++ [ freeform ];
      };
    };
    legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] standin;
  };
  flake = import ../../flake.nix;
  self = flake.outputs { inherit self nixpkgs; } // { outPath = toString ../..; };
  template = import (self.templates.default.path + "/flake.nix");
  templateSelf = template.outputs { self = templateSelf; inherit nixpkgs; microvm = self; };
in
{
  inherit self templateSelf;
  summary = {
    nixosModules = builtins.attrNames self.nixosModules;
    overlays = builtins.attrNames self.overlays;
    # microvm.nix's names
    overlay = builtins.isFunction self.overlay;
    defaultTemplate = self.defaultTemplate.description;
    modulesAreValues = lib.mapAttrs (_: m: builtins.isFunction m || builtins.isAttrs m) self.nixosModules;
    hypervisors = self.lib.hypervisors;
    templates = builtins.attrNames self.templates;
    templateDescription = self.templates.default.description;
    packages = lib.mapAttrs (_: builtins.attrNames) self.packages;
    apps = lib.mapAttrs (_: lib.mapAttrs (_: a: a.type)) self.apps;
    checks = lib.mapAttrs (_: builtins.attrNames) self.checks;
    nixosConfigurations = builtins.attrNames self.nixosConfigurations;
    runners = lib.mapAttrs (_: p: p.name) self.packages.x86_64-linux;
    exampleDocuments = lib.mapAttrs
      (_: c: builtins.toJSON (self.lib.document { inherit (c) config pkgs; }))
      self.nixosConfigurations;
    templateHost = {
      vms = builtins.attrNames templateSelf.nixosConfigurations.my-host.config.microvm.vms;
      autostart = templateSelf.nixosConfigurations.my-host.config.microvm.autostart;
      packages = map (p: p.name) templateSelf.nixosConfigurations.my-host.config.systemd.packages;
      # what a NixOS host needs to build: a root file system and a boot loader
      root = templateSelf.nixosConfigurations.my-host.config.fileSystems."/".fsType;
      grub = templateSelf.nixosConfigurations.my-host.config.boot.loader.grub.device;
    };
    templateVm = builtins.toJSON (self.lib.document {
      inherit (templateSelf.nixosConfigurations.my-vm) config pkgs;
    });
  };
}
