{
  description = "A NixOS host with one MicroVM";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    # the MicroVM flake this template came from, found through your flake registry: register
    # it once under this name, with the reference you gave to `nix flake init -t`, e.g.
    #   nix registry add microvm-generator git+file:///home/you/src/microvm
    # (or write that reference here instead)
    microvm.url = "flake:microvm-generator";
    microvm.inputs.nixpkgs.follows = "nixpkgs";
  };

  outputs = { self, nixpkgs, microvm }:
    let
      system = "x86_64-linux";
    in
    {
      # the VM on its own: `nix run .#my-vm` boots it in this terminal
      nixosConfigurations.my-vm = nixpkgs.lib.nixosSystem {
        inherit system;
        modules = [ microvm.nixosModules.microvm ./vm.nix ];
      };
      packages.${system}.my-vm = self.nixosConfigurations.my-vm.config.microvm.declaredRunner;

      # the host that runs it as a service: `nixos-rebuild switch --flake .#my-host`
      nixosConfigurations.my-host = nixpkgs.lib.nixosSystem {
        inherit system;
        modules = [
          microvm.nixosModules.host
          ./host.nix
          {
            # built from this flake's nixosConfigurations.my-vm, started at boot
            microvm.vms.my-vm.flake = self;
          }
        ];
      };
    };
}
