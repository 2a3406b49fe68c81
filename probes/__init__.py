"""Probe kinds: one async signature, one registry.

Every kind is `async def probe(spec, *, session, log, clock) -> ProbeResult`; callers run it
through `run_probe`, which applies the hard timeout and turns every failure into a result.
Adding a kind touches two places: its module and the two tables below.
"""

from __future__ import annotations

from detector.model import PROBE_KINDS
from probes import http, label_creation, order_import, tracking
from probes.base import (
    PROBES,
    SETTINGS,
    Credentials,
    ProbeFailed,
    ProbeFunc,
    ProbeSpec,
    run_probe,
    trace_config,
)

PROBES.update(
    {
        "label_creation": label_creation.probe,
        "order_import": order_import.probe,
        "http": http.probe,
        "tracking": tracking.probe,
    }
)
SETTINGS.update(
    {
        "label_creation": label_creation.LabelCreationSettings,
        "order_import": order_import.OrderImportSettings,
        "http": http.HttpSettings,
        "tracking": tracking.TrackingSettings,
    }
)
assert set(PROBES) == set(SETTINGS) == set(PROBE_KINDS), "probe registry out of date"

__all__ = [
    "PROBES",
    "SETTINGS",
    "Credentials",
    "ProbeFailed",
    "ProbeFunc",
    "ProbeSpec",
    "run_probe",
    "trace_config",
]
