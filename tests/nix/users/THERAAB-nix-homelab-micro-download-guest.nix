# Source: github.com/THERAAB/nix-homelab, systems/x86_64-linux/micro-download/hardware.nix,
# commit f8d5efb236127e24277a6d135a82e467bdf82ae5.
# A guest with a macvtap interface named after its host name and a virtiofs share of its
# secrets. Taken unchanged (the repository's other guest modules are left out).
{config, ...}: {
  networking.hostName = "micro-download";
  microvm = {
    interfaces = [
      {
        type = "macvtap";
        macvtap = {
          mode = "bridge";
          link = "enp3s0";
        };
        id = config.networking.hostName;
        mac = "02:00:00:00:00:05";
      }
    ];
    shares = [
      {
        proto = "virtiofs";
        source = "/run/secrets/${config.networking.hostName}";
        mountPoint = "/run/secrets";
        tag = "secrets";
      }
    ];
  };
}
