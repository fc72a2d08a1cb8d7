# Source: github.com/THERAAB/nix-homelab, hosts/micro-server/system.nix,
# commit 575e81388ebec9d3baa460073ea15573d03b176a.
# A cloud-hypervisor guest with an extra kernel parameter (a passed-through Intel GPU) and a
# macvtap interface. Left out: networking.firewall (no microvm.* option; not in the stand-in
# NixOS) and the commented-out shares, fileSystems and services.
{...}: {
  microvm = {
    hypervisor = "cloud-hypervisor";
    kernelParams = ["i915.force_probe=4692"];
    interfaces = [
      {
        type = "macvtap";
        macvtap = {
          mode = "bridge";
          link = "enp3s0";
        };
        id = "micro-server";
        mac = "02:00:00:00:00:02";
      }
    ];
  };
  networking = {
    hostName = "micro-server";
  };
}
