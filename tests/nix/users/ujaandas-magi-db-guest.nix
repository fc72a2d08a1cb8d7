# Source: github.com/ujaandas/magi, vms/db/microvm-configuration.nix,
# commit 82008a3c822eb7d6485b9aab45a5defe78819ffb.
# A database guest whose root file system is a volume (mountPoint "/"), with the host's store
# shared by virtiofs and a tap interface. Taken unchanged.
{
  microvm = {
    mem = 1024;
    vcpu = 1;

    volumes = [
      {
        mountPoint = "/";
        image = "root.img";
        size = 512;
      }
    ];

    shares = [
      {
        proto = "virtiofs";
        tag = "ro-store";
        source = "/nix/store";
        mountPoint = "/nix/.ro-store";
      }
    ];

    interfaces = [
      {
        type = "tap";
        id = "db";
        mac = "02:00:00:00:00:01";
      }
    ];
  };
}
