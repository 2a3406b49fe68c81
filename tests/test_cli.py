"""The `detector` command line: `rules check` output, and every bad-input path is ONE line
`detector: error: ...` on stderr with exit status 1 — never a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from detector.cli import main

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data" / "events"
RULES = str(DATA / "labels.yaml")
EVENTS = str(DATA / "outage.jsonl")

# Valid RFC 3339 whose offset pushes the instant past what datetime can represent.
FAR_FUTURE, FAR_PAST = "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"
GOOD_LINE = '{"type": "deploy_flagged_bad", "at": "2026-11-28T10:00:00Z", "id": "d"}'
BAD_RULE = """\
rules:
  - name: carrier-down
    match: {kind: label_creation}
    impact:
      - status: major_outage
        when: error_rate >= 0.9
"""


def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run, expect exit 1 and exactly one `detector: error:` line; return its message."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 1, captured
    assert "Traceback" not in captured.err
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n"), captured.err
    assert captured.err.startswith("detector: error: "), captured.err
    return captured.err.removeprefix("detector: error: ").rstrip("\n")


# ------------------------------------------------------------------ rules check


def test_rules_check_ok_counts_rules_and_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", RULES]) == 0
    assert capsys.readouterr().out == "ok: 1 rules in 1 files\n"


def test_rules_check_accepts_the_shipped_folder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", str(ROOT / "rules")]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"ok: \d+ rules in \d+ files\n", out), out


def test_rules_check_counts_a_file_named_twice_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", RULES, RULES]) == 0
    assert capsys.readouterr().out == "ok: 1 rules in 1 files\n"


@pytest.mark.parametrize("good", [[], [RULES]], ids=["alone", "next-to-a-good-file"])
def test_rules_check_names_file_line_and_rule_and_one_bad_file_rejects_the_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], good: list[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_RULE)
    message = one_error_line(capsys, ["rules", "check", *good, str(bad)])
    assert message.startswith(f"{bad}:6: rule 'carrier-down': when: unknown metric 'error_rate'")
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------ error paths


def write_inputs(tmp: Path) -> None:
    (tmp / "bad.yaml").write_text(BAD_RULE)
    (tmp / "broken.yaml").write_text("rules: [\n  - name: x\n")
    (tmp / "bad.jsonl").write_text(f"{GOOD_LINE}\n\n{{'type': 'result'}}\n")
    (tmp / "unsorted.jsonl").write_text(f"{GOOD_LINE}\n{GOOD_LINE.replace('10:00', '09:00')}\n")
    (tmp / "bad_test.yaml").write_text("rule_files: []\ntests: []\n")
    (tmp / "far.jsonl").write_text(GOOD_LINE.replace("2026-11-28T10:00:00Z", FAR_FUTURE) + "\n")


def error_cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """argv -> the start of the expected message (after `detector: error: `)."""
    bad_rules, not_yaml = tmp / "bad.yaml", tmp / "broken.yaml"
    bad_events, unsorted = tmp / "bad.jsonl", tmp / "unsorted.jsonl"
    bad_test = tmp / "bad_test.yaml"
    missing = str(tmp / "missing.yaml")
    replay = ["replay", "--rules", RULES, "--events"]
    return {
        "rules check: missing file": (["rules", "check", missing], f"{missing}: "),
        "rules check: bad rule": (["rules", "check", str(bad_rules)], f"{bad_rules}:6: rule"),
        "rules check: not YAML": (["rules", "check", str(not_yaml)], f"{not_yaml}:"),
        "rules check: unknown inhibitor": (
            ["rules", "check", str(ROOT / "rules" / "carriers.yaml")],
            f"{ROOT / 'rules' / 'carriers.yaml'}:",
        ),
        "replay: missing events": ([*replay, missing], f"{missing}: No such file or directory"),
        "replay: events is a folder": ([*replay, str(tmp)], f"{tmp}: Is a directory"),
        "replay: bad events line": ([*replay, str(bad_events)], f"{bad_events}:3: not valid JSON"),
        "replay: unsorted events": (
            [*replay, str(unsorted)],
            f"{unsorted}:2: events must be sorted by time",
        ),
        "replay: missing rules": (
            ["replay", "--rules", missing, "--events", EVENTS],
            f"{missing}: ",
        ),
        "replay: bad rules": (
            ["replay", "--rules", str(bad_rules), "--events", EVENTS],
            f"{bad_rules}:6: rule 'carrier-down'",
        ),
        "replay: bad --until": ([*replay, EVENTS, "--until", "tomorrow"], "bad time 'tomorrow'"),
        "replay: --until without offset": (
            [*replay, EVENTS, "--until", "2026-11-28T10:30:00"],
            "bad time '2026-11-28T10:30:00': RFC 3339 needs 'Z' or an offset",
        ),
        "replay: missing --config": (
            [*replay, EVENTS, "--config", missing],
            f"{missing}: ",
        ),
        "replay: --until past year 9000": (
            [*replay, EVENTS, "--until", FAR_FUTURE],
            f"bad time '{FAR_FUTURE}': outside years 1970..8999",
        ),
        "replay: an event past year 9000": (
            [*replay, str(tmp / "far.jsonl")],
            f"{tmp / 'far.jsonl'}:1: field 'at': bad time '{FAR_FUTURE}': outside",
        ),
        "export: --since before 1970": (
            ["export", "--store", "sqlite://", "--since", FAR_PAST, "--until", FAR_FUTURE],
            f"bad time '{FAR_PAST}': outside",
        ),
        "rules test: missing file": (["rules", "test", missing], f"{missing}: cannot read"),
        "rules test: bad test file": (["rules", "test", str(bad_test)], f"{bad_test}: "),
    }


CASES = list(error_cases(Path("/nonexistent")))  # names only; paths are made per test


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    write_inputs(tmp_path)
    argv, start = error_cases(tmp_path)[case]
    message = one_error_line(capsys, argv)
    assert message.startswith(start), message


def test_replay_with_a_bad_line_prints_nothing_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_inputs(tmp_path)
    argv, _ = error_cases(tmp_path)["replay: bad events line"]
    one_error_line(capsys, argv)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "argv",
    [[], ["replay", "--rules", RULES], ["rules"], ["replay", "--events", EVENTS], ["nope"]],
    ids=["no command", "replay without events", "rules without action", "no rules", "unknown"],
)
def test_usage_errors_exit_2_with_usage(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: detector") and "Traceback" not in err


def test_replay_rejects_an_unknown_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["replay", "--rules", RULES, "--events", EVENTS, "--format", "yaml"])
    assert exit_.value.code == 2
    assert "invalid choice: 'yaml'" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("detector ")


def test_the_real_process_prints_one_line_and_exits_1(tmp_path: Path) -> None:
    """Not just main(): the installed entry point's exit status and stderr, end to end."""
    missing = tmp_path / "missing.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "detector.cli",
            "replay",
            "--rules",
            RULES,
            "--events",
            str(missing),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"detector: error: {missing}: No such file or directory\n"
