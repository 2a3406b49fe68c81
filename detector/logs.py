"""structlog set-up: JSON lines for journald and log shippers, readable columns on a TTY.

Event names are stable (`probe_failed`, `incident_opened`, ...) and fields are key/value,
so alerts and dashboards can key on them. Secrets never reach a log call. The standard
library's loggers (APScheduler, aiohttp, asyncio) go through the same renderer, so in JSON
mode every line on stderr is JSON.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
from structlog.typing import FilteringBoundLogger, Processor

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
# Chatty at INFO ("Running job ...", one line per probe run): only their warnings.
_QUIET = ("apscheduler", "aiohttp.access")


class _StdlibHandler(logging.StreamHandler[TextIO]):
    """Ours, so a second configure() replaces it instead of adding another. Writes to the
    stderr of the moment (like structlog's PrintLogger), not the one at set-up."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure(fmt: str = "auto", level: str = "info") -> FilteringBoundLogger:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    threshold = _LEVELS.get(level, logging.ERROR)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,  # a filtered log.debug then costs ~0.3 µs, not ~5 µs
    )
    _route_stdlib(shared, renderer, threshold)
    # Bound now, not a lazy proxy: every call on a proxy goes through its __getattr__ and
    # bind() first (~0.7 µs for a filtered log.debug, ~0.1 µs bound).
    logger: FilteringBoundLogger = structlog.get_logger("detector").bind()
    return logger


def _route_stdlib(shared: list[Processor], renderer: Processor, threshold: int) -> None:
    handler = _StdlibHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StdlibHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(threshold, logging.WARNING))
