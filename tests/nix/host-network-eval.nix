# The host module with declared networks (microvm.host.networks), evaluated with the NixOS stub:
# two declared VMs join "lan" (one with a pinned MAC), one has only a tap.
# host: another host configuration in place of this one; extra: a module added to it.
{ python ? "python3", repo ? toString ../.., host ? null, extra ? { } }:

let
  lib = import <nixpkgs/lib>;
  pkgs = import ./pkgs-standin.nix { inherit lib python repo; };
  evaluated = lib.evalModules {
    modules = [
      ./stub.nix
      ../../nix/modules/host.nix
      { _module.args.pkgs = pkgs; }
      (if host != null then host else {
        networking.hostName = "h1";
        microvm.host.addresses = [ "192.168.1.10/24" ];
        microvm.host.networks.lan = {
          ipv4 = "10.231.0.0/24"; ipv6 = "auto"; uplinks = [ "eth0" ]; domain = "vm.internal";
          isolation = "rules";
          allow = [ { from = "web"; to = "db"; tcp = [ 5432 ]; } ];
          forwardPorts = [ { vm = "web"; hostPort = 8443; port = 443; } ];
        };
        microvm.vms.web.config.microvm.interfaces = [ { type = "network"; network = "lan"; } ];
        microvm.vms.db.config.microvm.interfaces = [
          { type = "network"; network = "lan"; mac = "02:00:00:00:00:42"; } ];
        microvm.vms.plain.config.microvm.interfaces = [
          { type = "tap"; id = "vm-plain"; mac = "02:00:00:00:00:43"; } ];
      })
      extra
    ];
  };
  inherit (evaluated) config;
  svc = config.systemd.services;
in
{
  # the declaration's text, and the file (built by `microvm network check` and a copy)
  declaration = config.environment.etc."microvm/networks.json".source.declaration;
  declarationFile = config.environment.etc."microvm/networks.json".source;
  # what the host's own network managers are told to leave alone
  unmanaged = {
    networkmanager = config.networking.networkmanager.unmanaged or null;
    dhcpcd = config.networking.dhcpcd.denyInterfaces or null;
    networkd = config.systemd.network.networks."05-microvm-networks" or null;
  };
  # with ./nftables-standin.nix in `extra`: the script nftables.service loads (and reloads)
  nftablesRules = config.system.build.nftablesRules or null;
  networks = lib.mapAttrs (_: vm: vm.config.config.systemd.network.networks or { })
    config.microvm.vms;
  unit = {
    inherit (svc.microvm-networks) wantedBy before after reloadTriggers;
    restartTriggers = svc.microvm-networks.restartTriggers or [ ];
    inherit (svc.microvm-networks.serviceConfig) ExecStart ExecStop ExecReload Type;
    inherit (svc.microvm-networks.unitConfig) ReloadPropagatedFrom;
  };
  requires = lib.mapAttrs (_: s: s.requires or [ ])
    (lib.filterAttrs (n: _: lib.hasPrefix "microvm@" n && n != "microvm@") svc);
  macs = lib.mapAttrs (_: vm: map (i: i.mac) vm.config.config.microvm.interfaces) config.microvm.vms;
}
