# Evaluate the differential matrix (matrix.nix) on both sides:
#   upstream: upstream microvm.nix's option modules (options.nix, system.nix, optimization.nix) and its runner code
#             (lib/runners/<hypervisor>.nix, called as lib/runner.nix calls it) -> `command`
#   project:  this project's guest module -> the VM document (what `microvm generate` reads)
# { upstream, name, sides } -> { upstream = { ok, command, storeDisk }; document = JSON text }
# (a `throw` becomes ok = false / document = null; other evaluation errors, such as a missing
# attribute in upstream's runner, fail the whole evaluation: the caller then asks for one side)
{ upstream
, name
, sides ? [ "upstream" "project" ]
, python ? "python3"
, repo ? toString ../../..
}:

let
  lib = import <nixpkgs/lib>;
  mlib = import ../../../nix/lib { inherit lib; };
  ulib = import (upstream + "/lib") { inherit lib; };
  matrix = import ./matrix.nix;

  evalSide = pkgs: modules: (lib.evalModules {
    modules = [ { _module.args.pkgs = pkgs; } ] ++ modules;
  }).config;

  # what lib/runner.nix does to obtain a hypervisor's command line
  upstreamRunner = { hypervisor, pkgs, config }:
    let
      microvmConfig = config.microvm // { inherit (config.networking) hostName; inherit hypervisor; };
      linuxTarget = pkgs.linux.target or pkgs.stdenv.hostPlatform.linux-kernel.target;
      hypervisorConfig = import (upstream + "/lib/runners/${hypervisor}.nix") {
        inherit pkgs microvmConfig macvtapFds linuxTarget;
        inherit (ulib) withDriveLetters extractOptValues extractParamValue;
      };
      inherit (ulib.makeMacvtap { inherit microvmConfig hypervisorConfig; }) macvtapFds;
    in
    hypervisorConfig;

  strict = x: builtins.deepSeq x x;

  one = name: { hypervisor, system, module }:
    let
      pkgs = import ./pkgs.nix { inherit lib system python repo; };
      uconfig = evalSide pkgs [
        ./stub.nix
        (upstream + "/nixos-modules/microvm/options.nix")
        (upstream + "/nixos-modules/microvm/system.nix")
        (upstream + "/nixos-modules/microvm/optimization.nix")
        module
      ];
      runner = upstreamRunner { inherit hypervisor pkgs; config = uconfig; };
      command = builtins.tryEval (strict runner.command);
      # (refusals are compared from the generator's checks: the toplevel is built anyway)
      pconfig = evalSide pkgs [ ../stub.nix ../../../nix/modules/microvm module
        { stub.checkAssertions = false; } ];
      document = builtins.tryEval (strict (builtins.toJSON (mlib.document { config = pconfig; inherit pkgs; })));
      storeDisk = builtins.tryEval (strict (if uconfig.microvm.storeOnDisk then "${uconfig.microvm.storeDisk}" else null));
    in
    lib.getAttrs sides {
      upstream = {
        ok = command.success;
        command = if command.success then command.value else null;
        storeDisk = if storeDisk.success then storeDisk.value else null;
      };
      project = if document.success then document.value else null;
    };
in
one name matrix.${name}
