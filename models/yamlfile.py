"""YAML files a marketer edits, read with the line of every value, so a validation error names file, line and field.

``load_with_lines(path)`` returns the data and a map from each value's path (``("variants", 0, "weight")``) to its
1-based line. ``where(lines, loc)`` finds the line of a pydantic error location (the deepest path that has one).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

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
    return yaml.safe_load(text), lines


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
