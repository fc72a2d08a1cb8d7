# The stand-in package set for evaluating upstream microvm.nix's runners: this project's
# stand-in (../pkgs-standin.nix) plus the attributes upstream's runner code reads (package
# versions, qemu's configure flags, writers). Nothing is built: only store paths and file
# contents are compared.
#
# Files the runners write with pkgs.writeText / pkgs.writers.writeJSON become a marker string
# `@file:NAME@CONTENT@end@` in place of their store path, so the differential can read the
# content (firecracker's config file) from the command line.
{ lib
, system ? "x86_64-linux"
, python ? "python3"
, repo ? toString ../../..
}:

let
  base = import ../pkgs-standin.nix { inherit lib system python repo; };
  arch = lib.head (lib.splitString "-" system);
  platform = base.stdenv.hostPlatform // {
    linux-kernel.target = if arch == "x86_64" then "bzImage" else "Image";
  };
  # a package with what upstream's runner code reads from it; override* return it unchanged
  pkg = drv: extra:
    let self = drv // extra // {
      override = _: self;
      overrideAttrs = _: self;
      meta = (drv.meta or { }) // (extra.meta or { });
    };
    in self;
  tool = name: base.runCommand name { } "mkdir -p $out/bin";
  marker = name: content: "@file:${name}@${content}@end@";

  self = base // {
    _type = "pkgs";  # what types.pkgs (microvm.vmHostPackages) checks
    stdenv = { hostPlatform = platform; targetPlatform = platform; isLinux = platform.isLinux; };
    buildPackages = self;
    forSystem = other: import ./pkgs.nix { inherit lib python repo; system = other; };

    writeText = name: text: marker name text;
    writers.writeJSON = name: value: marker name (builtins.toJSON value);

    linux = base.linux // { version = "6.12.60"; };

    # nixpkgs builds QEMU with seccomp on Linux (seccompSupport ? stdenv.hostPlatform.isLinux)
    qemu = pkg base.qemu { version = "10.1.2"; configureFlags = lib.optional platform.isLinux "--enable-seccomp"; };
    qemu_kvm = pkg base.qemu_kvm { version = "10.1.2"; configureFlags = lib.optional platform.isLinux "--enable-seccomp"; };
    cloud-hypervisor = pkg base.cloud-hypervisor { version = "48.0"; };
    cloud-hypervisor-graphics = pkg base.cloud-hypervisor { version = "48.0"; };
    firecracker = pkg base.firecracker { version = "1.13.1"; };
    crosvm = pkg base.crosvm { version = "140.0"; };
    kvmtool = pkg base.kvmtool { version = "3.18"; };
    stratovirt = pkg base.stratovirt { version = "2.4.0"; };
    alioth = pkg base.alioth { version = "0.10.0"; };
    vfkit = pkg base.vfkit { version = "0.6.1"; meta.mainProgram = "vfkit"; };
    virtiofsd = pkg base.virtiofsd { version = "1.13.2"; };

    expect = tool "expect";
    netcat = tool "netcat";
    jq = tool "jq";
    util-linux = tool "util-linux";
    python3 = tool "python3";
    systemd = tool "systemd";
    gnused = tool "gnused";
    gawk = tool "gawk";
    OVMF.fd = tool "OVMF-fd";
  };
in
self
