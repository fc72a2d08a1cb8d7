# `nix run .#qemu-shared-store`: a QEMU guest that shares the host's /nix/store over 9p instead
# of booting from a store disk (no image to build), with a writable store overlay on tmpfs so
# that nix works inside. Log in on the console as root (no password).
{ lib, ... }:

{
  networking.hostName = "qemu-shared-store";
  system.stateVersion = lib.trivial.release;

  microvm = {
    hypervisor = "qemu";
    mem = 1024;
    shares = [{ tag = "ro-store"; source = "/nix/store"; mountPoint = "/nix/.ro-store"; readOnly = true; }];
    writableStoreOverlay = "/nix/.rw-store";
  };
  fileSystems."/nix/.rw-store" = { device = "tmpfs"; fsType = "tmpfs"; options = [ "mode=0755" ]; neededForBoot = true; };

  nix.enable = true;
  users.users.root.password = "";
  services.getty.autologinUser = "root";
}
