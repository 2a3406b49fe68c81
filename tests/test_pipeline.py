"""The decision pipeline and the shell's clocks: a broken series is counted, logged and named
in /readyz; a wall-clock step is noticed and the schedule rebuilt; stdlib loggers are JSON."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import time
from dataclasses import replace
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import apscheduler.schedulers.base
import pytest
from aiohttp.test_utils import TestServer
from daemonkit import json_log, make_daemon, running, write_config
from enginekit import boom_impact
from factories import T0

from detector.clock import ManualClock
from detector.clockwatch import ClockWatch
from detector.daemon import Daemon
from detector.engine import Engine
from detector.logs import configure
from detector.model import Decision
from detector.settings import load_settings

pytestmark = pytest.mark.usefixtures("credentials")


async def test_a_failing_series_is_counted_logged_and_named_in_readiness(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    out = io.StringIO()
    daemon = make_daemon(tmp_path, sandbox, clock, out)
    async with running(daemon, schedule=False, serve=False):
        engine, control = daemon.engine, daemon.control
        assert control is not None
        name = "carrier-label-creation"
        broken = replace(engine.rules[name], impact=boom_impact())
        engine.set_rules([broken, *(r for r in engine.rules.values() if r.name != name)])
        for _ in range(2):
            await daemon.probe_all()
            await daemon.evaluate()
        failures = daemon.metrics.get("detector_rule_evaluation_failures_total")
        assert failures is not None and failures >= 2
        logged = [
            json.loads(line)
            for line in out.getvalue().splitlines()
            if "series_evaluation_failed" in line
        ]
        assert len(logged) == failures
        assert {(e["rule"], e["error"]) for e in logged} == {(name, "ZeroDivisionError: boom")}
        dhl = [e for e in logged if e["component"] == "carriers/dhl"]
        assert dhl, logged
        assert not any(k.startswith("series ") for k in control.readiness())  # not named yet
        await daemon.probe_all()
        await daemon.evaluate()
        checks = control.readiness()
        assert checks[f"series {name} carriers/dhl evaluates"] is False
        assert checks["store"] is True


async def test_a_crashing_evaluation_keeps_the_daemon_and_its_metrics(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    daemon = make_daemon(tmp_path, sandbox, clock, out)
    async with running(daemon, schedule=False, serve=False):

        class Crashing:  # a stand-in whose evaluate raises (the compiled Engine's is read-only)
            def __init__(self, engine: Engine) -> None:
                self.engine = engine

            def __getattr__(self, name: str) -> Any:
                return getattr(self.engine, name)

            def evaluate(self, now: float) -> list[Decision]:
                raise RuntimeError("bug")

        assert daemon.pipeline is not None
        monkeypatch.setattr(daemon.pipeline, "engine", Crashing(daemon.pipeline.engine))
        await daemon.probe_all()
        assert await daemon.evaluate() == []
        assert daemon.metrics.get("detector_rule_evaluation_failures_total") == 1
        assert '"event": "evaluation_failed"' in out.getvalue()
        assert (
            daemon.metrics.get(  # the snapshot gauges were still refreshed
                "detector_component_status", {"component": "carriers/dhl", "status": "operational"}
            )
            == 1
        )


def test_clock_watch_reports_a_step_and_ignores_drift() -> None:
    wall = ManualClock(T0)
    mono = [1000.0]
    steps: list[float] = []
    out = io.StringIO()
    watch = ClockWatch(wall, lambda: mono[0], on_step=steps.append, log=json_log(out))
    wall.advance(5.0)
    mono[0] += 5.0
    assert watch.check() == 0.0
    wall.advance(6.5)  # NTP slewing: 1.5 s off over 5 s is drift, not a step
    mono[0] += 5.0
    assert watch.check() == 0.0
    wall.advance(5.0 - 3600)  # someone set the clock back an hour
    mono[0] += 5.0
    assert watch.check() == -3600.0
    assert steps == [-3600.0]
    [line] = [json.loads(x) for x in out.getvalue().splitlines()]
    assert (line["event"], line["seconds"], line["level"]) == ("clock_stepped", -3600.0, "warning")


async def test_a_step_back_of_an_hour_reschedules_every_job_from_the_new_wall_time(
    tmp_path: Path, sandbox: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stepping the machine's clock needs root and would disturb everything else running, so
    # the scheduler's wall clock (its only one: it waits on the loop's monotonic timer) is
    # the test's manual clock. The daemon reads the same clock; the monotonic one runs on.
    wall = ManualClock(time.time())

    class SteppedDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> SteppedDatetime:
            moment = datetime.fromtimestamp(wall.now(), tz)
            return cls.fromtimestamp(moment.timestamp(), tz)

    monkeypatch.setattr(apscheduler.schedulers.base, "datetime", SteppedDatetime)
    out = io.StringIO()
    daemon = make_daemon(tmp_path, sandbox, wall, out)
    async with running(daemon, serve=False):  # with the scheduler
        scheduler = daemon.scheduler
        assert scheduler is not None

        def waits() -> dict[str, float]:
            return {j.id: j.next_run_time.timestamp() - wall.now() for j in scheduler.get_jobs()}

        # next_run_time is whole microseconds: a 60 s job can be due 60.0000005 s on
        assert all(0 <= wait <= 60.001 for job, wait in waits().items() if job != "retention")
        wall.advance(-3600)  # the wall clock steps back an hour
        assert waits()["evaluate"] > 3600  # APScheduler alone would sit out the hour
        daemon.clock_watch.check()
        after = waits()
        assert after["retention"] == pytest.approx(3600, abs=0.5)
        assert after["evaluate"] == pytest.approx(15, abs=0.5)
        assert after["flush"] == pytest.approx(1, abs=0.5)
        assert all(0 <= after[f"probe:{s.id}"] <= 60 for s in daemon.settings.probe_specs)
        assert '"event": "clock_stepped"' in out.getvalue()


def test_stdlib_loggers_are_json_in_json_mode(capsys: pytest.CaptureFixture[str]) -> None:
    configure("json", "info")
    try:
        logging.getLogger("aiohttp.server").error("Error handling request from %s", "1.2.3.4")
        logging.getLogger("apscheduler.scheduler").info("Running job (quiet at info)")
        logging.getLogger("apscheduler.scheduler").warning("Run time of job was missed")
        lines = capsys.readouterr().err.splitlines()
        parsed = [json.loads(line) for line in lines]
        assert [(p["logger"], p["level"], p["event"]) for p in parsed] == [
            ("aiohttp.server", "error", "Error handling request from 1.2.3.4"),
            ("apscheduler.scheduler", "warning", "Run time of job was missed"),
        ]
    finally:
        configure("json", "error")


async def test_the_largest_values_check_allows_still_run(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    config = write_config(
        tmp_path,
        str(sandbox.make_url("")).rstrip("/"),
        evaluation_interval="1h",
        timeout="1d",
        extra="retention: 3650d\nheader_timeout: 10m\nmax_connections: 100000\n"
        "self_check: {interval: 1h, timeout: 5m}\n",
    )
    config.write_text(
        config.read_text()
        .replace("interval: 60s", "interval: 1d")
        .replace("flush_interval: 1s", "flush_interval: 1h")
        .replace("shutdown_grace: 2s", "shutdown_grace: 10m")
    )
    daemon = Daemon(load_settings(config), log=json_log(io.StringIO()), clock=clock)
    async with running(daemon):
        assert daemon.scheduler is not None and daemon.scheduler.running
        assert daemon.settings.probe_specs[0].interval == 86400


async def test_sighup_reloads_in_a_task_the_daemon_owns_and_awaits(
    tmp_path: Path, sandbox: TestServer, clock: ManualClock
) -> None:
    out = io.StringIO()
    daemon = make_daemon(tmp_path, sandbox, clock, out)
    run = asyncio.create_task(daemon.run())
    while daemon.control is None or not daemon.scheduling():
        await asyncio.sleep(0.01)  # startup: the store, the API, the scheduler
    os.kill(os.getpid(), signal.SIGHUP)
    os.kill(os.getpid(), signal.SIGTERM)  # at once: shutdown must wait for the reload
    await asyncio.wait_for(run, 30)
    events = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert events.index("reloaded") < events.index("daemon_stopped")
    assert "task_failed" not in events
    assert not daemon._tasks  # nothing left behind
