# microvm.optimize.enable (on by default), on the guest's side: NixOS defaults a MicroVM does
# better without, as microvm.nix's users get them. Every one is a default the configuration can
# override; the runner's side (no GUI libraries without graphics) is the generator's.
{ config, lib, options, ... }:

let
  cfg = config.microvm;
  # switching a running VM over SSH needs its sshd and the host's store shared into it
  sharesHostStore = lib.any (s: s.source == "/nix/store") cfg.shares;
  canSwitchOverSsh = config.services.openssh.enable && sharesHostStore;
in
{
  config = lib.mkIf (cfg.guest.enable && cfg.optimize.enable) {
    documentation.enable = lib.mkDefault false;

    boot.initrd.systemd = {
      # a systemd initrd starts faster; on crosvm and kvmtool it does not mount the store yet
      enable = lib.mkDefault (lib.elem cfg.hypervisor [ "qemu" "cloud-hypervisor" "firecracker" "stratovirt" ]);
      tpm2.enable = lib.mkDefault false;
    };
    # the guest has one serial port: the kernel need not probe for more
    boot.kernelParams = [ "8250.nr_uarts=1" ];
    boot.swraid.enable = lib.mkDefault false;

    # networkd configures the virtio NICs quickly; waiting for "online" only delays boot
    networking.useNetworkd = lib.mkDefault true;
    systemd.network.wait-online.enable = lib.mkDefault false;
    systemd.tpm2.enable = lib.mkDefault false;

    # switch-to-configuration is of no use to a VM that cannot be switched in place
    # (whether the option exists is known without the configuration; whether to set it is not)
    system = lib.optionalAttrs (options.system ? switch) {
      switch.enable = lib.mkIf (!canSwitchOverSsh) (lib.mkDefault false);
    };
  };
}
