"""The msgspec fast path for result lines reads exactly what the checked slow path reads:
the same event for a good line, the same error for a bad one."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.events import EventsError, _Bad, _parse_slowly, iter_events, parse_line
from detector.model import ProbeResult

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "x", "2026-11-28T10:00:00Z", "2026-11-28T10:00:00"]),
    st.dictionaries(st.sampled_from(["market", "m"]), st.one_of(st.text(max_size=3), st.none())),
)
GOOD = {
    "type": "result",
    "at": "2026-11-28T10:00:00Z",
    "probe": "p",
    "kind": "http",
    "component": "carriers/dhl",
    "ok": True,
    "latency_s": 0.25,
    "error": None,
    "labels": {"market": "DE"},
}
FIELDS = [*GOOD, "instance", "suspect", "extra"]


def outcome(parse: Any, line: bytes) -> object:
    try:
        return parse(line)
    except _Bad as exc:
        return f"error: {exc}"


@settings(max_examples=200, deadline=None)
@given(
    changes=st.dictionaries(st.sampled_from(FIELDS), ANY_VALUE, max_size=3),
    dropped=st.sets(st.sampled_from(FIELDS), max_size=2),
)
def test_fast_path_equals_slow_path(changes: dict[str, Any], dropped: set[str]) -> None:
    obj = {k: v for k, v in {**GOOD, **changes}.items() if k not in dropped}
    line = orjson.dumps(obj)
    assert outcome(parse_line, line) == outcome(_parse_slowly, line)


def test_a_line_without_type_is_refused_even_when_it_looks_like_a_result() -> None:
    line = orjson.dumps({k: v for k, v in GOOD.items() if k != "type"})
    try:
        list(iter_events([line], "e.jsonl"))
    except EventsError as exc:
        assert str(exc).startswith("e.jsonl:1: unknown type None")
    else:
        raise AssertionError("accepted a line without a type")


def test_ints_and_optional_fields_read_as_on_the_slow_path() -> None:
    line = orjson.dumps({**GOOD, "latency_s": 2, "instance": "a", "suspect": True})
    fast = parse_line(line)
    assert fast == _parse_slowly(line)
    assert isinstance(fast, ProbeResult)
    assert fast.latency_s == 2.0 and isinstance(fast.latency_s, float)
