# The microvm.* options of a guest: the contract of vm.json (generator/microvm/schema/vm.schema.json)
# plus the few Nix-only options that pick packages and expose the built runner.
#
# Option names, types and defaults follow the JSON Schema one to one; tests/test_nix.py walks
# these declarations and compares them with the schema. An option whose default depends on
# other options carries a defaultText; every other default is the schema's default.
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption types literalExpression;
  mlib = import ../../lib { inherit lib; };
  cfg = config.microvm;
  hostName = config.networking.hostName;

  nonEmptyStr = types.addCheck types.str (s: s != "") // {
    name = "nonEmptyString";
    description = "non-empty string";
  };
  port = types.ints.between 1 65535;
  # upper bounds as in the schema: integers a hypervisor, truncate and bash can all take
  maxMiB = 16777216; # 16 TiB of guest memory
  memMiB = types.ints.between 0 maxMiB;
  # a package set (any nixpkgs; older ones lack the _type that types.pkgs checks)
  packageSet = lib.mkOptionType {
    name = "pkgs";
    description = "package set";
    check = builtins.isAttrs;
    merge = lib.mergeOneOption;
  };

  opt = type: default: description: mkOption { inherit type default description; };
  extraArgsOption = hv: opt (types.listOf types.str) [ ]
    "Extra command-line arguments appended to the ${hv} invocation, one argument per element.";

  volume = types.submodule {
    options = {
      image = mkOption {
        type = nonEmptyStr;
        description = "Path of the disk image on the host; a relative path is resolved against the VM's state directory.";
      };
      serial = opt (types.nullOr types.str) null
        "Serial number the guest sees (at most 20 bytes); the guest mounts the volume as /dev/disk/by-id/virtio-<serial>.";
      direct = opt types.bool false "Open the image with O_DIRECT, bypassing the host page cache.";
      readOnly = opt types.bool false "Attach the disk read-only.";
      label = opt (types.nullOr types.str) null
        "Filesystem label written when the image is created; without a serial the guest mounts the volume by this label.";
      mountPoint = opt (types.nullOr types.str) null
        "Absolute guest path to mount the volume at, or null to leave it unmounted.";
      size = opt (types.nullOr (types.ints.between 1 1073741824)) null
        "Size in MiB of an image created automatically (needed when autoCreate is true).";
      autoCreate = opt types.bool true
        "Create the image with a filesystem before start when it is missing; an existing image is never touched.";
      mkfsExtraArgs = opt (types.listOf types.str) [ ] "Extra arguments for mkfs when the image is created.";
      fsType = opt (types.strMatching "[a-z0-9][a-z0-9._-]*") "ext4"
        "Filesystem created on a new image and used to mount it in the guest.";
      imageType = opt (types.enum [ "raw" "qcow2" "vhd" "vhdx" ]) "raw"
        "Image format given to the hypervisor; only cloud-hypervisor reads the non-raw formats.";
    };
  };

  share = types.submodule ({ config, ... }: {
    options = {
      tag = mkOption {
        type = nonEmptyStr;
        description = "Tag the guest mounts the share by (virtiofs: at most 36 bytes).";
      };
      source = mkOption {
        type = nonEmptyStr;
        description = "Host directory to share; \"/nix/store\" shares the host's store instead of a store disk.";
      };
      mountPoint = mkOption {
        type = nonEmptyStr;
        description = "Absolute guest path the share is mounted at.";
      };
      proto = opt (types.enum [ "9p" "virtiofs" ]) "9p"
        "Protocol: 9p (inside the hypervisor) or virtiofs (one virtiofsd per share).";
      socket = mkOption {
        type = types.nullOr types.str;
        default = if config.proto == "virtiofs" then "${hostName}-virtiofs-${config.tag}.sock" else null;
        defaultText = literalExpression ''if proto == "virtiofs" then "''${hostName}-virtiofs-''${tag}.sock" else null'';
        description = "Unix socket of this share's virtiofsd, relative to the state directory (virtiofs only).";
      };
      securityModel = opt (types.enum [ "passthrough" "none" "mapped" "mapped-file" ]) "none"
        "9p security model.";
      readOnly = opt types.bool false "Share read-only.";
      cache = opt (types.enum [ "auto" "always" "metadata" "never" ]) "auto"
        "virtiofs cache policy; 9p ignores it.";
      posixAcl = opt types.bool true "Let virtiofsd handle POSIX ACLs (virtiofs only).";
      extraArgs = opt (types.listOf types.str) [ ] "Extra arguments for this share's virtiofsd.";
    };
  });

  interface = types.submodule {
    options = {
      type = mkOption {
        type = types.enum [ "user" "tap" "macvtap" "bridge" ];
        description = "user: NAT inside the hypervisor; tap; macvtap on a host link; bridge: a tap on a host bridge.";
      };
      id = mkOption {
        type = nonEmptyStr;
        description = "Interface name on the host (tap and macvtap: at most 15 bytes).";
      };
      mac = mkOption {
        type = types.str;
        description = "MAC address of the guest's interface, e.g. 02:00:00:00:00:01.";
      };
      macvtap.link = opt (types.nullOr types.str) null "Host interface the macvtap sits on (type = \"macvtap\").";
      macvtap.mode = opt (types.nullOr (types.enum [ "private" "vepa" "bridge" "passthru" "source" ])) null
        "macvtap mode (type = \"macvtap\").";
      bridge = opt (types.nullOr types.str) null "Host bridge the tap joins (type = \"bridge\").";
      tap.vhost = opt types.bool false "Use the host's vhost-net for packet processing (needs /dev/vhost-net).";
    };
  };

  forwardPort = types.submodule {
    options = {
      from = opt (types.enum [ "host" "guest" ]) "host"
        "host: a host port reaches a guest port; guest: a guest port reaches a host port.";
      proto = opt (types.enum [ "tcp" "udp" ]) "tcp" "Protocol forwarded.";
      host.address = opt types.str "" "Host IPv4 address; empty means any.";
      host.port = mkOption { type = port; description = "Host port."; };
      guest.address = opt types.str "" "Guest IPv4 address; empty means the guest's address.";
      guest.port = mkOption { type = port; description = "Guest port."; };
    };
  };

  device = types.submodule {
    options = {
      bus = mkOption {
        type = types.enum [ "pci" "usb" ];
        description = "Bus the host device sits on.";
      };
      path = mkOption {
        type = nonEmptyStr;
        description = "PCI address (0000:01:00.0) or QEMU usb-host properties (vendorid=0x1234,productid=0x5678).";
      };
      qemu.id = opt (types.nullOr types.str) null "QEMU device id.";
      qemu.bus = opt (types.nullOr types.str) null "QEMU bus the device is attached to.";
      qemu.deviceExtraArgs = opt (types.nullOr types.str) null "Extra QEMU device properties, comma-separated.";
    };
  };
