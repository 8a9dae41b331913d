"""The reply classifier against labelled replies, plus its contract.

The rows live in tests/data/replies/*.yaml, one reply per row (see holdout.yaml for the
keys).  holdout.yaml was written before the classifier and is checked only in aggregate
(macro-F1, no dispute acted on), so that it keeps telling how the rules generalise; the
other files are checked row by row.  bench/classify_eval.py prints the figures.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from mahnwerk.classify import CLASSIFIER_VERSION, classify
from mahnwerk.inbound_types import LABELS, Bounce, Classification, InboundMail, Label

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "replies"
HOLDOUT = DATA / "holdout.yaml"
TABLES = (DATA / "de.yaml", DATA / "en.yaml", DATA / "more.yaml", DATA / "safety.yaml")
SAFETY = DATA / "safety.yaml"
FACT_KEYS = ("promised_date", "paid_date", "amount", "invoice_refs", "return_date", "installments")


def sample_invoices() -> tuple[str, ...]:
    """The invoice numbers of samples/*.csv: the `known` of every row that names none."""
    numbers: list[str] = []
    for path in sorted((ROOT / "samples").glob("invoices-*.csv")):
        text = path.read_text(encoding="utf-8")
        dialect = csv.Sniffer().sniff(text.splitlines()[0], delimiters=";,")
        numbers += [
            row["invoice_number"] for row in csv.DictReader(text.splitlines(), dialect=dialect)
        ]
    return tuple(numbers)


@dataclass(frozen=True)
class Case:
    id: str
    mail: InboundMail
    label: Label
    facts: dict[str, Any] = field(default_factory=dict)
    known: tuple[str, ...] = ()


def _headers(raw: dict[str, Any] | None) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for name, value in (raw or {}).items():
        values = value if isinstance(value, list) else [value]
        out[str(name).lower()] = tuple(str(v) for v in values)
    return out


def to_case(row: dict[str, Any], known: Sequence[str]) -> Case:
    text = str(row.get("text", ""))
    own = str(row["own_text"]) if "own_text" in row else text
    bounce = (
        Bounce(**{k: tuple(v) if isinstance(v, list) else v for k, v in row["bounce"].items()})
        if row.get("bounce")
        else None
    )
    mail = InboundMail(
        subject=str(row.get("subject", "")),
        from_address=str(row.get("from", "kunde@example.com")).lower(),
        date=datetime.fromisoformat(str(row["date"])) if row.get("date") else None,
        headers=_headers(row.get("headers")),
        text=text,
        own_text=own,
        bounce=bounce,
    )
    label = row["label"]
    assert label in LABELS, f"{row['id']}: unknown label {label}"
    return Case(
        str(row["id"]), mail, label, dict(row.get("facts") or {}), tuple(row.get("known", known))
    )


def load_cases(paths: Iterable[Path]) -> list[Case]:
    known = sample_invoices()
    cases: list[Case] = []
    for path in paths:
        rows = yaml.safe_load(path.read_text(encoding="utf-8"))
        cases += [to_case(row, known) for row in rows]
    return cases


def run(case: Case) -> Classification:
    return classify(case.mail, known_invoices=case.known)


def fact_mismatches(case: Case, got: Classification) -> list[str]:
    """The expected facts of a row that the classification does not have."""
    wrong: list[str] = []
    for key, want in case.facts.items():
        have = getattr(got.facts, key)
        if key == "amount":
            ok = have is not None and have == Decimal(str(want))
        elif key == "invoice_refs":
            ok = tuple(have) == tuple(want)
        elif isinstance(want, date):
            ok = have == want
        else:
            ok = have == want
        if not ok:
            wrong.append(f"{key}: want {want!r}, got {have!r}")
    return wrong


def macro_f1(pairs: Sequence[tuple[str, str]]) -> float:
    """Mean F1 over the labels that occur in truth or prediction."""
    labels = sorted({t for t, _ in pairs} | {p for _, p in pairs})
    f1s = []
    for label in labels:
        tp = sum(1 for t, p in pairs if t == p == label)
        fp = sum(1 for t, p in pairs if p == label and t != label)
        fn = sum(1 for t, p in pairs if t == label and p != label)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return sum(f1s) / len(f1s)


TABLE_CASES = load_cases(TABLES)
SAFETY_CASES = load_cases([SAFETY])


def _explain(case: Case, got: Classification) -> str:
    return f"{case.id}: got {got.label} {got.confidence} {list(got.reasons)} {got.facts}"


@pytest.mark.parametrize("case", TABLE_CASES, ids=[c.id for c in TABLE_CASES])
def test_reply_table(case: Case) -> None:
    got = run(case)
    assert got.label == case.label, _explain(case, got)
    assert fact_mismatches(case, got) == [], _explain(case, got)


@pytest.mark.parametrize("case", SAFETY_CASES, ids=[c.id for c in SAFETY_CASES])
def test_a_dispute_is_never_acted_on_as_paid_or_promise(case: Case) -> None:
    assert case.label == "dispute"
    got = run(case)
    assert got.label == "dispute", _explain(case, got)
    assert any(r.startswith(("dispute", "safety", "negation")) for r in got.reasons)


def test_holdout_generalises() -> None:
    cases = load_cases([HOLDOUT])
    got = [(c.label, run(c).label) for c in cases]
    assert len(cases) >= 50
    acted_on = [
        c.id
        for c, (t, p) in zip(cases, got, strict=True)
        if t == "dispute" and p in ("paid", "promise")
    ]
    assert acted_on == []
    assert macro_f1(got) >= 0.85


def test_there_are_enough_rows_of_every_label() -> None:
    cases = TABLE_CASES + load_cases([HOLDOUT])
    assert len(cases) >= 250
    for label in LABELS:
        assert sum(c.label == label for c in cases) >= 8, label
    holdout = len(load_cases([HOLDOUT]))
    assert 0.18 <= holdout / len(cases) <= 0.3


# --- the contract -------------------------------------------------------------------


def mail(text: str = "", **kw: Any) -> InboundMail:
    kw.setdefault("date", datetime.fromisoformat("2026-11-25T10:00:00+01:00"))
    kw.setdefault("own_text", text)
    return InboundMail(text=kw.pop("full_text", text), **kw)


def test_version_and_shape() -> None:
    got = classify(mail("Wir haben heute überwiesen."))
    assert got.version == CLASSIFIER_VERSION == "rules-1"
    assert got.label == "paid"
    assert 0.0 <= got.confidence <= 1.0
    assert got.reasons and all(isinstance(r, str) and r for r in got.reasons)


def test_reasons_quote_the_customer_as_written() -> None:
    got = classify(mail("Grüß Gott, wir haben die Rechnung gestern überwiesen."))
    assert any("überwiesen" in r for r in got.reasons), got.reasons


def test_negation_is_named_in_the_reasons() -> None:
    got = classify(mail("wir haben noch nicht bezahlt, weil die Ware fehlt"))
    assert got.label == "dispute"
    assert any(r.startswith("negation: 'nicht'") for r in got.reasons), got.reasons


def test_only_the_customers_words_count_never_our_quoted_reminder() -> None:
    reminder = (
        "Danke\n\n> Antworten Sie einfach auf diese E-Mail, falls Sie bereits bezahlt haben.\n"
        "> Bitte überweisen Sie 1.234,56 € bis spätestens 4. Dezember 2026."
    )
    got = classify(mail("Danke", full_text=reminder))
    assert got.label == "other"
    assert got.facts.amount is None and got.facts.promised_date is None


def test_empty_own_text_reads_nothing_of_the_quote() -> None:
    # A reply that is only a quote of our reminder says nothing: a person looks at it.
    quoted = "> Falls Sie bereits bezahlt haben, betrachten Sie diese E-Mail als gegenstandslos."
    got = classify(InboundMail(text=quoted, own_text=""))
    assert got.label == "other"


def test_without_a_date_header_no_dates_are_resolved() -> None:
    got = classify(mail("Wir haben am 20.11. bezahlt.", date=None))
    assert got.label == "paid"
    assert got.facts.paid_date is None
    assert any("no Date header" in r for r in got.reasons)


def test_a_dsn_is_a_bounce_whatever_it_says_and_whatever_the_headers() -> None:
    got = classify(
        mail(
            "Wir haben bezahlt.",
            bounce=Bounce(status="5.1.1"),
            headers={"auto-submitted": ("auto-replied",)},
        )
    )
    assert got.label == "bounce"
    assert got.confidence >= 0.95


def test_auto_submitted_is_strong_evidence() -> None:
    got = classify(mail("Ich bin nicht im Büro.", headers={"auto-submitted": ("auto-replied",)}))
    assert got.label == "auto_reply" and got.confidence >= 0.95


def test_auto_submitted_no_is_a_human() -> None:
    got = classify(mail("Wir haben bezahlt.", headers={"auto-submitted": ("no",)}))
    assert got.label == "paid"


def test_an_auto_generated_payment_advice_is_paid() -> None:
    got = classify(
        mail(
            "Folgende Rechnungen haben wir zur Zahlung angewiesen: RE-2026-0431",
            subject="Zahlungsavis",
            headers={"auto-submitted": ("auto-generated",)},
        )
    )
    assert got.label == "paid"


def test_confidence_one_clear_cue_versus_conflict() -> None:
    clear = classify(mail("Die Rechnung ist bereits bezahlt."))
    mixed = classify(mail("Wir haben 500 € bezahlt, der Rest ist falsch berechnet."))
    assert clear.confidence >= 0.75
    assert mixed.label == "dispute" and mixed.confidence < 0.6


def test_nothing_to_go_on_is_other_for_a_person_to_read() -> None:
    got = classify(mail(""))
    assert got.label == "other" and got.confidence < 0.6


def test_classification_is_deterministic() -> None:
    m = mail("Wir zahlen in drei Raten: 500 € am 1.12., 500 € am 1.1. und 234,56 € am 1.2.")
    assert classify(m) == classify(m)


def test_installment_facts() -> None:
    got = classify(
        mail("Wir zahlen in drei Raten: 500 € am 1.12., 500 € am 1.1. und 234,56 € am 1.2.")
    )
    assert got.label == "promise"
    assert got.facts.installments == 3
    assert got.facts.promised_date == date(2027, 2, 1)
    assert got.facts.amount == Decimal("1234.56")


def test_invoice_refs_come_from_text_and_subject_in_canonical_form() -> None:
    got = classify(
        mail("re 2026 431 ist bezahlt", subject="AW: Rechnung RE-2026-0502"),
        known_invoices=("RE-2026-0431", "RE-2026-0502"),
    )
    assert got.facts.invoice_refs == ("RE-2026-0431", "RE-2026-0502")


@pytest.mark.parametrize(
    "text",
    [
        "erledigt",
        "ist raus",
        "bezahlt",
        "done",
        "paid",
        "Erledigt.",
        "PAID",
        "ist bezalt",
        "ueberwiesen",
        "payed",
    ],
)
def test_one_liners_that_say_paid(text: str) -> None:
    assert classify(mail(text)).label == "paid"


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("wir haben noch nicht bezahlt, zahlen aber am Freitag", "promise"),
        ("I haven't paid yet, will do on Friday", "promise"),
        ("Wir haben nicht bezahlt, da die Lieferung unvollständig war.", "dispute"),
        ("We did not receive the goods.", "dispute"),
        ("Eine Rechnung haben wir nie erhalten.", "question"),
        ("Kein Problem, ist überwiesen.", "paid"),
        ("Wir werden die Rechnung nicht bezahlen.", "dispute"),
        ("Wir können die Rechnung derzeit nicht bezahlen.", "question"),
    ],
)
def test_negation_scope(text: str, label: str) -> None:
    assert classify(mail(text)).label == label


def test_core_purity_check_passes_for_the_classifier_modules() -> None:
    from test_purity import PACKAGE, _violations

    assert _violations(PACKAGE / "classify.py") == []
    assert _violations(PACKAGE / "invoicerefs.py") == []
