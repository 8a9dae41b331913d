"""Find and resolve the dates in a customer's reply ("bis nächsten Freitag", "paid on the 18th").

A reply's dates become a promised or a paid date, so a misread one either chases a
customer who kept their word or waits for a payment nobody promised. Hence a phrase
counts as a date only when a row of the table below says so, and every mention names
its row (`DateMention.rule`), so the reason shown to a user can say how a date was read.

Why a hand-written table and not a library such as dateparser: used alone, dateparser
reads plain words ("Die", "We") as dates and "am 15.12" as a time, knows nothing of
deadlines (a vague period means its end) or of the clause's tense, and is a large
dependency that is slow per call. The table is small, fast, has no dependency, and each
accepted form is one row with one test.

How it works:

1. Spans that are never dates are masked first (`_NOT_DATES`): times ("um 15:30",
   "15.30 Uhr"), phone numbers, IBANs, references ("RE-2026-0431", "Nr. 12/4"),
   percentages, "24/7", "Suite 12/4", "Rate 1/3", "guten Morgen", "Frau Mai", and
   money (`amounts.find_amounts`).
2. Every row of `_RULES` is matched; overlapping matches are settled longest first, so
   "nächste Woche Dienstag" beats "nächste Woche" and "Dienstag".
3. Each kept match gets the tense of its clause from `_CUES` and is resolved.

Tense: the text is cut into sentences (. ! ? ; blank line, and a contrast: ", aber",
", sondern", ", jedoch", but, however) and those into clauses (comma, colon, und/oder,
and/or). The cues of the date's clause decide; a clause without cues takes those of its
sentence. Cues (`_CUES`) weigh 3 (auxiliaries, which fix the whole verb phrase:
werden/wird, wurde/war, will/shall/'ll, going to, was/were/did/had), 2 (verb forms:
überwiesen/bezahlt/gezahlt/beglichen/ging, haben ... angewiesen, paid/sent/transferred/
made vs. zahlen/überweisen/erfolgt, pay/transfer/can/should) or 1 (adverbs and
prepositions: bis/spätestens/nächst/kommend/morgen, by/until/next/tomorrow vs.
gestern/letzt/bereits, yesterday/last/ago). The heaviest cue wins, the nearest one among
equals; so "wird am Freitag überwiesen" is future and "paid by card on Monday" past.

Resolution, against the anchor (the calendar day of the mail's Date header in its own
UTC offset). A promise names a deadline, so a vague period means its end:

- weekday: future or unclear clause -> first such day strictly after the anchor; past
  clause -> most recent one strictly before. "nächsten"/"next"/"kommenden" force the
  former, "letzten"/"last"/"vergangenen" the latter.
- week: "diese Woche", "Ende der Woche", "this week" -> Friday of the anchor's week;
  "nächste Woche", "Ende nächster Woche", "next week" -> Friday of the next week
  ("übernächste Woche" the one after); "nächste Woche Dienstag" -> that weekday.
  "Anfang nächster Woche"/"early next week" -> Tuesday, "Mitte ..."/"mid ..." ->
  Wednesday (Monday to Tuesday is the start, so the deadline is Tuesday). "letzte
  Woche"/"last week" -> Friday of the week before, "Dienstag letzter Woche" that Tuesday.
- month: "Ende des Monats", "Ende Monat", "Monatsende", "by month end" -> last day of
  the anchor's month; "nächsten Monat"/"next month" -> last day of the next month,
  "letzten Monat"/"last month" of the one before. "Anfang X"/"early X" -> the 10th (the
  first third of a month; its end is the deadline), "Mitte X"/"mid-X" -> the 15th,
  "Ende X"/"end of X"/"im X"/"in X" -> the last day.
  "Anfang/Mitte des Monats" without a named month is a recurring point: once passed,
  it means next month's.
- "KW 48" -> Friday of ISO week 48; "Jahresende" -> 31 December.
- "on the 18th", "bis zum 10." -> next occurrence of that day of the month, strictly
  after the anchor (strictly before it in a past clause); "zum 1. des kommenden Monats"
  -> that day in the next month (clamped to its length).
- "in zwei Wochen", "binnen 14 Tagen", "within 10 days", "in a fortnight" add days;
  "5 Werktage" counts Monday to Friday (holidays are not known here); "in 2 Monaten"
  adds months; "vor 3 Tagen"/"3 days ago" subtract. heute/morgen/übermorgen/gestern/
  vorgestern and today/tomorrow/yesterday shift by 0, 1 or 2.
- numeric dates: "15.12." and "15.12.2026" are always day.month; "04/12", "12/4/2026"
  and "12-4-2026" follow the sender's `NumericOrder` (see `numeric_order_for`). A
  "d.m" without the trailing dot needs a preposition ("am 15.12"), and "d/m" needs one
  or a two-digit part, since "12.50" and "1/2" are numbers.
- year inference for dates without a year: in a future or unclear clause, this year's,
  unless that lies more than 60 days before the anchor, then next year's ("15.01."
  written in December); in a past clause the most recent one not after the anchor. A
  past clause naming a period that is still running ("diese Woche überwiesen") gives the
  anchor itself, the latest day it can mean.

The span of a mention leaves out plain prepositions ("am", "bis", "on", "by"), which
only introduce the date, but keeps words that change it ("nächsten", "Ende", "in").
Umlauts may be written ae/oe/ue or decomposed, ß as ss; case does not matter.

Pure: no I/O and no clock; the anchor is always passed in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from mahnwerk.amounts import find_amounts

__all__ = ["DateMention", "NumericOrder", "Tense", "find_dates", "numeric_order_for"]

Tense = Literal["future", "past", "none"]
NumericOrder = Literal["dmy", "mdy"]


@dataclass(frozen=True, slots=True)
class DateMention:
    value: date  # the resolved calendar date
    start: int  # span of the phrase in the input text
    end: int
    text: str  # the phrase as written
    tense: Tense  # tense of the clause the phrase sits in ("none" if unclear)
    rule: str  # the table row that resolved it, e.g. "weekday", "month_end", "iso_week"


# --- Vocabulary -------------------------------------------------------------------------
# Patterns are written with plain umlauts; _compile lets each also match ae/oe/ue,
# decomposed umlauts and ss for ß. {NAME} inserts the entry of _VOCAB.

_UMLAUTS = {
    "ä": "(?:ä|ae|a\u0308)",
    "ö": "(?:ö|oe|o\u0308)",
    "ü": "(?:ü|ue|u\u0308)",
    "ß": "(?:ß|ss)",
}


def _expand(src: str) -> str:
    return "".join(_UMLAUTS.get(ch, ch) for ch in src)


@dataclass(frozen=True, slots=True)
class _Words:
    """A closed word list: its pattern for embedding, and the value of a matched word."""

    src: str
    entries: tuple[tuple[re.Pattern[str], int], ...]

    def value(self, word: str) -> int | None:
        word = " ".join(word.split()).rstrip(".")
        return next((v for p, v in self.entries if p.fullmatch(word)), None)


def _words(pairs: Iterable[tuple[str, int]], tail: str = r"\b") -> _Words:
    pairs = tuple(pairs)
    src = "(?:" + "|".join(_expand(s) for s, _ in pairs) + ")" + tail
    return _Words(src, tuple((re.compile(_expand(s), re.IGNORECASE), v) for s, v in pairs))


# Month number -> (full names, abbreviations).
_MONTH_NAMES = (
    ("januar|january|jänner", "jan"),
    ("februar|february|feber", "feb"),
    ("märz|march", "mrz|mär|mar"),
    ("april", "apr"),
    ("mai|may", ""),
    ("juni|june", "jun"),
    ("juli|july", "jul"),
    ("august", "aug"),
    ("september", "sept|sep"),
    ("oktober|october", "okt|oct"),
    ("november", "nov"),
    ("dezember|december", "dez|dec"),
)
_MONTHS = _words(
    (f"{full}|{abbr}" if abbr else full, n) for n, (full, abbr) in enumerate(_MONTH_NAMES, 1)
)
# Only an abbreviation takes a dot: "15 Dec." but not the full stop of "on 1st December."
_MONTHS_SRC = (
    "(?:(?:" + "|".join(_expand(full) for full, _ in _MONTH_NAMES) + r")\b"
    "|(?:" + "|".join(_expand(abbr) for _, abbr in _MONTH_NAMES if abbr) + r")\b\.?)"
)
# Without a day number only full names count, and May/Mai only capitalised ("we may").
_MONTHS_FULL = (
    "(?:"
    + "|".join(full for n, (full, _) in enumerate(_MONTH_NAMES, 1) if n != 5)
    + "|(?-i:Mai|May|MAI|MAY))\\b"
)
_WEEKDAYS = _words(
    (names, n)
    for n, names in enumerate(
        (
            "montag|monday",
            "dienstag|tuesday",
            "mittwoch|wednesday",
            "donnerstag|thursday",
            "freitag|friday",
            "samstag|sonnabend|saturday",
            "sonntag|sunday",
        )
    )
)
_WEEKDAY_ABBREVIATIONS = "mo|di|mi|do|fr|sa|so|mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun"
_NUMBER_WORDS = _words(
    [
        (r"ein|eine|einem|einer|einen|a|an|one", 1),
        (r"zwei|two|a\s+couple\s+of|couple\s+of|ein\s+paar", 2),
        (r"drei|three", 3),
        (r"vier|four", 4),
        (r"fünf|five", 5),
        (r"sechs|six", 6),
        (r"sieben|seven", 7),
        (r"acht|eight", 8),
        (r"neun|nine", 9),
        (r"zehn|ten", 10),
        (r"elf|eleven", 11),
        (r"zwölf|twelve", 12),
        (r"vierzehn|fourteen", 14),
        (r"fünfzehn|fifteen", 15),
        (r"zwanzig|twenty", 20),
        (r"dreißig|thirty", 30),
    ]
)

_VOCAB: dict[str, str] = {
    # Numbers glued to a word, an ID, another number or a time are not dates.
    "L": r"(?<![\w.,/:+#-])",
    "WD": r"\b" + _WEEKDAYS.src,
    # "Freitag, den 15.12.", "Fr., 15.12.", "Friday, December 15th": part of the date.
    "WDP": r"(?:(?:{WD}|\b(?:" + _WEEKDAY_ABBREVIATIONS + r")\.)\s*,?\s*(?:(?:den|the)\s+)?)",
    "MON": _MONTHS_SRC,
    "MONF": _MONTHS_FULL,
    "NUM": r"(?:\d{1,3}|\b" + _NUMBER_WORDS.src + ")",
    "NEXT": r"(?:nächste[nmrs]?|kommende[nmrs]?|folgende[nmrs]?|(?:this\s+)?coming|next"
    r"|following)",
    "LAST": r"(?:letzte[nmrs]?|vergangene[nmrs]?|vorige[nmrs]?|(?:this\s+)?past|last|previous)",
    "THIS": r"(?:diese[nmrs]?|this)",
    # Prepositions that make a bare "15.12", "12/4" or "18." a date.
    "CUE": r"(?:am|zum|bis\s+zum|bis\s+spätestens(?:\s+zum|\s+am)?|bis|ab\s+dem|ab|vom|seit"
    r"(?:\s+dem)?|spätestens(?:\s+am|\s+zum|\s+bis\s+zum)?|den|on|by|until|till|before|from"
    r"|after|due|per|no\s+later\s+than)",
    "PEND": r"(?:ende|(?:the\s+)?end\s+of|late|later)",
    "PSTART": r"(?:anfang|beginn|early|(?:the\s+)?(?:beginning|start)\s+of)",
    "PMID": r"(?:mitte|mid|(?:the\s+)?middle\s+of)",
    "WK_THIS": r"(?:{THIS}\s+(?:woche|week))\b",
    "WK_THIS_AFTER_PART": r"(?:(?:der|dieser)\s+woche|(?:the|this)\s+week)\b",
    "WK_NEXT": r"(?:(?:der\s+)?(?:über)?{NEXT}\s+woche|(?:the\s+)?week\s+after\s+next"
    r"|(?:the\s+)?{NEXT}\s+week)\b",
    "WK_LAST": r"(?:(?:der\s+)?{LAST}\s+(?:woche|week))\b",
    # "Ende Monat" without an article is Swiss and Austrian.
    "M_THIS": r"(?:(?:des|dieses|diesen)\s+(?:laufenden\s+)?monats|monats?|(?:the|this)\s+month)\b",
    "M_LAST": r"(?:(?:des\s+)?{LAST}\s+monats?|(?:the\s+)?{LAST}\s+month)\b",
    "M_NEXT": r"(?:(?:des\s+)?{NEXT}\s+monats?|(?:the\s+)?{NEXT}\s+month)\b",
    "WITHIN": r"(?:in|binnen|innerhalb(?:\s+von|\s+der\s+nächsten)?|within(?:\s+the\s+next)?"
    r"|in\s+den\s+nächsten|in\s+the\s+next|spätestens\s+in|nach|after)\s+(?:ca\.\s*|etwa\s+"
    r"|circa\s+|about\s+|approx(?:\.|imately)?\s+)?",
    "Y": r"(?:,?\s*(?P<y>\d{4}))?",
    "ORD": r"(?:st|nd|rd|th)",
    "DM_END": r"(?![\d.]|,\d)",
    "SL_END": r"(?![\d/]|[.,]\d)",
    "REL": r"(?:(?P<rel>{NEXT}|{THIS}|laufenden)\s+)?",
    # Inside a cue: anything but a sentence end; a period after a digit ("am 24.11.") is none.
    "GAP": r"(?:[^.!?;\n]|(?<=\d)\.)",
    # Ordinals before these nouns are counts ("zum 2. Mal"), not days of the month.
    "NOUNS": r"(?:mal|tag|tage|tagen|mahnung|rate|raten|teil|teilzahlung|quartal|advent|stock"
    r"|platz|klasse|woche|monat|jahr|zahlung|erinnerung|versuch|schritt|punkt|kw"
    r"|kalenderwoche|lieferung|reminder|installment|instalment|payment|time|notice|invoice"
    r"|quarter|week|attempt|day|month|year)\b",
}


def _compile(src: str, flags: int = re.IGNORECASE) -> re.Pattern[str]:
    token = re.compile(r"\{([A-Z_]+)\}")
    while token.search(src):
        src = token.sub(lambda m: _VOCAB[m.group(1)], src)
    return re.compile(_expand(src), flags)


# --- What is never a date ---------------------------------------------------------------

# (kind, pattern): spans masked before any rule runs; the kind only documents the row.
_NOT_DATES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, _compile(src))
    for kind, src in (
        ("time", r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\s*(?:uhr|h)\b|\s*[ap]\.?m\.?(?!\w))?"),
        ("time", r"\b\d{1,2}(?:[.:]\d{2})?\s*(?:uhr|h|o'?clock)\b"),
        ("time", r"\b\d{1,2}(?::\d{2})?\s*[ap]\.?m\.?(?!\w)(?!\s*\d)"),
        ("time", r"\b(?:um|gegen|at|around)\s+(?:[01]?\d|2[0-3])[.:][0-5]\d\b(?![.:]?\d)"),
        ("phone", r"(?<![\w+])\+\d{1,3}[\s\d()/.-]{6,}\d"),
        ("phone", r"(?<![\w.,/])\(?0\d{2,5}\)?\s*[/-]?\s*\d{3,}(?:[\s-]?\d{2,})*"),
        ("phone", r"\b(?:tel|telefon|fon|phone|mobil|mobile|handy|fax)\b\.?:?\s*"
                  r"[\d+(][\d\s()/.+-]{5,}\d"),
        ("iban", r"\b(?-i:[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?)\b"),
        ("reference", r"(?<![\w-])(?!(?:kw|cw)\s?\d)[a-z]{1,8}[-_/#]?\d+(?:[-_/.]\d+)*"),
        ("reference", r"\b(?:nr|no|nummer|number|ref|az|aktenzeichen|kundennummer|kd-?nr)\b\.?"
                      r"\s*:?\s*#?\s*\d[\w/.-]*"),
        ("reference", r"#\s?\d[\w/.-]*"),
        # "Suite 12/4", "Top 3/12", "Rate 10/12": an address or a share, not a day.
        ("numbered", r"\b(?:suite|ste|flat|apt|apartment|unit|room|zimmer|haus|raum|wohnung|whg"
                     r"|top|stiege|tür|gebäude|building|seite|page|rate|raten|teil|teilzahlung"
                     r"|installment|instalment|part|payment)\.?\s*\d{1,4}\s*/\s*\d{1,4}\b"),
        ("percentage", r"\b\d+(?:[.,]\d+)?\s*(?:%|prozent\b|percent\b|pct\b)"),
        ("always", r"\b24\s?/\s?7\b"),
        ("morning", r"\b(?:guten|gute[nm]?|jeden|am|den|diesen|einen|schönen|folgenden)"
                    r"\s+morgen\b"),
        ("name", r"\b(?:frau|herrn?|hr\.|fr\.|familie|mr\.?|mrs\.?|ms\.?)\s+"
                 r"(?:mai|may|april|june|juni|august)\b"),
    )
)  # fmt: skip


# --- Resolution -------------------------------------------------------------------------

# A date without a year in a future clause may lie this far back before it means next year.
_STALE = timedelta(days=60)
_FRIDAY, _TUESDAY, _WEDNESDAY = 4, 1, 2


@dataclass(frozen=True, slots=True)
class _Ctx:
    anchor: date
    tense: Tense
    order: NumericOrder


Resolver = Callable[[re.Match[str], _Ctx], date | None]
# One occurrence of a period in a given year: (its first day, the day it stands for).
_Period = Callable[[int], tuple[date, date] | None]

_NEXT_WORD = _compile(r"\b(?:nächst|kommend|folgend|next|coming|following)")
_LAST_ANY = _compile(r"\b(?:letzt|vergangen|vorig|last|past|previous)")
_AFTER_NEXT = _compile(r"über|after\s+next")
_LAST_WORD = _compile(r"^{LAST}$")
_WEEKS = _compile(r"^(?:woche|week)")
_MONTHS_UNIT = _compile(r"^(?:monat|month)")


def _day(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _month_last(year: int, month: int) -> date:
    first_of_next = date(year + month // 12, month % 12 + 1, 1)
    return first_of_next - timedelta(days=1)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, _month_last(year, month + 1).day))


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _year(text: str) -> int:
    return 2000 + int(text) if len(text) == 2 else int(text)


def _group(m: re.Match[str], name: str) -> str | None:
    return m.groupdict().get(name)


def _in_year(period: _Period, base_year: int, ctx: _Ctx) -> date | None:
    """Place a period given without a year (see the module docstring)."""
    if ctx.tense == "past":
        for year in range(base_year, base_year - 9, -1):
            got = period(year)
            if got is not None and got[0] <= ctx.anchor:
                return min(got[1], ctx.anchor)
        return None
    for year in range(base_year, base_year + 9):
        got = period(year)
        if got is not None and got[1] >= ctx.anchor - _STALE:
            return got[1]
    return None


def _one_day(month: int, day: int) -> _Period:
    def period(year: int) -> tuple[date, date] | None:
        found = _day(year, month, day)
        return None if found is None else (found, found)

    return period


def _explicit(year: int | None, month: int, day: int, ctx: _Ctx) -> date | None:
    if year is not None:
        return _day(year, month, day)
    return _in_year(_one_day(month, day), ctx.anchor.year, ctx)


def _ordered(m: re.Match[str], ctx: _Ctx) -> tuple[int, int]:
    """(month, day) of "a/b" in the sender's order."""
    a, b = int(m.group("a")), int(m.group("b"))
    return (b, a) if ctx.order == "dmy" else (a, b)


