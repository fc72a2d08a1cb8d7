# The host's defaults, declared once for the generator and the Nix modules
# (generator/microvm/host/defaults.json): the state directory, the VMs' user and group,
# and the network declaration's path.
builtins.fromJSON (builtins.readFile ../../generator/microvm/host/defaults.json)
