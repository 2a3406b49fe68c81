from __future__ import annotations

from pathlib import Path

import pytest

from detector.engine.rulefile import RuleFileError, load_rule_file, load_rules
from detector.engine.when import parse_when
from detector.model import ComponentStatus, Impact, Match, NoData

DATA = Path(__file__).parent / "data"

RULE = """\
  - name: {name}
    match: {{kind: label_creation}}
    impact:
      - {{status: major_outage, when: error_ratio >= 0.9}}
"""


@pytest.fixture
def in_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in tests/data so errors name files as on-call engineers pass them: relative."""
    monkeypatch.chdir(DATA)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_full_file_has_every_key(in_data: None) -> None:
    rules = load_rules(["valid-full.yaml"])
    assert rules.files == ("valid-full.yaml",)
    assert [rule.name for rule in rules.rules] == ["carrier-label-creation", "platform-api"]
    rule = rules.by_name["carrier-label-creation"]
    assert rule.description == "Labels cannot be created with a carrier"
    assert rule.match == Match(kind="label_creation", component="carriers/*", probe="*")
    assert rule.impact == (
        Impact(ComponentStatus.MAJOR_OUTAGE, parse_when("error_ratio >= 0.9")),
        Impact(ComponentStatus.PARTIAL_OUTAGE, parse_when("error_ratio >= 0.3")),
        Impact(ComponentStatus.DEGRADED_PERFORMANCE, parse_when("latency_p95 > 5s")),
    )
    assert (rule.window, rule.min_results) == (300.0, 1)
    assert (rule.open_after, rule.resolve_after, rule.deploy_window) == (1800.0, 600.0, 900.0)
    assert rule.no_data is NoData.KEEP
    assert (rule.split_by, rule.quorum) == (("market",), 2)
    assert dict(rule.public_text) == {
        "monitoring": "Labels with {component_name} work again in {market_list}; we keep watching."
    }
    assert rule.inhibited_by == ("platform-api",)
    assert rule.title == "{component_name}: label creation failing{markets}"
    assert rule.message == ("Creating labels with {component_name} fails{markets}.")
    assert rule.source == "valid-full.yaml:6"
    assert rule.metrics == frozenset({"error_ratio", "latency_p95"})


def test_rule_settings_override_file_defaults(in_data: None) -> None:
    rule = load_rule_file("valid-full.yaml").by_name["platform-api"]
    assert rule.match == Match(kind="http", component="sendcloud/api")
    assert (rule.window, rule.min_results) == (180.0, 3)
    assert (rule.open_after, rule.resolve_after, rule.deploy_window) == (90.0, 300.0, 1200.0)
    assert rule.no_data is NoData.FAILING
    assert rule.inhibited_by == ()
    assert rule.title == "{component_name}: The public API fails{markets}"
    assert rule.message == ""  # the default public sentence of each status


def test_file_defaults_apply_to_the_rules_of_that_file_only(in_data: None) -> None:
    rules = load_rules(["valid-defaults.yaml", "valid-minimal.yml"]).by_name
    stale = rules["order-import-stale"]
    assert (stale.window, stale.min_results, stale.no_data) == (600.0, 4, NoData.OK)
    assert (stale.open_after, stale.resolve_after, stale.deploy_window) == (3600.0, 900.0, 0.0)
    slow = rules["order-import-slow"]
    assert (slow.window, slow.min_results, slow.no_data) == (120.0, 4, NoData.FAILING)
    assert slow.match == Match(kind="order_import", component="integrations/*")
    lag = rules["tracking-lag"]
    assert (lag.window, lag.min_results, lag.no_data) == (300.0, 1, NoData.KEEP)
    assert (lag.open_after, lag.resolve_after, lag.deploy_window) == (1800.0, 600.0, 900.0)


def test_default_title_uses_description_or_rule_name(in_data: None) -> None:
    rules = load_rules(["valid-defaults.yaml"]).by_name
    # The description is literal text in the title, never a template of its own.
    assert (
        rules["order-import-stale"].title == "{component_name}: order-import-stale failing{markets}"
    )
    assert rules["order-import-slow"].title == "{component_name}: Orders arrive late{markets}"
    assert rules["order-import-stale"].message == ""


def test_directory_loads_yaml_and_yml_sorted_and_not_recursive(tmp_path: Path) -> None:
    write(tmp_path / "b.yml", "rules:\n" + RULE.format(name="b"))
    write(tmp_path / "a.yaml", "rules:\n" + RULE.format(name="a"))
    write(tmp_path / "notes.txt", "not rules")
    write(tmp_path / ".#a.yaml", "editor lock file")
    (tmp_path / "tests").mkdir()
    write(tmp_path / "tests" / "a-test.yaml", "rule_files: [../a.yaml]\ntests: []\n")
    rules = load_rules([tmp_path])
    assert rules.files == (str(tmp_path / "a.yaml"), str(tmp_path / "b.yml"))
    assert [rule.name for rule in rules.rules] == ["a", "b"]
    assert rules.rules[0].source == f"{tmp_path / 'a.yaml'}:2"


def test_a_file_named_twice_is_loaded_once(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yaml", "rules:\n" + RULE.format(name="a"))
    rules = load_rules([tmp_path, path])
    assert rules.files == (str(path),)


def test_empty_files_hold_no_rules_but_an_empty_rule_set_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "# nothing yet\n")
    write(tmp_path / "b.yaml", "rules:\n")
    write(tmp_path / "c.yaml", "defaults: {window: 1m}\nrules: []\n")
    with pytest.raises(RuleFileError) as caught:
        load_rules([tmp_path])
    assert str(caught.value) == f"{tmp_path}: no rules in {tmp_path}: refusing an empty rule set"
    write(tmp_path / "d.yaml", "rules:\n" + RULE.format(name="d"))
    assert load_rules([tmp_path]).files == tuple(
        str(tmp_path / name) for name in ("a.yaml", "b.yaml", "c.yaml", "d.yaml")
    )


def test_an_empty_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="refusing an empty rule set"):
        load_rules([tmp_path])


def test_a_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = write(tmp_path / "big.yaml", "rules:\n" + "# padding\n" * 120_000)
    with pytest.raises(RuleFileError) as caught:
        load_rules([path])
    assert str(caught.value).startswith(f"{path}: too large: 1200007 bytes (at most 1048576)")


def test_an_alias_bomb_is_refused_with_one_line(tmp_path: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}] " for i in range(8)]
    path = write(tmp_path / "bomb.yaml", "\n".join(lines) + "\nrules: []\n")
    with pytest.raises(RuleFileError) as caught:
        load_rules([path])
    assert str(caught.value) == (f"{path}:2: YAML aliases (*name) are not supported in rule files")


@pytest.mark.parametrize(
    "when",
    ["not " * 500 + "error_ratio > 0.5", "(" * 500 + "error_ratio > 0.5" + ")" * 500],
    ids=["500 nots", "500 parentheses"],
)
def test_deeply_nested_when_is_one_line_not_a_recursion_error(tmp_path: Path, when: str) -> None:
    text = RULE.format(name="deep").replace("error_ratio >= 0.9", when)
    path = write(tmp_path / "deep.yaml", "rules:\n" + text)
    with pytest.raises(RuleFileError) as caught:
        load_rules([path])
    message = str(caught.value)
    assert message.startswith(f"{path}:") and "rule 'deep': when: " in message
    assert "too long" in message or "nested too deeply" in message
    assert "\n" not in message


def test_inhibited_by_may_name_a_rule_in_another_file(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "rules:\n" + RULE.format(name="a") + "    inhibited_by: [b]\n")
    write(tmp_path / "b.yaml", "rules:\n" + RULE.format(name="b"))
    assert load_rules([tmp_path]).by_name["a"].inhibited_by == ("b",)
    with pytest.raises(RuleFileError) as caught:
        load_rule_file(tmp_path / "a.yaml")
    assert str(caught.value) == f"{tmp_path / 'a.yaml'}:6: rule 'a': inhibited_by: unknown rule 'b'"


def test_duplicate_names_across_files_name_both_places(in_data: None, tmp_path: Path) -> None:
    other = write(
        tmp_path / "other.yaml",
        "rules:\n" + RULE.format(name="b") + RULE.format(name="platform-api"),
    )
    with pytest.raises(RuleFileError) as caught:
        load_rules(["valid-full.yaml", other])
    assert str(caught.value) == (
        f"{other}:6: rule 'platform-api': duplicate rule name 'platform-api'"
        " (first defined at valid-full.yaml:33)"
    )
    assert (caught.value.file, caught.value.line, caught.value.rule) == (
        str(other),
        6,
        "platform-api",
    )


def test_missing_file_is_an_error(in_data: None) -> None:
    with pytest.raises(RuleFileError) as caught:
        load_rules(["no-such-rules.yaml"])
    assert str(caught.value) == "no-such-rules.yaml: no such file or directory"


def test_non_utf8_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"rules: []\n# caf\xe9\n")
    with pytest.raises(RuleFileError, match=r"latin1\.yaml: not UTF-8 text$"):
        load_rules([path])


# The table: every tests/data/invalid-*.yaml and its exact error, as loaded from tests/data.
KNOWN_METRICS = (
    "consecutive_failures, error_ratio, failures, latency_max, latency_p50, latency_p95,"
    " latency_p99, results, success_ratio"
)
IMPACTS = "degraded_performance, partial_outage, major_outage"
INVALID = {
    "invalid-yaml-syntax.yaml": "4: invalid YAML: expected ',' or '}', but got ':'"
    " (while parsing a flow mapping started at line 3)",
    "invalid-not-a-mapping.yaml": "1: expected a mapping at top level, got a list",
    "invalid-top-level-key.yaml": "2: unknown key 'alerts' at top level (allowed: defaults, rules)",
    "invalid-missing-rules.yaml": "1: missing key 'rules' at top level",
    "invalid-rules-not-list.yaml": "2: rules: expected a list of rules, got a mapping",
    "invalid-rule-not-mapping.yaml": "2: rule #1: expected a mapping, got a string (carrier-down)",
    "invalid-defaults-unknown-key.yaml": "3: unknown key 'inhibited_by' in defaults (allowed:"
    " window, min_results, open_after, resolve_after, deploy_window, no_data)",
    "invalid-defaults-bad-duration.yaml": "2: deploy_window: bad duration 'soon':"
    " expected a number with a unit (ms, s, m, h, d)",
    "invalid-min-results-type.yaml": "2: min_results: expected a positive integer,"
    " got a number (2.5)",
    "invalid-missing-name.yaml": "6: rule #2: missing key 'name'",
    "invalid-bad-name.yaml": "2: name: 'carrier down' may hold only letters, digits, '-', '_'"
    " and '.'",
    "invalid-rule-unknown-key.yaml": "4: rule 'carrier-down': unknown key 'threshold' in rule"
    " (allowed: name, description, match, window, min_results, open_after, resolve_after,"
    " deploy_window, no_data, impact, inhibited_by, title, message, split_by, quorum,"
    " public_text)",
    "invalid-duplicate-key.yaml": "7: rule 'carrier-down': duplicate key 'window' in rule",
    "invalid-description-type.yaml": "3: rule 'carrier-down': description: expected a string,"
    " got a list",
    "invalid-missing-match.yaml": "2: rule 'carrier-down': missing key 'match' in rule",
    "invalid-match-unknown-key.yaml": "5: rule 'carrier-down': unknown key 'market' in match"
    " (allowed: kind, component, probe)",
    "invalid-probe-kind.yaml": "4: rule 'carrier-down': kind: unknown probe kind 'label'"
    " (known: label_creation, order_import, http, tracking)",
    "invalid-missing-impact.yaml": "2: rule 'carrier-down': missing key 'impact' in rule",
    "invalid-empty-impact.yaml": "4: rule 'carrier-down': impact: needs at least one"
    " {status, when} entry",
    "invalid-impact-unknown-key.yaml": "6: rule 'carrier-down': unknown key 'if' in impact entry"
    " (allowed: status, when)",
    "invalid-impact-missing-when.yaml": "5: rule 'carrier-down': missing key 'when'"
    " in impact entry",
    "invalid-unknown-status.yaml": "5: rule 'carrier-down': status: unknown status 'down'"
    f" (allowed: {IMPACTS})",
    "invalid-operational-status.yaml": "5: rule 'carrier-down': status: 'under_maintenance'"
    f" cannot be an impact (allowed: {IMPACTS})",
    "invalid-unknown-metric.yaml": "6: rule 'carrier-down': when: unknown metric 'error_rate'"
    f" (known: {KNOWN_METRICS})",
    "invalid-when-syntax.yaml": "6: rule 'carrier-down': when: unexpected 'and' at column 24",
    "invalid-when-missing-number.yaml": "6: rule 'carrier-down': when: expected a number"
    " after '>='",
    "invalid-when-unit-on-ratio.yaml": "6: rule 'carrier-down': when: '5s' has a unit,"
    " but error_ratio is not a latency metric",
    "invalid-when-not-string.yaml": "6: rule 'carrier-down': when: expected a string,"
    " got a number (0.9)",
    "invalid-bare-number-duration.yaml": "4: rule 'carrier-down': open_after: expected a duration"
    " such as 5m or 90s, got an integer (30)",
    "invalid-bad-duration.yaml": "4: rule 'carrier-down': resolve_after: bad duration"
    " '10 minutes': expected a number with a unit (ms, s, m, h, d)",
    "invalid-zero-window.yaml": "4: rule 'carrier-down': window: must be longer than 0s, got '0s'",
    "invalid-window-type.yaml": "4: rule 'carrier-down': window: expected a duration such as"
    " 5m or 90s, got a list",
    "invalid-no-data.yaml": "4: rule 'carrier-down': no_data: unknown value 'skip'"
    " (allowed: keep, failing, ok)",
    "invalid-min-results.yaml": "4: rule 'carrier-down': min_results: expected a positive"
    " integer, got 0",
    "invalid-duplicate-name.yaml": "7: rule 'carrier-down': duplicate rule name 'carrier-down'"
    " (first defined at invalid-duplicate-name.yaml:2)",
    "invalid-inhibited-by-unknown.yaml": "10: rule 'carrier-down': inhibited_by: unknown rule"
    " 'platform-apii' (did you mean 'platform-api'?)",
    "invalid-inhibited-by-self.yaml": "4: rule 'carrier-down': inhibited_by: a rule cannot be"
    " inhibited by itself",
    "invalid-inhibited-by-string.yaml": "4: rule 'carrier-down': inhibited_by: expected a list"
    " of rule names, got a string (platform-api)",
    "invalid-title-unknown-field.yaml": "4: rule 'carrier-down': title: unknown field '{carrier}'"
    " (public text may use: component_name, markets, market_list)",
    "invalid-title-attribute.yaml": "4: rule 'carrier-down': title: '{component.__class__}':"
    " only plain field names are allowed, e.g. {component_name}",
    "invalid-message-format-spec.yaml": "6: rule 'carrier-down': message: field"
    " '{component_name:.0Q}': Unknown format code 'Q' for object of type 'str'",
    "invalid-message-unbalanced.yaml": "6: rule 'carrier-down': message: expected '}'"
    " before end of string",
    "invalid-window-too-long.yaml": "4: rule 'carrier-down': window: at most 168h, got '3000000d'",
    "invalid-open-after-too-long.yaml": "2: open_after: at most 720h, got '31d'",
    "invalid-min-results-too-many.yaml": "4: rule 'carrier-down': min_results: at most 100000,"
    " got 1000000",
    "invalid-when-too-deep.yaml": "6: rule 'carrier-down': when: nested too deeply"
    " (more than 32 levels of '(' and 'not')",
    "invalid-yaml-alias.yaml": "7: YAML aliases (*name) are not supported in rule files",
    "invalid-split-by-string.yaml": "4: rule 'carrier-down': split_by: expected a list of"
    " labels, got a string (market)",
    "invalid-quorum.yaml": "4: rule 'carrier-down': quorum: unknown value 'most' (allowed:"
    " majority, any, all or a number of instances)",
    "invalid-quorum-zero.yaml": "4: rule 'carrier-down': quorum: expected 1 to 100 instances,"
    " got 0",
    "invalid-public-text-status.yaml": "6: rule 'carrier-down': unknown key 'broken' in"
    " public_text (allowed: investigating, identified, monitoring, resolved)",
    "invalid-public-text-field.yaml": "5: rule 'carrier-down': public_text.identified:"
    " unknown field '{deploy}' (public text may use: component_name, markets, market_list)",
    "invalid-no-rules.yaml": " no rules in invalid-no-rules.yaml: refusing an empty rule set",
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_file_fails_with_its_exact_message(in_data: None, name: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        load_rules([name])
    assert str(caught.value) == f"{name}:{INVALID[name]}"
    assert "\n" not in str(caught.value)


def test_every_invalid_file_on_disk_is_in_the_table() -> None:
    assert sorted(path.name for path in DATA.glob("invalid-*.yaml")) == sorted(INVALID)


def test_valid_files_on_disk_all_load(in_data: None) -> None:
    valid = sorted(path.name for path in DATA.glob("valid-*.y*ml"))
    assert len(load_rules(valid).rules) == 5
