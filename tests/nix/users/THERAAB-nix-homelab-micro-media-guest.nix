# Source: github.com/THERAAB/nix-homelab, hosts/micro-media/microvm.nix,
# commit 4b3a7fc95f37aaeaebf06935124345e2032c8275.
# A media guest: a macvtap interface on the host's NIC, the host's integrated GPU passed
# through (PCI), virtiofs shares under the VM's state directory. Taken unchanged (the repository
# imports it into the guest with its other modules, left out).
{config, ...}: {
  microvm = {
    mem = 8192;
    interfaces = [
      {
        type = "macvtap";
        macvtap = {
          mode = "bridge";
          link = "enp3s0";
        };
        id = config.networking.hostName;
        mac = "02:00:00:00:00:01";
      }
    ];
    devices = [
      {
        bus = "pci";
        path = "0000:00:02.0";
      }
    ];
    shares = [
      {
        proto = "virtiofs";
        source = "/run/secrets";
        mountPoint = "/run/secrets";
        tag = "secrets"; #TODO: remove
      }
      {
        proto = "virtiofs";
        source = "/var/lib/microvms/${config.networking.hostName}/storage/etc/ssh"; #TODO: share
        mountPoint = "/etc/ssh";
        tag = "ssh";
      }
      {
        proto = "virtiofs";
        source = "/var/lib/microvms/${config.networking.hostName}/storage/var/lib";
        mountPoint = "/var/lib";
        tag = "var-lib";
      }
    ];
  };
}
