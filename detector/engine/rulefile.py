"""Strict loading of rule files (`rules/*.yaml`) into typed `Rule`s.

We walk the composed YAML node tree rather than the plain objects `yaml.safe_load` gives, so
every error can name the file and line of the offending key or value. The first error rejects
the whole set: hot reload then keeps the old rules running.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import TypeVar, cast

import yaml

from detector.engine.ruleyaml import TAG, YamlProblem, compose, is_null, kind_of
from detector.engine.texts import check_template
from detector.engine.when import WhenError, parse_when
from detector.model import (
    PROBE_KINDS,
    ComponentStatus,
    Impact,
    IncidentStatus,
    Match,
    NoData,
    Quorum,
    Rule,
)
from detector.timeutil import TimeFormatError, format_duration, parse_duration

TOP_KEYS = ("defaults", "rules")
DEFAULT_KEYS = ("window", "min_results", "open_after", "resolve_after", "deploy_window", "no_data")
_RULE_ONLY = ("name", "description", "match", "impact", "inhibited_by", "title", "message")
_SPLIT_KEYS = ("split_by", "quorum", "public_text")
RULE_KEYS = (*_RULE_ONLY[:3], *DEFAULT_KEYS, *_RULE_ONLY[3:], *_SPLIT_KEYS)
MATCH_KEYS = ("kind", "component", "probe")
IMPACT_KEYS = ("status", "when")
IMPACT_STATUSES = tuple(
    s
    for s in ComponentStatus
    if s not in (ComponentStatus.OPERATIONAL, ComponentStatus.UNDER_MAINTENANCE)
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

# Upper bounds: a typo such as `3000000d` fails `rules check` instead of freezing a series.
_DAY = 86_400.0
LIMITS = {"window": 7 * _DAY, "open_after": 30 * _DAY, "resolve_after": 30 * _DAY}
LIMITS |= {"deploy_window": 30 * _DAY}
MAX_MIN_RESULTS = 100_000

# The built-in defaults are the ones `Rule` declares: one place to change them.
_BUILTIN = {f.name: f.default for f in fields(Rule) if f.name in DEFAULT_KEYS}


class RuleFileError(Exception):
    """A rule file that fails validation. `str()` is one line: `file:line: rule 'x': what`."""

    def __init__(self, file: str, line: int | None, what: str, rule: str | None = None) -> None:
        super().__init__(file, line, what, rule)
        self.file, self.line, self.what, self.rule = file, line, what, rule

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        rule = "" if self.rule is None else f"rule '{self.rule}': "
        return f"{where}: {rule}{self.what}"


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    files: tuple[str, ...]

    @cached_property
    def by_name(self) -> Mapping[str, Rule]:
        return {rule.name: rule for rule in self.rules}


def load_rules(paths: Iterable[str | Path]) -> RuleSet:
    """Load rule files and directories (their `*.yaml`/`*.yml`, sorted, not recursive).

    Names are unique and `inhibited_by` targets exist across everything loaded together.
    """
    given = [str(path) for path in paths]
    files = _rule_files(given)
    parsed = [rule for file in files for rule in _FileParser(file).parse()]
    if not parsed:  # a reload must never silently drop every rule (an emptied directory)
        where = ", ".join(given) or "no paths"
        raise RuleFileError(where, None, f"no rules in {where}: refusing an empty rule set")
    _check_across_files(parsed)
    return RuleSet(tuple(p.rule for p in parsed), tuple(files))


def load_rule_file(path: str | Path) -> RuleSet:
    """One file on its own: its `inhibited_by` targets must be in that file."""
    return load_rules([path])


def _rule_files(paths: Iterable[str | Path]) -> list[str]:
    files: list[str] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        found = _directory_files(path) if path.is_dir() else [str(given)]
        for file in found:
            if Path(file).resolve() not in seen:  # a file named twice is loaded once
                seen.add(Path(file).resolve())
                files.append(file)
    return files


def _directory_files(path: Path) -> list[str]:
    # Dotfiles are editor leftovers; sub-directories hold rule unit tests.
    try:
        children = sorted(path.iterdir())
    except OSError as error:
        raise RuleFileError(str(path), None, f"cannot read: {error.strerror}") from None
    return [
        str(child)
        for child in children
        if child.suffix in (".yaml", ".yml") and not child.name.startswith(".") and child.is_file()
    ]


@dataclass(frozen=True)
class _Parsed:
    rule: Rule
    file: str
    name_line: int
    inhibitors: tuple[tuple[str, int], ...]  # (rule name, line)

    def error(self, line: int, what: str) -> RuleFileError:
        return RuleFileError(self.file, line, what, self.rule.name)


def _check_across_files(parsed: list[_Parsed]) -> None:
    first: dict[str, _Parsed] = {}
    for item in parsed:
        earlier = first.setdefault(item.rule.name, item)
        if earlier is not item:
            where = f"{earlier.file}:{earlier.name_line}"
            what = f"duplicate rule name '{item.rule.name}' (first defined at {where})"
            raise item.error(item.name_line, what)
    for item in parsed:
        for target, line in item.inhibitors:
            if target not in first:
                close = difflib.get_close_matches(target, first, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise item.error(line, f"inhibited_by: unknown rule '{target}'{hint}")


Pair = tuple[yaml.Node, yaml.Node]
T = TypeVar("T")


@dataclass
class _FileParser:
    """One file's node tree, and the helpers that turn a bad node into a located error."""

    file: str
    rule: str | None = None  # the rule being read, named in errors
    constructor: yaml.constructor.SafeConstructor = field(
        default_factory=yaml.constructor.SafeConstructor
    )

    def error(self, node: yaml.Node, what: str) -> RuleFileError:
        return RuleFileError(self.file, node.start_mark.line + 1, what, self.rule)

    def parse(self) -> list[_Parsed]:
        root = self._compose()
        if root is None:  # an empty file (or only comments) holds no rules
            return []
        top = self.mapping(root, TOP_KEYS, "at top level", required=("rules",))
        defaults = self._defaults(top["defaults"][1]) if "defaults" in top else dict(_BUILTIN)
        rules = top["rules"][1]
        if is_null(rules):
            return []
        if not isinstance(rules, yaml.SequenceNode):
            raise self.error(rules, f"rules: expected a list of rules, got {kind_of(rules)}")
        return [self._rule(node, index, defaults) for index, node in enumerate(rules.value, 1)]

    def _compose(self) -> yaml.Node | None:
        try:
            return compose(self.file)
        except FileNotFoundError:
            raise RuleFileError(self.file, None, "no such file or directory") from None
        except UnicodeDecodeError:
            raise RuleFileError(self.file, None, "not UTF-8 text") from None
        except OSError as error:
            raise RuleFileError(self.file, None, f"cannot read: {error.strerror}") from None
        except YamlProblem as problem:
            raise RuleFileError(self.file, problem.line, problem.what) from None

    # ------------------------------------------------------------------- structure

    def mapping(
        self, node: yaml.Node, allowed: tuple[str, ...], where: str, required: tuple[str, ...] = ()
    ) -> dict[str, Pair]:
        """The keys of a mapping node; unknown, duplicate or missing keys are errors.

        `where` completes "unknown key 'x' ...", e.g. "in match" or "at top level".
        """
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"expected a mapping {where}, got {kind_of(node)}")
        keys: dict[str, Pair] = {}
        for key_node, value_node in node.value:
            if key_node.tag == TAG + "merge":
                raise self.error(key_node, "YAML merge keys (<<) are not supported in rule files")
            key = self.scalar(key_node, "key", str, "a string")
            if key not in allowed:
                known = ", ".join(allowed)
                raise self.error(key_node, f"unknown key '{key}' {where} (allowed: {known})")
            if key in keys:
                raise self.error(key_node, f"duplicate key '{key}' {where}")
            keys[key] = (key_node, value_node)
        for key in required:
            if key not in keys:
                raise self.error(node, f"missing key '{key}' {where}")
        return keys

    def scalar(self, node: yaml.Node, key: str, kind: type[T], wanted: str) -> T:
        """The Python value of a standard YAML scalar of the given type, or an error."""
        value: object = None
        if isinstance(node, yaml.ScalarNode) and node.tag.startswith(TAG):
            try:
                value = self.constructor.construct_object(node)
            except (yaml.YAMLError, ValueError):  # e.g. `!!int abc`
                value = None
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise self.error(node, f"{key}: expected {wanted}, got {kind_of(node)}")
        return value

    def string(self, node: yaml.Node, key: str) -> str:
        return self.scalar(node, key, str, "a string")

    # ------------------------------------------------------------------ values

    def _defaults(self, node: yaml.Node) -> dict[str, object]:
        values = dict(_BUILTIN)
        if not is_null(node):
            for key, (_, value_node) in self.mapping(node, DEFAULT_KEYS, "in defaults").items():
                values[key] = self.setting(key, value_node)
        return values

    def setting(self, key: str, node: yaml.Node) -> object:
        """A timing, min_results or no_data value, in the type `Rule` holds it."""
        if key == "min_results":
            count = self.scalar(node, key, int, "a positive integer")
            if count < 1:
                raise self.error(node, f"{key}: expected a positive integer, got {count}")
            if count > MAX_MIN_RESULTS:
                raise self.error(node, f"{key}: at most {MAX_MIN_RESULTS}, got {count}")
            return count
        if key == "no_data":
            allowed = ", ".join(NoData)
            text = self.scalar(node, key, str, f"one of {allowed}")
            if text not in tuple(NoData):
                raise self.error(node, f"no_data: unknown value '{text}' (allowed: {allowed})")
            return NoData(text)
        text = self.scalar(node, key, str, "a duration such as 5m or 90s")
        try:
            seconds = parse_duration(text)
        except TimeFormatError as error:
            raise self.error(node, f"{key}: {error}") from None
        if key == "window" and seconds <= 0:
            raise self.error(node, f"window: must be longer than 0s, got '{text}'")
        if seconds > LIMITS[key]:
            limit = format_duration(LIMITS[key])
            raise self.error(node, f"{key}: at most {limit}, got '{text}'")
        return seconds

    def _rule(self, node: yaml.Node, index: int, defaults: dict[str, object]) -> _Parsed:
        self.rule = None
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"rule #{index}: expected a mapping, got {kind_of(node)}")
        name_node = next((v for k, v in node.value if k.value == "name"), None)
        if name_node is None:
            raise self.error(node, f"rule #{index}: missing key 'name'")
        name = self.string(name_node, "name")
        if not _NAME.fullmatch(name):
            raise self.error(
                name_node, f"name: '{name}' may hold only letters, digits, '-', '_' and '.'"
            )
        self.rule = name
        keys = self.mapping(node, RULE_KEYS, "in rule", required=("match", "impact"))
        settings = dict(defaults)
        for key in DEFAULT_KEYS:
            if key in keys:
                settings[key] = self.setting(key, keys[key][1])
        description = (
            self.string(keys["description"][1], "description") if "description" in keys else ""
        )
        inhibitors = self._inhibitors(keys["inhibited_by"][1]) if "inhibited_by" in keys else ()
        # The description is literal text in the default title, never a template.
        literal = (description or f"{name} failing").replace("{", "{{").replace("}", "}}")
        rule = Rule(
            name=name,
            match=self._match(keys["match"][1]),
            impact=self._impact(keys["impact"][1]),
            description=description,
            inhibited_by=tuple(target for target, _ in inhibitors),
            title=self._template(keys, "title", "{component_name}: " + literal + "{markets}"),
            message=self._template(keys, "message", ""),
            source=f"{self.file}:{node.start_mark.line + 1}",
            split_by=self._split_by(keys["split_by"][1]) if "split_by" in keys else (),
            quorum=self._quorum(keys["quorum"][1]) if "quorum" in keys else "majority",
            public_text=self._public_text(keys["public_text"][1]) if "public_text" in keys else (),
            **settings,  # type: ignore[arg-type]  # values typed per key by setting()
        )
        return _Parsed(rule, self.file, name_node.start_mark.line + 1, inhibitors)

    def _match(self, node: yaml.Node) -> Match:
        keys = self.mapping(node, MATCH_KEYS, "in match")
        values = {key: self.string(value, key) for key, (_, value) in keys.items()}
        kind = values.get("kind")
        if kind is not None and kind not in PROBE_KINDS:
            known = ", ".join(PROBE_KINDS)
            raise self.error(keys["kind"][1], f"kind: unknown probe kind '{kind}' (known: {known})")
        return Match(**values)

    def _impact(self, node: yaml.Node) -> tuple[Impact, ...]:
        if not isinstance(node, yaml.SequenceNode):
            what = "a list of {status, when} entries"
            raise self.error(node, f"impact: expected {what}, got {kind_of(node)}")
        if not node.value:
            raise self.error(node, "impact: needs at least one {status, when} entry")
        entries = []
        for entry in node.value:
            keys = self.mapping(entry, IMPACT_KEYS, "in impact entry", required=IMPACT_KEYS)
            status_node, when_node = keys["status"][1], keys["when"][1]
            status = self.string(status_node, "status")
            if status not in IMPACT_STATUSES:
                known = status in tuple(ComponentStatus)
                problem = (
                    f"'{status}' cannot be an impact" if known else f"unknown status '{status}'"
                )
                allowed = ", ".join(IMPACT_STATUSES)
                raise self.error(status_node, f"status: {problem} (allowed: {allowed})")
            try:
                when = parse_when(self.string(when_node, "when"))
            except WhenError as error:
                raise self.error(when_node, f"when: {error}") from None
            entries.append(Impact(ComponentStatus(status), when))
        return tuple(entries)

    def _inhibitors(self, node: yaml.Node) -> tuple[tuple[str, int], ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(
                node, f"inhibited_by: expected a list of rule names, got {kind_of(node)}"
            )
        targets = []
        for item in node.value:
            target = self.string(item, "inhibited_by")
            if target == self.rule:
                raise self.error(item, "inhibited_by: a rule cannot be inhibited by itself")
            targets.append((target, item.start_mark.line + 1))
        return tuple(targets)

    def _template(self, keys: dict[str, Pair], key: str, default: str) -> str:
        return self._checked(keys[key][1], key) if key in keys else default

    def _checked(self, node: yaml.Node, key: str) -> str:
        text = self.string(node, key)
        try:
            check_template(text)
        except ValueError as error:
            raise self.error(node, f"{key}: {error}") from None
        return text

    def _split_by(self, node: yaml.Node) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise self.error(node, f"split_by: expected a list of labels, got {kind_of(node)}")
        labels = tuple(self.string(item, "split_by") for item in node.value)
        if len(set(labels)) != len(labels):
            raise self.error(node, "split_by: a label is named twice")
        return labels

    def _quorum(self, node: yaml.Node) -> Quorum:
        wanted = "majority, any, all or a number of instances"
        if isinstance(node, yaml.ScalarNode) and node.tag == TAG + "int":
            count = self.scalar(node, "quorum", int, wanted)
            if 1 <= count <= 100:
                return count
            raise self.error(node, f"quorum: expected 1 to 100 instances, got {count}")
        text = self.scalar(node, "quorum", str, wanted)
        if text not in ("majority", "any", "all"):
            raise self.error(node, f"quorum: unknown value '{text}' (allowed: {wanted})")
        return cast(Quorum, text)

    def _public_text(self, node: yaml.Node) -> tuple[tuple[str, str], ...]:
        statuses = tuple(str(status) for status in IncidentStatus)
        keys = self.mapping(node, statuses, "in public_text")
        return tuple(
            (key, self._checked(value, f"public_text.{key}")) for key, (_, value) in keys.items()
        )
