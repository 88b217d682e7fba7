"""The one YAML loader and the one validation-error formatter of every matloop config file.

:func:`load_config_file` reads YAML with the safe loader and validates it as a pydantic model
(``extra="forbid"`` everywhere); every problem becomes one :class:`~matloop.errors.ConfigError`
line that names the file, the key as written in YAML and, for an unknown key, the valid ones.
"""

from __future__ import annotations

import os
import types
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from matloop.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping: YAML would keep the last
    silently, so a setting typed twice (the second meant for another section) would win."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} given twice in one mapping (lines {seen[key]} and {line}); "
                    "keep one",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | os.PathLike, what: str = "config file") -> Any:
    """Read a YAML file (safe loader only) with one-line errors for every way it can be bad."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} not found: {path}")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory, expected a YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text (UTF-8) YAML file ({exc.reason})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML{_yaml_problem(exc, text)}") from None


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """': <problem> (<context>)' with the 1-based line and column of the problem and the line
    as written, where the parser knows them (a MarkedYAMLError); otherwise its first line."""
    problem = getattr(exc, "problem", None)
    if not problem:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f": {first}"
    context = getattr(exc, "context", None)
    mark = getattr(exc, "problem_mark", None)
    start = getattr(exc, "context_mark", None)
    if context and start is not None and mark is not None and start.line != mark.line:
        context += f" that starts at line {start.line + 1}"  # e.g. an unclosed bracket
    what = f"{problem} ({context})" if context else problem
    if mark is None:
        return f": {what}"
    lines = text.splitlines()
    shown = lines[mark.line].strip() if 0 <= mark.line < len(lines) else ""
    if len(shown) > 60:
        shown = shown[:57] + "..."
    where = f" at line {mark.line + 1}, column {mark.column + 1}"
    return f"{where}: {what}" + (f": {shown!r}" if shown else "")


def parse_config(data: Any, root: type[M], source: str, expected: str = "a mapping") -> M:
    """Validate `data` as `root`, turning pydantic errors into one clear ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected {expected} at the top level")
    try:
        return root.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, root, source)) from None
    except ConfigError as exc:  # raised by a validator that checks more than one field
        raise ConfigError(f"{source}: {exc}") from None


def load_config_file(path: str | os.PathLike, root: type[M], expected: str = "a mapping") -> M:
    """Read YAML file `path` and validate it as `root` (one ConfigError line if anything is bad)."""
    return parse_config(load_yaml(path), root, str(path), expected)


def format_validation_error(exc: ValidationError, root: type[BaseModel] | None, source: str) -> str:
    """One line for all problems; unknown keys list the valid ones (when `root` is known)."""
    parts = []
    for err in exc.errors():
        where, valid = _locate(root, tuple(err.get("loc", ())))
        if err.get("type") == "extra_forbidden":
            hint = f" (valid keys here: {', '.join(valid)})" if valid else ""
            parts.append(f"unknown key '{where}'{hint}")
        else:
            message = str(err.get("msg", "")).removeprefix("Value error, ")
            parts.append(f"{where}: {message}")
    return f"{source}: " + "; ".join(parts)


def _locate(root: type[BaseModel], loc: tuple) -> tuple[str, list[str]]:
    """The dotted path of `loc` as written in YAML, and the keys valid where it ends.

    pydantic adds the tag of a discriminated union (e.g. the model family) and the member of a
    plain union to the location; neither is a key the user wrote, so both are left out.
    """
    current: Any = root
    shown = []
    parent: Any = root
    for i, part in enumerate(loc):
        current, written = _step(current, part)
        if written:
            shown.append(str(part))
        if i < len(loc) - 1:
            parent = current
    return ".".join(shown) or "<root>", sorted(getattr(_unwrap(parent), "model_fields", {}))


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _members(tp: Any) -> tuple:
    return get_args(tp) if get_origin(tp) in (Union, types.UnionType) else ()


def _step(tp: Any, part: Any) -> tuple[Any, bool]:
    """The type at `part` below `tp`, and whether `part` is a key written in the YAML."""
    tp = _unwrap(tp)
    for member in _members(tp):
        if _is_tag(member, part):
            return member, False
    models = [m for m in _members(tp) if hasattr(m, "model_fields")]
    if len(models) == 1:  # Optional[Model], Model | list[...]
        tp = models[0]
    field = getattr(tp, "model_fields", {}).get(part)
    if field is not None:
        return field.annotation, True
    args = get_args(tp)
    return (args[-1] if args else None), True  # list items, dict values


def _is_tag(member: Any, part: Any) -> bool:
    """`part` names union member `member`: its class name, or its single-value Literal tag."""
    if part in (getattr(member, "__name__", None), str(member)):
        return True
    for field in getattr(member, "model_fields", {}).values():
        if get_origin(field.annotation) is Literal and get_args(field.annotation) == (part,):
            return True
    return False
