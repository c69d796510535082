"""Workload documents in, validated models out: YAML files from users, JSON from the store.

Problems are reported all at once, by wire field path and, for YAML, line and document.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from noderuntime.errors import FieldProblem, SpecError
from noderuntime.spec.messages import DOCUMENT_FIELD, format_path, validate, wire_path
from noderuntime.spec.models import Workload
from noderuntime.spec.values import Loc, describe
from noderuntime.spec.yamlindex import (
    MAX_NUMBER_CHARS,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    YAML_LOADER,
    Index,
    index_document,
    is_empty_document,
    line_for,
    syntax_problem,
)

# A check beyond the schema (fleet policy): (wire location, message) for each problem.
Check = Callable[[Workload], list[tuple[Loc, str]]]


def parse_workloads(
    text: str, source: str | None = None, *, check: Check | None = None
) -> list[Workload]:
    """Every workload in a YAML file of one or more documents, or SpecError naming all problems.

    All or nothing: one bad document fails the file. ``source`` (a file name) only labels
    the problems. ``check`` runs on each valid workload; its problems get lines too.
    """
    problems: list[FieldProblem] = []
    nodes: list[Node] = []
    try:
        nodes.extend(yaml.compose_all(text, Loader=YAML_LOADER))
    except yaml.YAMLError as exc:
        problems.append(syntax_problem(exc, text, document=len(nodes)))

    workloads: list[tuple[int, Workload, Index]] = []
    for index, node in enumerate(nodes):
        if is_empty_document(node):
            continue  # a stray or trailing `---`
        workload, node_index = _load_document(node, index, problems)
        if workload is not None and check is not None:
            lines = node_index.lines
            problems.extend(
                FieldProblem(format_path(list(loc)), message, line_for(loc, lines), index)
                for loc, message in check(workload)
            )
        if workload is not None:
            workloads.append((index, workload, node_index))

    if not problems and not workloads:
        problems.append(
            FieldProblem(
                DOCUMENT_FIELD,
                "no workload in the input; expected a document with apiVersion, kind, "
                "metadata and spec",
            )
        )

    first: dict[str, int] = {}
    for index, workload, node_index in workloads:
        name = workload.metadata.name
        if name in first:
            problems.append(
                FieldProblem(
                    "metadata.name",
                    f"workload {name!r} is already defined in document {first[name] + 1} "
                    "of this file; each name may appear once",
                    line_for(("metadata", "name"), node_index.lines),
                    index,
                )
            )
        else:
            first[name] = index

    if problems:
        problems.sort(key=lambda p: (p.document or 0, p.line or 0))
        raise SpecError(problems, source)
    return [w for _, w, _ in workloads]


def workload_from_dict(data: Mapping[str, Any]) -> Workload:
    """A workload from JSON-like data (the stored canonical form, the API); SpecError if invalid."""
    if not isinstance(data, Mapping):
        raise SpecError([FieldProblem(DOCUMENT_FIELD, f"expected a mapping, got {describe(data)}")])
    workload, found = validate(data)
    if workload is None:
        raise SpecError([FieldProblem(p.field, p.message) for p in found])
    return workload


def _load_document(
    node: Node, document: int, problems: list[FieldProblem]
) -> tuple[Workload | None, Index]:
    index = index_document(node)
    if index.too_large:
        problems.append(
            FieldProblem(
                DOCUMENT_FIELD,
                f"document is too large once aliases are expanded (more than {MAX_YAML_NODES} "
                f"values or {MAX_YAML_DEPTH} levels deep); is an alias used inside its anchor?",
                node.start_mark.line + 1,
                document,
            )
        )
        return None, index
    for path, line, chars in index.long_numbers:
        wire, _ = wire_path(path)
        problems.append(
            FieldProblem(
                format_path(wire),
                f"number is too long ({chars} characters, at most {MAX_NUMBER_CHARS}); "
                "no field takes a number this large",
                line,
                document,
            )
        )
    if index.long_numbers:
        return None, index
    for path, line, first_line in index.duplicates:
        wire, _ = wire_path(path)
        problems.append(
            FieldProblem(
                format_path(wire),
                f"duplicate key {path[-1]!r} (first at line {first_line}); "
                "YAML would silently keep only the last one, so remove one of them",
                line,
                document,
            )
        )
    if not isinstance(node, MappingNode):
        problems.append(
            FieldProblem(
                DOCUMENT_FIELD,
                "expected a mapping with apiVersion, kind, metadata and spec, got "
                + ("a list" if isinstance(node, SequenceNode) else repr(node.value)),
                node.start_mark.line + 1,
                document,
            )
        )
        return None, index
    try:
        data = yaml.constructor.SafeConstructor().construct_document(node)
    except yaml.YAMLError as exc:
        problems.append(syntax_problem(exc, "", document))
        return None, index
    workload, found = validate(data, index.raw)
    problems.extend(
        FieldProblem(f.field, f.message, line_for(f.loc, index.lines), document) for f in found
    )
    return (None if index.duplicates else workload), index
