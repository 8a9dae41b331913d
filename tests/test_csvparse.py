"""csvparse: both export forms, every rejected input with its exact place, the samples."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import mahnwerk.csvparse as csvparse
from mahnwerk.csvparse import ParseResult, RowError, parse_invoices
from mahnwerk.models import Invoice, invoice_to_json

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
TODAY = date(2026, 11, 25)

REQUIRED = [
    "invoice_number",
    "customer_id",
    "customer_name",
    "email",
    "amount",
    "currency",
    "issue_date",
    "due_date",
    "language",
]
# Field values of a valid row in each form; the cases below override single fields.
GERMAN_ROW = {
    "invoice_number": "RE-1",
    "customer_id": "K-1",
    "customer_name": "Müller & Söhne KG",
    "email": "buchhaltung@mueller-soehne.example",
    "amount": "1.234,56",
    "currency": "EUR",
    "issue_date": "01.10.2026",
    "due_date": "15.10.2026",
    "language": "de",
}
ENGLISH_ROW = {
    **GERMAN_ROW,
    "customer_name": "Thornbury Consulting Ltd",
    "email": "accounts@thornbury.example",
    "amount": "1234.56",
    "issue_date": "2026-10-01",
    "due_date": "2026-10-15",
    "language": "en",
}


def german(*rows: dict[str, str], columns: list[str] | None = None) -> str:
    """A file in the German form; each row overrides fields of GERMAN_ROW (no quoting added)."""
    return _file(";", GERMAN_ROW, rows, columns)


def english(*rows: dict[str, str], columns: list[str] | None = None) -> str:
    return _file(",", ENGLISH_ROW, rows, columns)


def _file(
    sep: str, base: dict[str, str], rows: tuple[dict[str, str], ...], columns: list[str] | None
) -> str:
    names = columns or list({**base, **{k: "" for row in rows for k in row}})
    lines = [sep.join(names)]
    lines += [sep.join({**base, **row}.get(name, "") for name in names) for row in rows]
    return "\n".join(lines) + "\n"


def parse(text: str | bytes, filename: str = "f.csv") -> ParseResult:
    return parse_invoices(text.encode() if isinstance(text, str) else text, filename)


def where(result: ParseResult) -> list[tuple[int, int | None, str | None]]:
    return [(e.line, e.column, e.column_name) for e in result.errors]


# --- valid input ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ok:
    id: str
    text: str | bytes
    dialect: str
    expect: dict[str, Any] = field(default_factory=dict)  # attributes of the first invoice
    line: int = 2  # where the first invoice starts


OK_CASES = [
    Ok(
        "german basic",
        german({}),
        "german",
        {
            "number": "RE-1",
            "customer_name": "Müller & Söhne KG",
            "amount": Decimal("1234.56"),
            "issue_date": date(2026, 10, 1),
            "due_date": date(2026, 10, 15),
            "language": "de",
            "customer_type": "b2b",
            "tags": (),
            "paid_amount": Decimal(0),
            "status": "open",
        },
    ),
    Ok(
        "english basic",
        english({}),
        "international",
        {"amount": Decimal("1234.56"), "due_date": date(2026, 10, 15), "language": "en"},
    ),
    Ok(
        "english quoted thousands",
        english({"amount": '"1,234.56"'}),
        "international",
        {"amount": Decimal("1234.56")},
    ),
    Ok(
        "english millions",
        english({"amount": '"1,234,567"'}),
        "international",
        {"amount": Decimal("1234567.00")},
    ),
    Ok(
        "english integer",
        english({"amount": "1234"}),
        "international",
        {"amount": Decimal("1234.00")},
    ),
    Ok(
        "english one decimal",
        english({"amount": "0.5"}),
        "international",
        {"amount": Decimal("0.50")},
    ),
    Ok(
        "german no thousands",
        german({"amount": "1234,5"}),
        "german",
        {"amount": Decimal("1234.50")},
    ),
    Ok(
        "german millions",
        german({"amount": "1.234.567,89"}),
        "german",
        {"amount": Decimal("1234567.89")},
    ),
    Ok(
        "german two groups no decimals",
        german({"amount": "1.234.567"}),
        "german",
        {"amount": Decimal("1234567.00")},
    ),
    Ok(
        "largest amount",
        english({"amount": "999999999999.99"}),
        "international",
        {"amount": Decimal("999999999999.99")},
    ),
    Ok("leading zeros", german({"amount": "0000001,50"}), "german", {"amount": Decimal("1.50")}),
    Ok("german zero", german({"amount": "0,00"}), "german", {"amount": Decimal("0.00")}),
    Ok("german negative zero", german({"amount": "-0,00"}), "german", {"amount": Decimal("0.00")}),
    Ok(
        "german padded",
        german({"amount": " 12,00 ", "customer_name": "  Bäckerei Schröder  "}),
        "german",
        {"amount": Decimal("12.00"), "customer_name": "Bäckerei Schröder"},
    ),
    Ok(
        "german iso dates",
        german({"issue_date": "2026-10-01", "due_date": "2026-10-15"}),
        "german",
        {"issue_date": date(2026, 10, 1), "due_date": date(2026, 10, 15)},
    ),
    Ok(
        "german short date",
        german({"issue_date": "5.1.2026", "due_date": "9.01.2026"}),
        "german",
        {"issue_date": date(2026, 1, 5), "due_date": date(2026, 1, 9)},
    ),
    Ok(
        "due on issue day",
        german({"due_date": "01.10.2026"}),
        "german",
        {"due_date": date(2026, 10, 1)},
    ),
    Ok("currency lowercase", german({"currency": "chf"}), "german", {"currency": "CHF"}),
    Ok("currency euro sign", german({"currency": " € "}), "german", {"currency": "EUR"}),
    Ok("language upper", english({"language": "EN"}), "international", {"language": "en"}),
    Ok(
        "optional columns",
        german({"customer_type": "B2C", "tags": "vip", "paid_amount": "100,00", "status": "Paid"}),
        "german",
        {
            "customer_type": "b2c",
            "tags": ("vip",),
            "paid_amount": Decimal("100.00"),
            "status": "paid",
        },
    ),
    Ok(
        "optional columns empty",
        german({"customer_type": " ", "tags": "", "paid_amount": "", "status": ""}),
        "german",
        {"customer_type": "b2b", "tags": (), "paid_amount": Decimal(0), "status": "open"},
    ),
    Ok(
        "paid equals amount",
        german({"paid_amount": "1.234,56"}),
        "german",
        {"paid_amount": Decimal("1234.56")},
    ),
    Ok(
        "tags split strip drop empties",
        english({"tags": " vip ; ;key_account;vip;"}),
        "international",
        {"tags": ("vip", "key_account")},
    ),
    Ok(
        "tags quoted in german form",
        german({"tags": '"vip; export"'}),
        "german",
        {"tags": ("vip", "export")},
    ),
    Ok(
        "multi-line quoted tags",
        german({"tags": '"vip;\nexport\n"'}, {"invoice_number": "RE-2"}),
        "german",
        {"tags": ("vip", "export")},
    ),
    Ok(
        "quoted name with comma",
        english({"customer_name": '"Hughes, Daniel"'}),
        "international",
        {"customer_name": "Hughes, Daniel"},
    ),
    Ok(
        "quoted name with escaped quote",
        german({"customer_name": '"Café ""Zuckerhut"""'}),
        "german",
        {"customer_name": 'Café "Zuckerhut"'},
    ),
    Ok("utf-8 bom", b"\xef\xbb\xbf" + german({}).encode(), "german", {"number": "RE-1"}),
    Ok("crlf", german({}).replace("\n", "\r\n"), "german", {"amount": Decimal("1234.56")}),
    Ok("bare cr", english({}).replace("\n", "\r"), "international", {"number": "RE-1"}),
    Ok("no final newline", german({}).rstrip("\n"), "german", {"number": "RE-1"}),
    Ok(
        "header case and spaces",
        german({}).replace("invoice_number;customer_id", " Invoice_Number ;CUSTOMER_ID"),
        "german",
        {"number": "RE-1", "customer_id": "K-1"},
    ),
    Ok(
        "columns reordered",
        german({}, columns=list(reversed(REQUIRED))),
        "german",
        {"number": "RE-1", "amount": Decimal("1234.56")},
    ),
    Ok(
        "blank lines skipped",
        "\n" + german({}).replace("\n", "\n\n   \n"),
        "german",
        {"number": "RE-1"},
        line=5,
    ),
    Ok(
        "empty separator-only rows skipped",
        german({}).replace("\n", "\n;;;;;;;;\n", 1),
        "german",
        {"number": "RE-1"},
        line=3,
    ),
    Ok(
        "email plus and subdomain",
        english({"email": "a.b+dunning@mail.firma.example"}),
        "international",
        {"email": "a.b+dunning@mail.firma.example"},
    ),
    Ok(
        "nul-free unicode name",
        german({"customer_name": "Zahnarztpraxis Dr. Özdemir"}),
        "german",
        {"customer_name": "Zahnarztpraxis Dr. Özdemir"},
    ),
]


