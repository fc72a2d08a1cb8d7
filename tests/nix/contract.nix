# One guest per (hypervisor, system) with every guest-visible feature the hypervisor takes: the
# store disk, a volume with a serial and one without, 9p and virtiofs shares, an interface,
# vsock, a credential file. Evaluated
# by tests/test_contract.py, which checks that the backend provides what the guest expects.
{ hypervisor, system, python ? "python3", repo ? toString ../.. }:

let
  lib = import <nixpkgs/lib>;
  mlib = import ../../nix/lib { inherit lib; };
  has = mlib.supports hypervisor;
  ifType = if has "NET_TAP" then "tap" else if has "NET_USER" then "user" else null;
  configuration = {
    inherit system;
    module = { pkgs, ... }: {
      networking.hostName = "contract";
      microvm = {
        inherit hypervisor;
        volumes = [
          { image = "a.img"; mountPoint = "/a"; size = 16; serial = "vol-a"; }
          { image = "b.img"; mountPoint = "/b"; size = 16; }
        ];
        shares =
          lib.optional (has "SHARE_VIRTIOFS")
            { proto = "virtiofs"; tag = "data"; source = "/srv/data"; mountPoint = "/data"; }
          ++ lib.optional (has "SHARE_9P")
            { proto = "9p"; tag = "nine"; source = "/srv/nine"; mountPoint = "/nine"; };
        credentialFiles = lib.optionalAttrs (has "CREDENTIALS") { token = "/run/keys/token"; };
        interfaces = lib.optional (ifType != null)
          { type = ifType; id = "vm-contract"; mac = "02:00:00:00:00:42"; };
        vsock.cid = if has "VSOCK" then 42 else null;
      } // lib.optionalAttrs (hypervisor == "vfkit") {
        vmHostPackages = pkgs.forSystem "aarch64-darwin";
      };
    };
  };
  e = import ./eval.nix { inherit configuration python repo; };
in
{
  inherit (e) json;
  fileSystems = e.config.fileSystems;
  gettys = builtins.filter (lib.hasPrefix "serial-getty@")
    (builtins.attrNames (lib.filterAttrs (_: s: s.enable or false) (e.config.systemd.services or { })));
}
