# The built runner: microvm.runner.<hypervisor> and microvm.declaredRunner. The generator checks
# the configuration when the runner is built (nix/lib/runner.nix: a bad option fails the build
# first, before the guest's system, with the option's path); the one assertion here is about
# microvm.binScripts, which only Nix sees.
{ config, lib, pkgs, extendModules, ... }:

let
  mlib = import ../../lib { inherit lib; };
  cfg = config.microvm;
  hostPkgs = cfg.vmHostPackages;

  document = mlib.document { inherit config pkgs; };

  runner = mlib.buildRunnerFromDocument {
    pkgs = hostPkgs;
    inherit document;
    generator = mlib.generatorFor hostPkgs.buildPackages;
    inherit (cfg) binScripts;
  } // {
    # read by microvm.nix's host tooling (its host module orders microvm@NAME after machined)
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

    assertions = map (name: {
      assertion = !(cfg.binScripts ? ${name});
      message = "microvm.binScripts.${name}: bin/${name} is generated and ends by " +
        "starting its program, so lines added after it would never run; use " +
        "microvm.preStart (commands before the start) or microvm.extraArgsScript " +
        "(more hypervisor arguments)";
    }) mlib.closedScripts;
  };
}
