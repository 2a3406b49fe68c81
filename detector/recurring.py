"""Recurring maintenance windows from the config (`recurring_maintenance:`), in cron syntax.

    recurring_maintenance:
      - {id: dhl-weekly, cron: "0 2 * * SUN", duration: 2h, components: [carriers/dhl],
         title: "DHL weekly maintenance"}

Cron fields are read in UTC. The daemon turns each window into one-off `Maintenance`
occurrences `LOOKAHEAD` ahead (`occurrences`), with deterministic ids `r-<id>-<start>`
(`r-dhl-weekly-20261206T0200Z`), so writing them again is harmless, the engine sees them as
maintenance events ahead of time, and the page and the v2 JSON list them as upcoming.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Annotated

from croniter import croniter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from detector.model import COMPONENT_ID_PATTERN, Maintenance
from probes.base import to_seconds

LOOKAHEAD = 7 * 86400.0  # occurrences known to the engine and shown as upcoming
PREFIX = "r-"  # ids of occurrences; the write API refuses to cancel one (edit the config)
_CHECKED_STARTS = 60  # consecutive starts checked for overlap at load time
_MIN_DURATION, _MAX_DURATION = 60.0, 7 * 86400.0


class RecurringMaintenance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,47}$")
    cron: str = Field(max_length=100)
    duration: Annotated[
        float, BeforeValidator(to_seconds), Field(ge=_MIN_DURATION, le=_MAX_DURATION)
    ]
    components: list[Annotated[str, Field(pattern=COMPONENT_ID_PATTERN)]] = Field(
        min_length=1, max_length=100
    )
    title: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str) -> str:
        # Five fields, minute resolution: croniter also takes a sixth (seconds), which a
        # maintenance window has no use for and which silently changes what the others mean.
        if len(cron.split()) != 5 or not croniter.is_valid(cron):
            raise ValueError(f"{cron!r} is not a five-field cron expression (m h dom mon dow)")
        return cron

    @model_validator(mode="after")
    def _no_overlap(self) -> RecurringMaintenance:
        starts = _starts(self.cron, 0.0, _CHECKED_STARTS)
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        if gaps and min(gaps) < self.duration:
            raise ValueError(
                f"duration: longer than the {min(gaps) / 3600:g}h between two starts of "
                f"{self.cron!r}; the windows would overlap"
            )
        return self


def _starts(cron: str, after: float, count: int) -> list[float]:
    it = croniter(cron, datetime.fromtimestamp(after, tz=UTC))
    return [float(it.get_next(float)) for _ in range(count)]


def occurrence_id(window_id: str, start: float) -> str:
    stamp = datetime.fromtimestamp(start, tz=UTC).strftime("%Y%m%dT%H%MZ")
    return f"{PREFIX}{window_id}-{stamp}"


def occurrences(
    windows: Iterable[RecurringMaintenance], now: float, lookahead: float = LOOKAHEAD
) -> list[Maintenance]:
    """Every occurrence running at `now` or starting within `lookahead`, soonest first."""
    found = []
    for window in windows:
        it = croniter(window.cron, datetime.fromtimestamp(now - window.duration, tz=UTC))
        while (start := float(it.get_next(float))) <= now + lookahead:
            if start + window.duration > now:
                found.append(
                    Maintenance(
                        start,
                        start + window.duration,
                        tuple(dict.fromkeys(window.components)),
                        window.title,
                        id=occurrence_id(window.id, start),
                    )
                )
    return sorted(found, key=lambda m: (m.start, m.id))


def is_occurrence(maintenance_id: str) -> bool:
    return re.match(rf"^{PREFIX}[a-z0-9-]+-\d{{8}}T\d{{4}}Z$", maintenance_id) is not None


def stale(stored: Sequence[Maintenance], wanted: Sequence[Maintenance], now: float) -> list[str]:
    """Stored occurrences that have not started and the config no longer asks for."""
    keep = {m.id for m in wanted}
    return [m.id for m in stored if is_occurrence(m.id) and m.id not in keep and m.start > now]
