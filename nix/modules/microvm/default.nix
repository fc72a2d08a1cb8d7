# The MicroVM guest module: import it into a NixOS configuration to make it a MicroVM.
{
  imports = [
    ./options.nix
    ./packages.nix
    ./compat.nix
    ./deploy.nix
    ./guest.nix
    ./optimize.nix
    ./runner.nix
    ./rosetta.nix
  ];
}
