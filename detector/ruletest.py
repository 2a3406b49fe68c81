"""Rule unit tests, like `promtool test rules` (format in DESIGN.md).

A test replays events (from a file and/or inline `series`) through the real engine and, at
each expectation time, compares the unresolved incidents with the expected ones; only the
keys an expectation gives are compared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from detector.engine.rulefile import RuleFileError, load_rules
from detector.events import EventsError, read_events
from detector.model import Event, Incident, ProbeResult, Rule, incident_to_dict
from detector.replay import Replayer
from detector.timeutil import TimeFormatError, format_time, parse_duration, parse_time


class RuleTestError(ValueError):
    """A test file that cannot be run: one line naming the file and the test."""


_TEST_KEYS = {"name", "events", "series", "expect"}
_SERIES_KEYS = {"probe", "kind", "component", "labels", "interval", "start", "values"}
_SERIES_KEYS |= {"instance", "suspect"}
_EXPECT_KEYS = {"at", "incidents"}
_INCIDENT_KEYS = {
    "rule", "component", "status", "component_status", "title", "cause", "deploy", "impact",
    "markets",
}  # fmt: skip
_TOKEN = re.compile(r"^(ok|fail|_)(?:@(\S+?))?(?:\s*x\s*(\d+))?$")


@dataclass
class TestReport:
    name: str
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def expand_values(values: str) -> list[tuple[bool | None, float | None]]:
    """`ok x10, fail@6s x3, _ x2` -> (ok, latency) per interval; `_` is a gap (None)."""
    out: list[tuple[bool | None, float | None]] = []
    for raw in values.split(","):
        token = raw.strip()
        match = _TOKEN.match(token)
        if match is None:
            raise ValueError(f"bad value {token!r} (expected ok, fail or _, e.g. 'fail x45')")
        word, latency, repeat = match.groups()
        ok = None if word == "_" else word == "ok"
        seconds = parse_duration(latency) if latency else None
        out.extend([(ok, seconds)] * int(repeat or 1))
    return out


def series_events(spec: dict[str, Any]) -> list[ProbeResult]:
    unknown = set(spec) - _SERIES_KEYS
    if unknown:
        raise ValueError(f"unknown series key {sorted(unknown)[0]!r}")
    missing = [
        k for k in ("probe", "kind", "component", "interval", "start", "values") if k not in spec
    ]
    if missing:
        raise ValueError(f"series needs '{missing[0]}'")
    start = parse_time(str(spec["start"]))
    interval = parse_duration(str(spec["interval"]))
    raw_labels = spec.get("labels") or {}
    if not isinstance(raw_labels, dict):
        raise ValueError("series 'labels' must be a mapping, e.g. {market: DE}")
    labels = {str(k): str(v) for k, v in raw_labels.items()}
    results = []
    for index, (ok, latency) in enumerate(expand_values(str(spec["values"]))):
        if ok is None:
            continue
        results.append(
            ProbeResult(
                at=start + index * interval,
                probe=str(spec["probe"]),
                kind=str(spec["kind"]),
                component=str(spec["component"]),
                ok=ok,
                latency_s=latency if latency is not None else 0.1,
                error=None if ok else "failed (series)",
                labels=labels,
                instance=str(spec.get("instance") or ""),
                suspect=spec.get("suspect") is True,
            )
        )
    return results


def _merge(streams: list[list[Event]]) -> list[Event]:
    merged = [event for stream in streams for event in stream]
    merged.sort(key=lambda e: e.at)  # stable: file order kept for equal times
    return merged


def _live_view(incident: Incident) -> dict[str, Any]:
    """The replay form plus where the incident stands now, which expectations compare."""
    return incident_to_dict(incident) | {
        "status": str(incident.status),
        "component_status": str(incident.component_status),
    }


def compare(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> bool:
    """Each expected entry must match a distinct got entry on its given keys; counts equal."""
    if len(expected) != len(got):
        return False
    remaining = list(got)
    for want in expected:
        found = next(
            (g for g in remaining if all(str(g.get(k)) == str(v) for k, v in want.items())),
            None,
        )
        if found is None:
            return False
        remaining.remove(found)
    return True


class TestFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            doc = yaml.safe_load(self.path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            message = f"{self.path}: cannot read test file: {exc}".replace("\n", " ")
            raise RuleTestError(message) from None
        if not isinstance(doc, dict) or set(doc) - {"rule_files", "tests"}:
            raise RuleTestError(f"{self.path}: expected keys 'rule_files' and 'tests' only")
        files = doc.get("rule_files") or []
        if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
            raise RuleTestError(f"{self.path}: 'rule_files' must be a non-empty list of paths")
        try:
            self.rules: tuple[Rule, ...] = load_rules(self.path.parent / f for f in files).rules
        except RuleFileError as exc:
            raise RuleTestError(f"{self.path}: rule files: {exc}") from None
        tests = doc.get("tests")
        if not isinstance(tests, list) or not tests:
            raise RuleTestError(f"{self.path}: 'tests' must be a non-empty list")
        self.tests: list[dict[str, Any]] = tests

    def run(self) -> list[TestReport]:
        return [self._run_one(index, test) for index, test in enumerate(self.tests)]

    def _fail(self, name: str, what: str) -> RuleTestError:
        return RuleTestError(f"{self.path}: test {name!r}: {what}")

    def _events(self, name: str, test: dict[str, Any]) -> list[Event]:
        streams: list[list[Event]] = []
        if test.get("events"):
            try:
                streams.append(read_events(self.path.parent / str(test["events"])))
            except (OSError, EventsError) as exc:
                raise self._fail(name, str(exc)) from None
        series = test.get("series") or []
        if not isinstance(series, list):
            raise self._fail(name, "'series' must be a list")
        for spec in series:
            if not isinstance(spec, dict):
                raise self._fail(name, "each series entry must be a mapping")
            try:
                streams.append(list(series_events(spec)))
            except (ValueError, TimeFormatError) as exc:
                raise self._fail(name, str(exc)) from None
        if not streams:
            raise self._fail(name, "needs 'events' or 'series'")
        return _merge(streams)

    def _run_one(self, index: int, test: Any) -> TestReport:
        if not isinstance(test, dict):
            raise RuleTestError(f"{self.path}: test #{index + 1} must be a mapping")
        name = str(test.get("name") or f"#{index + 1}")
        unknown = set(test) - _TEST_KEYS
        if unknown:
            raise self._fail(name, f"unknown key {sorted(unknown)[0]!r}")
        events = self._events(name, test)
        series = test.get("series") or []
        base = parse_time(str(series[0]["start"])) if series else (events[0].at if events else 0.0)
        replayer = Replayer(self.rules, events)
        outcome = TestReport(name)
        for expect in sorted(self._expectations(name, test, base), key=lambda e: e[0]):
            moment, label, wanted = expect
            replayer.advance_to(moment)
            got = sorted(
                (_live_view(i) for i in replayer.engine.open_incidents()),
                key=lambda v: (v["rule"], v["component"]),
            )
            if not compare(wanted, got):
                outcome.failures.append(_diff(label, moment, wanted, got))
        return outcome

    def _expectations(
        self, name: str, test: dict[str, Any], base: float
    ) -> list[tuple[float, str, list[dict[str, Any]]]]:
        out = []
        expects = test.get("expect") or []
        if not isinstance(expects, list):
            raise self._fail(name, "'expect' must be a list")
        for expect in expects:
            if not isinstance(expect, dict) or set(expect) - _EXPECT_KEYS or "at" not in expect:
                raise self._fail(name, f"bad expect entry {expect!r}: needs 'at' and 'incidents'")
            at = str(expect["at"])
            try:
                moment = parse_time(at) if "T" in at else base + parse_duration(at)
            except TimeFormatError as exc:
                raise self._fail(name, f"expect 'at': {exc}") from None
            wanted = expect.get("incidents") or []
            if not isinstance(wanted, list):
                raise self._fail(name, f"expect at {at}: 'incidents' must be a list")
            for entry in wanted:
                bad = set(entry) - _INCIDENT_KEYS if isinstance(entry, dict) else {"?"}
                if bad:
                    raise self._fail(
                        name, f"expect at {at}: unknown incident key {sorted(bad)[0]!r}"
                    )
            out.append((moment, at, wanted))
        if not out:
            raise self._fail(name, "needs at least one 'expect' entry")
        return out


def _diff(
    label: str, moment: float, wanted: list[dict[str, Any]], got: list[dict[str, Any]]
) -> str:
    lines = [f"at {label} ({format_time(moment)}):", "  expected:"]
    lines += [f"    - {_flow(w)}" for w in wanted] or ["    (no incidents)"]
    lines.append("  got:")
    shown_keys = {k for w in wanted for k in w} or {"rule", "component", "status"}
    lines += [f"    - {_flow({k: g[k] for k in g if k in shown_keys})}" for g in got] or [
        "    (no incidents)"
    ]
    return "\n".join(lines)


def _flow(mapping: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in mapping.items()) + "}"
