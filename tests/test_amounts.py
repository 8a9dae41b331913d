"""amounts: German and English notation, the currency, the scale, and what is never money."""

from __future__ import annotations

import itertools
import random
from decimal import Decimal

import pytest

from mahnwerk.amounts import AmountMention, find_amounts


def found(text: str) -> list[str]:
    """Each amount as "value CURRENCY" ("value" alone when no currency is stated)."""
    return [f"{a.value} {a.currency}".strip() for a in find_amounts(text)]


# (id, text, amounts): str(Decimal) keeps the scale, so "1450.00" and "1450" differ here.
AMOUNTS: list[tuple[str, str, list[str]]] = [
    # German notation.
    ("de-thousands-euro-sign", "1.234,56 €", ["1234.56 EUR"]),
    ("de-no-grouping-code", "1234,56 EUR", ["1234.56 EUR"]),
    ("de-euro-word", "500 Euro", ["500 EUR"]),
    ("de-euros-word", "500 Euros", ["500 EUR"]),
    ("de-dash", "500,- €", ["500 EUR"]),
    ("de-double-dash", "500,-- €", ["500 EUR"]),
    ("de-prefix-sign", "€ 500", ["500 EUR"]),
    ("de-prefix-code", "EUR 1.234,56", ["1234.56 EUR"]),
    ("de-glued-sign", "1.234,56€", ["1234.56 EUR"]),
    ("de-cents", "12,50 €", ["12.50 EUR"]),
    ("de-below-one", "0,99 €", ["0.99 EUR"]),
    ("de-one-decimal", "12,5 €", ["12.5 EUR"]),
    ("de-millions", "1.000.000,00 EUR", ["1000000.00 EUR"]),
    ("de-thousands-only", "2.500 Euro", ["2500 EUR"]),
    ("de-no-break-space", "1.234,56\u00a0€", ["1234.56 EUR"]),
    ("de-narrow-space-grouping", "1\u202f234,56 €", ["1234.56 EUR"]),
    # English notation.
    ("en-prefix-sign", "€1,234.56", ["1234.56 EUR"]),
    ("en-suffix-code", "1,450.00 EUR", ["1450.00 EUR"]),
    ("en-dollar", "$500", ["500 USD"]),
    ("en-dollars-word", "500 dollars", ["500 USD"]),
    ("en-usd-prefix", "USD 1,234.56", ["1234.56 USD"]),
    ("en-us-dollar-sign", "US$ 99", ["99 USD"]),
    ("en-usd-suffix", "1234.56 USD", ["1234.56 USD"]),
    ("en-gbp-code", "GBP 20.50", ["20.50 GBP"]),
    ("en-pound-sign", "£20.50", ["20.50 GBP"]),
    ("en-pounds-word", "20 pounds", ["20 GBP"]),
    ("en-cents", "€0.50", ["0.50 EUR"]),
    ("en-glued-code", "EUR1234", ["1234 EUR"]),
    # Swiss.
    ("ch-dash", "CHF 100.–", ["100 CHF"]),
    ("ch-hyphen", "CHF 100.-", ["100 CHF"]),
    ("ch-apostrophe", "CHF 1'234.50", ["1234.50 CHF"]),
    ("ch-franken", "100 Franken", ["100 CHF"]),
    ("ch-sfr", "SFr. 50", ["50 CHF"]),
    # A bare number after a money noun; the currency is not stated.
    ("ctx-betrag-von", "den Betrag von 1.234,56 überweisen", ["1234.56"]),
    ("ctx-amount-of", "an amount of 500", ["500"]),
    ("ctx-colon", "Restbetrag: 234,50", ["234.50"]),
    ("ctx-in-hoehe-von", "eine Zahlung in Höhe von 750", ["750"]),
    ("ctx-payment-of", "a payment of 1,200.00 next week", ["1200.00"]),
    ("ctx-currency-wins", "Betrag von 500 Euro", ["500 EUR"]),
    # Several.
    (
        "several-de",
        "Wir haben 500 € überwiesen, den Rest von 734,56 € zahlen wir am 15.12.",
        ["500 EUR", "734.56 EUR"],
    ),
    ("several-suffix-before-prefix", "500 € 600 €", ["500 EUR", "600 EUR"]),
    ("installments", "3 Raten à 500 €", ["500 EUR"]),
    ("invoice-then-amount", "Rechnung RE-2026-0431 über 500 €", ["500 EUR"]),
    ("percent-then-amount", "19 % von 500 €", ["500 EUR"]),
    ("date-then-amount", "am 15.12. 1.000 €", ["1000 EUR"]),
    # Never money.
    ("invoice-re", "RE-2026-0431", []),
    ("invoice-inv", "INV-2026-1187", []),
    ("invoice-with-currency-after", "RE-2026-0431 €", []),
    ("date", "15.12.2026", []),
    ("date-short", "am 15.12.", []),
    ("date-with-currency-after", "15.12.2026 EUR", []),
    ("time", "um 15:30", []),
    ("time-with-currency-after", "15:30 €", []),
    ("phone", "+49 30 1234567", []),
    ("iban", "IBAN DE89 3704 0044 0532 0130 00", []),
    ("iban-then-currency", "DE89 3704 0044 0532 0130 00 EUR", []),
    ("percent", "19 %", []),
    ("percent-after-noun", "Betrag von 5 %", []),
    ("days", "in 14 Tagen", []),
    ("count-after-noun", "eine Zahlung von 3 Raten", []),
    ("iso-week", "KW 48", []),
    ("bare-german", "1.234,56", []),
    ("bare-english", "12.50", []),
    ("installment-number", "Rate 2 am 15.12.", []),
    ("contradicting-separators", "1.234.56 €", []),
    ("three-decimals", "1234.567 €", []),
]


@pytest.mark.parametrize(
    ("text", "expected"), [pytest.param(*row[1:], id=row[0]) for row in AMOUNTS]
)
def test_amounts(text: str, expected: list[str]) -> None:
    assert found(text) == expected


def test_mention_fields() -> None:
    text = "Wir zahlen € 1.234,56 morgen."
    assert find_amounts(text) == [AmountMention(Decimal("1234.56"), "EUR", 11, 21, "€ 1.234,56")]


def test_values_are_decimal_with_the_written_scale() -> None:
    (amount,) = find_amounts("1.234,56 €")
    assert isinstance(amount.value, Decimal)
    assert amount.value.as_tuple().exponent == -2


def test_never_raises_and_spans_are_exact() -> None:
    rng = random.Random(1187)
    pieces = (
        "1.234,56", "€", "500,-", "EUR", "$", "£", "CHF", "100.–", "Euro", "dollars",
        "RE-2026-0431", "15.12.2026", "15:30", "19", "%", "Betrag", "von", "amount", "of", ":",
        ",", ".", "-", "1'234.50", "DE89", "3704", "0044", "+49", "30", "1234567", "und", "and",
    )  # fmt: skip
    for _ in range(1500):
        if rng.random() < 0.4:
            text = "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 200)))
        else:
            text = " ".join(rng.choice(pieces) for _ in range(rng.randint(0, 50)))
        amounts = find_amounts(text)
        assert [a.start for a in amounts] == sorted(a.start for a in amounts)
        for a in amounts:
            assert text[a.start : a.end] == a.text
            assert isinstance(a.value, Decimal)
            assert a.value >= 0
            assert a.currency in ("EUR", "USD", "GBP", "CHF", "")
        for a, b in itertools.pairwise(amounts):
            assert a.end <= b.start
