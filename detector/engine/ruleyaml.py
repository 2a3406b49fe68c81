"""Reading a rule file's YAML safely: bounded size, no aliases, one-line error texts."""

from __future__ import annotations

from pathlib import Path

import yaml

TAG = "tag:yaml.org,2002:"
# A rule file is a few kilobytes; the cap keeps a mistaken path (a log, a dump) from costing
# seconds of parsing on a reload.
MAX_BYTES = 1 << 20
_KINDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean"}
_KINDS |= {"null": "null", "timestamp": "a date"}


class YamlProblem(Exception):
    """(line or None, one line of text) about a file that is not acceptable YAML."""

    def __init__(self, line: int | None, what: str) -> None:
        super().__init__(line, what)
        self.line, self.what = line, what


def compose(file: str) -> yaml.Node | None:
    """The node tree of `file`; raises YamlProblem (or OSError / UnicodeDecodeError)."""
    path = Path(file)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise YamlProblem(None, f"too large: {size} bytes (at most {MAX_BYTES})")
    text = path.read_text(encoding="utf-8")
    try:
        # Aliases are refused outright: rule files don't need them, and a node shared a
        # billion times over ("billion laughs") would make every walk of the tree explode.
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1 if event.start_mark else None
                raise YamlProblem(line, "YAML aliases (*name) are not supported in rule files")
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        line, what = _yaml_problem(error)
        raise YamlProblem(line, f"invalid YAML: {what}") from None


def _yaml_problem(error: yaml.YAMLError) -> tuple[int | None, str]:
    """PyYAML's multi-line report as (line, one line of text)."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return None, _one_line(str(error))
    mark = error.problem_mark or error.context_mark
    what = _one_line(error.problem or error.context or "unreadable")
    context, started = error.context, error.context_mark
    if context and started and error.problem:  # "while parsing X" reads best as a suffix
        if context.startswith("while"):
            what = f"{what} ({context} started at line {started.line + 1})"
        else:
            what = f"{context} {what}"
    return (None if mark is None else mark.line + 1), what


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == TAG + "null"


def kind_of(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if not node.tag.startswith(TAG):
        return f"a value tagged {node.tag}"
    kind = node.tag.removeprefix(TAG)
    return f"{_KINDS.get(kind, kind)} ({node.value})" if node.value else _KINDS.get(kind, kind)


def _one_line(text: str) -> str:
    return " ".join(text.split())
