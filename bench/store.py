"""How long one thread event takes to commit on a big store, against a bare os.write + fsync.

Run from the repository root:  python bench/store.py [--invoices N --customers M]
Prints a table and a last line `RESULT {json}`; never asserts.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from functools import partial
from pathlib import Path

from _data import (
    PLAN_NOW,
    Timing,
    arguments,
    fmt_s,
    make_invoices,
    measure,
    populate,
    reminder_events,
)
from mahnwerk.models import Event
from mahnwerk.store import open_store

TARGET_APPEND_S = 0.010
APPENDS = 50


def note(number: str, i: int) -> Event:
    return Event(
        number,
        "note",
        PLAN_NOW + timedelta(minutes=i),
        "customer called: will pay by Friday",
        {"author": "bench", "channel": "phone"},
    )


def main() -> int:
    args = arguments(__doc__.splitlines()[0], invoices=100_000, customers=20_000)
    with tempfile.TemporaryDirectory(prefix="mahnwerk-bench-", dir=args.tmpdir) as tmp:
        state = Path(tmp) / "state"
        print(f"populating {args.invoices:,} open invoices of {args.customers:,} customers ...")
        data = populate(state, args.invoices, args.customers, args.seed)
        print(
            f"  {data.invoices:,} invoices, store.json {data.snapshot_bytes / 1e6:.1f} MB, "
            f"journal.log {data.journal_bytes / 1e6:.1f} MB; took {data.seconds:.1f} s"
        )
        # The same invoices the store holds. The notes go to APPENDS of them, the first
        # one with a reminder sent, so that its thread spans three journal lines.
        invoices = make_invoices(args.invoices, args.customers, args.seed)
        reminded = reminder_events(invoices, args.seed)[0].invoice
        targets = [reminded] + [inv.number for inv in invoices[:APPENDS] if inv.number != reminded]
        targets = targets[:APPENDS]
        del invoices
        journal = state / "journal.log"
        plain = Path(tmp) / "plain.log"

        # (1) One event per unit of work on a long-lived, already opened store, and
        # (2) the baseline: the same number of bytes appended to a plain file with the same
        # durability (os.write + os.fsync on an open descriptor). The two alternate, so that
        # both see the same disk: an fsync's cost swings with what else the machine writes.
        store = open_store(state)
        store.view()
        gc.collect()
        appends: list[float] = []
        raws: list[float] = []
        sizes: list[int] = []
        fd = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for i, number in enumerate(targets):
                before = journal.stat().st_size
                start = time.perf_counter()
                with store.transaction() as tx:
                    tx.add(note(number, i))
                appends.append(time.perf_counter() - start)
                sizes.append(journal.stat().st_size - before)

                payload = b"x" * (sizes[-1] - 1) + b"\n"
                start = time.perf_counter()
                os.write(fd, payload)
                os.fsync(fd)
                raws.append(time.perf_counter() - start)
        finally:
            os.close(fd)
        append = Timing(appends)
        raw = Timing(raws)
        line_bytes = round(statistics.median(sizes))

        # (3) A thread read: imported + reminder_sent + a note, from the journal by offset.
        thread, events = measure(partial(store.thread, reminded), args.repeat)
        store.close()
        del store

        # (4) Info: what a one-shot CLI command pays to open the store and add one event.
        def cold() -> None:
            fresh = open_store(state)
            with fresh.transaction() as tx:
                tx.add(note(targets[0], 99))
            fresh.close()

        cold_append, _ = measure(cold, args.repeat)

    ratio = append.median / raw.median
    ok = append.median <= TARGET_APPEND_S
    print()
    print(f"{'measurement':<40}{'median':>11}{'best':>11}   target")
    print(
        f"{'append 1 event (transaction + add)':<40}{fmt_s(append.median):>11}"
        f"{fmt_s(append.best):>11}   <= {TARGET_APPEND_S * 1e3:.0f} ms  {'ok' if ok else 'MISSED'}"
    )
    print(
        f"{f'baseline os.write + fsync, {line_bytes} B':<40}{fmt_s(raw.median):>11}"
        f"{fmt_s(raw.best):>11}"
    )
    print(f"{'ratio append / baseline':<40}{ratio:>10.2f}x{append.best / raw.best:>10.2f}x")
    print(
        f"{f'thread({reminded}), {len(events)} events':<40}{fmt_s(thread.median):>11}"
        f"{fmt_s(thread.best):>11}"
    )
    print(
        f"{'open_store + append 1 event (info)':<40}{fmt_s(cold_append.median):>11}"
        f"{fmt_s(cold_append.best):>11}"
    )
    print(f"appends: {APPENDS} measured, each its own transaction; thread/cold: {args.repeat} runs")
    figures = {
        "benchmark": "store",
        "invoices": data.invoices,
        "customers": data.customers,
        "snapshot_bytes": data.snapshot_bytes,
        "journal_bytes": data.journal_bytes,
        "appends": APPENDS,
        "append": append.json(),
        "line_bytes": line_bytes,
        "baseline_write_fsync": raw.json(),
        "ratio_median": round(ratio, 3),
        "ratio_best": round(append.best / raw.best, 3),
        "target_append_s": TARGET_APPEND_S,
        "append_ok": ok,
        "thread_read": thread.json(),
        "thread_events": len(events),
        "cold_open_append": cold_append.json(),
        "python": sys.version.split()[0],
    }
    print("RESULT " + json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
