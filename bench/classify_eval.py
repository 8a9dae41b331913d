"""How well the reply classifier labels the labelled replies, and how fast.

Run from the repository root:  python bench/classify_eval.py [--repeat R] [--errors]
Prints, for the held-out file (tests/data/replies/holdout.yaml, written before the rules
and not tuned against) and for the rest (de, en, safety) separately: per-class precision,
recall and F1, macro-F1, the confusion matrix (rows: truth, columns: prediction), how
many disputes came out as paid or promise (must be 0), and how many rows' expected facts
were missed.  Then classifications per second over all rows.  Last line `RESULT {json}`;
never asserts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from mahnwerk.inbound_types import LABELS  # noqa: E402
from test_classify import HOLDOUT, TABLES, Case, fact_mismatches, load_cases, run  # noqa: E402

SHORT = {"auto_reply": "auto", "question": "quest", "promise": "prom", "dispute": "disp"}


def evaluate(name: str, cases: list[Case], show_errors: bool) -> dict[str, object]:
    results = [(c, run(c)) for c in cases]
    pairs = [(c.label, got.label) for c, got in results]
    print(f"\n== {name}: {len(cases)} replies")
    print(f"{'label':<11}{'prec':>7}{'rec':>7}{'f1':>7}{'n':>5}")
    f1s: dict[str, float] = {}
    for label in LABELS:
        tp = sum(1 for t, p in pairs if t == p == label)
        fp = sum(1 for t, p in pairs if p == label != t)
        fn = sum(1 for t, p in pairs if t == label != p)
        n = sum(1 for t, _ in pairs if t == label)
        if n == 0 and fp == 0:
            continue
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        f1s[label] = f1
        print(f"{label:<11}{prec:>7.3f}{rec:>7.3f}{f1:>7.3f}{n:>5}")
    macro = sum(f1s.values()) / len(f1s)
    accuracy = sum(t == p for t, p in pairs) / len(pairs)
    acted_on = [
        c.id for c, got in results if c.label == "dispute" and got.label in ("paid", "promise")
    ]
    facts_missed = [(c.id, fact_mismatches(c, got)) for c, got in results if c.facts]
    facts_missed = [(i, m) for i, m in facts_missed if m]
    print(f"macro-F1 {macro:.3f}   accuracy {accuracy:.3f}")
    print(f"disputes acted on as paid/promise: {len(acted_on)} {acted_on or ''}")
    with_facts = sum(1 for c in cases if c.facts)
    print(f"rows with expected facts: {with_facts}, facts missed in {len(facts_missed)}")
    print("\nconfusion (rows truth, columns prediction)")
    print(" " * 11 + "".join(f"{SHORT.get(lb, lb):>7}" for lb in LABELS))
    for t in LABELS:
        row = [sum(1 for a, b in pairs if a == t and b == p) for p in LABELS]
        print(f"{SHORT.get(t, t):<11}" + "".join(f"{n:>7}" for n in row))
    if show_errors:
        for c, got in results:
            if c.label != got.label:
                why = list(got.reasons)
                print(f"  WRONG {c.id}: want {c.label}, got {got.label} {got.confidence} {why}")
        for i, m in facts_missed:
            print(f"  FACTS {i}: {m}")
    return {
        "n": len(cases),
        "macro_f1": round(macro, 4),
        "accuracy": round(accuracy, 4),
        "disputes_acted_on": len(acted_on),
        "facts_missed": len(facts_missed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="passes over all rows for speed")
    parser.add_argument("--errors", action="store_true", help="list every wrong row")
    args = parser.parse_args()
    holdout = load_cases([HOLDOUT])
    rest = load_cases(TABLES)
    result = {
        "holdout": evaluate("holdout", holdout, args.errors),
        "rest": evaluate("rest (de, en, safety)", rest, args.errors),
    }
    everything = holdout + rest
    run(everything[0])  # warm the caches of compiled tables
    start = time.perf_counter()
    for _ in range(args.repeat):
        for c in everything:
            run(c)
    seconds = time.perf_counter() - start
    per_second = args.repeat * len(everything) / seconds
    print(
        f"\nspeed: {per_second:,.0f} classifications/s "
        f"({seconds / (args.repeat * len(everything)) * 1e3:.2f} ms each, "
        f"{len(everything)} rows x {args.repeat})"
    )
    result["per_second"] = round(per_second)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
