"""Daemon config: every bad input is one line naming file, line and field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.cli import main
from detector.settings import ConfigError, load_settings

GOOD = """\
rules: [rules/]
probe_defaults:
  target: http://127.0.0.1:9465
  credentials: {username_env: CFG_USER, password_env: CFG_PASS}
components:
  - {id: carriers/dhl, name: DHL}
probes:
  - {id: dhl-de, kind: label_creation, component: carriers/dhl, labels: {market: DE}}
"""

BAD = {
    "unknown top-level key": (
        GOOD + "listn: 1\n",
        "cfg.yaml:9: listn: unknown key",
    ),
    "unknown probe key": (
        GOOD.replace("labels:", "lables:"),
        "cfg.yaml:8: probes[0].lables: unknown key",
    ),
    "bad duration": (
        GOOD + "evaluation_interval: 15 seconds\n",
        "cfg.yaml:9: evaluation_interval: bad duration '15 seconds':"
        " expected a number with a unit (ms, s, m, h, d)",
    ),
    "unknown component": (
        GOOD.replace("component: carriers/dhl", "component: carriers/ups"),
        "cfg.yaml:1: probe 'dhl-de': unknown component 'carriers/ups'",
    ),
    "bad component id": (
        GOOD.replace("{id: carriers/dhl, name: DHL}", "{id: dhl, name: DHL}"),
        "cfg.yaml:6: components[0].id: String should match pattern"
        " '^(sendcloud|carriers|integrations)/[a-z0-9][a-z0-9_.-]*$'",
    ),
    "unknown kind": (
        GOOD.replace("kind: label_creation", "kind: label"),
        "cfg.yaml:8: probes[0].kind: unknown probe kind 'label';"
        " known: http, label_creation, order_import, tracking",
    ),
    "unknown kind setting": (
        GOOD.replace("labels: {market: DE}", "settings: {carier: dhl}"),
        "cfg.yaml:8: probes[0].settings.carier: Extra inputs are not permitted",
    ),
    "timeout over interval": (
        GOOD.replace("labels: {market: DE}", "interval: 10s, timeout: 20s"),
        "cfg.yaml:8: probes[0]: timeout (20s) exceeds interval (10s)",
    ),
    "missing secret": (
        GOOD.replace("CFG_PASS", "CFG_MISSING"),
        "cfg.yaml:8: probes[0]: environment variable CFG_MISSING is not set",
    ),
    "duplicate probe": (
        GOOD + "  - {id: dhl-de, kind: http, component: carriers/dhl}\n",
        "cfg.yaml:1: probes: duplicate probe id 'dhl-de'",
    ),
    "yaml syntax": (
        GOOD + "probes: [\n",
        "cfg.yaml:10: YAML syntax error: did not find expected node content",
    ),
    "no rules": (
        GOOD.replace("rules: [rules/]\n", ""),
        "cfg.yaml:1: rules: Field required",
    ),
    "port out of range": (
        GOOD + "listen: 127.0.0.1:99999\n",
        "cfg.yaml:9: listen: port of '127.0.0.1:99999' is outside 0-65535",
    ),
    "absurd evaluation interval": (
        GOOD + "evaluation_interval: 99999999999999999999d\n",
        "cfg.yaml:9: evaluation_interval: Input should be less than or equal to 3600",
    ),
    "zero flush interval": (
        GOOD + "flush_interval: 0s\n",
        "cfg.yaml:9: flush_interval: Input should be greater than or equal to 0.1",
    ),
    "absurd probe interval": (
        GOOD.replace("labels: {market: DE}", "interval: 400d"),
        "cfg.yaml:8: probes[0].interval: Input should be less than or equal to 86400",
    ),
    "connection limit": (
        GOOD + "max_connections: 0\n",
        "cfg.yaml:9: max_connections: Input should be greater than or equal to 1",
    ),
    "target with a password and a wrong scheme": (
        GOOD.replace("labels: {market: DE}", "target: 'ftp://admin:SECRET@host/'"),
        "cfg.yaml:8: probes[0].target: bad target 'ftp://***@host/':"
        " expected an http:// or https:// base URL",
    ),
    "canary with a password": (
        GOOD
        + "self_check:\n  canaries:\n    - {id: c1, target: 'https://u:SECRET@example.net/'}\n",
        "cfg.yaml:11: self_check.canaries[0].target: bad target: put credentials in `credentials`,"
        " not in the URL",
    ),
    "duplicate canary": (
        GOOD + "self_check:\n  canaries:\n    - {id: c, target: 'https://a.example/'}\n"
        "    - {id: c, target: 'https://b.example/'}\n",
        "cfg.yaml:10: self_check.canaries: duplicate canary id 'c'",
    ),
    "canary kind under probes": (
        GOOD.replace("kind: label_creation", "kind: canary"),
        "cfg.yaml:8: probes[0].kind: unknown probe kind 'canary';"
        " known: http, label_creation, order_import, tracking",
    ),
    "unreadable token file": (
        GOOD + "api_token_file: /nonexistent/token\n",
        "cfg.yaml:9: api_token_file: cannot read /nonexistent/token: No such file or directory",
    ),
}


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFG_USER", "probe")
    monkeypatch.setenv("CFG_PASS", "hunter2-secret")
    monkeypatch.delenv("DETECTOR_API_TOKEN", raising=False)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_is_one_precise_line(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, message = BAD[case]
    monkeypatch.chdir(tmp_path)
    Path("cfg.yaml").write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_settings("cfg.yaml")
    assert str(raised.value) == message
    assert "SECRET" not in str(raised.value)


def test_good_config_resolves_secrets_without_showing_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(GOOD)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(
        "rules:\n  - name: r\n    match: {kind: http}\n"
        "    impact: [{status: major_outage, when: error_ratio >= 0.9}]\n"
    )
    settings = load_settings(path)
    [spec] = settings.probe_specs
    assert spec.credentials is not None
    assert spec.credentials.authorization().startswith("Basic ")
    assert "hunter2" not in repr(settings)
    assert settings.rule_paths() == [tmp_path / "rules/"]
    assert main(["check", "--config", str(path)]) == 0
    assert "1 components, 1 probes, 1 rules" in capsys.readouterr().out


def test_read_only_commands_do_not_need_probe_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CFG_PASS")
    path = tmp_path / "cfg.yaml"
    path.write_text(GOOD)
    with pytest.raises(ConfigError):
        load_settings(path)
    assert load_settings(path, resolve_secrets=False).components[0].name == "DHL"


def test_cli_reports_config_errors_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(GOOD + "listn: 1\n")
    assert main(["check", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err == f"detector: error: {path}:9: listn: unknown key\n"


def test_check_never_prints_a_targets_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(GOOD.replace("labels: {market: DE}", "target: 'ftp://admin:SECRET@host/'"))
    assert main(["check", "--config", str(path)]) == 1
    captured = capsys.readouterr()
    assert "SECRET" not in captured.err + captured.out
    assert captured.err.count("\n") == 1 and "ftp://***@host/" in captured.err


def test_instance_defaults_to_the_host_name_and_canaries_become_specs(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "cfg.yaml"
    path.write_text(
        GOOD + "self_check:\n  interval: 20s\n  canaries:\n"
        "    - {id: c-http, target: 'https://example.net/'}\n"
        "    - {id: c-dns, target: 'https://example.org/', check: dns}\n"
    )
    settings = load_settings(path)
    assert settings.instance == socket.gethostname()
    assert [(s.id, s.kind, s.interval) for s in settings.canary_specs] == [
        ("c-http", "canary", 20.0),
        ("c-dns", "canary", 20.0),
    ]
    path.write_text(GOOD + "instance: ams-1\n")
    assert load_settings(path).instance == "ams-1"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("bad target 'ftp://admin:SECRET@host/x'", "bad target 'ftp://***@host/x'"),
        (
            "'ftp://admin:SE@CR/ET@host/' and 'http://u:SECRET@h'",
            "'ftp://***@host/' and 'http://***@h'",
        ),
        ("no URL here: user@example.com", "no URL here: user@example.com"),
    ],
)
def test_config_errors_hide_userinfo(text: str, shown: str) -> None:
    assert str(ConfigError(text)) == shown
