# Source: github.com/CalamooseLabs/cala-m-os, hosts/lanstation/devices/rtx-5090/guest.nix,
# commit 23e5ba2fe02881a6cb6ca391b3568c0f81920d17.
# A GPU guest: both functions of a graphics card passed through (PCI). Left out: its import of
# the repository's NVIDIA driver module (../../../../machines/modules/nvidia-gpu), no microvm.*.
{...}: {
  microvm.devices = [
    {
      bus = "pci";
      path = "0000:41:00.0"; # RTX 5090
    }
    {
      bus = "pci";
      path = "0000:41:00.1"; # RTX 5090 Audio
    }
  ];
}
