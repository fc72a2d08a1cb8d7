{
  module = {
    networking.hostName = "bad-volumes";
    microvm.volumes = [
      { image = "a.img"; size = 8; serial = "disk"; mountPoint = "/a"; }
      { image = "b.img"; serial = "disk"; mountPoint = "/a/"; }
    ];
  };
}
