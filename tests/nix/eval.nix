# Evaluate one example configuration (tests/nix/configs/*.nix) with the guest module, the NixOS
# stub and the stand-in packages. A configuration file is { system ? ..., module }.
{ configuration
, python ? "python3"
, repo ? toString ../..
, hostKernel ? null
, hostInitrd ? null
}:

let
  lib = import <nixpkgs/lib>;
  mlib = import ../../nix/lib { inherit lib; };
  # a file, or the { system ? ..., module } it would hold
  example = if builtins.isAttrs configuration then configuration else import configuration;
  pkgs = import ./pkgs-standin.nix {
    inherit lib python repo hostKernel hostInitrd;
    system = example.system or "x86_64-linux";
  };
  evaluated = lib.evalModules {
    modules = [
      ./stub.nix
      ../../nix/modules/microvm
      { _module.args.pkgs = pkgs; }
      example.module
    ];
  };
  inherit (evaluated) config;

  # what NixOS does before it builds a system: refuse failed assertions
  failed = lib.filter (a: !a.assertion) config.assertions;
  assertionsChecked = value:
    if failed == [ ] then value
    else throw "Failed assertions:\n${lib.concatMapStrings (a: "- ${a.message}\n") failed}";

  document = mlib.document { inherit config pkgs; };
  # the same VM built although its assertions fail (NixOS would refuse: tests/nix/stub.nix), to
  # see what the generator would be given
  unchecked = (evaluated.extendModules { modules = [{ stub.checkAssertions = false; }]; }).config;
  uncheckedDocument = mlib.document { config = unchecked; inherit pkgs; };
in
{
  inherit config pkgs evaluated;
  # the document without any check: what `microvm validate` gets to see
  uncheckedJson = builtins.toJSON uncheckedDocument;
  # the document after the assertions, as a NixOS build would see it
  json = assertionsChecked (builtins.toJSON document);
  runner = assertionsChecked config.microvm.declaredRunner;
  # the runner's check (`microvm validate` on the document; nix/lib/runner.nix)
  check = assertionsChecked config.microvm.declaredRunner.check;
  glue = {
    inherit (config) fileSystems;
    initrdKernelModules = config.boot.initrd.kernelModules;
    initrdAvailableKernelModules = config.boot.initrd.availableKernelModules;
    grub = config.boot.loader.grub.enable;
    # what the guest module sets on its services (the stub gives every service NixOS's
    # options with their defaults: ./dropin/systemd-units.nix)
    services = lib.mapAttrs (_: s: { inherit (s) enable wantedBy; }) (config.systemd.services or { });
    inherit (config) warnings;
  };
}
