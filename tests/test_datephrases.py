"""datephrases: each line of the spec as a table row, the non-dates, tense, spans, and fuzz.

Anchors sit across month and year ends: THU is Thursday 2026-11-26 (ISO week 48), MON is
Monday 2026-12-28 (ISO week 53, the year's last week), FRI is Friday 2026-01-30.
"""

from __future__ import annotations

import itertools
import random
from datetime import date

import pytest

from mahnwerk.datephrases import DateMention, NumericOrder, find_dates, numeric_order_for

THU = date(2026, 11, 26)
MON = date(2026, 12, 28)
FRI = date(2026, 1, 30)


def found(text: str, anchor: date, order: NumericOrder = "dmy") -> str:
    """The mentions as "value rule, value rule", the form the tables below are written in."""
    return ", ".join(f"{m.value} {m.rule}" for m in find_dates(text, anchor, numeric_order=order))


# (id, anchor, text, expected): expected lists "resolved-date rule" per mention, in text order.
RESOLVES: list[tuple[str, date, str, str]] = [
    # Weekdays: future strictly after the anchor, past strictly before.
    ("de-next-friday", THU, "Wir zahlen nächsten Freitag.", "2026-11-27 weekday"),
    ("de-next-friday-on-a-friday", FRI, "Wir zahlen nächsten Freitag.", "2026-02-06 weekday"),
    ("de-bis-mittwoch", THU, "Überweisung bis Mittwoch", "2026-12-02 weekday"),
    ("de-bis-mittwoch-year-end", MON, "Überweisung bis Mittwoch", "2026-12-30 weekday"),
    ("de-past-montag", THU, "Wir haben am Montag überwiesen.", "2026-11-23 weekday"),
    ("de-past-montag-on-a-monday", MON, "Wir haben am Montag überwiesen.", "2026-12-21 weekday"),
    ("de-past-freitag-on-a-friday", FRI, "Am Freitag bezahlt.", "2026-01-23 weekday"),
    (
        "de-wurde-donnerstag",
        THU,
        "Die Zahlung wurde am Donnerstag angewiesen.",
        "2026-11-19 weekday",
    ),
    ("de-werden-donnerstag", THU, "Wir werden am Donnerstag zahlen.", "2026-12-03 weekday"),
    ("de-letzten-freitag", THU, "letzten Freitag", "2026-11-20 weekday"),
    ("de-kommenden-montag", THU, "am kommenden Montag", "2026-11-30 weekday"),
    ("de-samstag", THU, "am Samstag", "2026-11-28 weekday"),
    ("de-sonnabend", THU, "am Sonnabend", "2026-11-28 weekday"),
    ("de-sonntag", MON, "Sonntag", "2027-01-03 weekday"),
    ("de-lowercase", THU, "wir zahlen nächsten freitag", "2026-11-27 weekday"),
    ("de-ae-spelling", THU, "naechsten Freitag", "2026-11-27 weekday"),
    ("en-on-friday", THU, "I will pay on Friday.", "2026-11-27 weekday"),
    ("en-on-friday-on-a-friday", FRI, "I will pay on Friday.", "2026-02-06 weekday"),
    ("en-by-wednesday", THU, "Payment by Wednesday", "2026-12-02 weekday"),
    ("en-paid-monday", THU, "I paid on Monday.", "2026-11-23 weekday"),
    ("en-last-tuesday", THU, "We sent the money last Tuesday.", "2026-11-24 weekday"),
    ("en-next-friday", THU, "next Friday", "2026-11-27 weekday"),
    ("en-this-coming-monday", THU, "this coming Monday", "2026-11-30 weekday"),
    ("en-lowercase", THU, "we'll pay on friday", "2026-11-27 weekday"),
    # Weeks.
    ("de-diese-woche", THU, "Wir zahlen diese Woche.", "2026-11-27 this_week"),
    ("de-diese-woche-year-end", MON, "Wir zahlen diese Woche.", "2027-01-01 this_week"),
    ("de-noch-diese-woche", THU, "noch diese Woche", "2026-11-27 this_week"),
    ("de-ende-der-woche", THU, "bis Ende der Woche", "2026-11-27 this_week"),
    ("de-ende-dieser-woche", FRI, "bis Ende dieser Woche", "2026-01-30 this_week"),
    ("de-naechste-woche", THU, "nächste Woche", "2026-12-04 next_week"),
    ("de-naechste-woche-year-end", MON, "nächste Woche", "2027-01-08 next_week"),
    ("de-naechste-woche-month-end", FRI, "nächste Woche", "2026-02-06 next_week"),
    ("de-ende-naechster-woche", THU, "Ende nächster Woche", "2026-12-04 next_week"),
    ("de-ende-der-naechsten-woche", THU, "bis Ende der nächsten Woche", "2026-12-04 next_week"),
    ("de-kommende-woche", THU, "in der kommenden Woche", "2026-12-04 next_week"),
    ("de-uebernaechste-woche", THU, "übernächste Woche", "2026-12-11 next_week"),
    ("de-naechste-woche-dienstag", THU, "nächste Woche Dienstag", "2026-12-01 week_weekday"),
    ("de-naechste-woche-dienstag-ye", MON, "nächste Woche Dienstag", "2027-01-05 week_weekday"),
    ("de-dienstag-naechster-woche", THU, "Dienstag nächster Woche", "2026-12-01 week_weekday"),
    ("de-dienstag-der-naechsten", THU, "am Dienstag der nächsten Woche", "2026-12-01 week_weekday"),
    ("de-naechste-woche-am-montag", FRI, "nächste Woche am Montag", "2026-02-02 week_weekday"),
    ("de-diese-woche-freitag", THU, "diese Woche Freitag", "2026-11-27 week_weekday"),
    ("de-anfang-naechster-woche", THU, "Anfang nächster Woche", "2026-12-01 week_start"),
    ("de-mitte-naechster-woche", THU, "Mitte nächster Woche", "2026-12-02 week_mid"),
    ("de-anfang-der-woche-passed", THU, "Anfang der Woche", "2026-12-01 week_start"),
    ("en-this-week", THU, "this week", "2026-11-27 this_week"),
    ("en-end-of-the-week", THU, "by the end of the week", "2026-11-27 this_week"),
    ("en-end-of-this-week", MON, "by the end of this week", "2027-01-01 this_week"),
    ("en-next-week", THU, "next week", "2026-12-04 next_week"),
    ("en-end-of-next-week", FRI, "end of next week", "2026-02-06 next_week"),
    ("en-week-after-next", THU, "the week after next", "2026-12-11 next_week"),
    ("en-next-week-tuesday", THU, "next week Tuesday", "2026-12-01 week_weekday"),
    ("en-tuesday-next-week", THU, "Tuesday next week", "2026-12-01 week_weekday"),
    ("en-tuesday-of-next-week", MON, "on Tuesday of next week", "2027-01-05 week_weekday"),
    ("en-early-next-week", THU, "early next week", "2026-12-01 week_start"),
    ("en-mid-next-week", THU, "mid next week", "2026-12-02 week_mid"),
    ("de-letzte-woche", THU, "letzte Woche überwiesen", "2026-11-20 last_week"),
    ("de-letzte-woche-year-start", date(2027, 1, 4), "letzte Woche", "2027-01-01 last_week"),
    ("de-dienstag-letzter-woche", THU, "am Dienstag letzter Woche", "2026-11-17 week_weekday"),
    ("en-last-week", MON, "We mailed a check last week.", "2026-12-25 last_week"),
    ("en-tuesday-last-week", THU, "Tuesday last week", "2026-11-17 week_weekday"),
    # Months: a vague period means its end; Anfang is the 10th, Mitte the 15th.
    ("de-ende-des-monats", THU, "Ende des Monats", "2026-11-30 month_end"),
    ("de-ende-des-monats-december", MON, "bis Ende des Monats", "2026-12-31 month_end"),
    ("de-ende-des-monats-january", FRI, "Ende des Monats", "2026-01-31 month_end"),
    ("de-monatsende", THU, "zum Monatsende", "2026-11-30 month_end"),
    ("ch-ende-monat", THU, "wird Ende Monat beglichen", "2026-11-30 month_end"),
    ("de-letzten-monat", FRI, "letzten Monat bezahlt", "2025-12-31 last_month"),
    ("en-last-month", THU, "paid last month", "2026-10-31 last_month"),
    ("de-mitte-dezember", THU, "Mitte Dezember", "2026-12-15 month_mid"),
    ("de-mitte-dezember-after", MON, "Mitte Dezember", "2026-12-15 month_mid"),
    ("de-mitte-dezember-january", FRI, "Mitte Dezember", "2026-12-15 month_mid"),
    ("de-anfang-januar", THU, "Anfang Januar", "2027-01-10 month_start"),
    ("de-anfang-januar-year-end", MON, "Anfang Januar", "2027-01-10 month_start"),
    ("de-anfang-jaenner", THU, "Anfang Jaenner", "2027-01-10 month_start"),
    ("de-ende-november", THU, "Ende November", "2026-11-30 month_end"),
    ("de-ende-november-after", MON, "Ende November", "2026-11-30 month_end"),
    ("de-ende-maerz", THU, "bis Ende Maerz", "2027-03-31 month_end"),
    ("de-ende-september-recent", THU, "Ende September", "2026-09-30 month_end"),
    ("de-ende-august-stale", THU, "Ende August", "2027-08-31 month_end"),
    ("de-ende-februar-2027", THU, "Ende Februar 2027", "2027-02-28 month_end"),
    ("de-naechsten-monat", THU, "nächsten Monat", "2026-12-31 next_month"),
    ("de-naechsten-monat-year-end", MON, "nächsten Monat", "2027-01-31 next_month"),
    ("de-naechsten-monat-february", FRI, "im nächsten Monat", "2026-02-28 next_month"),
    ("de-ende-des-naechsten-monats", THU, "Ende des nächsten Monats", "2026-12-31 next_month"),
    ("de-anfang-naechsten-monats", THU, "Anfang nächsten Monats", "2026-12-10 month_start"),
    ("de-mitte-naechsten-monats", MON, "Mitte nächsten Monats", "2027-01-15 month_mid"),
    ("de-anfang-des-monats-passed", THU, "Anfang des Monats", "2026-12-10 month_start"),
    ("de-mitte-des-monats-passed", THU, "Mitte des Monats", "2026-12-15 month_mid"),
    ("de-im-dezember", THU, "im Dezember", "2026-12-31 month"),
    ("de-im-mai", THU, "im Mai", "2027-05-31 month"),
    ("de-jahresende", THU, "bis Jahresende", "2026-12-31 year_end"),
    ("en-by-month-end", THU, "by month end", "2026-11-30 month_end"),
    ("en-end-of-the-month", FRI, "by the end of the month", "2026-01-31 month_end"),
    ("en-mid-december", THU, "mid-December", "2026-12-15 month_mid"),
    ("en-mid-december-space", THU, "mid December", "2026-12-15 month_mid"),
    ("en-early-january", THU, "early January", "2027-01-10 month_start"),
    ("en-beginning-of-january", MON, "the beginning of January", "2027-01-10 month_start"),
    ("en-end-of-november", THU, "end of November", "2026-11-30 month_end"),
    ("en-next-month", THU, "next month", "2026-12-31 next_month"),
    ("en-end-of-next-month", FRI, "end of next month", "2026-02-28 next_month"),
    ("en-in-may", THU, "in May", "2027-05-31 month"),
    ("en-end-of-the-year", THU, "by the end of the year", "2026-12-31 year_end"),
    # ISO weeks: Friday of the week; a week long past means next year's.
    ("de-kw-48", THU, "KW 48", "2026-11-27 iso_week"),
    ("de-kw48", THU, "in KW48", "2026-11-27 iso_week"),
    ("de-kw-49", THU, "bis KW 49", "2026-12-04 iso_week"),
    ("de-kw-2-next-year", MON, "KW 2", "2027-01-15 iso_week"),
    ("de-kw-53", MON, "KW 53", "2027-01-01 iso_week"),
    ("de-kw-2-from-november", THU, "KW 2", "2027-01-15 iso_week"),
    ("de-kw-5-same-week", FRI, "KW 5", "2026-01-30 iso_week"),
    ("de-48-kw", THU, "in der 48. KW", "2026-11-27 iso_week"),
    ("de-kalenderwoche-50", THU, "Kalenderwoche 50", "2026-12-11 iso_week"),
    ("de-kw-with-year", THU, "KW 3/2027", "2027-01-22 iso_week"),
    ("en-week-49", THU, "in week 49", "2026-12-04 iso_week"),
    ("en-calendar-week-50", THU, "calendar week 50", "2026-12-11 iso_week"),
    # Days of the month: the next occurrence, or the named month's.
    ("de-zum-1-kommenden-monats", THU, "zum 1. des kommenden Monats", "2026-12-01 day_of_month"),
    ("de-zum-1-kommenden-ye", MON, "zum 1. des kommenden Monats", "2027-01-01 day_of_month"),
    ("de-zum-1-kommenden-feb", FRI, "zum 1. des kommenden Monats", "2026-02-01 day_of_month"),
    ("de-bis-zum-10", THU, "bis zum 10.", "2026-12-10 day_of_month"),
    ("de-bis-zum-10-year-end", MON, "bis zum 10.", "2027-01-10 day_of_month"),
    ("de-am-26-same-day", THU, "am 26.", "2026-12-26 day_of_month"),
    ("de-am-31-january", FRI, "am 31.", "2026-01-31 day_of_month"),
    ("de-am-30-skips-february", FRI, "am 30.", "2026-03-30 day_of_month"),
    ("de-am-15-past", THU, "am 15. überwiesen", "2026-11-15 day_of_month"),
    ("de-zum-31-next-month-clamped", FRI, "zum 31. nächsten Monats", "2026-02-28 day_of_month"),
    ("en-on-the-18th", THU, "on the 18th", "2026-12-18 day_of_month"),
    ("en-on-the-18th-year-end", MON, "on the 18th", "2027-01-18 day_of_month"),
    ("en-by-the-1st", THU, "by the 1st", "2026-12-01 day_of_month"),
    ("en-1st-of-next-month", THU, "on the 1st of next month", "2026-12-01 day_of_month"),
    ("en-18th-of-next-month", FRI, "the 18th of next month", "2026-02-18 day_of_month"),
    # Counted days and weeks.
    ("de-in-zwei-wochen", THU, "in zwei Wochen", "2026-12-10 relative_days"),
    ("de-in-zwei-wochen-year-end", MON, "in zwei Wochen", "2027-01-11 relative_days"),
    ("de-binnen-14-tagen", THU, "binnen 14 Tagen", "2026-12-10 relative_days"),
    ("de-in-3-tagen", THU, "in 3 Tagen", "2026-11-29 relative_days"),
    ("de-innerhalb-einer-woche", THU, "innerhalb einer Woche", "2026-12-03 relative_days"),
    ("de-innerhalb-von-zehn-tagen", THU, "innerhalb von zehn Tagen", "2026-12-06 relative_days"),
    ("de-in-vierzehn-tagen", FRI, "in vierzehn Tagen", "2026-02-13 relative_days"),
    ("de-in-acht-tagen", THU, "in acht Tagen", "2026-12-04 relative_days"),
    ("de-in-drei-wochen", THU, "in drei Wochen", "2026-12-17 relative_days"),
    ("de-in-fuenf-tagen", THU, "in fuenf Tagen", "2026-12-01 relative_days"),
    ("de-in-5-werktagen", THU, "in 5 Werktagen", "2026-12-03 business_days"),
    ("de-in-2-monaten", THU, "in 2 Monaten", "2027-01-26 relative_months"),
    ("de-vor-einer-woche", THU, "vor einer Woche", "2026-11-19 days_ago"),
    ("en-in-two-weeks", THU, "in two weeks", "2026-12-10 relative_days"),
    ("en-within-10-days", THU, "within 10 days", "2026-12-06 relative_days"),
    ("en-within-ten-days", MON, "within ten days", "2027-01-07 relative_days"),
    ("en-in-a-fortnight", THU, "in a fortnight", "2026-12-10 relative_days"),
    ("en-within-a-week", THU, "within a week", "2026-12-03 relative_days"),
    ("en-in-one-week", THU, "in one week", "2026-12-03 relative_days"),
    ("en-within-fourteen-days", THU, "within fourteen days", "2026-12-10 relative_days"),
    ("en-five-business-days", FRI, "within 5 business days", "2026-02-06 business_days"),
    ("en-a-month", FRI, "in a month", "2026-02-28 relative_months"),
    ("en-2-days-ago", THU, "2 days ago", "2026-11-24 days_ago"),
    # Named days.
    ("de-heute", THU, "heute", "2026-11-26 today"),
    ("de-heute-morgen", THU, "heute Morgen überwiesen", "2026-11-26 today"),
    ("de-morgen", THU, "morgen", "2026-11-27 tomorrow"),
    ("de-morgen-year-end", MON, "morgen", "2026-12-29 tomorrow"),
    ("de-uebermorgen", FRI, "übermorgen", "2026-02-01 day_after_tomorrow"),
    ("de-uebermorgen-ue", THU, "uebermorgen", "2026-11-28 day_after_tomorrow"),
    ("de-gestern", MON, "gestern", "2026-12-27 yesterday"),
    ("de-vorgestern", THU, "vorgestern", "2026-11-24 day_before_yesterday"),
    ("en-today", THU, "today", "2026-11-26 today"),
    ("en-tomorrow", MON, "tomorrow", "2026-12-29 tomorrow"),
    ("en-day-after-tomorrow", THU, "the day after tomorrow", "2026-11-28 day_after_tomorrow"),
    ("en-yesterday", FRI, "yesterday", "2026-01-29 yesterday"),
    ("en-day-before-yesterday", THU, "the day before yesterday", "2026-11-24 day_before_yesterday"),
    # Explicit dates; the year is inferred when missing.
    ("de-15-12-dot", THU, "15.12.", "2026-12-15 day_month"),
    ("de-15-12-2026", THU, "15.12.2026", "2026-12-15 date"),
    ("de-15-12-26", THU, "15.12.26", "2026-12-15 date"),
    ("de-spaced", THU, "15. 12. 2026", "2026-12-15 date"),
    ("de-am-15-12-no-dot", THU, "am 15.12", "2026-12-15 day_month"),
    ("de-am-15-12-dot", THU, "am 15.12.", "2026-12-15 day_month"),
    ("de-bis-spaetestens", THU, "bis spätestens 10.12.", "2026-12-10 day_month"),
    ("de-15-dezember", THU, "15. Dezember", "2026-12-15 day_month"),
    ("de-15dezember", THU, "15.Dezember", "2026-12-15 day_month"),
    ("de-15-dez-abbrev", THU, "15. Dez.", "2026-12-15 day_month"),
    ("de-15-dezember-2026", FRI, "15. Dezember 2026", "2026-12-15 date"),
    ("de-15-jaenner-austria", THU, "15. Jänner", "2027-01-15 day_month"),
    ("de-15-jaenner-ae", THU, "15. Jaenner", "2027-01-15 day_month"),
    ("de-15-feber-austria", THU, "15. Feber", "2027-02-15 day_month"),
    ("de-3-maerz-ae", THU, "3. Maerz", "2027-03-03 day_month"),
    ("de-freitag-den", THU, "Freitag, den 4.12.", "2026-12-04 day_month"),
    ("de-fr-abbrev", THU, "Fr., 4.12.", "2026-12-04 day_month"),
    ("de-15-01-in-december", MON, "Wir zahlen am 15.01.", "2027-01-15 day_month"),
    ("de-15-01-in-december-past", MON, "Wir haben am 15.01. überwiesen", "2026-01-15 day_month"),
    ("de-15-12-in-january", FRI, "Zahlung am 15.12.", "2026-12-15 day_month"),
    ("de-15-12-in-january-past", FRI, "am 15.12. überwiesen", "2025-12-15 day_month"),
    ("de-recent-past", THU, "am 20.11. überwiesen", "2026-11-20 day_month"),
    ("de-past-most-recent", THU, "am 28.11. überwiesen", "2025-11-28 day_month"),
    ("de-recent-future-stays", THU, "bis 20.11.", "2026-11-20 day_month"),
    ("de-feb-29-next-leap", THU, "am 29.02.", "2028-02-29 day_month"),
    ("de-feb-30-invalid", THU, "am 30.02.", ""),
    ("de-date-then-time", THU, "am 15.12. um 14:30 Uhr", "2026-12-15 day_month"),
    ("en-december-15th", THU, "December 15th", "2026-12-15 day_month"),
    ("en-15-dec", THU, "15 Dec", "2026-12-15 day_month"),
    ("en-dec-dot-15", THU, "Dec. 15", "2026-12-15 day_month"),
    ("en-dec-15-comma-year", FRI, "Dec 15, 2026", "2026-12-15 date"),
    ("en-15th-of-december", THU, "the 15th of December", "2026-12-15 day_month"),
    ("en-friday-december-4th", THU, "Friday, December 4th", "2026-12-04 day_month"),
    ("en-january-in-december", MON, "January 5th", "2027-01-05 day_month"),
    ("en-may-with-day", THU, "May 3", "2027-05-03 day_month"),
    ("iso", THU, "2026-12-15", "2026-12-15 date"),
    ("iso-with-time", THU, "2026-12-15T10:00", "2026-12-15 date"),
    # Installments: all mentions, in order.
    (
        "de-installments",
        THU,
        "Wir zahlen in drei Raten: 15.12., 15.01. und 15.02.",
        "2026-12-15 day_month, 2027-01-15 day_month, 2027-02-15 day_month",
    ),
    (
        "en-installments",
        MON,
        "First half on January 15th, the rest by the end of February.",
        "2027-01-15 day_month, 2027-02-28 month_end",
    ),
    (
        "mixed-past-and-future",
        THU,
        "Wir haben gestern 500 € überwiesen und zahlen den Rest am Freitag.",
        "2026-11-25 yesterday, 2026-11-27 weekday",
    ),
    (
        "en-past-and-future",
        THU,
        "We paid half on Monday but will send the rest on Friday.",
        "2026-11-23 weekday, 2026-11-27 weekday",
    ),
    (
        "de-mail-with-signature",
        THU,
        "Sehr geehrte Damen und Herren,\n\nvielen Dank für die Erinnerung. Wir werden den "
        "Betrag von 1.234,56 € bis\nnächsten Freitag überweisen.\n\nMit freundlichen Grüßen\n"
        "Anna Mai\nMüller & Söhne KG, Hauptstr. 12, 10115 Berlin\nTel. 030/1234567, "
        "Fax +49 30 1234568\nIBAN DE89 3704 0044 0532 0130 00\nAmtsgericht Berlin HRB 12345",
        "2026-11-27 weekday",
    ),
    (
        "en-mail-with-signature",
        MON,
        "Hi,\n\nsorry for the delay on INV-2026-1187. Our payment run is on the 5th, so you "
        "will have the $1,450.00 by January 8th at the latest.\n\nBest,\nJohn\n"
        "+1 (555) 123-4567 | Suite 12/4",
        "2027-01-05 day_of_month, 2027-01-08 day_month",
    ),
]


