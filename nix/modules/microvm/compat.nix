# Options of the established microvm.* interface that this project does not implement yet.
# They are declared so that existing configurations keep evaluating; a value other than the
# default is reported as a warning, never silently dropped.
{ config, lib, options, ... }:

let
  inherit (lib) mkOption types;
  unsupported = type: default: mkOption {
    inherit type default;
    description = "Accepted for compatibility; this project's runners ignore it (a warning says so when set).";
  };
  paths = [
    [ "bootDisk" ]
  ];
  isSet = path: (lib.getAttrFromPath path options.microvm).highestPrio < 1500;
in
{
  options.microvm = {
    # a disk image with kernel and initrd, for hypervisors that cannot boot a kernel directly
    # (every hypervisor here can)
    bootDisk = unsupported (types.nullOr types.path) null;

    # Nix only (a package): crosvm's GPU device for graphics on crosvm (and cloud-hypervisor);
    # its bin goes on the runner's PATH (nix/lib/document.nix). Declared here because
    # options.nix's microvm.graphics group comes whole from the schema.
    graphics.crosvmPackage = mkOption {
      type = types.nullOr types.package;
      default = config.microvm.vmHostPackages.crosvm or null;
      defaultText = lib.literalExpression "config.microvm.vmHostPackages.crosvm";
      description = "crosvm whose GPU device (`crosvm device gpu`) gives the VM its display (microvm.graphics) where the hypervisor takes a vhost-user GPU; on the runner's PATH.";
    };

    vsock.ssh.enable = lib.mkEnableOption ''
      an SSH server in the guest that the host reaches over vsock (`microvm ssh NAME`, or
      `ssh vsock/CID` with systemd's ssh proxy); needs microvm.vsock.cid
    '';
  };

  imports = [
    (lib.mkRemovedOptionModule [ "microvm" "balloonMem" ]
      "microvm.balloon (a boolean) turns the balloon device on; size it at run time with microvm-balloon or `microvm balloon NAME MIB`.")
  ];

  config = lib.mkMerge [
    {
      warnings = map
        (path: "microvm.${lib.concatStringsSep "." path} is not supported by this project's runners and is ignored")
        (lib.filter isSet paths);
    }
    (lib.mkIf config.microvm.vsock.ssh.enable {
      assertions = [{
        assertion = config.microvm.vsock.cid != null;
        message = "microvm.vsock.ssh.enable: needs microvm.vsock.cid (the guest's vsock address)";
      }];
      # systemd's ssh generator gives sshd a socket on vsock port 22 when vsock is there
      services.openssh.enable = true;
    })
  ];
}
