"""How long `mahnwerk plan` takes on a big store, against the floor of reading that store.

Run from the repository root:  python bench/plan.py [--invoices N --customers M]
Two stores of the same invoices: "backlog" (the first run after importing old open
items: most invoices are due at once) and "steady" (mahnwerk has run every day, so only
the invoices reaching a stage today are due). Prints a table per store and a last line
`RESULT {json}`; never asserts.
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from _data import PLAN_NOW, Timing, arguments, fmt_s, measure, populate
from mahnwerk.config import load_rules
from mahnwerk.gcpause import paused_gc
from mahnwerk.plan_types import Plan
from mahnwerk.planner import plan
from mahnwerk.planning import plan_from_store
from mahnwerk.rules import Rules
from mahnwerk.store import open_store

TARGET_PLAN_S = 1.5
TARGET_RATIO = 3.0
RULES = Path(__file__).resolve().parent.parent / "rules.yaml"


def scenario(name: str, args: Any, rules: Rules, tmp: Path) -> dict[str, Any]:
    state = tmp / name
    data = populate(state, args.invoices, args.customers, args.seed, scenario=name)
    print(
        f"\n[{name}] {data.invoices:,} invoices ({data.open:,} open), {data.customers:,} "
        f"customers, {data.reminded:,} stages already sent; store.json "
        f"{data.snapshot_bytes / 1e6:.1f} MB; populated in {data.seconds:.1f} s"
    )
    snapshot = state / "store.json"

    # The floor: read the file and parse it, under the same paused collector as the
    # plan path (comparing against a slower, collector-on load would flatter us).
    def raw_load() -> None:
        with paused_gc():
            orjson.loads(snapshot.read_bytes())

    def raw_load_gc_on() -> None:
        orjson.loads(snapshot.read_bytes())

    raw, _ = measure(raw_load, args.repeat)
    raw_gc, _ = measure(raw_load_gc_on, args.repeat)

    def full() -> Plan:
        store = open_store(state)
        try:
            return plan_from_store(store, rules, PLAN_NOW)
        finally:
            store.close()

    total, result = measure(full, args.repeat)

    # Where the time goes, on the same path taken apart.
    parts: dict[str, list[float]] = {
        "open + view": [],
        "invoices()": [],
        "histories()": [],
        "plan()": [],
    }

    def split() -> None:
        with paused_gc():
            t0 = time.perf_counter()
            store = open_store(state)
            view = store.view()
            t1 = time.perf_counter()
            invoices = view.invoices()
            t2 = time.perf_counter()
            histories = view.histories()
            t3 = time.perf_counter()
            plan(invoices, histories, rules, PLAN_NOW)
            t4 = time.perf_counter()
            store.close()
        for key, sec in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            parts[key].append(sec)

    measure(split, args.repeat)
    timings = {key: Timing(runs) for key, runs in parts.items()}
    ratio = total.median / raw.median
    mails = sum(1 for r in result.reminders if r.action == "email")
    items = sum(len(r.items) for r in result.reminders)

    print(f"{'measurement':<36}{'median':>11}{'best':>11}   target")
    print(f"{'raw load (read + orjson.loads)':<36}{fmt_s(raw.median):>11}{fmt_s(raw.best):>11}")
    print(f"{'  (same, collector on; info)':<36}{fmt_s(raw_gc.median):>11}{fmt_s(raw_gc.best):>11}")
    ok_plan = "ok" if total.median <= TARGET_PLAN_S else "MISSED"
    print(
        f"{'plan (open store .. plan())':<36}{fmt_s(total.median):>11}{fmt_s(total.best):>11}"
        f"   <= {TARGET_PLAN_S} s  {ok_plan}"
    )
    for key, timing in timings.items():
        print(f"{'  ' + key:<36}{fmt_s(timing.median):>11}{fmt_s(timing.best):>11}")
    ok_ratio = "ok" if ratio <= TARGET_RATIO else "MISSED"
    print(
        f"{'ratio plan / raw load':<36}{ratio:>10.2f}x{total.best / raw.best:>10.2f}x"
        f"   <= {TARGET_RATIO:.0f}x    {ok_ratio}"
    )
    print(
        f"planned: {mails:,} mails, {len(result.reminders) - mails:,} hand-offs, "
        f"{items:,} invoices in them, {len(result.deferred):,} held back"
    )
    return {
        "invoices": data.invoices,
        "open_invoices": data.open,
        "customers": data.customers,
        "stages_sent": data.reminded,
        "snapshot_bytes": data.snapshot_bytes,
        "raw_load": raw.json(),
        "raw_load_collector_on": raw_gc.json(),
        "plan": total.json(),
        "split": {key: t.json() for key, t in timings.items()},
        "ratio_median": round(ratio, 3),
        "plan_ok": total.median <= TARGET_PLAN_S,
        "ratio_ok": ratio <= TARGET_RATIO,
        "mails": mails,
        "invoices_in_mails": items,
        "deferred": len(result.deferred),
    }


def main() -> int:
    args = arguments(__doc__.splitlines()[0], invoices=100_000, customers=20_000)
    rules = load_rules(RULES).rules
    figures: dict[str, Any] = {
        "benchmark": "plan",
        "target_plan_s": TARGET_PLAN_S,
        "target_ratio": TARGET_RATIO,
        "repeat": args.repeat,
        "python": sys.version.split()[0],
    }
    with tempfile.TemporaryDirectory(prefix="mahnwerk-bench-", dir=args.tmpdir) as tmp:
        for name in ("backlog", "steady"):
            figures[name] = scenario(name, args, rules, Path(tmp))
            gc.collect()
    print("RESULT " + json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
