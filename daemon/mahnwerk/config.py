"""Read rules.yaml and report every problem as file:line:column with a hint.

PyYAML's node tree keeps the position of every key and value; pydantic reports
errors by path. This module joins the two, so that a user sees where to look.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mahnwerk.rules import LocatedError, Rules

Loc = tuple[int | str, ...]


@dataclass(frozen=True)
class ConfigError:
    file: str
    line: int
    column: int
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.message}"
        return text + (f"\n    hint: {self.hint}" if self.hint else "")


class ConfigInvalid(Exception):
    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class LoadedRules:
    rules: Rules
    path: Path
    root: yaml.Node | None

    @property
    def templates_dir(self) -> Path:
        return (self.path.parent / self.rules.templates_dir).resolve()

    def error(self, loc: Loc, message: str, hint: str | None = None) -> ConfigError:
        line, col = locate(self.root, loc)
        return ConfigError(str(self.path), line, col, message, hint)


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *shared`: merged keys may be overridden, that is its point
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            first = seen[key].start_mark
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {first.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_rules(path: Path) -> LoadedRules:
    """Parse and validate; raises ConfigInvalid with every error found."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigInvalid(
            [
                ConfigError(
                    name, 1, 1, "file not found", "'mahnwerk init DIR' writes one; or pass --config"
                )
            ]
        ) from None
    except UnicodeDecodeError as exc:
        line = text_line_of_offset(path.read_bytes(), exc.start)
        raise ConfigInvalid([ConfigError(name, line, 1, "not valid UTF-8")]) from None
    return parse_rules(text, path)


def text_line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def parse_rules(text: str, path: Path) -> LoadedRules:
    name = str(path)
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "invalid YAML"
        hint = (
            "check indentation and quoting" if "expected" in problem or "found" in problem else None
        )
        raise ConfigInvalid([ConfigError(name, line, col, f"YAML: {problem}", hint)]) from None
    if not isinstance(data, dict):
        raise ConfigInvalid([ConfigError(name, 1, 1, "rules.yaml must be a mapping of sections")])
    try:
        rules = Rules.model_validate(data)
    except ValidationError as exc:
        raise ConfigInvalid(_errors(exc, root, name)) from None
    return LoadedRules(rules, path, root)


def _errors(exc: ValidationError, root: yaml.Node | None, name: str) -> list[ConfigError]:
    out = []
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(err["loc"])
        kind = err["type"]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, LocatedError):
            loc = loc + cause.where
        where = _dotted(loc)
        hint = None
        if kind == "extra_forbidden":
            key = str(loc[-1])
            message = f"unknown key {key!r}" + (f" in {_dotted(loc[:-1])}" if loc[:-1] else "")
            allowed = _allowed_keys(Rules, loc[:-1])
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            if "password" in key or "secret" in key:
                hint = "secrets never live in rules.yaml: name an environment variable instead"
            elif close:
                hint = f"did you mean {close[0]!r}?"
            elif allowed:
                hint = "allowed here: " + ", ".join(allowed)
        elif kind == "missing":
            message = f"{where}: required key is missing"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            message = f"{where}: {msg}" if where else msg
            if kind.startswith(("decimal", "float", "int", "bool")):
                hint = f"got {err.get('input')!r}"
            if loc and loc[-1] == "[key]" and not isinstance(err.get("input"), str):
                hint = f"quote the id, e.g. '{err.get('input')}': YAML reads it as a number"
        line, col = locate(root, loc, at_key=kind == "extra_forbidden")
        out.append(ConfigError(name, line, col, message, hint))
    return out


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def locate(root: yaml.Node | None, loc: Loc, *, at_key: bool = False) -> tuple[int, int]:
    """Line and column (1-based) of the deepest node on the path that exists.

    A bad value is shown at the value; with `at_key` (an unknown key), at the key.
    """
    node = root
    best = (1, 1)
    if node is None:
        return best
    best = (node.start_mark.line + 1, node.start_mark.column + 1)
    for i, part in enumerate(loc):
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    # pydantic's "[key]" after a part means the key itself is at fault.
                    key_at_fault = loc[i + 1 : i + 2] == ("[key]",)
                    if key_at_fault or (at_key and i == len(loc) - 1):
                        return (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                    nxt = value_node
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            nxt = node.value[part]
        if nxt is None:
            return best
        node = nxt
        best = (node.start_mark.line + 1, node.start_mark.column + 1)
    return best


def _allowed_keys(model: type[BaseModel], loc: Loc) -> list[str]:
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int):
            args = typing.get_args(tp)
            tp = args[0] if args else None
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            field = next((f for n, f in tp.model_fields.items() if part in (n, f.alias)), None)
            tp = field.annotation if field else None
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or n for n, f in tp.model_fields.items()]
    return []


def _unwrap(tp: Any) -> Any:
    """Optional[X] -> X, Annotated[X, ...] -> X."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else tp
            if len(args) != 1:
                return tp
        else:
            return tp
