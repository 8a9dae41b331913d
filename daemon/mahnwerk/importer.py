"""Turn a parsed invoice file into thread events: new, changed, and (open-items) settled.

Pure: the caller passes the current invoices and `now`, and commits the events
in one unit of work, so an import is all or nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from mahnwerk import ledger
from mahnwerk.models import Event, Invoice, invoice_to_json

# An open-items list that would settle more than this share of the open invoices at
# once is more likely a truncated export than a payment run: it needs `force`.
OPEN_ITEMS_SHARE = 0.5


class ImportRefused(ValueError):
    """The file would do something an operator must confirm; nothing is to be written."""


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
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Events that bring the store in line with the file.

    With `open_items`, the file is the complete list of open items: an open
    invoice missing from it was settled, and is marked paid with that reason.
    An empty list, or one settling more than OPEN_ITEMS_SHARE of the open
    invoices (unless `force`), raises ImportRefused: a truncated export must not
    silently stop every reminder.
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
            # Compared as values, not wire strings: 0 and 0.00 are the same amount.
            old_wire = invoice_to_json(old)
            changes = {
                k: [old_wire[k], new_wire[k]]
                for k, a, b in zip(Invoice._fields, old, inv, strict=True)
                if a != b
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
        _check_open_items(len(seen), summary.marked_paid, existing, force)
    return summary


def _check_open_items(
    listed: int, marked_paid: int, existing: Mapping[str, Invoice], force: bool
) -> None:
    still_open = sum(1 for inv in existing.values() if inv.status == "open")
    if listed == 0 and still_open:
        raise ImportRefused(
            "--open-items: the file lists no invoice, which would mark every open invoice paid"
        )
    if not force and still_open and marked_paid > OPEN_ITEMS_SHARE * still_open:
        raise ImportRefused(
            f"--open-items would mark {marked_paid} of {still_open} open invoices paid "
            f"(more than {OPEN_ITEMS_SHARE:.0%}): is the export complete? "
            "Use --force if it is right"
        )
