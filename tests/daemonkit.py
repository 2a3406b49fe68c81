"""A daemon wired to a real sandbox on loopback and a real SQLite file, on a manual clock."""

from __future__ import annotations

import textwrap
from pathlib import Path

RULES = """
defaults:
  window: 5m
  open_after: 30m
  resolve_after: 10m
rules:
  - name: platform-api
    match: {kind: http, component: sendcloud/api}
    impact:
      - {status: major_outage, when: error_ratio >= 0.9}
      - {status: partial_outage, when: error_ratio >= 0.3}
  - name: carrier-label-creation
    description: label creation failing
    match: {kind: label_creation, component: "carriers/*"}
    impact:
      - {status: major_outage, when: error_ratio >= 0.9}
      - {status: partial_outage, when: error_ratio >= 0.3}
      - {status: degraded_performance, when: latency_p95 > 5s}
    inhibited_by: [platform-api]
    title: "{component_name}: label creation failing{markets}"
"""


def write_config(
    tmp_path: Path,
    target: str,
    *,
    rules: str = RULES,
    timeout: str = "5s",
    extra_probes: str = "",
    store: str | None = None,
    listen: str = "127.0.0.1:0",
    evaluation_interval: str = "15s",
    extra: str = "",
) -> Path:
    """A daemon config for `target`; `extra` is more top-level YAML (e.g. `self_check:`)."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir(exist_ok=True)
    (rules_dir / "rules.yaml").write_text(rules)
    config = tmp_path / "detector.yaml"
    store_url = store or f"sqlite:///{tmp_path / 'detector.db'}"
    config.write_text(
        textwrap.dedent(
            f"""
            listen: {listen}
            store: {store_url}
            rules: [rules/]
            evaluation_interval: {evaluation_interval}
            flush_interval: 1s
            shutdown_grace: 2s
            api_token_env: TEST_DETECTOR_TOKEN
            log_format: json
            {{extra}}
            probe_defaults:
              target: {target}
              interval: 60s
              timeout: {timeout}
              credentials: {{username_env: TEST_SANDBOX_USER, password_env: TEST_SANDBOX_PASS}}
            components:
              - {{id: sendcloud/api, name: Sendcloud API}}
              - {{id: carriers/dhl, name: DHL}}
              - {{id: carriers/ups, name: UPS}}
            probes:
              - {{id: api-user, kind: http, component: sendcloud/api}}
              - {{id: dhl-label-de, kind: label_creation, component: carriers/dhl,
                  labels: {{market: DE}}, settings: {{download_label: false}}}}
              - {{id: dhl-label-nl, kind: label_creation, component: carriers/dhl,
                  labels: {{market: NL}}, settings: {{download_label: false}}}}
              - {{id: ups-label-fr, kind: label_creation, component: carriers/ups,
                  labels: {{market: FR}}, settings: {{download_label: false}}}}
            """
        ).replace("{extra}", textwrap.dedent(extra).strip())
        + textwrap.indent(textwrap.dedent(extra_probes), "  ")
    )
    return config
