"""The words of incidents: titles, bodies and the fields rule templates may use.

Bodies always carry the evidence (`error_ratio (0.42) >= 0.3`), so whoever reads the status
page or the replay output sees why detector decided what it did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detector.engine.series import Series
from detector.engine.when import METRICS
from detector.model import ComponentStatus, Deploy, Rule
from detector.timeutil import format_duration, format_time


class Texts:
    def __init__(self, component_names: Mapping[str, str]) -> None:
        self.component_names = dict(component_names)

    def component_name(self, component: str) -> str:
        name = self.component_names.get(component)
        return name if name else component.rsplit("/", 1)[-1]

    def fields(
        self,
        series: Series,
        rule: Rule,
        now: float,
        markets: tuple[str, ...],
        deploy: Deploy | None,
        explanation: str,
    ) -> dict[str, Any]:
        """Everything a rule's `title` / `message` template may name."""
        assert series.failing_since is not None
        # An empty window (no_data: keep) says nothing: show what the last data said.
        values = series.window.metrics(METRICS) if len(series.window) else series.values or {}
        fields: dict[str, Any] = dict.fromkeys(METRICS, 0.0) | values
        for count in ("results", "failures", "consecutive_failures"):
            fields[count] = int(fields[count])  # `{results}` reads 5, not 5.0
        status = series.status or rule.impact[0].status
        fields.update(
            component=series.component,
            component_name=self.component_name(series.component),
            rule=rule.name,
            description=rule.description or f"{rule.name} failing",
            markets=f" ({', '.join(markets)})" if markets else "",
            explanation=explanation,
            status=status.words,
            deploy=deploy.id if deploy else "",
            failing_for=format_duration(now - series.failing_since),
        )
        return fields

    @staticmethod
    def no_data(rule: Rule, count: int) -> str:
        return (
            f"no data: {count} results in the last {format_duration(rule.window)}"
            f" (min_results {rule.min_results})"
        )

    @staticmethod
    def deploy_note(deploy: Deploy, failing_since: float) -> str:
        lag = failing_since - deploy.at
        when = f"{format_duration(lag)} after" if lag >= 0 else f"{format_duration(-lag)} before"
        return (
            f" The failure started {when} deploy {deploy.id}"
            f" ({deploy.service} {deploy.version}, {format_time(deploy.at)})."
        )

    @staticmethod
    def relapse(explanation: str) -> str:
        return f"Failing again: {explanation}. Back to investigating."

    @staticmethod
    def impact_change(status: ComponentStatus, explanation: str) -> str:
        return f"Impact is now {status.words}: {explanation}."

    @staticmethod
    def recovering(explanation: str, resolve_after: float) -> str:
        return (
            f"Checks pass again: {explanation}. Monitoring; resolves after"
            f" {format_duration(resolve_after)} without failure."
        )

    @staticmethod
    def resolved(stable_for: float) -> str:
        return f"Resolved: checks have passed for {format_duration(stable_for)}."
