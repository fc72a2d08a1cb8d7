# The host's defaults as the generator declares them (generator/microvm/host/defaults.py;
# tests/test_units.py checks they are the same): the state directory and the VMs' user and group.
{
  stateDir = "/var/lib/microvms";
  user = "microvm";
  group = "kvm";
}
