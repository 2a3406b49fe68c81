"""The self-check: is this instance's own network sound enough to trust what it sees?

Each instance probes canaries outside the platform (another network's HTTP endpoint, its
resolver). While a strict majority of the configured canaries' latest results fail, the
instance is *suspect*: its results are stamped `suspect=True` (stored, exported, ignored by
the engine), `detector_self_check_ok` is 0, and the log says which canaries fail and why.
No canaries configured means never suspect.
"""

from __future__ import annotations

from collections.abc import Sequence

from structlog.typing import FilteringBoundLogger

from detector.metrics import Metrics
from detector.model import ProbeResult


class SelfCheck:
    def __init__(
        self, canaries: Sequence[str], *, metrics: Metrics, log: FilteringBoundLogger
    ) -> None:
        self.canaries = tuple(canaries)
        self.metrics = metrics
        self.log = log
        self.latest: dict[str, ProbeResult] = {}
        self.suspect = False
        metrics.set_self_check(True)

    def observe(self, result: ProbeResult) -> None:
        """A canary's result; logs loudly when the verdict turns either way."""
        self.latest[result.probe] = result
        self._judge()

    def set_canaries(self, canaries: Sequence[str]) -> None:
        """After a reload: judge by the canaries configured now (none: never suspect)."""
        self.canaries = tuple(canaries)
        self.latest = {c: r for c, r in self.latest.items() if c in self.canaries}
        self._judge()

    def _judge(self) -> None:
        failing = self.failing()
        suspect = len(failing) * 2 > len(self.canaries)
        if suspect == self.suspect:
            return
        self.suspect = suspect
        self.metrics.set_self_check(not suspect)
        if suspect:
            reasons = {r.probe: r.error or "failed" for r in failing}
            self.log.warning(
                "self_check_failed",
                failing=len(failing),
                canaries=len(self.canaries),
                reasons=reasons,
                note="results from this instance are marked suspect and open nothing",
            )
        else:
            self.log.warning("self_check_recovered", canaries=len(self.canaries))

    def failing(self) -> list[ProbeResult]:
        results = (self.latest.get(canary) for canary in self.canaries)
        return [r for r in results if r is not None and not r.ok]
