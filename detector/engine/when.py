"""The `when` language of rule files: window metrics compared with numbers.

A LALR grammar parses the text into a small typed AST, which is then compiled to nested
closures. The engine evaluates ~100k conditions per pass, so `evaluate` is one closure call
with no tree walk, and nothing ever reaches Python `eval`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from detector.timeutil import parse_duration

LATENCY_METRICS = frozenset({"latency_p50", "latency_p95", "latency_p99", "latency_max"})
METRICS: frozenset[str] = (
    frozenset({"error_ratio", "success_ratio", "results", "failures", "consecutive_failures"})
    | LATENCY_METRICS
)
OPERATORS = ("<", "<=", ">", ">=", "==", "!=")

Evaluator = Callable[[Mapping[str, float]], bool]


class WhenError(ValueError):
    """A `when` expression that cannot be parsed; the message is one line, without location."""


# ------------------------------------------------------------------------------------ AST


@dataclass(frozen=True, slots=True)
class Comparison:
    metric: str
    op: str
    threshold: float  # seconds for latency metrics
    literal: str  # the threshold as written (latency ones always with a unit)


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]


Node = Comparison | Not | And | Or

# ---------------------------------------------------------------------------------- parse

# NUMBER takes any trailing letters so that `5sec` or `0.3and` is one bad number with a clear
# message instead of a confusing error about a stray name after it.
_GRAMMAR = r"""
start: or_expr
?or_expr: and_expr (_OR and_expr)+ -> any_of
        | and_expr
?and_expr: not_expr (_AND not_expr)+ -> all_of
         | not_expr
?not_expr: _NOT not_expr -> negation
         | NAME OP NUMBER -> metric_first
         | NUMBER OP NAME -> number_first
         | "(" or_expr ")"
