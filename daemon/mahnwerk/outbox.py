"""The outbox: every mail on its way to the server, as a state machine. Pure.

An entry is folded from `outbox_*` events in the same journal as the invoices'
threads, so "the server took it" and "the invoices' threads say so" are one
unit of work: there is no moment where one is recorded and the other is not.

The shell (delivery.py) asks this module what to write; it never decides a
transition itself. Every state change is one event from TRANSITIONS, and the
invoices the mail lists get a mirror event whenever what the planner must know
about them changes (queued, waiting for a retry, failed, sent, cancelled).

States:
    queued     written, not yet tried (or released by a person / after a crash)
    sending    the payload is about to be (or was) written to the server
    retry      the server said "later" (4xx, timeout); tried again at next_at
    unknown    the server may have the mail, we cannot tell; a person decides
    failed     refused for good, or retried past the deadline; a person decides
    sent       the server accepted it (or it was found in the Sent folder)
    cancelled  out of date before it went out (paid, address changed), or by a person
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from mahnwerk import ledger
from mahnwerk.models import Event, Invoice
from mahnwerk.outcome import Outcome, backoff
from mahnwerk.plan_types import PlannedReminder

Kind = Literal["reminder", "notice"]
OnUnknown = Literal["hold", "resend"]
Wire = dict[str, Any]

QUEUED = "outbox_queued"
ATTEMPT = "outbox_attempt"
SENT = "outbox_sent"
DEFERRED = "outbox_deferred"
FAILED = "outbox_failed"
UNKNOWN = "outbox_unknown"
RELEASED = "outbox_released"
CONFIRMED = "outbox_confirmed"
CANCELLED = "outbox_cancelled"
ADDRESS_UNDELIVERABLE = "address_undeliverable"
ADDRESS_CLEARED = "address_cleared"

# event -> (the states it may follow, the state it leads to); None is "no entry yet".
TRANSITIONS: dict[str, tuple[frozenset[str | None], str]] = {
    QUEUED: (frozenset({None}), "queued"),
    ATTEMPT: (frozenset({"queued", "retry"}), "sending"),
    SENT: (frozenset({"sending"}), "sent"),
    DEFERRED: (frozenset({"queued", "retry", "sending"}), "retry"),
    FAILED: (frozenset({"queued", "retry", "sending"}), "failed"),
    UNKNOWN: (frozenset({"sending"}), "unknown"),
    RELEASED: (frozenset({"sending", "unknown", "failed"}), "queued"),
    CONFIRMED: (frozenset({"sending", "unknown"}), "sent"),
    CANCELLED: (frozenset({"queued", "retry", "unknown", "failed"}), "cancelled"),
}
OUTBOX_EVENTS = frozenset(TRANSITIONS)
ADDRESS_EVENTS = frozenset({ADDRESS_UNDELIVERABLE, ADDRESS_CLEARED})
# Entries a person may have to look at; `mahnwerk outbox` lists these.
OPEN_STATES = frozenset({"queued", "sending", "retry", "unknown", "failed"})
# What the planner is told about an invoice whose mail reached that state.
_MIRROR: dict[str, str] = {
    "queued": ledger.REMINDER_QUEUED,
    "retry": ledger.DELIVERY_DEFERRED,
    "unknown": ledger.DELIVERY_UNKNOWN,
    "failed": ledger.DELIVERY_FAILED,
    "cancelled": ledger.REMINDER_CANCELLED,
}


class InvalidTransition(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Item:
    """An invoice as the queued mail shows it; a change before sending makes the mail stale."""

    number: str
    open_amount: Decimal
    email: str
    # The invoice's own stage: a not-yet-due invoice listed in a reminder_1 mail is at pre_due.
    stage: str


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    kind: Kind
    customer_id: str
    to: str
    stage: str
    items: tuple[Item, ...]
    message_id: str
    eml: str
    subject: str
    queued_at: datetime
    state: str
    attempts: int
    # Temporary failures since it was queued (or released): the backoff step.
    failures: int
    first_failure_at: datetime | None
    next_at: datetime | None
    last: Mapping[str, Any] | None
    # When the payload last went out: the day a confirmed mail was sent, not confirmed.
    attempted_at: datetime | None = None

    @classmethod
    def from_json(cls, raw: Wire) -> Entry:
        def when(value: str | None) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value)

        return cls(
            key=raw["key"],
            kind=raw["kind"],
            customer_id=raw["customer_id"],
            to=raw["to"],
            stage=raw["stage"],
            items=tuple(Item(n, Decimal(a), e, st) for n, a, e, st in raw["items"]),
            message_id=raw["message_id"],
            eml=raw["eml"],
            subject=raw["subject"],
            queued_at=datetime.fromisoformat(raw["queued_at"]),
            state=raw["state"],
            attempts=int(raw["attempts"]),
            failures=int(raw["failures"]),
            first_failure_at=when(raw["first_failure_at"]),
            next_at=when(raw["next_at"]),
            last=raw["last"],
            attempted_at=when(raw.get("attempted_at")),
        )

    @property
    def numbers(self) -> list[str]:
        return [i.number for i in self.items]

    def to_json(self) -> Wire:
        """The listing form (`mahnwerk outbox --json`)."""
        return {
            "key": self.key,
            "kind": self.kind,
            "state": self.state,
            "customer_id": self.customer_id,
            "to": self.to,
            "stage": self.stage,
            "invoice_numbers": self.numbers,
            "message_id": self.message_id,
            "eml": self.eml,
            "subject": self.subject,
            "queued_at": self.queued_at.isoformat(),
            "attempts": self.attempts,
            "failures": self.failures,
            "next_at": None if self.next_at is None else self.next_at.isoformat(),
            "last": dict(self.last) if self.last else None,
        }


# -- the fold ------------------------------------------------------------------


def apply(entry: Wire | None, event: Event) -> Wire | None:
    """The entry after `event`. The writer checked the transition (`check`); replay trusts it."""
    data = event.data
    if event.type == QUEUED:
        return {
            "key": data["key"],
            "kind": data["kind"],
            "customer_id": data["customer_id"],
            "to": data["to"],
            "stage": data["stage"],
            "items": data["items"],
            "message_id": data["message_id"],
            "eml": data["eml"],
            "subject": data["subject"],
            "queued_at": event.at.isoformat(),
            "state": "queued",
            "attempts": 0,
            "failures": 0,
            "first_failure_at": None,
            "next_at": None,
            "last": None,
            "thread": [],
        }
    if entry is None:
        return None
    new = {**entry, "state": TRANSITIONS[event.type][1]}
    if event.type == ATTEMPT:
        new["attempts"] = entry["attempts"] + 1
        new["attempted_at"] = event.at.isoformat()
    if "response" in data:
        new["last"] = {
            "code": data.get("code"),
            "response": data["response"],
            "command": data.get("command"),
            "at": event.at.isoformat(),
        }
    if event.type == DEFERRED:
        new["first_failure_at"] = entry["first_failure_at"] or event.at.isoformat()
        new["failures"] = entry["failures"] + 1
        new["next_at"] = data["next_at"]
    elif event.type in (RELEASED, SENT, CONFIRMED, CANCELLED):
        new["next_at"] = None
    if event.type == RELEASED:
        # A person (or the reconciler) starts it afresh: a new retry deadline.
        new["first_failure_at"] = None
        new["failures"] = 0
    return new


def apply_address(addresses: dict[str, Wire], event: Event) -> None:
    """Fold an address event into the table of undeliverable addresses (keyed casefolded)."""
    email = str(event.data["email"]).casefold()
    if event.type == ADDRESS_UNDELIVERABLE:
        addresses[email] = {
            "email": event.data["email"],
            "customer_id": event.data.get("customer_id"),
            "response": event.data.get("response", ""),
            "key": event.data.get("key"),
            "at": event.at.isoformat(),
        }
    else:
        addresses.pop(email, None)


def undeliverable_reasons(addresses: Mapping[str, Wire]) -> dict[str, str]:
    """What the planner is given: address -> why nothing more goes there."""
    return {
        email: f"refused on {a['at'][:10]} ({a['response']}); correct it by import "
        f"or `mahnwerk outbox unblock {a['email']}`"
        for email, a in addresses.items()
    }


def check(entry: Entry | None, event_type: str) -> None:
    allowed, _target = TRANSITIONS[event_type]
    state = None if entry is None else entry.state
    if state not in allowed:
        key = "?" if entry is None else entry.key
        raise InvalidTransition(f"{key}: {event_type} is not possible in state {state}")


# -- what to write -----------------------------------------------------------


def _event(entry_key: str, type_: str, at: datetime, reason: str, **data: Any) -> Event:
    return Event("", type_, at, reason, {"key": entry_key, **data})


def _mirror(entry: Entry, state: str, at: datetime, reason: str, **data: Any) -> list[Event]:
    type_ = _MIRROR[state]
    return [
        Event(i.number, type_, at, reason, {"stage": i.stage, "mail_key": entry.key, **data})
        for i in entry.items
    ]


def _step(entry: Entry, type_: str, at: datetime, reason: str, **data: Any) -> list[Event]:
    check(entry, type_)
    events = [_event(entry.key, type_, at, reason, **data)]
    target = TRANSITIONS[type_][1]
    if target != entry.state and target in _MIRROR:
        events += _mirror(entry, target, at, reason)
    return events


def queue(
    reminder: PlannedReminder,
    *,
    kind: Kind,
    to: str,
    message_id: str,
    eml: str,
    subject: str,
    now: datetime,
) -> list[Event]:
    """The unit that puts one planned mail in the outbox, and marks its invoices as waiting."""
    data = {
        "kind": kind,
        "customer_id": reminder.customer_id,
        "to": to,
        "stage": reminder.stage,
        "items": [
            [i.invoice.number, str(i.invoice.open_amount), i.invoice.email, i.stage]
            for i in reminder.items
        ],
        "message_id": message_id,
        "eml": eml,
        "subject": subject,
    }
    reason = f"{reminder.stage} queued for {to}: {reminder.reason}"
    events = [_event(reminder.key, QUEUED, now, reason, **data)]
    events += [
        Event(
            i.invoice.number,
            ledger.REMINDER_QUEUED,
            now,
            i.reason,
            {"stage": i.stage, "mail_key": reminder.key, "message_id": message_id},
        )
        for i in reminder.items
    ]
    return events


def attempt(entry: Entry, now: datetime) -> list[Event]:
    """Written durably before the payload goes out: after a crash, the mail may have arrived."""
    return _step(entry, ATTEMPT, now, f"attempt {entry.attempts + 1} to {entry.to}")


def _delivered(entry: Entry, type_: str, now: datetime, reason: str, **proof: Any) -> list[Event]:
    check(entry, type_)
    events = [_event(entry.key, type_, now, reason, **proof)]
    if type_ == CONFIRMED and entry.attempted_at is not None:
        # Dated when it went out: the planner spaces the next stage from the real send.
        proof = {**proof, "confirmed_at": now.isoformat()}
        now = entry.attempted_at
    done = ledger.ESCALATED if entry.kind == "notice" else ledger.REMINDER_SENT
    events += [
        Event(
            i.number,
            done,
            now,
            reason,
            {
                "stage": i.stage,
                "mail_key": entry.key,
                "message_id": entry.message_id,
                "eml": entry.eml,
                "to": entry.to,
                **proof,
            },
        )
        for i in entry.items
    ]
    return events


def after_outcome(
    entry: Entry,
    outcome: Outcome,
    *,
    now: datetime,
    accepted_at: datetime,
    retry_for: timedelta,
    on_unknown: OnUnknown,
) -> list[Event]:
    """What the server's answer means for the entry and its invoices."""
    said = {"code": outcome.code, "response": outcome.response, "command": outcome.command}
    words = f"{outcome.code or ''} {outcome.response}".strip()
    if outcome.kind == "accepted":
        who = "a person" if entry.kind == "notice" else "the customer"
        return _delivered(
            entry,
            SENT,
            now,
            f"{entry.stage} sent to {entry.to} ({who}): {words}",
            accepted_at=accepted_at.isoformat(),
            **said,
        )
    if outcome.maybe_delivered:
        why = f"the server may have taken the mail but its answer was lost ({words})"
        if on_unknown == "hold":
            return _step(entry, UNKNOWN, now, f"{why}; held for a person", **said)
        return _step(
            entry,
            DEFERRED,
            now,
            f"{why}; sending again with the same Message-ID (outbox.on_unknown: resend)",
            next_at=now.isoformat(),
            **said,
        )
    if outcome.kind == "permanent":
        return fail(entry, now, f"refused by the server: {words}", **said)
    first = entry.first_failure_at or now
    if now - first >= retry_for:
        hours = retry_for.total_seconds() / 3600
        return fail(entry, now, f"still failing after {hours:g} hours: {words}", **said)
    next_at = now + timedelta(seconds=backoff(entry.failures))
    return _step(
        entry,
        DEFERRED,
        now,
        f"temporary failure ({words}); retry at {next_at.isoformat(timespec='minutes')}",
        next_at=next_at.isoformat(),
        **said,
    )


