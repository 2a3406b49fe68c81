"""detector: monitoring-driven incident detection for a shipping platform's status page."""

__version__ = "0.1.0"
