# alioth: bridge networking, no control socket (alioth has none, so the default is null).
{
  module = {
    networking.hostName = "alioth-vm";
    microvm = {
      hypervisor = "alioth";
      interfaces = [{ type = "bridge"; id = "vm-alioth"; mac = "02:00:00:00:06:01"; bridge = "br0"; }];
    };
  };
}
