# The corpus differential (tests/test_upstream_corpus.py): configurations from upstream
# microvm.nix's handbook, examples and flake template, each evaluated twice with the same
# stand-in NixOS (./corpus-nixpkgs, ./corpus-stub.nix) and packages (./corpus-pkgs.nix): once
# with upstream's modules (nixos-modules/microvm, nixos-modules/host, lib) and once with this
# project's (nix/modules, nix/lib).
#
# `manifest` is a JSON file: [ { id, file } ]. Each file holds `env: { NAME = system; ... }`, a
# function from the side's environment to evaluated NixOS systems (the test writes the files:
# a handbook block with its wrapper, or an example read from upstream's source).
#
# Result (JSON): { ID = { upstream = FACTS; project = FACTS; }; } where FACTS maps an entry name
# ("NAME" for a system, "NAME/vms.VM" for a VM a host declares inline) to
#   { ok = true; guest = { values, fileSystems, refusals, warnings } or null;
#     host = { ... } or null; }  or  { ok = false; }  (a `throw` while evaluating it)
# The project's values are its VM document (nix/lib/document.nix); upstream's are its
# microvm.* option values at the same paths.
{ upstream
, manifest
, python ? "python3"
, repo ? toString ../../..
, only ? null                 # [ ID ] to evaluate a subset
, sides ? [ "upstream" "project" ]
, debug ? false               # let errors through (with --show-trace: where a side fails)
}:

