{
  description = "NixOS MicroVMs on eight hypervisors, generated from one validated configuration";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems f;

      # example guests: `nix run .#<name>` boots one
      examples = {
        qemu-demo = ./nix/examples/qemu-demo.nix;
        qemu-shared-store = ./nix/examples/qemu-shared-store.nix;
      };

      exampleSystem = system: module: lib.nixosSystem {
        inherit system;
        modules = [
          self.nixosModules.microvm
          { nixpkgs.overlays = [ self.overlays.default ]; }
          module
        ];
      };

      pkgsFor = system: nixpkgs.legacyPackages.${system}.extend self.overlays.default;
    in
    {
      lib = import ./nix/lib { inherit lib; };

      nixosModules = {
        microvm = ./nix/modules/microvm;
        host = ./nix/modules/host.nix;
        default = self.nixosModules.host;
      };

      overlays.default = final: _prev: {
        microvm-generator = final.python3Packages.callPackage ./nix/pkgs/microvm-generator.nix { };
      };

      nixosConfigurations = lib.mapAttrs (_: exampleSystem "x86_64-linux") examples;

      packages = forAllSystems (system:
        let pkgs = pkgsFor system; in
        {
          inherit (pkgs) microvm-generator;
          default = pkgs.microvm-generator;
        }
        // lib.mapAttrs (_: module: (exampleSystem system module).config.microvm.declaredRunner) examples);

      apps = forAllSystems (system:
        lib.mapAttrs (name: _: {
          type = "app";
          program = "${self.packages.${system}.${name}}/bin/microvm-run";
        }) examples
        // {
          default = {
            type = "app";
            program = "${self.packages.${system}.microvm-generator}/bin/microvm";
          };
        });

      templates.default = {
        path = ./templates/default;
        description = "A host with one declared MicroVM";
      };

      checks = forAllSystems (system: self.packages.${system});
    };
}
