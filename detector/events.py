"""The events file (JSON Lines): what `detector export` writes and replay / rule tests read.

A bad line is an error naming the file and line number; nothing is silently skipped.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import msgspec
import orjson

from detector.model import Deploy, DeployFlaggedBad, Event, Maintenance, ProbeResult
from detector.timeutil import TimeFormatError, format_time, parse_time


class EventsError(ValueError):
    """One line: `file:line: what is wrong`."""


class _Bad(Exception):
    pass


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in obj:
        raise _Bad(f"missing field '{name}'")
    value = obj[name]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        expected = (
            kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        )
        raise _Bad(f"field '{name}' must be {expected}, got {type(value).__name__}")
    return value


def _optional(obj: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    return None if obj.get(name) is None else _field(obj, name, kind)


def _time(obj: dict[str, Any], name: str) -> float:
    try:
        return parse_time(_field(obj, name, str))
    except TimeFormatError as exc:
        raise _Bad(f"field '{name}': {exc}") from None


def _strings(obj: dict[str, Any], name: str) -> tuple[str, ...]:
    values = _field(obj, name, list)
    if not all(isinstance(v, str) for v in values):
        raise _Bad(f"field '{name}' must be a list of strings")
    return tuple(values)


def _result(obj: dict[str, Any]) -> ProbeResult:
    labels = _optional(obj, "labels", dict) or {}
    if not all(isinstance(v, str) for v in labels.values()):
        raise _Bad("field 'labels' must map names to strings")
    latency = _optional(obj, "latency_s", (int, float))
    return ProbeResult(
        at=_time(obj, "at"),
        probe=_field(obj, "probe", str),
        kind=_field(obj, "kind", str),
        component=_field(obj, "component", str),
        ok=_field(obj, "ok", bool),
        latency_s=float(latency) if latency is not None else None,
        error=_optional(obj, "error", str),
        labels=labels,
        instance=_optional(obj, "instance", str) or "",
        suspect=_optional(obj, "suspect", bool) or False,
    )


def _deploy(obj: dict[str, Any]) -> Deploy:
    return Deploy(
        at=_time(obj, "at"),
        id=_field(obj, "id", str),
        service=_field(obj, "service", str),
        version=_field(obj, "version", str),
        components=_strings(obj, "components"),
        bad=bool(_optional(obj, "bad", bool)),
    )


def _flag(obj: dict[str, Any]) -> DeployFlaggedBad:
    return DeployFlaggedBad(at=_time(obj, "at"), id=_field(obj, "id", str))


def _maintenance(obj: dict[str, Any]) -> Maintenance:
    start, end = _time(obj, "start"), _time(obj, "end")
    if end <= start:
        raise _Bad("maintenance 'end' must be after 'start'")
    return Maintenance(
        start=start,
        end=end,
        components=_strings(obj, "components"),
        title=_optional(obj, "title", str) or "",
        id=_optional(obj, "id", str) or _maintenance_id(start, end, obj),
    )


def _maintenance_id(start: float, end: float, obj: dict[str, Any]) -> str:
    """Stable for the same window, distinct for two windows that start together."""
    key = f"{start}|{end}|{','.join(obj['components'])}|{obj.get('title') or ''}"
    return "m-" + hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:10]


_PARSERS: dict[str, Callable[[dict[str, Any]], Event]] = {
    "result": _result,
    "deploy": _deploy,
    "deploy_flagged_bad": _flag,
    "maintenance": _maintenance,
}


# Results of one probe round share their timestamp string: parse each once.
_cached_time = functools.lru_cache(maxsize=4096)(parse_time)


def _fast_result(obj: dict[str, Any]) -> ProbeResult | None:
    """The common line, checked in one pass; None sends it to the slow path, which words
    the error. Replay reads millions of these: the slow path's per-field calls cost 3x."""
    at, probe, kind, component = (
        obj.get("at"),
        obj.get("probe"),
        obj.get("kind"),
        obj.get("component"),
    )
    ok, latency, error, labels = (
        obj.get("ok"),
        obj.get("latency_s"),
        obj.get("error"),
        obj.get("labels"),
    )
    instance, suspect = obj.get("instance", ""), obj.get("suspect", False)
    if not (
        type(instance) is str
        and type(suspect) is bool
        and type(at) is str
        and type(probe) is str
        and type(kind) is str
        and type(component) is str
        and type(ok) is bool
        and (latency is None or type(latency) is float or type(latency) is int)
        and (error is None or type(error) is str)
        and (
            labels is None
            or (type(labels) is dict and all(type(v) is str for v in labels.values()))
        )
    ):
        return None
    try:
        moment = _cached_time(at)
    except TimeFormatError:
        return None
    return ProbeResult(
        moment,
        probe,
        kind,
        component,
        ok,
        None if latency is None else float(latency),
        error,
        labels or {},
        instance=instance,
        suspect=suspect,
    )


