"""`detector` command line. Thin: parse arguments, call a module, print, exit.

Bad input is one line on stderr and exit status 1 (2 for usage), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import orjson

from detector import __version__
from detector.events import EventsError, read_events
from detector.replay import replay, report_to_dict, report_to_table
from detector.rulefile import RuleFileError, load_rules
from detector.ruletest import RuleTestError, TestFile
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
    report = replay(rules, read_events(args.events), until=until, component_names=names)
    fmt = args.format or ("table" if sys.stdout.isatty() else "json")
    if fmt == "json":
        sys.stdout.buffer.write(orjson.dumps(report_to_dict(report), option=orjson.OPT_INDENT_2))
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report_to_table(report))
    return 0


def _component_names(path: str) -> dict[str, str]:
    from detector.settings import load_settings  # noqa: PLC0415 - only replay --config needs it

    settings = load_settings(path)
    return {component.id: component.name for component in settings.components}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detector", description="Monitoring-driven incident detection."
    )
    parser.add_argument("--version", action="version", version=f"detector {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rules = commands.add_parser("rules", help="check and test rule files")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    check = rules_commands.add_parser("check", help="validate rule files or folders")
    check.add_argument("paths", nargs="+", metavar="PATH")
    check.set_defaults(handler=_rules_check)
    test = rules_commands.add_parser("test", help="run rule unit tests (promtool style)")
    test.add_argument("files", nargs="+", metavar="FILE")
    test.set_defaults(handler=_rules_test)

    rep = commands.add_parser("replay", help="run rules over recorded events")
    rep.add_argument("--rules", nargs="+", required=True, metavar="PATH")
    rep.add_argument("--events", required=True, metavar="FILE")
    rep.add_argument("--until", metavar="TIME", help="RFC 3339; evaluate deadlines up to it")
    rep.add_argument("--format", choices=["json", "table"], help="default: table on a terminal")
    rep.add_argument("--config", metavar="FILE", help="daemon config, for component names")
    rep.set_defaults(handler=_replay)
    return parser


_USER_ERRORS = (
    UserError,
    RuleFileError,
    RuleTestError,
    EventsError,
    TimeFormatError,
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


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(str(exc).split("\n"))


if __name__ == "__main__":
    sys.exit(main())
