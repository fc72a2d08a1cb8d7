# The stand-in package set for evaluating upstream microvm.nix's HOST module and its full
# guest module (nixos-modules/microvm, store disk included): ./pkgs.nix plus what those read
# (callPackage for the `microvm` command, writeShellScript, writeClosure, qemu-utils, ...).
# Its `path` is ./host-nixpkgs, whose nixos/lib/eval-config.nix evaluates upstream's guests.
# Nothing is built: the benchmark (bench/nix_eval.py) only evaluates.
{ lib
, system ? "x86_64-linux"
, python ? "python3"
, repo ? toString ../../..
}:

let
  base = import ./pkgs.nix { inherit lib system python repo; };
  tool = name: base.runCommand name { } "mkdir -p $out/bin";
  self = base // {
    path = ./host-nixpkgs;
    buildPackages = self;
    pkgsBuildBuild = self;
    inherit system;
    runtimeShell = "/bin/bash";
    # as in nixpkgs, the derivation also keeps its passthru attribute set
    runCommand = name: env: script:
      base.runCommand name env script // { passthru = env.passthru or { }; };
    runCommandLocal = self.runCommand;
    callPackage = fn: args:
      let f = if builtins.isFunction fn then fn else import fn;
      in f (builtins.intersectAttrs (builtins.functionArgs f) self // args);
    writeShellScript = name: text: self.runCommand name { inherit text; passAsFile = [ "text" ]; } ''
      { echo '#!/bin/bash'; cat "$textPath"; } > "$out"
      chmod +x "$out"
    '';
    writeClosure = paths: base.runCommand "store-paths"
      { exportReferencesGraph = lib.concatLists (lib.imap0 (i: p: [ "closure-${toString i}" p ]) paths); }
      "cat closure-* > $out";
    erofs-utils = base.erofs-utils // {
      configureFlags = [ ];
      overrideAttrs = _: self.erofs-utils;
    };
    qemu-utils = tool "qemu-utils";
    git = tool "git";
    nix = tool "nix";
    openssh = tool "openssh";
    kmod = tool "kmod";
    coreutils-full = base.coreutils;
  };
in
self
