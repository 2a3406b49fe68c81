"""`detector rules test` (DESIGN.md "Rule unit tests"): the shipped tests pass, a broken
expectation fails with a diff, and a bad test file is one line naming file and test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from enginekit import MIN, T0

from detector.cli import main
from detector.ruletest import RuleTestError, compare, expand_values, series_events
from detector.ruletest import TestFile as RuleTestFile  # "Test*" would be collected

ROOT = Path(__file__).parent.parent
SHIPPED = sorted((ROOT / "rules" / "tests").glob("*.yaml"))
DATA = Path(__file__).parent / "data" / "events"

SERIES = (
    "{probe: dhl-label-de, kind: label_creation, component: carriers/dhl, labels: {market: DE},"
    ' interval: 1m, start: "2026-11-28T10:00:00Z", values: "ok x5, fail x20"}'
)


def copy_of_shipped(tmp_path: Path) -> Path:
    """rules/ with its tests, in a scratch folder we may break."""
    target = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", target)
    return target


def write_test(tmp_path: Path, body: str, name: str = "t_test.yaml") -> Path:
    """A test file next to a copy of labels.yaml (open_after 10m, resolve_after 5m)."""
    shutil.copy(DATA / "labels.yaml", tmp_path / "labels.yaml")
    path = tmp_path / name
    path.write_text(body)
    return path


# ------------------------------------------------------------------ the shipped tests


def test_shipped_rule_tests_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert SHIPPED, "rules/tests/*.yaml"
    assert main(["rules", "test", *map(str, SHIPPED)]) == 0
    out = capsys.readouterr().out
    names = [t["name"] for path in SHIPPED for t in yaml.safe_load(path.read_text())["tests"]]
    assert [line.strip() for line in out.splitlines() if "PASS" in line] == [
        f"PASS  {name}" for name in names
    ]
    assert "FAIL" not in out
    assert out.splitlines()[-1] == "SUCCESS"


def test_a_changed_expectation_fails_with_a_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = copy_of_shipped(tmp_path)
    test_file = rules / "tests" / "carriers_test.yaml"
    original = test_file.read_text()
    wrong = original.replace(
        "status: investigating, component_status: major_outage}]}",
        "status: investigating, component_status: partial_outage}]}",
        1,
    )
    assert wrong != original
    test_file.write_text(wrong)
    assert main(["rules", "test", str(test_file)]) == 1
    out = capsys.readouterr().out
    assert "  FAIL  dhl down 45 minutes" in out
    assert "  PASS  a 20-minute blip opens nothing" in out  # the others still run
    expected_diff = """\
  FAIL  dhl down 45 minutes
    at 41m (2026-11-28T10:41:00Z):
      expected:
        - {rule: carrier-label-creation, component: carriers/dhl, status: investigating, \
component_status: partial_outage}
      got:
        - {rule: carrier-label-creation, component: carriers/dhl, status: investigating, \
component_status: major_outage}
  PASS  a 20-minute blip opens nothing
"""
    assert expected_diff in out
    assert out.splitlines()[-1] == "FAILED: 1 test(s)"


def test_a_missing_incident_shows_no_incidents_in_the_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = copy_of_shipped(tmp_path)
    test_file = rules / "tests" / "carriers_test.yaml"
    test_file.write_text(test_file.read_text().replace("{at: 68m, incidents: []}", "{at: 68m}"))
    test_file.write_text(
        test_file.read_text().replace(
            "- {at: 40m, incidents: []}",
            "- {at: 40m, incidents: [{rule: carrier-label-creation}]}",
            1,
        )
    )
    assert main(["rules", "test", str(test_file)]) == 1
    out = capsys.readouterr().out
    assert "at 40m (2026-11-28T10:40:00Z):" in out
    assert "expected:\n        - {rule: carrier-label-creation}\n      got:\n" in out
    assert "got:\n        (no incidents)" in out


def test_one_failing_file_among_passing_ones_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_test(
        tmp_path,
        f"rule_files: [labels.yaml]\ntests:\n  - name: wrong\n    series: [{SERIES}]\n"
        "    expect: [{at: 16m, incidents: []}]\n",
    )
    assert main(["rules", "test", str(SHIPPED[0]), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"Unit Testing: {SHIPPED[0]}" in out and f"Unit Testing: {bad}" in out
    assert "  FAIL  wrong" in out
    assert "expected:\n        (no incidents)\n      got:\n        - {rule: carrier-labels" in out


# ------------------------------------------------------------------ semantics


def test_expectations_run_in_time_order_with_times_or_offsets(tmp_path: Path) -> None:
    """labels.yaml: failing from 6m (2 of 5), open 10m later at 16m, and `at` may be RFC 3339
    (with an offset) or an offset from the first series' start; listed in any order."""
    path = write_test(
        tmp_path,
        f"rule_files: [labels.yaml]\ntests:\n  - name: t\n    series: [{SERIES}]\n"
        "    expect:\n"
        "      - {at: 16m, incidents: [{rule: carrier-labels, status: investigating,"
        " component_status: major_outage, cause: sustained, title: 'dhl: label creation"
        " failing (DE)'}]}\n"
        '      - {at: "2026-11-28T12:15:59+02:00", incidents: []}\n'
        "      - {at: 5m, incidents: []}\n",
    )
    (outcome,) = RuleTestFile(path).run()
    assert outcome.passed, outcome.failures


