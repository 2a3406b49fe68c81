"""Notification latency and throughput through the webhook channel (DESIGN target: p99 time
from change to delivery <= 5 s).

A real SQLite store in a temporary folder, the dispatcher's own loop (`run`, woken by each
commit the way the pipeline wakes it) and a loopback aiohttp receiver that deduplicates by
delivery id. Two runs:

  latency     one incident change committed every --gap seconds; change -> receipt per change
  throughput  --burst incidents committed at once; deliveries/s until the last arrives

    .venv/bin/python bench/notify_bench.py [--changes 300] [--gap 0.02] [--burst 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import structlog
from aiohttp import web

from detector.clock import SystemClock
from detector.metrics import Metrics
from detector.model import ComponentStatus, Incident, IncidentOpened, IncidentStatus, IncidentUpdate
from detector.notify.config import Channel
from detector.notify.dispatcher import Dispatcher
from detector.store import SqlStore, open_store


class Receiver:
    def __init__(self) -> None:
        self.seen: dict[str, float] = {}  # incident id -> first receipt (perf_counter)
        self.deliveries: set[str] = set()
        self.done = asyncio.Event()
        self.expected = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        if body["delivery"] not in self.deliveries:
            self.deliveries.add(body["delivery"])
            self.seen.setdefault(body["incident"]["id"], time.perf_counter())
            if len(self.seen) >= self.expected:
                self.done.set()
        return web.Response(text="ok")


def incident(n: int, now: float) -> Incident:
    update = IncidentUpdate(now, IncidentStatus.INVESTIGATING, ComponentStatus.MAJOR_OUTAGE,
                            "We are investigating problems.", "error_ratio (1) >= 0.9")  # fmt: skip
    return Incident(f"inc-{n}", "carrier-label-creation", f"carriers/c{n % 50}",
                    "Carrier: label creation failing", "sustained", None,
                    ComponentStatus.MAJOR_OUTAGE, IncidentStatus.INVESTIGATING,
                    ComponentStatus.MAJOR_OUTAGE, now, updates=[update])  # fmt: skip


def commit(store: SqlStore, first: int, count: int) -> None:
    now = time.time()
    decisions = [IncidentOpened(incident(n, now)) for n in range(first, first + count)]
    store.commit_engine(decisions, {"bench": True}, {}, now)


async def run(args: argparse.Namespace, folder: Path) -> None:
    os.environ["BENCH_HOOK_SECRET"] = "bench"
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    store = open_store(f"sqlite:///{folder / 'detector.db'}")
    channel = Channel.model_validate(
        {"name": "bench", "type": "webhook", "url": f"http://127.0.0.1:{port}/hook",
         "secret_env": "BENCH_HOOK_SECRET", "concurrency": args.concurrency}
    )  # fmt: skip
    log = structlog.wrap_logger(
        structlog.PrintLogger(io.StringIO()),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    stopping = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        dispatcher = Dispatcher(store, [channel], session=session, clock=SystemClock(),
                                metrics=Metrics("bench"), log=log)  # fmt: skip
        task = asyncio.create_task(dispatcher.run(stopping))
        await latency(args, store, dispatcher, receiver)
        await throughput(args, store, dispatcher, receiver)
        stopping.set()
        await task
    store.close()
    await runner.cleanup()


async def latency(
    args: argparse.Namespace, store: SqlStore, dispatcher: Dispatcher, receiver: Receiver
) -> None:
    committed: dict[str, float] = {}
    receiver.expected = args.changes
    for n in range(args.changes):
        await asyncio.to_thread(commit, store, n, 1)
        committed[f"inc-{n}"] = time.perf_counter()
        dispatcher.wake()  # what Pipeline.commit does
        await asyncio.sleep(args.gap)
    await asyncio.wait_for(receiver.done.wait(), 60)
    waits = sorted(receiver.seen[i] - committed[i] for i in committed)
    p50 = statistics.median(waits)
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    print(f"latency: {len(waits)} changes, one every {args.gap * 1000:.0f} ms: "
          f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {waits[-1] * 1000:.1f} ms "
          f"(target p99 <= 5000 ms)")  # fmt: skip


async def throughput(
    args: argparse.Namespace, store: SqlStore, dispatcher: Dispatcher, receiver: Receiver
) -> None:
    receiver.done.clear()
    receiver.expected = args.changes + args.burst
    started = time.perf_counter()
    await asyncio.to_thread(commit, store, args.changes, args.burst)
    dispatcher.wake()
    await asyncio.wait_for(receiver.done.wait(), 600)
    seconds = time.perf_counter() - started
    print(f"throughput: {args.burst} deliveries in {seconds:.2f} s = "
          f"{args.burst / seconds:.0f} deliveries/s (concurrency {args.concurrency})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.02)
    parser.add_argument("--burst", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(args, Path(folder)))


if __name__ == "__main__":
    main()