let
  lib = import <nixpkgs/lib>;
  mlib = import ../../../nix/lib { inherit lib; };
  ulib = import (upstream + "/lib") { inherit lib; };
  cases = lib.filter (c: only == null || lib.elem c.id only)
    (builtins.fromJSON (builtins.readFile manifest));

  pkgsFor = system: import ./corpus-pkgs.nix { inherit lib python repo system; };
  systems = [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" ];

  nixosSystem = { system ? "x86_64-linux", modules, specialArgs ? { }, pkgs ? null, ... }:
    import ./corpus-nixpkgs/nixos/lib/eval-config.nix {
      pkgs = if pkgs != null then pkgs else pkgsFor (lib.replaceStrings [ "-darwin" ] [ "-linux" ] system);
      inherit modules specialArgs;
    };

  nixpkgs = {
    lib = lib // { inherit nixosSystem; };
    legacyPackages = lib.genAttrs systems pkgsFor;
    outPath = toString ./corpus-nixpkgs;
  };

  # what a snippet gets: the side's modules as microvm.nix's flake outputs name them
  env = side:
    let
      modules = if side == "upstream" then {
        microvm = upstream + "/nixos-modules/microvm";
        host = upstream + "/nixos-modules/host";
      } else {
        microvm = ../../../nix/modules/microvm;
        host = ../../../nix/modules/host.nix;
      };
      microvm = {
        nixosModules = modules // { default = modules.host; };
        lib = if side == "upstream" then ulib else mlib;
        overlay = _final: _prev: { };
        overlays.default = microvm.overlay;
        outPath = if side == "upstream" then upstream else toString ../../..;
      };
    in
    {
      inherit side lib nixpkgs nixosSystem microvm;
      pkgs = pkgsFor "x86_64-linux";
      # free names of handbook fragments (`self`, `nixpkgs`), bound with `with`
      scope = { inherit nixpkgs; self = microvm; };
    };

  strict = x: builtins.deepSeq x x;
  tryEval = if debug then (x: { success = true; value = x; }) else builtins.tryEval;
  attempt = x: let r = tryEval (strict x); in if r.success then r.value else { "@error" = true; };

  # JSON-able values: packages and paths become their store path
  plain = v:
    if lib.isDerivation v then "${v}"
    else if builtins.isPath v then toString v
    else if builtins.isFunction v then "@function"
    else if builtins.isAttrs v then lib.mapAttrs (_: plain) v
    else if builtins.isList v then map plain v
    else v;

  # upstream's option values at the paths the project's document has
  along = shape: v:
    if builtins.isAttrs shape && builtins.isAttrs v && !(lib.isDerivation v) then
      lib.mapAttrs (k: s: if v ? ${k} then attempt (along s v.${k}) else "@absent") shape
    else if builtins.isList shape && builtins.isList v then
      lib.imap0 (i: x:
        if i < lib.length shape then along (lib.elemAt shape i) x
        else if shape != [ ] then along (lib.head shape) x
        else plain x) v
    else plain v;

  failedAssertions = config: map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);

  projectDocument = system: (mlib.document { inherit (system) config pkgs; }).microvm;

  guestFacts = side: system: counterpart:
    let
      config = system.config;
      values =
        if side == "project" then projectDocument system
        else if counterpart == null then { "@no-counterpart" = true; }
        else along (projectDocument counterpart) config.microvm;
      # (this project's runner adds the generator's problems, which the test asks it for)
      refusals = failedAssertions config;
    in
    {
      values = attempt values;
      # this project: the whole document, which the test hands the generator's checks
      document = if side == "project"
        then attempt (builtins.toJSON (mlib.document { inherit (system) config pkgs; }))
        else null;
      fileSystems = attempt (plain config.fileSystems);
      refusals = attempt refusals;
      # upstream's runners refuse some configurations with a throw (vfkit off macOS...)
      runner = (tryEval (strict config.microvm.declaredRunner.drvPath)).success;
      warnings = attempt config.warnings;
    };

  # upstream: the units its host module declares for the VMs
  upstreamHost = config:
    let
      services = config.systemd.services;
      vms = builtins.attrNames config.microvm.vms;
      flakeLine = script:
        let m = builtins.match ".*echo '([^']*)' > flake.*" script; in
        if m == null then null else lib.head m;
    in
    {
      stateDir = config.microvm.stateDir;
      startupTimeout = services."microvm@".serviceConfig.TimeoutSec or null;
      autostart = config.microvm.autostart;
      tmpfiles = builtins.attrNames (config.systemd.tmpfiles.settings."10-microvm" or { });
      vms = lib.genAttrs vms (name: attempt (
        let
          install = services."install-microvm-${name}" or null;
          drop = services."microvm@${name}" or { };
        in
        {
          installed = install != null;
          installOnce = install != null && (install.unitConfig.ConditionPathExists or null) != null;
          flake = if install == null then null else flakeLine install.script;
          restartIfChanged = lib.last (drop.serviceConfig.X-RestartIfChanged or [ null ]);
          readiness = if (drop.serviceConfig.Type or null) == "notify" then "notify" else "started";
        }));
    };

  # the evaluated guest of a VM the project's host declares (as nix/modules/host.nix finds it)
  declaredGuest = config: name:
    let vm = config.microvm.vms.${name}; in
    (if vm.flake != null then vm.flake.nixosConfigurations.${name}
     else if vm.evaluatedConfig != null then vm.evaluatedConfig else vm.config).config;

  # the project: what its host module hands the unit generator (nix/lib/units.nix); the test
  # renders the units with the generator and reads them
  projectHost = config: {
    units =
      let args = (lib.head (lib.filter (p: p ? unitArgs) config.systemd.packages)).unitArgs; in
      # a VM whose runner fails to evaluate, or whose document the generator refuses (the
      # runner's check fails to build), is reported alone
      args // { declared = map (vm: vm // {
        runner = attempt vm.runner;
        document = attempt (builtins.toJSON (declaredGuest config vm.name).microvm.declaredRunner.document);
      }) args.declared; };
    autostart = config.microvm.autostart;
    tmpfiles = builtins.attrNames (config.systemd.tmpfiles.settings."10-microvm" or { });
  };

  hostFacts = side: system:
    attempt (if side == "upstream" then upstreamHost system.config else projectHost system.config);

  isGuest = system: system.config.microvm ? hypervisor;
  isHost = system: system.config.microvm ? vms;
  inlineVms = system:
    if isHost system
    then lib.filterAttrs (_: vm: vm.config != null) system.config.microvm.vms
    else { };

  # { ENTRY = system } of one side: the systems and the VMs they declare inline
  entries = systemsOf:
    lib.concatMapAttrs (name: system:
      { ${name} = system; }
      // lib.mapAttrs' (vm: v: lib.nameValuePair "${name}/vms.${vm}" v.config) (inlineVms system))
      systemsOf;

  facts = side: system: counterpart:
    let
      ok = tryEval (isGuest system || isHost system);
    in
    if !ok.success then { ok = false; }
    else {
      ok = true;
      guest = if isGuest system then guestFacts side system counterpart else null;
      host = if isHost system then hostFacts side system else null;
    };

  one = case:
    let
      fn = import case.file;
      sys = side: tryEval (entries (fn (env side)));
      u = sys "upstream";
      p = sys "project";
      names = if p.success then builtins.attrNames p.value else if u.success then builtins.attrNames u.value else [ ];
      factsOf = side: s: n:
        if !(s.value ? ${n}) then { ok = false; missing = true; }
        else attempt (facts side s.value.${n} (if p.success then p.value.${n} or null else null));
      # one entry after the other, between trace markers: what upstream's code prints with
      # lib.warn while an entry is evaluated (its runners' warnings) is that entry's; a host's
      # inline VMs go first, so their runners' warnings are theirs, not the host's
      marked = side: s: n:
        let
          tag = "${case.id}:${n}";
          f = builtins.trace "@@corpus-begin ${side} ${tag}" (factsOf side s n);
        in
        builtins.deepSeq f (builtins.trace "@@corpus-end ${side} ${tag}" f);
      ordered = lib.sort (a: b: lib.hasInfix "/vms." a && !(lib.hasInfix "/vms." b)) names;
      of = side: s: if !s.success then { "@error" = true; } else
        builtins.foldl' (acc: n: let f = marked side s n; in builtins.seq f (acc // { ${n} = f; }))
          { } ordered;
    in
    lib.getAttrs sides {
      upstream = of "upstream" u;
      project = of "project" p;
    };
in
builtins.listToAttrs (map (c: lib.nameValuePair c.id (one c)) cases)
