# Stand-in for nixpkgs/nixos/lib/eval-config.nix in the corpus differential (../../../corpus.nix):
# one "NixOS" for both sides, made of the test stub (../../../../stub.nix), the options
# upstream microvm.nix's full guest and host modules read (../../../host-guest-stub.nix,
# ../../../host-stub.nix), and a freeform top level, so the NixOS options a handbook snippet sets
# beyond those (services.getty, networking.firewall, systemd.network...) are accepted as they are.
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
      ../../../corpus-stub.nix
      { _module.args.pkgs = pkgs; }
      # the corpus compares the failed assertions themselves, and the values behind them
      { stub.checkAssertions = false; }
    ] ++ modules ++ extraModules;
  };
in
evaluated // { inherit (evaluated._module.args) pkgs; }
