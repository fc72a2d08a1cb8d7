# The guest: any NixOS configuration plus microvm.* options.
{ lib, ... }:

{
  networking.hostName = "my-vm";
  system.stateVersion = lib.trivial.release;

  microvm = {
    hypervisor = "qemu";
    vcpu = 1;
    mem = 512;
    # a tap interface the host connects (see the host's systemd-networkd settings)
    interfaces = [{ type = "tap"; id = "vm-my-vm"; mac = "02:00:00:00:00:01"; }];
    # state that survives a restart, kept in /var/lib/microvms/my-vm/
    volumes = [{ image = "var.img"; mountPoint = "/var"; size = 1024; serial = "var"; }];
    # the host's /nix/store, read-only over virtiofs, instead of a store disk image
    shares = [{ proto = "virtiofs"; tag = "ro-store"; source = "/nix/store"; mountPoint = "/nix/.ro-store"; }];
  };

  networking.useNetworkd = true;
  systemd.network.networks."10-eth" = {
    matchConfig.MACAddress = "02:00:00:00:00:01";
    address = [ "10.0.0.2/24" ];
    routes = [{ Gateway = "10.0.0.1"; }];
  };

  services.openssh.enable = true;
  # users.users.root.openssh.authorizedKeys.keys = [ "ssh-ed25519 ..." ];
}