@pytest.mark.parametrize("case", OK_CASES, ids=lambda c: c.id)
def test_valid(case: Ok) -> None:
    result = parse(case.text)
    assert result.errors == []
    assert result.dialect == case.dialect
    line, invoice = result.invoices[0]
    assert line == case.line
    for name, value in case.expect.items():
        actual = getattr(invoice, name)
        # str() too: Decimal("1234.5") == Decimal("1234.50"), but mails print the former.
        assert (actual, str(actual)) == (value, str(value)), name
        assert type(actual) is type(value), name


def test_multi_line_record_keeps_physical_line_numbers() -> None:
    text = german(
        {"tags": '"vip;\nexport\n"'},
        {"invoice_number": "RE-2"},
        {"invoice_number": "RE-3", "amount": "x"},
    )
    result = parse(text)
    assert [line for line, _ in result.invoices] == [2, 5]
    assert where(result) == [(6, 5, "amount")]


def test_amounts_are_decimal_never_float() -> None:
    text = german({"paid_amount": "0,10"}, {"invoice_number": "RE-2", "amount": "0,30"})
    invoices = [inv for _, inv in parse(text).invoices]
    assert all(type(inv.amount) is Decimal for inv in invoices)
    assert all(type(inv.paid_amount) is Decimal for inv in invoices)
    assert invoices[0].open_amount == Decimal("1234.46")
    # 0.1 + 0.2 == 0.3 holds only without floats.
    assert invoices[0].paid_amount + Decimal("0.20") == invoices[1].amount
    assert invoice_to_json(invoices[0])["amount"] == "1234.56"


