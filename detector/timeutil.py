"""Durations and RFC 3339 times.

Inside detector every instant is a float of seconds since the Unix epoch (UTC): cheap to
compare and to store in engine state. Datetimes and strings exist only at the edges.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_EXPECTED_DURATION = "expected a number with a unit (ms, s, m, h, d)"
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


# The instants detector accepts from outside: 1970-01-01 up to (not including) year 9000.
# Anything else is a typing error, and near the edges of `datetime` an offset can push a
# valid-looking string (`9999-12-31T23:59:59-14:00`) past what can ever be formatted again.
MIN_TIME = 0.0
MAX_TIME = datetime(9000, 1, 1, tzinfo=UTC).timestamp()


class TimeFormatError(ValueError):
    """A duration or time string that cannot be read."""


def parse_duration(text: str | int | float) -> float:
    """`90s`, `30m`, `1h`, `250ms` -> seconds. Bare numbers are refused: a unit is required."""
    if isinstance(text, bool) or not isinstance(text, str):
        raise TimeFormatError(
            f"bad duration {text!r}: expected a number with a unit (ms, s, m, h, d)"
        )
    match = _DURATION.match(text)
    if match is None:
        raise TimeFormatError(
            f"bad duration {text!r}: expected a number with a unit (ms, s, m, h, d)"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: float) -> str:
    """Seconds -> the shortest exact form people write: `30m`, `90s`, `1h30m`."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs or not parts:
        parts.append(f"{secs}s")
    return "".join(parts)


def parse_time(text: str) -> float:
    """RFC 3339 (`Z` or an offset) -> epoch seconds. A time without an offset is refused, and
    so is one outside years 1970..8999 (see MIN_TIME)."""
    if not isinstance(text, str):
        raise TimeFormatError(f"bad time {text!r}: expected an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise TimeFormatError(
            f"bad time {text!r}: expected RFC 3339, e.g. 2026-11-28T10:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        raise TimeFormatError(f"bad time {text!r}: RFC 3339 needs 'Z' or an offset")
    epoch = parsed.timestamp()
    if not MIN_TIME <= epoch < MAX_TIME:
        raise TimeFormatError(f"bad time {text!r}: outside years 1970..8999")
    return epoch


def in_range(epoch: float) -> bool:
    """Whether `epoch` is an instant detector accepts (False for NaN and infinities too)."""
    return MIN_TIME <= epoch < MAX_TIME


def format_time(epoch: float) -> str:
    """Epoch seconds -> RFC 3339 in UTC with `Z`; milliseconds only when present."""
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    if moment.microsecond:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def to_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)
