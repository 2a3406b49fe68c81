"""The pure rule engine: the `when` language, rule files, series, windows and the engine.

Nothing in this package does I/O, reads a clock or imports asyncio; a test enforces it.
Its hot modules may run compiled by mypyc (`make compiled`): `detector.native` loads them
only when built from the current sources. `COMPILED` and `STATUS` say which engine runs.
"""

from detector.native import activate

COMPILED, STATUS = activate()  # first: the imports below then get the compiled modules

from detector.engine.core import Engine  # noqa: E402
from detector.engine.lifecycle import incident_id  # noqa: E402
from detector.engine.series import SeriesError  # noqa: E402

__all__ = ["COMPILED", "STATUS", "Engine", "SeriesError", "incident_id"]
