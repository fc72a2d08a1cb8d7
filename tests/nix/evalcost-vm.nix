# The guest every VM of the evaluation-cost benchmark (bench/nix_eval.py) declares, on both
# sides: QEMU, one tap interface, a vsock CID and the host's store shared read-only over 9p.
# `i` numbers the VM (1-based); the module only uses microvm.nix's option names.
i:
let
  pad2 = n: if n < 10 then "0${toString n}" else toString n;
  hi = i / 100;
in
{
  microvm = {
    hypervisor = "qemu";
    vcpu = 2;
    mem = 1024;
    vsock.cid = 2 + i;
    interfaces = [{
      type = "tap";
      id = "vm-bench${toString i}";
      mac = "02:00:00:00:${pad2 hi}:${pad2 (i - hi * 100)}";
    }];
    shares = [{ tag = "ro-store"; source = "/nix/store"; mountPoint = "/nix/.ro-store"; }];
  };
}
