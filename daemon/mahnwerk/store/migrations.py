"""Named, ordered migrations of the snapshot format.

A store records its schema version and the names of the migrations applied; a
new mahnwerk upgrades an old store on first open, and an old mahnwerk refuses a
store written by a newer one instead of damaging it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Snapshot = dict[str, Any]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Snapshot], Snapshot]


def _initial(snapshot: Snapshot) -> Snapshot:
    return {
        "_meta": {"1": {"schema": 1, "journal_pos": 0, "seq": 0, "migrations": []}},
        "invoices": {},
    }


def _outbox(snapshot: Snapshot) -> Snapshot:
    # Invoice records gain "pending" lazily (ledger.history_of reads it with .get).
    return {**snapshot, "outbox": snapshot.get("outbox") or {}, "addresses": {}}


def _mailbox(snapshot: Snapshot) -> Snapshot:
    return {**snapshot, "mailbox": snapshot.get("mailbox") or {}, "cursors": {}}


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "0001_initial", _initial),
    Migration(2, "0002_outbox", _outbox),
    Migration(3, "0003_mailbox", _mailbox),
)


class SchemaTooNew(Exception):
    pass


def meta(snapshot: Snapshot) -> dict[str, Any]:
    table = snapshot.get("_meta") or {}
    doc = table.get("1")
    return doc if isinstance(doc, dict) else {}


def version_of(snapshot: Snapshot | None) -> int:
    return 0 if not snapshot else int(meta(snapshot).get("schema", 0))


def latest(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    return max(m.version for m in migrations)


def migrate(
    snapshot: Snapshot | None, migrations: Sequence[Migration] = MIGRATIONS
) -> tuple[Snapshot, list[str]]:
    """Bring a snapshot (None for a new store) to the latest version; returns the names applied."""
    current = version_of(snapshot)
    target = latest(migrations)
    if current > target:
        raise SchemaTooNew(
            f"the store has schema version {current}, this mahnwerk knows up to {target}: "
            "upgrade mahnwerk before using this state directory"
        )
    data: Snapshot = snapshot or {}
    applied = []
    for m in sorted(migrations, key=lambda m: m.version):
        if m.version <= current:
            continue
        data = m.apply(data)
        doc = meta(data)
        doc["schema"] = m.version
        doc["migrations"] = [*doc.get("migrations", []), m.name]
        applied.append(m.name)
    return data, applied
