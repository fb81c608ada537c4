"""Proxitrace: a BLE contact-tracing agent for Linux and the Raspberry Pi."""

__version__ = "0.1.0"