def _iso(m: re.Match[str], ctx: _Ctx) -> date | None:
    return _day(int(m.group("y")), int(m.group("m")), int(m.group("d")))


def _dotted(m: re.Match[str], ctx: _Ctx) -> date | None:
    y = _group(m, "y")
    return _explicit(_year(y) if y else None, int(m.group("m")), int(m.group("d")), ctx)


def _slashed(m: re.Match[str], ctx: _Ctx) -> date | None:
    y = _group(m, "y")
    month, day = _ordered(m, ctx)
    return _explicit(_year(y) if y else None, month, day, ctx)


def _named(m: re.Match[str], ctx: _Ctx) -> date | None:
    month = _MONTHS.value(m.group("mon"))
    y = _group(m, "y")
    return (
        None if month is None else _explicit(int(y) if y else None, month, int(m.group("d")), ctx)
    )


def _weekday(m: re.Match[str], ctx: _Ctx) -> date | None:
    wd = _WEEKDAYS.value(m.group("wd"))
    if wd is None:
        return None
    mod = _group(m, "mod") or ""
    if _NEXT_WORD.search(mod):
        backwards = False
    elif _LAST_WORD.match(mod):
        backwards = True
    else:  # "diesen Freitag", "Friday": the clause decides
        backwards = ctx.tense == "past"
    if backwards:
        return ctx.anchor - timedelta(days=(ctx.anchor.weekday() - wd) % 7 or 7)
    return ctx.anchor + timedelta(days=(wd - ctx.anchor.weekday()) % 7 or 7)


