"""The probe contract: spec, credentials and the hard-timeout runner (phases: `tracing`).

Shaped after blackbox_exporter: every kind is one coroutine with one signature,
`async def probe(spec, *, session, log, clock) -> ProbeResult`, registered by kind in
`PROBES` (filled in `probes/__init__.py`, with each kind's options model in `OPTIONS`).
A kind reports a failed check by raising `ProbeFailed` (or returning an ok=False result);
`run_probe` is the one caller that turns anything - its hard timeout, aiohttp errors, bugs -
into a result and never raises, so one bad target can never take the scheduler down.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import time
from collections.abc import Awaitable, Collection, Coroutine, Iterable
from typing import Annotated, Any, Protocol, TypeVar

import aiohttp
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    SerializeAsAny,
    ValidationInfo,
    field_validator,
    model_validator,
)
from structlog.typing import FilteringBoundLogger

from detector.clock import Clock
from detector.model import COMPONENT_ID_PATTERN, ProbeResult
from detector.timeutil import parse_duration
from probes import deadlines
from probes.tracing import PHASES


class ProbeFunc(Protocol):
    def __call__(
        self,
        spec: ProbeSpec,
        *,
        session: aiohttp.ClientSession,
        log: FilteringBoundLogger,
        clock: Clock,
    ) -> Awaitable[ProbeResult]: ...


# Filled by probes/__init__.py, the one place that lists the kinds.
PROBES: dict[str, ProbeFunc] = {}
OPTIONS: dict[str, type[BaseModel]] = {}


class ProbeFailed(Exception):
    """A check did not pass; the message becomes the result's `error`."""


def to_seconds(value: object) -> object:
    # Config files write durations with units ("30s"); code and tests pass plain seconds.
    return parse_duration(value) if isinstance(value, str) else value


Duration = Annotated[float, BeforeValidator(to_seconds), Field(gt=0, le=86400)]  # at most a day

_COMPONENT = re.compile(COMPONENT_ID_PATTERN)


class ProbeOptions(BaseModel):
    """Base of every kind's options (a probe's `settings:` key): strict, no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Credentials(BaseModel):
    """Test-account credentials, resolved from env vars by the caller. Never printed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: SecretStr | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None

    @model_validator(mode="after")
    def _one_scheme(self) -> Credentials:
        values = [s.get_secret_value() for s in (self.username, self.password, self.token) if s]
        basic = bool(self.username and self.password)
        if basic == bool(self.token) or not all(values):
            raise ValueError("credentials need a username and a password, or a token")
        if self.username and ":" in self.username.get_secret_value():
            raise ValueError("a Basic auth username cannot contain ':'")
        return self

    @property
    def scheme(self) -> str:
        return "bearer" if self.token else "basic"

    def authorization(self) -> str:
        """The `Authorization` header value."""
        if self.token:
            return f"Bearer {self.token.get_secret_value()}"
        assert self.username and self.password  # guaranteed by _one_scheme
        login, password = self.username.get_secret_value(), self.password.get_secret_value()
        return aiohttp.encode_basic_auth(login, password)

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # repr, str and rich all go through here: show the scheme, never a value.
        return [("scheme", self.scheme)]


class ProbeSpec(BaseModel):
    """One configured probe. `settings` (the probe's YAML key) is parsed into the kind's
    ProbeOptions model from OPTIONS."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    kind: str
    component: str
    labels: dict[str, str] = Field(default_factory=dict)
    interval: Duration = 60.0
    timeout: Duration = 10.0
    target: str
    settings: SerializeAsAny[BaseModel] = Field(default=None, validate_default=True)
    credentials: Credentials | None = Field(default=None, repr=False)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in OPTIONS:
            raise ValueError(f"unknown probe kind {kind!r}; known: {', '.join(sorted(OPTIONS))}")
        return kind

    @field_validator("component")
    @classmethod
    def _component_id(cls, component: str) -> str:
        if not _COMPONENT.match(component):
            raise ValueError(
                f"bad component {component!r}: expected sendcloud/…, carriers/… or integrations/…"
            )
        return component

    @field_validator("target")
    @classmethod
    def _base_url(cls, target: str) -> str:
        if not target.startswith(("http://", "https://")):
            raise ValueError(f"bad target {target!r}: expected an http:// or https:// base URL")
        if "@" in target.split("/")[2]:  # it would end up in logs and error texts
            raise ValueError("bad target: put credentials in `credentials`, not in the URL")
        return target.rstrip("/")

    @field_validator("settings", mode="before")
    @classmethod
    def _kind_settings(cls, settings: Any, info: ValidationInfo) -> Any:
        model = OPTIONS.get(info.data.get("kind", ""))
        if model is None:  # the kind itself was rejected; that error says it all
            return settings
        if isinstance(settings, model):
            return settings
        return model.model_validate(settings if settings is not None else {})

    @model_validator(mode="after")
    def _timeout_fits(self) -> ProbeSpec:
        # A run that may outlast its interval would overlap the next one.
        if self.timeout > self.interval:
            raise ValueError(f"timeout ({self.timeout:g}s) exceeds interval ({self.interval:g}s)")
        return self

    @property
    def slug(self) -> str:
        """`dhl` for `carriers/dhl`."""
        return self.component.partition("/")[2]

    def url(self, path: str, **params: object) -> str:
        """A configured path (or absolute URL) with its `{placeholders}` filled in."""
        filled = path.format(**params)
        return filled if filled.startswith(("http://", "https://")) else self.target + filled


_S = TypeVar("_S", bound=BaseModel)


def options_of(spec: ProbeSpec, model: type[_S]) -> _S:
    """The spec's options, typed; a spec built for another kind is a bug, not a failure."""
    if not isinstance(spec.settings, model):
        raise TypeError(f"probe {spec.id}: options are not {model.__name__}")
    return spec.settings


