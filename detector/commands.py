"""Handlers of the operational CLI commands: run, check, export, incidents, deploy,
maintenance, db upgrade, sandbox.

Commands that change state (deploys, incident updates, maintenance) go through the running
daemon's write API, so the engine learns of them at once; reads go to the store directly,
so they work while the daemon is down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from detector.engine.rulefile import load_rules
from detector.events import write_events
from detector.logs import configure
from detector.model import IncidentUpdate
from detector.settings import Settings, load_settings
from detector.timeutil import format_time, parse_time


class CommandError(Exception):
    """A one-line failure to report to the user."""


def run(args: argparse.Namespace) -> int:
    from detector.daemon import Daemon

    settings = load_settings(args.config)
    log = configure(settings.log_format, settings.log_level)
    asyncio.run(Daemon(settings, log=log).run())
    return 0


def check(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    rules = load_rules(settings.rule_paths())
    print(
        f"ok: {len(settings.components)} components, {len(settings.probe_specs)} probes,"
        f" {len(rules.rules)} rules"
    )
    return 0


def _store_url(args: argparse.Namespace) -> str:
    if getattr(args, "store", None):
        return str(args.store)
    if getattr(args, "config", None):
        return load_settings(args.config, resolve_secrets=False).store
    raise CommandError("give --config FILE or --store URL")


def export(args: argparse.Namespace) -> int:
    from detector.store import open_store

    since, until = parse_time(args.since), parse_time(args.until)
    if until <= since:
        raise CommandError("--until must be after --since")
    store = open_store(_store_url(args))
    try:
        if args.out and args.out != "-":
            with open(args.out, "wb") as out:
                count = write_events(store.export_events(since, until), out)
        else:
            count = write_events(store.export_events(since, until), sys.stdout.buffer)
    finally:
        store.close()
    print(f"exported {count} events", file=sys.stderr)
    return 0


def db_upgrade(args: argparse.Namespace) -> int:
    from detector.store.migrate import upgrade

    upgrade(_store_url(args))
    print("ok: schema at head")
    return 0


def db_current(args: argparse.Namespace) -> int:
    """The revision the store is at and the one this detector runs on; exit 1 if they differ."""
    from detector.store.migrate import current_revision, head_revision

    current, head = current_revision(_store_url(args)), head_revision()
    print(f"schema {current or 'none'}; this detector runs on {head}")
    return 0 if current == head else 1


def incidents(args: argparse.Namespace) -> int:
    if args.action == "update":
        body = {"status": args.status, "body": args.body}
        reply = _api(args, "POST", f"/api/v1/incidents/{args.id}/updates", body)
        print(json.dumps(reply, indent=2))
        return 0
    if args.action == "open":
        body = {
            "component": args.component,
            "title": args.title,
            "body": args.body,
            "status": args.status,
            "component_status": args.component_status,
        }
        print(json.dumps(_api(args, "POST", "/api/v1/incidents", body), indent=2))
        return 0
    from detector.store import open_store

    store = open_store(_store_url(args))
    try:
        if args.action == "show":
            incident = store.get_incident(args.id)
            print(f"{incident.title}  [{incident.status}]  id {incident.id}")
            for update in incident.updates:
                _print_update(update)
            return 0
        for incident in store.list_incidents(unresolved_only=args.open, limit=args.limit):
            resolved = format_time(incident.resolved_at) if incident.resolved_at else "-"
            print(
                f"{incident.id}  {incident.status:<13} {format_time(incident.opened_at)}"
                f"  {resolved:<20}  {incident.title}"
            )
    finally:
        store.close()
    return 0


def notifications(args: argparse.Namespace) -> int:
    """On-call's view of the outbox: what is waiting or dead, and why; retry the dead."""
    from detector.store import open_store

    store = open_store(_store_url(args))
    try:
        if args.action == "retry":
            count = store.retry_deliveries(args.ids, time.time())
            print(f"{count} deliveries pending again")
            return 0 if count or not args.ids else 1
        states = ("dead",) if args.dead else ("pending", "dead")
        rows = store.list_deliveries(channel=args.channel, states=states, limit=args.limit)
        for d in rows:
            print(
                f"{d.id}  {d.channel:<16} {d.state:<8} {d.event:<20} {d.subject}"
                f"  attempts {d.attempts}  next {format_time(d.next_at)}  {d.last_error}"
            )
        if not rows:
            print("no pending or dead deliveries" if not args.dead else "no dead deliveries")
    finally:
        store.close()
    return 0


