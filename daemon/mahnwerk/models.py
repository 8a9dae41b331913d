"""Domain types shared by the pure core and the shell.

Frozen dataclasses with slots: the planner walks 100k of them per run, so they
stay cheap to build and cannot be changed behind the planner's back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, NamedTuple

Language = Literal["de", "en"]
CustomerType = Literal["b2b", "b2c"]
Status = Literal["open", "paid", "cancelled"]

LANGUAGES: tuple[str, ...] = ("de", "en")
CUSTOMER_TYPES: tuple[str, ...] = ("b2b", "b2c")
STATUSES: tuple[str, ...] = ("open", "paid", "cancelled")
ZERO = Decimal(0)
# Characters that must not reach a mail header or mislead a reader: controls, line and
# paragraph separators (the email package breaks lines on them), bidi overrides and
# zero-width characters.
UNSAFE_TEXT = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


class Invoice(NamedTuple):
    """One invoice as the accounting export knows it.

    A NamedTuple rather than a dataclass: immutable, and about three times
    cheaper to build, which counts when a plan loads 100k of them.
    """

    number: str
    customer_id: str
    customer_name: str
    email: str
    amount: Decimal
    currency: str
    issue_date: date
    due_date: date
    language: Language
    customer_type: CustomerType = "b2b"
    tags: tuple[str, ...] = ()
    paid_amount: Decimal = ZERO
    status: Status = "open"

    @property
    def open_amount(self) -> Decimal:
        """What the customer still owes; a partly paid invoice is reminded for this."""
        return self.amount - self.paid_amount

    @property
    def is_open(self) -> bool:
        return self.status == "open" and self.open_amount > ZERO


class SentStage(NamedTuple):
    """A stage that reached the customer (or a person, for escalations)."""

    stage: str
    at: datetime
    mail_key: str
    # "escalate" entries went to a person, not the customer, and do not count as contact.
    action: str = "email"


@dataclass(frozen=True, slots=True)
class Hold:
    """A pause recorded in the thread (promise, paid claim, a person's pause)."""

    reason: str
    until: date | None = None
    kind: str = ""  # promise | paid | auto_reply | "" (a person's pause)
    promised: date | None = None
    since: datetime | None = None  # when the pause began


class Pending(NamedTuple):
    """A mail in the outbox that lists the invoice: the invoice waits until it is settled."""

    stage: str
    mail_key: str
    # queued, retry, sending, unknown or failed: what a person sees in `mahnwerk outbox`.
    state: str


class History:
    """What the planner needs to know of an invoice's thread, folded from its events.

    The store hands over its raw entries and they are parsed on first use: on a
    plan over 100k invoices only the last entry of most histories is read, and
    the full list only for customers with something due (contact limits).
    """

    __slots__ = ("_raw", "_sent", "hold", "pending", "stop")

    def __init__(
        self,
        sent: Sequence[SentStage] = (),
        hold: Hold | None = None,
        stop: str | None = None,
        *,
        raw: Sequence[Sequence[str]] | None = None,
        pending: Pending | None = None,
    ) -> None:
        self._sent: tuple[SentStage, ...] | None = None if raw else tuple(sent)
        self._raw = raw
        self.hold = hold
        # A stop a person must lift (dispute, undeliverable address); None while dunning may go on.
        self.stop = stop
        # A mail for this invoice that is in the outbox and not yet sent (or cancelled).
        self.pending = pending

    @staticmethod
    def _parse(entry: Sequence[str]) -> SentStage:
        stage, at, key, action = entry
        return SentStage(stage, datetime.fromisoformat(at), key, action)

    @property
    def sent(self) -> tuple[SentStage, ...]:
        """Stages sent, oldest first."""
        if self._sent is None:
            self._sent = tuple(self._parse(e) for e in self._raw or ())
        return self._sent

    def __bool__(self) -> bool:
        return bool(self._raw or self._sent or self.hold or self.stop or self.pending)

    def newest_first(self) -> Iterator[SentStage]:
        """Sent stages from the newest back, parsed only as far as the caller reads."""
        if self._sent is None and self._raw:
            return (self._parse(e) for e in reversed(self._raw))
        return reversed(self.sent)

    def last_stage(self) -> str | None:
        """The most recent stage's name, without parsing anything else."""
        if self._sent is None and self._raw:
            return self._raw[-1][0]
        return self.sent[-1].stage if self.sent else None

    def last_sent(self) -> SentStage | None:
        return next(self.newest_first(), None)

    def sent_names(self) -> frozenset[str]:
        return frozenset(s.stage for s in self.sent)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        return (self.sent, self.hold, self.stop, self.pending) == (
            other.sent,
            other.hold,
            other.stop,
            other.pending,
        )

    def __hash__(self) -> int:
        return hash((self.sent, self.hold, self.stop, self.pending))

    def __repr__(self) -> str:
        return (
            f"History(sent={self.sent!r}, hold={self.hold!r}, stop={self.stop!r}, "
            f"pending={self.pending!r})"
        )


EMPTY_HISTORY = History()


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of an invoice's thread: what happened, when, and why."""

    invoice: str
    type: str
    at: datetime
    reason: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "invoice": self.invoice,
            "type": self.type,
            "at": self.at.isoformat(),
            "reason": self.reason,
            "data": self.data,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Event:
        return cls(
            invoice=str(raw["invoice"]),
            type=str(raw["type"]),
            at=datetime.fromisoformat(raw["at"]),
            reason=str(raw.get("reason", "")),
            data=dict(raw.get("data") or {}),
        )


# Wire form of an invoice (what the store keeps and events carry): strings for
# Decimal and dates, so JSON never sees a float.
def invoice_to_json(inv: Invoice) -> dict[str, Any]:
    return {
        "number": inv.number,
        "customer_id": inv.customer_id,
        "customer_name": inv.customer_name,
        "email": inv.email,
        "amount": str(inv.amount),
        "currency": inv.currency,
        "issue_date": inv.issue_date.isoformat(),
        "due_date": inv.due_date.isoformat(),
        "language": inv.language,
        "customer_type": inv.customer_type,
        "tags": list(inv.tags),
        "paid_amount": str(inv.paid_amount),
        "status": inv.status,
    }


def invoice_from_json(raw: dict[str, Any]) -> Invoice:
    # Positional and without defaults: the store always writes every field, and
    # this runs 100k times per plan.
    return Invoice(
        raw["number"],
        raw["customer_id"],
        raw["customer_name"],
        raw["email"],
        Decimal(raw["amount"]),
        raw["currency"],
        date.fromisoformat(raw["issue_date"]),
        date.fromisoformat(raw["due_date"]),
        raw["language"],
        raw["customer_type"],
        tuple(raw["tags"]),
        Decimal(raw["paid_amount"]),
        raw["status"],
    )