def test_rows_and_invoice_order() -> None:
    text = german(*({"invoice_number": f"RE-{n}"} for n in range(1, 4)), {"amount": "?"})
    result = parse(text)
    assert result.rows == 4
    assert [inv.number for _, inv in result.invoices] == ["RE-1", "RE-2", "RE-3"]


# --- dialect detection ---------------------------------------------------------------------

DETECT_CASES = [
    ("a;b;c", "german"),
    ("a,b,c", "international"),
    ('"a;b",c,d', "international"),
    ("\n\na;b", "german"),
    ("", "international"),
    ("single", "international"),
]


@pytest.mark.parametrize(("header", "dialect"), DETECT_CASES)
def test_detect(header: str, dialect: str) -> None:
    assert parse(header + "\n").dialect == dialect


# --- errors --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    id: str
    text: str | bytes
    # (line, column, column_name, part of the message) per expected error, in order.
    errors: list[tuple[int, int | None, str | None, str]]
    invoices: int = 0


def _drop(text: str, column: str) -> str:
    names = text.splitlines()[0].split(";")
    index = names.index(column)
    return "".join(
        ";".join(p for i, p in enumerate(line.split(";")) if i != index) + "\n"
        for line in text.splitlines()
    )


BAD_CASES = [
    # --- the file
    Bad(
        "latin-1",
        german({}, {"invoice_number": "RE-2"}).encode().replace(b"\xc3\xbc", b"\xfc"),
        [(2, None, None, "save the file as UTF-8")],
    ),
    Bad(
        "latin-1 third line",
        german(
            {"customer_name": "Acme"}, {"invoice_number": "RE-2", "customer_name": "Weiß"}
        ).encode("latin-1"),
        [(3, None, None, "not UTF-8")],
    ),
    Bad("latin-1 after cr line ends", b"a\rb\rc\xe4\r", [(3, None, None, "UTF-8")]),
    Bad("utf-16", german({}).encode("utf-16"), [(1, None, None, "UTF-16")]),
    Bad("empty", "", [(1, None, None, "is empty")]),
    Bad("only blank lines", "\n  \n\n", [(1, None, None, "is empty")]),
    Bad("no header row", german({}).split("\n", 1)[1], [(1, None, None, "no known column")]),
    # --- the header
    Bad("missing column", _drop(german({}), "email"), [(1, None, "email", "missing")]),
    Bad(
        "typo in column",
        german({}).replace("amount", "amout", 1),
        [(1, 5, "amout", "did you mean 'amount'?"), (1, None, "amount", "missing")],
    ),
    Bad(
        "typo in optional column",
        german({}, columns=[*REQUIRED, "stauts"]),
        [(1, 10, "stauts", "did you mean 'status'?")],
    ),
    Bad(
        "unknown column without hint",
        german({}, columns=[*REQUIRED, "zzz"]),
        [(1, 10, "zzz", "unknown column 'zzz'")],
    ),
    Bad(
        "duplicate column",
        german({}, columns=[*REQUIRED, "Email"]),
        [(1, 10, "email", "twice (first as column 4)")],
    ),
    Bad("empty column name", german({}, columns=[*REQUIRED, ""]), [(1, 10, None, "has no name")]),
    Bad(
        "header error keeps rows checked",
        german({"amount": "x"}, columns=[*REQUIRED, "zzz"]),
        [(1, 10, "zzz", "unknown"), (2, 5, "amount", "not an amount")],
    ),
    # --- structure of rows
    Bad(
        "too many fields",
        german({"amount": "1.234;56"}, {"invoice_number": "RE-2"}),
        [(2, None, None, "has 10 fields but the header has 9")],
        invoices=1,
    ),
    Bad(
        "unquoted thousands comma",
        english({"amount": "1,234.56"}),
        [(2, None, None, "must be in double quotes")],
    ),
    Bad("too few fields", german({}) + "RE-2;K-1\n", [(3, None, None, "has 2 fields")], invoices=1),
    Bad(
        "quote never closed",
        german({}) + 'RE-2;"K-1\nRE-3;K-2\n',
        [(3, None, None, "never closed")],
        invoices=1,
    ),
    Bad(
        "text after closing quote",
        german({"customer_id": '"K-1"x'}, {"invoice_number": "RE-2"}),
        [(2, None, None, "broken CSV")],
        invoices=1,
    ),
    # --- german numbers
    Bad("german two dots", german({"amount": "12.5.3"}), [(2, 5, "amount", "not an amount")]),
    Bad(
        "german three decimals", german({"amount": "1,234"}), [(2, 5, "amount", "3 decimal places")]
    ),
    Bad("german ambiguous thousands", german({"amount": "1.234"}), [(2, 5, "amount", "ambiguous")]),
    Bad("german decimal point", german({"amount": "1234.56"}), [(2, 5, "amount", "decimal comma")]),
    Bad("german english thousands", german({"amount": "1,234.56"}), [(2, 5, "amount", "1.234,56")]),
    Bad("bad thousands group", german({"amount": "1.23,45"}), [(2, 5, "amount", "not an amount")]),
    Bad("trailing comma", german({"amount": "12,"}), [(2, 5, "amount", "not an amount")]),
    Bad("leading comma", german({"amount": ",50"}), [(2, 5, "amount", "not an amount")]),
    Bad(
        "currency in amount",
        german({"amount": "1.234,56 €"}),
        [(2, 5, "amount", "currency column")],
    ),
    Bad("exponent", english({"amount": "1e3"}), [(2, 5, "amount", "not an amount")]),
    Bad("too large", german({"amount": "1" * 13}), [(2, 5, "amount", "implausibly large")]),
    Bad("far too large", english({"amount": "9" * 40}), [(2, 5, "amount", "implausibly large")]),
    Bad("negative amount", german({"amount": "-5,00"}), [(2, 5, "amount", "negative")]),
    Bad("trailing minus", german({"amount": "5,00-"}), [(2, 5, "amount", "negative")]),
    Bad("empty amount", german({"amount": "  "}), [(2, 5, "amount", "is empty")]),
    # --- international numbers
    Bad(
        "english ambiguous thousands",
        english({"amount": '"1,234"'}),
        [(2, 5, "amount", "write 1234 or 1234.00")],
    ),
    Bad(
        "english decimal comma", english({"amount": '"12,50"'}), [(2, 5, "amount", "decimal comma")]
    ),
    Bad(
        "english three decimals",
        english({"amount": "1.234"}),
        [(2, 5, "amount", "3 decimal places")],
    ),
    Bad("english two dots", english({"amount": "12.5.3"}), [(2, 5, "amount", "not an amount")]),
    Bad("english plus sign", english({"amount": "+5"}), [(2, 5, "amount", "not an amount")]),
    # --- paid_amount
    Bad(
        "paid more than amount",
        german({"paid_amount": "1.234,57"}),
        [(2, 10, "paid_amount", "more than the invoice amount 1234.56")],
    ),
    Bad("paid negative", german({"paid_amount": "-1,00"}), [(2, 10, "paid_amount", "negative")]),
    Bad("paid garbage", german({"paid_amount": "viel"}), [(2, 10, "paid_amount", "not an amount")]),
    # --- dates
    Bad(
        "no such day",
        german({"due_date": "31.02.2026"}),
        [(2, 8, "due_date", "not a calendar date")],
    ),
    Bad(
        "no such iso day",
        english({"issue_date": "2026-13-01"}),
        [(2, 7, "issue_date", "not a calendar date")],
    ),
    Bad(
        "two-digit year",
        german({"issue_date": "01.10.26"}),
        [(2, 7, "issue_date", "two-digit year")],
    ),
    Bad(
        "german date in english form",
        english({"due_date": "15.10.2026"}),
        [(2, 8, "due_date", "ISO dates")],
    ),
    Bad("slash date", german({"due_date": "10/15/2026"}), [(2, 8, "due_date", "ambiguous")]),
    Bad(
        "date with time",
        english({"due_date": "2026-10-15 00:00"}),
        [(2, 8, "due_date", "not a date")],
    ),
    Bad("compact iso", english({"due_date": "20261015"}), [(2, 8, "due_date", "not a date")]),
    Bad(
        "due before issue",
        german({"due_date": "30.09.2026"}),
        [(2, 8, "due_date", "before the issue date 2026-10-01")],
    ),
    # --- currency
    Bad("currency word", german({"currency": "Euro"}), [(2, 6, "currency", "write EUR")]),
    Bad("currency dollar sign", german({"currency": "$"}), [(2, 6, "currency", "ambiguous")]),
    Bad("currency digits", german({"currency": "E1R"}), [(2, 6, "currency", "ISO code")]),
    # --- email
    Bad("email without tld", german({"email": "info@firma"}), [(2, 4, "email", "not a valid")]),
    Bad(
        "email without at",
        german({"email": "info.firma.example"}),
        [(2, 4, "email", "not a valid")],
    ),
    Bad(
        "email double dot",
        german({"email": "a..b@firma.example"}),
        [(2, 4, "email", "not a valid")],
    ),
    Bad(
        "email with space",
        german({"email": "info @firma.example"}),
        [(2, 4, "email", "without spaces")],
    ),
    Bad(
        "email list comma",
        english({"email": '"a@x.example, b@x.example"'}),
        [(2, 4, "email", "without spaces")],
    ),
    Bad(
        "email list", german({"email": "a@x.example,b@x.example"}), [(2, 4, "email", "not a list")]
    ),
    Bad(
        "email display name",
        german({"email": "Max<max@x.example>"}),
        [(2, 4, "email", "display name")],
    ),
    Bad("email umlaut", german({"email": "info@müller.example"}), [(2, 4, "email", "non-ASCII")]),
    Bad(
        "email header injection",
        german({"email": '"a@x.example\nBcc: b@x.example"'}),
        [(2, 4, "email", "line breaks")],
    ),
    # --- text fields
    Bad(
        "name with line break",
        german({"customer_name": '"Evil\nBcc: x@y.example"'}),
        [(2, 3, "customer_name", "line break")],
    ),
    Bad(
        "name with nul",
        german({"customer_name": "Evil\x00Corp"}),
        [(2, 3, "customer_name", "control character")],
    ),
    Bad(
        "name with bare cr",
        german({"customer_name": '"Evil\rCorp"'}),
        [(2, 3, "customer_name", "line break")],
    ),
    Bad(
        "name with line separator",
        german({"customer_name": "Evil\u2028Corp"}),
        [(2, 3, "customer_name", "line break")],
    ),
    Bad(
        "invoice number with line break",
        german({"invoice_number": '"RE\n1"'}),
        [(2, 1, "invoice_number", "line break")],
    ),
    Bad(
        "empty invoice number",
        german({"invoice_number": ""}),
        [(2, 1, "invoice_number", "is empty")],
    ),
    Bad("blank customer id", german({"customer_id": "   "}), [(2, 2, "customer_id", "is empty")]),
    Bad("empty name", german({"customer_name": ""}), [(2, 3, "customer_name", "is empty")]),
    Bad(
        "duplicate invoice number",
        german({}, {"invoice_number": "RE-2"}, {"amount": "1,00"}),
        [(4, 1, "invoice_number", "invoice RE-1 appears twice (first on line 2)")],
        invoices=2,
    ),
    Bad(
        "duplicate of a bad row still names the first line",
        german({"amount": "x"}, {}),
        [(2, 5, "amount", "not"), (3, 1, "invoice_number", "first on line 2")],
    ),
    # --- choices
    Bad("language", german({"language": "fr"}), [(2, 9, "language", "not one of de, en")]),
    Bad("language typo", german({"language": "dee"}), [(2, 9, "language", "did you mean 'de'?")]),
    Bad(
        "status typo",
        german({"status": "canceled"}),
        [(2, 10, "status", "did you mean 'cancelled'?")],
    ),
    Bad(
        "customer type",
        german({"customer_type": "b2x"}),
        [(2, 10, "customer_type", "not one of b2b, b2c")],
    ),
    Bad("empty language", german({"language": ""}), [(2, 9, "language", "is empty")]),
    # --- tags
    Bad(
        "tags with comma",
        english({"tags": '"vip, key_account"'}),
        [(2, 10, "tags", "separate tags with ';'")],
    ),
    Bad(
        "tag with inner line break",
        german({"tags": '"vip\nexport"'}),
        [(2, 10, "tags", "line break")],
    ),
    # --- collecting
    Bad(
        "all errors of a row",
        german({"email": "x", "amount": "1,234", "currency": "$$", "language": "fr"}),
        [
            (2, 4, "email", "not a valid"),
            (2, 5, "amount", "decimal places"),
            (2, 6, "currency", "ISO"),
            (2, 9, "language", "not one of"),
        ],
    ),
    Bad(
        "errors across rows",
        german(
            {"amount": "x"},
            {"invoice_number": "RE-2"},
            {"invoice_number": "RE-3", "due_date": "x"},
            {"invoice_number": "RE-4", "email": ""},
        ),
        [(2, 5, "amount", "not"), (4, 8, "due_date", "not a date"), (5, 4, "email", "empty")],
        invoices=1,
    ),
    Bad(
        "line numbers after a multi-line field and blank lines",
        german({"tags": '"a;\n\nb"'}).rstrip("\n")
        + "\n\n"
        + german({"invoice_number": "RE-2", "customer_name": '"Bad\nName"', "tags": ""}).split(
            "\n", 1
        )[1],
        [(6, 3, "customer_name", "line break")],
        invoices=1,
    ),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda c: c.id)