@pytest.mark.parametrize(
    ("anchor", "text", "expected"), [pytest.param(*row[1:], id=row[0]) for row in RESOLVES]
)
def test_resolves(anchor: date, text: str, expected: str) -> None:
    assert found(text, anchor) == expected


# Numeric dates follow the sender's order; dotted dates are always day.month.
NUMERIC: list[tuple[str, str, NumericOrder, str]] = [
    ("uk-04-12", "Payment on 04/12", "dmy", "2026-12-04 day_month"),
    ("us-12-4", "Payment on 12/4", "mdy", "2026-12-04 day_month"),
    ("us-12-4-bare", "12/4 works for us", "mdy", "2026-12-04 day_month"),
    ("us-04-12-is-april", "on 04/12", "mdy", "2027-04-12 day_month"),
    ("uk-12-4-is-april", "on 12/4", "dmy", "2027-04-12 day_month"),
    ("uk-full", "04/12/2026", "dmy", "2026-12-04 date"),
    ("us-full", "12/04/2026", "mdy", "2026-12-04 date"),
    ("uk-short-year", "4/12/26", "dmy", "2026-12-04 date"),
    ("us-dashes", "12-04-2026", "mdy", "2026-12-04 date"),
    ("us-dotted-stays-dmy", "15.12.", "mdy", "2026-12-15 day_month"),
    ("cue-single-digits", "by 1/2", "dmy", "2027-02-01 day_month"),
    ("fraction-is-no-date", "1/2 of the amount", "dmy", ""),
    ("us-month-13-invalid", "on 13/12", "mdy", ""),
]