in
{
  options.microvm = {
    # -- Nix only: not part of vm.json -------------------------------------------------------
    guest.enable = opt types.bool true
      "Configure this NixOS system as a MicroVM guest (file systems, initrd modules, store disk).";

    vmHostPackages = mkOption {
      type = packageSet;
      # an emulated CPU (microvm.cpu) usually means a guest of another architecture: the
      # host that runs it is the build platform (as in microvm.nix)
      default = if config.microvm.cpu == null then pkgs else pkgs.buildPackages;
      defaultText = literalExpression "if config.microvm.cpu == null then pkgs else pkgs.buildPackages";
      description = "Package set of the host that runs the VM: hypervisor, virtiofsd and tools come from it.";
    };

    runner = mkOption {
      type = types.lazyAttrsOf types.package;
      readOnly = true;
      description = "The runner package of this VM for each hypervisor, built by the generator.";
    };

    declaredRunner = mkOption {
      type = types.package;
      default = cfg.runner.${cfg.hypervisor};
      defaultText = literalExpression "config.microvm.runner.\${config.microvm.hypervisor}";
      description = "The runner for microvm.hypervisor: bin/microvm-run, bin/microvm-shutdown, share/microvm/*.";
    };

    # -- the contract: microvm.* of vm.json ---------------------------------------------------
    hypervisor = opt (types.enum mlib.hypervisors) "qemu" "Hypervisor that runs the VM.";
    vcpu = opt (types.ints.between 1 1024) 1 "Number of virtual CPUs.";
    mem = opt (types.ints.between 1 maxMiB) 512 "Memory in MiB.";
    hugepageMem = opt types.bool false "Back the guest memory with huge pages.";
    hotplugMem = opt memMiB 0
      "Hot-pluggable memory in MiB on top of mem (virtio-mem); 0 disables it.";
    hotpluggedMem = opt (types.nullOr memMiB) null
      "MiB of hotplugMem plugged at boot; null plugs all of it.";
    balloon = opt types.bool false "Give the VM a virtio balloon so the host can take memory back at runtime.";
    initialBalloonMem = opt memMiB 0 "MiB the balloon holds at boot.";
    deflateOnOOM = opt types.bool true "Let the guest deflate the balloon when it runs out of memory.";
    cpu = opt (types.nullOr types.str) null
      "CPU model to emulate; setting it makes QEMU emulate the CPU (TCG) instead of using KVM.";
    optimize.enable = opt types.bool true "Keep the runner's closure small (no GUI libraries without graphics).";
    preStart = opt types.lines "" "Shell commands microvm-run runs before it starts the hypervisor.";
    extraArgsScript = opt (types.nullOr types.str) null
      "Executable whose output (whitespace-separated words) is appended to the hypervisor's arguments at start.";
    socket = mkOption {
      type = types.nullOr types.str;
      default = if mlib.supports cfg.hypervisor "CONTROL_SOCKET" then "${hostName}.sock" else null;
      defaultText = literalExpression ''"''${hostName}.sock" (null for a hypervisor without a control socket)'';
      description = "Control socket of the hypervisor (QMP, REST API...); null disables shutdown and balloon requests.";
    };
    user = opt (types.nullOr types.str) null "User the hypervisor drops its privileges to, or null.";
    kernel = mkOption {
      type = types.either types.package types.path;
      default = config.boot.kernelPackages.kernel;
      defaultText = literalExpression "config.boot.kernelPackages.kernel";
      description = ''
        Kernel to boot: a kernel package (the file the hypervisor boots is picked from it: bzImage,
        vmlinux or Image) or the path of a kernel image file. Prefer setting boot.kernelPackages.
      '';
    };
    initrdPath = opt (types.nullOr types.path) null
      "Path of the initrd; the guest module sets it to the NixOS initrd.";
    kernelParams = opt (types.listOf types.str) [ ]
      "Kernel command line; the guest module adds boot.kernelParams and init=<toplevel>/init.";
    storeOnDisk = mkOption {
      type = types.bool;
      default = !lib.any (s: s.source == "/nix/store") cfg.shares;
      defaultText = literalExpression ''!(any share has source = "/nix/store")'';
      description = "Boot with the read-only store disk image (storeDisk) rather than a share of the host's /nix/store.";
    };
    storeDisk = opt (types.nullOr types.path) null
      "Read-only store disk image; the guest module builds it from the system closure when storeOnDisk is true.";
    storeDiskType = opt (types.enum [ "erofs" "squashfs" ]) "erofs" "Filesystem of the store disk.";
    writableStoreOverlay = opt (types.nullOr types.str) null
      "Guest path of a writable overlay over /nix/store (on a volume, share or tmpfs), or null.";
    volumes = opt (types.listOf volume) [ ] "Disk images attached to the VM.";
    shares = opt (types.listOf share) [ ] "Host directories shared with the guest.";
    interfaces = opt (types.listOf interface) [ ] "Network interfaces.";
    forwardPorts = opt (types.listOf forwardPort) [ ] "Ports forwarded over user networking.";
    devices = opt (types.listOf device) [ ] "PCI and USB devices passed through from the host.";
    vsock.cid = opt (types.nullOr types.int) null "Guest context id of a vsock device (3 to 4294967294), or null.";
    graphics.enable = opt types.bool false "Give the VM a display.";
    graphics.backend = opt (types.enum [ "gtk" "cocoa" "headless" ]) "gtk" "Display backend.";
    credentialFiles = opt (types.attrsOf types.path) { }
      "systemd credentials for the guest: credential name -> file on the host.";
    prettyProcnames = opt types.bool true "Name the hypervisor process microvm@<hostName>.";
    machineId = mkOption {
      type = types.nullOr types.str;
      # microvm.nix's derivation, so a VM keeps its machine id when it moves here (the
      # generator derives the same for a null machineId: config.derived_machine_id)
      default =
        let h = builtins.hashString "sha256" "microvm.nix:${hostName}";
        in lib.concatMapStringsSep "-" ({ at, len }: builtins.substring at len h)
          [ { at = 0; len = 8; } { at = 8; len = 4; } { at = 12; len = 4; } { at = 16; len = 4; } { at = 20; len = 12; } ];
      defaultText = literalExpression ''"<a UUID from the SHA-256 of \"microvm.nix:''${networking.hostName}\">"'';
      description = ''
        UUID of the VM (8-4-4-4-12 hex digits). The guest's /etc/machine-id (and, by default,
        networking.hostId); hypervisors that can pass it to the firmware do (QEMU: SMBIOS system
        UUID, cloud-hypervisor: platform uuid). Derived from the host name by default, as
        microvm.nix derives it.
      '';
    };

    virtiofsd = {
      inodeFileHandles = opt (types.nullOr (types.enum [ "never" "prefer" "mandatory" ])) "prefer"
        "virtiofsd --inode-file-handles mode.";
      threadPoolSize = opt (types.nullOr (types.ints.between 0 1024)) null
        "virtiofsd thread pool size; null keeps virtiofsd's default.";
      group = opt (types.nullOr types.str) "kvm" "Group owning the virtiofsd sockets.";
      extraArgs = opt (types.listOf types.str) [ ] "Extra arguments for every virtiofsd.";
    };

    qemu = {
      machine = opt (types.nullOr types.str) null
        "QEMU machine type; null picks microvm on x86_64 (q35 when PCI is needed) and virt on aarch64.";
      machineOpts = opt (types.nullOr (types.attrsOf types.str)) null
        "Machine properties that replace the generated ones.";
      extraArgs = extraArgsOption "qemu";
      serialConsole = opt types.bool true "Connect the guest's serial console to microvm-run's stdio.";
    };
    cloud-hypervisor.extraArgs = extraArgsOption "cloud-hypervisor";
    firecracker = {
      extraArgs = extraArgsOption "firecracker";
      driveIoEngine = opt (types.enum [ "Async" "Sync" ]) "Async" "Block device I/O engine.";
      cpu = opt (types.nullOr (types.attrsOf types.anything)) null "Custom CPU template (cpu-config object), or null.";
      extraConfig = opt (types.attrsOf types.anything) { }
        "Extra top-level sections merged into firecracker's generated config file.";
    };
    crosvm = {
      extraArgs = extraArgsOption "crosvm";
      pivotRoot = opt (types.nullOr types.str) null "Directory crosvm pivots into for its sandbox.";
    };
    kvmtool.extraArgs = extraArgsOption "kvmtool";
    stratovirt.extraArgs = extraArgsOption "stratovirt";
    alioth.extraArgs = extraArgsOption "alioth";
    vfkit = {
      extraArgs = extraArgsOption "vfkit";
      logLevel = opt (types.nullOr (types.enum [ "debug" "info" "error" ])) "info" "vfkit log level.";
    };
  };
}
