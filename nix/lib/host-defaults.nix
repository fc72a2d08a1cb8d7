# The host's defaults, declared once for the generator and the Nix modules
# (generator/microvm/host/defaults.json): the state directory and the VMs' user and group.
builtins.fromJSON (builtins.readFile ../../generator/microvm/host/defaults.json)
