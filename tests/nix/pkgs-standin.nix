# A tiny stand-in for the nixpkgs package set, enough for the MicroVM modules and nix/lib:
# runCommand on plain `derivation` with the host's bash, host tools linked into the store,
# closureInfo from exportReferencesGraph, and the generator run by the host's Python from a
# checkout. Builds need `--option sandbox false` (they read the host's /usr/bin).
{ lib
, system ? "x86_64-linux"
, python ? "python3"               # interpreter with click, jinja2 and jsonschema
, repo ? toString ../..            # checkout whose generator/ the stand-in generator runs
, hostKernel ? null                # a bootable kernel file to expose as the kernel package
, hostInitrd ? null                # an initrd file to expose as system.build.initialRamdisk
}:

let
  platform = {
    inherit system;
    isLinux = lib.hasSuffix "-linux" system;
    isDarwin = lib.hasSuffix "-darwin" system;
    isAarch64 = lib.hasPrefix "aarch64-" system;
    isx86_64 = lib.hasPrefix "x86_64-" system;
  };

  prelude = ''
    set -euo pipefail
    patchShebangs() {
      local f
      find "$@" -type f -perm -0100 -print0 | while IFS= read -r -d "" f; do
        sed -i -e '1s|^#! */usr/bin/env bash|#!/bin/bash|' "$f"
      done
    }
  '';

  runCommand = name: env: script:
    let
      nativeBuildInputs = env.nativeBuildInputs or [ ];
      drv = derivation ((removeAttrs env [ "nativeBuildInputs" "passthru" "meta" ]) // {
        inherit name system;
        builder = "/bin/bash";
        # end on a builtin: bash would exec a last external command in place of itself, and
        # Nix 2.8 without build users then reports that process as killed (seen with ln)
        args = [ "-c" (prelude + script + "\n:\n") ];
        PATH = lib.concatStringsSep ":" (map (p: "${p}/bin") nativeBuildInputs ++ [ "/usr/bin" "/bin" ]);
      });
    in
    drv // (env.passthru or { }) // { meta = env.meta or { }; };

  # a package whose bin/ links the named host executables (missing ones are skipped)
  # as nixpkgs' runCommandLocal: built on this machine, never substituted nor sent to a
  # remote builder
  runCommandLocal = name: env: runCommand name ({ preferLocalBuild = true; allowSubstitutes = false; } // env);

  hostTool = name: commands: runCommand name { } ''
    mkdir -p "$out/bin"
    for c in ${lib.escapeShellArgs commands}; do
      case "$c" in /*) src=$c ;; *) src=/usr/bin/$c ;; esac
      if [ -e "$src" ] && [ ! -e "$out/bin/''${src##*/}" ]; then ln -s "$src" "$out/bin/''${src##*/}"; fi
    done
  '';

  coreutils = [
    "basename" "cat" "chmod" "chown" "cp" "date" "dirname" "echo" "env" "head" "id" "ln" "ls"
    "mkdir" "mktemp" "mv" "printf" "readlink" "realpath" "rm" "rmdir" "seq" "sleep" "sort" "stat"
    "tail" "tee" "test" "timeout" "touch" "tr" "true" "false" "truncate" "uname" "wc"
  ];

  self = {
    inherit lib runCommand runCommandLocal;
    stdenv.hostPlatform = platform;
    buildPackages = self;
    path = ./fake-nixpkgs;
    forSystem = other: import ./pkgs-standin.nix { inherit lib python repo; system = other; };

    # nixpkgs' writeShellScriptBin: bin/NAME running TEXT with bash (meta.mainProgram = NAME)
    writeShellScriptBin = name: text: runCommand name {
      inherit text;
      passAsFile = [ "text" ];
      meta.mainProgram = name;
    } ''
      mkdir -p "$out/bin"
      { echo '#!/bin/bash'; cat "$textPath"; } > "$out/bin/${name}"
      chmod +x "$out/bin/${name}"
    '';

    closureInfo = { rootPaths }: runCommand "closure-info"
      {
        exportReferencesGraph = lib.concatLists (lib.imap0 (i: p: [ "closure-${toString i}" p ]) rootPaths);
      } ''
      mkdir -p "$out"
      # each graph file: path, deriver, reference count, references; repeated
      for g in closure-*; do
        while IFS= read -r path && IFS= read -r _deriver && IFS= read -r count; do
          echo "$path"
          for ((i = 0; i < count; i++)); do IFS= read -r _ref; done
        done < "$g"
      done | sort -u > "$out/store-paths"
      cat closure-* > "$out/registration"
    '';

    microvm-generator = runCommand "microvm-generator" { } ''
      mkdir -p "$out/bin"
      {
        echo '#!/bin/bash'
        echo 'export PYTHONPATH=${repo}/generator''${PYTHONPATH:+:$PYTHONPATH}'
        echo 'exec ${python} -m microvm.cli "$@"'
      } > "$out/bin/microvm"
      chmod +x "$out/bin/microvm"
    '';

    qemu = hostTool "qemu" [ "qemu-system-x86_64" "qemu-system-aarch64" ];
    qemu_kvm = hostTool "qemu-kvm" [ "qemu-system-x86_64" ];
    qemu-utils = hostTool "qemu-utils" [ "qemu-img" ];
    virtiofsd = hostTool "virtiofsd" [ "/usr/lib/qemu/virtiofsd" ];
    cloud-hypervisor = hostTool "cloud-hypervisor" [ "cloud-hypervisor" "ch-remote" ];
    firecracker = hostTool "firecracker" [ "firecracker" ];
    crosvm = hostTool "crosvm" [ "crosvm" ];
    kvmtool = hostTool "kvmtool" [ "lkvm" ];
    stratovirt = hostTool "stratovirt" [ "stratovirt" ];
    alioth = hostTool "alioth" [ "alioth" ];
    vfkit = hostTool "vfkit" [ "vfkit" ];
    e2fsprogs = hostTool "e2fsprogs" [ "/usr/sbin/mkfs.ext4" "/sbin/mkfs.ext4" ];
    xfsprogs = hostTool "xfsprogs" [ "/usr/sbin/mkfs.xfs" ];
    iproute2 = hostTool "iproute2" [ "/usr/sbin/ip" "/bin/ip" ];
    nftables = hostTool "nftables" [ "/usr/sbin/nft" ];
    dnsmasq = hostTool "dnsmasq" [ "/usr/sbin/dnsmasq" ];
    socat = hostTool "socat" [ "socat" ];
    curl = hostTool "curl" [ "curl" ];
    coreutils = hostTool "coreutils" coreutils;
    gnugrep = hostTool "gnugrep" [ "grep" ];
    util-linux = hostTool "util-linux" [ "script" ];
    erofs-utils = hostTool "erofs-utils" [ "mkfs.erofs" ];
    squashfs-tools = hostTool "squashfs-tools" [ "mksquashfs" ];
    squashfs-tools-ng = hostTool "squashfs-tools-ng" [ "gensquashfs" "rdsquashfs" ];

    # a kernel package: bzImage and Image in out, vmlinux in dev (placeholders unless hostKernel)
    linux = derivation {
      name = "linux-standin";
      inherit system;
      outputs = [ "out" "dev" ];
      builder = "/bin/bash";
      args = [ "-c" ''
        set -eu
        /bin/mkdir -p "$out" "$dev"
        ${if hostKernel == null then ''
          echo bzImage > "$out/bzImage"; echo Image > "$out/Image"; echo vmlinux > "$dev/vmlinux"
        '' else ''
          for f in "$out/bzImage" "$out/Image" "$dev/vmlinux"; do /bin/ln -s ${hostKernel} "$f"; done
        ''}
      '' ];
    };

    initrd = runCommand "initrd-standin" { } (if hostInitrd == null then ''
      mkdir -p "$out"; echo initrd > "$out/initrd"
    '' else ''
      mkdir -p "$out"; ln -s ${hostInitrd} "$out/initrd"
    '');
  };
in
self
