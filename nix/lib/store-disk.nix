# Build the read-only store disk: an erofs or squashfs image of a system closure whose root
# holds the store paths (the guest mounts it on /nix/store or under the writable overlay).
{ lib }:

{ pkgs
, toplevel
, type ? "erofs"                 # "erofs" or "squashfs"
, extraPaths ? [ ]               # more roots, e.g. the closure registration
, erofsFlags ? [ ]
, squashfsFlags ? [ ]
}:

let
  closure = pkgs.closureInfo { rootPaths = [ toplevel ] ++ extraPaths; };
  build = pkgs.buildPackages;
  args = lib.escapeShellArgs;
in
pkgs.runCommand "microvm-store-disk.${type}"
  {
    nativeBuildInputs = [ (if type == "erofs" then build.erofs-utils else build.squashfs-tools) ];
    passthru = { inherit closure; };
  }
  ({
    # mkfs.erofs packs one directory: gather the paths, as hard links where the store allows it
    erofs = ''
      mkdir store
      while read -r path; do
        if ! cp -al "$path" store/ 2>/dev/null; then
          rm -rf "store/''${path##*/}"
          cp -a "$path" store/
        fi
      done < ${closure}/store-paths
      mkfs.erofs ${args erofsFlags} -T0 --all-root "$out" store
    '';
    # mksquashfs puts each source directory at the image root under its own name
    squashfs = ''
      mapfile -t paths < ${closure}/store-paths
      mksquashfs "''${paths[@]}" "$out" -all-root -no-recovery -quiet ${args squashfsFlags}
    '';
  }.${type})
