# microvm.nix users keep SSH host keys on a share and mark it needed for boot themselves
# (issue 21): the module sets neededForBoot only where it needs it, so this is no conflict.
{
  module = {
    microvm.shares = [{ proto = "virtiofs"; tag = "ssh"; source = "/var/lib/microvms/ssh"; mountPoint = "/etc/ssh"; }];
    microvm.volumes = [{ image = "var.img"; mountPoint = "/var/lib/data"; size = 64; }];
    fileSystems."/etc/ssh".neededForBoot = true;
    fileSystems."/var/lib/data".neededForBoot = true;
  };
}
