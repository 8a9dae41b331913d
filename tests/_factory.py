"""Small builders for tests: an invoice or a history in one line."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from mahnwerk.config import load_rules
from mahnwerk.models import History, Invoice, SentStage
from mahnwerk.rules import Rules

ROOT = Path(__file__).resolve().parents[1]
BERLIN = ZoneInfo("Europe/Berlin")
# A Wednesday, and not a holiday.
TODAY = date(2026, 11, 25)


def shipped_rules() -> Rules:
    return load_rules(ROOT / "rules.yaml").rules


def at(day: date, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=BERLIN)


def inv(
    number: str = "R-1",
    *,
    customer: str = "K-1",
    overdue: int = 10,
    amount: str = "100.00",
    paid: str = "0",
    currency: str = "EUR",
    status: str = "open",
    today: date = TODAY,
    language: str = "de",
    tags: tuple[str, ...] = (),
    customer_type: str = "b2b",
    email: str | None = None,
) -> Invoice:
    due = today - timedelta(days=overdue)
    return Invoice(
        number=number,
        customer_id=customer,
        customer_name=f"Kunde {customer}",
        email=email or f"{customer.lower()}@kunde.example",
        amount=Decimal(amount),
        currency=currency,
        issue_date=due - timedelta(days=14),
        due_date=due,
        language=language,  # type: ignore[arg-type]
        customer_type=customer_type,  # type: ignore[arg-type]
        tags=tags,
        paid_amount=Decimal(paid),
        status=status,  # type: ignore[arg-type]
    )


def sent(*stages: tuple[str, int], today: date = TODAY, key: str = "") -> History:
    """History with (stage, days ago) entries, each its own mail."""
    return History(
        sent=tuple(
            SentStage(stage, at(today - timedelta(days=ago)), key or f"m-{stage}-{ago}")
            for stage, ago in stages
        )
    )
