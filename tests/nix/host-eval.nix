# The host module evaluated with the NixOS stub: one VM declared inline (evaluated through the
# stand-in nixpkgs' eval-config.nix), one already evaluated and not started at boot.
{ python ? "python3", repo ? toString ../.. }:

let
  lib = import <nixpkgs/lib>;
  pkgs = import ./pkgs-standin.nix { inherit lib python repo; };
  guest = import ./fake-nixpkgs/nixos/lib/eval-config.nix {
    inherit pkgs;
    modules = [
      ../../nix/modules/microvm
      { networking.hostName = "manual"; microvm.hypervisor = "qemu"; }
    ];
  };
  evaluated = lib.evalModules {
    modules = [
      ./stub.nix
      ../../nix/modules/host.nix
      { _module.args.pkgs = pkgs; }
      {
        microvm.vms.web.config = {
          microvm.mem = 768;
          microvm.shares = [{ tag = "www"; source = "www"; mountPoint = "/var/www"; }];
          microvm.interfaces = [{ type = "bridge"; id = "vm-web"; bridge = "br-lan"; mac = "02:00:00:00:00:01"; }];
        };
        microvm.vms.manual = { evaluatedConfig = guest; autostart = false; };
        microvm.autostart = [ "imperative" ];
      }
    ];
  };
  inherit (evaluated) config;
  webGuest = config.microvm.vms.web;
in
{
  inherit config;
  summary = {
    users = config.users;
    tmpfiles = config.systemd.tmpfiles.settings."10-microvm";
    services = lib.mapAttrs (_: s: {
      wantedBy = s.wantedBy or [ ];
      overrideStrategy = s.overrideStrategy or null;
      execStart = s.serviceConfig.ExecStart or null;
    }) config.systemd.services;
    targets = config.systemd.targets;
    etc = config.environment.etc;
    wrappers = config.security.wrappers;
    autostart = config.microvm.autostart;
    packages = map (p: p.name) config.systemd.packages;
    kernelModules = config.boot.kernelModules;
    assertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  };
  units = lib.head config.systemd.packages;
}