def test_errors(case: Bad) -> None:
    result = parse(case.text)
    assert where(result) == [(line, col, name) for line, col, name, _ in case.errors]
    for error, (*_, message) in zip(result.errors, case.errors, strict=True):
        assert message in error.message
        assert error.file == "f.csv"
    assert len(result.invoices) == case.invoices


def test_row_with_error_yields_no_invoice_but_others_do() -> None:
    result = parse(german({"amount": "x"}, {"invoice_number": "RE-2"}))
    assert [(line, inv.number) for line, inv in result.invoices] == [(3, "RE-2")]


def test_header_error_yields_no_invoices() -> None:
    result = parse(german({}, columns=[*REQUIRED, "zzz"]))
    assert result.rows == 1
    assert result.invoices == []


STR_CASES = [
    (RowError("a.csv", 3, 5, "amount", "bad"), "a.csv:3:5 (amount): bad"),
    (RowError("a.csv", 1, None, "email", "missing"), "a.csv:1 (email): missing"),
    (RowError("a.csv", 1, 10, None, "no name"), "a.csv:1:10: no name"),
    (RowError("a.csv", 7, None, None, "broken"), "a.csv:7: broken"),
]


@pytest.mark.parametrize(("error", "text"), STR_CASES)
def test_row_error_str(error: RowError, text: str) -> None:
    assert str(error) == text


