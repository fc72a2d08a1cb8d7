{
  module = {
    networking.hostName = "bad-option";
    microvm.vcpus = 2;
  };
}