def _offset(text: str) -> int:
    """Which week or month a phrase names: -1 last, 0 this, 1 next, 2 the one after."""
    if _AFTER_NEXT.search(text):
        return 2
    return 1 if _NEXT_WORD.search(text) else -1 if _LAST_ANY.search(text) else 0


def _week_weekday(m: re.Match[str], ctx: _Ctx) -> date | None:
    wd = _WEEKDAYS.value(m.group("wd"))
    if wd is None:
        return None
    return _monday(ctx.anchor) + timedelta(days=7 * _offset(m.group("wk")) + wd)


def _week_point(weekday: int, roll: bool) -> Resolver:
    """A day of the last/this/next week; `roll`: a start/middle already passed means next
    week's."""

    def resolve(m: re.Match[str], ctx: _Ctx) -> date | None:
        offset = _offset(m.group("p"))
        point = _monday(ctx.anchor) + timedelta(days=7 * offset + weekday)
        if offset == 0 and ctx.tense == "past":
            return min(point, ctx.anchor)
        if offset == 0 and roll and point < ctx.anchor:
            point += timedelta(days=7)
        return point

    return resolve


Part = Literal["start", "mid", "end"]


def _point_in_month(year: int, month: int, part: Part) -> date:
    if part == "end":
        return _month_last(year, month)
    return date(year, month, 10 if part == "start" else 15)


