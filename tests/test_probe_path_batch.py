"""Probe runs are counted and fed to the engine in batches (`Pipeline.drain`), yet nobody sees
less than what finished: a scrape, an evaluation and a reload each catch up first, and no run
is counted or judged twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from daemonkit import make_daemon, running

from detector.clock import ManualClock
from detector.engine import Engine

pytestmark = pytest.mark.usefixtures("credentials")


def window_sizes(engine: Engine) -> int:
    return sum(len(w.entries) for s in engine.series.values() for w in s.windows.values())


async def test_a_scrape_right_after_runs_counts_every_run_once(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    daemon = make_daemon(tmp_path, sandbox, clock)
    async with running(daemon, schedule=False, serve=False):
        pipeline = daemon.pipeline
        assert pipeline is not None
        results = await daemon.probe_all()
        assert len(pipeline.arrived) == len(results)  # not yet counted: that is the batch
        text = daemon.metrics.exposition().decode()
        assert pipeline.arrived == []
        runs = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("detector_probe_runs_total{")
        ]
        assert sum(runs) == len(results)
        daemon.metrics.exposition()  # a second scrape counts nothing again
        assert daemon.metrics.get(
            "detector_probe_runs_total",
            {"probe": results[0].probe, "kind": results[0].kind,
             "component": results[0].component, "result": results[0].result},
        ) == 1.0  # fmt: skip


async def test_an_evaluation_judges_every_run_that_finished_and_each_once(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    daemon = make_daemon(tmp_path, sandbox, clock)
    async with running(daemon, schedule=False, serve=False):
        pipeline = daemon.pipeline
        assert pipeline is not None
        before = window_sizes(pipeline.engine)
        results = await daemon.probe_all()
        await daemon.evaluate()
        judged = sum(len(pipeline.engine.rules_for(r.kind, r.component, r.probe)) for r in results)
        assert window_sizes(pipeline.engine) - before == judged > 0
        pipeline.drain()  # nothing left to feed
        daemon.metrics.exposition()
        assert window_sizes(pipeline.engine) - before == judged
        assert len(pipeline.buffer) == len(results)  # written with the next flush, all of them
