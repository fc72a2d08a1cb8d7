# crosvm: virtiofs share, macvtap networking, vsock, its sandbox directory.
{
  module = {
    networking.hostName = "crosvm-vm";
    microvm = {
      hypervisor = "crosvm";
      shares = [{ tag = "data"; source = "/srv/data"; mountPoint = "/data"; proto = "virtiofs"; }];
      interfaces = [{ type = "macvtap"; id = "vm-crosvm"; mac = "02:00:00:00:03:01"; macvtap = { link = "eth0"; mode = "bridge"; }; }];
      vsock.cid = 7;
      crosvm.pivotRoot = "/var/empty";
    };
  };
}
