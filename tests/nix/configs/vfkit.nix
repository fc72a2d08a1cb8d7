# vfkit: an aarch64-linux guest run by a macOS host (vmHostPackages for aarch64-darwin), with
# virtiofs, user networking and graphics.
{
  system = "aarch64-linux";
  module = { pkgs, ... }: {
    networking.hostName = "vfkit-vm";
    microvm = {
      hypervisor = "vfkit";
      vmHostPackages = pkgs.forSystem "aarch64-darwin";
      shares = [{ tag = "work"; source = "/Users/alice/work"; mountPoint = "/work"; proto = "virtiofs"; }];
      interfaces = [{ type = "user"; id = "usernet"; mac = "02:00:00:00:07:01"; }];
      graphics = { enable = true; backend = "cocoa"; };
      vfkit.logLevel = "debug";
    };
  };
}
