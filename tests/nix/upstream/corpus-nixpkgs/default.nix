# `import nixpkgs { system = ...; }` in a corpus snippet: the corpus stand-in package set.
{ system ? "x86_64-linux", ... }:
import ../corpus-pkgs.nix { lib = import <nixpkgs/lib>; inherit system; }
