"""The Flight Control device agent. Imports nothing from the server."""

__version__ = "0.1.0"
