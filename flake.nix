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

      # imported, not paths: Nix 2.8's flake check wants a module to be a function or a set
      nixosModules = {
        microvm = import ./nix/modules/microvm;
        host = import ./nix/modules/host.nix;
        # the microvm.* options alone (for documentation tools), as microvm.nix offers them
        microvm-options = import ./nix/modules/microvm/options.nix;
        default = self.nixosModules.host;
      };

      overlays.default = final: _prev: {
        microvm-generator = final.python3Packages.callPackage ./nix/pkgs/microvm-generator.nix { };
      };
      # microvm.nix's name for it (its examples say `nixpkgs.overlays = [ microvm.overlay ]`)
      overlay = self.overlays.default;

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
        path = ./flake-templates/default;
        description = "A host with one declared MicroVM";
      };
      # microvm.nix's names for it
      templates.microvm = self.templates.default;
      defaultTemplate = self.templates.default;

      # `nix flake check`: the example runners, and each example's document validated by the
      # generator as a build (evaluating them also runs the modules' assertions and checks)
      checks = forAllSystems (system:
        let pkgs = pkgsFor system; in
        self.packages.${system}
        // lib.mapAttrs' (name: module: lib.nameValuePair "${name}-document" (
          pkgs.runCommand "${name}-document" {
            nativeBuildInputs = [ pkgs.microvm-generator ];
            document = builtins.toJSON (self.lib.document {
              inherit (exampleSystem system module) config pkgs;
            });
            passAsFile = [ "document" ];
          } ''
            microvm validate "$documentPath"
            touch "$out"
          '')) examples);
    };
}
