"""The README documents every rules.yaml key and every command; this keeps it honest."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mahnwerk.cli import main
from mahnwerk.rules import Rules

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _models(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for arg in typing.get_args(tp) for m in _models(arg)]


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        out.append(key)
        # A map keyed by id (overrides.customers) is documented as `<key>.<id>.<sub key>`.
        keyed = typing.get_origin(field.annotation) is dict
        for sub in _models(field.annotation):
            out.extend(_keys(sub, key + (".<id>." if keyed else ".")))
    return out


def test_every_rules_key_is_documented() -> None:
    keys = _keys(Rules)
    assert "policies.stages.deadline_days" in keys
    missing = [k for k in keys if f"`{k}`" not in README]
    assert missing == []


def test_every_command_is_documented() -> None:
    missing = [c for c in main.commands if f"mahnwerk {c}" not in README]
    assert missing == []