def _month_point(part: Part) -> Resolver:
    """Start, middle or end of the last, this or the next month."""

    def resolve(m: re.Match[str], ctx: _Ctx) -> date | None:
        offset = _offset(m.group("p"))
        first = _add_months(ctx.anchor.replace(day=1), offset)
        point = _point_in_month(first.year, first.month, part)
        if offset == 0 and ctx.tense == "past":
            return min(point, ctx.anchor)
        if offset == 0 and point < ctx.anchor:  # only a start or middle can have passed
            first = _add_months(first, 1)
            point = _point_in_month(first.year, first.month, part)
        return point

    return resolve


def _named_month_point(part: Part) -> Resolver:
    """Start, middle or end of a named month ("Anfang Januar", "mid-December", "im Mai")."""

    def resolve(m: re.Match[str], ctx: _Ctx) -> date | None:
        month = _MONTHS.value(m.group("mon"))
        if month is None:
            return None
        y = _group(m, "y")
        if y:
            return _point_in_month(int(y), month, part)

        def period(year: int) -> tuple[date, date]:
            return date(year, month, 1), _point_in_month(year, month, part)

        return _in_year(period, ctx.anchor.year, ctx)

    return resolve


def _year_end(m: re.Match[str], ctx: _Ctx) -> date | None:
    point = date(ctx.anchor.year, 12, 31)
    return min(point, ctx.anchor) if ctx.tense == "past" else point


