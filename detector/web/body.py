"""What the write API reads and writes: `Body` reads a request's JSON object field by field
(any problem a 400 naming the field), `ApiError` is a 4xx `{"error": …}`, and the JSON
shapes of what a write returns.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import asdict
from typing import Any

import orjson
from aiohttp import web

from detector.model import COMPONENT_ID_PATTERN, Deploy, Incident, IncidentUpdate, Maintenance
from detector.timeutil import TimeFormatError, format_time, parse_time

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
COMPONENT_ID = re.compile(COMPONENT_ID_PATTERN)
_ANY = re.compile(r".*", re.DOTALL)
# Control characters (C0 but newline, DEL, C1) and the bidirectional embeddings, overrides and
# isolates: invisible in a browser, they can make public text read differently from what was
# sent (a reversed "1 2 3" or a hidden line). Newline only where a field may span lines.
_CONTROL = "\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
_CONTROL_MULTI_LINE = re.compile(f"[{_CONTROL}]")
_CONTROL_ONE_LINE = re.compile(f"[\n{_CONTROL}]")
MAX_BODY_CHARS = 5_000


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )


# ---------------------------------------------------------------------------- validation


class Body:
    """A JSON object from a request, read field by field; any problem is a 400 naming it."""

    def __init__(self, data: Mapping[str, Any], allowed: Collection[str]) -> None:
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ApiError(400, f"{unknown[0]}: unknown field (allowed: {', '.join(allowed)})")
        self._data = data

    def _get(self, name: str, kind: type, label: str) -> Any:
        value = self._data[name]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise ApiError(400, f"{name}: expected {label}")
        return value

    def text(
        self,
        name: str,
        *,
        max_len: int = 200,
        pattern: re.Pattern[str] = _ANY,
        multi_line: bool = False,
    ) -> str:
        if name not in self._data:
            raise ApiError(400, f"{name}: required")
        value: str = self._get(name, str, "a string")
        if not value.strip():
            raise ApiError(400, f"{name}: must not be empty")
        if len(value) > max_len:
            raise ApiError(400, f"{name}: longer than {max_len} characters")
        control = (_CONTROL_MULTI_LINE if multi_line else _CONTROL_ONE_LINE).search(value)
        if control is not None:
            raise ApiError(
                400,
                f"{name}: control or bidirectional formatting character"
                f" U+{ord(control.group()):04X} at position {control.start()}",
            )
        if not pattern.fullmatch(value):
            raise ApiError(400, f"{name}: invalid characters or format")
        return value

    def optional_text(self, name: str, **kwargs: Any) -> str | None:
        """None when absent or null."""
        return self.text(name, **kwargs) if self._data.get(name) is not None else None

    def components(self, name: str = "components", *, max_items: int = 100) -> tuple[str, ...]:
        if name not in self._data:
            raise ApiError(400, f"{name}: required")
        values: list[Any] = self._get(name, list, "a list of component ids")
        if not values or len(values) > max_items:
            raise ApiError(400, f"{name}: expected 1 to {max_items} component ids")
        for value in values:
            if not isinstance(value, str) or not COMPONENT_ID.match(value) or len(value) > 200:
                raise ApiError(400, f"{name}: {value!r} is not a component id like carriers/dhl")
        return tuple(dict.fromkeys(values))

    def time(self, name: str) -> float:
        text = self.text(name, max_len=64)
        try:
            return parse_time(text)
        except TimeFormatError as exc:
            raise ApiError(400, f"{name}: {exc}") from None

    def optional_time(self, name: str) -> float | None:
        return self.time(name) if self._data.get(name) is not None else None

    def flag(self, name: str) -> bool:
        return bool(self._get(name, bool, "true or false")) if name in self._data else False


def deploy_json(deploy: Deploy) -> dict[str, Any]:
    return {**asdict(deploy), "components": list(deploy.components), "at": format_time(deploy.at)}


def incident_json(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "component": incident.component,
        "title": incident.title,
        "status": str(incident.status),
        "component_status": str(incident.component_status),
        "opened_at": format_time(incident.opened_at),
    }


def update_json(incident_id: str, update: IncidentUpdate) -> dict[str, Any]:
    return {"incident_id": incident_id, **asdict(update), "at": format_time(update.at)}


def maintenance_json(maintenance: Maintenance) -> dict[str, Any]:
    times = {"start": format_time(maintenance.start), "end": format_time(maintenance.end)}
    if maintenance.created_at is not None:
        times["created_at"] = format_time(maintenance.created_at)
    return {**asdict(maintenance), **times, "components": list(maintenance.components)}
