"""Deploys, bad-deploy flags and maintenance windows: the calendar the engine consults."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from detector.model import Deploy, Maintenance


class Calendar:
    """Deploys, bad-deploy flags and maintenance windows, indexed by component."""

    # How long deploys are remembered for a late "flag bad": a day covers any on-call shift.
    DEPLOY_MEMORY_S = 86_400.0

    def __init__(self) -> None:
        self.deploys: dict[str, Deploy] = {}
        self.flagged_at: dict[str, float] = {}  # deploy id -> when it was flagged bad
        self.maintenances: dict[str, Maintenance] = {}
        self._by_component: dict[str, list[Maintenance]] = {}

    # --- deploys
    def add_deploy(self, deploy: Deploy) -> None:
        self.deploys[deploy.id] = deploy
        if deploy.bad:
            self.flagged_at.setdefault(deploy.id, deploy.at)

    def flag_bad(self, deploy_id: str, at: float) -> Deploy | None:
        deploy = self.deploys.get(deploy_id)
        if deploy is not None:
            self.flagged_at.setdefault(deploy_id, at)
        return deploy

    def deploy_before(self, component: str, moment: float, window: float) -> Deploy | None:
        """The latest deploy naming `component` in `[moment - window, moment]`."""
        best: Deploy | None = None
        for deploy in self.deploys.values():
            recent = component in deploy.components and 0 <= moment - deploy.at <= window
            if recent and (best is None or deploy.at >= best.at):
                best = deploy
        return best

    def flagged_during(self, component: str, since: float) -> Deploy | None:
        """A deploy naming `component` flagged bad at or after `since` (while it fails)."""
        for deploy_id, flagged in self.flagged_at.items():
            deploy = self.deploys[deploy_id]
            if flagged >= since and component in deploy.components:
                return deploy
        return None

    def forget_before(self, horizon: float) -> None:
        for deploy_id in [d.id for d in self.deploys.values() if d.at < horizon]:
            del self.deploys[deploy_id]
            self.flagged_at.pop(deploy_id, None)
        for maintenance in [m for m in self.maintenances.values() if m.end < horizon]:
            self.remove_maintenance(maintenance.id)

    # --- maintenance
    def add_maintenance(self, maintenance: Maintenance) -> None:
        self.remove_maintenance(maintenance.id)
        self.maintenances[maintenance.id] = maintenance
        for component in maintenance.components:
            self._by_component.setdefault(component, []).append(maintenance)

    def remove_maintenance(self, maintenance_id: str) -> Maintenance | None:
        old = self.maintenances.pop(maintenance_id, None)
        if old is not None:
            for component in old.components:
                kept = [m for m in self._by_component[component] if m.id != maintenance_id]
                if kept:
                    self._by_component[component] = kept
                else:
                    del self._by_component[component]
        return old

    def in_maintenance(self, component: str, now: float) -> bool:
        windows = self._by_component.get(component)
        return bool(windows) and any(m.start <= now < m.end for m in windows or ())

    def boundaries_after(self, moment: float) -> float | None:
        """The next maintenance start or end strictly after `moment`."""
        times = sorted(t for m in self.maintenances.values() for t in (m.start, m.end))
        index = bisect.bisect_right(times, moment)
        return times[index] if index < len(times) else None

    def components_changing(self, after: float, until: float) -> Iterable[str]:
        """Components whose maintenance starts or ends in `(after, until]`."""
        for maintenance in self.maintenances.values():
            if after < maintenance.start <= until or after < maintenance.end <= until:
                yield from maintenance.components