def _iso_week(m: re.Match[str], ctx: _Ctx) -> date | None:
    week = int(m.group("w"))

    def period(year: int) -> tuple[date, date] | None:
        try:
            return date.fromisocalendar(year, week, 1), date.fromisocalendar(year, week, 5)
        except ValueError:
            return None

    y = _group(m, "y")
    if y:
        got = period(int(y))
        return None if got is None else got[1]
    return _in_year(period, ctx.anchor.isocalendar().year, ctx)


def _day_of_month(m: re.Match[str], ctx: _Ctx) -> date | None:
    day = int(m.group("d"))
    if not 1 <= day <= 31:
        return None
    rel = _group(m, "rel") or ""
    if _NEXT_WORD.search(rel):
        first = _add_months(ctx.anchor.replace(day=1), 1)
        return first.replace(day=min(day, _month_last(first.year, first.month).day))
    step = -1 if ctx.tense == "past" else 1
    first = ctx.anchor.replace(day=1)
    for k in range(0, 13 * step, step):
        month = _add_months(first, k)
        found = _day(month.year, month.month, day)
        if found is not None and (found < ctx.anchor if step < 0 else found > ctx.anchor):
            return found
    return None


def _count(m: re.Match[str]) -> int | None:
    n = m.group("n")
    return int(n) if n.isdigit() else _NUMBER_WORDS.value(n)


def _relative(sign: int) -> Resolver:
    """N days, weeks or months after (sign 1) or before (sign -1) the anchor."""

    def resolve(m: re.Match[str], ctx: _Ctx) -> date | None:
        n = _count(m)
        if n is None:
            return None
        unit = m.group("unit")
        if _MONTHS_UNIT.match(unit):
            return _add_months(ctx.anchor, sign * n)
        return ctx.anchor + timedelta(days=sign * n * (7 if _WEEKS.match(unit) else 1))

    return resolve


def _business_days(m: re.Match[str], ctx: _Ctx) -> date | None:
    n = _count(m)
    if n is None:
        return None
    day = ctx.anchor
    while n > 0:
        day += timedelta(days=1)
        n -= day.weekday() < 5
    return day


def _shift(days: int) -> Resolver:
    def resolve(m: re.Match[str], ctx: _Ctx) -> date | None:
        return ctx.anchor + timedelta(days=days)

    return resolve


# --- The table --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    pattern: re.Pattern[str]
    resolve: Resolver
    with_year: str = ""  # the name instead when the phrase wrote its year


def _rule(name: str, resolve: Resolver, src: str, with_year: str = "") -> _Rule:
    return _Rule(name, _compile(src), resolve, with_year)


