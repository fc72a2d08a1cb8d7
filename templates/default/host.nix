# The host: your existing configuration, plus a network for the VM's tap interface.
{
  # boot.loader..., fileSystems..., hardware: keep what your host has.

  networking.useNetworkd = true;
  systemd.network.networks."20-microvm" = {
    matchConfig.Name = "vm-*";
    address = [ "10.0.0.1/24" ];
  };
}
