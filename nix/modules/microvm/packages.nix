# Nix-only options: which packages a runner uses, what it contains beyond the generator's tree,
# and how the store disk is built. None of them is part of vm.json.
{ config, lib, ... }:

let
  inherit (lib) mkOption types literalExpression;
  cfg = config.microvm;
  hostPkgs = cfg.vmHostPackages;
  # the guest kernel's version (packing features of the store disk's file system need it)
  kernelAtLeast = lib.versionAtLeast (config.boot.kernelPackages.kernel.version or "0");
  package = attr: mkOption {
    type = types.package;
    default = hostPkgs.${attr};
    defaultText = literalExpression "config.microvm.vmHostPackages.${attr}";
    description = "Package providing ${attr} for the runner (its bin directory goes on the runner's PATH).";
  };
in
{
  options.microvm = {
    qemu.package = mkOption {
      type = types.package;
      # qemu_kvm has only the host's system emulator; an emulated CPU may need another one
      default = if cfg.cpu == null && hostPkgs.stdenv.hostPlatform.isLinux then hostPkgs.qemu_kvm else hostPkgs.qemu;
      defaultText = literalExpression "if cpu == null on Linux then vmHostPackages.qemu_kvm else vmHostPackages.qemu";
      description = "QEMU package for the runner.";
    };
    # graphics need cloud-hypervisor's GPU build (microvm.nix's overlay names it
    # cloud-hypervisor-graphics), where the package set has it
    cloud-hypervisor.package = package "cloud-hypervisor" // {
      default =
        if cfg.graphics.enable then hostPkgs.cloud-hypervisor-graphics or hostPkgs.cloud-hypervisor
        else hostPkgs.cloud-hypervisor;
      defaultText = literalExpression
        "if graphics.enable then vmHostPackages.cloud-hypervisor-graphics (where it exists) else vmHostPackages.cloud-hypervisor";
    };
    firecracker.package = package "firecracker";
    crosvm.package = package "crosvm";
    kvmtool.package = package "kvmtool";
    stratovirt.package = package "stratovirt";
    alioth.package = package "alioth";
    vfkit.package = package "vfkit";
    virtiofsd.package = package "virtiofsd";

    binScripts = mkOption {
      type = types.attrsOf types.lines;
      default = { };
      description = ''
        Scripts in the runner's bin/ directory: name -> bash commands (run with set -euo
        pipefail). A name the generator already uses (tap-up, tap-down, macvtap-up, ...) extends
        that script: these lines run after the generated ones. bin/microvm-run ends by starting
        the hypervisor and cannot be extended (use microvm.preStart or microvm.extraArgsScript).
      '';
    };

    systemSymlink = mkOption {
      type = types.bool;
      default = !cfg.storeOnDisk;
      defaultText = literalExpression "!config.microvm.storeOnDisk";
      description = ''
        Make the runner refer to the guest's toplevel (share/microvm/toplevel names it), so the
        whole system closure stays alive and is copied with the runner. With a store disk the
        image already holds that closure, and the runner refers only to the image.
      '';
    };

    storeDiskErofsFlags = mkOption {
      type = types.listOf types.str;
      default = [ "-zlz4hc" ]
        ++ lib.optional (kernelAtLeast "5.16") "-Eztailpacking"
        ++ lib.optional (kernelAtLeast "6.1") "-Efragments";
      defaultText = literalExpression ''
        [ "-zlz4hc" ]
        ++ lib.optional (kernelAtLeast "5.16") "-Eztailpacking"
        ++ lib.optional (kernelAtLeast "6.1") "-Efragments"'';
      description = ''
        mkfs.erofs arguments for the store disk (as in microvm.nix: words of the command line,
        so shell variables of the builder expand). The packing features are only turned on for
        guest kernels that can read them (tail packing from 5.16, fragments from 6.1).
      '';
    };

    storeDiskSquashfsFlags = mkOption {
      type = types.listOf types.str;
      default = [ "-c" "zstd" "-j" "$NIX_BUILD_CORES" ];
      description = ''
        gensquashfs (squashfs-tools-ng) arguments for the store disk, as in microvm.nix: e.g.
        `[ "-c" "xz" ]`; words of the command line, so `$NIX_BUILD_CORES` expands.
      '';
    };

    registerClosure = mkOption {
      type = types.bool;
      default = cfg.guest.enable;
      defaultText = literalExpression "config.microvm.guest.enable";
      description = ''
        Register the system closure in the guest's Nix database at boot (when nix.enable), so
        nix inside the VM knows the paths of the read-only store.
      '';
    };
  };
}