@pytest.mark.parametrize(
    ("text", "order", "expected"), [pytest.param(*row[1:], id=row[0]) for row in NUMERIC]
)
def test_numeric_dates_follow_the_senders_order(
    text: str, order: NumericOrder, expected: str
) -> None:
    assert found(text, THU, order) == expected


# Never dates: plain words, times, phone numbers, IBANs, invoice numbers, amounts, counts.
NOT_DATES: list[tuple[str, str]] = [
    ("word-die", "Die Rechnung ist angekommen."),
    ("word-we", "We will check with accounting."),
    ("name-mai", "Herr Mai ruft Sie an."),
    ("name-frau-mai", "Frau Mai ist im Urlaub."),
    ("may-modal", "We may pay a little later."),
    ("month-alone", "Dezember"),
    ("time-colon", "um 15:30"),
    ("time-colon-uhr", "Anruf um 15:30 Uhr"),
    ("time-dot-uhr", "ab 15.30 Uhr erreichbar"),
    ("time-um-dot", "um 12.15"),
    ("time-gegen", "gegen 9.45"),
    ("time-pm", "call me at 3pm"),
    ("time-am", "at 10:00 am"),
    ("time-h", "bis 14h"),
    ("phone-slash", "Tel. 030/1234567"),
    ("phone-plus", "+49 30 12345678"),
    ("phone-mobile", "0171 1234567"),
    ("phone-us", "+1 (555) 123-4567"),
    ("iban", "IBAN DE89 3704 0044 0532 0130 00"),
    ("invoice-re", "RE-2026-0431"),
    ("invoice-inv", "INV-2026-1187"),
    ("invoice-nr-slash", "Rechnung Nr. 12/4"),
    ("invoice-hash", "#12/04"),
    ("amount-german", "1.234,56"),
    ("amount-english", "12.50"),
    ("amount-with-euro", "12.10 €"),
    ("decimal-hours", "3.5 Stunden"),
    ("percent", "19 % MwSt."),
    ("percent-word", "2,5 Prozent Skonto"),
    ("installment-fraction", "Rate 1/3"),
    ("always", "24/7 erreichbar"),
    ("greeting", "Guten Morgen Frau Schmidt,"),
    ("ordinal-time", "zum 2. Mal"),
    ("ordinal-advent", "am 1. Advent"),
    ("ordinal-reminder", "I will pay on the 3rd reminder"),
    ("habitual-de", "Wir zahlen freitags."),
    ("habitual-en", "We pay on Fridays."),
    ("version", "Version 15.12"),
    ("postcode", "10115 Berlin"),
    ("bare-dm-needs-cue", "Artikel 15.12 im Katalog"),
]


