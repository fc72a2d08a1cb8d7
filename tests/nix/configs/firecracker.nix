# firecracker: squashfs store disk, tap networking, a volume whose serial firecracker cannot pass
# (the guest finds it by position), no shares.
{
  module = {
    networking.hostName = "fc-vm";
    microvm = {
      hypervisor = "firecracker";
      storeDiskType = "squashfs";
      balloon = true;
      volumes = [{ image = "var.img"; mountPoint = "/var"; size = 128; }];
      interfaces = [{ type = "tap"; id = "vm-fc"; mac = "02:00:00:00:02:01"; }];
      firecracker.driveIoEngine = "Sync";
      firecracker.extraConfig.logger = { level = "Info"; };
    };
  };
}
