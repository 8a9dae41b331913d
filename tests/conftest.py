from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(autouse=True)
def _no_systemd_state_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's shell or CI may export it; tests choose their own state dirs.
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)


@pytest.fixture
def repo_root() -> Path:
    return ROOT


def pytest_report_header() -> str:
    return f"mahnwerk tests, shared corpus: {'present' if SHARED.is_dir() else 'absent'}"


os.environ.setdefault("COLUMNS", "200")
