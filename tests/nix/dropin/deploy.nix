# A guest with microvm.nix's deploy scripts usable: sshd in the guest, the host's store shared.
{
  module = {
    networking.hostName = "deployed";
    services.openssh.enable = true;
    microvm.shares = [{ tag = "ro-store"; source = "/nix/store"; mountPoint = "/nix/.ro-store"; }];
  };
}