def auth_headers(spec: ProbeSpec) -> dict[str, str]:
    return {"Authorization": spec.credentials.authorization()} if spec.credentials else {}


# run_probe reads only ok / error / failure_kind from a kind's result and builds the real one
# (time, latency, phases, labels): building a full result here too cost ~3 µs a run.
_PASSED = ProbeResult(at=0.0, probe="", kind="", component="", ok=True)


def passed(spec: ProbeSpec, clock: Clock) -> ProbeResult:
    """An ok outcome for `run_probe`, the only caller of a kind, which builds the result."""
    del spec, clock  # the signature every kind already calls
    return _PASSED


# ----------------------------------------------------------------------------- responses


async def expect_status(resp: aiohttp.ClientResponse, expected: Collection[int] = (200,)) -> None:
    if resp.status not in expected:
        raise ProbeFailed(await http_error(resp))


async def http_error(resp: aiohttp.ClientResponse) -> str:
    """`HTTP 503 on POST /api/v2/parcels: carriers/dhl unavailable`."""
    text = f"HTTP {resp.status} on {resp.method} {resp.url.path}"
    reason = await _server_reason(resp)
    return f"{text}: {reason}" if reason else text


async def _server_reason(resp: aiohttp.ClientResponse) -> str:
    # Both Sendcloud error shapes: v2 {"error": {"message"}} and v3 {"errors": [{"detail"}]}.
    try:
        body = await resp.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return ""
    if not isinstance(body, dict):
        return ""
    error, errors = body.get("error"), body.get("errors")
    if isinstance(error, dict):
        error = error.get("message")
    if not error and isinstance(errors, list) and errors and isinstance(errors[0], dict):
        error = errors[0].get("detail")
    return str(error)[:120] if error else ""


async def read_json(resp: aiohttp.ClientResponse) -> Any:
    try:
        return await resp.json(content_type=None)
    except ValueError:
        raise ProbeFailed(f"invalid JSON from {resp.method} {resp.url.path}") from None


def describe(exc: BaseException) -> str:
    """`ClientConnectorError: Cannot connect to host …`, short enough for a status page."""
    detail = str(exc)
    name = type(exc).__name__
    return f"{name}: {detail}"[:200] if detail else name


# ------------------------------------------------------------------------------- cleanup

_DETACHED: set[asyncio.Task[Any]] = set()


async def cleanup(action: Coroutine[Any, Any, str | None]) -> str | None:
    """Run an undo step (cancel a parcel, delete an order) from a `finally`.

    Normally awaited, returning its error text. When the probe is being cancelled (hard
    timeout, shutdown) the step goes on in the background: the garbage must still go, but the
    result must not wait for it.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        # Its requests belong to no run: keep them out of the finished result's phases.
        context = contextvars.copy_context()
        context.run(PHASES.set, None)
        detached = asyncio.get_running_loop().create_task(action, context=context)
        _DETACHED.add(detached)  # a task nobody references can be garbage-collected mid-way
        detached.add_done_callback(_DETACHED.discard)
        return None
    return await action


# -------------------------------------------------------------------------------- runner


async def run_probe(
    spec: ProbeSpec,
    *,
    session: aiohttp.ClientSession,
    log: FilteringBoundLogger,
    clock: Clock,
    instance: str = "",
) -> ProbeResult:
    """Run one probe under its hard timeout. Never raises, except CancelledError.

    The result says why it was not ok: `fail` when the target answered wrongly (ProbeFailed,
    or a kind's own ok=False result), `error` when there was no usable answer (the hard
    timeout, a connection or DNS error, a crash in the probe)."""
    phases: dict[str, float] = {}
    # Only a traced session's hooks write phases: an untraced run skips the context change.
    token = PHASES.set(phases) if session.trace_configs else None
    deadline = deadlines.start(spec.timeout)
    started = time.perf_counter()
    ok, error, kind = False, None, "error"
    try:
        try:
            outcome = await PROBES[spec.kind](spec, session=session, log=log, clock=clock)
        except BaseException as exc:
            deadline.exit(exc)  # TimeoutError if it expired
            raise
        deadline.exit(None)
        ok, error, kind = outcome.ok, outcome.error, outcome.failure_kind
    except ProbeFailed as exc:
        error, kind = str(exc), "fail"
    except TimeoutError as exc:
        error = f"timeout after {spec.timeout:g}s" if deadline.expired else describe(exc)
    except (aiohttp.ClientError, OSError) as exc:
        error = describe(exc)
    except Exception as exc:  # a bug in a probe must still yield a result
        error = describe(exc)
        log.warning("probe_crashed", probe=spec.id, kind=spec.kind, exc_info=True)
    finally:
        if token is not None:
            PHASES.reset(token)
    latency = time.perf_counter() - started
    if log.is_enabled_for(logging.DEBUG):  # building the event's fields costs ~1 µs a run
        log.debug("probe_finished", probe=spec.id, ok=ok, latency_s=round(latency, 4), error=error)
    return ProbeResult(
        at=clock.now(),
        probe=spec.id,
        kind=spec.kind,
        component=spec.component,
        ok=ok,
        latency_s=latency,
        error=error,
        labels=spec.labels,  # shared, not copied: a frozen spec; results only read it
        phases=phases,
        failure_kind="fail" if ok or kind == "fail" else "error",
        instance=instance,
    )
