"""Validation problems as users read them: pydantic errors -> wire field path and message.

Lines are added by the caller (:mod:`noderuntime.spec.parse`), which knows the YAML tree.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

from noderuntime.spec.models import Workload, WorkloadSpec
from noderuntime.spec.values import API_VERSION, KIND, Loc, describe

# Pseudo field names for problems that belong to no single field.
SYNTAX_FIELD = "(syntax)"
DOCUMENT_FIELD = "(document)"

_PATH_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*\Z")


@dataclasses.dataclass(frozen=True)
class Found:
    """One problem before it is placed in a file: the raw location and what to say."""

    loc: Loc  # as the input spelled it (for finding the line)
    field: str  # dotted wire path shown to the user
    message: str


def validate(
    data: Mapping[str, Any], raw: Mapping[Loc, str] | None = None
) -> tuple[Workload | None, list[Found]]:
    found: list[Found] = []
    # Required in documents (not in Python) so a future v2 can never misread a v1 file.
    for key, python_name, example in (
        ("apiVersion", "api_version", API_VERSION),
        ("kind", "kind", KIND),
    ):
        if key not in data and python_name not in data:
            found.append(
                Found((key,), key, f"missing required field {key!r}; add {key}: {example}")
            )
    try:
        workload = Workload.model_validate(data)
    except ValidationError as exc:
        found.extend(_from_validation_error(exc, raw or {}))
        return None, found
    return (None if found else workload), found


def _from_validation_error(exc: ValidationError, raw: Mapping[Loc, str]) -> list[Found]:
    out = []
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(error["loc"])
        is_key = bool(loc) and loc[-1] == "[key]"
        if is_key:
            loc = loc[:-1]
        wire, parent = wire_path(loc)
        message = _message(error, loc, wire, parent, raw)
        if is_key and not error["type"].startswith(("label", "env")):
            message = f"invalid key: {message}"
        out.append(Found(loc, format_path(wire), message))
    return out


def _unwrap(annotation: Any) -> Any:
    """The model, list or dict type under Annotated[...] and Optional[...]."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def wire_path(loc: Loc) -> tuple[list[str | int], type[BaseModel] | None]:
    """``loc`` with wire (alias) names, and the model holding its last element (if any)."""
    wire: list[str | int] = []
    current: Any = Workload
    parent: type[BaseModel] | None = None
    for element in loc:
        current = _unwrap(current)
        parent = None
        if isinstance(current, type) and issubclass(current, BaseModel):
            parent = current
            for name, info in current.model_fields.items():
                if element in (name, info.alias):
                    wire.append(info.alias or name)
                    current = info.annotation
                    break
            else:
                wire.append(element)
                current = None
        elif typing.get_origin(current) is list:
            wire.append(element)
            current = typing.get_args(current)[0]
        elif typing.get_origin(current) is dict:
            wire.append(element)
            current = typing.get_args(current)[1]
        else:
            wire.append(element)
            current = None
    return wire, parent


def format_path(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PATH_IDENT_RE.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _wire_fields(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _unknown_field_message(name: str, model: type[BaseModel] | None) -> str:
    message = f"unknown field {name!r}"
    if model is None:
        return message
    allowed = _wire_fields(model)
    by_lower = {a.lower(): a for a in allowed}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    if close:
        message += f" (did you mean {by_lower[close[0]]!r}?)"
    elif model is Workload and name in _wire_fields(WorkloadSpec):
        message += " (it belongs under spec)"
    return f"{message}; allowed fields: {', '.join(allowed)}"


def _message(
    error: Mapping[str, Any],
    loc: Loc,
    wire: list[str | int],
    parent: type[BaseModel] | None,
    raw: Mapping[Loc, str],
) -> str:
    kind: str = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    got = describe(value)
    last = str(wire[-1]) if wire else ""
    if kind == "missing":
        return f"missing required field {last!r}"
    if kind == "extra_forbidden":
        return _unknown_field_message(str(loc[-1]), parent)
    if kind == "text_boolean":
        word = raw.get(loc, ctx.get("word", "true"))
        return f'{word} is read as a boolean, not text; quote it: "{word}"'
    if kind == "string_type":
        return f"expected text, got {got}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {got}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {got}"
    if kind == "finite_number":
        return "must be a finite number"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {got}"
    if kind == "list_type":
        return f"expected a list, got {got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping of key: value pairs, got {got}"
    if kind in ("enum", "literal_error"):
        return f"must be {ctx.get('expected', 'one of the allowed values')}, got {got}"
    if kind == "greater_than_equal":
        return f"must be at least {_number(ctx['ge'])}, got {got}"
    if kind == "greater_than":
        return f"must be greater than {_number(ctx['gt'])}, got {got}"
    if kind == "less_than_equal":
        return f"must be at most {_number(ctx['le'])}, got {got}"
    if kind == "less_than":
        return f"must be less than {_number(ctx['lt'])}, got {got}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return str(error["msg"])


def _number(bound: Any) -> Any:
    # pydantic reports a float field's bound as a float: "at most 1024", not "1024.0".
    return int(bound) if isinstance(bound, float) and bound.is_integer() else bound
