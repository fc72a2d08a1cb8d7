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
  # The flags mean what they mean in microvm.nix: words of the mkfs.erofs / gensquashfs
  # command line, joined as they are, so `$NIX_BUILD_CORES` in them is expanded by the builder.
  words = lib.concatStringsSep " ";
in
# runCommandLocal, as microvm.nix: the image is made from the closure, which is here already;
# a remote builder would need the whole closure copied to it and the image copied back
pkgs.runCommandLocal "microvm-store-disk.${type}"
  {
    nativeBuildInputs = [ (if type == "erofs" then build.erofs-utils else build.squashfs-tools-ng) ];
    passthru = { inherit closure; };
  }
  (''
    # one directory holding the closure's paths, as hard links where the store allows it
    mkdir store
    while read -r path; do
      if ! cp -al "$path" store/ 2>/dev/null; then
        rm -rf "store/''${path##*/}"
        cp -a "$path" store/
      fi
    done < ${closure}/store-paths
  '' + {
    erofs = ''
      mkfs.erofs ${words erofsFlags} -T0 --all-root "$out" store
    '';
    squashfs = ''
      gensquashfs ${words squashfsFlags} --pack-dir store --all-root --quiet "$out"
    '';
  }.${type})
