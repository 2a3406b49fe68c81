"""Which results a rule watches, and the order rules are evaluated in."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence

from detector.engine.series import Watch
from detector.model import Rule

Matcher = Callable[[str, str, str], bool]


def compile_match(rule: Rule) -> Matcher:
    kind = rule.match.kind
    component = glob_matcher(rule.match.component)
    probe = glob_matcher(rule.match.probe)

    def matches(result_kind: str, result_component: str, result_probe: str) -> bool:
        return (
            (kind is None or kind == result_kind)
            and (component is None or component(result_component) is not None)
            and (probe is None or probe(result_probe) is not None)
        )

    return matches


def component_matches(rule: Rule, component: str) -> bool:
    """Does a rule still watch this component (after a reload narrowed its match)?"""
    matcher = glob_matcher(rule.match.component)
    return matcher is None or matcher(component) is not None


def glob_matcher(pattern: str | None) -> Callable[[str], re.Match[str] | None] | None:
    return None if pattern is None else re.compile(fnmatch.translate(pattern)).match


def rank_rules(rules: Sequence[Rule]) -> dict[str, int]:
    """Inhibitors before the rules they inhibit, otherwise file order: deterministic passes."""
    order: dict[str, int] = {}
    names = {rule.name: rule for rule in rules}
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order or name in visiting or name not in names:
            return
        visiting.add(name)
        for target in names[name].inhibited_by:
            visit(target)
        order[name] = len(order)

    for rule in rules:
        visit(rule.name)
    return order


def in_rule_order(due: Iterable[Watch], ordered_rules: Sequence[str]) -> list[Watch]:
    """Inhibitors first (`ordered_rules`, as ranked), then by component: deterministic
    output, cheap for 100k."""
    by_rule: dict[str, list[Watch]] = {}
    for watch in due:
        by_rule.setdefault(watch.rule, []).append(watch)
    if len(by_rule) == 1:
        only = next(iter(by_rule.values()))
        return sorted(only, key=_component) if len(only) > 1 else only
    ordered: list[Watch] = []
    for name in ordered_rules:
        group = by_rule.get(name)
        if group:
            ordered.extend(sorted(group, key=_component))
    return ordered


def _component(watch: Watch) -> str:
    return watch.component
