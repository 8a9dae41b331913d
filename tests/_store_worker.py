"""A store writer the store tests run as a subprocess (`sys.executable _store_worker.py ...`).

Modes:
- `units`: commit K units of work, each an `imported` event for a new invoice
  (INV-000000, INV-000001, ...: the next number is chosen inside the
  transaction, so a restarted worker continues from what is stored) plus a
  `note` event for it. The unit number is printed and flushed AFTER the
  transaction returns, so every printed number is a promise of durability.
- `notes`: commit K units of one `note` event each on an existing invoice;
  prints the counter after each commit.

The worker prints `ready` once the store is open, and with `--start-file`
waits for that file before writing, so a test can line up several writers.
The test imports the helpers below, so it writes the same units as the worker.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from mahnwerk.models import Event, Invoice, invoice_to_json
from mahnwerk.store import StoreView, TinyDBStore, Transaction

PREFIX = "INV-"


def unit_invoice(n: int) -> str:
    return f"{PREFIX}{n:06d}"


def unit_number(invoice: str) -> int:
    assert invoice.startswith(PREFIX), invoice
    return int(invoice[len(PREFIX) :])


def next_unit(view: StoreView, guess: int = 0) -> int:
    """The number after the highest stored unit; O(1) when `guess` is right."""
    if unit_invoice(guess) not in view and (guess == 0 or unit_invoice(guess - 1) in view):
        return guess
    return max((unit_number(n) for n in view.numbers()), default=-1) + 1


def unit_events(n: int, now: datetime) -> list[Event]:
    number = unit_invoice(n)
    invoice = Invoice(
        number=number,
        customer_id=f"K-{n % 7}",
        customer_name=f"Kunde {n % 7}",
        email=f"k{n % 7}@kunde.example",
        amount=Decimal("100.00") + n,
        currency="EUR",
        issue_date=date(2026, 10, 1),
        due_date=date(2026, 10, 15),
        language="de",
    )
    return [
        Event(number, "imported", now, "worker", {"invoice": invoice_to_json(invoice)}),
        Event(number, "note", now, "worker", {"unit": n}),
    ]


def commit_unit(tx: Transaction, guess: int = 0) -> int:
    """Add the next unit of work to `tx`; returns its number."""
    n = next_unit(tx.view, guess)
    tx.add_all(unit_events(n, datetime.now(UTC)))
    return n


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--mode", choices=("units", "notes"), default="units")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--checkpoint-bytes", type=int, default=2048)
    parser.add_argument("--lock-timeout", type=float, default=30.0)
    parser.add_argument("--invoice", default="SHARED", help="notes mode: the invoice to note on")
    parser.add_argument("--tag", default="w", help="notes mode: who wrote the note")
    parser.add_argument("--start-file", type=Path, default=None)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between units")
    args = parser.parse_args(argv)

    store = TinyDBStore(
        args.state_dir, checkpoint_bytes=args.checkpoint_bytes, lock_timeout=args.lock_timeout
    )
    print("ready", flush=True)
    if args.start_file is not None:
        while not args.start_file.exists():
            time.sleep(0.002)
    done = -1
    for i in range(args.count):
        with store.transaction() as tx:
            if args.mode == "units":
                done = commit_unit(tx, guess=done + 1)
            else:
                tx.add(
                    Event(
                        args.invoice,
                        "note",
                        datetime.now(UTC),
                        args.tag,
                        {"tag": args.tag, "i": i},
                    )
                )
                done = i
        # Only now is the unit durable: report it.
        print(done, flush=True)
        if args.pause:
            time.sleep(args.pause)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
