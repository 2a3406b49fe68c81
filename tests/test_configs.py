"""The shipped config files and systemd units: they load, they are consistent, and the unit
runs the commands the operations guide says it runs.

A config that only fails on the production host (an unprobed component, a rule no probe
feeds, a unit whose ExecStartPre checks another file) is found here instead.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
import yaml

from detector.cli import main
from detector.engine.rulefile import load_rules
from detector.model import Rule
from detector.settings import ConfigError, Settings, load_settings
from detector.timeutil import parse_duration

ROOT = Path(__file__).parent.parent
PRODUCTION = ROOT / "config" / "detector.yaml"
DEMO = ROOT / "config" / "demo.yaml"
CONFIGS = [PRODUCTION, DEMO]
UNIT = ROOT / "systemd" / "detector.service"
SANDBOX_UNIT = ROOT / "systemd" / "detector-sandbox.service"
INSTALLED_BINARY = "/opt/detector/.venv/bin/detector"
INSTALLED_CONFIG = "/etc/detector/detector.yaml"


# ---------------------------------------------------------------------------- helpers


def _env_names(node: Any) -> Iterator[str]:
    """Every value of a `*_env` key: the variables a config reads its secrets from."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and key.endswith("_env") and isinstance(value, str):
                yield value
            else:
                yield from _env_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from _env_names(item)


def secret_env(path: Path) -> list[str]:
    return sorted(set(_env_names(yaml.safe_load(path.read_text()))))


def load_with_dummy_secrets(path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in secret_env(path):
        monkeypatch.setenv(name, f"dummy-{name.lower()}")
    return load_settings(path)


def rule_matches(rule: Rule, kind: str, component: str, probe: str) -> bool:
    match = rule.match
    return (
        (match.kind is None or match.kind == kind)
        and (match.component is None or fnmatchcase(component, match.component))
        and (match.probe is None or fnmatchcase(probe, match.probe))
    )


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit as section -> [(key, value)], keeping repeated keys (ExecReload twice)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path}:{number}: a setting before any [section]"
        assert "=" in line and not line.endswith("\\"), f"{path}:{number}: not `Key=value`"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [value for name, value in unit.get(section, []) if name == key]


def only(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}: expected one setting, got {found}"
    return found[0]


