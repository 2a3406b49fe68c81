"""Operator actions on a running daemon: what the write API and SIGHUP ask of it.

`Control` implements `detector.web.write.Control`: record and flag deploys, manual incident
updates, maintenance windows, readiness, and reloading config and rules. Each change reaches
the engine at once (through the pipeline, under its lock) and is then evaluated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from structlog.typing import FilteringBoundLogger

from detector.engine.manual import open_manual
from detector.engine.rulefile import RuleFileError, load_rules
from detector.model import (
    ComponentStatus,
    Decision,
    Deploy,
    DeployFlaggedBad,
    Incident,
    IncidentOpened,
    IncidentResolved,
    IncidentStatus,
    IncidentUpdate,
    IncidentUpdated,
    Maintenance,
    Rule,
)
from detector.pipeline import Pipeline
from detector.recurring import is_occurrence, occurrences, stale
from detector.settings import ConfigError, Settings, load_settings

# Settings a reload cannot apply to a running daemon (sockets, store, logging, jobs, token).
RESTART_ONLY = (
    "listen",
    "store",
    "instance",
    "evaluation_interval",
    "flush_interval",
    "log_format",
    "log_level",
    "page_name",
    "page_url",
    "page_language",
    "api_token_env",
    "api_token_file",
    "api_tokens",
    "header_timeout",
    "max_connections",
    "notifications",  # the dispatcher holds its channels (and their secrets) from the start
    "lease_ttl",
    "max_buffered_results",
)


class Host(Protocol):
    """What Control needs from the daemon shell."""

    settings: Settings

    def apply(self, settings: Settings, rules: Sequence[Rule]) -> Awaitable[None]:
        """Run with new settings and rules (probes rescheduled, components synced)."""
        ...

    def scheduling(self) -> bool: ...


class Control:
    def __init__(
        self,
        host: Host,
        pipeline: Pipeline,
        *,
        evaluate: Callable[[], Awaitable[list[Decision]]],
        log: FilteringBoundLogger,
    ) -> None:
        self.host = host
        self.pipeline = pipeline
        self.evaluate = evaluate
        self.log = log
        self.rules_loaded = True

    def _leader_only(self) -> None:
        # A standby's engine is not the one that decides: what it learned would be lost.
        if not self.pipeline.leading():
            raise ValueError("this instance is a standby: send writes to the leader")

    async def record_deploy(self, deploy: Deploy) -> Deploy:
        self._leader_only()
        await asyncio.to_thread(self.pipeline.store.add_deploy, deploy)
        self.pipeline.engine.add_deploy(deploy)
        self.log.info("deploy_recorded", deploy=deploy.id, components=list(deploy.components))
        await self.evaluate()
        return deploy

    async def flag_deploy_bad(self, deploy_id: str) -> Deploy:
        self._leader_only()
        engine, now = self.pipeline.engine, self.pipeline.clock.now()
        deploy = await asyncio.to_thread(self.pipeline.store.flag_deploy_bad, deploy_id, now)
        if engine.flag_deploy_bad(DeployFlaggedBad(now, deploy_id)) is None:
            engine.add_deploy(deploy)  # older than the engine remembers: learn it now
            engine.flag_deploy_bad(DeployFlaggedBad(now, deploy_id))
        self.log.warning("deploy_flagged_bad", deploy=deploy_id)
        await self.evaluate()
        return deploy

    async def update_incident(
        self, incident_id: str, status: IncidentStatus, body: str
    ) -> IncidentUpdate:
        engine = self.pipeline.engine
        try:
            decisions = await self.pipeline.decide(
                lambda now: engine.manual_update(incident_id, status, body, now)
            )
        except KeyError:
            await asyncio.to_thread(self.pipeline.store.get_incident, incident_id)  # NotFound
            message = f"incident {incident_id} is resolved; it takes no updates"
            raise ValueError(message) from None
        self.log.info("incident_manual_update", incident=incident_id, status=str(status))
        update = next(
            (d.update for d in decisions if isinstance(d, IncidentUpdated | IncidentResolved)),
            None,
        )
        assert update is not None
        return update

    async def open_incident(
        self,
        component: str,
        status: IncidentStatus,
        component_status: ComponentStatus,
        title: str,
        body: str,
    ) -> Incident:
        engine = self.pipeline.engine
        decisions = await self.pipeline.decide(
            lambda now: open_manual(engine, component, status, component_status, title, body, now)
        )
        [incident] = [d.incident for d in decisions if isinstance(d, IncidentOpened)]
        self.log.warning("incident_opened_by_hand", incident=incident.id, component=component)
        return incident

    async def add_maintenance(self, m: Maintenance) -> Maintenance:
        self._leader_only()
        stored = await asyncio.to_thread(self.pipeline.store.add_maintenance, m)
        self.pipeline.engine.add_maintenance(stored)
        self.log.info("maintenance_added", maintenance=stored.id, components=list(m.components))
        await self.evaluate()
        return stored

    async def sync_recurring(self) -> None:
        """The config's recurring windows, as occurrences up to a week ahead, into the store
        (ids are deterministic: rewriting one changes nothing) and the engine; occurrences
        not started that the config no longer asks for go. Run at start, on reload, each minute."""
        store, engine, now = self.pipeline.store, self.pipeline.engine, self.pipeline.clock.now()
        wanted = occurrences(self.host.settings.recurring_maintenance, now)
        stored = await asyncio.to_thread(store.list_maintenances, ending_after=now)
        known, added = {m.id: m for m in stored}, 0
        for maintenance in wanted:
            if known.get(maintenance.id) != maintenance:
                await asyncio.to_thread(store.add_maintenance, maintenance)
                added += 1
            if engine.calendar.maintenances.get(maintenance.id) != maintenance:
                engine.add_maintenance(maintenance)
        removed = stale(stored, wanted, now)
        for maintenance_id in removed:
            await asyncio.to_thread(store.cancel_maintenance, maintenance_id, now)
            engine.cancel_maintenance(maintenance_id)
        if added or removed:
            self.log.info("recurring_maintenance_synced", added=added, removed=len(removed))

    async def cancel_maintenance(self, maintenance_id: str) -> None:
        self._leader_only()
        if is_occurrence(maintenance_id):  # it would be back at the next sync
            raise ValueError("a recurring window's occurrence: change recurring_maintenance")
        now = self.pipeline.clock.now()
        await asyncio.to_thread(self.pipeline.store.cancel_maintenance, maintenance_id, now)
        self.pipeline.engine.cancel_maintenance(maintenance_id)
        self.log.info("maintenance_cancelled", maintenance=maintenance_id)
        await self.evaluate()

    async def reload(self) -> tuple[bool, str]:
        """Re-read config and rules; a file that fails validation changes nothing."""
        metrics, now = self.pipeline.metrics, self.pipeline.clock.now()
        try:
            settings = await asyncio.to_thread(load_settings, self.host.settings.source)
            rules = (await asyncio.to_thread(load_rules, settings.rule_paths())).rules
        except (ConfigError, RuleFileError) as exc:
            metrics.config_reloaded(False, now)
            self.log.error("reload_failed", error=str(exc))
            return False, str(exc)
        old = self.host.settings
        restart_only = [key for key in RESTART_ONLY if getattr(settings, key) != getattr(old, key)]
        if restart_only:  # applied at the next start; say so rather than ignore it silently
            self.log.warning("reload_needs_restart", fields=restart_only)
        await self.host.apply(settings, rules)
        await self.sync_recurring()
        self.rules_loaded = bool(rules)
        metrics.config_reloaded(True, now)
        probes = len(settings.probe_specs)
        self.log.info("reloaded", probes=probes, rules=len(rules))
        await self.evaluate()
        return True, f"{probes} probes, {len(rules)} rules"

    def readiness(self) -> Mapping[str, bool]:
        checks = {
            "store": self.pipeline.store_ok,
            "rules": self.rules_loaded,
            "scheduler": self.host.scheduling(),
        }
        # Named so the /readyz body says which series keep failing to evaluate.
        for rule, component in self.pipeline.broken_series():
            checks[f"series {rule} {component} evaluates"] = False
        return checks
