# kvmtool: a read-write 9p share and user networking; no control socket is asked for.
{
  module = {
    networking.hostName = "kvmtool-vm";
    microvm = {
      hypervisor = "kvmtool";
      shares = [{ tag = "share"; source = "/srv/share"; mountPoint = "/mnt/share"; }];
      interfaces = [{ type = "user"; id = "usernet"; mac = "02:00:00:00:04:01"; }];
      kvmtool.extraArgs = [ "--rng" ];
    };
  };
}
