# A NixOS host with one declared VM, evaluated with the NixOS stub, for the test that loads its
# units into a real systemd (tests/test_systemd_host.py): what the host module makes of it,
# in the forms a NixOS system would install: the unit directory NixOS makes of systemd.packages
# and the systemd.services/targets definitions, with their enablement links
# (./systemd-units.nix), its tmpfiles rules and its user.
# The guest boots the test kernel and initrd (paths inside the container) with its store disk.
# network: the VM joins a declared network "lan" (microvm.host.networks), which the unit
# microvm-networks makes from /etc/microvm/networks.json (`etc` gives that file).
{ python ? "python3", repo ? toString ../../.., hostKernel, hostInitrd, network ? false }:

let
  lib = import <nixpkgs/lib>;
  pkgs = import ../pkgs-standin.nix { inherit lib python repo hostKernel hostInitrd; };
  nixosUnits = import ./systemd-units.nix { inherit lib; };
  evaluated = lib.evalModules {
    modules = [
      ../stub.nix
      ../../../nix/modules/host.nix
      { _module.args.pkgs = pkgs; }
      {
        microvm.vms.nixvm.config = {
          networking.hostName = "nixvm";
          boot.kernelParams = [ "quiet" ];
          microvm.mem = 256;
          microvm.socket = "nixvm.sock";
        };
      }
      (lib.mkIf network {
        microvm.host.networks.lan = { ipv4 = "10.233.0.0/24"; domain = "vm.internal"; };
        microvm.vms.nixvm.config.microvm.interfaces = [ { type = "network"; network = "lan"; } ];
      })
    ];
  };
  inherit (evaluated) config;
  # "10-microvm" = { PATH = { d = { user; group; mode; }; }; } as tmpfiles.d lines
  tmpfiles = lib.concatStrings (lib.flatten (lib.mapAttrsToList (_: paths:
    lib.mapAttrsToList (path: types: lib.mapAttrsToList (type: a:
      "${type} ${path} ${a.mode or "-"} ${a.user or "-"} ${a.group or "-"} -\n") types) paths)
    config.systemd.tmpfiles.settings));
in
{
  # (not microvm-reconcile: the switch it follows up is not part of this test)
  units = nixosUnits.tree pkgs config.systemd
    (removeAttrs (nixosUnits.texts config.systemd) [ "microvm-reconcile.service" ]);
  runner = config.microvm.vms.nixvm.config.config.microvm.declaredRunner;
  # environment.etc: file under /etc -> its source (built)
  etc = lib.mapAttrs (_: e: e.source) config.environment.etc;
  settings = builtins.toJSON {
    inherit tmpfiles;
    user = config.microvm.host.user;
    group = config.microvm.host.group;
  };
}
