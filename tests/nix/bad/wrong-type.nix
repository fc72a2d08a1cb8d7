{
  module = {
    networking.hostName = "bad-type";
    microvm.vcpu = "two";
  };
}