def _print_update(update: IncidentUpdate) -> None:
    """On-call sees everything: the public body, whether it was public, and the evidence."""
    audience = "" if update.public else "  (on-call only)"
    body = update.body.replace("\n", "\n" + " " * 40)
    print(
        f"  {format_time(update.at)}  {update.status:<13} {update.component_status:<20}"
        f" {body}{audience}"
    )
    if update.evidence:
        print(f"      evidence: {update.evidence}")


def deploy(args: argparse.Namespace) -> int:
    if args.action == "bad":
        reply = _api(args, "POST", f"/api/v1/deploys/{args.id}/bad", {})
    else:
        body: dict[str, Any] = {
            "service": args.service,
            "version": args.version,
            "components": args.components,
        }
        if args.id:
            body["id"] = args.id
        reply = _api(args, "POST", "/api/v1/deploys", body)
    print(json.dumps(reply, indent=2))
    return 0


def maintenance(args: argparse.Namespace) -> int:
    if args.action == "add":
        body = {
            "start": args.start,
            "end": args.end,
            "components": args.components,
            "title": args.title,
        }
        print(json.dumps(_api(args, "POST", "/api/v1/maintenances", body), indent=2))
    elif args.action == "cancel":
        _api(args, "DELETE", f"/api/v1/maintenances/{args.id}", None)
        print(f"cancelled {args.id}")
    else:
        reply = _api(args, "GET", "/api/v2/scheduled-maintenances.json", None)
        for item in reply.get("scheduled_maintenances", []):
            print(
                f"{item['id']}  {item['status']:<11} {item['scheduled_for']}"
                f" .. {item['scheduled_until']}  {item['name']}"
            )
    return 0


def audit(args: argparse.Namespace) -> int:
    """The audit trail, newest first: when, who, what, on what, details."""
    from detector.store import open_store

    since = parse_time(args.since) if args.since else None
    if args.limit < 1:
        raise CommandError("--limit: must be at least 1")
    store = open_store(_store_url(args))
    try:
        for entry in store.list_audit(since=since, actor=args.actor, limit=args.limit):
            details = json.dumps(dict(entry.details), ensure_ascii=False, sort_keys=True)
            print(
                f"{format_time(entry.at)}  {entry.actor:<12} {entry.action:<18}"
                f" {entry.target or '-':<24} {entry.outcome}  {details}"
            )
    finally:
        store.close()
    return 0


def sandbox(args: argparse.Namespace) -> int:
    from detector.sandbox import run_sandbox

    run_sandbox(args.host, args.port)
    return 0


def _api(args: argparse.Namespace, method: str, path: str, body: Any) -> Any:
    """Call the running daemon's API; the token comes from the env, never a flag."""
    base = args.url
    settings: Settings | None = None
    if args.config:
        settings = load_settings(args.config, resolve_secrets=False)
    if not base:
        base = f"http://{settings.listen}" if settings else "http://127.0.0.1:9464"
    try:
        token = settings.api_token() if settings else None
    except ValueError as exc:
        raise CommandError(f"API token: {exc}") from None
    token = token or os.environ.get("DETECTOR_API_TOKEN")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base.rstrip("/") + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(detail).get("error", detail)
        raise CommandError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
    except urllib.error.URLError as exc:
        raise CommandError(f"cannot reach the daemon at {base}: {exc.reason}") from None
    return json.loads(payload) if payload else {}
