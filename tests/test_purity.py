"""The functional core does no I/O and never reads the clock.

Checked on the source, so a stray `import os` or `datetime.now()` fails here
before it makes a decision untestable.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "daemon" / "mahnwerk"
CORE = [
    "planner.py",
    "calendar.py",
    "models.py",
    "plan_types.py",
    "ledger.py",
    "importer.py",
    "csvparse.py",
    "rules.py",
    "message.py",
    "outbox.py",
    "outcome.py",
    "inbound_types.py",
    "matching.py",
    "replies.py",
    "mailbox.py",
    "datephrases.py",
    "amounts.py",
    "inbound.py",
    "replytext.py",
    "classify.py",
    "invoicerefs.py",
]
FORBIDDEN_MODULES = {
    "os",
    "io",
    "sys",
    "pathlib",
    "socket",
    "subprocess",
    "shutil",
    "time",
    "random",
    "tempfile",
    "glob",
    "fcntl",
    "signal",
    "logging",
    "smtplib",
    "imaplib",
    "imapclient",
    "urllib",
    "http",
    "requests",
    "tinydb",
    "orjson",
    "json",
    "sqlite3",
    "threading",
    "asyncio",
    "secrets",
    "uuid",
    "mahnwerk.store",
    "mahnwerk.cli",
    "mahnwerk.config",
    "mahnwerk.settings",
    "rich",
    "click",
}
# Attribute calls that read the clock, whatever the object; and the builtin open().
FORBIDDEN_CALLS = {"now", "today", "utcnow", "utcfromtimestamp", "fromtimestamp", "open"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            if any(name == m or name.startswith(m + ".") for m in FORBIDDEN_MODULES):
                found.append(f"{path.name}:{node.lineno}: imports {name}")
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in FORBIDDEN_CALLS:
                found.append(f"{path.name}:{node.lineno}: calls {called}()")
    return found


@pytest.mark.parametrize("module", CORE)
def test_core_module_is_pure(module: str) -> None:
    assert _violations(PACKAGE / module) == []


def test_the_check_catches_a_clock_read(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom datetime import datetime\nx = datetime.now()\n")
    assert _violations(bad) == ["bad.py:1: imports os", "bad.py:3: calls now()"]
