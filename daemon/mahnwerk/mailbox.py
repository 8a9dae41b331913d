"""The record of received mail: what was processed, what waits for a person, and how far
each folder was read.

Pure, like outbox.py: events in the journal, folded here into two tables the store keeps
in its snapshot. A message is known by its key, the Message-ID (or the SHA-256 of its
bytes when it has none), so it is processed once even when the server renumbers its
UIDs (a new UIDVALIDITY) or a crash struck before it was moved out of the reply folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mahnwerk.models import Event

MAIL_RECEIVED = "mail_received"
MAIL_RESOLVED = "mail_resolved"
MAILBOX_CURSOR = "mailbox_cursor"
MAILBOX_EVENTS = frozenset({MAIL_RECEIVED, MAIL_RESOLVED})
CURSOR_EVENTS = frozenset({MAILBOX_CURSOR})

Wire = dict[str, Any]


def key_for(message_id: str, sha256: str) -> str:
    return message_id if message_id else f"sha256:{sha256}"


def received(now: datetime, reason: str, **data: Any) -> Event:
    """`data`: key, sha256, message_id, from, subject, date, folder, uidvalidity, uid, state
    (processed|review), label, confidence, customer_id, invoices, target (folder)."""
    return Event("", MAIL_RECEIVED, now, reason, data)


def resolved(key: str, now: datetime, reason: str, **data: Any) -> Event:
    return Event("", MAIL_RESOLVED, now, reason, {"key": key, **data})


def cursor(folder: str, uidvalidity: int, uid: int, now: datetime) -> Event:
    return Event(
        "",
        MAILBOX_CURSOR,
        now,
        f"{folder} read up to UID {uid}",
        {"folder": folder, "uidvalidity": uidvalidity, "uid": uid},
    )


def apply(record: Wire | None, event: Event) -> Wire | None:
    data = event.data
    if event.type == MAIL_RECEIVED:
        if record is not None:
            return record  # the first result stands; a duplicate unit changes nothing
        return {
            **data,
            "reason": event.reason,
            "at": event.at.isoformat(),
            "thread": [],
        }
    if event.type == MAIL_RESOLVED and record is not None:
        return {
            **record,
            "state": "resolved",
            "resolution": {"reason": event.reason, "at": event.at.isoformat(), **data},
        }
    return record


def apply_cursor(cursors: dict[str, Wire], event: Event) -> None:
    data = event.data
    folder = str(data["folder"])
    old = cursors.get(folder)
    if old is not None and old["uidvalidity"] == data["uidvalidity"] and old["uid"] > data["uid"]:
        return
    cursors[folder] = {"folder": folder, "uidvalidity": data["uidvalidity"], "uid": data["uid"]}


def by_uid(records: Mapping[str, Wire]) -> dict[tuple[str, int, int], Wire]:
    """(folder, uidvalidity, uid) -> record, for the messages a crash left in the folder."""
    return {
        (str(r.get("folder")), int(r.get("uidvalidity", 0)), int(r.get("uid", 0))): r
        for r in records.values()
    }


def review_queue(records: Mapping[str, Wire]) -> list[Wire]:
    """Mails waiting for a person, oldest first."""
    waiting = [r for r in records.values() if r.get("state") == "review"]
    return sorted(waiting, key=lambda r: (r.get("at", ""), r.get("key", "")))
