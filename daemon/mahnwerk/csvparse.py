"""Turn an accounting export (CSV bytes) into invoices, or into errors a person can fix.

The parser is pure: it gets bytes and a file name (only used in messages) and
never touches files or the clock, so every rule below is testable in isolation.

Two export forms exist in the wild and are told apart by the header line:
German spreadsheets write `;`, `1.234,56` and `15.10.2026`; everything else
writes `,`, `1234.56` and `2026-10-15`. Money is read as Decimal and every
ambiguous number is an error rather than a guess, because a misread thousands
separator would put a thousandfold amount into a dunning letter.

All problems of a file are collected, one per bad field, so a user fixes the
export once instead of once per run. A row with any problem yields no invoice.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from mahnwerk.models import CUSTOMER_TYPES, LANGUAGES, STATUSES, UNSAFE_TEXT, ZERO, Invoice

Dialect = Literal["international", "german"]

_UTF8_BOM = codecs.BOM_UTF8
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_CENT = Decimal("0.01")
# As rules.yaml's money (14 digits, 2 of them decimals): a longer number is a pasted ID.
_MAX_WHOLE_DIGITS = 12
# Physical lines end in CRLF, CR or LF only; str.splitlines would also split on
# form feeds and U+2028, which would shift every reported line number after them.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_GERMAN_NUMBER = re.compile(r"(?P<whole>[0-9]{1,3}(?:\.[0-9]{3})+|[0-9]+)(?:,(?P<frac>[0-9]+))?")
_INTERNATIONAL_NUMBER = re.compile(
    r"(?P<whole>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.(?P<frac>[0-9]+))?"
)
_ISO_DATE = re.compile(r"(?P<y>[0-9]{4})-(?P<m>[0-9]{2})-(?P<d>[0-9]{2})")
_GERMAN_DATE = re.compile(r"(?P<d>[0-9]{1,2})\.(?P<m>[0-9]{1,2})\.(?P<y>[0-9]{4})")


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem, placed so that an editor or spreadsheet jumps right to it."""

    file: str
    line: int
    column: int | None
    column_name: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        if self.column is not None:
            where += f":{self.column}"
        if self.column_name is not None:
            where += f" ({self.column_name})"
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Invoices with the line they start on, so later checks can point back into the file."""

    invoices: list[tuple[int, Invoice]]
    errors: list[RowError]
    dialect: Dialect
    rows: int
    # The file as a whole cannot be read (encoding, header): no row can be trusted,
    # so even --skip-bad must not import from it.
    fatal: bool = False


class _Invalid(ValueError):
    """A field was rejected; the text becomes the message of a RowError."""


# --- field parsers -------------------------------------------------------------------------
# Each takes the raw field (never empty) and whether the file is in the German form.


def _single_line(raw: str, german: bool) -> str:
    # Checked after stripping: surrounding whitespace is dropped anyway and harmless.
    text = raw.strip()
    if UNSAFE_TEXT.search(text):
        raise _Invalid(
            "contains a line break or control character; it would end up in mail headers, "
            "so remove it"
        )
    return text


def _parse_email(raw: str, german: bool) -> str:
    text = raw.strip()
    if re.search(r"\s", text) or UNSAFE_TEXT.search(text):
        raise _Invalid(f"{text!r} must be a single address without spaces or line breaks")
    if "," in text or ";" in text:
        raise _Invalid(f"{text!r} must be one address, not a list")
    if "<" in text or ">" in text:
        raise _Invalid(f"{text!r}: write only the address, without a display name or <>")
    if not text.isascii():
        raise _Invalid(
            f"{text!r} contains non-ASCII characters; write the domain in its ASCII form (xn--…)"
        )
    local, _, _domain = text.partition("@")
    if len(text) > 254 or len(local) > 64 or not _EMAIL.fullmatch(text):
        raise _Invalid(f"{text!r} is not a valid email address")
    return text


def _number_hint(text: str, german: bool) -> str:
    if re.search(r"[€$£¥]|\b[A-Z]{3}\b", text):
        return f"{text!r} is not a plain number; put the currency in the currency column"
    if german and re.fullmatch(r"[0-9]+\.[0-9]{1,2}", text):
        return f"{text!r} uses a decimal point; the German form writes 1234,56 (decimal comma)"
    if not german and re.fullmatch(r"[0-9]+,[0-9]{1,2}", text):
        return f"{text!r} uses a decimal comma; the international form writes 1234.56"
    example = "1234,56 or 1.234,56" if german else '1234.56 or "1,234.56" (in quotes)'
    return f"{text!r} is not an amount; write it like {example}"


def _to_decimal(text: str, german: bool) -> Decimal:
    group = "." if german else ","
    match = (_GERMAN_NUMBER if german else _INTERNATIONAL_NUMBER).fullmatch(text)
    if match is None:
        raise _Invalid(_number_hint(text, german))
    whole, frac = match["whole"], match["frac"]
    if frac is not None and len(frac) > 2:
        raise _Invalid(f"{text!r} has {len(frac)} decimal places; at most 2 are allowed")
    if frac is None and whole.count(group) == 1:
        # "1,234" is 1234 to a British reader and 1.234 to a German one; do not guess.
        plain = whole.replace(group, "")
        full = f"{whole},00" if german else f"{plain}.00"
        raise _Invalid(
            f"{text!r} is ambiguous: {group!r} may separate thousands or decimals; "
            f"write {plain} or {full}"
        )
    digits = whole.replace(group, "").lstrip("0")
    if len(digits) > _MAX_WHOLE_DIGITS:
        # Also keeps quantize() inside Decimal's 28-digit context.
        raise _Invalid(f"{text!r} is implausibly large (more than {_MAX_WHOLE_DIGITS} digits)")
    return Decimal(f"{digits or '0'}.{frac or '0'}").quantize(_CENT)


def _parse_money(raw: str, german: bool) -> Decimal:
    text = raw.strip()
    negative = text.startswith("-") or text.endswith("-")
    value = _to_decimal(text.strip("-").strip() if negative else text, german)
    if negative and value != ZERO:
        raise _Invalid(f"{text!r} is negative; amounts must be 0 or more")
    return value


def _date_hint(text: str, german: bool) -> str:
    if re.fullmatch(r"[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{2}", text):
        return f"{text!r} has a two-digit year; write the year in full, like 15.10.2026"
    if not german and _GERMAN_DATE.fullmatch(text):
        return f"{text!r}: the international form writes ISO dates like 2026-10-15"
    if "/" in text:
        return f"{text!r} is ambiguous (day/month or month/day?); write it like 2026-10-15"
    example = "15.10.2026 or 2026-10-15" if german else "2026-10-15"
    return f"{text!r} is not a date; write it like {example}"


def _parse_date(raw: str, german: bool) -> date:
    text = raw.strip()
    for pattern in (_GERMAN_DATE, _ISO_DATE) if german else (_ISO_DATE,):
        match = pattern.fullmatch(text)
        if match is not None:
            try:
                return date(int(match["y"]), int(match["m"]), int(match["d"]))
            except ValueError as exc:
                raise _Invalid(f"{text!r} is not a calendar date ({exc})") from None
    raise _Invalid(_date_hint(text, german))


_CURRENCY_HINTS = {
    "$": "'$' is ambiguous; write USD, CAD, AUD, …",
    "£": "write GBP",
    "euro": "write EUR",
    "fr.": "write CHF",
    "sfr": "write CHF",
}


def _parse_currency(raw: str, german: bool) -> str:
    text = raw.strip()
    if text == "€":
        return "EUR"
    if re.fullmatch(r"[A-Za-z]{3}", text):
        return text.upper()
    hint = _CURRENCY_HINTS.get(text.lower(), "write a three-letter ISO code like EUR")
    raise _Invalid(f"{text!r} is not a currency code; {hint}")


def _choice(options: tuple[str, ...]) -> Callable[[str, bool], str]:
    def parse(raw: str, german: bool) -> str:
        text = raw.strip().lower()
        if text in options:
            return text
        close = difflib.get_close_matches(text, options, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise _Invalid(f"{raw.strip()!r} is not one of {', '.join(options)}{hint}")

    return parse


def _parse_tags(raw: str, german: bool) -> tuple[str, ...]:
    # Lower case: rules.yaml matches tags case-insensitively, and so does the store.
    tags = [tag.strip().casefold() for tag in raw.split(";")]
    for tag in tags:
        if "," in tag:
            # A tag that never matches a policy is a silent typo; ',' is the usual culprit.
            raise _Invalid(f"tag {tag!r} contains ','; separate tags with ';'")
        if UNSAFE_TEXT.search(tag):
            raise _Invalid(f"tag {tag!r} contains a line break or control character")
    return tuple(dict.fromkeys(tag for tag in tags if tag))


# --- the columns ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    attr: str  # the Invoice attribute it fills
    parse: Callable[[str, bool], object]
    required: bool = True


_COLUMNS: tuple[_Column, ...] = (
    _Column("invoice_number", "number", _single_line),
    _Column("customer_id", "customer_id", _single_line),
    _Column("customer_name", "customer_name", _single_line),
    _Column("email", "email", _parse_email),
    _Column("amount", "amount", _parse_money),
    _Column("currency", "currency", _parse_currency),
    _Column("issue_date", "issue_date", _parse_date),
    _Column("due_date", "due_date", _parse_date),
    _Column("language", "language", _choice(LANGUAGES)),
    # Optional: an empty or missing field leaves the Invoice default.
    _Column("customer_type", "customer_type", _choice(CUSTOMER_TYPES), required=False),
    _Column("tags", "tags", _parse_tags, required=False),
    _Column("paid_amount", "paid_amount", _parse_money, required=False),
    _Column("status", "status", _choice(STATUSES), required=False),
)
_BY_NAME = {column.name: column for column in _COLUMNS}
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c.name for c in _COLUMNS if c.required)
OPTIONAL_COLUMNS: tuple[str, ...] = tuple(c.name for c in _COLUMNS if not c.required)


def _due_after_issue(values: Mapping[str, object]) -> str | None:
    issue, due = values.get("issue_date"), values.get("due_date")
    if isinstance(issue, date) and isinstance(due, date) and due < issue:
        return f"due date {due.isoformat()} is before the issue date {issue.isoformat()}"
    return None


def _paid_within_amount(values: Mapping[str, object]) -> str | None:
    amount, paid = values.get("amount"), values.get("paid_amount")
    if isinstance(amount, Decimal) and isinstance(paid, Decimal) and paid > amount:
        return f"paid amount {paid} is more than the invoice amount {amount}"
    return None


# Checks across fields, each reported on the column a person would correct.
_CROSS_CHECKS: tuple[tuple[str, Callable[[Mapping[str, object]], str | None]], ...] = (
    ("due_date", _due_after_issue),
    ("paid_amount", _paid_within_amount),
)


# --- the file ------------------------------------------------------------------------------


def _decode(data: bytes, filename: str) -> tuple[str, RowError | None]:
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    if data.startswith(_UTF16_BOMS):
        message = "is UTF-16 (Excel 'Unicode text'); save the file as CSV UTF-8"
        return "", RowError(filename, 1, None, None, message)
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = len(_LINE_BREAK.findall(data, 0, exc.start)) + 1
        byte = data[exc.start]
        message = (
            f"byte 0x{byte:02X} is not UTF-8 (a Windows-1252 or Latin-1 export?); "
            "save the file as UTF-8"
        )
        return "", RowError(filename, line, None, None, message)


def _detect(data: bytes) -> Dialect:
    """The header names contain neither separator, so the more frequent one wins."""
    header = next((line for line in data.splitlines() if line.strip()), b"")
    return "german" if header.count(b";") > header.count(b",") else "international"


def _records(
    text: str, dialect: Dialect, filename: str
) -> Iterator[tuple[int, list[str] | RowError]]:
    """Records with the line they start on: a quoted field may span lines, and a person
    looks for the record's first line. Broken quoting is yielded, not raised, so the
    records after it are still checked."""
    reader = csv.reader(
        iter(_LINE.findall(text)), delimiter=";" if dialect == "german" else ",", strict=True
    )
    while True:
        # The reader counts lines pulled from the iterator; a record spanning
        # several lines starts on the line after the previous record's last one.
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            detail = (
                'a quoted field is never closed (missing ")'
                if "end of data" in str(exc)
                else str(exc)
            )
            yield start, RowError(filename, start, None, None, f"broken CSV: {detail}")
            continue
        if any(field.strip() for field in fields):
            yield start, fields


def _read_header(
    line: int, names: list[str], filename: str
) -> tuple[dict[str, int], list[RowError]]:
    """Map known column names to their position; every naming problem becomes an error."""
    positions: dict[str, int] = {}
    errors: list[RowError] = []
    known = [name.strip().lower() for name in names]
    if not set(known) & _BY_NAME.keys():
        message = (
            "no known column names in the first line; it must name the columns, "
            f"at least {', '.join(REQUIRED_COLUMNS)}"
        )
        return positions, [RowError(filename, line, None, None, message)]
    for index, name in enumerate(known):
        column = index + 1
        if not name:
            message = "column has no name (a stray separator at the end of the line?)"
            errors.append(RowError(filename, line, column, None, message))
        elif name in positions:
            message = f"column appears twice (first as column {positions[name] + 1})"
            errors.append(RowError(filename, line, column, name, message))
        elif name not in _BY_NAME:
            close = difflib.get_close_matches(name, _BY_NAME.keys(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            message = f"unknown column {names[index].strip()!r}{hint}"
            errors.append(RowError(filename, line, column, name, message))
        else:
            positions[name] = index
    for name in REQUIRED_COLUMNS:
        if name not in positions:
            errors.append(RowError(filename, line, None, name, "required column is missing"))
    return positions, errors


def _parse_row(
    line: int, fields: list[str], positions: Mapping[str, int], german: bool, filename: str
) -> tuple[dict[str, object], list[RowError]]:
    """Parse every known field of one record, collecting a problem per bad field."""
    values: dict[str, object] = {}
    problems: list[tuple[str, str]] = []
    for name, index in positions.items():
        column = _BY_NAME[name]
        raw = fields[index]
        if not raw.strip():
            if column.required:
                problems.append((name, "is empty"))
            continue
        try:
            values[name] = column.parse(raw, german)
        except _Invalid as exc:
            problems.append((name, str(exc)))
    for name, check in _CROSS_CHECKS:
        problem = check(values)
        if problem is not None:
            problems.append((name, problem))
    errors = [
        RowError(filename, line, positions[name] + 1, name, message) for name, message in problems
    ]
    return values, errors


PROGRESS_EVERY = 1000


def parse_invoices(
    data: bytes, filename: str, progress: Callable[[int], None] | None = None
) -> ParseResult:
    """Parse one export; `filename` only names the file in error messages.

    `progress` is told the line reached every PROGRESS_EVERY rows, for a bar.
    """
    dialect = _detect(data)
    text, decode_error = _decode(data, filename)
    if decode_error is not None:
        return ParseResult([], [decode_error], dialect, 0, fatal=True)
    german = dialect == "german"
    separator = ";" if german else ","
    errors: list[RowError] = []
    invoices: list[tuple[int, Invoice]] = []
    records = _records(text, dialect, filename)
    header: list[str] | None = None
    header_line = 1
    for start, record in records:
        if isinstance(record, RowError):
            errors.append(record)
            continue
        header, header_line = record, start
        break
    if header is None:
        if not errors:
            columns = ", ".join(REQUIRED_COLUMNS)
            message = f"is empty; the first line must name the columns ({columns})"
            errors.append(RowError(filename, 1, None, None, message))
        return ParseResult([], errors, dialect, 0, fatal=True)
    positions, header_errors = _read_header(header_line, header, filename)
    errors.extend(header_errors)
    seen: dict[str, int] = {}
    rows = 0
    for line, record in records:
        rows += 1
        if progress is not None and rows % PROGRESS_EVERY == 0:
            progress(line)
        if isinstance(record, RowError):
            errors.append(record)
            continue
        if len(record) != len(header):
            message = (
                f"has {len(record)} fields but the header has {len(header)}; "
                f"a field containing {separator!r} must be in double quotes"
            )
            errors.append(RowError(filename, line, None, None, message))
            continue
        values, row_errors = _parse_row(line, record, positions, german, filename)
        number = values.get("invoice_number")
        if isinstance(number, str):
            if number in seen:
                message = f"invoice {number} appears twice (first on line {seen[number]})"
                column = positions["invoice_number"] + 1
                row_errors.append(RowError(filename, line, column, "invoice_number", message))
            else:
                seen[number] = line
        errors.extend(row_errors)
        if not header_errors and not row_errors:
            invoices.append((line, _invoice(values)))
    return ParseResult(invoices, errors, dialect, rows, fatal=bool(header_errors))


def _invoice(values: Mapping[str, object]) -> Invoice:
    # The parsers above return exactly the types Invoice declares for each attribute.
    fields: dict[str, Any] = {_BY_NAME[name].attr: value for name, value in values.items()}
    return Invoice(**fields)
