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

    # The service (`mahnwerk run`) keeps its store open between ticks: view() replays
    # only the journal tail and the Invoice/History conversions are cached per record.
    service = open_store(state)
    plan_from_store(service, rules, PLAN_NOW)
    warm, _ = measure(lambda: plan_from_store(service, rules, PLAN_NOW), args.repeat)
    service.close()

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
    planner_only = timings["plan()"]
    ratio = total.median / raw.median
    planner_ratio = planner_only.median / raw.median
    release = total.median - sum(t.median for t in timings.values())
    mails = sum(1 for r in result.reminders if r.action == "email")
    items = sum(len(r.items) for r in result.reminders)

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    def row(label: str, timing: Timing, target: str = "") -> None:
        print(f"{label:<40}{fmt_s(timing.median):>11}{fmt_s(timing.best):>11}   {target}")

    print(f"{'measurement':<40}{'median':>11}{'best':>11}   target")
    row("raw load (read + orjson.loads)", raw)
    row("  (same, collector on; info)", raw_gc)
    row(
        "planner: plan() on the loaded store",
        planner_only,
        f"<= {TARGET_PLAN_S} s  {verdict(planner_only.median <= TARGET_PLAN_S)}",
    )
    print(
        f"{'  ratio plan() / raw load':<40}{planner_ratio:>10.2f}x{'':>11}   "
        f"<= {TARGET_RATIO:.0f}x    {verdict(planner_ratio <= TARGET_RATIO)}"
    )
    row(
        "whole command path (cold: open .. plan)",
        total,
        f"<= {TARGET_PLAN_S} s  {verdict(total.median <= TARGET_PLAN_S)}",
    )
    for key, timing in timings.items():
        row(f"  {key}", timing)
    print(f"{'  releasing the store (rest)':<40}{fmt_s(release):>11}")
    print(
        f"{'  ratio whole path / raw load':<40}{ratio:>10.2f}x{'':>11}   "
        f"<= {TARGET_RATIO:.0f}x    {verdict(ratio <= TARGET_RATIO)}"
    )
    row(
        "plan, store already open (service)",
        warm,
        f"<= {TARGET_PLAN_S} s  {verdict(warm.median <= TARGET_PLAN_S)}",
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
        "plan_store_open": warm.json(),
        "split": {key: t.json() for key, t in timings.items()},
        "ratio_median": round(ratio, 3),
        "planner_ratio_median": round(planner_ratio, 3),
        "plan_ok": total.median <= TARGET_PLAN_S,
        "ratio_ok": ratio <= TARGET_RATIO,
        "planner_ok": planner_only.median <= TARGET_PLAN_S and planner_ratio <= TARGET_RATIO,
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