# The mention's span is group "p" where a row has one (it leaves out a leading preposition).
# Rows are tried all at once; overlapping matches are settled longest first.
_RULES: tuple[_Rule, ...] = (
    # Explicit dates.
    _rule("date", _iso,
          r"{L}(?P<p>{WDP}?(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2}))(?!\d|[.,]\d)"),
    _rule("date", _dotted,
          r"{L}(?P<p>{WDP}?(?P<d>\d{1,2})\.\s?(?P<m>\d{1,2})\.(?:\s(?=\d{4}))?"
          r"(?P<y>\d{4}|\d{2}))(?!\d|[.,]\d)"),
    _rule("date", _slashed,
          r"{L}(?P<p>{WDP}?(?P<a>\d{1,2})(?P<s>[/-])(?P<b>\d{1,2})(?P=s)(?P<y>\d{4}|\d{2}))"
          r"(?![\d/]|[.,-]\d)"),
    _rule("day_month", _dotted, r"{L}(?P<p>{WDP}?(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.)(?!\d)"),
    _rule("day_month", _dotted, r"\b{CUE}\s+(?P<p>{WDP}?(?P<d>\d{1,2})\.(?P<m>\d{1,2})){DM_END}"),
    _rule("day_month", _dotted, r"{L}(?P<p>{WDP}(?P<d>\d{1,2})\.(?P<m>\d{1,2})){DM_END}"),
    _rule("day_month", _slashed, r"\b{CUE}\s+(?P<p>{WDP}?(?P<a>\d{1,2})/(?P<b>\d{1,2})){SL_END}"),
    _rule("day_month", _slashed,
          r"{L}(?P<p>{WDP}?(?=\d{2}/|\d/\d{2}(?!\d))(?P<a>\d{1,2})/(?P<b>\d{1,2})){SL_END}"),
    _rule("day_month", _named,
          r"{L}(?P<p>{WDP}?(?:the\s+)?(?P<d>\d{1,2})(?:\.|{ORD})?\s*(?:of\s+)?(?P<mon>{MON}){Y})"
          r"(?!\w|[.,]\d)", with_year="date"),
    _rule("day_month", _named,
          r"\b(?P<p>{WDP}?(?P<mon>{MON})\s*(?P<d>\d{1,2}){ORD}?{Y})(?![\w:]|[.,/-]\d)",
          with_year="date"),
    # Weekdays, alone or in a named week.
    _rule("week_weekday", _week_weekday,
          r"\b(?P<p>(?P<wk>{WK_NEXT}|{WK_THIS}|{WK_LAST})\s+(?:(?:am|on)\s+)?(?P<wd>{WD}))"),
    _rule("week_weekday", _week_weekday,
          r"\b(?P<p>(?P<wd>{WD})\s+(?:(?:in\s+)?der\s+|of\s+)?"
          r"(?P<wk>{WK_NEXT}|{WK_THIS}|{WK_LAST}))"),
    _rule("weekday", _weekday, r"\b(?P<p>(?:(?P<mod>{NEXT}|{LAST}|{THIS})\s+)?(?P<wd>{WD}))"),
    # Weeks.
    _rule("this_week", _week_point(_FRIDAY, roll=False),
          r"\b(?P<p>(?:{PEND}[\s-]+)?{WK_THIS}|{PEND}[\s-]+{WK_THIS_AFTER_PART}"
          r"|(?:im\s+laufe|in\s+the\s+course)\s+(?:der|dieser|of\s+the|of\s+this)\s+"
          r"(?:woche|week)\b)"),
    _rule("next_week", _week_point(_FRIDAY, roll=False),
          r"\b(?P<p>(?:(?:{PEND}|im\s+laufe|in\s+the\s+course\s+of)[\s-]+)?{WK_NEXT})"),
    _rule("last_week", _week_point(_FRIDAY, roll=False),
          r"\b(?P<p>(?:{PEND}[\s-]+)?{WK_LAST})"),
    _rule("week_start", _week_point(_TUESDAY, roll=True),
          r"\b(?P<p>{PSTART}[\s-]+(?:{WK_NEXT}|{WK_THIS_AFTER_PART}))"),
    _rule("week_mid", _week_point(_WEDNESDAY, roll=True),
          r"\b(?P<p>{PMID}[\s-]+(?:{WK_NEXT}|{WK_THIS_AFTER_PART}))"),
    _rule("iso_week", _iso_week,
          r"\b(?P<p>(?:kw|cw|kalenderwoche|calendar\s+week|week|woche)\s*(?P<w>\d{1,2})"
          r"(?:\s*/\s*(?P<y>\d{4}))?)(?!\w|[.,:]\d)"),
    _rule("iso_week", _iso_week, r"{L}(?P<p>(?P<w>\d{1,2})\.\s*(?:kw|kalenderwoche))\b"),
    # This month, the next month, a named month, the year.
    _rule("month_end", _month_point("end"),
          r"\b(?P<p>{PEND}[\s-]+{M_THIS}|monatsende|(?:the\s+)?month[\s-]?end|end\s+of\s+month"
          r"|ultimo|monatsletzte[nr]?)\b"),
    _rule("month_start", _month_point("start"),
          r"\b(?P<p>{PSTART}[\s-]+{M_THIS}|monatsanfang|monatsbeginn)\b"),
    _rule("month_mid", _month_point("mid"),
          r"\b(?P<p>{PMID}[\s-]+{M_THIS}|mid[\s-]month|monatsmitte)\b"),
    _rule("next_month", _month_point("end"),
          r"\b(?P<p>(?:(?:{PEND}|im\s+laufe|in\s+the\s+course\s+of)[\s-]+)?{M_NEXT})"),
    _rule("last_month", _month_point("end"), r"\b(?P<p>(?:{PEND}[\s-]+)?{M_LAST})"),
    _rule("month_start", _month_point("start"), r"\b(?P<p>{PSTART}[\s-]+{M_NEXT})"),
    _rule("month_mid", _month_point("mid"), r"\b(?P<p>{PMID}[\s-]+{M_NEXT})"),
    _rule("month_end", _named_month_point("end"),
          r"\b(?P<p>{PEND}[\s-]+(?:of\s+)?(?P<mon>{MON}){Y})(?!\w)"),
    _rule("month_start", _named_month_point("start"),
          r"\b(?P<p>{PSTART}[\s-]+(?:of\s+)?(?P<mon>{MON}){Y})(?!\w)"),
    _rule("month_mid", _named_month_point("mid"),
          r"\b(?P<p>{PMID}[\s-]+(?:of\s+)?(?P<mon>{MON}){Y})(?!\w)"),
    _rule("month", _named_month_point("end"),
          r"\b(?:im|in|bis(?:\s+zum)?|until|till|by|before|during|noch\s+im|im\s+laufe\s+des)\s+"
          r"(?P<p>(?P<mon>{MONF}){Y})\b"),
    _rule("year_end", _year_end,
          r"\b(?P<p>jahresende|{PEND}[\s-]+(?:des|dieses)\s+jahres"
          r"|{PEND}[\s-]+(?:the\s+|this\s+)?year|year[\s-]end)\b"),
    # Days of the month.
    _rule("day_of_month", _day_of_month,
          r"\b{CUE}\s+(?P<p>(?P<d>\d{1,2})\.(?:\s*(?:des\s+)?{REL}monats\b)?)"
          r"(?!\d|\s*(?:{MON}|{NOUNS}))"),
    _rule("day_of_month", _day_of_month, r"{L}(?P<p>(?P<d>\d{1,2})\.\s*(?:des\s+)?{REL}monats)\b"),
    _rule("day_of_month", _day_of_month,
          r"\b{CUE}\s+(?:the\s+)?"
          r"(?P<p>(?P<d>\d{1,2}){ORD}(?:\s+(?:of\s+)?(?:the\s+)?{REL}month\b)?)"
          r"(?!\w|\s*(?:of\s+)?(?:{MON}|{NOUNS}))"),
    _rule("day_of_month", _day_of_month,
          r"\b(?:the\s+)?(?P<p>(?P<d>\d{1,2}){ORD}\s+(?:of\s+)?(?:the\s+)?{REL}month)\b"),
    # Counted days, weeks and months.
    _rule("relative_days", _relative(1),
          r"\b(?P<p>{WITHIN}(?P<n>{NUM})\s+(?P<unit>tagen|tage|tag|days?|wochen|woche|weeks?))\b"),
    _rule("relative_days", _shift(14), r"\b(?P<p>(?:in|within)\s+(?:a|one)\s+fortnight)\b"),
    _rule("business_days", _business_days,
          r"\b(?P<p>{WITHIN}(?P<n>{NUM})\s+"
          r"(?:(?:bank)?(?:werk|arbeits)tag(?:e|en)?|(?:business|working|bank)\s+days?))\b"),
    _rule("relative_months", _relative(1),
          r"\b(?P<p>{WITHIN}(?P<n>{NUM})\s+(?P<unit>monaten|monate|monat|months?))\b"),
    _rule("days_ago", _relative(-1),
          r"\b(?P<p>vor\s+(?P<n>{NUM})\s+(?P<unit>tagen|tag|wochen|woche|monaten|monat))\b"),
    _rule("days_ago", _relative(-1),
          r"\b(?P<p>(?P<n>{NUM})\s+(?P<unit>days?|weeks?|months?)\s+ago)\b"),
    # Named days.
    _rule("today", _shift(0),
          r"\b(?P<p>heute(?:\s+(?:morgen|früh|vormittag|mittag|nachmittag|abend|nacht))?|today"
          r"|tonight|this\s+(?:morning|afternoon|evening))\b"),
    _rule("tomorrow", _shift(1),
          r"\b(?P<p>morgen(?:\s+(?:früh|vormittag|mittag|nachmittag|abend))?|tomorrow)\b"),
    _rule("day_after_tomorrow", _shift(2),
          r"\b(?P<p>übermorgen|(?:the\s+)?day\s+after\s+tomorrow)\b"),
    _rule("yesterday", _shift(-1),
          r"\b(?P<p>gestern(?:\s+(?:morgen|früh|vormittag|mittag|nachmittag|abend))?"
          r"|yesterday)\b"),
    _rule("day_before_yesterday", _shift(-2),
          r"\b(?P<p>vorgestern|(?:the\s+)?day\s+before\s+yesterday)\b"),
)  # fmt: skip


