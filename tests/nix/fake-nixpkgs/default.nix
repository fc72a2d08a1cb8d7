# Present so that this directory looks like a nixpkgs checkout to code that only needs
# nixos/lib/eval-config.nix (see ../pkgs-standin.nix, `path`).
{ ... }: throw "tests/nix/fake-nixpkgs is not a package set"
