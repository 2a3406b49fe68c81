"""The events file (DESIGN.md "Events file"): every type, RFC 3339 offsets, and a
`file:N: what` error for each kind of bad line."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from enginekit import MIN, T0

from detector.events import EventsError, iter_events, read_events, write_events
from detector.model import Deploy, DeployFlaggedBad, Event, Maintenance, ProbeResult

DATA = Path(__file__).parent / "data" / "events"

RESULT = (
    '{"type": "result", "at": "2026-11-28T10:00:00Z", "probe": "dhl-label-de",'
    ' "kind": "label_creation", "component": "carriers/dhl", "ok": false, "latency_s": 0.41,'
    ' "error": "HTTP 503", "labels": {"market": "DE"}}'
)
DEPLOY = (
    '{"type": "deploy", "at": "2026-11-28T10:02:00Z", "id": "d-17", "service": "label-api",'
    ' "version": "2026.11.28-1", "components": ["carriers/dhl"], "bad": false}'
)
FLAG = '{"type": "deploy_flagged_bad", "at": "2026-11-28T10:09:00Z", "id": "d-17"}'
MAINTENANCE = (
    '{"type": "maintenance", "start": "2026-11-28T12:00:00Z", "end": "2026-11-28T13:00:00Z",'
    ' "components": ["carriers/dhl"], "title": "DHL planned maintenance"}'
)


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_the_design_examples_parse_into_their_types(tmp_path: Path) -> None:
    events = read_events(write(tmp_path, RESULT, DEPLOY, FLAG, MAINTENANCE))
    assert events == [
        ProbeResult(
            at=T0,
            probe="dhl-label-de",
            kind="label_creation",
            component="carriers/dhl",
            ok=False,
            latency_s=0.41,
            error="HTTP 503",
            labels={"market": "DE"},
        ),
        Deploy(T0 + 2 * MIN, "d-17", "label-api", "2026.11.28-1", ("carriers/dhl",), bad=False),
        DeployFlaggedBad(T0 + 9 * MIN, "d-17"),
        Maintenance(
            T0 + 120 * MIN,
            T0 + 180 * MIN,
            ("carriers/dhl",),
            "DHL planned maintenance",
            id="m-286a5c9953",  # given none, the id is derived from the window itself
        ),
    ]


def test_optional_fields_default() -> None:
    minimal = (
        b'{"type": "result", "at": "2026-11-28T10:00:00Z", "probe": "p", "kind": "http",'
        b' "component": "sendcloud/api", "ok": true}'
    )
    deploy = (
        b'{"type": "deploy", "at": "2026-11-28T10:00:00Z", "id": "d", "service": "s",'
        b' "version": "v", "components": []}'
    )
    result, parsed_deploy = iter_events([minimal, deploy], "mem")
    assert isinstance(result, ProbeResult) and isinstance(parsed_deploy, Deploy)
    assert (result.latency_s, result.error, dict(result.labels)) == (None, None, {})
    assert parsed_deploy.bad is False and parsed_deploy.components == ()


def test_integer_latency_is_a_float_and_null_optionals_are_absent() -> None:
    line = (
        '{"type": "result", "at": "2026-11-28T10:00:00Z", "probe": "p", "kind": "http",'
        ' "component": "sendcloud/api", "ok": true, "latency_s": 2, "error": null,'
        ' "labels": null}'
    )
    (result,) = iter_events([line], "mem")
    assert isinstance(result, ProbeResult)
    assert result.latency_s == 2.0 and isinstance(result.latency_s, float)
    assert result.error is None and dict(result.labels) == {}


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-28T10:00:00Z",
        "2026-11-28T12:00:00+02:00",
        "2026-11-28T05:30:00-04:30",
        "2026-11-28T10:00:00.000Z",
        "2026-11-28T10:00:00+00:00",
    ],
)
def test_times_with_an_offset_are_the_same_instant(stamp: str) -> None:
    (flag,) = iter_events([f'{{"type": "deploy_flagged_bad", "at": "{stamp}", "id": "d"}}'], "m")
    assert flag.at == T0


def test_offsets_count_in_the_sort_order(tmp_path: Path) -> None:
    """11:30+02:00 is 09:30Z: before 10:00Z, so this order is wrong."""
    early = '{"type": "deploy_flagged_bad", "at": "2026-11-28T10:00:00Z", "id": "a"}'
    late = '{"type": "deploy_flagged_bad", "at": "2026-11-28T11:30:00+02:00", "id": "b"}'
    path = write(tmp_path, early, late)
    with pytest.raises(EventsError) as error:
        read_events(path)
    assert str(error.value) == (
        f"{path}:2: events must be sorted by time:"
        " 2026-11-28T09:30:00Z is earlier than the line before (2026-11-28T10:00:00Z)"
    )


def test_blank_and_whitespace_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    events = read_events(DATA / "all-types.jsonl")
    assert [type(e).__name__ for e in events] == [
        "ProbeResult",
        "Deploy",
        "DeployFlaggedBad",
        "Maintenance",
    ]
    path = write(tmp_path, "", RESULT, "   ", "\t", "", "{")
    with pytest.raises(EventsError, match=r":6: not valid JSON"):
        read_events(path)


def test_equal_times_keep_file_order() -> None:
    events = list(iter_events([DEPLOY, DEPLOY.replace('"d-17"', '"d-18"')], "mem"))
    assert [e.id for e in events if isinstance(e, Deploy)] == ["d-17", "d-18"]


def _result(**fields: object) -> str:
    """The RESULT line with fields replaced (a value of `...` removes the field)."""
    obj = orjson.loads(RESULT)
    for name, value in fields.items():
        if value is ...:
            del obj[name]
        else:
            obj[name] = value
    return orjson.dumps(obj).decode()


BAD_LINES = [
    ("bad JSON", '{"type": "result", "at": ', "not valid JSON"),
    ("trailing garbage", RESULT + " x", "not valid JSON"),
    ("not an object (list)", "[1, 2, 3]", "expected a JSON object"),
    ("not an object (string)", '"result"', "expected a JSON object"),
    ("not an object (number)", "42", "expected a JSON object"),
    ("unknown type", _result(type="probe_result"), "unknown type 'probe_result'"),
    ("missing type", _result(type=...), "unknown type None"),
    ("type not a string", _result(type=1), "unknown type 1"),
    ("missing field", _result(probe=...), "missing field 'probe'"),
    ("missing ok", _result(ok=...), "missing field 'ok'"),
    ("wrong type ok", _result(ok="false"), "field 'ok' must be bool, got str"),
    ("ok as a number", _result(ok=0), "field 'ok' must be bool, got int"),
    ("wrong type probe", _result(probe=7), "field 'probe' must be str, got int"),
    ("latency as a bool", _result(latency_s=True), "field 'latency_s' must be int or float"),
    ("latency as text", _result(latency_s="0.4s"), "field 'latency_s' must be int or float"),
    ("labels not a map", _result(labels=["DE"]), "field 'labels' must be dict, got list"),
    ("label not text", _result(labels={"market": 1}), "field 'labels' must map names to strings"),
    ("time not a string", _result(at=1795860000), "field 'at' must be str, got int"),
    ("bad time", _result(at="yesterday"), "field 'at': bad time 'yesterday'"),
    ("bad date", _result(at="2026-13-01T00:00:00Z"), "field 'at': bad time"),
    ("time without offset", _result(at="2026-11-28T10:00:00"), "needs 'Z' or an offset"),
    ("date only", _result(at="2026-11-28"), "needs 'Z' or an offset"),
    (
        "components not strings",
        DEPLOY.replace('["carriers/dhl"]', '["carriers/dhl", 3]'),
        "field 'components' must be a list of strings",
    ),
    (
        "components not a list",
        DEPLOY.replace('["carriers/dhl"]', '"carriers/dhl"'),
        "field 'components' must be list, got str",
    ),
    ("deploy bad not bool", DEPLOY.replace('"bad": false', '"bad": "no"'), "field 'bad' must"),
    ("flag without id", '{"type": "deploy_flagged_bad", "at": "2026-11-28T10:09:00Z"}', "'id'"),
    (
        "maintenance end before start",
        MAINTENANCE.replace("T13:00", "T11:00"),
        "maintenance 'end' must be after 'start'",
    ),
    (
        "maintenance end equal to start",
        MAINTENANCE.replace("T13:00", "T12:00"),
        "maintenance 'end' must be after 'start'",
    ),
    (
        "maintenance end without offset",
        MAINTENANCE.replace("T13:00:00Z", "T13:00:00"),
        "field 'end': bad time",
    ),
    ("maintenance without start", MAINTENANCE.replace('"start"', '"begin"'), "'start'"),
    ("instance not a string", RESULT.replace('"ok"', '"instance": 3, "ok"'), "'instance'"),
    ("suspect not a boolean", RESULT.replace('"ok"', '"suspect": "yes", "ok"'), "'suspect'"),
]


@pytest.mark.parametrize(("case", "line", "message"), BAD_LINES, ids=[c[0] for c in BAD_LINES])
def test_a_bad_line_names_file_and_line_number(
    tmp_path: Path, case: str, line: str, message: str
) -> None:
    # Two good lines and a blank one first: the bad one is line 4.
    path = write(tmp_path, FLAG.replace("10:09", "09:00"), "", FLAG.replace("10:09", "09:30"), line)
    with pytest.raises(EventsError) as error:
        read_events(path)
    text = str(error.value)
    assert text.startswith(f"{path}:4: "), text
    assert message in text, text
    assert "\n" not in text


def test_unsorted_lines_name_the_line_that_goes_back(tmp_path: Path) -> None:
    path = write(tmp_path, RESULT, DEPLOY, RESULT)
    with pytest.raises(EventsError) as error:
        read_events(path)
    assert str(error.value) == (
        f"{path}:3: events must be sorted by time:"
        " 2026-11-28T10:00:00Z is earlier than the line before (2026-11-28T10:02:00Z)"
    )


def test_invalid_utf8_is_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "binary.jsonl"
    path.write_bytes(RESULT.encode() + b"\n" + b'{"type": "\xff"}\n')
    with pytest.raises(EventsError, match=r"binary\.jsonl:2: not valid JSON"):
        read_events(path)


def test_errors_come_when_the_bad_line_is_reached() -> None:
    """iter_events is lazy: a huge file is not read whole before the first event."""
    events = iter_events([RESULT, "oops"], "stream")
    assert isinstance(next(events), ProbeResult)
    with pytest.raises(EventsError, match=r"^stream:2: not valid JSON"):
        next(events)


def roundtrip(events: list[Event]) -> list[Event]:
    buffer = io.BytesIO()
    assert write_events(events, buffer) == len(events)
    return list(iter_events(io.BytesIO(buffer.getvalue()), "roundtrip"))


def test_write_then_read_gives_the_same_events(tmp_path: Path) -> None:
    events: list[Event] = [
        ProbeResult(
            T0,
            "dhl-label-de",
            "label_creation",
            "carriers/dhl",
            False,
            0.41,
            "HTTP 503",
            {"market": "DE"},
        ),
        ProbeResult(T0 + 0.25, "api", "http", "sendcloud/api", True),  # no latency, no labels
        Deploy(T0 + 60, "d-1", "label-api", "v1", ("carriers/dhl", "carriers/ups"), bad=True),
        DeployFlaggedBad(T0 + 61.5, "d-1"),
        Maintenance(T0 + 120, T0 + 3600, ("carriers/dhl",), "DHL planned maintenance", "m-7"),
        Maintenance(T0 + 120, T0 + 180, (), "", "m-8"),
    ]
    assert roundtrip(events) == events
    path = tmp_path / "out.jsonl"
    with open(path, "wb") as handle:
        write_events(events, handle)
    assert read_events(path) == events
    assert len(path.read_text().splitlines()) == len(events)


def test_the_fixture_file_roundtrips() -> None:
    events = read_events(DATA / "all-types.jsonl")
    assert roundtrip(events) == events


def test_written_lines_follow_the_contract() -> None:
    buffer = io.BytesIO()
    write_events([ProbeResult(T0, "p", "http", "sendcloud/api", True, 0.1, None, {})], buffer)
    assert buffer.getvalue() == (
        b'{"type":"result","at":"2026-11-28T10:00:00Z","probe":"p","kind":"http",'
        b'"component":"sendcloud/api","ok":true,"latency_s":0.1,"error":null,"labels":{}}\n'
    )


def test_instance_and_suspect_default_and_roundtrip() -> None:
    [plain] = list(iter_events([RESULT], "x"))
    assert isinstance(plain, ProbeResult)
    assert (plain.instance, plain.suspect) == ("", False)
    line = RESULT.replace('"ok"', '"instance": "ams-1", "suspect": true, "ok"')
    [marked] = list(iter_events([line], "x"))
    assert isinstance(marked, ProbeResult)
    assert (marked.instance, marked.suspect) == ("ams-1", True)
    out = io.BytesIO()
    write_events([plain, marked], out)
    first, second = (orjson.loads(x) for x in out.getvalue().splitlines())
    assert "instance" not in first and "suspect" not in first  # defaults stay implicit
    assert (second["instance"], second["suspect"]) == ("ams-1", True)
    assert list(iter_events(out.getvalue().splitlines(), "x")) == [plain, marked]
