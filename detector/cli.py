"""`detector` command line. Thin: parse arguments, call a module, print, exit.

Bad input is one line on stderr and exit status 1 (2 for usage), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import orjson

from detector import __version__, commands
from detector.engine import STATUS as ENGINE_STATUS
from detector.engine.rulefile import RuleFileError, load_rules
from detector.events import EventsError, iter_replay_events
from detector.replay import replay, report_to_dict, report_to_table
from detector.ruletest import RuleTestError, TestFile
from detector.settings import ConfigError
from detector.store.base import StoreError
from detector.timeutil import TimeFormatError, parse_time

Handler = Callable[[argparse.Namespace], int]


class UserError(Exception):
    """Bad input from the person at the keyboard: printed as one line."""


def _rules_check(args: argparse.Namespace) -> int:
    ruleset = load_rules(args.paths)
    print(f"ok: {len(ruleset.rules)} rules in {len(ruleset.files)} files")
    return 0


def _rules_test(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        print(f"Unit Testing: {path}")
        for outcome in TestFile(path).run():
            if outcome.passed:
                print(f"  PASS  {outcome.name}")
                continue
            failed += 1
            print(f"  FAIL  {outcome.name}")
            for failure in outcome.failures:
                print("    " + failure.replace("\n", "\n    "))
    print("SUCCESS" if not failed else f"FAILED: {failed} test(s)")
    return 1 if failed else 0


def _replay(args: argparse.Namespace) -> int:
    rules = load_rules(args.rules).rules
    until = parse_time(args.until) if args.until else None
    names = _component_names(args.config) if args.config else {}
    with open(args.events, "rb") as events:  # streamed: memory stays flat for big histories
        stream = iter_replay_events(events, args.events)
        report = replay(rules, stream, until=until, component_names=names)
    fmt = args.format or ("table" if sys.stdout.isatty() else "json")
    if fmt == "json":
        sys.stdout.buffer.write(orjson.dumps(report_to_dict(report), option=orjson.OPT_INDENT_2))
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report_to_table(report))
    return 0


def _component_names(path: str) -> dict[str, str]:
    from detector.settings import load_settings

    settings = load_settings(path, resolve_secrets=False)
    return {component.id: component.name for component in settings.components}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detector", description="Monitoring-driven incident detection."
    )
    parser.add_argument(
        "--version", action="version", version=f"detector {__version__} (engine: {ENGINE_STATUS})"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rules = sub.add_parser("rules", help="check and test rule files")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    check = rules_sub.add_parser("check", help="validate rule files or folders")
    check.add_argument("paths", nargs="+", metavar="PATH")
    check.set_defaults(handler=_rules_check)
    test = rules_sub.add_parser("test", help="run rule unit tests (promtool style)")
    test.add_argument("files", nargs="+", metavar="FILE")
    test.set_defaults(handler=_rules_test)

    rep = sub.add_parser("replay", help="run rules over recorded events")
    rep.add_argument("--rules", nargs="+", required=True, metavar="PATH")
    rep.add_argument("--events", required=True, metavar="FILE")
    rep.add_argument("--until", metavar="TIME", help="RFC 3339; evaluate deadlines up to it")
    rep.add_argument("--format", choices=["json", "table"], help="default: table on a terminal")
    _daemon_options(rep)  # for component names
    rep.set_defaults(handler=_replay)
    _operations(sub)
    return parser


# What on-call may open an incident with (detector.web.write checks the same).
_OPEN_STATUSES = ["investigating", "identified", "monitoring"]
_IMPACTS = ["degraded_performance", "partial_outage", "major_outage"]


def _daemon_options(
    parser: argparse.ArgumentParser,
    *,
    config_required: bool = False,
    store: bool = False,
    api: bool = False,
) -> argparse.ArgumentParser:
    """The options that say which daemon to talk to, added the one way everywhere: its config,
    and either its store (reads) or its API (writes; the token comes from the config's
    api_token_env/api_token_file or DETECTOR_API_TOKEN, never from a flag)."""
    parser.add_argument("--config", required=config_required, metavar="FILE", help="daemon config")
    if store:
        parser.add_argument("--store", metavar="URL", help="store URL (default: the config's)")
    if api:
        parser.add_argument("--url", help="daemon API base URL (default: the config's listen)")
    return parser


def _actions(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    command = sub.add_parser(name, help=help_text)
    command.set_defaults(handler=getattr(commands, name.replace("-", "_")))
    return command.add_subparsers(dest="action", required=True, metavar="ACTION")


def _operations(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, text in (("run", "run the daemon"),
                       ("check", "validate config and rules (ExecStartPre)")):  # fmt: skip
        parser = _daemon_options(sub.add_parser(name, help=text), config_required=True)
        parser.set_defaults(handler=getattr(commands, name))

    export = _daemon_options(
        sub.add_parser("export", help="write recorded history as an events file"), store=True
    )
    export.add_argument("--since", required=True, metavar="TIME")
    export.add_argument("--until", required=True, metavar="TIME")
    export.add_argument("--out", metavar="FILE", help="default: standard output")
    export.set_defaults(handler=commands.export)

    actions = _actions(sub, "incidents", "list, show or update incidents")
    listing = _daemon_options(actions.add_parser("list"), store=True)
    listing.add_argument("--open", action="store_true", help="unresolved only")
    listing.add_argument("--limit", type=int, default=50)
    _daemon_options(actions.add_parser("show"), store=True).add_argument("id")
    update = _daemon_options(
        actions.add_parser("update", help="post an update through the daemon"), api=True
    )
    update.add_argument("id")
    update.add_argument("--status", required=True, choices=["identified", "monitoring", "resolved"])
    update.add_argument("--body", required=True)
    opened = _daemon_options(
        actions.add_parser("open", help="open one by hand through the daemon"), api=True
    )
    opened.add_argument("--component", required=True, metavar="ID")
    opened.add_argument("--title", required=True)
    opened.add_argument("--body", required=True, help="the first public update")
    opened.add_argument("--status", default="investigating", choices=_OPEN_STATUSES)
    opened.add_argument("--component-status", default="major_outage", choices=_IMPACTS)

    audit = _daemon_options(
        sub.add_parser("audit", help="who wrote what, newest first"), store=True
    )
    audit.add_argument("--since", metavar="TIME")
    audit.add_argument("--actor", metavar="NAME")
    audit.add_argument("--limit", type=int, default=50)
    audit.set_defaults(handler=commands.audit)

    actions = _actions(sub, "deploy", "record a deploy or flag one bad")
    record = _daemon_options(actions.add_parser("record"), api=True)
    record.add_argument("--id")
    record.add_argument("--service", required=True)
    record.add_argument("--version", required=True)
    record.add_argument("--components", nargs="+", required=True, metavar="ID")
    _daemon_options(actions.add_parser("bad"), api=True).add_argument("id")
    _maintenance_and_more(sub)


def _maintenance_and_more(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = _actions(sub, "maintenance", "add, list or cancel maintenance")
    add = _daemon_options(actions.add_parser("add"), api=True)
    add.add_argument("--start", required=True, metavar="TIME")
    add.add_argument("--end", required=True, metavar="TIME")
    add.add_argument("--components", nargs="+", required=True, metavar="ID")
    add.add_argument("--title", required=True)
    _daemon_options(actions.add_parser("list"), api=True)
    _daemon_options(actions.add_parser("cancel"), api=True).add_argument("id")

    actions = _actions(sub, "notifications", "list pending and dead deliveries, or retry them")
    listing = _daemon_options(actions.add_parser("list"), store=True)
    listing.add_argument("--dead", action="store_true", help="dead-lettered only")
    listing.add_argument("--channel", help="one channel only")
    listing.add_argument("--limit", type=int, default=100)
    retry = _daemon_options(actions.add_parser("retry", help="dead deliveries again"), store=True)
    retry.add_argument("ids", nargs="*", metavar="DELIVERY", help="default: every dead one")

    db = sub.add_parser("db", help="database schema")
    db.set_defaults(handler=commands.db_upgrade)
    db_actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    _daemon_options(db_actions.add_parser("upgrade", help="apply Alembic migrations"), store=True)
    current = db_actions.add_parser("current", help="show the schema revision and the newest")
    _daemon_options(current, store=True).set_defaults(handler=commands.db_current)

    sandbox = sub.add_parser("sandbox", help="serve the simulated platform")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=9465)
    sandbox.set_defaults(handler=commands.sandbox)


_USER_ERRORS = (
    UserError,
    RuleFileError,
    RuleTestError,
    EventsError,
    TimeFormatError,
    ConfigError,
    StoreError,
    commands.CommandError,
    OSError,
)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except _USER_ERRORS as exc:
        print(f"detector: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `detector replay … | head`: the reader left, nothing to say
        sys.stderr.close()
        return 0


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(str(exc).split("\n"))


if __name__ == "__main__":
    sys.exit(main())
