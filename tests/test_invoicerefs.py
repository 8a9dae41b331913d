"""Invoice numbers in customers' text: retyped known numbers come back canonical."""

from __future__ import annotations

import pytest

from mahnwerk.invoicerefs import find_invoice_refs

KNOWN = ("RE-2026-0431", "RE-2026-0502", "RE-2026-0455", "INV-2026-1187", "INV-2026-1243")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # Known numbers, however they are typed.
        ("Rechnung RE-2026-0431 ist bezahlt", ("RE-2026-0431",)),
        ("re-2026-0431", ("RE-2026-0431",)),
        ("RE 2026 0431", ("RE-2026-0431",)),
        ("RE20260431", ("RE-2026-0431",)),
        ("re-2026-431", ("RE-2026-0431",)),
        ("RE - 2026 - 0431", ("RE-2026-0431",)),
        ("RE/2026/0431", ("RE-2026-0431",)),
        ("Rechnung 2026-0431", ("RE-2026-0431",)),
        ("inv 2026 1187", ("INV-2026-1187",)),
        ("invoice #1187", ("INV-2026-1187",)),
        ("Rechnung Nr. 0502", ("RE-2026-0502",)),
        ("Rechnungsnummer: 455", ("RE-2026-0455",)),
        ("(RE-2026-0431)", ("RE-2026-0431",)),
        ("RE-2026-0431.", ("RE-2026-0431",)),
        # Order of first mention, each once.
        ("RE-2026-0502 und RE-2026-0431, nochmals RE-2026-0502", ("RE-2026-0502", "RE-2026-0431")),
        ("Re: RE-2026-0431", ("RE-2026-0431",)),
        # Unknown numbers after a cue or in our style, as written.
        ("Rechnungsnummer: 4711-A", ("4711-A",)),
        ("Rechnung Nr. 2026/17", ("2026/17",)),
        ("invoice no. 88213", ("88213",)),
        ("INV-2026-9999 is not ours", ("INV-2026-9999",)),
        ("re-2026-9999", ("RE-2026-9999",)),
        # Not invoice numbers.
        ("RE-2026-04310", ("RE-2026-04310",)),  # a longer number is another number
        ("XRE-2026-0431", ()),
        ("Rechnung vom 14.10.2026", ()),
        ("Rechnung über 500 €", ()),
        ("credit note CN-2026-044", ()),
        ("Tel. 089 2026 0431 9", ()),
        ("Wir haben 1.234,56 € am 20.11.2026 überwiesen", ()),
        ("", ()),
    ],
)
def test_find_invoice_refs(text: str, want: tuple[str, ...]) -> None:
    assert find_invoice_refs(text, KNOWN) == want


def test_without_known_numbers_only_cued_or_styled_ones() -> None:
    assert find_invoice_refs("RE-2026-0431 und Rechnung Nr. 12345") == ("RE-2026-0431", "12345")
    assert find_invoice_refs("2026-0431") == ()


def test_a_short_form_shared_by_two_known_numbers_is_not_guessed() -> None:
    known = ("RE-2026-0431", "RG-2026-0431")
    assert find_invoice_refs("2026-0431", known) == ()
    assert find_invoice_refs("RG 2026 0431", known) == ("RG-2026-0431",)


def test_case_and_separators_of_the_known_form_are_kept() -> None:
    assert find_invoice_refs("a2026b7", ("A-2026-B7",)) == ("A-2026-B7",)