def test_events_file_and_series_are_merged(tmp_path: Path) -> None:
    shutil.copy(DATA / "outage.jsonl", tmp_path / "outage.jsonl")
    extra = SERIES.replace("carriers/dhl", "carriers/gls").replace("dhl-label-de", "gls")
    path = write_test(
        tmp_path,
        "rule_files: [labels.yaml]\ntests:\n  - name: merged\n    events: outage.jsonl\n"
        f"    series: [{extra}]\n    expect:\n"
        "      - {at: 16m, incidents: [{component: carriers/dhl}, {component: carriers/gls}]}\n"
        "      - {at: 31m, incidents: [{component: carriers/gls},"
        " {component: carriers/ups, cause: deploy, deploy: d-1}]}\n",
    )
    (outcome,) = RuleTestFile(path).run()
    assert outcome.passed, outcome.failures


def test_without_series_offsets_count_from_the_first_event(tmp_path: Path) -> None:
    shutil.copy(DATA / "outage.jsonl", tmp_path / "outage.jsonl")
    path = write_test(
        tmp_path,
        "rule_files: [labels.yaml]\ntests:\n  - name: file only\n    events: outage.jsonl\n"
        "    expect:\n      - {at: 15m, incidents: []}\n"
        "      - {at: 16m, incidents: [{component: carriers/dhl}]}\n",
    )
    (outcome,) = RuleTestFile(path).run()
    assert outcome.passed, outcome.failures


def test_expand_values() -> None:
    assert expand_values("ok x2, fail@6s x2, _, ok@250ms") == [
        (True, None),
        (True, None),
        (False, 6.0),
        (False, 6.0),
        (None, None),
        (True, 0.25),
    ]
    assert expand_values("fail") == [(False, None)]
    with pytest.raises(ValueError, match="bad value 'broken x3'"):
        expand_values("ok, broken x3")


def test_series_events_skip_gaps_and_carry_labels_and_latency() -> None:
    results = series_events(
        {
            "probe": "p",
            "kind": "http",
            "component": "sendcloud/api",
            "labels": {"market": "NL"},
            "interval": "2m",
            "start": "2026-11-28T10:00:00Z",
            "values": "ok, _ x2, fail@7s",
        }
    )
    assert [(r.at, r.ok, r.latency_s) for r in results] == [
        (T0, True, 0.1),
        (T0 + 6 * MIN, False, 7.0),
    ]
    assert all(dict(r.labels) == {"market": "NL"} for r in results)
    assert results[1].error is not None


def test_compare_checks_only_given_keys_and_counts() -> None:
    got = [{"rule": "a", "component": "x", "status": "monitoring"}]
    assert compare([{"rule": "a"}], got)
    assert compare([{"status": "monitoring", "component": "x"}], got)
    assert not compare([{"rule": "b"}], got)
    assert not compare([], got)
    assert not compare([{"rule": "a"}, {"rule": "a"}], got)


# ------------------------------------------------------------------ bad test files

GOOD_TEST = f"  - name: t\n    series: [{SERIES}]\n    expect: [{{at: 1m, incidents: []}}]\n"

