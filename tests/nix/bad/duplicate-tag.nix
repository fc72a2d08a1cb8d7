{
  module = {
    networking.hostName = "bad-tag";
    microvm.shares = [
      { tag = "data"; source = "/srv/a"; mountPoint = "/a"; }
      { tag = "data"; source = "/srv/b"; mountPoint = "/b"; }
    ];
  };
}
