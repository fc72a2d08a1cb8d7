# The microvm.* options of a guest. The options of vm.json are declared by its JSON Schema
# (generator/microvm/schema/vm.schema.json) through nix/lib/options.nix; this file adds only
# the defaults computed from other options and the Nix-only options that pick packages and
# expose the built runner. tests/test_nix.py compares the evaluated options with the schema.
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption types literalExpression;
  mlib = import ../../lib { inherit lib; };
  cfg = config.microvm;
  hostName = config.networking.hostName;

  # a package set (any nixpkgs; older ones lack the _type that types.pkgs checks)
  packageSet = lib.mkOptionType {
    name = "pkgs";
    description = "package set";
    check = builtins.isAttrs;
    merge = lib.mergeOneOption;
  };

  # defaults that depend on other options (the generator computes the same for a document
  # that leaves them out: config.MicroVM.from_json)
  overrides = {
    socket = _: {
      default = mlib.defaultSocket { inherit (cfg) hypervisor; inherit hostName; };
      defaultText = literalExpression ''"''${hostName}.sock" (null for a hypervisor without a control socket)'';
    };
    kernel = _: {
      default = config.boot.kernelPackages.kernel;
      defaultText = literalExpression "config.boot.kernelPackages.kernel";
    };
    storeOnDisk = _: {
      default = mlib.defaultStoreOnDisk cfg.shares;
      defaultText = literalExpression ''!(any share has source = "/nix/store")'';
    };
    machineId = _: {
      # microvm.nix's derivation, so a VM keeps its machine id when it moves here (the
      # generator derives the same for a null machineId: config.derived_machine_id)
      default =
        let h = builtins.hashString "sha256" "microvm.nix:${hostName}";
        in lib.concatMapStringsSep "-" ({ at, len }: builtins.substring at len h)
          [ { at = 0; len = 8; } { at = 8; len = 4; } { at = 12; len = 4; } { at = 16; len = 4; } { at = 20; len = 12; } ];
      defaultText = literalExpression ''"<a UUID from the SHA-256 of \"microvm.nix:''${networking.hostName}\">"'';
    };
    "graphics.socket" = _: {
      default = "${hostName}-gpu.sock";
      defaultText = literalExpression ''"''${hostName}-gpu.sock"'';
    };
    # a type = "network" interface derives its tap name and MAC (generator: config.Interface);
    # every other type must set them
    "interfaces.*.id" = iface: {
      default = if iface.type == "network" && iface.network != null
        then mlib.netTapName { inherit (iface) network; inherit hostName; }
        else throw "microvm.interfaces: an interface of type ${iface.type} needs its id (only type = \"network\" derives it)";
      defaultText = literalExpression ''"mvt-" + a hash of network and hostName, for type = "network"'';
    };
    "interfaces.*.mac" = iface: {
      default = if iface.type == "network" && iface.network != null
        then mlib.netMac { inherit (iface) network; inherit hostName; }
        else throw "microvm.interfaces: an interface of type ${iface.type} needs its mac (only type = \"network\" derives it)";
      defaultText = literalExpression ''"02:" + a hash of network and hostName, for type = "network"'';
    };
    "shares.*.socket" = share: {
      default = mlib.defaultShareSocket { inherit hostName; inherit (share) proto tag; };
      defaultText = literalExpression ''if proto == "virtiofs" then "''${hostName}-virtiofs-''${tag}.sock" else null'';
    };
  };
in
{
  options.microvm = (import ../../lib/options.nix { inherit lib; } { inherit overrides; }).declare
    config // {
    # -- Nix only: not part of vm.json -------------------------------------------------------
    networkAddresses = mkOption {
      type = types.attrsOf (types.attrsOf types.anything);
      default = { };
      internal = true;
      description = ''
        Set by the host module for a VM it declares inline: per declared network the VM joins,
        the addresses the host derived for it (nix/lib/netplan.nix), which an interface with
        addressing = "static" (or "auto") writes into the guest's network configuration.
      '';
    };

    guest.enable = mkOption {
      type = types.bool;
      default = true;
      description = "Configure this NixOS system as a MicroVM guest (file systems, initrd modules, store disk).";
    };

    vmHostPackages = mkOption {
      type = packageSet;
      # an emulated CPU (microvm.cpu) usually means a guest of another architecture: the
      # host that runs it is the build platform (as in microvm.nix)
      default = if config.microvm.cpu == null then pkgs else pkgs.buildPackages;
      defaultText = literalExpression "if config.microvm.cpu == null then pkgs else pkgs.buildPackages";
      description = "Package set of the host that runs the VM: hypervisor, virtiofsd and tools come from it.";
    };

    runner = mkOption {
      type = types.lazyAttrsOf types.package;
      readOnly = true;
      description = "The runner package of this VM for each hypervisor, built by the generator.";
    };

    declaredRunner = mkOption {
      type = types.package;
      default = cfg.runner.${cfg.hypervisor};
      defaultText = literalExpression "config.microvm.runner.\${config.microvm.hypervisor}";
      description = "The runner for microvm.hypervisor: bin/microvm-run, bin/microvm-shutdown, share/microvm/*.";
    };
  };
}
