# NixOS glue of a MicroVM guest: what the guest's initrd needs to find its disks and shares,
# the file systems (read-only store, writable overlay, volumes, shares), the command line and
# the store disk. Disabled with microvm.guest.enable = false.
{ config, lib, pkgs, ... }:

let
  mlib = import ../../lib { inherit lib; };
  cfg = config.microvm;
  hv = cfg.hypervisor;
  system = pkgs.stdenv.hostPlatform.system;
  # mount points as the guest mounts them ("/data/" is "/data": NixOS refuses the slash)
  mountAt = mlib.mountPoint;
  overlay = if cfg.writableStoreOverlay == null then null else mountAt cfg.writableStoreOverlay;
  toplevel = config.system.build.toplevel;

  serials = mlib.blockSerials hv;
  # disks in attachment order: the store disk first (when used), then the volumes
  diskLetter = n: builtins.elemAt lib.strings.lowerChars n;
  firstVolume = if cfg.storeOnDisk then 1 else 0;

  storeShares = lib.filter (s: s.source == "/nix/store") cfg.shares;
  roStore =
    if cfg.storeOnDisk then (if overlay == null then "/nix/store" else "/nix/.ro-store")
    else if storeShares != [ ] then mountAt (builtins.head storeShares).mountPoint
    else null;

  # is `path` the mount point `mountPoint` or below it?
  within = mountPoint: path:
    path != null && (path == mountPoint || lib.hasPrefix "${lib.removeSuffix "/" mountPoint}/" path);

  # the file systems' and transports' modules are boot.initrd.kernelModules, which a systemd
  # initrd loads in systemd-modules-load.service; a share has no device unit a mount could wait
  # for, so its mount (and the store disk's) is ordered after that explicitly
  afterModules = "x-systemd.after=systemd-modules-load.service";

  shareOptions = s:
    {
      "9p" = [ "trans=virtio" "version=9p2000.L" "msize=65536" afterModules ];
      virtiofs = [ "defaults" afterModules ];
    }.${s.proto}
    ++ lib.optional s.readOnly "ro"
    ++ lib.optional (s.proto == "virtiofs" && within (mountAt s.mountPoint) overlay) "userxattr";

  volumeDevice = i: v:
    if v.serial != null && serials then "/dev/disk/by-id/virtio-${v.serial}"
    else if v.label != null then "/dev/disk/by-label/${v.label}"
    else "/dev/vd${diskLetter (firstVolume + i)}";

  # the toplevel's path without its closure when the store disk carries that closure
  toplevelRef = if cfg.storeOnDisk then builtins.unsafeDiscardStringContext "${toplevel}" else "${toplevel}";

  registration = pkgs.closureInfo { rootPaths = [ toplevel ]; };
  registerClosure = cfg.registerClosure && config.nix.enable;
  registrationRef =
    if cfg.storeOnDisk then builtins.unsafeDiscardStringContext "${registration}" else "${registration}";

  console = mlib.consoleDevice { hypervisor = hv; inherit system; };

  # the type = "network" interfaces, each with what the host derived for it (null: nothing,
  # the host did not declare this VM inline) and whether it is configured statically
  networkIfaces = lib.concatLists (lib.imap0 (i: iface:
    let given = cfg.networkAddresses.${iface.network} or null; in
    lib.optional (iface.type == "network") {
      inherit iface given;
      at = "microvm.interfaces[${toString i}]";
      static = iface.addressing != "dhcp" && given != null;
      wantsStatic = iface.addressing == "static";
    }) cfg.interfaces);
