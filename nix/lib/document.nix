# The vm.json document of an evaluated guest: its microvm.* options plus the values NixOS
# computes (host name, kernel file, initrd, command line, toplevel, tool paths).
# { config, pkgs } -> attribute set; builtins.toJSON of it is what the generator reads.
{ lib, mlib }:

{ config, pkgs }:

let
  cfg = config.microvm;
  hv = cfg.hypervisor;
  hostPkgs = cfg.vmHostPackages;
  guestSystem = pkgs.stdenv.hostPlatform.system;
  orNull = f: x: if x == null then null else f x;
  # store objects (packages, path literals of kernels and images) become store paths
  storePath = x: "${x}";
  # credential files stay where they are: a secret must not be copied into the store
  hostPath = x: toString x;

  bin = p: "${lib.getBin p}/bin";

  # the options as the options hold them, by the plan (./data.nix `document`)
  # (builtins.intersectAttrs takes the leaves without a function call each)
  fromOptions = plan: value:
    removeAttrs
      (builtins.intersectAttrs plan.leaves value
        // builtins.mapAttrs (name: p: fromOptions p value.${name}) plan.groups
        // builtins.mapAttrs (name: p: map (fromOptions p) value.${name}) plan.items)
      (builtins.filter (name: value.${name} == null) plan.omit);
  mkfsPackage = {
    ext2 = "e2fsprogs"; ext3 = "e2fsprogs"; ext4 = "e2fsprogs";
    xfs = "xfsprogs"; btrfs = "btrfs-progs"; f2fs = "f2fs-tools";
    vfat = "dosfstools"; fat = "dosfstools"; msdos = "dosfstools";
  };
  mkfsPackages = lib.unique (lib.concatMap
    (v: lib.optional (v.autoCreate && mkfsPackage ? ${v.fsType}) mkfsPackage.${v.fsType}) cfg.volumes);
  # a volume made in another format than raw is written by qemu-img (generator/microvm/runner.py)
  convertsVolumes = lib.any (v: v.autoCreate && v.imageType != "raw") cfg.volumes;
  # virtiofs shares need a virtiofsd unless the hypervisor serves them itself
  usesVirtiofsd = lib.any (s: s.proto == "virtiofs") cfg.shares
    && mlib.capabilities.capabilities.${hv}.virtiofsd;
  usesGpuDaemon = cfg.graphics.enable && mlib.capabilities.capabilities.${hv}.gpuDaemon;
  usesHostNetwork = lib.any (i: i.type != "user") cfg.interfaces;

  runtimePackages =
    [ cfg.${hv}.package ]
    ++ lib.optional usesVirtiofsd cfg.virtiofsd.package
    # crosvm's GPU device, which the runner starts for graphics (hypervisors/base.py GpuDaemon)
    ++ lib.optional (usesGpuDaemon && cfg.graphics.crosvmPackage != null) cfg.graphics.crosvmPackage
    ++ map (name: hostPkgs.${name}) mkfsPackages
    ++ lib.optional convertsVolumes hostPkgs.qemu-utils
    ++ lib.optional (usesHostNetwork && hostPkgs.stdenv.hostPlatform.isLinux) hostPkgs.iproute2
    ++ [ hostPkgs.socat hostPkgs.curl hostPkgs.coreutils hostPkgs.gnugrep ]
    # `script` gives alioth a pseudo-terminal when stdin is none (hypervisors/alioth.py)
    ++ lib.optional (hv == "alioth") hostPkgs.util-linux;
in
{
  formatVersion = 1;
  hostName = config.networking.hostName;
  system = hostPkgs.stdenv.hostPlatform.system;
  # without systemSymlink the runner names the toplevel but does not keep its closure
  toplevel =
    if cfg.systemSymlink then storePath config.system.build.toplevel
    else builtins.unsafeDiscardStringContext (storePath config.system.build.toplevel);
  runtimePath = lib.unique (map bin runtimePackages);
  # every option the schema declares, as the options hold it (nix/lib/options.nix declared them
  # from the same schema); an option that is neither required nor defaulted is left out while
  # null, as a hand-written document leaves it out, and so are the other hypervisors' settings
  # (./data.nix `document`)
  microvm = fromOptions (import ./data.nix).document.${hv} cfg // {
    # the file the hypervisor boots, and store objects as store paths
    kernel = mlib.kernelFile { kernel = cfg.kernel; hypervisor = hv; system = guestSystem; };
    initrdPath = orNull storePath cfg.initrdPath;
    storeDisk = orNull storePath cfg.storeDisk;
    # credential files stay where they are: a secret must not be copied into the store
    credentialFiles = lib.mapAttrs (_: hostPath) cfg.credentialFiles;
  };
}
