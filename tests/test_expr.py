from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detector.engine.when import (
    METRICS,
    And,
    Comparison,
    Not,
    Or,
    When,
    WhenError,
    format_number,
    parse_when,
)

ALL_HEALTHY = {metric: 0.0 for metric in METRICS}


def values(**given: float) -> dict[str, float]:
    return ALL_HEALTHY | given


def test_parses_a_comparison_into_the_ast() -> None:
    condition = parse_when("error_ratio >= 0.3")
    assert condition.node == Comparison("error_ratio", ">=", 0.3, "0.3")
    assert condition.metrics == frozenset({"error_ratio"})
    assert condition.text == "error_ratio >= 0.3"


def test_a_parsed_when_evaluates_values() -> None:
    condition: When = parse_when("results < 3")
    assert condition.evaluate(values(results=2)) is True


@pytest.mark.parametrize(
    ("text", "node"),
    [
        (
            "failures > 1 or results > 2 and error_ratio > 0.5",
            Or(
                (
                    Comparison("failures", ">", 1, "1"),
                    And(
                        (
                            Comparison("results", ">", 2, "2"),
                            Comparison("error_ratio", ">", 0.5, "0.5"),
                        )
                    ),
                )
            ),
        ),
        (
            "not failures > 1 and results > 2",
            And((Not(Comparison("failures", ">", 1, "1")), Comparison("results", ">", 2, "2"))),
        ),
        (
            "not (failures > 1 and results > 2)",
            Not(And((Comparison("failures", ">", 1, "1"), Comparison("results", ">", 2, "2")))),
        ),
        (
            "(failures > 1 and results > 2) and error_ratio > 0.5",
            And(
                (
                    Comparison("failures", ">", 1, "1"),
                    Comparison("results", ">", 2, "2"),
                    Comparison("error_ratio", ">", 0.5, "0.5"),
                )
            ),
        ),
        ("not not failures == 0", Not(Not(Comparison("failures", "==", 0, "0")))),
    ],
)
def test_precedence_is_not_then_and_then_or(text: str, node: object) -> None:
    assert parse_when(text).node == node


@pytest.mark.parametrize(
    ("text", "threshold", "canonical"),
    [
        ("latency_p95 > 5s", 5.0, "latency_p95 > 5s"),
        ("latency_p95 > 800ms", 0.8, "latency_p95 > 800ms"),
        ("latency_p50 > 2m", 120.0, "latency_p50 > 2m"),
        ("latency_p99 > 1.5", 1.5, "latency_p99 > 1.5s"),
        ("latency_max>=1e-3", 0.001, "latency_max >= 1e-3s"),
        ("error_ratio >= .25", 0.25, "error_ratio >= .25"),
        ("consecutive_failures >= 5", 5.0, "consecutive_failures >= 5"),
    ],
)
def test_numbers_and_units(text: str, threshold: float, canonical: str) -> None:
    condition = parse_when(text)
    assert isinstance(condition.node, Comparison)
    assert condition.node.threshold == threshold
    assert str(condition) == canonical


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("0.3 <= error_ratio", "error_ratio >= 0.3"),
        ("5 > results", "results < 5"),
        ("1 == failures", "failures == 1"),
        ("5s < latency_p95", "latency_p95 > 5s"),
    ],
)
def test_number_first_is_flipped_to_metric_first(text: str, canonical: str) -> None:
    assert parse_when(text).canonical() == canonical


@pytest.mark.parametrize(
    ("text", "seen", "expected"),
    [
        ("error_ratio >= 0.3", values(error_ratio=0.3), True),
        ("error_ratio > 0.3", values(error_ratio=0.3), False),
        ("error_ratio < 0.3", values(error_ratio=0.1), True),
        ("error_ratio <= 0.3", values(error_ratio=0.31), False),
        ("results == 0", values(results=0), True),
        ("results != 0", values(results=0), False),
        ("latency_p95 > 800ms", values(latency_p95=0.81), True),
        ("latency_p95 > 800ms", values(latency_p95=0.8), False),
        ("failures > 2 and results > 5", values(failures=3, results=5), False),
        ("failures > 2 or results > 5", values(failures=3, results=5), True),
        ("not (failures > 2 or results > 5)", values(failures=0, results=0), True),
    ],
)
def test_evaluate(text: str, seen: Mapping[str, float], expected: bool) -> None:
    assert parse_when(text).evaluate(seen) is expected


