{
  module = {
    networking.hostName = "bad-forward";
    microvm.interfaces = [{ type = "tap"; id = "vm-a"; mac = "02:00:00:00:00:01"; }];
    microvm.forwardPorts = [{ host.port = 2222; guest.port = 22; }];
  };
}
