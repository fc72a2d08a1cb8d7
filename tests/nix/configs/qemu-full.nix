# QEMU with most options set: store disk with a writable overlay on a volume, volumes by
# serial, label and position, 9p and virtiofs shares, user and tap networking, balloon, vsock.
{
  module = { lib, ... }: {
    networking.hostName = "qemu-full";
    boot.kernelParams = [ "quiet" ];
    microvm = {
      vcpu = 2;
      mem = 1024;
      balloon = true;
      kernelParams = [ "loglevel=4" ];
      writableStoreOverlay = "/nix/.rw-store";
      volumes = [
        { image = "rw-store.img"; mountPoint = "/nix/.rw-store"; size = 2048; serial = "rw-store"; }
        { image = "data.img"; mountPoint = "/data"; size = 64; label = "data"; fsType = "xfs"; }
        { image = "/srv/images/scratch.img"; autoCreate = false; readOnly = true; direct = true; mountPoint = "/scratch"; }
      ];
      shares = [
        { tag = "home"; source = "/home/alice"; mountPoint = "/home/alice"; securityModel = "mapped"; }
        { tag = "config"; source = "config"; mountPoint = "/etc/vm-config"; proto = "virtiofs"; readOnly = true; cache = "never"; }
      ];
      interfaces = [
        { type = "user"; id = "qemu"; mac = "02:00:00:00:00:01"; }
        { type = "tap"; id = "vm-full"; mac = "02:00:00:00:00:02"; tap.vhost = true; }
      ];
      forwardPorts = [{ host.port = 2222; guest.port = 22; }];
      vsock.cid = 42;
      credentialFiles.token = "/run/secrets/token";
      machineId = "a67472e5-570e-5c8a-b18c-ae3c77701050";
      preStart = "echo starting";
      qemu.extraArgs = [ "-device" "virtio-serial-pci" ];
      binScripts.hello = "echo hello";
    };
  };
}
