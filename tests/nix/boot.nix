# The guest the boot test builds and runs: QEMU with the store disk, nothing else.
{
  module = {
    networking.hostName = "nixboot";
    boot.kernelParams = [ "quiet" ];
    microvm.mem = 256;
  };
}
