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
  mkfsPackage = {
    ext2 = "e2fsprogs"; ext3 = "e2fsprogs"; ext4 = "e2fsprogs";
    xfs = "xfsprogs"; btrfs = "btrfs-progs"; f2fs = "f2fs-tools";
    vfat = "dosfstools"; fat = "dosfstools"; msdos = "dosfstools";
  };
  mkfsPackages = lib.unique (lib.concatMap
    (v: lib.optional (v.autoCreate && mkfsPackage ? ${v.fsType}) mkfsPackage.${v.fsType}) cfg.volumes);
  # virtiofs shares need a virtiofsd unless the hypervisor serves them itself
  usesVirtiofsd = lib.any (s: s.proto == "virtiofs") cfg.shares
    && mlib.capabilities.capabilities.${hv}.virtiofsd;
  usesHostNetwork = lib.any (i: i.type != "user") cfg.interfaces;

  runtimePackages =
    [ cfg.${hv}.package ]
    ++ lib.optional usesVirtiofsd cfg.virtiofsd.package
    ++ map (name: hostPkgs.${name}) mkfsPackages
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
  microvm = {
    hypervisor = hv;
    inherit (cfg) vcpu mem hugepageMem hotplugMem hotpluggedMem balloon initialBalloonMem
      deflateOnOOM cpu preStart extraArgsScript socket user kernelParams storeOnDisk
      storeDiskType writableStoreOverlay prettyProcnames machineId;
    optimize.enable = cfg.optimize.enable;
    kernel = mlib.kernelFile { kernel = cfg.kernel; hypervisor = hv; system = guestSystem; };
    initrdPath = orNull storePath cfg.initrdPath;
    storeDisk = orNull storePath cfg.storeDisk;
    volumes = map (v: {
      inherit (v) image serial direct readOnly label mountPoint autoCreate mkfsExtraArgs fsType imageType;
    } // lib.optionalAttrs (v.size != null) { inherit (v) size; }) cfg.volumes;
    shares = map (s: {
      inherit (s) tag source mountPoint proto socket securityModel readOnly cache posixAcl extraArgs;
    }) cfg.shares;
    interfaces = map (i: {
      inherit (i) type id mac bridge;
      macvtap = { inherit (i.macvtap) link mode; };
      tap = { inherit (i.tap) vhost; };
    }) cfg.interfaces;
    forwardPorts = map (f: {
      inherit (f) from proto;
      host = { inherit (f.host) address port; };
      guest = { inherit (f.guest) address port; };
    }) cfg.forwardPorts;
    devices = map (d: {
      inherit (d) bus path;
      qemu = { inherit (d.qemu) id bus deviceExtraArgs; };
    }) cfg.devices;
    vsock.cid = cfg.vsock.cid;
    graphics = { inherit (cfg.graphics) enable backend; };
    credentialFiles = lib.mapAttrs (_: hostPath) cfg.credentialFiles;
    virtiofsd = { inherit (cfg.virtiofsd) inodeFileHandles threadPoolSize group extraArgs; };
    qemu = { inherit (cfg.qemu) machine machineOpts extraArgs serialConsole; };
    cloud-hypervisor.extraArgs = cfg.cloud-hypervisor.extraArgs;
    firecracker = { inherit (cfg.firecracker) extraArgs driveIoEngine cpu extraConfig; };
    crosvm = { inherit (cfg.crosvm) extraArgs pivotRoot; };
    kvmtool.extraArgs = cfg.kvmtool.extraArgs;
    stratovirt.extraArgs = cfg.stratovirt.extraArgs;
    alioth.extraArgs = cfg.alioth.extraArgs;
    vfkit = { inherit (cfg.vfkit) extraArgs logLevel; };
  };
}
