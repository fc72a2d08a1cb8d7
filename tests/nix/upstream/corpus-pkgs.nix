# The package set of the corpus differential (./corpus.nix): ./host-pkgs.nix (the stand-in both
# sides' modules need), whose `path` is ./corpus-nixpkgs (eval-config.nix with ./corpus-stub.nix,
# for the VMs a host declares inline) and whose `nixos` evaluates a configuration with it.
{ lib
, system ? "x86_64-linux"
, python ? "python3"
, repo ? toString ../../..
}:

let
  base = import ./host-pkgs.nix { inherit lib system python repo; };
  tool = name: base.runCommand name { } "mkdir -p $out/bin";
  self = base // {
    # what upstream's store disk derivation lists (nothing is built)
    time = tool "time";
    bubblewrap = tool "bubblewrap";
    # upstream's virtiofsd-run (supervisord and its event handler)
    python3Packages = (base.python3Packages or { }) // { supervisor = tool "supervisor"; };
    writers = base.writers // { writePython3 = name: _args: _text: tool name; };
    replaceVars = path: _vars: path;
    # firmware a user's QEMU arguments name (tests/nix/users/tiiuae-ghaf-*)
    OVMF = (base.OVMF or { }) // { fd = tool "OVMF-fd"; };
    # lib.getExe reads meta.mainProgram (nixpkgs sets it; without it lib warns)
    virtiofsd = base.virtiofsd // { meta = (base.virtiofsd.meta or { }) // { mainProgram = "virtiofsd"; }; };
    socat = base.socat // { meta = (base.socat.meta or { }) // { mainProgram = "socat"; }; };
    path = ./corpus-nixpkgs;
    buildPackages = self;
    pkgsBuildBuild = self;
    forSystem = other: import ./corpus-pkgs.nix { inherit lib python repo; system = other; };
    nixos = module: import ./corpus-nixpkgs/nixos/lib/eval-config.nix {
      pkgs = self;
      modules = [ module ];
    };
  };
in
self