in
{
  config = lib.mkIf cfg.guest.enable {
    assertions = [{
      assertion = cfg.storeOnDisk || storeShares != [ ];
      message = "microvm.storeOnDisk: false needs a microvm.shares entry with source = \"/nix/store\"";
    }] ++ map ({ at, iface, ... }: {
      assertion = false;
      message = "${at}.addressing = \"static\": no addresses for network ${iface.network} " +
        "from the host. Only a host that declares this VM inline (microvm.vms.NAME.config) " +
        "with microvm.host.networks.${iface.network} derives them; elsewhere use addressing " +
        "= \"dhcp\" (the host's DHCP server gives the same address).";
    }) (lib.filter (n: n.wantsStatic && n.given == null) networkIfaces);

    boot.loader.grub.enable = false;

    boot.initrd.kernelModules =
      [ "virtio_mmio" "virtio_pci" "virtio_blk" ]
      ++ lib.optionals (lib.any (s: s.proto == "9p") cfg.shares) [ "9pnet_virtio" "9p" ]
      ++ lib.optional (lib.any (s: s.proto == "virtiofs") cfg.shares) "virtiofs"
      ++ lib.optional cfg.storeOnDisk cfg.storeDiskType
      ++ lib.optional (overlay != null) "overlay"
      # hvc0 is vfkit's console; firecracker asks for a power-off with Ctrl-Alt-Del on the i8042
      ++ lib.optional (hv == "vfkit") "virtio_console"
      ++ lib.optional (hv == "firecracker" && lib.hasPrefix "x86_64-" system) "i8042";

    boot.initrd.availableKernelModules = [
      "virtio_net"
      "virtio_rng"
      "virtio_balloon"
      "virtio_console"
      "vmw_vsock_virtio_transport"
    ];

    # the GPU's driver loaded at boot, not on first use, when the VM has a display
    boot.kernelModules = lib.optionals cfg.graphics.enable [ "drm" "virtio_gpu" ];

    # a getty on the console the runner connects to its stdio
    systemd.services."serial-getty@${console}" = lib.mkIf (hv != "qemu" || cfg.qemu.serialConsole) {
      enable = true;
      wantedBy = [ "getty.target" ];
    };

    fileSystems = lib.mkMerge ([
      {
        "/" = lib.mkDefault {
          device = "rootfs";
          fsType = "tmpfs";
          options = [ "size=50%" "mode=0755" ];
          neededForBoot = true;
        };
      }

      (lib.mkIf cfg.storeOnDisk {
        ${roStore} = {
          device = if serials then "/dev/disk/by-id/virtio-${mlib.storeDiskSerial}" else "/dev/vda";
          fsType = cfg.storeDiskType;
          options = [ "ro" afterModules ];
          neededForBoot = true;
          noCheck = true;
        };
      })

      # the host's store is shared somewhere else: show it at /nix/store
      (lib.mkIf (!cfg.storeOnDisk && overlay == null && roStore != null && roStore != "/nix/store") {
        "/nix/store" = {
          device = roStore;
          fsType = "none";
          options = [ "bind" "ro" ];
          depends = [ roStore ];
          neededForBoot = true;
        };
      })

      (lib.mkIf (overlay != null && roStore != null) {
        "/nix/store" = {
          overlay = {
            lowerdir = [ roStore ];
            upperdir = "${overlay}/store";
            workdir = "${overlay}/work";
          };
          neededForBoot = true;
        };
      })
    ]
    ++ lib.imap0 (i: v: lib.mkIf (v.mountPoint != null) {
      ${mountAt v.mountPoint} = {
        device = volumeDevice i v;
        inherit (v) fsType;
      }
      # neededForBoot only where the guest needs it (microvm.nix sets true and nothing else): a
      # user's own `fileSystems.<path>.neededForBoot = true` is a definition, not a conflict
      // lib.optionalAttrs (within (mountAt v.mountPoint) overlay) { neededForBoot = true; }
      # NixOS wants a non-empty list (fileSystems.*.options is nonEmptyListOf; its default is
      # [ "defaults" ]): a writable volume leaves the option to that default
      // lib.optionalAttrs v.readOnly { options = [ "ro" ]; };
    }) cfg.volumes
    ++ map (s: {
      ${mountAt s.mountPoint} = {
        device = s.tag;
        fsType = s.proto;
        options = shareOptions s;
      } // lib.optionalAttrs (s.source == "/nix/store" || within (mountAt s.mountPoint) overlay) {
        neededForBoot = true;
      };
    }) cfg.shares);

    microvm.kernelParams =
      config.boot.kernelParams
      ++ [ "init=${toplevelRef}/init" ]
      ++ lib.optional registerClosure "regInfo=${registrationRef}/registration";

    boot.postBootCommands = lib.mkIf registerClosure ''
      if [[ "$(cat /proc/cmdline)" =~ regInfo=([^ ]*) ]]; then
        ${config.nix.package.out}/bin/nix-store --load-db < "''${BASH_REMATCH[1]}"
      fi
    '';

    microvm.initrdPath = lib.mkDefault "${config.system.build.initialRamdisk}/${config.system.boot.loader.initrdFile}";

    microvm.storeDisk = lib.mkIf cfg.storeOnDisk (lib.mkDefault (mlib.buildStoreDisk {
      inherit pkgs;
      inherit toplevel;
      type = cfg.storeDiskType;
      extraPaths = lib.optional registerClosure registration;
      erofsFlags = cfg.storeDiskErofsFlags;
      squashfsFlags = cfg.storeDiskSquashfsFlags;
    }));

    # a host id for ZFS and friends, from the machine id, as systemd derives one
    networking.hostId = lib.mkIf (cfg.machineId != null)
      (lib.mkDefault (builtins.substring 0 8 (lib.replaceStrings [ "-" ] [ "" ] cfg.machineId)));
    environment.etc."machine-id" = lib.mkIf (cfg.machineId != null) {
      text = lib.replaceStrings [ "-" ] [ "" ] cfg.machineId + "\n";
    };

    # an interface on a declared host network (type = "network"): configured by systemd-networkd,
    # matched by its MAC (never by interface type, which would also take a container's veths).
    # Static: the addresses, gateway, DNS and search domain the host derived (given by the host
    # module, microvm.networkAddresses); DHCP: the host's dnsmasq gives the same address, the
    # gateway, DNS and the search domain, and router advertisements the IPv6 prefix.
    systemd.network = lib.mkIf (networkIfaces != [ ]) {
      enable = lib.mkDefault true;
      networks = lib.listToAttrs (map ({ iface, static, given, ... }:
        lib.nameValuePair "10-microvm-${iface.network}" ({
          matchConfig.MACAddress = iface.mac;
        } // (if static then {
          address = lib.optional (given.ipv4 != null) "${given.ipv4}/${toString given.prefixLength4}"
            ++ lib.optional (given.ipv6 != null) "${given.ipv6}/64";
          gateway = lib.optional (given ? gateway4) given.gateway4
            ++ lib.optional (given ? gateway6) given.gateway6;
          dns = given.dns;
          domains = lib.optional (given.domain != null) given.domain;
          networkConfig = { DHCP = lib.mkDefault "no"; IPv6AcceptRA = lib.mkDefault false; };
        } else {
          networkConfig = { DHCP = lib.mkDefault "ipv4"; IPv6AcceptRA = lib.mkDefault true; };
        }))) networkIfaces);
    };
  };
}
