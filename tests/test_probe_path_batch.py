"""Probe runs are counted and fed to the engine in batches (`Pipeline.drain`), yet nobody sees
less than what finished: a scrape, an evaluation and a reload each catch up first, and no run
is counted or judged twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from daemonkit import make_daemon, running

from detector.clock import ManualClock
from detector.daemon import Daemon
from detector.engine import Engine
from detector.model import ProbeResult
from detector.pipeline import Pipeline

pytestmark = pytest.mark.usefixtures("credentials")


@pytest.fixture
async def daemon(tmp_path: Path, sandbox: TestServer, clock: ManualClock) -> AsyncIterator[Daemon]:
    async with running(make_daemon(tmp_path, sandbox, clock), schedule=False, serve=False) as d:
        yield d


def pipeline_of(daemon: Daemon) -> Pipeline:
    assert daemon.pipeline is not None
    return daemon.pipeline


def window_sizes(engine: Engine) -> int:
    return sum(len(w.entries) for s in engine.series.values() for w in s.windows.values())


def judged(engine: Engine, results: list[ProbeResult]) -> int:
    """How many window entries the results make: one per rule each matches."""
    return sum(len(engine.rules_for(r.kind, r.component, r.probe)) for r in results)


async def test_a_scrape_right_after_runs_counts_every_run_once(daemon: Daemon) -> None:
    pipeline = pipeline_of(daemon)
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
    first = results[0]
    labels = {"probe": first.probe, "kind": first.kind, "component": first.component}
    assert daemon.metrics.get("detector_probe_runs_total", labels | {"result": first.result}) == 1


async def test_an_evaluation_judges_every_run_that_finished_and_each_once(
    daemon: Daemon,
) -> None:
    pipeline = pipeline_of(daemon)
    before = window_sizes(pipeline.engine)
    results = await daemon.probe_all()
    await daemon.evaluate()
    added = judged(pipeline.engine, results)
    assert window_sizes(pipeline.engine) - before == added > 0
    pipeline.drain()  # nothing left to feed
    daemon.metrics.exposition()
    assert window_sizes(pipeline.engine) - before == added
    assert len(pipeline.buffer) == len(results)  # written with the next flush, all of them


async def test_a_reload_first_feeds_the_runs_that_finished_under_the_old_rules(
    daemon: Daemon,
) -> None:
    pipeline = pipeline_of(daemon)
    engine = pipeline.engine
    results = await daemon.probe_all()
    added = judged(engine, results)
    # The same rules under new names: a run fed after the swap would land in the new watches.
    renamed = tuple(replace(r, name=f"{r.name}-v2") for r in engine.rules.values())
    await daemon.apply(daemon.settings, renamed)
    assert pipeline.arrived == [] and added > 0
    assert window_sizes(engine) == 0  # fed to the old watches, which the reload retired
    await daemon.probe_all()
    await daemon.evaluate()
    assert window_sizes(engine) == added  # later runs go to the new ones
