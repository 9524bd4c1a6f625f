"""Flight Control for Python: the control plane for fleets of edge devices."""

__version__ = "0.1.0"
