# Source: github.com/gshipunov/nix-config, hosts/minime/uvm.nix,
# commit 5c3f0886e592ff2d3e3a8588ab496f36c19e0ce9.
# A host building two VMs from its own flake (`inputs.self`, a module argument the repository
# passes in specialArgs) with `microvm -u` updates from GitHub. Taken unchanged.
{ inputs, ... }:
{
  microvm.stateDir = "/var/lib/microvms";
  microvm.vms = {
    auth = {
      flake = inputs.self;
      updateFlake = "github:gshipunov/nix-config/master";
    };
    radicale = {
      flake = inputs.self;
      updateFlake = "github:gshipunov/nix-config/master";
    };
  };
}