def test_filename_only_names_the_file() -> None:
    result = parse_invoices(b"x;y\n", "exports/2026-11.csv")
    assert str(result.errors[0]).startswith("exports/2026-11.csv:1: no known column")


def test_module_is_pure() -> None:
    tree = ast.parse(Path(csvparse.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    forbidden = {"os", "io", "pathlib", "sys", "time", "shutil", "subprocess", "socket"}
    assert not imported & forbidden
    assert "datetime" in imported  # only `date`, never now()/today()
    assert "now(" not in Path(csvparse.__file__).read_text(encoding="utf-8")


# --- the samples ---------------------------------------------------------------------------

SAMPLE_CASES = [("invoices-de.csv", "german", 15), ("invoices-en.csv", "international", 10)]


@pytest.mark.parametrize(("name", "dialect", "count"), SAMPLE_CASES)
def test_sample_parses_cleanly(name: str, dialect: str, count: int) -> None:
    result = parse_invoices((SAMPLES / name).read_bytes(), name)
    assert [str(e) for e in result.errors] == []
    assert result.dialect == dialect
    assert len(result.invoices) == result.rows == count


def _samples() -> list[Invoice]:
    return [
        inv
        for name, _, _ in SAMPLE_CASES
        for _, inv in parse_invoices((SAMPLES / name).read_bytes(), name).invoices
    ]


def _situation(inv: Invoice) -> str:
    """The stage each sample invoice is meant to reach on TODAY under the default policy."""
    if inv.status != "open":
        return inv.status
    overdue = (TODAY - inv.due_date).days
    if -7 <= overdue < 0:
        return "pre_due"
    if overdue > 60:
        return "long_overdue"
    if overdue >= 7:
        return "reminder_1"
    return "none"


def test_samples_cover_the_scenarios() -> None:
    invoices = _samples()
    assert len(invoices) == 25
    assert len({inv.number for inv in invoices}) == 25
    assert len({inv.customer_id for inv in invoices}) == 20
    situations = [_situation(inv) for inv in invoices]
    counts = {s: situations.count(s) for s in set(situations)}
    assert counts == {
        "pre_due": 6,
        "reminder_1": 6,
        "long_overdue": 3,
        "none": 7,
        "paid": 2,
        "cancelled": 1,
    }
    partly = [i for i in invoices if i.status == "open" and Decimal(0) < i.paid_amount < i.amount]
    assert len(partly) == 2
    assert {i.currency for i in invoices} == {"EUR", "CHF"}
    assert {i.language for i in invoices} == {"de", "en"}
    assert any(i.customer_type == "b2c" for i in invoices)
    assert any("&" in i.customer_name for i in invoices)
    for inv in invoices:
        assert 14 <= (inv.due_date - inv.issue_date).days <= 30, inv.number
        assert inv.email.endswith(".example"), inv.number
    by_customer: dict[str, list[str]] = {}
    for inv in invoices:
        by_customer.setdefault(inv.customer_id, []).append(_situation(inv))
    assert sorted(by_customer["K-1001"]) == ["none", "paid", "reminder_1"]
    # C-2001 has two invoices due at once (one mail, consolidated); nobody else has.
    for customer, found in by_customer.items():
        due = [s for s in found if s in ("pre_due", "reminder_1", "long_overdue")]
        assert len(due) == (2 if customer == "C-2001" else min(len(due), 1)), customer
