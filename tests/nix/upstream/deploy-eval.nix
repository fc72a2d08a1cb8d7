# microvm.deploy.* defined by a user, evaluated with upstream microvm.nix's guest module and with
# this project's (the corpus' stand-in NixOS and packages): for each side, whether reading
# each deploy option succeeds and whether its value is null.
# { upstream, module } -> { upstream = { OPTION = { ok, null }; }; project = { ... }; }
{ upstream
, module                      # a file: a NixOS module defining microvm.deploy.*
, python ? "python3"
, repo ? toString ../../..
}:

let
  lib = import <nixpkgs/lib>;
  pkgs = import ./corpus-pkgs.nix { inherit lib python repo; system = "x86_64-linux"; };
  user = import module;
  system = microvm: import ./corpus-nixpkgs/nixos/lib/eval-config.nix {
    inherit pkgs;
    modules = [
      microvm
      user
      {
        networking.hostName = "deployed";
        services.openssh.enable = true;
        microvm.shares = [{ tag = "ro-store"; source = "/nix/store"; mountPoint = "/nix/.ro-store"; }];
      }
    ];
  };
  facts = microvm:
    let deploy = (system microvm).config.microvm.deploy; in
    lib.genAttrs [ "installOnHost" "sshSwitch" "rebuild" ] (o:
      let r = builtins.tryEval (builtins.seq (deploy.${o} == null) deploy.${o}); in {
        ok = r.success;
        null = r.success && r.value == null;
      });
in
{
  upstream = facts (upstream + "/nixos-modules/microvm");
  project = facts ../../../nix/modules/microvm;
}