BAD_FILES = [
    ("not yaml", "rule_files: [labels.yaml\n", "cannot read test file"),
    ("not a mapping", "- 1\n- 2\n", "expected keys 'rule_files' and 'tests' only"),
    ("unknown top key", f"rule_files: [labels.yaml]\nfoo: 1\ntests:\n{GOOD_TEST}", "only"),
    ("no rule files", f"rule_files: []\ntests:\n{GOOD_TEST}", "'rule_files' must be"),
    ("rule files a string", f"rule_files: labels.yaml\ntests:\n{GOOD_TEST}", "non-empty list"),
    ("missing rule file", f"rule_files: [nope.yaml]\ntests:\n{GOOD_TEST}", "rule files:"),
    ("no tests", "rule_files: [labels.yaml]\ntests: []\n", "'tests' must be a non-empty list"),
    ("test not a mapping", "rule_files: [labels.yaml]\ntests: [1]\n", "test #1 must be"),
    (
        "unknown test key",
        "rule_files: [labels.yaml]\ntests:\n  - {name: t, serie: [], expect: []}\n",
        "test 't': unknown key 'serie'",
    ),
    (
        "no events or series",
        "rule_files: [labels.yaml]\ntests:\n  - {name: t, expect: [{at: 1m}]}\n",
        "test 't': needs 'events' or 'series'",
    ),
    (
        "missing events file",
        "rule_files: [labels.yaml]\ntests:\n  - {name: t, events: nope.jsonl,"
        " expect: [{at: 1m}]}\n",
        "test 't': [Errno 2]",
    ),
    (
        "bad events line",
        "rule_files: [labels.yaml]\ntests:\n  - {name: t, events: bad.jsonl, expect: [{at: 1m}]}\n",
        "bad.jsonl:2: not valid JSON",
    ),
    (
        "series missing a key",
        "rule_files: [labels.yaml]\ntests:\n  - {name: t, series: [{probe: p}],"
        " expect: [{at: 1m}]}\n",
        "test 't': series needs 'kind'",
    ),
    (
        "series unknown key",
        f"rule_files: [labels.yaml]\ntests:\n  - name: t\n    series: [{SERIES[:-1]}, x: 1}}]\n"
        "    expect: [{at: 1m}]\n",
        "test 't': unknown series key 'x'",
    ),
    (
        "series bad values",
        f"rule_files: [labels.yaml]\ntests:\n  - name: t\n"
        f"    series: [{SERIES.replace('fail x20', 'down x20')}]\n    expect: [{{at: 1m}}]\n",
        "test 't': bad value 'down x20'",
    ),
    (
        "series bad start",
        f"rule_files: [labels.yaml]\ntests:\n  - name: t\n"
        f"    series: [{SERIES.replace('2026-11-28T10:00:00Z', '2026-11-28T10:00:00')}]\n"
        "    expect: [{at: 1m}]\n",
        "test 't': bad time",
    ),
    (
        "series bad interval",
        f"rule_files: [labels.yaml]\ntests:\n  - name: t\n"
        f"    series: [{SERIES.replace('interval: 1m', 'interval: 60')}]\n"
        "    expect: [{at: 1m}]\n",
        "test 't': bad duration '60'",
    ),
    (
        "series entry not a mapping",
        "rule_files: [labels.yaml]\ntests:\n  - {name: t, series: [x], expect: [{at: 1m}]}\n",
        "each series entry must be a mapping",
    ),
    (
        "no expectations",
        f"rule_files: [labels.yaml]\ntests:\n  - name: t\n    series: [{SERIES}]\n",
        "test 't': needs at least one 'expect' entry",
    ),
    (
        "expect without at",
        f"rule_files: [labels.yaml]\ntests:\n  - name: t\n    series: [{SERIES}]\n"
        "    expect: [{incidents: []}]\n",
        "bad expect entry",
    ),
    (
        "expect bad at",
        f"rule_files: [labels.yaml]\ntests:\n  - name: t\n    series: [{SERIES}]\n"
        "    expect: [{at: soon}]\n",
        "test 't': expect 'at': bad duration 'soon'",
    ),
    (
        "expect unknown incident key",
        f"rule_files: [labels.yaml]\ntests:\n  - name: t\n    series: [{SERIES}]\n"
        "    expect: [{at: 1m, incidents: [{rule: x, colour: red}]}]\n",
        "expect at 1m: unknown incident key 'colour'",
    ),
]


@pytest.mark.parametrize(("case", "body", "message"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_bad_test_file_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, body: str, message: str
) -> None:
    (tmp_path / "bad.jsonl").write_text(
        '{"type": "deploy_flagged_bad", "at": "2026-11-28T10:00:00Z", "id": "d"}\n{\n'
    )
    path = write_test(tmp_path, body)
    with pytest.raises(RuleTestError) as error:
        RuleTestFile(path).run()
    text = str(error.value)
    assert text.startswith(f"{path}: "), text
    assert message in text, text
    assert "\n" not in text
    assert main(["rules", "test", str(path)]) == 1
    err = capsys.readouterr().err
    assert err == f"detector: error: {text}\n"


# Malformed values (wrong types) are one line too, never a traceback.
CRASHING_FILES = [
    ("rule file not a string", f"rule_files: [5]\ntests:\n{GOOD_TEST}"),
    ("rule file null", f"rule_files: [null]\ntests:\n{GOOD_TEST}"),
    (
        "series labels not a mapping",
        f"rule_files: [labels.yaml]\ntests:\n  - name: t\n"
        f"    series: [{SERIES.replace('{market: DE}', '[DE]')}]\n    expect: [{{at: 1m}}]\n",
    ),
    (
        "series not a list",
        "rule_files: [labels.yaml]\ntests:\n  - {name: t, series: 5, expect: [{at: 1m}]}\n",
    ),
    (
        "expect not a list",
        f"rule_files: [labels.yaml]\ntests:\n  - name: t\n    series: [{SERIES}]\n    expect: 5\n",
    ),
    (
        "incidents not a list",
        f"rule_files: [labels.yaml]\ntests:\n  - name: t\n    series: [{SERIES}]\n"
        "    expect: [{at: 1m, incidents: 5}]\n",
    ),
]


@pytest.mark.parametrize(("case", "body"), CRASHING_FILES, ids=[c[0] for c in CRASHING_FILES])
def test_malformed_values_are_one_line_errors_too(tmp_path: Path, case: str, body: str) -> None:
    path = write_test(tmp_path, body)
    with pytest.raises(RuleTestError) as error:
        RuleTestFile(path).run()
    assert str(error.value).startswith(f"{path}: ")
