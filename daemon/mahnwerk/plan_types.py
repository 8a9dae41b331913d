"""What the planner hands to the shell: mails to send, escalations, and what it held back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, NamedTuple

from mahnwerk.models import Invoice

Action = Literal["email", "escalate"]


class PlannedItem(NamedTuple):
    """One invoice in a planned mail, with the stage it reaches and why."""

    invoice: Invoice
    stage: str
    reason: str
    # Days past the due date on the planned day; negative means days until it.
    days_overdue: int
    # The day the customer had promised to pay by, for a broken-promise follow-up.
    promised: date | None = None


@dataclass(frozen=True, slots=True)
class PlannedReminder:
    """One mail (or one hand-off to a person) for one customer on one day."""

    key: str
    customer_id: str
    customer_name: str
    to: str
    language: str
    policy: str
    stage: str
    action: Action
    template: str | None
    items: tuple[PlannedItem, ...]
    totals: dict[str, Decimal]
    fee: Decimal | None
    fee_currency: str
    # A payment deadline shown in the mail (stage deadline_days), else None.
    deadline: date | None
    planned_day: date
    reason: str

    @property
    def invoice_numbers(self) -> list[str]:
        return [i.invoice.number for i in self.items]

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "customer_id": self.customer_id,
            "customer_name": self.customer_name,
            "to": self.to,
            "language": self.language,
            "policy": self.policy,
            "stage": self.stage,
            "action": self.action,
            "template": self.template,
            "invoice_numbers": self.invoice_numbers,
            "invoices": [
                {
                    "invoice_number": i.invoice.number,
                    "stage": i.stage,
                    "open_amount": str(i.invoice.open_amount),
                    "currency": i.invoice.currency,
                    "due_date": i.invoice.due_date.isoformat(),
                    "days_overdue": i.days_overdue,
                    "reason": i.reason,
                }
                for i in self.items
            ],
            "totals": {cur: str(amount) for cur, amount in self.totals.items()},
            "fee": None if self.fee is None else str(self.fee),
            "fee_currency": self.fee_currency,
            "deadline": None if self.deadline is None else self.deadline.isoformat(),
            "planned_day": self.planned_day.isoformat(),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Deferred:
    """A stage that is due but held back (contact limit, pause, exclusion, stop)."""

    customer_id: str
    invoice_numbers: tuple[str, ...]
    stage: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "invoice_numbers": list(self.invoice_numbers),
            "stage": self.stage,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    now: datetime
    window_open: bool
    # Why the window is closed (weekend, holiday, hours), or "" when open.
    window_note: str
    opens_at: datetime | None
    reminders: tuple[PlannedReminder, ...]
    deferred: tuple[Deferred, ...]
