# A host as microvm.nix users write it, evaluated with the NixOS stub: two inline VMs, each
# with a module that traces when its guest is evaluated (to count evaluations), host options
# that shape the units, and binScripts that extend a generated script.
{ python ? "python3", repo ? toString ../../.., hostOptions ? { }, betaCid ? 11, userModule ? { } }:

let
  lib = import <nixpkgs/lib>;
  pkgs = import ../pkgs-standin.nix { inherit lib python repo; };
  nixosUnits = import ./systemd-units.nix { inherit lib; };
  counted = name: { ... }: builtins.trace "GUEST-EVALUATED ${name}" { };
  evaluated = lib.evalModules {
    modules = [
      ../stub.nix
      ../../../nix/modules/host.nix
      { _module.args.pkgs = pkgs; }
      { microvm.host = hostOptions; }
      {
        microvm.vms.alpha.config = { lib, ... }: {
          imports = [ (counted "alpha") ];
          microvm.interfaces = [{ type = "tap"; id = "vm-alpha"; mac = "02:00:00:00:00:0a"; }];
          microvm.vsock.cid = 10;
          microvm.binScripts.tap-up = lib.mkAfter ''
            echo "EXTRA-TAP-UP $1"
          '';
          microvm.binScripts.hello = "echo hello";
        };
        microvm.vms.beta.config = {
          imports = [ (counted "beta") ];
          networking.hostName = "beta-host";
          microvm.vsock.cid = betaCid;
        };
      }
      # a user's module (where it is in the list must not decide what it means: the module's
      # unit settings come first, lib.mkBefore)
      userModule
    ];
  };
  inherit (evaluated) config;
in
{
  inherit config;
  summary = {
    # read as microvm.nix users do: the option's value is the evaluated VM system
    hostNames = lib.mapAttrs (_: vm: vm.config.config.networking.hostName) config.microvm.vms;
    restart = lib.mapAttrs (_: vm: vm.restartIfChanged) config.microvm.vms;
    # forces every VM's runner (the units name them)
    runners = map (p: p.name) config.systemd.packages;
    runner = "${config.microvm.vms.alpha.config.config.microvm.declaredRunner}";
  };
  units = lib.head config.systemd.packages;
  # the unit files NixOS would write: by name (texts) and as the directory it links (tree)
  texts = lib.mapAttrs (_: u: u.text) (nixosUnits.texts config.systemd);
  tree = nixosUnits.tree pkgs config.systemd (nixosUnits.texts config.systemd);
  alphaRunner = config.microvm.vms.alpha.config.config.microvm.declaredRunner;
}
