"""The pure rule engine: the `when` language, rule files, series, windows and the engine.

Nothing in this package does I/O, reads a clock or imports asyncio; a test enforces it.
"""

from detector.engine.core import Engine
from detector.engine.lifecycle import incident_id
from detector.engine.series import SeriesError

__all__ = ["Engine", "SeriesError", "incident_id"]
