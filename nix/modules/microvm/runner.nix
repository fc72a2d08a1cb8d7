# The built runner: microvm.runner.<hypervisor> and microvm.declaredRunner, plus the generator's
# checks as NixOS assertions so that a bad configuration fails before anything is built.
{ config, lib, pkgs, extendModules, ... }:

let
  mlib = import ../../lib { inherit lib; };
  cfg = config.microvm;
  hostPkgs = cfg.vmHostPackages;

  document = mlib.document { inherit config pkgs; };

  # the generator's checks: what NixOS can check before it builds the toplevel (the
  # assertions), and what the runner checks on top (the command line, the store disk); each
  # computed once
  beforeToplevel = mlib.problems { doc = document; part = "assertions"; };
  fromToplevel = mlib.problems { doc = document; part = "toplevel"; };

  runner = mlib.refuse document (beforeToplevel ++ fromToplevel) (mlib.buildRunnerFromDocument {
    pkgs = hostPkgs;
    inherit document;
    generator = mlib.generatorFor hostPkgs.buildPackages;
    inherit (cfg) binScripts;
  }) // {
    # read by microvm.nix's host tooling; accepted, but nothing registers here (compat.nix)
    inherit (cfg) registerWithMachined;
  };

  # the same guest evaluated for another hypervisor (kernel file, modules and checks differ)
  runnerFor = hv:
    if hv == cfg.hypervisor then runner
    else (extendModules { modules = [{ microvm.hypervisor = lib.mkForce hv; }]; }).config.microvm.declaredRunner;
in
{
  config = {
    microvm.runner = lib.genAttrs mlib.hypervisors runnerFor;

    assertions = map
      (p: { assertion = false; message = "${p.path}: ${p.message}"; })
      beforeToplevel
    ++ map (name: {
      assertion = !(cfg.binScripts ? ${name});
      message = "microvm.binScripts.${name}: bin/${name} is generated and ends by " +
        "starting its program, so lines added after it would never run; use " +
        "microvm.preStart (commands before the start) or microvm.extraArgsScript " +
        "(more hypervisor arguments)";
    }) mlib.closedScripts;
  };
}
