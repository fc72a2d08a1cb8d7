"""Managing MicroVMs on a host: the state directory and the `microvm` host commands."""