OP: "<=" | ">=" | "==" | "!=" | "<" | ">"
NAME: /[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[A-Za-z_]*/
_AND: "and"
_OR: "or"
_NOT: "not"
%import common.WS
%ignore WS
"""
_NUMBER = re.compile(r"((?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(ms|s|m|)")
# Limits keep a hostile or mangled rule file from costing a RecursionError or minutes of
# parsing: real conditions are a few comparisons deep and well under a hundred characters.
MAX_LENGTH = 2000
MAX_DEPTH = 32


def _check_number(token: Token) -> Token:
    # At lexing time, so `0.3and failures > 1` blames the number, not the parse after it.
    if _NUMBER.fullmatch(token) is None:
        raise WhenError(f"bad number '{token}': units are ms, s and m")
    return token


_PARSER = Lark(_GRAMMAR, parser="lalr", lexer="basic", lexer_callbacks={"NUMBER": _check_number})
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_EXPECTED_WORDS = {
    "NAME": "a comparison",
    "NUMBER": "a comparison",
    "LPAR": "a comparison",
    "_NOT": "a comparison",
    "OP": "a comparison operator (< <= > >= == !=)",
    "RPAR": "')'",
    "_AND": "'and'",
    "_OR": "'or'",
}


def parse_when(text: str) -> When:
    """Parse a `when` expression; raises WhenError with a one-line message."""
    if not text.strip():
        raise WhenError("empty condition")
    if len(text) > MAX_LENGTH:
        raise WhenError(f"too long: {len(text)} characters (at most {MAX_LENGTH})")
    _check_depth(text)
    try:
        tree = _PARSER.parse(text)
    except UnexpectedCharacters as error:
        raise WhenError(f"unexpected character {error.char!r} {_where(error)}") from None
    except UnexpectedToken as error:
        raise WhenError(_token_message(text, error)) from None
    except UnexpectedInput as error:  # not raised by LALR today; kept so lark changes stay one line
        raise WhenError(f"syntax error {_where(error)}") from None
    return When(text, _build(tree.children[0]))


def _check_depth(text: str) -> None:
    """Refuse deep nesting before anything recursive (tree building, compiling) sees it."""
    depth = 0
    nots = 0  # a chain of `not`s nests like parentheses do
    try:
        tokens = list(_PARSER.lex(text))
    except UnexpectedInput:
        return  # the parser reports it, with its position; lexing is flat, so no depth risk
    for token in tokens:
        if token.type == "LPAR":
            depth += 1
        elif token.type == "RPAR":
            depth = max(0, depth - 1)
        nots = nots + 1 if token.type == "_NOT" else 0
        if depth + nots > MAX_DEPTH:
            raise WhenError(f"nested too deeply (more than {MAX_DEPTH} levels of '(' and 'not')")


def _where(error: UnexpectedInput) -> str:
    if error.line > 1:
        return f"at line {error.line}, column {error.column}"
    return f"at column {error.column}"


def _token_message(text: str, error: UnexpectedToken) -> str:
    token = error.token
    at_end = token.type == "$END"
    # The text before the bad token lexed fine already, so this cannot raise.
    before = list(_PARSER.lex(text if at_end else text[: token.start_pos]))
    previous = before[-1] if before else None
    if previous is not None and previous.type == "OP":
        wanted = "a metric" if "NAME" in error.expected else "a number"
        return f"expected {wanted} after '{previous}'"
    if previous is not None and previous.type == "NAME" and previous not in METRICS:
        return _unknown_metric(str(previous))  # `erorr ratio > 1`: the typo is the news
    if not at_end and error.expected != {"OP"}:
        return f"unexpected '{token}' {_where(error)}"
    words = sorted({_EXPECTED_WORDS.get(name, name) for name in error.expected})
    wanted = " or ".join(words) if words else "nothing"
    return f"expected {wanted} after '{previous}'"


def _build(tree: Tree[Token] | Token) -> Node:
    if isinstance(tree, Token):  # the grammar only leaves tokens inside comparisons
        raise WhenError(f"unexpected '{tree}'")
    if tree.data in ("metric_first", "number_first"):
        return _comparison(tree)
    operands = tuple(_build(child) for child in tree.children)
    if tree.data == "negation":
        return Not(operands[0])
    if tree.data == "all_of":
        # Flattened so that `(a and b) and c` and its canonical text give the same tree.
        return And(_flatten(And, operands))
    return Or(_flatten(Or, operands))


def _flatten(kind: type[And] | type[Or], operands: tuple[Node, ...]) -> tuple[Node, ...]:
    flat: list[Node] = []
    for operand in operands:
        flat.extend(operand.operands if isinstance(operand, kind) else (operand,))
    return tuple(flat)


def _comparison(tree: Tree[Token]) -> Comparison:
    first, op, last = (str(child) for child in tree.children)
    if tree.data == "metric_first":
        metric, number = first, last
    else:
        metric, number, op = last, first, _FLIPPED[op]
    if metric not in METRICS:
        raise WhenError(_unknown_metric(metric))
    threshold, literal = _number(number, metric)
    return Comparison(metric, op, threshold, literal)


def _unknown_metric(name: str) -> str:
    return f"unknown metric {name!r} (known: {', '.join(sorted(METRICS))})"


def _number(text: str, metric: str) -> tuple[float, str]:
    match = _NUMBER.fullmatch(text)
    if match is None:  # _check_number let it through, so this cannot happen
        raise WhenError(f"bad number '{text}': units are ms, s and m")
    digits, unit = match.groups()
    if unit and metric not in LATENCY_METRICS:
        raise WhenError(f"{text!r} has a unit, but {metric} is not a latency metric")
    if metric not in LATENCY_METRICS:
        return float(digits), text
    if not unit:  # bare numbers on latency metrics are seconds; say so in the canonical text
        return float(digits), f"{text}s"
    return float(digits) * parse_duration(f"1{unit}"), text  # timeutil's one unit table


# -------------------------------------------------------------------------------- compile

# One closure per operator rather than `operator.ge(...)` inside a closure: it saves a call
# per comparison on the engine's hot path.
_COMPARATORS: dict[str, Callable[[str, float], Evaluator]] = {
    "<": lambda metric, threshold: lambda values: values[metric] < threshold,
    "<=": lambda metric, threshold: lambda values: values[metric] <= threshold,
    ">": lambda metric, threshold: lambda values: values[metric] > threshold,
    ">=": lambda metric, threshold: lambda values: values[metric] >= threshold,
    "==": lambda metric, threshold: lambda values: values[metric] == threshold,
    "!=": lambda metric, threshold: lambda values: values[metric] != threshold,
}


def _compile(node: Node) -> Evaluator:
    if isinstance(node, Comparison):
        return _COMPARATORS[node.op](node.metric, node.threshold)
    if isinstance(node, Not):
        operand = _compile(node.operand)
        return lambda values: not operand(values)
    parts = [_compile(operand) for operand in node.operands]
    combine = _both if isinstance(node, And) else _either
    # Right fold: the first operand is tested at the shallowest nesting level.
    evaluate = parts[-1]
    for part in reversed(parts[:-1]):
        evaluate = combine(part, evaluate)
    return evaluate


def _both(left: Evaluator, right: Evaluator) -> Evaluator:
    return lambda values: left(values) and right(values)


def _either(left: Evaluator, right: Evaluator) -> Evaluator:
    return lambda values: left(values) or right(values)


# --------------------------------------------------------------------------------- render

_PRECEDENCE = {Or: 1, And: 2, Not: 3, Comparison: 4}


def _render(node: Node, leaf: Callable[[Comparison], str]) -> str:
    if isinstance(node, Comparison):
        return leaf(node)
    if isinstance(node, Not):
        return f"not {_child(node.operand, node, leaf)}"
    word = " and " if isinstance(node, And) else " or "
    return word.join(_child(operand, node, leaf) for operand in node.operands)


def _child(child: Node, parent: Node, leaf: Callable[[Comparison], str]) -> str:
    text = _render(child, leaf)
    if _PRECEDENCE[type(child)] < _PRECEDENCE[type(parent)]:
        return f"({text})"
    return text


def format_number(value: float) -> str:
    """Compact: integers without a dot, else about three significant digits (0.42, 0.333)."""
    if not math.isfinite(value):
        return str(value)
    if value == int(value):
        return str(int(value))
    magnitude = math.floor(math.log10(abs(value)))
    text = f"{value:.{max(0, 2 - magnitude)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_metric(metric: str, value: float) -> str:
    """A metric value as people read it: latencies in seconds with `s`."""
    text = format_number(value)
    return f"{text}s" if metric in LATENCY_METRICS else text


class When:
    """A parsed `when` condition; the type of `Impact.when`.

    `evaluate` is the compiled closure itself (an attribute, not a method) so a call costs
    no bound-method indirection.
    """

    __slots__ = ("evaluate", "metrics", "node", "text")

    def __init__(self, text: str, node: Node) -> None:
        self.text = text
        self.node = node
        self.metrics = _metrics(node)
        self.evaluate: Evaluator = _compile(node)

    def explain(self, values: Mapping[str, float]) -> str:
        """Every comparison with the value seen, e.g. `error_ratio (0.42) >= 0.3`."""

        def leaf(c: Comparison) -> str:
            return f"{c.metric} ({format_metric(c.metric, values[c.metric])}) {c.op} {c.literal}"

        return _render(self.node, leaf)

    def canonical(self) -> str:
        """The canonical text: minimal parentheses, metric first, single spaces."""
        return _render(self.node, lambda c: f"{c.metric} {c.op} {c.literal}")

    def __str__(self) -> str:
        return self.canonical()

    def __repr__(self) -> str:
        return f"When({self.canonical()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, When) and other.node == self.node

    def __hash__(self) -> int:
        return hash(self.node)


def _metrics(node: Node) -> frozenset[str]:
    if isinstance(node, Comparison):
        return frozenset({node.metric})
    if isinstance(node, Not):
        return _metrics(node.operand)
    return frozenset().union(*(_metrics(operand) for operand in node.operands))
