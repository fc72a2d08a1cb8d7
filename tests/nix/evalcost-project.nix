# This project's host module (nix/modules/host.nix) evaluated with the NixOS stub, for the
# evaluation-cost benchmark (bench/nix_eval.py); the counterpart of upstream/host-eval.nix,
# with the same VMs (./evalcost-vm.nix) and the same stand-in package set
# (upstream/host-pkgs.nix, whose `path` here is ./fake-nixpkgs: this project's eval-config).
#   mode = "host":   the host's systemd services, targets, tmpfiles, unit packages and every
#                    VM's runner drvPath
#   mode = "guests": only the `n` guests, evaluated on their own (no host module), runner drvPath
#   mode = "toplevel": the same guests, only the stub's toplevel drvPath
# The result is a JSON string, so `nix-instantiate --eval --strict` forces the same things.
{ n ? 1, mode ? "host", python ? "python3", repo ? toString ../.. }:

let
  lib = import <nixpkgs/lib>;
  pkgs = import ./upstream/host-pkgs.nix { inherit lib python repo; } // { path = ./fake-nixpkgs; };
  names = map (i: "vm${toString i}") (lib.range 1 n);
  vmModule = name: import ./evalcost-vm.nix (lib.toInt (lib.removePrefix "vm" name));

  host = (lib.evalModules {
    modules = [
      ./stub.nix
      ../../nix/modules/host.nix
      { _module.args.pkgs = pkgs; }
      { microvm.vms = lib.genAttrs names (name: { config = vmModule name; }); }
    ];
  }).config;

  guest = name: (import ./fake-nixpkgs/nixos/lib/eval-config.nix {
    inherit pkgs;
    modules = [
      ../../nix/modules/microvm
      { networking.hostName = lib.mkDefault name; }
      (vmModule name)
    ];
  }).config;

  result = {
    host = {
      runners = lib.genAttrs names (name: host.microvm.vms.${name}.config.config.microvm.declaredRunner.drvPath);
      services = host.systemd.services;
      targets = host.systemd.targets;
      tmpfiles = host.systemd.tmpfiles;
      packages = map (p: p.drvPath) host.systemd.packages;
    };
    guests = {
      runners = lib.genAttrs names (name: (guest name).microvm.declaredRunner.drvPath);
    };
    # the same guests, forcing only the stub's toplevel (no runner): what the guest module's
    # runner costs is guests minus this
    toplevel = {
      toplevels = lib.genAttrs names (name: (guest name).system.build.toplevel.drvPath);
    };
  }.${mode};
in
builtins.toJSON result
