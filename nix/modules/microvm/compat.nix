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
    [ "registerWithMachined" ]
    [ "graphics" "socket" ]
    [ "graphics" "vulkan" ]
    [ "graphics" "hostmem" ]
    [ "qemu" "pcieRootPorts" ]
    [ "cloud-hypervisor" "platformOEMStrings" ]
    [ "vfkit" "rosetta" "enable" ]
    [ "vfkit" "rosetta" "install" ]
    [ "vfkit" "rosetta" "ignoreIfMissing" ]
  ];
  isSet = path: (lib.getAttrFromPath path options.microvm).highestPrio < 1500;
in
{
  options.microvm = {
    registerWithMachined = unsupported types.bool false;
    graphics.socket = unsupported (types.nullOr types.str) null;
    graphics.vulkan = unsupported (types.nullOr (types.enum [ "venus" "drm_native_context" ])) null;
    graphics.hostmem = unsupported (types.nullOr types.str) null;
    qemu.pcieRootPorts = unsupported (types.listOf (types.attrsOf types.anything)) [ ];
    cloud-hypervisor.platformOEMStrings = unsupported (types.listOf types.str) [ ];
    vfkit.rosetta.enable = unsupported types.bool false;
    vfkit.rosetta.install = unsupported types.bool false;
    vfkit.rosetta.ignoreIfMissing = unsupported types.bool false;
  };

  config.warnings = map
    (path: "microvm.${lib.concatStringsSep "." path} is not supported by this project's runners and is ignored")
    (lib.filter isSet paths);
}
