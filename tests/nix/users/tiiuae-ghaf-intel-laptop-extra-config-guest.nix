# Source: github.com/tiiuae/ghaf, modules/reference/hardware/intel-laptop/extra-config.nix,
# commit 252e9ed68a63f40bd2af1fbea5bc56ba182b5ee2.
# Extra QEMU arguments of a desktop VM: UEFI firmware (OVMF) as two pflash drives. Taken
# unchanged (Ghaf adds it to its GUI VM's modules).
# SPDX-FileCopyrightText: 2022-2026 TII (SSRC) and the Ghaf contributors
# SPDX-License-Identifier: Apache-2.0
{
  pkgs,
  ...
}:
{
  microvm.qemu.extraArgs = [
    "-drive"
    "file=${pkgs.OVMF.fd}/FV/OVMF_CODE.fd,if=pflash,unit=0,readonly=true"
    "-drive"
    "file=${pkgs.OVMF.fd}/FV/OVMF_VARS.fd,if=pflash,unit=1,readonly=true"
  ];
}
