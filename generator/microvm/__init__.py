"""Generate runners for NixOS MicroVMs from a validated JSON document."""

__version__ = "0.1.0"