@pytest.mark.parametrize(
    ("text", "seen", "explanation"),
    [
        ("error_ratio >= 0.3", values(error_ratio=0.42), "error_ratio (0.42) >= 0.3"),
        ("latency_p95 > 5s", values(latency_p95=6.1), "latency_p95 (6.1s) > 5s"),
        ("latency_p95 > 800ms", values(latency_p95=0.9123), "latency_p95 (0.912s) > 800ms"),
        ("results < 5", values(results=3), "results (3) < 5"),
        (
            "error_ratio >= 0.3 and (failures > 2 or not results < 10)",
            values(error_ratio=1 / 3, failures=1, results=12),
            "error_ratio (0.333) >= 0.3 and (failures (1) > 2 or not results (12) < 10)",
        ),
        (
            "not (error_ratio > 0.5 and success_ratio<0.5)",
            values(error_ratio=0.6, success_ratio=0.4),
            "not (error_ratio (0.6) > 0.5 and success_ratio (0.4) < 0.5)",
        ),
    ],
)
def test_explain_shows_the_values_seen(
    text: str, seen: Mapping[str, float], explanation: str
) -> None:
    assert parse_when(text).explain(seen) == explanation


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.42, "0.42"),
        (1 / 3, "0.333"),
        (5.2, "5.2"),
        (6.1234, "6.12"),
        (12.0, "12"),
        (0, "0"),
        (0.9999, "1"),
        (123.456, "123"),
        (0.000412, "0.000412"),
        (float("nan"), "nan"),
    ],
)
def test_format_number_is_compact(value: float, text: str) -> None:
    assert format_number(value) == text


def test_conditions_compare_by_tree() -> None:
    assert parse_when("(error_ratio>0.5)") == parse_when("error_ratio > 0.5")
    assert hash(parse_when("0.5 < error_ratio")) == hash(parse_when("error_ratio > 0.5"))
    assert parse_when("error_ratio > 0.5") != parse_when("error_ratio >= 0.5")
    assert repr(parse_when("error_ratio>0.5")) == "When('error_ratio > 0.5')"


KNOWN = (
    "consecutive_failures, error_ratio, failures, latency_max, latency_p50, latency_p95,"
    " latency_p99, results, success_ratio"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("error_rate >= 0.3", f"unknown metric 'error_rate' (known: {KNOWN})"),
        ("erorr ratio > 1", f"unknown metric 'erorr' (known: {KNOWN})"),
        ("error_ratio > 0.3 and and failures > 1", "unexpected 'and' at column 23"),
        ("error_ratio >= and", "expected a number after '>='"),
        ("error_ratio >=", "expected a number after '>='"),
        ("5 > 3", "expected a metric after '>'"),
        ("error_ratio > failures", "expected a number after '>'"),
        ("error_ratio", "expected a comparison operator (< <= > >= == !=) after 'error_ratio'"),
        (
            "error_ratio or failures > 1",
            "expected a comparison operator (< <= > >= == !=) after 'error_ratio'",
        ),
        ("error_ratio > 1 and", "expected a comparison after 'and'"),
        ("not", "expected a comparison after 'not'"),
        ("(error_ratio > 1", "expected ')' after '1'"),
        ("error_ratio > 1)", "unexpected ')' at column 16"),
        ("()", "unexpected ')' at column 2"),
        ("error_ratio = 1", "unexpected character '=' at column 13"),
        ("error_ratio > 1 &&  failures > 1", "unexpected character '&' at column 17"),
        ("error_ratio > 1\n  || failures > 1", "unexpected character '|' at line 2, column 3"),
        ("latency_p95 > 5sec", "bad number '5sec': units are ms, s and m"),
        ("error_ratio > 0.3and failures > 1", "bad number '0.3and': units are ms, s and m"),
        ("error_ratio > 5s", "'5s' has a unit, but error_ratio is not a latency metric"),
        ("results > 5m", "'5m' has a unit, but results is not a latency metric"),
        ("", "empty condition"),
        ("   ", "empty condition"),
    ],
)
def test_errors_are_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(WhenError) as caught:
        parse_when(text)
    assert str(caught.value) == message


def test_when_error_is_a_value_error() -> None:
    assert issubclass(WhenError, ValueError)


def test_never_reaches_python_eval() -> None:
    for text in (
        "__import__('os').system('true')",
        "error_ratio > (1).__class__",
        "error_ratio > 1 if 1 else 0",
    ):
        with pytest.raises(WhenError):
            parse_when(text)


# ------------------------------------------------------ property test against a reference

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
LATENCY = sorted(metric for metric in METRICS if metric.startswith("latency_"))
PLAIN = sorted(METRICS - set(LATENCY))
# (literal as written, its value): thresholds collide with SAMPLE_VALUES so == and != get hit.
PLAIN_LITERALS = [("0", 0.0), ("0.3", 0.3), (".5", 0.5), ("1", 1.0), ("5", 5.0), ("1e-3", 0.001)]
LATENCY_LITERALS = [*PLAIN_LITERALS, ("800ms", 0.8), ("5s", 5.0), ("2m", 120.0), ("0.5s", 0.5)]
SAMPLE_VALUES = [0.0, 0.001, 0.3, 0.5, 0.8, 1.0, 2.0, 5.0, 120.0, 1000.0]


