"""Hostile and broken input at the HTTP edge: times outside any sane range, stored rows no
reader could format, odd bytes in headers, control characters in public text, and the
security headers every response carries."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from apikit import AUTH, NOW, PUBLIC_PATHS, Client, commit, open_incident

from detector.model import Deploy, IncidentStatus, IncidentUpdate, Maintenance
from detector.store.sql import SqlStore
from detector.timeutil import TimeFormatError, parse_time

FAR_FUTURE, FAR_PAST = "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"
WINDOW = {"start": "2026-11-28T12:00:00Z", "end": "2026-11-28T13:00:00Z",
          "components": ["carriers/dhl"], "title": "DHL work"}  # fmt: skip
DEPLOY = {"service": "label-api", "version": "1", "components": ["carriers/dhl"]}


def stored(store: SqlStore) -> tuple[Any, ...]:
    """Everything a write could have changed."""
    incidents = store.list_incidents(limit=1000)
    return (
        store.list_maintenances(ending_after=0.0),
        store.recent_deploys(0.0),
        [(i.id, i.status, len(i.updates)) for i in incidents],
    )


async def all_reads_answer(client: Client) -> None:
    for path in PUBLIC_PATHS:
        response = await client.get(path)
        assert response.status == 200, (path, await response.text())


# ---------------------------------------------------------------------------- time range


@pytest.mark.parametrize(
    "text", [FAR_FUTURE, FAR_PAST, "1969-12-31T23:59:59Z", "9000-01-01T00:00:00Z"]
)
def test_parse_time_refuses_instants_outside_the_sane_range(text: str) -> None:
    with pytest.raises(TimeFormatError, match=r"outside years 1970\.\.8999"):
        parse_time(text)


def test_parse_time_keeps_the_edges_inside() -> None:
    assert parse_time("1970-01-01T00:00:00Z") == 0.0
    assert parse_time("8999-12-31T23:59:59Z") > parse_time("2026-11-28T10:00:00Z")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/maintenances", {**WINDOW, "end": FAR_FUTURE}, "end"),
        ("/api/v1/maintenances", {**WINDOW, "start": FAR_PAST}, "start"),
        ("/api/v1/deploys", {**DEPLOY, "at": FAR_PAST}, "at"),
        ("/api/v1/deploys", {**DEPLOY, "at": FAR_FUTURE}, "at"),
    ],
)
async def test_out_of_range_times_are_400_and_store_nothing(
    client: Client, store: SqlStore, path: str, body: dict[str, Any], field: str
) -> None:
    before = stored(store)
    response = await client.post(path, headers=AUTH, json=body)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error.startswith(f"{field}: bad time ") and "outside years 1970..8999" in error
    assert stored(store) == before
    await all_reads_answer(client)


async def test_a_stored_time_no_reader_can_format_breaks_no_render(
    client: Client, store: SqlStore
) -> None:
    """A row written before the edge checked times (or by hand) must not make every public
    read a 500: the bad time shows as null / unknown, the rest of the page still renders."""
    store.add_maintenance(Maintenance(NOW - 60, 1e15, ("carriers/dhl",), "Forever", "m-far"))
    incident = open_incident()
    incident.updates.append(
        IncidentUpdate(1e14, IncidentStatus.IDENTIFIED, incident.component_status, "Found it.")
    )
    commit(store, incident)
    await all_reads_answer(client)
    summary = await (await client.get("/api/v2/summary.json")).json()
    [window] = summary["scheduled_maintenances"]
    assert (window["id"], window["scheduled_until"]) == ("m-far", None)
    html = await (await client.get("/")).text()
    assert "Forever" in html and "unknown time" in html


async def test_a_deploy_in_range_is_still_accepted(client: Client, store: SqlStore) -> None:
    body = {**DEPLOY, "id": "d-1", "at": "2026-11-28T09:00:00+01:00"}
    response = await client.post("/api/v1/deploys", headers=AUTH, json=body)
    assert response.status == 201
    assert store.recent_deploys(0.0) == [
        Deploy(NOW - 3600 * 2, "d-1", "label-api", "1", ("carriers/dhl",))
    ]


# ---------------------------------------------------------------------------- authorization


async def raw_request(client: Client, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes no HTTP client library would; returns (status, body)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
    writer.write(body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    "value", [b"Bearer \xff\xfe", b"Bearer s3cret-token\xc3", b"\xe9\xe9 abc", b"Bearer \x80"]
)
async def test_non_utf8_authorization_is_401_json(
    client: Client, store: SqlStore, capsys: pytest.CaptureFixture[str], value: bytes
) -> None:
    head = b"POST /api/v1/deploys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += b"Authorization: " + value + b"\r\n"
    status, body = await raw_request(client, head, orjson.dumps(DEPLOY))
    assert status == 401
    assert orjson.loads(body)["error"].startswith("authorization: ")
    assert store.recent_deploys(0.0) == []
    assert "Traceback" not in "".join(capsys.readouterr())


# ---------------------------------------------------------------------------- headers


@pytest.mark.parametrize("path", PUBLIC_PATHS)
async def test_every_response_has_the_security_headers(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    if path == "/":
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src" not in csp  # the page runs no script at all
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "<script" not in await response.text()
    else:
        assert "Content-Security-Policy" not in response.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nothing"), ("POST", "/api/v1/deploys"), ("GET", "/api/v1/deploys")],
)
async def test_error_answers_carry_nosniff_too(client: Client, method: str, path: str) -> None:
    response = await client.request(method, path)
    assert response.status >= 400
    assert response.content_type == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# ---------------------------------------------------------------------------- public text


@pytest.mark.parametrize("char", ["\u202e", "\u202a", "\u2066", "\u2069", "\x1b", "\x85", "\t"])
@pytest.mark.parametrize(
    ("path", "field", "base"),
    [
        ("/api/v1/incidents/inc-1/updates", "body", {"status": "identified", "body": ""}),
        ("/api/v1/maintenances", "title", WINDOW),
        ("/api/v1/deploys", "service", DEPLOY),
    ],
)
async def test_control_and_bidi_characters_are_refused_naming_the_field(
    client: Client, store: SqlStore, path: str, field: str, base: dict[str, Any], char: str
) -> None:
    commit(store, open_incident())
    before = stored(store)
    body = {**base, field: f"Labels {char}fail"}
    response = await client.post(path, headers=AUTH, json=body)
    assert response.status == 400
    assert (await response.json())["error"] == (
        f"{field}: control or bidirectional formatting character U+{ord(char):04X} at position 7"
    )
    assert stored(store) == before


async def test_an_update_body_may_span_lines(client: Client, store: SqlStore) -> None:
    commit(store, open_incident())
    body = {"status": "identified", "body": "Found it.\nA certificate expired."}
    response = await client.post("/api/v1/incidents/inc-1/updates", headers=AUTH, json=body)
    assert response.status == 201
    assert store.get_incident("inc-1").updates[-1].body == body["body"]


# ---------------------------------------------------------------------------- ranges

UPDATES = "/api/v1/incidents/inc-1/updates"


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/api/v1/deploys", {**DEPLOY, "at": "2026-10-01T00:00:00Z"},
         "at: more than 30 days in the past"),
        ("/api/v1/deploys", {**DEPLOY, "components": ["shops/dhl"]},
         "components: 'shops/dhl' is not a component id"),
        ("/api/v1/deploys", {**DEPLOY, "components": ["carriers/DHL"]},
         "components: 'carriers/DHL' is not a component id"),
        ("/api/v1/deploys", {**DEPLOY, "components": ["carriers/dhl"] * 101},
         "components: expected 1 to 100 component ids"),
        ("/api/v1/deploys", {**DEPLOY, "components": [["carriers/dhl"]]},
         "components: ['carriers/dhl'] is not a component id"),
        ("/api/v1/deploys", {**DEPLOY, "version": "v" * 101}, "version: longer than 100"),
        ("/api/v1/deploys", {**DEPLOY, "id": "d" * 129}, "id: longer than 128 characters"),
        ("/api/v1/deploys", {**DEPLOY, "id": "-leading-dash"}, "id: invalid characters"),
        ("/api/v1/deploys", {**DEPLOY, "bad": 1}, "bad: expected true or false"),
        ("/api/v1/deploys", {**DEPLOY, "at": 1795860000}, "at: expected a string"),
        ("/api/v1/maintenances", {**WINDOW, "end": "2027-03-01T00:00:00Z"},
         "end: a maintenance lasts at most 90 days"),
        ("/api/v1/maintenances", {**WINDOW, "start": "2028-01-01T00:00:00Z",
                                  "end": "2028-01-01T01:00:00Z"}, "start: more than a year"),
        ("/api/v1/maintenances", {**WINDOW, "title": "t" * 201}, "title: longer than 200"),
        ("/api/v1/maintenances", {**WINDOW, "title": {"en": "x"}}, "title: expected a string"),
        (UPDATES, {"status": "identified", "body": 5}, "body: expected a string"),
        (UPDATES, {"status": "identified", "body": "\n\n"}, "body: must not be empty"),
        (UPDATES, {"status": "Resolved", "body": "x"}, "status: expected one of"),
    ],
)  # fmt: skip
async def test_every_field_is_checked_before_anything_is_written(
    client: Client, store: SqlStore, path: str, body: dict[str, Any], error: str
) -> None:
    commit(store, open_incident())
    before = stored(store)
    response = await client.post(path, headers=AUTH, json=body)
    assert response.status == 400, await response.text()
    message = (await response.json())["error"]
    assert message.startswith(error), message
    assert stored(store) == before


@pytest.mark.parametrize(
    "path",
    ["/api/v1/deploys/%E2%80%AEd-1/bad", "/api/v1/incidents/inc 1/updates",
     "/api/v1/deploys/" + "d" * 129 + "/bad"],
)  # fmt: skip
async def test_path_ids_outside_the_id_pattern_are_404(client: Client, path: str) -> None:
    body = {"status": "resolved", "body": "x"} if path.endswith("/updates") else None
    response = await client.post(path, headers=AUTH, json=body)
    assert response.status == 404
    assert await response.json() == {"error": "id: not found"}
