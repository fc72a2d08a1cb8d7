# The host: your existing configuration, plus a network for the VM's tap interface.
{ lib, ... }:

{
  # REPLACE these with your host's own (nixos-generate-config writes them to
  # hardware-configuration.nix): they are here only so that this template is a complete
  # NixOS host that evaluates and builds as it is.
  fileSystems."/" = lib.mkDefault { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
  boot.loader.grub.device = lib.mkDefault "nodev";
  system.stateVersion = lib.mkDefault lib.trivial.release;

  networking.useNetworkd = true;
  systemd.network.networks."20-microvm" = {
    matchConfig.Name = "vm-*";
    address = [ "10.0.0.1/24" ];
  };
}
