"""YAML for workload files: libyaml parsing, a line index, duplicate keys, text positions.

The node tree (not the loaded data) knows lines, duplicate keys and what the user typed, so one
walk over it records all three before the data is validated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from noderuntime.errors import FieldProblem
from noderuntime.spec.messages import SYNTAX_FIELD
from noderuntime.spec.values import Loc

# A few nested aliases expand to billions of nodes, and an alias inside its own anchor nests
# forever; refuse such documents before anything walks them.
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 32
# No field takes a number this long, and the YAML loader's int() raises a bare ValueError beyond
# 4300 digits: such numbers are refused at their line before the document is loaded.
MAX_NUMBER_CHARS = 100

# libyaml's parser is ~10x faster than PyYAML's pure-Python one (YAML parsing was most of an
# apply's cost); both produce the same nodes with the same marks.
YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})

# Where a YAML number is read as the text the user typed ("*" any key, "#" any index):
# `VERSION: 1.10` stays "1.10", and an unquoted port like `22:22`, which YAML 1.1 reads
# as the base-60 number 1342, stays "22:22".
_TEXT_POSITIONS: tuple[tuple[str, ...], ...] = (
    ("metadata", "name"),
    ("metadata", "labels", "*"),
    ("spec", "command", "#"),
    ("spec", "args", "#"),
    ("spec", "env", "*"),
    ("spec", "ports", "#"),
    ("spec", "nodeSelector", "*"),
    ("spec", "user"),
    ("spec", "healthCheck", "exec", "command", "#"),
)
_PYTHON_TO_WIRE = {"node_selector": "nodeSelector", "health_check": "healthCheck"}


def _is_text_position(path: Loc) -> bool:
    for pattern in _TEXT_POSITIONS:
        if len(pattern) == len(path) and all(
            (p == "#" and isinstance(e, int))
            or (p == "*" and isinstance(e, str))
            or p == _PYTHON_TO_WIRE.get(str(e), e)
            for p, e in zip(pattern, path, strict=True)
        ):
            return True
    return False


def is_empty_document(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL_TAG


@dataclasses.dataclass
class Index:
    """What the node tree says about one document, keyed by path as the YAML spells it."""

    lines: dict[Loc, int] = dataclasses.field(default_factory=dict)
    raw: dict[Loc, str] = dataclasses.field(default_factory=dict)
    duplicates: list[tuple[Loc, int, int]] = dataclasses.field(default_factory=list)
    long_numbers: list[tuple[Loc, int, int]] = dataclasses.field(
        default_factory=list
    )  # loc, line, chars
    too_large: bool = False


def _mapping_entries(node: MappingNode, depth: int = 0) -> list[tuple[Node, Node, bool]]:
    """(key, value, explicit) pairs, with `<<: *anchor` merges flattened in after."""
    explicit = [(k, v, True) for k, v in node.value if k.tag != _MERGE_TAG]
    merged: list[tuple[Node, Node, bool]] = []
    if depth < 16:
        for key, value in node.value:
            if key.tag != _MERGE_TAG:
                continue
            sources = value.value if isinstance(value, SequenceNode) else [value]
            for source in sources:
                if isinstance(source, MappingNode):
                    merged += [(k, v, False) for k, v, _ in _mapping_entries(source, depth + 1)]
    return explicit + merged


def index_document(root: Node) -> Index:
    index = Index()
    index.lines[()] = root.start_mark.line + 1
    checked: set[int] = set()  # mappings reached again through an alias are checked once
    stack: list[tuple[Node, Loc]] = [(root, ())]
    visited = 0
    while stack:
        node, path = stack.pop()
        visited += 1
        if visited > MAX_YAML_NODES or len(path) > MAX_YAML_DEPTH:
            index.too_large = True
            return index
        if isinstance(node, MappingNode):
            check = id(node) not in checked
            checked.add(id(node))
            seen: dict[tuple[str, str], int] = {}
            for key, value, explicit in _mapping_entries(node):
                if not isinstance(key, ScalarNode):
                    continue  # complex keys: the constructor or validation reports them
                key_path = (*path, key.value)
                line = key.start_mark.line + 1
                _check_number_length(key, key_path, index)
                if explicit:
                    ident = (key.tag, key.value)
                    if check and ident in seen:
                        index.duplicates.append((key_path, line, seen[ident]))
                    seen[ident] = line
                    index.lines[key_path] = line  # the last one wins, as in the loaded data
                else:
                    index.lines.setdefault(key_path, line)
                stack.append((value, key_path))
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                index.lines[(*path, i)] = item.start_mark.line + 1
                stack.append((item, (*path, i)))
        elif isinstance(node, ScalarNode):
            index.raw[path] = node.value
            if node.tag in _NUMBER_TAGS and _is_text_position(path):
                node.tag = _STR_TAG
            _check_number_length(node, path, index)
    return index


def _check_number_length(node: ScalarNode, path: Loc, index: Index) -> None:
    if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
        index.long_numbers.append((path, node.start_mark.line + 1, len(node.value)))


def line_for(loc: Loc, lines: Mapping[Loc, int]) -> int | None:
    """The line of ``loc``, or of its nearest ancestor present in the file."""
    for end in range(len(loc), -1, -1):
        line = lines.get(loc[:end])
        if line is not None:
            return line
    return None


def syntax_problem(exc: yaml.YAMLError, text: str, document: int) -> FieldProblem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem and exc.context_mark is not None:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        if "'\\t'" in message:
            message += "; indent with spaces, YAML does not allow tabs"
        elif "could not determine a constructor" in message:
            message += "; YAML tags are not supported here"
        elif "mapping values are not allowed" in message:
            message += "; quote values that contain ': ', or check the indentation"
        return FieldProblem(
            SYNTAX_FIELD, message, mark.line + 1 if mark is not None else None, document
        )
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return FieldProblem(
            SYNTAX_FIELD, f"unacceptable character #x{char:04x}: {exc.reason}", line, document
        )
    return FieldProblem(SYNTAX_FIELD, str(exc), None, document)
