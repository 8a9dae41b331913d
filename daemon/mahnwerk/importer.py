"""Turn a parsed invoice file into thread events: new, changed, and (open-items) settled.

Pure: the caller passes the current invoices and `now`, and commits the events
in one unit of work, so an import is all or nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from mahnwerk import ledger
from mahnwerk.models import Event, Invoice, invoice_to_json

# Compared as numbers: "0" and "0.00" are the same amount, not a change to record.
_MONEY = frozenset({"amount", "paid_amount"})


@dataclass
class ImportSummary:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    marked_paid: int = 0
    skipped: int = 0
    events: list[Event] = field(default_factory=list)


def import_events(
    existing: Mapping[str, Invoice],
    rows: Iterable[tuple[int, Invoice]],
    *,
    source: str,
    open_items: bool,
    now: datetime,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Events that bring the store in line with the file.

    With `open_items`, the file is the complete list of open items: an open
    invoice missing from it was settled, and is marked paid with that reason.
    """
    summary = ImportSummary()
    seen: set[str] = set()
    for line, inv in rows:
        seen.add(inv.number)
        new_wire = invoice_to_json(inv)
        old = existing.get(inv.number)
        where = f"{source} line {line}"
        if old is None:
            summary.new += 1
            summary.events.append(
                Event(
                    inv.number,
                    ledger.IMPORTED,
                    now,
                    f"imported from {where}",
                    {"invoice": new_wire, "source": source, "line": line},
                )
            )
        else:
            old_wire = invoice_to_json(old)
            changes = {
                k: [old_wire[k], v]
                for k, v in new_wire.items()
                if old_wire[k] != v and not (k in _MONEY and Decimal(old_wire[k]) == Decimal(v))
            }
            if not changes:
                summary.unchanged += 1
            else:
                summary.updated += 1
                summary.events.append(
                    Event(
                        inv.number,
                        ledger.UPDATED,
                        now,
                        f"updated from {where}: "
                        + ", ".join(f"{k} {a} → {b}" for k, (a, b) in changes.items()),
                        {"changes": changes, "source": source, "line": line},
                    )
                )
        if progress is not None:
            progress(1)
    if open_items:
        for number, inv in existing.items():
            if number not in seen and inv.status == "open":
                summary.marked_paid += 1
                summary.events.append(
                    Event(
                        number,
                        ledger.MARKED_PAID,
                        now,
                        f"not in the open-items list {source}: settled",
                        {"source": source},
                    )
                )
    return summary