def fail(entry: Entry, now: datetime, reason: str, **said: Any) -> list[Event]:
    """Refused for good: a person must look; a bad address blocks further mail to it."""
    events = _step(entry, FAILED, now, f"{reason}; see `mahnwerk outbox`", **said)
    code = said.get("code")
    refused_for_good = isinstance(code, int) and 500 <= code < 600
    # Only a 5xx at RCPT says the address itself is bad; a 4xx past the deadline does not.
    if refused_for_good and said.get("command") == "RCPT" and entry.kind == "reminder":
        events.append(
            Event(
                "",
                ADDRESS_UNDELIVERABLE,
                now,
                f"{entry.to} refused: {said.get('response', '')}",
                {
                    "key": entry.key,
                    "email": entry.to,
                    "customer_id": entry.customer_id,
                    "response": f"{said.get('code') or ''} {said.get('response', '')}".strip(),
                },
            )
        )
    return events


def reconcile(
    entry: Entry, found_in_sent: bool | None, *, now: datetime, on_unknown: OnUnknown
) -> list[Event]:
    """An entry left in "sending" by a crash: the server may or may not have the mail.

    `found_in_sent` is the Sent folder's answer, None when there is none to ask.
    """
    if found_in_sent:
        return _delivered(
            entry,
            CONFIRMED,
            now,
            f"{entry.stage} found in the Sent folder after a restart: it was delivered",
            response="found in the Sent folder by Message-ID",
        )
    if found_in_sent is False:
        return _step(
            entry,
            RELEASED,
            now,
            "not in the Sent folder after a restart: the server never took it; "
            "sending again with the same Message-ID",
        )
    why = "interrupted while the server had the mail; whether it was delivered is unknown"
    if on_unknown == "hold":
        return _step(
            entry, UNKNOWN, now, f"{why}; held for a person (`mahnwerk outbox confirm|retry`)"
        )
    return _step(
        entry,
        RELEASED,
        now,
        f"{why}; sending again with the same Message-ID (outbox.on_unknown: resend)",
    )