class ResultLine(msgspec.Struct, tag_field="type", tag="result"):
    """The common line's shape, checked by msgspec in C while it decodes (unknown keys are
    ignored, as on the slow path). Anything else - another type, a wrong field, `labels`
    null - raises and goes the slow way, which words the error or reads it.

    Replay feeds it to the engine as it is (`iter_replay_events`): it has every field
    `Engine.observe` reads, and building a frozen ProbeResult cost ~1 µs a line."""

    stamp: str = msgspec.field(name="at")  # as written; `at` is set from it once decoded
    probe: str
    kind: str
    component: str
    ok: bool
    latency_s: float | None = None
    error: str | None = None
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    instance: str = ""
    suspect: bool = False
    # Epoch seconds of `stamp`, set after decoding. A line carrying this key still reads the
    # same: a number is overwritten, anything else fails the check and takes the slow path,
    # which ignores unknown keys.
    at: float = msgspec.field(default=0.0, name="at:parsed")


class _Never(msgspec.Struct, tag_field="type", tag=""):
    """Only here to make a union, in which msgspec requires the tag: no `type`, no fast path."""


_decode_result = msgspec.json.Decoder(ResultLine | _Never).decode


def parse_line(line: str | bytes) -> Event:
    r = _parse_fast(line)
    if not isinstance(r, ResultLine):
        return r
    return ProbeResult(
        r.at,
        r.probe,
        r.kind,
        r.component,
        r.ok,
        r.latency_s,
        r.error,
        r.labels,
        instance=r.instance,
        suspect=r.suspect,
    )


def _parse_fast(line: str | bytes) -> Event | ResultLine:
    """A result line as decoded (time parsed), any other line as its event."""
    try:
        r = _decode_result(line)
        if type(r) is not ResultLine:
            return _parse_slowly(line)
        r.at = _cached_time(r.stamp)
    except (msgspec.ValidationError, msgspec.DecodeError, TimeFormatError):
        return _parse_slowly(line)
    return r


def _parse_slowly(line: str | bytes) -> Event:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise _Bad(f"not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise _Bad("expected a JSON object")
    kind = obj.get("type")
    if kind == "result":
        fast = _fast_result(obj)
        if fast is not None:
            return fast
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise _Bad(f"unknown type {kind!r} (expected one of: {', '.join(_PARSERS)})")
    return parser(obj)


def read_events(path: str | Path) -> list[Event]:
    with open(path, "rb") as handle:
        return list(iter_events(handle, str(path)))


def iter_events(lines: Iterable[bytes | str], name: str) -> Iterator[Event]:
    """Parse and check order; blank lines are allowed, everything else must be an event."""
    return _iterate(lines, name, parse_line)


def iter_replay_events(lines: Iterable[bytes | str], name: str) -> Iterator[Event | ResultLine]:
    """`iter_events` for replay: the same checks and errors, but a result line comes as its
    decoded ResultLine, which the engine reads like a ProbeResult."""
    return _iterate(lines, name, _parse_fast)


class _Timed(Protocol):
    @property
    def at(self) -> float: ...


_Parsed = TypeVar("_Parsed", bound=_Timed)


def _iterate(
    lines: Iterable[bytes | str], name: str, parse: Callable[[bytes | str], _Parsed]
) -> Iterator[_Parsed]:
    last = float("-inf")
    for number, line in enumerate(lines, start=1):
        if not line or (line[:1].isspace() and not line.strip()):  # no copy of most lines
            continue
        try:
            event = parse(line)
        except _Bad as exc:
            raise EventsError(f"{name}:{number}: {exc}") from None
        if event.at < last:
            raise EventsError(
                f"{name}:{number}: events must be sorted by time:"
                f" {format_time(event.at)} is earlier than the line before ({format_time(last)})"
            )
        last = event.at
        yield event


def event_to_dict(event: Event) -> dict[str, Any]:
    if isinstance(event, ProbeResult):
        return {
            "type": "result",
            "at": format_time(event.at),
            "probe": event.probe,
            "kind": event.kind,
            "component": event.component,
            "ok": event.ok,
            "latency_s": event.latency_s,
            "error": event.error,
            "labels": dict(event.labels),
        } | _vantage(event)
    if isinstance(event, Deploy):
        return {
            "type": "deploy",
            "at": format_time(event.at),
            "id": event.id,
            "service": event.service,
            "version": event.version,
            "components": list(event.components),
            "bad": event.bad,
        }
    if isinstance(event, DeployFlaggedBad):
        return {"type": "deploy_flagged_bad", "at": format_time(event.at), "id": event.id}
    return {
        "type": "maintenance",
        "id": event.id,
        "start": format_time(event.start),
        "end": format_time(event.end),
        "components": list(event.components),
        "title": event.title,
    }


def _vantage(result: ProbeResult) -> dict[str, Any]:
    """`instance` and `suspect` only when set: files from one plain daemon stay as before."""
    extra: dict[str, Any] = {}
    if result.instance:
        extra["instance"] = result.instance
    if result.suspect:
        extra["suspect"] = True
    return extra


def write_events(events: Iterable[Event], out: IO[bytes]) -> int:
    count = 0
    for event in events:
        out.write(orjson.dumps(event_to_dict(event)) + b"\n")
        count += 1
    return count
