# Upstream microvm.nix's HOST module (nixos-modules/host) evaluated with stand-ins, for the
# evaluation-cost benchmark (bench/nix_eval.py): a host declaring `n` VMs inline
# (microvm.vms.vmI.config = ../evalcost-vm.nix I), each VM evaluated by the stand-in
# eval-config (./host-nixpkgs) with upstream's full guest module.
#   mode = "host":   the host's systemd services, targets, tmpfiles and every VM's runner drvPath
#   mode = "guests": only the `n` guests, evaluated on their own (no host module), runner drvPath
#   mode = "toplevel": the same guests, only the stub's toplevel drvPath
# The result is a JSON string, so `nix-instantiate --eval --strict` forces the same things.
{ upstream, n ? 1, mode ? "host", python ? "python3", repo ? toString ../../.. }:

let
  lib = import <nixpkgs/lib>;
  pkgs = import ./host-pkgs.nix { inherit lib python repo; };
  names = map (i: "vm${toString i}") (lib.range 1 n);
  vmModule = name: import ../evalcost-vm.nix (lib.toInt (lib.removePrefix "vm" name));

  host = (lib.evalModules {
    modules = [
      ../stub.nix
      ./host-stub.nix
      (upstream + "/nixos-modules/host")
      { _module.args.pkgs = pkgs; }
      { microvm.vms = lib.genAttrs names (name: { config = vmModule name; }); }
    ];
  }).config;

  guest = name: (import ./host-nixpkgs/nixos/lib/eval-config.nix {
    inherit pkgs;
    modules = [
      (upstream + "/nixos-modules/microvm")
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