# ---------------------------------------------------------------------------- configs


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_with_its_secrets_set(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_with_dummy_secrets(path, monkeypatch)
    assert settings.probe_specs, "no probes"
    assert len(settings.probe_specs) == len(settings.probes)
    for spec in settings.probe_specs:
        assert spec.credentials is not None, f"{spec.id}: no credentials"
        assert spec.timeout <= spec.interval, spec.id


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_passes_detector_check(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What systemd's ExecStartPre runs."""
    for name in secret_env(path):
        monkeypatch.setenv(name, "dummy")
    assert main(["check", "--config", str(path)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_a_missing_secret_is_one_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in secret_env(PRODUCTION):
        monkeypatch.setenv(name, "dummy")
    monkeypatch.delenv("SENDCLOUD_PROBE_PASSWORD")
    with pytest.raises(ConfigError, match="environment variable SENDCLOUD_PROBE_PASSWORD"):
        load_settings(PRODUCTION)


def test_secrets_are_read_from_the_environment_not_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_with_dummy_secrets(PRODUCTION, monkeypatch)
    monkeypatch.setenv("DETECTOR_API_TOKEN", "token-from-env")
    assert settings.api_token() == "token-from-env"
    spec = settings.probe_specs[0]
    assert spec.credentials is not None
    assert spec.credentials.authorization().startswith("Basic ")
    assert "dummy-" not in repr(spec)  # credentials never show in a repr or a log line
    assert "dummy-" not in repr(settings)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_probe_names_a_declared_component_and_every_component_is_probed(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_with_dummy_secrets(path, monkeypatch)
    declared = [component.id for component in settings.components]
    probed = {spec.component for spec in settings.probe_specs}
    assert probed <= set(declared), sorted(probed - set(declared))
    assert not set(declared) - probed, f"never probed: {sorted(set(declared) - probed)}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_the_rules_a_config_names_load_and_each_rule_is_fed_by_a_probe(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_with_dummy_secrets(path, monkeypatch)
    ruleset = load_rules(settings.rule_paths())
    assert ruleset.rules, f"{path.name}: no rules loaded from {settings.rules}"
    for rule in ruleset.rules:
        fed = [
            spec.id
            for spec in settings.probe_specs
            if rule_matches(rule, spec.kind, spec.component, spec.id)
        ]
        assert fed, f"{path.name}: rule {rule.name} matches no configured probe"


def test_production_config_has_production_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_with_dummy_secrets(PRODUCTION, monkeypatch)
    expected_interval = {"label_creation": 60.0, "order_import": 120.0, "http": 30.0}
    for spec in settings.probe_specs:
        if spec.kind in expected_interval:
            assert spec.interval == expected_interval[spec.kind], spec.id
    assert settings.probe_defaults.target is not None
    assert settings.probe_defaults.target.startswith("https://")
    assert settings.store.startswith("sqlite:////"), "SQLite path must be absolute in production"
    rules = [path.resolve() for path in settings.rule_paths()]
    assert rules == [(ROOT / "rules").resolve()]


def test_production_config_covers_every_group_and_market_labels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_with_dummy_secrets(PRODUCTION, monkeypatch)
    groups = {component.group for component in settings.components}
    assert groups == {"sendcloud", "carriers", "integrations"}
    kinds = {spec.kind for spec in settings.probe_specs}
    assert kinds == {"label_creation", "order_import", "http", "tracking"}
    for spec in settings.probe_specs:
        if spec.kind == "label_creation":
            assert spec.labels.get("market"), f"{spec.id}: label probes name their market"


# ---------------------------------------------------------------------------- systemd


def test_unit_checks_before_start_and_reloads_with_sighup() -> None:
    unit = parse_unit(UNIT)
    service = "Service"
    config = f"--config {INSTALLED_CONFIG}"
    assert only(unit, service, "ExecStartPre") == f"{INSTALLED_BINARY} check {config}"
    assert only(unit, service, "ExecStart") == f"{INSTALLED_BINARY} run {config}"
    reload = values(unit, service, "ExecReload")
    assert reload[-1] == "/bin/kill -HUP $MAINPID"
    assert all(command.startswith((INSTALLED_BINARY, "/bin/kill")) for command in reload)
    assert only(unit, service, "Type") == "notify"  # READY once probing and serving
    assert only(unit, service, "User") == "detector"
    assert only(unit, service, "Restart") == "on-failure"
    assert only(unit, "Install", "WantedBy") == "multi-user.target"


def test_unit_stop_timeout_outlasts_the_shutdown_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    unit = parse_unit(UNIT)
    stop_timeout = parse_duration(only(unit, "Service", "TimeoutStopSec"))
    settings = load_with_dummy_secrets(PRODUCTION, monkeypatch)
    assert stop_timeout > settings.shutdown_grace


def test_unit_is_hardened_and_can_still_write_its_state() -> None:
    unit = parse_unit(UNIT)
    settings = dict(unit["Service"])
    for key, wanted in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "StateDirectory": "detector",
        "WorkingDirectory": "/var/lib/detector",
        "ReadWritePaths": "/var/lib/detector",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet": "",
    }.items():
        assert settings.get(key) == wanted, f"{key}={settings.get(key)!r}, expected {wanted!r}"
    assert values(unit, "Service", "EnvironmentFile") == ["-/etc/detector/env"]


def test_sandbox_unit_serves_on_loopback() -> None:
    unit = parse_unit(SANDBOX_UNIT)
    command = only(unit, "Service", "ExecStart")
    assert command == f"{INSTALLED_BINARY} sandbox --host 127.0.0.1 --port 9465"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
@pytest.mark.parametrize("path", [UNIT, SANDBOX_UNIT], ids=lambda p: p.name)
def test_systemd_analyze_verify_accepts_the_unit(path: Path, tmp_path: Path) -> None:
    # verify insists the binaries exist: point them at this checkout's.
    binary = shutil.which("detector") or str(ROOT / ".venv" / "bin" / "detector")
    copy = tmp_path / path.name
    copy.write_text(path.read_text().replace(INSTALLED_BINARY, binary))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert path.name not in done.stderr, done.stderr