@pytest.mark.parametrize("text", [pytest.param(t, id=i) for i, t in NOT_DATES])
def test_finds_no_date_in(text: str) -> None:
    assert find_dates(text, THU) == []


# (id, text, expected "phrase:tense" per mention); anchor THU.
TENSES: list[tuple[str, str, str]] = [
    ("de-ueberwiesen", "Wir haben am Montag überwiesen.", "Montag:past"),
    ("de-werden", "Wir werden am Freitag überweisen.", "Freitag:future"),
    ("de-wird-beats-participle", "Die Zahlung wird am Freitag überwiesen.", "Freitag:future"),
    ("de-wurde", "Die Zahlung wurde am Montag überwiesen.", "Montag:past"),
    ("de-zahlen-bis", "Wir zahlen bis Freitag.", "Freitag:future"),
    ("de-angewiesen", "Am Montag haben wir die Zahlung angewiesen.", "Montag:past"),
    ("de-ist-erfolgt", "Die Zahlung ist am Montag erfolgt.", "Montag:past"),
    ("de-ist-erfolgt-date", "Die Zahlung ist am 24.11. erfolgt.", "24.11.:past"),
    ("de-angewiesen-date", "Wir haben am 24.11. angewiesen.", "24.11.:past"),
    ("de-erfolgt", "Die Zahlung erfolgt am Montag.", "Montag:future"),
    ("de-bereits-bezahlt", "Wir haben bereits am 20.11. bezahlt.", "20.11.:past"),
    ("de-gestern", "gestern", "gestern:past"),
    ("de-spaetestens", "spätestens Freitag", "Freitag:future"),
    (
        "de-und-splits",
        "Wir haben am Montag 500 € überwiesen und zahlen den Rest am Freitag.",
        "Montag:past, Freitag:future",
    ),
    (
        "de-semicolon-splits",
        "Zugesagt hatten wir Freitag; wir überweisen jetzt am Montag.",
        "Freitag:past, Montag:future",
    ),
    (
        "de-sentence-fallback",
        "Am Montag, wie besprochen, haben wir überwiesen.",
        "Montag:past",
    ),
    ("de-wrapped-line", "Wir haben am\nMontag überwiesen.", "Montag:past"),
    (
        "de-simple-past",
        "Das hat sich überschnitten – die Überweisung ging am Montag raus.",
        "Montag:past",
    ),
    ("de-geht-raus", "Passt, geht morgen raus.", "morgen:future"),
    (
        "de-aber-particle-is-no-break",
        "Wir haben noch nicht bezahlt, das erledigen wir aber am 2.12.",
        "2.12.:future",
    ),
    (
        "de-comma-aber-is-a-break",
        "Wir haben gestern bezahlt, aber der Rest kommt Freitag.",
        "gestern:past, Freitag:future",
    ),
    ("en-paid", "I paid on Monday.", "Monday:past"),
    ("en-will", "We will pay by Friday.", "Friday:future"),
    ("en-paid-by-card", "I paid by card on Monday.", "Monday:past"),
    ("en-made-the-payment", "I made the payment on Monday.", "Monday:past"),
    ("en-going-to", "I'm going to pay on Friday.", "Friday:future"),
    ("en-did", "Did you get the transfer on Monday?", "Monday:past"),
    ("en-will-be-paid", "The invoice will be paid on Friday.", "Friday:future"),
    (
        "en-comma-splits",
        "The invoice was due on Friday, we will pay on Monday.",
        "Friday:past, Monday:future",
    ),
    (
        "en-but-splits",
        "We sent half on Monday but the rest goes out on Friday.",
        "Monday:past, Friday:future",
    ),
    ("none", "Freitag.", "Freitag:none"),
    ("none-en", "Friday works.", "Friday:none"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [pytest.param(*row[1:], id=row[0]) for row in TENSES]
)
def test_tense_of_the_clause(text: str, expected: str) -> None:
    assert ", ".join(f"{m.text}:{m.tense}" for m in find_dates(text, THU)) == expected


def test_a_weekday_resolves_by_its_clause() -> None:
    mentions = find_dates("The invoice was due on Friday, we will pay on Monday.", THU)
    assert [m.value for m in mentions] == [date(2026, 11, 20), date(2026, 11, 30)]


def test_a_running_period_in_a_past_clause_is_the_anchor() -> None:
    (mention,) = find_dates("Wir haben diese Woche überwiesen.", date(2026, 11, 24))
    assert (mention.value, mention.tense) == (date(2026, 11, 24), "past")


# (id, text, phrases as found): prepositions stay out, words that change the date stay in.
SPANS: list[tuple[str, str, list[str]]] = [
    ("am", "Wir zahlen am 15.12. den Rest", ["15.12."]),
    ("bis", "bis Mittwoch", ["Mittwoch"]),
    ("next", "Wir zahlen nächsten Freitag", ["nächsten Freitag"]),
    ("in", "in zwei Wochen", ["in zwei Wochen"]),
    ("zum", "zum 1. des kommenden Monats", ["1. des kommenden Monats"]),
    ("on-the", "on the 18th", ["18th"]),
    ("weekday-prefix", "Freitag, den 15.12.", ["Freitag, den 15.12."]),
    ("by", "by month end", ["month end"]),
    ("wrapped", "bis Ende\nnächster Woche", ["Ende\nnächster Woche"]),
    ("full-stop-not-taken", "back on 1st December.", ["1st December"]),
    ("abbreviation-dot-taken", "bis 15. Dez. zahlen", ["15. Dez."]),
    ("decomposed-umlaut", "na\u0308chsten Freitag", ["na\u0308chsten Freitag"]),
]


@pytest.mark.parametrize(("text", "phrases"), [pytest.param(*row[1:], id=row[0]) for row in SPANS])
def test_span_of_the_phrase(text: str, phrases: list[str]) -> None:
    mentions = find_dates(text, THU)
    assert [m.text for m in mentions] == phrases
    assert all(text[m.start : m.end] == m.text for m in mentions)


def test_mention_fields() -> None:
    text = "Hallo, wir zahlen bis 15.12.2026."
    assert find_dates(text, THU) == [
        DateMention(date(2026, 12, 15), 22, 32, "15.12.2026", "future", "date")
    ]


NUMERIC_ORDER: list[tuple[str, str, int | None, NumericOrder]] = [
    ("us-eastern", "john@acme.com", -300, "mdy"),
    ("us-pacific", "john@acme.com", -480, "mdy"),
    ("us-hawaii-edge", "x@shop.com", -600, "mdy"),
    ("us-edt-edge", "x@shop.org", -240, "mdy"),
    ("brazil", "x@shop.com", -180, "dmy"),
    ("beyond-hawaii", "x@shop.com", -660, "dmy"),
    ("utc", "x@shop.com", 0, "dmy"),
    ("germany", "x@shop.com", 60, "dmy"),
    ("india", "x@shop.com", 330, "dmy"),
    ("unknown-offset", "x@shop.com", None, "dmy"),
    ("uk-domain-us-zone", "x@shop.co.uk", -300, "dmy"),
    ("canada-domain", "x@shop.ca", -300, "dmy"),
    ("mexico-domain", "x@shop.mx", -360, "dmy"),
    ("german-domain", "x@firma.de", -300, "dmy"),
    ("generic-io", "x@startup.io", -300, "mdy"),
    ("us-domain-no-offset", "x@city.ny.us", None, "mdy"),
    ("us-domain-europe", "x@city.ny.us", 60, "mdy"),
    ("display-name", "Jane Doe <jane@shop.com>", -420, "mdy"),
    ("uppercase", "JANE@SHOP.COM", -420, "mdy"),
]


@pytest.mark.parametrize(
    ("address", "offset", "expected"), [pytest.param(*row[1:], id=row[0]) for row in NUMERIC_ORDER]
)
def test_numeric_order_for(address: str, offset: int | None, expected: NumericOrder) -> None:
    assert numeric_order_for(address, offset) == expected


# --- Property-style: arbitrary text never breaks it ----------------------------------------

RULES = {
    "date", "day_month", "weekday", "week_weekday", "this_week", "next_week", "week_start",
    "week_mid", "iso_week", "month_end", "month_start", "month_mid", "next_month", "month",
    "year_end", "day_of_month", "relative_days", "business_days", "relative_months",
    "days_ago", "today", "tomorrow", "day_after_tomorrow", "yesterday", "day_before_yesterday",
    "last_week", "last_month",
}  # fmt: skip
WORDS = (
    "am", "bis", "zum", "spätestens", "den", "on", "by", "the", "until", "Freitag", "Montag",
    "nächsten", "next", "last", "letzten", "Woche", "week", "Ende", "end", "of", "des", "Monats",
    "month", "Mitte", "mid", "Dezember", "December", "Jänner", "15.12.", "15.12", "04/12", "12/4",
    "2026-12-15", "18th", "1.", "KW", "48", "in", "zwei", "Wochen", "14", "Tagen", "days", "heute",
    "morgen", "gestern", "today", "tomorrow", "haben", "wir", "werden", "zahlen", "überwiesen",
    "paid", "will", "pay", "und", "and", "aber", "but", ",", ".", ";", "!", "?", "\n",
    "RE-2026-0431", "1.234,56", "€", "EUR", "12.50", "$", "%", "Uhr", "15:30", "Tel.",
    "030/1234567", "DE89", "3704", "0044",
)  # fmt: skip
TIMES = (
    "um 15:30", "15:30 Uhr", "15.30 Uhr", "10 Uhr", "at 3pm", "at 3:30 pm", "9:45 am", "14h",
    "gegen 9.45", "um 12.15", "at 10.30", "23:59", "0:00",
)  # fmt: skip
IDENTIFIERS = (
    "RE-2026-0431", "INV-2026-1187", "Tel. 030/1234567", "+49 30 12345678", "0171 1234567",
    "DE89 3704 0044 0532 0130 00", "GB29 NWBK 6016 1331 9268 19", "Nr. 12/4", "1.234,56 €",
    "€1,234.56", "19 %",
)  # fmt: skip


def _random_text(rng: random.Random) -> str:
    if rng.random() < 0.4:  # any code point, mostly Latin ones
        size = rng.randint(0, 200)
        return "".join(
            chr(rng.choice((rng.randint(0, 0x2FF), rng.randint(0, 0x10FFFF)))) for _ in range(size)
        )
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 60)))


