# Stand-in for nixpkgs/nixos/lib/eval-config.nix: evaluates a "NixOS" made of the test stub,
# with the arguments the host module passes for microvm.vms.<name>.config.
{ modules
, pkgs ? null
, specialArgs ? { }
, system ? null
, lib ? import <nixpkgs/lib>
, prefix ? [ ]
, ...
}:

let
  evaluated = lib.evalModules {
    inherit prefix;
    specialArgs = { modulesPath = ./.; } // specialArgs;
    modules = [
      ../../../stub.nix
      { _module.args.pkgs = if pkgs != null then pkgs else import ../../../pkgs-standin.nix { inherit lib; }; }
    ] ++ modules;
  };
in
# like NixOS, the result also names the package set it was evaluated with
evaluated // { inherit (evaluated._module.args) pkgs; }
