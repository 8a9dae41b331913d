"""Fold thread events into the per-invoice record the store keeps and the planner reads.

The journal of events is the truth; the record is a cache of its fold. Keeping
the fold pure and in one table of effects means recovery after a crash is just
"replay the events the snapshot has not seen", and the thread explains every
field of the record.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from mahnwerk.models import (
    EMPTY_HISTORY,
    Event,
    History,
    Hold,
    Invoice,
    Pending,
    invoice_from_json,
)

Record = dict[str, Any]
# Event types the shell writes; the ones not in EFFECTS only document.
IMPORTED = "imported"
UPDATED = "updated"
MARKED_PAID = "marked_paid"
REMINDER_SENT = "reminder_sent"
ESCALATED = "escalated"
PAUSED = "paused"
RESUMED = "resumed"
STOPPED = "stopped"
STOP_LIFTED = "stop_lifted"
NOTE = "note"
# The outbox's steps, mirrored on every invoice the mail lists (outbox.py has the entry's own).
REMINDER_QUEUED = "reminder_queued"
DELIVERY_DEFERRED = "delivery_deferred"
DELIVERY_UNKNOWN = "delivery_unknown"
DELIVERY_FAILED = "delivery_failed"
REMINDER_CANCELLED = "reminder_cancelled"
# A customer's reply attached to the invoice (the record's only change: the thread).
REPLY_RECEIVED = "reply_received"
# A person settled a reply from the review queue (`mahnwerk resolve`).
REPLY_RESOLVED = "reply_resolved"


def new_record(invoice_wire: dict[str, Any]) -> Record:
    return {
        "invoice": dict(invoice_wire),
        "sent": [],
        "hold": None,
        "stop": None,
        "pending": None,
        "thread": [],
    }


def _imported(record: Record | None, event: Event) -> Record:
    wire = event.data["invoice"]
    if record is None:
        return new_record(wire)
    # Re-imported after a purge or a manual edit: the data is new, the history stays.
    return {**record, "invoice": dict(wire)}


def _updated(record: Record | None, event: Event) -> Record | None:
    if record is None:
        return None
    changes: dict[str, list[Any]] = event.data["changes"]
    invoice = dict(record["invoice"])
    for field, (_old, new) in changes.items():
        invoice[field] = new
    return {**record, "invoice": invoice}


def _marked_paid(record: Record | None, event: Event) -> Record | None:
    if record is None:
        return None
    return {**record, "invoice": {**record["invoice"], "status": "paid"}}


def _sent(action: str) -> Callable[[Record | None, Event], Record | None]:
    def effect(record: Record | None, event: Event) -> Record | None:
        if record is None:
            return None
        entry = [event.data["stage"], event.at.isoformat(), event.data["mail_key"], action]
        return {**record, "sent": [*record["sent"], entry], "pending": None}

    return effect


def _pending(state: str | None) -> Callable[[Record | None, Event], Record | None]:
    def effect(record: Record | None, event: Event) -> Record | None:
        if record is None:
            return None
        pending = None if state is None else [event.data["stage"], event.data["mail_key"], state]
        return {**record, "pending": pending}

    return effect


def _paused(record: Record | None, event: Event) -> Record | None:
    if record is None:
        return None
    hold = {"reason": event.reason, "until": event.data.get("until"), "since": event.at.isoformat()}
    # What paused it (promise, paid, auto_reply, a person) and the promised day, for the
    # follow-up on a broken promise.
    for name in ("kind", "promised"):
        if event.data.get(name):
            hold[name] = event.data[name]
    return {**record, "hold": hold}


def _field(name: str, value: Callable[[Event], Any]) -> Callable[[Record | None, Event], Any]:
    def effect(record: Record | None, event: Event) -> Record | None:
        return None if record is None else {**record, name: value(event)}

    return effect


EFFECTS: dict[str, Callable[[Record | None, Event], Record | None]] = {
    IMPORTED: _imported,
    UPDATED: _updated,
    MARKED_PAID: _marked_paid,
    REMINDER_SENT: _sent("email"),
    ESCALATED: _sent("escalate"),
    PAUSED: _paused,
    RESUMED: _field("hold", lambda e: None),
    STOPPED: _field("stop", lambda e: e.reason),
    STOP_LIFTED: _field("stop", lambda e: None),
    REMINDER_QUEUED: _pending("queued"),
    DELIVERY_DEFERRED: _pending("retry"),
    DELIVERY_UNKNOWN: _pending("unknown"),
    DELIVERY_FAILED: _pending("failed"),
    REMINDER_CANCELLED: _pending(None),
}


def apply(record: Record | None, event: Event) -> Record | None:
    """The record after `event`; None while the invoice is unknown."""
    effect = EFFECTS.get(event.type)
    return record if effect is None else effect(record, event)


def invoice_of(record: Record) -> Invoice:
    return invoice_from_json(record["invoice"])


def history_of(record: Record) -> History:
    sent = record["sent"]
    hold = record["hold"]
    stop = record["stop"]
    # Records written before the outbox existed have no "pending".
    pending = record.get("pending")
    if not sent and hold is None and stop is None and pending is None:
        return EMPTY_HISTORY
    if hold is not None:
        until, promised = hold["until"], hold.get("promised")
        hold = Hold(
            hold["reason"],
            None if until is None else date.fromisoformat(until),
            hold.get("kind", ""),
            None if promised is None else date.fromisoformat(promised),
            datetime.fromisoformat(hold["since"]) if hold.get("since") else None,
        )
    return History(
        hold=hold, stop=stop, raw=sent, pending=None if pending is None else Pending(*pending)
    )
