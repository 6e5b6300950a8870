"""pia-mqtt: keep a PIA forwarded port alive and hand it to everything that needs it."""

__version__ = "0.1.0"
