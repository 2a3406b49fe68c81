"""Daemon configuration: strict, typed, and every error names the file, line and field path.

Secrets are never in the file: credentials and the API token are read from the environment
variables (or files) the config names.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from detector.credentials import ApiToken, SecretRef, credentials_from, named_tokens, read_secret
from detector.model import COMPONENT_ID_PATTERN, PROBE_KINDS, ComponentStatus
from detector.notify.config import Channel, unique_names
from detector.recurring import RecurringMaintenance
from detector.store.base import ComponentRecord
from probes.base import Duration, ProbeSpec, to_seconds

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0


# Every duration has a range: a value that passes `detector check` must never crash `run`
# (an interval of 10^20 days overflows the scheduler).
_SECONDS = BeforeValidator(to_seconds)


class ConfigError(ValueError):
    """One line: `file:line: field.path: what is wrong`. Never shows a URL's userinfo."""

    def __init__(self, message: str) -> None:
        super().__init__(redact_userinfo(message))


# Up to the last `@` of the URL: a password may itself hold `@` or `/` (hiding too much is
# the safe side).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s'\"]*@")


def redact_userinfo(text: str) -> str:
    """`ftp://admin:SECRET@host/` -> `ftp://***@host/`: config errors quote what they saw."""
    return _USERINFO.sub(r"\1***@", text)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Component(_Strict):
    id: str = Field(pattern=COMPONENT_ID_PATTERN)
    name: str = Field(min_length=1)
    description: str = ""

    @property
    def group(self) -> str:
        return self.id.split("/", 1)[0]


class ProbeDefaults(_Strict):
    target: str | None = None
    interval: Duration = 60.0
    timeout: Duration = 10.0
    credentials: SecretRef | None = None


