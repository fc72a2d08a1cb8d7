# cloud-hypervisor with the host's store over virtiofs (no store disk), a writable overlay on a
# second virtiofs share, memory hotplug and a qcow2 volume.
{
  module = {
    networking.hostName = "ch-vm";
    microvm = {
      hypervisor = "cloud-hypervisor";
      mem = 2048;
      hotplugMem = 1024;
      hotpluggedMem = 512;
      writableStoreOverlay = "/nix/.rw-store";
      shares = [
        { tag = "ro-store"; source = "/nix/store"; mountPoint = "/nix/.ro-store"; proto = "virtiofs"; }
        { tag = "rw-store"; source = "rw-store"; mountPoint = "/nix/.rw-store"; proto = "virtiofs"; }
      ];
      volumes = [{ image = "disk.qcow2"; imageType = "qcow2"; autoCreate = false; mountPoint = "/disk"; serial = "disk"; }];
      interfaces = [{ type = "tap"; id = "vm-ch"; mac = "02:00:00:00:01:01"; }];
      virtiofsd.threadPoolSize = 4;
      cloud-hypervisor.extraArgs = [ "--pvpanic" ];
    };
  };
}