@dataclass(frozen=True)
class Ref:
    """The test's own expression tree: `kind` is cmp/not/and/or, `wrap` adds redundant parens."""

    kind: str
    wrap: bool
    children: tuple[Ref, ...] = ()
    metric: str = ""
    op: str = ""
    literal: str = ""
    value: float = 0.0


LEVEL = {"or": 1, "and": 2, "not": 3, "cmp": 4}


def reference_evaluate(ref: Ref, seen: Mapping[str, float]) -> bool:
    if ref.kind == "cmp":
        return OPS[ref.op](seen[ref.metric], ref.value)
    if ref.kind == "not":
        return not reference_evaluate(ref.children[0], seen)
    results = [reference_evaluate(child, seen) for child in ref.children]
    return all(results) if ref.kind == "and" else any(results)


def reference_text(ref: Ref) -> str:
    if ref.kind == "cmp":
        text = f"{ref.metric} {ref.op} {ref.literal}"
    elif ref.kind == "not":
        text = f"not {child_text(ref.children[0], ref)}"
    else:
        text = f" {ref.kind} ".join(child_text(child, ref) for child in ref.children)
    return f"( {text} )" if ref.wrap else text


def child_text(child: Ref, parent: Ref) -> str:
    text = reference_text(child)
    needs_parens = (
        not child.wrap and LEVEL[child.kind] <= LEVEL[parent.kind] and child.kind != "not"
    )
    return f"({text})" if needs_parens and child.kind != "cmp" else text


@st.composite
def comparisons(draw: st.DrawFn) -> Ref:
    metric = draw(st.sampled_from(sorted(METRICS)))
    literals = LATENCY_LITERALS if metric in LATENCY else PLAIN_LITERALS
    literal, value = draw(st.sampled_from(literals))
    return Ref(
        "cmp",
        draw(st.booleans()),
        metric=metric,
        op=draw(st.sampled_from(sorted(OPS))),
        literal=literal,
        value=value,
    )


def composites(children: st.SearchStrategy[Ref]) -> st.SearchStrategy[Ref]:
    negation = st.builds(lambda child, wrap: Ref("not", wrap, (child,)), children, st.booleans())
    junction = st.builds(
        lambda kind, items, wrap: Ref(kind, wrap, tuple(items)),
        st.sampled_from(["and", "or"]),
        st.lists(children, min_size=2, max_size=3),
        st.booleans(),
    )
    return negation | junction


expressions = st.recursive(comparisons(), composites, max_leaves=8)
samples = st.fixed_dictionaries(
    {metric: st.sampled_from(SAMPLE_VALUES) for metric in sorted(METRICS)}
)


@given(expressions, samples)
def test_random_expressions_evaluate_like_the_reference(ref: Ref, seen: dict[str, float]) -> None:
    condition = parse_when(reference_text(ref))
    assert condition.evaluate(seen) is reference_evaluate(ref, seen)


@given(expressions, samples)
def test_canonical_text_round_trips(ref: Ref, seen: dict[str, float]) -> None:
    condition = parse_when(reference_text(ref))
    again = parse_when(condition.canonical())
    assert again == condition
    assert again.canonical() == condition.canonical()
    assert again.evaluate(seen) is condition.evaluate(seen)
    explanation = condition.explain(seen)
    assert isinstance(condition, When)
    assert explanation.count("(") == explanation.count(")")


# ------------------------------------------------------ fuzz: only WhenError, never a crash

WHEN_TOKENS = [
    "not ", "(", ")", " and ", " or ", "error_ratio", "latency_p95", " >= ", " < ", "==", "0.5",
    "5s", "800ms", "1e3", "x", "=", "&", "\n", " ", "'", "1.2.3", "__import__",
]  # fmt: skip


def _parses_or_says_why(text: str) -> None:
    try:
        when = parse_when(text)
    except WhenError as error:
        assert "\n" not in str(error)
        return
    assert when.evaluate(ALL_HEALTHY) in (True, False)
    assert parse_when(when.canonical()) == when


@given(st.text(max_size=300))
def test_arbitrary_text_raises_nothing_but_when_error(text: str) -> None:
    _parses_or_says_why(text)


@given(st.lists(st.sampled_from(WHEN_TOKENS), max_size=600).map("".join))
def test_token_soup_raises_nothing_but_when_error(text: str) -> None:
    _parses_or_says_why(text)


@given(st.integers(min_value=0, max_value=600), st.sampled_from(["not ", "(", "not ("]))
def test_any_nesting_depth_is_a_when_error_or_parses(depth: int, opener: str) -> None:
    closer = ")" * opener.count("(")
    _parses_or_says_why(opener * depth + "error_ratio > 0.5" + closer * depth)
