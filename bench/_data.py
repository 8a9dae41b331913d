"""Shared, deterministic test data for the benchmarks.

`make_invoices` builds the same invoices for the same arguments (random.Random(seed));
`populate` writes them into a TinyDBStore the way an import does (one unit of work of
`imported` events), adds `reminder_sent` events for about 30% of the invoices whose
first reminder has fallen due, and checkpoints, so that store.json holds everything
and opening the store replays no journal tail.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mahnwerk.models import Event, Invoice, invoice_to_json
from mahnwerk.store import TinyDBStore, open_store

BERLIN = ZoneInfo("Europe/Berlin")
REFERENCE_DAY = date(2026, 11, 25)  # a Wednesday, no holiday in DE
# The moment `mahnwerk plan` runs in the plan benchmark: the send window has just opened.
PLAN_NOW = datetime(2026, 11, 25, 9, 0, tzinfo=BERLIN)
# When the invoices were imported: the evening before.
IMPORT_AT = datetime(2026, 11, 24, 18, 30, tzinfo=BERLIN)
DEFAULT_SEED = 20261125

# Share of extra invoices that are paid or cancelled, on top of the open ones.
CLOSED_SHARE = 0.02
# Share of the invoices past the first reminder's offset that already got it.
REMINDED_SHARE = 0.30
# Days after the due date of the first reminder stage (reminder_1 in rules.yaml).
REMINDER_1_DAYS = 7


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_FIRST = _words(
    "Anna Bernd Clara Dieter Eva Frank Greta Hans Ines Jonas Karin Lukas Marie Nils Olga "
    "Paul Rita Stefan Tina Uwe Vera Wolfgang Yvonne Zoe James Emily Oliver Sophie"
)
_LAST = _words(
    "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Koch "
    "Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Smith Jones Brown"
)
_TRADE = _words(
    "Bau Druck Elektro Holz Logistik Metall Möbel Optik Reisen Software Textil Werkzeug "
    "Consulting Catering Medien Sanitär"
)
_FORMS = ("GmbH", "GmbH & Co. KG", "AG", "e.K.", "UG (haftungsbeschränkt)", "Ltd", "KG")


@dataclass(frozen=True, slots=True)
class _Customer:
    id: str
    name: str
    email: str
    language: str
    customer_type: str
    currency: str
    tags: tuple[str, ...]
    terms: int  # payment terms in days


def _customer(rng: random.Random, index: int) -> _Customer:
    cid = f"K{100000 + index}"
    b2b = rng.random() < 0.7
    language = "de" if rng.random() < 0.8 else "en"
    if b2b:
        last = rng.choice(_LAST)
        name = f"{last} {rng.choice(_TRADE)} {rng.choice(_FORMS)}"
        local = "buchhaltung" if language == "de" else "accounts"
        domain = f"{last.lower().replace('ü', 'ue').replace('ö', 'oe')}-{index}.example"
    else:
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        name = f"{first} {last}"
        local = f"{first.lower()}.{last.lower().replace('ü', 'ue').replace('ö', 'oe')}"
        domain = f"mail{index % 97}.example"
    tags: tuple[str, ...] = ()
    if b2b and rng.random() < 0.05:
        tags = ("key_account",)
    elif rng.random() < 0.02:
        tags = ("slow_payer",)
    return _Customer(
        id=cid,
        name=name,
        email=f"{local}@{domain}",
        language=language,
        customer_type="b2b" if b2b else "b2c",
        currency="USD" if rng.random() < 0.08 else "EUR",
        tags=tags,
        terms=rng.choice((14, 14, 30, 30, 30, 60)) if b2b else 14,
    )


def _amount(rng: random.Random, b2b: bool) -> Decimal:
    # Log-normal-ish: most invoices small, a long tail of big ones.
    cents = int(rng.lognormvariate(11.0 if b2b else 9.5, 1.1))
    cents = max(500, min(cents, 25_000_000))
    return Decimal(cents).scaleb(-2)


def make_invoices(
    n_open: int, n_customers: int, seed: int = DEFAULT_SEED, reference: date = REFERENCE_DAY
) -> list[Invoice]:
    """`n_open` open invoices plus about 2% paid or cancelled ones, over `n_customers`.

    Due dates are spread uniformly from 120 days before to 30 days after `reference`;
    customers are skewed (5% of them hold ~a third of the invoices); 3% are partly paid.
    """
    if n_customers < 1:
        raise ValueError("need at least one customer")
    rng = random.Random(seed)
    customers = [_customer(rng, i) for i in range(n_customers)]
    n_closed = round(n_open * CLOSED_SHARE)
    total = n_open + n_closed
    closed = set(rng.sample(range(total), n_closed))
    invoices = []
    for i in range(total):
        # Every customer gets one invoice while there are enough; of the rest, 40% go to
        # the biggest 5% of the customers (a few dozen invoices each), 60% to anyone.
        if i < n_customers:
            cust = customers[i]
        elif rng.random() < 0.4:
            cust = customers[rng.randrange(max(1, n_customers // 20))]
        else:
            cust = customers[rng.randrange(n_customers)]
        due = reference + timedelta(days=rng.randint(-120, 30))
        amount = _amount(rng, cust.customer_type == "b2b")
        status = "open"
        paid = Decimal("0.00")
        if i in closed:
            status = "paid" if rng.random() < 0.7 else "cancelled"
            paid = amount if status == "paid" else paid
        elif rng.random() < 0.03:
            paid = (amount * Decimal(rng.choice((25, 50, 75))) / 100).quantize(Decimal("0.01"))
        invoices.append(
            Invoice(
                number=f"RE-{due.year}-{i + 1:07d}",
                customer_id=cust.id,
                customer_name=cust.name,
                email=cust.email,
                amount=amount,
                currency=cust.currency if rng.random() < 0.97 else "EUR",
                issue_date=due - timedelta(days=cust.terms),
                due_date=due,
                language=cust.language,  # type: ignore[arg-type]
                customer_type=cust.customer_type,  # type: ignore[arg-type]
                tags=cust.tags,
                paid_amount=paid,
                status=status,  # type: ignore[arg-type]
            )
        )
    return invoices


def reminder_events(
    invoices: list[Invoice], seed: int = DEFAULT_SEED, reference: date = REFERENCE_DAY
) -> list[Event]:
    """`reminder_sent` (reminder_1) for ~30% of the open invoices whose reminder_1 is due."""
    rng = random.Random(seed + 1)
    events = []
    for inv in invoices:
        if not inv.is_open or (reference - inv.due_date).days <= REMINDER_1_DAYS:
            continue
        if rng.random() >= REMINDED_SHARE:
            continue
        first = inv.due_date + timedelta(days=REMINDER_1_DAYS)
        day = min(first + timedelta(days=rng.randint(0, 4)), reference - timedelta(days=1))
        at = datetime.combine(day, dtime(9, rng.randint(0, 59)), tzinfo=BERLIN)
        key = f"mail:{inv.customer_id}:reminder_1:{inv.number}:{day.isoformat()}"
        events.append(
            Event(
                inv.number,
                "reminder_sent",
                at,
                "reminder_1: first reminder sent",
                {"stage": "reminder_1", "mail_key": key},
            )
        )
    return events


# The shipped policy's stages (name, days from due, event type) for the steady scenario.
_STAGES = (
    ("pre_due", -7, "reminder_sent"),
    ("reminder_1", 7, "reminder_sent"),
    ("reminder_2", 21, "reminder_sent"),
    ("final_notice", 35, "reminder_sent"),
    ("escalate", 49, "escalated"),
)


def steady_events(invoices: list[Invoice], reference: date = REFERENCE_DAY) -> list[Event]:
    """Every stage whose day came before `reference`, as if mahnwerk had run daily.

    On the reference day only the invoices that reach a stage that very day are due:
    the everyday case, next to the backlog of a first run.
    """
    events = []
    for inv in invoices:
        if not inv.is_open:
            continue
        for stage, days, kind in _STAGES:
            day = inv.due_date + timedelta(days=days)
            if day >= reference:
                break
            if days < 0 and day >= inv.due_date:
                continue
            at = datetime.combine(day, dtime(9, 0), tzinfo=BERLIN)
            key = f"mail:{inv.customer_id}:{stage}:{inv.number}:{day.isoformat()}"
            events.append(
                Event(inv.number, kind, at, f"{stage}: bench", {"stage": stage, "mail_key": key})
            )
    return events


@dataclass(frozen=True)
class Populated:
    invoices: int
    open: int
    reminded: int
    customers: int
    snapshot_bytes: int
    journal_bytes: int
    seconds: float


def populate(
    state_dir: Path,
    n_open: int,
    n_customers: int,
    seed: int = DEFAULT_SEED,
    scenario: str = "backlog",
) -> Populated:
    """Fill a new store at `state_dir` (import, reminders, checkpoint); returns what it holds.

    scenario "backlog": ~30% of the overdue invoices got reminder_1, the rest nothing
    (a first run after importing old open items: most invoices are due at once).
    scenario "steady": every stage before today was sent on its day.
    """
    start = time.perf_counter()
    invoices = make_invoices(n_open, n_customers, seed)
    store: TinyDBStore = open_store(state_dir)
    try:
        with store.transaction() as tx:
            tx.add_all(
                Event(
                    inv.number,
                    "imported",
                    IMPORT_AT,
                    "imported from bench data",
                    {"invoice": invoice_to_json(inv)},
                )
                for inv in invoices
            )
        if scenario == "steady":
            reminders = steady_events(invoices)
        else:
            reminders = reminder_events(invoices, seed)
        with store.transaction() as tx:
            tx.add_all(reminders)
        store.checkpoint()
    finally:
        store.close()
    return Populated(
        invoices=len(invoices),
        open=sum(1 for inv in invoices if inv.is_open),
        reminded=len(reminders),
        customers=len({inv.customer_id for inv in invoices}),
        snapshot_bytes=(state_dir / "store.json").stat().st_size,
        journal_bytes=(state_dir / "journal.log").stat().st_size,
        seconds=time.perf_counter() - start,
    )


# -- shared helpers for the benchmark scripts ---------------------------------


def arguments(description: str, invoices: int, customers: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--invoices", type=int, default=invoices, help="open invoices to store")
    parser.add_argument("--customers", type=int, default=customers, help="distinct customers")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--tmpdir", type=Path, default=None, help="where the temporary store goes")
    return parser.parse_args()


@dataclass(frozen=True)
class Timing:
    runs: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def best(self) -> float:
        return min(self.runs)

    def json(self) -> dict[str, Any]:
        return {
            "median_s": round(self.median, 6),
            "best_s": round(self.best, 6),
            "runs": len(self.runs),
        }


def measure(fn: Callable[[], Any], repeat: int) -> tuple[Timing, Any]:
    """Run `fn` `repeat` times; the timings and the last result.

    Each run starts from a collected heap with the previous result dropped, so that
    one run's garbage is not scanned or freed on the next one's clock.
    """
    runs = []
    result = None
    for _ in range(repeat):
        result = None
        gc.collect()
        start = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - start)
    return Timing(runs), result


def fmt_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"
