"""Probe specs: every kind registered, defaults from the kind, bad fields refused in one line."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from detector.model import PROBE_KINDS
from probes import OPTIONS, PROBES, Credentials, ProbeSpec
from probes.http import HttpOptions


def test_registry_covers_every_kind() -> None:
    assert set(PROBES) == set(OPTIONS) == {*PROBE_KINDS, "canary"}  # canary: self-check only


def test_spec_defaults_come_from_the_kind() -> None:
    spec = ProbeSpec(id="p", kind="http", component="sendcloud/api", target="http://x/")
    assert spec.target == "http://x"
    assert spec.settings == HttpOptions()
    assert (spec.interval, spec.timeout, spec.credentials) == (60.0, 10.0, None)
    spec = ProbeSpec.model_validate(
        {**spec.model_dump(), "interval": "2m", "timeout": "30s", "settings": {"max_latency": "5s"}}
    )
    assert (spec.interval, spec.timeout) == (120.0, 30.0)
    assert isinstance(spec.settings, HttpOptions)
    assert spec.settings.max_latency == 5.0


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"kind": "ping"}, "unknown probe kind 'ping'"),
        ({"component": "dhl"}, "bad component 'dhl'"),
        ({"target": "127.0.0.1:9465"}, "bad target"),
        ({"target": "https://key:secret@example.com"}, "put credentials in `credentials`"),
        ({"settings": {"paht": "/x"}}, "settings.paht\n  Extra inputs are not permitted"),
        ({"settings": {"expected_status": ["200"]}}, "settings.expected_status.0\n  Input should"),
        ({"timeout": "2m"}, "timeout (120s) exceeds interval (60s)"),
        ({"interval": "soon"}, "bad duration 'soon'"),
        ({"credentials": {"username": "u"}}, "credentials need a username and a password"),
        ({"credentials": {"token": "t", "username": "u", "password": "p"}}, "or a token"),
    ],
)
def test_bad_spec_is_refused(fields: dict[str, Any], error: str) -> None:
    base = {"id": "p", "kind": "http", "component": "sendcloud/api", "target": "http://x"}
    with pytest.raises(ValidationError) as caught:
        ProbeSpec.model_validate({**base, **fields})
    assert error in str(caught.value)


def test_token_credentials() -> None:
    token = Credentials.model_validate({"token": "tok-123"})
    assert token.authorization() == "Bearer tok-123"
    assert "tok-123" not in repr(token)
