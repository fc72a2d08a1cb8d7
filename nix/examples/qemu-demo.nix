# `nix run .#qemu-demo`: a QEMU guest booted from an erofs store disk, with user networking and
# ssh forwarded to the host's port 2222. Log in on the console as root (no password).
{ lib, ... }:

{
  networking.hostName = "qemu-demo";
  system.stateVersion = lib.trivial.release;

  microvm = {
    hypervisor = "qemu";
    vcpu = 2;
    mem = 1024;
    interfaces = [{ type = "user"; id = "qemu"; mac = "02:00:00:00:00:01"; }];
    forwardPorts = [{ host.port = 2222; guest.port = 22; }];
    # a persistent /var, created in the working directory on first start
    volumes = [{ image = "qemu-demo-var.img"; mountPoint = "/var"; size = 256; serial = "var"; }];
  };

  users.users.root.password = "";
  services.getty.autologinUser = "root";
  services.openssh = {
    enable = true;
    settings.PermitRootLogin = "yes";
    settings.PermitEmptyPasswords = "yes";
  };
  security.pam.services.sshd.allowNullPassword = true;
}