def stale(entry: Entry, current: Mapping[str, Invoice]) -> str | None:
    """Why a mail not yet sent no longer says the truth, or None while it does."""
    for item in entry.items:
        inv = current.get(item.number)
        if inv is None:
            return f"{item.number} is no longer in the store"
        if not inv.is_open:
            return f"{item.number} is {inv.status if inv.status != 'open' else 'settled'}"
        if inv.open_amount != item.open_amount:
            return f"{item.number} now has {inv.open_amount} open, not {item.open_amount}"
        if entry.kind == "reminder" and inv.email.casefold() != entry.to.casefold():
            return f"the address of {item.number} changed to {inv.email}"
    return None


def housekeeping(
    entries: Iterable[Entry], current: Mapping[str, Invoice], now: datetime
) -> list[Event]:
    """Cancel mails that went stale while waiting; the planner then plans afresh."""
    events: list[Event] = []
    for entry in entries:
        if entry.state not in TRANSITIONS[CANCELLED][0]:
            continue
        why = stale(entry, current)
        if why is not None:
            events += cancel(entry, now, f"out of date before it went out: {why}")
    return events


def cancel(entry: Entry, now: datetime, reason: str) -> list[Event]:
    return _step(entry, CANCELLED, now, reason)


def release(entry: Entry, now: datetime, reason: str) -> list[Event]:
    return _step(entry, RELEASED, now, reason)


def confirm(entry: Entry, now: datetime, reason: str) -> list[Event]:
    return _delivered(entry, CONFIRMED, now, reason, response=reason)


def due(entries: Iterable[Entry], now: datetime) -> list[Entry]:
    """Entries to hand to the server now, oldest first."""
    ready = [
        e
        for e in entries
        if e.state == "queued" or (e.state == "retry" and (e.next_at is None or e.next_at <= now))
    ]
    ready.sort(key=lambda e: (e.queued_at, e.key))
    return ready


def in_states(entries: Iterable[Entry], states: Collection[str]) -> list[Entry]:
    return sorted((e for e in entries if e.state in states), key=lambda e: (e.queued_at, e.key))
