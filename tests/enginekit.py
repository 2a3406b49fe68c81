"""Helpers for driving the engine minute by minute in tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, cast

from detector.engine import Engine
from detector.engine.when import When, parse_when
from detector.model import (
    ComponentStatus,
    Decision,
    Impact,
    Match,
    ProbeResult,
    Rule,
)

T0 = 1_795_860_000.0  # 2026-11-28T10:00:00Z
MIN = 60.0


def rule(name: str = "labels", **overrides: Any) -> Rule:
    base = Rule(
        name=name,
        match=Match(kind="label_creation", component="carriers/*"),
        impact=(
            Impact(ComponentStatus.MAJOR_OUTAGE, parse_when("error_ratio >= 0.9")),
            Impact(ComponentStatus.PARTIAL_OUTAGE, parse_when("error_ratio >= 0.3")),
            Impact(ComponentStatus.DEGRADED_PERFORMANCE, parse_when("latency_p95 > 5s")),
        ),
        description="label creation failing",
        title="{component_name}: label creation failing{markets}",
    )
    return replace(base, **overrides)


def result(
    minute: float,
    ok: bool,
    *,
    component: str = "carriers/dhl",
    kind: str = "label_creation",
    probe: str = "dhl-de",
    market: str | None = "DE",
    latency: float = 0.2,
    instance: str = "",
    suspect: bool = False,
) -> ProbeResult:
    return ProbeResult(
        at=T0 + minute * MIN,
        probe=probe,
        kind=kind,
        component=component,
        ok=ok,
        latency_s=latency,
        error=None if ok else "HTTP 503",
        labels={"market": market} if market else {},
        instance=instance,
        suspect=suspect,
    )


class Driver:
    """Feeds one result a minute and evaluates at each minute and each deadline between."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.decisions: list[Decision] = []
        self.now = T0

    def at(self, minute: float) -> float:
        return T0 + minute * MIN

    def run_until(self, minute: float) -> None:
        """Evaluate at every deadline up to `minute` (inclusive)."""
        limit = self.at(minute)
        while (deadline := self.engine.next_deadline()) is not None and deadline <= limit:
            self.evaluate(deadline)

    def evaluate(self, moment: float) -> list[Decision]:
        self.now = moment
        out = self.engine.evaluate(moment)
        self.decisions.extend(out)
        return out

    def minutes(self, start: int, stop: int, ok: bool, **kwargs: Any) -> None:
        """A result every minute in [start, stop) with evaluation at each."""
        for minute in range(start, stop):
            self.run_until_before(minute)
            self.engine.observe(result(minute, ok, **kwargs))
            self.evaluate(self.at(minute))

    def run_until_before(self, minute: float) -> None:
        limit = self.at(minute)
        while (deadline := self.engine.next_deadline()) is not None and deadline < limit:
            self.evaluate(deadline)

    def only_incident(self) -> Any:
        incidents = self.engine.open_incidents()
        assert len(incidents) == 1, incidents
        return incidents[0]


class Boom:
    """A `when` whose evaluation raises: stands in for any bug in one rule."""

    text = "boom"
    metrics = frozenset({"error_ratio"})

    def evaluate(self, values: Mapping[str, float]) -> bool:
        raise ZeroDivisionError("boom")

    def explain(self, values: Mapping[str, float]) -> str:
        return "boom"


def boom_impact() -> tuple[Impact, ...]:
    """An impact list whose only condition raises on every evaluation."""
    return (Impact(ComponentStatus.MAJOR_OUTAGE, cast(When, Boom())),)
