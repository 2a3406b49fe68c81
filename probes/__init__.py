"""Probe kinds: one async signature, one registry.

Every kind is `async def probe(spec, *, session, log, clock) -> ProbeResult`; callers run it
through `run_probe`, which applies the hard timeout and turns every failure into a result.
Adding a kind touches three places: its module, the two tables below, and PROBE_KINDS in
detector/model.py (the kinds rules may match; `canary` is the self-check's own, not there).
"""

from __future__ import annotations

from detector.model import PROBE_KINDS
from probes import canary, http, label_creation, order_import, tracking
from probes.base import (
    OPTIONS,
    PROBES,
    Credentials,
    ProbeSpec,
    run_probe,
)
from probes.tracing import ProbeSessions, trace_config

PROBES.update(
    {
        "label_creation": label_creation.probe,
        "order_import": order_import.probe,
        "http": http.probe,
        "tracking": tracking.probe,
        canary.KIND: canary.probe,
    }
)
OPTIONS.update(
    {
        "label_creation": label_creation.LabelCreationOptions,
        "order_import": order_import.OrderImportOptions,
        "http": http.HttpOptions,
        "tracking": tracking.TrackingOptions,
        canary.KIND: canary.CanaryOptions,
    }
)
assert set(PROBES) == set(OPTIONS) == {*PROBE_KINDS, canary.KIND}, "probe registry out of date"

__all__ = [
    "OPTIONS",
    "PROBES",
    "Credentials",
    "ProbeSessions",
    "ProbeSpec",
    "run_probe",
    "trace_config",
]