# --- Tense ------------------------------------------------------------------------------

# (tense, weight, pattern): see the module docstring for why the weights.
_CUES: tuple[tuple[Tense, int, re.Pattern[str]], ...] = (
    ("future", 3, _compile(
        r"\b(?:werde|werden|werdet|wirst|wird|will|shall|won['’]t|gonna)\b|['’]ll\b"
        r"|\bgoing\s+to\b|\b(?:plan(?:ning)?|intend(?:ing)?|expect(?:ing)?|hope|hoping)\s+to\b")),
    ("past", 3, _compile(
        r"\b(?:wurde|wurden|wurdest|war|waren|hatte|hatten|did|didn['’]t|was|wasn['’]t|were|had"
        r"|has\s+been|have\s+been)\b")),
    ("past", 3, _compile(
        r"\b(?:ist|sind)\b{GAP}{0,40}?\b(?:erfolgt|eingegangen|rausgegangen|raus|veranlasst"
        r"|überwiesen|bezahlt|beglichen|angewiesen|ausgeführt|gebucht)\b")),
    ("past", 2, _compile(
        r"\b(?:überwiesen|bezahlt|gezahlt|beglichen|ausgeglichen|veranlasst|getätigt|ausgeführt"
        r"|erledigt|gebucht|zahlte|zahlten|überwies|geschickt|gesendet|versandt|angestoßen"
        r"|ging|gingen|kam|kamen|erfolgte|erfolgten|schickte|schickten|sandte|sandten|beglich"
        r"|veranlasste|veranlassten|buchte|buchten"
        r"|eingeleitet|paid|sent|transferred|wired|remitted|settled|made|initiated|processed"
        r"|submitted|completed|cleared|went\s+out)\b")),
    ("past", 2, _compile(r"\b(?:habe|haben|hat|hatte|hatten)\b{GAP}{0,60}?\bangewiesen\b")),
    ("future", 2, _compile(
        r"\b(?:zahlen|zahle|zahlt|bezahlen|bezahle|überweisen|überweise|überweist|begleichen"
        r"|begleiche|begleicht|ausgleichen|anweisen|veranlassen|erfolgt|erfolgen|schicken|senden"
        r"|kann|können|möchten|sollte|sollten|geplant|vorgesehen|vorgemerkt|planen|plane|pay"
        r"|paying|transfer|send|settle|wire|remit|can|could|should|scheduled|due|arrives?"
        r"|goes\s+out|go\s+out|comes?|eingehen|eingeht|ankommen|ankommt|kommt|kommen"
        r"|erledigen|erledige)\b"
        r"|\b(?:geht|gehen)\b{GAP}{0,30}?\braus\b")),
    ("future", 1, _compile(
        r"\b(?:bis|spätestens|ab|binnen|innerhalb|nächst\w*|kommend\w*|morgen|übermorgen|bald"
        r"|demnächst|voraussichtlich|by|until|till|within|next|coming|upcoming|tomorrow|soon"
        r"|latest)\b")),
    ("past", 1, _compile(
        r"\b(?:gestern|vorgestern|letzt\w*|vergangen\w*|vorig\w*|bereits|yesterday|last|previous"
        r"|ago|already)\b|\bvor\s+\S+\s+(?:tagen|wochen|monaten)\b")),
)  # fmt: skip

