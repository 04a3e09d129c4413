"""YAML files a marketer edits, read with the line of every value, so a validation error names file, line and field.

``load_with_lines(path)`` returns the data and a map from each value's path (``("variants", 0, "weight")``) to its
1-based line. ``where(lines, loc)`` finds the line of a pydantic error location (the deepest path that has one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from models.errors import InputError

Path_ = tuple[str | int, ...]


class YamlFileError(InputError):
    """A YAML file cannot be read or says something invalid; the message names file, line and field."""


def load_with_lines(path: Path) -> tuple[Any, dict[Path_, int]]:
    """The file's data and the line of every mapping key and sequence item; ``YamlFileError`` when it is not YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlFileError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlFileError(f"{path}{line}: not valid YAML ({problem}); check the indentation and quoting") from exc
    if node is None:
        return None, {}
    lines: dict[Path_, int] = {}
    _walk(node, (), lines)
    try:
        return yaml.safe_load(text), lines
    except ValueError as exc:  # YAML reads 2026-02-30 as a date and fails without a line
        raise YamlFileError(_bad_date(path, text, exc)) from None


def _bad_date(path: Path, text: str, exc: ValueError) -> str:
    for number, line in enumerate(text.splitlines(), start=1):
        for found in re.findall(r"\b\d{4}-\d\d-\d\d\b", line.split("#")[0]):
            try:
                date.fromisoformat(found)
            except ValueError:
                return f"{path}, line {number}: {found} is not a date ({exc}); write YYYY-MM-DD"
    return f"{path}: a date cannot be read ({exc}); write YYYY-MM-DD"


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, key.value)
            lines[child] = key.start_mark.line + 1
            _walk(value, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines)


def where(lines: dict[Path_, int], loc: Sequence[str | int]) -> int | None:
    """The line of the deepest prefix of ``loc`` the file has (a missing field: the line of its parent)."""
    for end in range(len(loc), -1, -1):
        found = lines.get(tuple(loc[:end]))
        if found is not None:
            return found
    return None


def field_name(loc: Sequence[str | int]) -> str:
    """``variants[0].weight`` for ``("variants", 0, "weight")``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def validation_problem(path: Path, lines: dict[Path_, int], exc: ValidationError, root: type[BaseModel]) -> str:
    """One line for the first problem pydantic found in a file validated as ``root``: file, line, field, and what to
    do (an unknown field lists the fields allowed there, since a typo is what usually explains a "missing" one)."""
    errors = exc.errors(include_url=False)
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [part for part in error["loc"] if not (isinstance(part, str) and part.startswith("function-"))]
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = f"unknown field {loc[-1]!r}; fields here: {', '.join(fields_at(root, loc))}"
    elif error["type"] == "missing":
        message = f"{loc[-1]!r} is missing; add it"
    return located(path, lines, loc, message)


def located(path: Path, lines: dict[Path_, int], loc: Sequence[str | int], message: str) -> str:
    """``FILE, line N, field a.b[0]: message``."""
    return f"{path}, line {where(lines, loc)}, field {field_name(loc)}: {message}"


def fields_at(root: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The field names (as written in the file: aliases such as ``from``) of the model holding ``loc[-1]``."""
    annotation: Any = root
    for part in loc[:-1]:
        model = _model_in(annotation)
        if isinstance(part, str) and model is not None:
            fields = {info.alias or name: info for name, info in model.model_fields.items()}
            if part in fields:
                annotation = fields[part].annotation
    model = _model_in(annotation)
    return [info.alias or name for name, info in model.model_fields.items()] if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (itself, or inside Optional / list / dict)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None
