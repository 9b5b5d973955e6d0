"""Dispenser protocols: sans-IO codecs, trio transports, pump actors, dispenser simulators."""
