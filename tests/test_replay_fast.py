"""Replay reads result lines as decoded (`iter_replay_events`), without a ProbeResult each:
the engine must see exactly what `iter_events` gives, the errors must be the same, and a
replay through either must give the same report."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_events_fast import ANY_VALUE, FIELDS, GOOD

from detector.engine.rulefile import load_rules
from detector.events import (
    EventsError,
    ResultLine,
    _Bad,
    _parse_fast,
    iter_events,
    iter_replay_events,
    parse_line,
    write_events,
)
from detector.model import ProbeResult
from detector.replay import replay, report_to_dict

ROOT = Path(__file__).resolve().parent.parent
SEEN = ("at", "probe", "kind", "component", "ok", "latency_s", "labels", "instance", "suspect")


def seen_by_the_engine(parse: Any, line: bytes) -> object:
    try:
        event = parse(line)
    except _Bad as exc:
        return f"error: {exc}"
    if isinstance(event, ResultLine | ProbeResult):
        return tuple((name, type(getattr(event, name)), getattr(event, name)) for name in SEEN)
    return event


@settings(max_examples=200, deadline=None)
@given(
    changes=st.dictionaries(st.sampled_from([*FIELDS, "at:parsed"]), ANY_VALUE, max_size=3),
    dropped=st.sets(st.sampled_from(FIELDS), max_size=2),
)
def test_a_decoded_line_reads_as_its_probe_result(
    changes: dict[str, Any], dropped: set[str]
) -> None:
    obj = {k: v for k, v in {**GOOD, **changes}.items() if k not in dropped}
    line = orjson.dumps(obj)
    assert seen_by_the_engine(_parse_fast, line) == seen_by_the_engine(parse_line, line)


def test_the_common_line_is_not_made_a_probe_result() -> None:
    event = _parse_fast(orjson.dumps(GOOD))
    assert isinstance(event, ResultLine) and event.at == 1795860000.0
    # labels null is read, but by the checked path
    assert type(_parse_fast(orjson.dumps({**GOOD, "labels": None}))) is ProbeResult


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ([orjson.dumps(GOOD), b"", b"  \n", b"{"], "e.jsonl:4: not valid JSON"),
        (
            [orjson.dumps(GOOD), orjson.dumps({**GOOD, "at": "2026-11-28T09:00:00Z"})],
            "e.jsonl:2: events must be sorted by time",
        ),
        ([orjson.dumps({**GOOD, "ok": "yes"})], "e.jsonl:1: field 'ok' must be bool, got str"),
    ],
)
def test_bad_lines_fail_alike(lines: list[bytes], error: str) -> None:
    for iterate in (iter_events, iter_replay_events):
        with pytest.raises(EventsError) as caught:
            list(iterate(lines, "e.jsonl"))
        assert str(caught.value).startswith(error)


def test_a_replay_through_either_reader_gives_the_same_report() -> None:
    spec = importlib.util.spec_from_file_location("replay_bench", ROOT / "bench/replay_bench.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["replay_bench"] = bench
    spec.loader.exec_module(bench)
    out = io.BytesIO()
    write_events(bench.generate(20_000, 20, 5, seed=7), out)
    lines = out.getvalue().splitlines(keepends=True)
    rules = load_rules([ROOT / "rules"]).rules
    checked = report_to_dict(replay(rules, iter_events(lines, "e.jsonl")))
    decoded = report_to_dict(replay(rules, iter_replay_events(lines, "e.jsonl")))
    assert len(checked["incidents"]) >= 2 and len(checked["episodes"]) >= 20
    assert decoded == checked