class ProbeConfig(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: str
    component: str
    labels: dict[str, str] = Field(default_factory=dict)
    interval: Duration | None = None
    timeout: Duration | None = None
    target: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    credentials: SecretRef | None = None

    @field_validator("kind")
    @classmethod
    def _probe_kind(cls, kind: str) -> str:
        # `canary` is a kind too, but only under self_check: rules never see canaries.
        if kind not in PROBE_KINDS:
            known = ", ".join(sorted(PROBE_KINDS))
            raise ValueError(f"unknown probe kind {kind!r}; known: {known}")
        return kind


class Canary(_Strict):
    """A target outside the platform: when most canaries fail, the fault is ours."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    target: str
    check: Literal["http", "dns"] = "http"


class SelfCheck(_Strict):
    interval: Annotated[float, _SECONDS, Field(ge=0.1, le=HOUR)] = 30.0
    timeout: Annotated[float, _SECONDS, Field(ge=0.1, le=5 * MINUTE)] = 5.0
    canaries: list[Canary] = Field(default_factory=list, max_length=50)

    @field_validator("canaries")
    @classmethod
    def _unique(cls, canaries: list[Canary]) -> list[Canary]:
        ids = [c.id for c in canaries]
        duplicate = next((i for i in ids if ids.count(i) > 1), None)
        if duplicate is not None:
            raise ValueError(f"duplicate canary id {duplicate!r}")
        return canaries


class Settings(_Strict):
    """The daemon config (one file). Probe kinds' own options are `ProbeOptions`."""

    listen: str = Field(default="127.0.0.1:9464", pattern=r"^[^:\s]+:\d{1,5}$")
    store: str = "sqlite:///var/detector.db"
    rules: list[str] = Field(min_length=1)
    instance: str = Field(
        default_factory=socket.gethostname, min_length=1, max_length=64, pattern=r"^[^\s]+$"
    )
    page_name: str = "Status"
    page_url: str = ""  # public base URL for Statuspage `url` and shortlinks; "" = request host
    page_language: Literal["en", "es", "nl", "de", "fr", "it"] = "en"  # without ?lang= or a match
    evaluation_interval: Annotated[float, _SECONDS, Field(ge=0.1, le=HOUR)] = 15.0
    flush_interval: Annotated[float, _SECONDS, Field(ge=0.1, le=HOUR)] = 5.0
    retention: Annotated[float, _SECONDS, Field(ge=HOUR, le=3650 * DAY)] = 7 * DAY
    shutdown_grace: Annotated[float, _SECONDS, Field(ge=0.0, le=10 * MINUTE)] = 10.0
    # Several daemons on PostgreSQL: a dead or cut-off leader is replaced within about one
    # TTL plus a renewal (ttl/3); keep it at or under 20s for a failover within 30s.
    lease_ttl: Annotated[float, _SECONDS, Field(ge=1.0, le=10 * MINUTE)] = 15.0
    # Results held while the store is down; the oldest are dropped beyond this (counted).
    max_buffered_results: int = Field(default=500_000, ge=1000, le=50_000_000)
    # The API is public (status page): a client gets this long to send a request's headers.
    header_timeout: Annotated[float, _SECONDS, Field(ge=0.1, le=10 * MINUTE)] = 10.0
    max_connections: int = Field(default=1000, ge=1, le=100_000)
    self_check: SelfCheck = Field(default_factory=SelfCheck)
    api_token_env: str | None = "DETECTOR_API_TOKEN"
    api_token_file: str | None = None
    api_tokens: list[ApiToken] = Field(default_factory=list)
    recurring_maintenance: list[RecurringMaintenance] = Field(default_factory=list)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    probe_defaults: ProbeDefaults = Field(default_factory=ProbeDefaults)
    components: list[Component] = Field(default_factory=list)
    probes: list[ProbeConfig] = Field(default_factory=list)
    notifications: Annotated[list[Channel], AfterValidator(unique_names)] = Field(
        default_factory=list
    )
    # Filled by load_settings, not by the file:
    source: str = ""
    probe_specs: tuple[ProbeSpec, ...] = ()
    canary_specs: tuple[ProbeSpec, ...] = ()

    @field_validator("listen")
    @classmethod
    def _port_in_range(cls, listen: str) -> str:
        if not 0 <= int(listen.rsplit(":", 1)[1]) <= 65535:
            raise ValueError(f"port of {listen!r} is outside 0-65535")
        return listen

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        known = {c.id for c in self.components}
        if len(known) != len(self.components):
            raise ValueError("components: duplicate component id")
        windows = [w.id for w in self.recurring_maintenance]
        if len(set(windows)) != len(windows):
            raise ValueError("recurring_maintenance: duplicate id")
        for window in self.recurring_maintenance:
            unknown = [c for c in window.components if c not in known]
            if unknown:
                raise ValueError(
                    f"recurring maintenance {window.id!r}: unknown component {unknown[0]!r}"
                )
        seen: set[str] = set()
        for probe in self.probes:
            if probe.id in seen:
                raise ValueError(f"probes: duplicate probe id {probe.id!r}")
            seen.add(probe.id)
            if probe.component not in known:
                raise ValueError(f"probe {probe.id!r}: unknown component {probe.component!r}")
        return self

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    def component_records(self, now: float) -> list[ComponentRecord]:
        """The configured components for the store, in config order (statuses kept there)."""
        operational = ComponentStatus.OPERATIONAL
        return [
            ComponentRecord(c.id, c.name, c.group, c.description, operational, position, now)
            for position, c in enumerate(self.components)
        ]

    def component_names(self) -> dict[str, str]:
        return {c.id: c.name for c in self.components}

    def rule_paths(self) -> list[Path]:
        base = Path(self.source).parent if self.source else Path(".")
        return [base / path for path in self.rules]

    def api_token(self) -> str | None:
        return read_secret(self.api_token_env, self.api_token_file, required=False)

    def named_api_tokens(self) -> dict[str, str]:
        """Name -> token of every write-API token; the single-token form is "default"."""
        return named_tokens(self.api_token(), self.api_tokens)


def _spec(probe: ProbeConfig, defaults: ProbeDefaults) -> ProbeSpec:
    target = probe.target or defaults.target
    if not target:
        raise ValueError("no target (set it on the probe or in probe_defaults)")
    return ProbeSpec.model_validate(
        {
            "id": probe.id,
            "kind": probe.kind,
            "component": probe.component,
            "labels": probe.labels,
            "interval": probe.interval or defaults.interval,
            "timeout": probe.timeout or defaults.timeout,
            "target": target,
            "settings": probe.settings,
            "credentials": credentials_from(probe.credentials or defaults.credentials),
        }
    )


def load_settings(path: str | Path, *, resolve_secrets: bool = True) -> Settings:
    """Read and validate a config file. `resolve_secrets=False` skips reading credentials
    and the API token, for commands that only need components or the store URL."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        root, data = _parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{line}: YAML syntax error: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping at the top level")
    try:
        settings = Settings.model_validate({**data, "source": str(path)})
    except ValidationError as exc:
        raise ConfigError(_first_error(path, root, exc)) from None
    if not resolve_secrets:
        return settings
    try:
        settings.named_api_tokens()  # an unreadable token is a config error, found at check time
    except ValueError as exc:
        field = "api_token_file" if settings.api_token_file else "api_token_env"
        if str(exc).startswith("api_tokens") or settings.api_tokens:
            field = "api_tokens"
        raise ConfigError(_located(path, root, (field,), str(exc))) from None
    for i, channel in enumerate(settings.notifications):  # secrets readable at check time
        try:
            channel.secret()
        except ValueError as exc:
            where = ("notifications", i, "secret_file" if channel.secret_file else "secret_env")
            raise ConfigError(_located(path, root, where, str(exc))) from None
        if channel.type == "email" and not (channel.link or settings.page_url):
            why = "email needs page_url (or link) for its unsubscribe links"
            raise ConfigError(_located(path, root, ("notifications", i, "link"), why))
    probes = [(("probes", i), p, settings.probe_defaults) for i, p in enumerate(settings.probes)]
    canaries = [
        (("self_check", "canaries", i), _canary_config(c, settings.self_check), ProbeDefaults())
        for i, c in enumerate(settings.self_check.canaries)
    ]
    return settings.model_copy(
        update={
            "probe_specs": _specs(path, root, probes),
            "canary_specs": _specs(path, root, canaries),
        }
    )


def _canary_config(canary: Canary, self_check: SelfCheck) -> ProbeConfig:
    return ProbeConfig.model_construct(
        id=canary.id,
        kind="canary",
        component="sendcloud/self-check",  # a spec needs one; rules never see canaries
        labels={},
        interval=self_check.interval,
        timeout=min(self_check.timeout, self_check.interval),
        target=canary.target,
        settings={"check": canary.check},
        credentials=None,
    )


def _specs(
    path: Path,
    root: yaml.Node | None,
    probes: list[tuple[tuple[Any, ...], ProbeConfig, ProbeDefaults]],
) -> tuple[ProbeSpec, ...]:
    specs = []
    for where, probe, defaults in probes:
        try:
            specs.append(_spec(probe, defaults))
        except ValidationError as exc:
            error = exc.errors()[0]
            message = error["msg"].removeprefix("Value error, ")
            raise ConfigError(_located(path, root, (*where, *error["loc"]), message)) from None
        except ValueError as exc:
            raise ConfigError(_located(path, root, where, str(exc))) from None
    return tuple(specs)


def _parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """Parse once, keeping the node tree for line numbers; the C parser when available
    (a 10,000-probe config loads in about a second instead of ten)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        root = loader.get_single_node()
        return root, loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()


def _first_error(path: Path, root: yaml.Node | None, exc: ValidationError) -> str:
    errors = exc.errors()
    error = errors[0]
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return _located(path, root, tuple(error["loc"]), message) + more


def _located(path: Path, root: yaml.Node | None, loc: tuple[Any, ...], message: str) -> str:
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    line = _line_of(root, loc)
    where = f"{path}:{line}" if line else str(path)
    return f"{where}: {field}: {message}" if field else f"{where}: {message}"


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a line number."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            key = next((k for k, _ in node.value if k.value == part), None)
            if match is None:
                return line
            line, node = key.start_mark.line + 1 if key else line, match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
