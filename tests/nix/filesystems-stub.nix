# A stand-in for NixOS's `fileSystems` (nixos/modules/tasks/filesystems.nix, stage-1.nix's
# neededForBoot, tasks/filesystems/overlayfs.nix), with the same option types and checks, so
# that a definition NixOS would refuse fails here too: an empty `options` list, a mount point
# with a trailing slash, an overlay without its workdir. Written for the tests from those
# modules' documented interface; what the real modules do at boot (fstab, initrd units) is not
# modelled.
{ config, lib, ... }:

let
  inherit (lib) mkOption types;

  blank = s: builtins.match "[ \t\n]*" s != null;
  nonEmptyStr = types.addCheck types.str (s: !blank s) // { description = "non-empty string"; };
  noTrailingSlash = types.addCheck types.str (s: !blank s && builtins.match ".+/" s == null)
    // { description = "non-empty string without trailing slash"; };

  # NixOS's utils.fsNeededForBoot: what the initrd mounts
  bootPaths = [ "/" "/nix" "/nix/store" "/var" "/var/log" "/var/lib" "/var/lib/nixos" "/etc" "/usr" ];
  neededForBoot = fs: fs.neededForBoot || builtins.elem fs.mountPoint bootPaths;

  fileSystem = { name, config, ... }: {
    options = {
      enable = mkOption { type = types.bool; default = true; };
      mountPoint = mkOption { type = noTrailingSlash; default = name; };
      device = mkOption { type = types.nullOr nonEmptyStr; default = null; };
      fsType = mkOption { type = nonEmptyStr; default = "auto"; };
      options = mkOption { type = types.nonEmptyListOf nonEmptyStr; default = [ "defaults" ]; };
      depends = mkOption { type = types.listOf noTrailingSlash; default = [ ]; };
      label = mkOption { type = types.nullOr nonEmptyStr; default = null; };
      autoFormat = mkOption { type = types.bool; default = false; };
      autoResize = mkOption { type = types.bool; default = false; };
      noCheck = mkOption { type = types.bool; default = false; };
      neededForBoot = mkOption { type = types.bool; default = false; };
      overlay = {
        lowerdir = mkOption { type = types.nullOr (types.nonEmptyListOf types.str); default = null; };
        upperdir = mkOption { type = types.nullOr types.str; default = null; };
        # (NixOS declares no default either)
        workdir = mkOption { type = types.nullOr types.str; };
        useStage1BaseDirectories = mkOption { type = types.bool; default = true; };
      };
    };
    config = lib.mkMerge [
      { device = lib.mkIf (builtins.elem config.fsType [ "proc" "sysfs" "tmpfs" "ramfs" "devtmpfs" "devpts" ])
          (lib.mkDefault config.fsType); }
      { device = lib.mkIf (config.label != null) (lib.mkDefault "/dev/disk/by-label/${config.label}"); }
      { options = lib.mkIf (neededForBoot config) [ "x-initrd.mount" ]; }
      (lib.mkIf (config.overlay.lowerdir != null) {
        fsType = "overlay";
        device = lib.mkDefault "overlay";
        depends = config.overlay.lowerdir
          ++ lib.optionals (config.overlay.upperdir != null) [ config.overlay.upperdir config.overlay.workdir ];
        options = [ "lowerdir=${lib.concatStringsSep ":" config.overlay.lowerdir}" ]
          ++ lib.optionals (config.overlay.upperdir != null)
            [ "upperdir=${config.overlay.upperdir}" "workdir=${config.overlay.workdir}" ];
      })
    ];
  };

  overlays = lib.filter (fs: fs.overlay.lowerdir != null) (lib.attrValues config.fileSystems);
in
{
  options.fileSystems = mkOption {
    type = types.attrsOf (types.submodule fileSystem);
    default = { };
    apply = lib.filterAttrs (_: fs: fs.enable);
  };

  config.assertions =
    map (fs: {
      assertion = fs.label != null -> fs.device == "/dev/disk/by-label/${fs.label}";
      message = "fileSystems.\"${fs.mountPoint}\": label and device are both set";
    }) (lib.attrValues config.fileSystems)
    ++ lib.concatMap (fs: [
      {
        assertion = (fs.overlay.upperdir == null) == (fs.overlay.workdir == null);
        message = "fileSystems.\"${fs.mountPoint}\": an overlay's upperdir and workdir go together";
      }
      {
        assertion = fs.overlay.upperdir == null -> lib.length fs.overlay.lowerdir >= 2;
        message = "fileSystems.\"${fs.mountPoint}\": a read-only overlay needs two lowerdirs";
      }
      {
        assertion = neededForBoot fs && fs.overlay.upperdir == null -> config.boot.initrd.systemd.enable;
        message = "fileSystems.\"${fs.mountPoint}\": a read-only overlay in the initrd needs the systemd initrd";
      }
    ]) overlays;
}
