# A NixOS host with one declared VM, evaluated with the NixOS stub, for the test that loads its
# units into a real systemd (tests/test_systemd_host.py): what the host module makes of it,
# in the forms a NixOS system would install: the units package (systemd.packages), the
# enablement links its systemd.services/targets declare, its tmpfiles rules and its user.
# The guest boots the test kernel and initrd (paths inside the container) with its store disk.
{ python ? "python3", repo ? toString ../../.., hostKernel, hostInitrd }:

let
  lib = import <nixpkgs/lib>;
  pkgs = import ../pkgs-standin.nix { inherit lib python repo hostKernel hostInitrd; };
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
    ];
  };
  inherit (evaluated) config;
  # "10-microvm" = { PATH = { d = { user; group; mode; }; }; } as tmpfiles.d lines
  tmpfiles = lib.concatStrings (lib.flatten (lib.mapAttrsToList (_: paths:
    lib.mapAttrsToList (path: types: lib.mapAttrsToList (type: a:
      "${type} ${path} ${a.mode or "-"} ${a.user or "-"} ${a.group or "-"} -\n") types) paths)
    config.systemd.tmpfiles.settings));
  wants = lib.flatten (lib.mapAttrsToList (unit: s:
    map (target: { inherit target; unit = "${unit}.service"; }) (s.wantedBy or [ ]))
    (removeAttrs config.systemd.services [ "microvm-reconcile" ]))
    ++ lib.flatten (lib.mapAttrsToList (unit: t:
      map (target: { inherit target; unit = "${unit}.target"; }) (t.wantedBy or [ ]))
      config.systemd.targets);
in
{
  units = lib.head config.systemd.packages;
  runner = config.microvm.vms.nixvm.config.config.microvm.declaredRunner;
  settings = builtins.toJSON {
    inherit tmpfiles wants;
    user = config.microvm.host.user;
    group = config.microvm.host.group;
  };
}
