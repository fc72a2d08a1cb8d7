# Stand-in for nixpkgs/nixos/lib/eval-config.nix under the upstream benchmark's package set
# (../../../host-pkgs.nix, `path`): evaluates a "NixOS" made of this project's test stub plus
# the options upstream microvm.nix's guest module needs (../../../host-guest-stub.nix), with
# the arguments upstream's host module passes for microvm.vms.<name>.config.
{ modules
, pkgs
, specialArgs ? { }
, extraModules ? [ ]
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
      ../../../../stub.nix
      ../../../host-guest-stub.nix
      { _module.args.pkgs = pkgs; }
    ] ++ modules ++ extraModules;
  };
in
evaluated // { inherit (evaluated._module.args) pkgs; }
