# stratovirt on aarch64: the kernel is the package's Image; tap networking.
{
  system = "aarch64-linux";
  module = {
    networking.hostName = "stratovirt-vm";
    microvm = {
      hypervisor = "stratovirt";
      vcpu = 2;
      interfaces = [{ type = "tap"; id = "vm-strato"; mac = "02:00:00:00:05:01"; }];
      stratovirt.extraArgs = [ "-D" ];
    };
  };
}
