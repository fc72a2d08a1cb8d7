{
  module = {
    networking.hostName = "bad-fc";
    microvm.hypervisor = "firecracker";
    microvm.shares = [{ tag = "data"; source = "/srv/data"; mountPoint = "/data"; proto = "virtiofs"; }];
  };
}
