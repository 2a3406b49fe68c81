"""The `notifications:` section of the daemon config: one strict model per channel."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from detector.model import ComponentStatus
from detector.notify.payload import EVENT_NAMES, Audience, EventName
from probes.base import to_seconds

ChannelType = Literal["webhook", "slack", "pagerduty", "alertmanager", "email", "statuspage"]
_SECONDS = BeforeValidator(to_seconds)

# Which events each type can say something about.
_INCIDENT = frozenset({"incident.opened", "incident.updated", "incident.resolved"})
_MAINTENANCE = frozenset({"maintenance.started", "maintenance.ended"})
SUPPORTED: dict[str, frozenset[str]] = {
    "webhook": frozenset(EVENT_NAMES),
    "slack": frozenset(EVENT_NAMES),
    "pagerduty": _INCIDENT | {"episode.started"},
    "alertmanager": _INCIDENT | {"episode.started"},
    "email": _INCIDENT | _MAINTENANCE,
    "statuspage": _INCIDENT | _MAINTENANCE | {"component.updated"},
}
_ONCALL_BY_DEFAULT = {"pagerduty", "alertmanager", "webhook"}
_PUBLIC_ONLY = {"email", "statuspage"}
_DEFAULT_URLS = {
    "pagerduty": "https://events.pagerduty.com/v2/enqueue",
    "statuspage": "https://api.statuspage.io/v1",
}


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Globs = Annotated[list[str] | None, BeforeValidator(_listed)]


class ChannelMatch(BaseModel):
    """Globs on rule, component and group; lists of statuses and causes. All must match."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: Globs = None
    component: Globs = None
    group: Globs = None
    status: Annotated[list[ComponentStatus] | None, BeforeValidator(_listed)] = None
    cause: Annotated[list[Literal["sustained", "deploy"]] | None, BeforeValidator(_listed)] = None

    def matches(self, event: str, facts: Mapping[str, Any]) -> bool:
        for key, globs in (
            ("rule", self.rule),
            ("component", self.component),
            ("group", self.group),
        ):
            if globs is not None and not any(
                fnmatch.fnmatchcase(facts.get(key, ""), g) for g in globs
            ):
                return False
        # An incident is judged by its worst status, so its resolve reaches whoever got the open.
        status = facts.get("impact") or facts.get("status", "")
        if self.status is not None and status not in {str(s) for s in self.status}:
            return False
        return self.cause is None or facts.get("cause", "") in self.cause


class Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    type: ChannelType
    url: str = ""
    secret_env: str | None = None
    secret_file: str | None = None
    audience: Audience | None = None  # default: oncall for webhook/pagerduty/alertmanager
    notify_after: Annotated[float | None, _SECONDS, Field(ge=0, le=86400)] = None
    match: ChannelMatch = Field(default_factory=ChannelMatch)
    events: list[EventName] | None = None  # None: every event the type supports
    max_attempts: int = Field(default=10, ge=1, le=100)
    concurrency: int = Field(default=4, ge=1, le=100)
    timeout: Annotated[float, _SECONDS, Field(ge=0.1, le=300)] = 10.0
    link: str = ""  # base URL for links in messages; default: the daemon's page_url
    # email
    sender: str = ""
    to: list[str] = Field(default_factory=list)
    username: str = ""
    starttls: bool = True
    ca_file: str | None = None
    # statuspage
    page_id: str = ""
    components: dict[str, str] = Field(default_factory=dict)  # detector id -> Statuspage id
    rate: float = Field(default=1.0, gt=0, le=100)  # requests/s (Statuspage: 1 per token)
    # alertmanager
    resend_interval: Annotated[float, _SECONDS, Field(ge=1, le=3600)] = 60.0

    @model_validator(mode="after")
    def _complete(self) -> Channel:
        if self.audience is None:
            audience = "oncall" if self.type in _ONCALL_BY_DEFAULT else "public"
            object.__setattr__(self, "audience", audience)
        if not self.url and self.type in _DEFAULT_URLS:
            object.__setattr__(self, "url", _DEFAULT_URLS[self.type])
        needs = {
            "webhook": ("url", "secret"),
            "slack": ("url",),
            "pagerduty": ("secret",),
            "alertmanager": ("url",),
            "email": ("url", "sender", "to"),
            "statuspage": ("page_id", "secret"),
        }[self.type]
        for field in needs:
            present = (
                (self.secret_env or self.secret_file) if field == "secret" else getattr(self, field)
            )
            if not present:
                what = "secret_env or secret_file" if field == "secret" else field
                raise ValueError(f"channel {self.name!r} ({self.type}) needs {what}")
        if self.type == "email" and not re.fullmatch(r"smtp://[^/:@\s]+(:\d{1,5})?/?", self.url):
            raise ValueError(f"channel {self.name!r}: url must be smtp://host:port")
        if self.type in _PUBLIC_ONLY and self.audience != "public":
            raise ValueError(f"channel {self.name!r}: {self.type} carries public text only")
        if self.notify_after is not None and self.audience != "oncall":
            raise ValueError(f"channel {self.name!r}: notify_after is for audience oncall")
        return self

    def secret(self) -> str:
        """The channel's secret (HMAC key, routing key, API key, SMTP password); ValueError."""
        if self.secret_env:
            value = os.environ.get(self.secret_env)
            if value:
                return value
            if not self.secret_file:
                raise ValueError(f"environment variable {self.secret_env} is not set")
        if self.secret_file:
            try:
                return Path(self.secret_file).read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read {self.secret_file}: {exc.strerror}") from None
        return ""

    def attempt_budget(self) -> float:
        """How long one attempt may take in all: an email goes to every subscriber."""
        return self.timeout * 2 + (0.5 * len(self.to) if self.type == "email" else 0.0)

    def wants(self, event: str, facts: Mapping[str, Any], target: str) -> bool:
        if target and target != self.name:
            return False
        if event not in SUPPORTED[self.type] or (self.events and event not in self.events):
            return False
        if event == "episode.started" and self.audience != "oncall":
            return False
        if self.audience == "public" and not facts.get("public", True):
            return False
        return self.match.matches(event, facts)


def unique_names(channels: list[Channel]) -> list[Channel]:
    names = [c.name for c in channels]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ValueError(f"duplicate channel name {duplicate!r}")
    return channels