def _check(text: str, mentions: list[DateMention]) -> None:
    assert [m.start for m in mentions] == sorted(m.start for m in mentions)
    for m in mentions:
        assert 0 <= m.start < m.end <= len(text)
        assert text[m.start : m.end] == m.text
        assert isinstance(m.value, date)
        assert m.tense in ("future", "past", "none")
        assert m.rule in RULES
    for a, b in itertools.pairwise(mentions):
        assert a.end <= b.start


def test_never_raises_on_arbitrary_text() -> None:
    rng = random.Random(20261126)
    for _ in range(1500):
        text = _random_text(rng)
        anchor = date.fromordinal(rng.randint(1, date.max.toordinal()))
        order: NumericOrder = rng.choice(("dmy", "mdy"))
        _check(text, find_dates(text, anchor, numeric_order=order))


def _with_inserted(
    rng: random.Random, pieces: tuple[str, ...]
) -> tuple[str, list[tuple[int, int]]]:
    """Random mail-ish words with some pieces spliced in; returns the pieces' spans."""
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0
    for _ in range(rng.randint(1, 40)):
        piece = rng.choice(pieces) if rng.random() < 0.3 else rng.choice(WORDS)
        if length:
            parts.append(" ")
            length += 1
        if piece in pieces:
            spans.append((length, length + len(piece)))
        parts.append(piece)
        length += len(piece)
    return "".join(parts), spans


@pytest.mark.parametrize("pieces", [TIMES, IDENTIFIERS], ids=["times", "identifiers"])
def test_never_a_date_from_a_time_or_an_identifier(pieces: tuple[str, ...]) -> None:
    rng = random.Random(48)
    for _ in range(800):
        text, spans = _with_inserted(rng, pieces)
        mentions = find_dates(text, THU)
        _check(text, mentions)
        for m in mentions:
            assert not any(m.start < e and s < m.end for s, e in spans), (text, m)


def test_anchor_at_the_ends_of_the_calendar() -> None:
    text = "am 15.12. oder nächsten Freitag, in 2 Wochen, KW 48, Ende des Monats, gestern"
    for anchor in (date.min, date.max):
        _check(text, find_dates(text, anchor))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("We will pay by December 18", date(2026, 12, 18)),
        ("by December 18 at the latest", date(2026, 12, 18)),
        ("bis Dezember 18", date(2026, 12, 18)),
        ("by December", date(2026, 12, 31)),
    ],
)
def test_a_preposition_does_not_make_the_month_beat_the_day(text: str, expected: date) -> None:
    found = find_dates(text, date(2026, 11, 26))
    assert [m.value for m in found] == [expected], found