# A contrast often changes the tense, so no clause borrows cues across it. German puts a
# comma before the conjunction "aber"; without one it is a particle ("das machen wir aber
# morgen") and no break at all.
_SENTENCE_BREAK = _compile(
    r"[!?;\u3002]|\n[ \t]*\n|\.(?=\s|$)|,\s*(?:aber|sondern|jedoch)\b"
    r"|\b(?:but|however|whereas)\b"
)
_CLAUSE_BREAK = _compile(r"[,:()\[\]\u2013\u2014]|\s-\s|\b(?:und|oder|and|or|although|obwohl)\b")
# A period after these (or after a single letter or digit) ends no sentence: "z. B.", "Nr."
_ABBREVIATION = _compile(
    r"\b(?:nr|no|ca|bzw|usw|etc|ggf|evtl|inkl|zzgl|vgl|bzgl|mr|mrs|ms|dr|hr|fr|str|tel"
    r"|approx|vs|\w)$"
)


@dataclass(frozen=True, slots=True)
class _Cue:
    start: int
    end: int
    tense: Tense
    weight: int


class _Clauses:
    """Sentence and clause boundaries of a text, and the tense cues within them."""

    def __init__(self, text: str, protected: list[tuple[int, int]]) -> None:
        def free(pos: int) -> bool:
            return not any(s <= pos < e for s, e in protected)

        self.sentence_breaks = [
            m.start()
            for m in _SENTENCE_BREAK.finditer(text)
            if free(m.start())
            and not (
                m.group() == "." and _ABBREVIATION.search(text, max(0, m.start() - 12), m.start())
            )
        ]
        self.clause_breaks = sorted(
            self.sentence_breaks
            + [m.start() for m in _CLAUSE_BREAK.finditer(text) if free(m.start())]
        )
        self.cues = [
            _Cue(m.start(), m.end(), tense, weight)
            for tense, weight, pattern in _CUES
            for m in pattern.finditer(text)
        ]
        self.length = len(text)

    def tense(self, start: int, end: int) -> Tense:
        for breaks in (self.clause_breaks, self.sentence_breaks):
            lo = max((b for b in breaks if b < start), default=-1)
            hi = min((b for b in breaks if b >= end), default=self.length)
            found = self._nearest(start, end, lo, hi)
            if found is not None:
                return found
        return "none"

    def _nearest(self, start: int, end: int, lo: int, hi: int) -> Tense | None:
        inside = [c for c in self.cues if c.start < hi and c.end > lo]
        if not inside:
            return None
        best = min(
            inside,
            key=lambda c: (-c.weight, max(0, c.start - end, start - c.end), c.tense == "past"),
        )
        return best.tense


# --- Entry points -----------------------------------------------------------------------


def find_dates(
    text: str, anchor: date, *, numeric_order: NumericOrder = "dmy"
) -> list[DateMention]:
    """All date phrases in text, resolved against anchor, in text order.

    The anchor is the calendar day of the mail's Date header in its own UTC offset, the
    sender's local day, which is what "morgen" and "next Friday" were said against.
    """
    masked = [m.span() for _, p in _NOT_DATES for m in p.finditer(text)]
    masked += [(a.start, a.end) for a in find_amounts(text)]
    candidates = [
        (m, rule)
        for rule in _RULES
        for m in rule.pattern.finditer(text)
        if m.end() > m.start() and not _overlaps(m.span(), masked)
    ]
    # Longest phrase first (without a leading preposition, which only some rows take in:
    # "by December" must not beat "December 18"), then leftmost, then table order.
    chosen: list[tuple[re.Match[str], _Rule]] = []
    for m, rule in sorted(candidates, key=lambda c: (-_phrase_len(c[0]), c[0].start())):
        if not _overlaps(m.span(), [c.span() for c, _ in chosen]):
            chosen.append((m, rule))
    chosen.sort(key=lambda c: c[0].start())
    clauses = _Clauses(text, [m.span() for m, _ in chosen])
    found: list[DateMention] = []
    for m, rule in chosen:
        start, end = m.span("p") if _group(m, "p") is not None else m.span()
        tense = clauses.tense(start, end)
        try:
            value = rule.resolve(m, _Ctx(anchor, tense, numeric_order))
        except (ValueError, OverflowError):  # a resolved date beyond year 1..9999
            value = None
        if value is None:
            continue
        name = rule.with_year if rule.with_year and _group(m, "y") else rule.name
        found.append(DateMention(value, start, end, text[start:end], tense, name))
    return found


def _phrase_len(m: re.Match[str]) -> int:
    start, end = m.span("p") if _group(m, "p") is not None else m.span()
    return end - start


def _overlaps(span: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    return any(span[0] < e and s < span[1] for s, e in spans)


# UTC offsets of the US and Canadian time zones, Hawaii to Atlantic (-10:00 .. -04:00).
_MDY_OFFSETS = range(-600, -240 + 1)
# Country TLDs that are sold as generic names and say nothing about the sender's country.
_GENERIC_TLDS = frozenset(
    {"ai", "cc", "co", "fm", "gg", "io", "ly", "me", "sh", "so", "to", "tv", "ws"}
)
_MDY_TLDS = frozenset({"us"})


def numeric_order_for(address: str, utc_offset_minutes: int | None) -> NumericOrder:
    """dmy or mdy for a sender: US senders write 12/4 for 4 December, UK ones 04/12."""
    domain = address.rpartition("@")[2].strip().strip("<>").rstrip(".").lower()
    tld = domain.rpartition(".")[2]
    if tld in _MDY_TLDS:
        return "mdy"
    if utc_offset_minutes is None or utc_offset_minutes not in _MDY_OFFSETS:
        return "dmy"
    if len(tld) == 2 and tld.isalpha() and tld not in _GENERIC_TLDS:
        return "dmy"  # a US time zone but a clearly foreign country domain (.ca, .mx, .de)
    return "mdy"
