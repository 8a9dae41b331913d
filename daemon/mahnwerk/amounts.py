"""Find money amounts in a customer's reply, in German or English notation.

A reply that says "wir haben 500 € überwiesen" or "I'll pay $1,234.56 on Friday" is
matched against the open amount of an invoice, so a misread separator would turn a
partial payment into a full one. Hence a number counts as money only next to a
currency (symbol, code or word) or right after a money noun with a preposition or
colon ("Betrag von 500", "amount of 500", "Restbetrag: 234,50"); every other number
(invoice numbers, dates, times, phone numbers, IBANs, percentages) is left alone.

Separators: the last `.` or `,` followed by one or two digits is the decimal mark,
any other separator (`.`, `,`, `'`, no-break spaces) groups thousands and must group
by three. Exactly three digits after a single separator ("1.234 €", "1,234 €") are
therefore read as thousands, since money has no third decimal. "500,-", "100.–" are
whole amounts. The Decimal keeps the decimals as written: "12,50 €" is
Decimal("12.50"), "500 €" and "500,- €" are Decimal("500").

Pure: regular expressions over the given text, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

__all__ = ["AmountMention", "find_amounts"]


@dataclass(frozen=True, slots=True)
class AmountMention:
    value: Decimal
    currency: str  # "EUR", "USD", "GBP", "CHF" or "" when not stated
    start: int
    end: int
    text: str


# Spelling (lower case, trailing dot dropped) -> ISO code.
_CURRENCIES: dict[str, str] = {
    "€": "EUR",
    "eur": "EUR",
    "euro": "EUR",
    "euros": "EUR",
    "$": "USD",
    "us$": "USD",
    "usd": "USD",
    "dollar": "USD",
    "dollars": "USD",
    "us-dollar": "USD",
    "buck": "USD",
    "bucks": "USD",
    "£": "GBP",
    "gbp": "GBP",
    "pfund": "GBP",
    "pound": "GBP",
    "pounds": "GBP",
    "quid": "GBP",
    "chf": "CHF",
    "sfr": "CHF",
    "fr": "CHF",
    "franken": "CHF",
    "franc": "CHF",
    "francs": "CHF",
}

_GAP = r"[ \u00a0\u202f]?"  # at most one (no-break) space between number and currency
# Thousands groups need one consistent separator (backreference); "1.234,56", "1,234.56",
# "1'234.50", "1234,56", "500"; then an optional "whole amount" dash: "500,-", "100.–".
# Not glued to a word, another number, a time, a date or an ID ("RE-2026-0431").
_AFTER_NOTHING = r"(?<![\w.,'’:/+#])(?<!\w-)"
_NUMBER = (
    r"(?P<num>\d{1,3}(?P<g>[.,'’\u00a0\u202f])\d{3}(?:(?P=g)\d{3})*(?:[.,]\d{1,2})?"
    r"|\d+(?:[.,]\d{1,2})?)"
    r"(?P<dash>[.,][-–—]{1,2})?"
    r"(?![\d'’]|[.,/:-]\d)"
)
_PREFIX = r"(?P<cur>US\$|€|\$|£|\b(?:EUR|USD|GBP|CHF|SFr\.?))"
_SUFFIX = (
    r"(?P<cur>€|\$|£|(?:EUR|USD|GBP|CHF|Euros?|Dollars?|US-Dollar|bucks?|Pfund|pounds?|quid"
    r"|Franken|francs?|SFr\.?|Fr\.)(?![\w-]))"
)
# A bare number is money right after one of these nouns and "von"/"of"/"über"/":".
_MONEY_NOUN = (
    r"\b(?:betrag|betrages|betrags|restbetrag|gesamtbetrag|summe|restsumme|höhe|zahlung"
    r"|teilzahlung|anzahlung|abschlagszahlung|rate|rest|amount|sum|total|balance|payment"
    r"|installment|instalment|remainder|deposit)"
    r"(?:\s+(?:von|über|of|in\s+höhe\s+von)\s+|\s*:\s*)"
)
# ...unless what follows makes it a count, a share or a time.
_NOT_MONEY_AFTER = (
    r"(?!\s*(?:%|prozent|percent|uhr\b|h\b|tage|tagen|days?\b|wochen|weeks?\b|monate|months?\b"
    r"|raten|installments|instalments|x\b|mal\b|st(?:ück)?\b|pcs\b))"
)

# Digit runs that are identifiers, whatever currency stands next to them.
_NOT_MONEY: tuple[re.Pattern[str], ...] = (
    re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b"),  # IBAN
    re.compile(r"\+\d{1,3}[\s\d()/-]{6,}\d"),  # international phone number
)

_FLAGS = re.IGNORECASE
_WITH_CURRENCY: tuple[re.Pattern[str], ...] = (
    re.compile(_PREFIX + _GAP + _NUMBER, _FLAGS),
    re.compile(_AFTER_NOTHING + _NUMBER + _GAP + _SUFFIX, _FLAGS),
)
_CONTEXT = re.compile(
    _MONEY_NOUN + _AFTER_NOTHING + r"(?P<bare>" + _NUMBER + r")" + _NOT_MONEY_AFTER, _FLAGS
)


def find_amounts(text: str) -> list[AmountMention]:
    """Money amounts in German or English notation, in text order.

    Amounts with a stated currency win over a bare-number reading of the same digits.
    """
    return list(_find_amounts(text))


# The classifier asks for the same body twice: once itself, once through find_dates
# (which masks money so that "12.50" is no date).
@lru_cache(maxsize=32)
def _find_amounts(text: str) -> tuple[AmountMention, ...]:
    found: list[AmountMention] = []
    taken = [m.span() for pattern in _NOT_MONEY for m in pattern.finditer(text)]
    # Leftmost first: in "500 € 600 €" the € belongs to the 500, not to a prefixed "€ 600".
    stated = sorted(
        (m for pattern in _WITH_CURRENCY for m in pattern.finditer(text)), key=lambda m: m.start()
    )
    for m in stated:
        _take(m, m.span(), _currency(m.group("cur")), text, found, taken)
    for m in _CONTEXT.finditer(text):
        _take(m, m.span("bare"), "", text, found, taken)
    found.sort(key=lambda a: a.start)
    return tuple(found)


def _take(
    m: re.Match[str],
    span: tuple[int, int],
    currency: str,
    text: str,
    found: list[AmountMention],
    taken: list[tuple[int, int]],
) -> None:
    start, end = span
    if any(start < e and s < end for s, e in taken):
        return
    value = _value(m.group("num"), m.group("g"))
    if value is None:
        return
    taken.append(span)
    found.append(AmountMention(value, currency, start, end, text[start:end]))


def _value(number: str, group_sep: str | None) -> Decimal | None:
    """The number as Decimal, or None when its separators contradict each other."""
    whole, decimals = number, ""
    last = max(number.rfind("."), number.rfind(","))
    if last >= 0 and len(number) - last - 1 in (1, 2):
        whole, decimals = number[:last], number[last + 1 :]
        if group_sep is not None and number[last] == group_sep:
            return None  # "1.234.56": the decimal mark cannot also group thousands
    digits = re.sub(r"\D", "", whole)
    return Decimal(f"{digits}.{decimals}" if decimals else digits)


def _currency(spelled: str) -> str:
    return _CURRENCIES.get(spelled.lower().rstrip("."), "")
