"""The pure rule engine: the `when` language, rule files, series, windows and the engine.

Nothing in this package does I/O, reads a clock or imports asyncio; a test enforces it.
"""

from detector.engine.core import Engine, incident_id

__all__ = ["Engine", "incident_id"]
