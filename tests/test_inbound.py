"""Raw bytes -> InboundMail: decoding, inert header values, bodies, dates, bounces, and never
an exception, whatever the bytes.

The .eml files under tests/data/inbound are small hand-made messages, one situation each.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mahnwerk.inbound import guess_language, parse
from mahnwerk.inbound_types import Bounce, InboundMail

DATA = Path(__file__).resolve().parent / "data" / "inbound"
OUR_ID = "<3f2a9c0e5b7d41e8a6c3b9d2e1f04a57@muster-handel.example>"
TOKEN = "<mw-8d1e4b6f2a9c47e0b3d5f7a1c2e9b084@muster-handel.example>"
CET = timezone(timedelta(hours=1))
# Nothing a header value may contain once parsed (CR, LF, other controls, bidi overrides).
UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
UNSAFE_BODY = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def load(name: str) -> InboundMail:
    return parse((DATA / name).read_bytes())


def mail(headers: str, body: str | bytes = "ok\r\n") -> bytes:
    """A message from header lines written with "\\n"; the body as given."""
    head = headers.strip("\n").replace("\n", "\r\n").encode("utf-8")
    return head + b"\r\n\r\n" + (body.encode("utf-8") if isinstance(body, str) else body)


# -- the fixtures, field by field ------------------------------------------------------------

FIXTURES: list[tuple[str, dict[str, Any]]] = [
    (
        "reply_de_outlook_8bit.eml",
        {
            "message_id": "<AM0PR07MB1234ABCD@AM0PR07MB1234.eurprd07.prod.outlook.com>",
            "in_reply_to": (OUR_ID,),
            "references": (TOKEN, OUR_ID),
            "subject": "AW: Zahlungserinnerung: Rechnung RE-2026-0042",
            "from_address": "hans.mueller@kunde.example",
            "from_name": "Hans Müller",
            "to": ("forderungen@muster-handel.example",),
            "date": datetime(2026, 11, 25, 9, 12, 44, tzinfo=CET),
            "content_type": "text/plain",
            "own_text": "Hallo,\n\ndie Rechnung haben wir am 20.11. überwiesen.",
            "language": "de",
            "bounce": None,
            "defects": (),
        },
    ),
    (
        "reply_en_alternative_qp.eml",
        {
            "in_reply_to": (OUR_ID,),  # written without brackets in the file
            "references": (TOKEN, OUR_ID),
            "from_address": "john.smith@smith-ltd.example",
            "from_name": "Smith, John",
            "reply_to": ("accounts@smith-ltd.example", "john.smith@smith-ltd.example"),
            "date": datetime(2026, 11, 25, 8, 1, 2, tzinfo=UTC),  # "-0000"
            "content_type": "multipart/alternative",
            "own_text": "We will pay the invoice on Friday, 4 December.",
            "language": "en",
        },
    ),
    (
        "reply_de_html_only_base64.eml",
        {
            "content_type": "text/html",
            "own_text": "Sehr geehrte Damen und Herren,\n\nwir haben die Rechnung RE-2026-0042 am "
            "20.11. überwiesen (1.234,56 €) – bitte prüfen Sie den Zahlungseingang.\n"
            "- Bank: Sparkasse\n- Datum: 20.11.2026",
            "language": "de",
        },
    ),
    (
        "reply_de_latin1_mislabelled.eml",
        {
            "subject": "AW: Zahlungserinnerung – Rückfrage zu €-Betrag",
            "from_name": "Jürgen Köhler",
            "text": "Grüß Gott,\n\nder Betrag von 300 € ist überwiesen – „sofort“.\n\n"
            "Jürgen Köhler",
            "defects": (),
        },
    ),
    (
        "reply_de_utf8_label_but_latin1_bytes.eml",
        {
            "subject": "Zahlung für Rechnung",
            "from_name": "Jürgen",
            "text": "Die Zahlung für März ist erledigt.",
            "defects": (
                "Subject header: declared utf-8 but is not, read as windows-1252",
                "From header: declared utf-8 but is not, read as windows-1252",
                "text/plain part: declared utf-8 but is not, read as windows-1252",
            ),
        },
    ),
    (
        "reply_rfc2047_umlauts.eml",
        {
            "subject": "AW: Zahlungserinnerung: Rechnung RE-2026-0042 – Grüße aus Köln",
            "from_name": "Müller, Hans",  # an encoded comma does not split the address
            "from_address": "hans@kunde.example",
            "to": ("forderungen@muster-handel.example", "buero@muster-handel.example"),
            "own_text": "Wir zahlen nächste Woche.",
        },
    ),
    (
        "injection_attempts.eml",
        {
            "subject": "Hallo X-Injected: yes more txt",
            "from_name": "Evil Bcc: victim@elsewhere.example",
            "from_address": "evil@attacker.example",
            "headers": {
                "x-mailer": ("Tool X-Evil: 1",),
                "auto-submitted": ("no",),
                "content-type": ('text/plain; charset=utf-8; name="a b.txt"',),
            },
            "text": "Bezahlt.",
        },
    ),
    (
        "no_date_no_message_id.eml",
        {
            "message_id": "",
            "date": None,
            "defects": ("Message-ID header missing or unreadable", "Date header missing"),
            "language": "en",
        },
    ),
    (
        "broken_date.eml",
        {
            "date": None,
            "defects": ("Date header unreadable: 'foo, 99 Smarch 20x6 25:61:00 +0100'",),
        },
    ),
    ("date_variants_minus0000.eml", {"date": datetime(2026, 11, 25, 8, 1, 2, tzinfo=UTC)}),
    (
        "attachment_pdf.eml",
        {
            "attachments": ("Zahlungsbestätigung RE-2026-0042.pdf", "Notiz für Sie.txt"),
            "text": "Anbei der Zahlungsbeleg.\n\nViele Grüße\nBuchhaltung",
            "own_text": "Anbei der Zahlungsbeleg.",
        },
    ),
    (
        "auto_reply_out_of_office.eml",
        {
            "headers": {
                "auto-submitted": ("auto-replied",),
                "x-auto-response-suppress": ("All",),
                "x-ms-exchange-inbox-rules-loop": ("a.becker@kunde.example",),
                "precedence": ("bulk",),
                "content-type": ("text/plain; charset=utf-8",),
            },
            "bounce": None,
            "language": "de",
        },
    ),
    ("forwarded_bounce_by_customer.eml", {"bounce": None, "from_name": "Hans Müller"}),
    (
        "truncated_multipart.eml",
        {
            "text": "Wir zahlen morgen. Der Rest der N",
            "defects": (
                "multipart/mixed: A start boundary was found, but not the corresponding close "
                "boundary",
                "text/plain: base64 encoded sequence had invalid length (1 mod 4)",
            ),
        },
    ),
]


@pytest.mark.parametrize(("name", "expected"), FIXTURES, ids=[f[0] for f in FIXTURES])
def test_fixture(name: str, expected: dict[str, Any]) -> None:
    parsed = load(name)
    assert {key: getattr(parsed, key) for key in expected} == expected


def test_html_is_kept_raw_and_converted_for_text() -> None:
    parsed = load("reply_de_html_only_base64.eml")
    assert parsed.html.startswith("<!DOCTYPE html>")
    assert not re.search(r"<(?:p|b|br|div|ul|li|style|script)\b", parsed.text)
    assert "tracking" not in parsed.text and "font-family" not in parsed.text
    assert "Antwort" not in parsed.text  # <title>


def test_alternative_text_prefers_the_plain_part() -> None:
    parsed = load("reply_en_alternative_qp.eml")
    assert parsed.text.startswith("We will pay the invoice on Friday, 4 December.\n\nBest regards")
    assert '<div dir="ltr">' in parsed.html


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.eml")))
def test_every_value_is_inert(name: str) -> None:
    parsed = load(name)
    for value in (
        parsed.subject,
        parsed.from_name,
        parsed.from_address,
        parsed.message_id,
        *parsed.to,
        *parsed.reply_to,
        *parsed.references,
        *parsed.in_reply_to,
        *parsed.attachments,
        *(v for values in parsed.headers.values() for v in values),
    ):
        assert not UNSAFE.search(value), value
    assert not UNSAFE_BODY.search(parsed.text)
    assert not UNSAFE_BODY.search(parsed.own_text)
    for address in (parsed.from_address, *parsed.to, *parsed.reply_to):
        assert address == address.lower() and "<" not in address and " " not in address
    if parsed.date is not None:
        assert parsed.date.utcoffset() is not None


# -- bounces ---------------------------------------------------------------------------------

BOUNCES: list[tuple[str, Bounce]] = [
    (
        "dsn_rfc3464_headers.eml",
        Bounce(
            recipients=("alt@kunde.example",),
            status="5.1.1",
            action="failed",
            diagnostic="550 5.1.1 <alt@kunde.example>: Recipient address rejected: User unknown",
            original_message_id=OUR_ID,
            permanent=True,
        ),
    ),
    (
        "dsn_delayed.eml",
        Bounce(
            recipients=("slow@kunde.example",),
            status="4.4.7",
            action="delayed",
            diagnostic="421 4.4.7 Connection timed out",
            original_message_id=OUR_ID,
            permanent=False,
        ),
    ),
    (
        "bounce_qmail.eml",
        Bounce(
            recipients=("gone@provider.example",),
            status="5.1.1",
            action="failed",
            diagnostic="Sorry, no mailbox here by that name. (#5.1.1)",
            original_message_id=OUR_ID,
            permanent=True,
        ),
    ),
    (
        "bounce_exim.eml",
        Bounce(
            recipients=("nobody@kunde.example",),
            status="5.1.1",
            action="failed",
            diagnostic="550 5.1.1 <nobody@kunde.example>: Recipient address rejected: User unknown",
            original_message_id=OUR_ID,
            permanent=True,
        ),
    ),
    (
        "bounce_exchange_ndr.eml",
        Bounce(
            recipients=("ex.mitarbeiter@kunde.example",),
            status="5.1.10",
            action="failed",
            diagnostic="#550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP "
            "address lookup ##",
            original_message_id=OUR_ID,
            permanent=True,
        ),
    ),
    (
        "bounce_postfix_no_dsn.eml",
        Bounce(
            recipients=("rechnung@kunde.example",),
            status="5.2.2",
            action="failed",
            diagnostic="<rechnung@kunde.example>: host mx.kunde.example[192.0.2.44] said: 552 "
            "5.2.2 <rechnung@kunde.example>: Mailbox full (in reply to RCPT TO command)",
            original_message_id=OUR_ID,
            permanent=True,
        ),
    ),
    (
        "bounce_gmail_nondsn.eml",
        Bounce(
            recipients=("tippfehler@gmial.example",),
            action="failed",
            original_message_id=OUR_ID,
            permanent=True,
        ),
    ),
    (
        "bounce_german_unzustellbar.eml",
        Bounce(
            recipients=("voll@kunde.example",),
            status="5.2.2",
            action="failed",
            diagnostic="Grund: Das Postfach des Empfängers ist voll (552 5.2.2 Mailbox full).",
            original_message_id=OUR_ID,  # from In-Reply-To: the notice quotes no headers
            permanent=True,
        ),
    ),
]


@pytest.mark.parametrize(("name", "expected"), BOUNCES, ids=[b[0] for b in BOUNCES])
def test_bounce(name: str, expected: Bounce) -> None:
    assert load(name).bounce == expected


@pytest.mark.parametrize(
    "name",
    [
        "reply_de_outlook_8bit.eml",
        "reply_en_alternative_qp.eml",
        "auto_reply_out_of_office.eml",
        "forwarded_bounce_by_customer.eml",
        "attachment_pdf.eml",
    ],
)
def test_not_a_bounce(name: str) -> None:
    assert load(name).bounce is None


BOUNCE_SIGNALS = [
    ("From: MAILER-DAEMON@mx.example\nSubject: anything", "ok"),
    ("From: postmaster@mx.example\nSubject: Re: something", "ok"),
    ("From: Mail Delivery System <>\nSubject: x", "ok"),
    ("From: a@mx.example\nX-Failed-Recipients: gone@kunde.example\nSubject: x", "ok"),
    ("From: a@mx.example\nSubject: Returned mail: see transcript for details", "ok"),
    ("From: a@mx.example\nSubject: [SPAM] Undeliverable: Zahlungserinnerung", "ok"),
    ("From: a@mx.example\nSubject: Nicht zustellbar: Zahlungserinnerung", "ok"),
    ("From: a@mx.example\nSubject: hello", "Hi. This is the qmail-send program at x.\n"),
    (
        "From: a@mx.example\nSubject: hello",
        "Your message could not be delivered to one or more recipients",
    ),
]


@pytest.mark.parametrize(("headers", "body"), BOUNCE_SIGNALS)
def test_non_standard_bounce_signals(headers: str, body: str) -> None:
    assert parse(mail(headers, body)).bounce is not None


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ("From: hans@kunde.example\nSubject: AW: Unzustellbar: Zahlungserinnerung", "ok"),
        ("From: hans@kunde.example\nSubject: Fwd: Mail delivery failed", "ok"),
        (
            "From: hans@kunde.example\nSubject: Re: Zahlungserinnerung",
            "Ihre Mail an buchhaltung@ kam zurück: message could not be delivered.",
        ),
        ("From: hans@kunde.example\nSubject: Delivery of goods delayed", "ok"),
        (
            "From: hans@kunde.example\nSubject: Rechnung RE-2026-0042",
            "The goods have not yet been delivered, so we will not pay. Your message could not "
            "be delivered to our accounting either. Die Zustellung ist fehlgeschlagen.",
        ),
    ],
)
def test_customer_mail_about_bounces_is_not_a_bounce(headers: str, body: str) -> None:
    assert parse(mail(headers, body)).bounce is None


def test_dsn_with_several_recipients_reports_the_failed_ones() -> None:
    report = (
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        "Final-Recipient: rfc822; ok@kunde.example\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n"
        "Final-Recipient: rfc822; one@kunde.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        "Original-Recipient: rfc822; Two@Kunde.Example\r\n"
        "Final-Recipient: rfc822; @relay.example:two@internal\r\nAction: failed\r\n"
        "Status: 5.2.1\r\n\r\n--b--\r\n"
    )
    raw = mail(
        "From: MAILER-DAEMON@mx.example\nSubject: Returned mail\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
        report,
    )
    bounce = parse(raw).bounce
    assert bounce is not None
    assert bounce.recipients == ("one@kunde.example", "two@kunde.example")
    assert (bounce.action, bounce.status, bounce.permanent) == ("failed", "5.1.1", True)


def test_failed_after_retries_with_a_temporary_status_is_not_permanent() -> None:
    report = (
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Final-Recipient: rfc822; full@kunde.example\r\nAction: failed\r\nStatus: 4.2.2\r\n"
        "\r\n--b--\r\n"
    )
    raw = mail(
        'From: MAILER-DAEMON@mx.example\nContent-Type: multipart/report; boundary="b"', report
    )
    assert parse(raw).bounce == Bounce(
        recipients=("full@kunde.example",), status="4.2.2", action="failed", permanent=False
    )


# -- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("=?utf-8?q?Gr=C3=BC=C3=9Fe?=", "Grüße"),
        ("=?iso-8859-1?q?=80_100_=96_f=E4llig?=", "€ 100 – fällig"),  # latin-1 label, cp1252 bytes
        ("=?UTF-8?B?R3LDvMOfZQ?=", "Grüße"),  # padding missing
        ("=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),  # space between encoded words dropped
        ("=?utf-8?q?a?=\n =?utf-8?q?b?= c", "ab c"),  # folded
        ("=?utf-8?q?Zeile1=0D=0ABcc:_x@y.example?=", "Zeile1 Bcc: x@y.example"),
        ("=?utf-8?q?links=E2=80=AErechts?=", "links rechts"),  # bidi override
        ("Hello\n\tworld", "Hello world"),
        ("Grüße aus Köln", "Grüße aus Köln"),  # raw 8-bit UTF-8
        ("=?utf-8?B?!!!?=", "=?utf-8?B?!!!?="),  # broken word kept as it is
        ("=?x-unknown?q?abc?=", "abc"),
    ],
)
def test_subject_decoding(raw: str, expected: str) -> None:
    assert parse(mail(f"From: a@b.example\nSubject: {raw}")).subject == expected


def test_raw_cp1252_header_bytes() -> None:
    raw = b"From: a@b.example\r\nSubject: Gr\xfc\xdfe \x80\r\n\r\nok\r\n"
    assert parse(raw).subject == "Grüße €"


def test_unknown_charset_is_a_defect() -> None:
    parsed = parse(mail("From: a@b.example\nSubject: =?base64?q?abc?="))
    assert parsed.subject == "abc"
    assert "Subject header: unknown charset 'base64'" in parsed.defects


@pytest.mark.parametrize(
    ("raw", "name", "address", "defect"),
    [
        ('"Müller, Hans" <Hans@Kunde.Example>', "Müller, Hans", "hans@kunde.example", None),
        ("=?utf-8?q?M=C3=BCller=2C_Hans?= <h@k.example>", "Müller, Hans", "h@k.example", None),
        ("h@k.example (Hans)", "Hans", "h@k.example", None),
        ("<H@K.EXAMPLE>", "", "h@k.example", None),
        ("MAILER-DAEMON", "", "mailer-daemon", "From header has no address: 'MAILER-DAEMON'"),
        ("Mail Delivery System <>", "Mail Delivery System", "", "From header has no address"),
    ],
)
def test_from(raw: str, name: str, address: str, defect: str | None) -> None:
    parsed = parse(mail(f"From: {raw}\nSubject: x"))
    assert (parsed.from_name, parsed.from_address) == (name, address)
    if defect:
        assert any(d.startswith(defect) for d in parsed.defects)


def test_missing_from_is_a_defect() -> None:
    assert "From header missing" in parse(mail("Subject: x")).defects


@pytest.mark.parametrize(
    ("headers", "field", "expected"),
    [
        ("Message-ID: <a@x.example>", "message_id", "<a@x.example>"),
        ("Message-ID: a@x.example", "message_id", "<a@x.example>"),
        ("In-Reply-To: <a@x> (Hans's message of Tue)", "in_reply_to", ("<a@x>",)),
        ("In-Reply-To: <a@x>,<b@y>", "in_reply_to", ("<a@x>", "<b@y>")),
        ("References: <a@x>\n <b@y>\t<c@z> <a@x>", "references", ("<a@x>", "<b@y>", "<c@z>")),
        ("References: <mw-1@m.example>", "references", ("<mw-1@m.example>",)),
    ],
)
def test_message_ids(headers: str, field: str, expected: object) -> None:
    assert getattr(parse(mail(f"From: a@b.example\n{headers}")), field) == expected


def test_classifier_headers_keep_every_value() -> None:
    parsed = parse(
        mail(
            "From: a@b.example\nAuto-Submitted: auto-replied\nPrecedence: bulk\n"
            "Precedence: junk\nList-Id: <list.example>\nX-Unrelated: 1\nReceived: from x"
        )
    )
    assert parsed.headers == {
        "auto-submitted": ("auto-replied",),
        "precedence": ("bulk", "junk"),
        "list-id": ("<list.example>",),
    }


# -- dates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected", "defect"),
    [
        ("Tue, 24 Nov 2026 10:15:00 +0100", datetime(2026, 11, 24, 10, 15, tzinfo=CET), None),
        ("Tue, 24 Nov 2026 10:15:00 -0000", datetime(2026, 11, 24, 10, 15, tzinfo=UTC), None),
        ("Tue, 24 Nov 2026 10:15:00 +0000", datetime(2026, 11, 24, 10, 15, tzinfo=UTC), None),
        ("24 Nov 26 10:15 GMT", datetime(2026, 11, 24, 10, 15, tzinfo=UTC), None),
        ("Tue, 24 Nov 2026 10:15:00 +0100 (CET)", datetime(2026, 11, 24, 10, 15, tzinfo=CET), None),
        (
            "Tue, 24 Nov 2026 04:15:00 EST",
            datetime(2026, 11, 24, 4, 15, tzinfo=timezone(timedelta(hours=-5))),
            None,
        ),
        (
            "Di, 24 Jun 2026 10:15:00 MESZ",
            datetime(2026, 6, 24, 10, 15, tzinfo=timezone(timedelta(hours=2))),
            None,
        ),
        (
            "Tue, 24 Nov 2026 10:15:00",
            datetime(2026, 11, 24, 10, 15, tzinfo=UTC),
            "Date header has no known time zone, taken as UTC",
        ),
        (
            "2026-11-24T10:15:00+01:00",
            datetime(2026, 11, 24, 10, 15, tzinfo=CET),
            "Date header is not in RFC 5322 form",
        ),
        ("foo", None, "Date header unreadable: 'foo'"),
        ("31 Feb 2026 10:00 +0100", None, "Date header unreadable: '31 Feb 2026 10:00 +0100'"),
        ("Tue, 24 Nov 99999 10:15:00 +0100", None, "Date header unreadable"),
        (
            "Tue, 24 Nov 2026 10:15:00 +9999",
            datetime(2026, 11, 24, 10, 15, tzinfo=UTC),
            "Date header has an impossible UTC offset",
        ),
    ],
)
def test_dates(raw: str, expected: datetime | None, defect: str | None) -> None:
    parsed = parse(mail(f"From: a@b.example\nDate: {raw}"))
    assert parsed.date == expected
    if expected is not None:
        assert parsed.date is not None and parsed.date.utcoffset() == expected.utcoffset()
    if defect:
        assert any(d.startswith(defect) for d in parsed.defects), parsed.defects
    else:
        assert not [d for d in parsed.defects if d.startswith("Date")]


def test_two_date_headers() -> None:
    parsed = parse(
        mail("From: a@b.example\nDate: 24 Nov 2026 10:15 +0100\nDate: 1 Jan 2000 00:00 +0000")
    )
    assert parsed.date == datetime(2026, 11, 24, 10, 15, tzinfo=CET)
    assert "2 Date headers; the first is used" in parsed.defects


# -- language --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Wir haben die Rechnung bereits bezahlt.", "de"),
        ("Bezahlt.", "de"),
        ("We have already paid the invoice.", "en"),
        ("Paid, thanks", "en"),
        ("erledigt und überwiesen", "de"),
        ("ok", ""),
        ("", ""),
        ("12.500,00 EUR", ""),
        ("Wir have paid the Rechnung", ""),  # one each way: unsure
    ],
)
def test_guess_language(text: str, expected: str) -> None:
    assert guess_language(text) == expected


def test_language_falls_back_to_the_whole_text() -> None:
    # "ok" alone says nothing; the quoted German reminder below it does.
    parsed = parse(
        mail(
            "From: a@b.example\nSubject: AW: Zahlungserinnerung",
            "ok\n\nAm 24.11.2026 um 10:15 schrieb Muster Handel GmbH:\n> Guten Tag, für die "
            "folgende Rechnung konnten wir bisher noch keinen Zahlungseingang feststellen.\n",
        )
    )
    assert (parsed.own_text, parsed.language) == ("ok", "de")


# -- bodies ----------------------------------------------------------------------------------


def test_named_text_part_at_the_root_is_the_body() -> None:
    raw = mail('From: a@b.example\nContent-Type: text/plain; name="x.txt"', "Bezahlt.")
    parsed = parse(raw)
    assert (parsed.text, parsed.attachments) == ("Bezahlt.", ())


def test_returned_or_forwarded_message_is_not_the_body() -> None:
    raw = mail(
        'From: a@b.example\nContent-Type: multipart/mixed; boundary="b"',
        "--b\r\nContent-Type: text/plain\r\n\r\nSiehe Anhang.\r\n--b\r\n"
        "Content-Type: message/rfc822\r\n\r\nFrom: x@y\r\nSubject: alt\r\n\r\nAlter Text\r\n"
        "--b--\r\n",
    )
    assert parse(raw).text == "Siehe Anhang."


def test_multipart_without_boundary_reads_the_body_as_text() -> None:
    raw = mail("From: a@b.example\nContent-Type: multipart/mixed", "Nur Text.\r\n")
    parsed = parse(raw)
    assert parsed.text == "Nur Text."
    assert parsed.defects


def test_unknown_body_charset() -> None:
    raw = mail("From: a@b.example\nContent-Type: text/plain; charset=x-klingon", "Grüße")
    parsed = parse(raw)
    assert parsed.text == "Grüße"
    assert "text/plain part: unknown charset 'x-klingon'" in parsed.defects


def test_html_only_with_script_is_stripped() -> None:
    raw = mail(
        "From: a@b.example\nContent-Type: text/html; charset=utf-8",
        "<p>Bezahlt&nbsp;am 1.12.</p><script>alert(1)</script><style>p{}</style>",
    )
    assert parse(raw).text == "Bezahlt am 1.12."


# -- never raises ----------------------------------------------------------------------------


def _garbage(seed: int) -> bytes:
    rng = random.Random(seed)
    pieces = [
        rng.randbytes(rng.randrange(0, 400)),
        b"\r\n".join(
            rng.choice(
                [
                    b"From: x",
                    b"Content-Type: multipart/mixed; boundary=x",
                    b"--x",
                    b"Subject: =?utf-8?q?=FF?=",
                    b"",
                    b"\x00\x00",
                    b"Content-Transfer-Encoding: base64",
                    b"Date: 99 Nov 2026",
                ]
            )
            for _ in range(rng.randrange(0, 30))
        ),
    ]
    rng.shuffle(pieces)
    return b"".join(pieces)


@pytest.mark.parametrize("seed", range(150))
def test_garbage_never_raises(seed: int) -> None:
    parsed = parse(_garbage(seed))
    assert isinstance(parsed, InboundMail)
    assert not UNSAFE.search(parsed.subject + parsed.from_name + parsed.from_address)


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.eml")))
def test_every_truncation_of_a_fixture_parses(name: str) -> None:
    raw = (DATA / name).read_bytes()
    for end in range(0, len(raw), max(1, len(raw) // 25)):
        assert isinstance(parse(raw[:end]), InboundMail)


@pytest.mark.parametrize(
    ("raw", "defect"),
    [
        (b"", "message is empty"),
        (b"\r\n\r\n", "message is empty"),
        (b"no headers at all, just text", "message has no headers"),
        (b"\x00" * 1000, "message has no headers"),
        (
            b"From: a@b.example\r\nSubject: " + b"x" * 200_000 + b"\r\n\r\n" + b"y" * 1_200_000,
            "text body longer than 1000000 characters, cut",
        ),
        (
            b'From: a@b.example\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n'
            + b"".join(
                b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i, i + 1)
                for i in range(3000)
            ),
            "MIME structure nested too deeply",
        ),
        (
            b'From: a@b.example\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
            + b"--b\r\nContent-Type: text/plain\r\n\r\npart\r\n" * 2000,
            "more than 500 MIME parts; the rest is ignored",
        ),
        (
            b"From: a@b.example\r\n" + b"Precedence: bulk\r\n" * 100 + b"\r\nx",
            "100 precedence headers; the first 20 are kept",
        ),
    ],
)
def test_hostile_input_is_reported_not_raised(raw: bytes, defect: str) -> None:
    parsed = parse(raw)
    assert any(d.startswith(defect) for d in parsed.defects), parsed.defects
    assert len(parsed.subject) <= 4096


def test_address_list_the_stdlib_recurses_on() -> None:
    # Every ":" opens a group for getaddresses, which recurses once per token
    # (MimeKit's stack-overflow test message in the shared corpus is one).
    raw = (
        b'From: a@b.example\r\nTo: "t" <t@t.example>,\r\n'
        + b"\t=?utf-8?Q?d=3E10:08:28?=\r\n" * 3000
        + b"Subject: x\r\n\r\nok"
    )
    parsed = parse(raw)
    assert (parsed.to, parsed.subject, parsed.text) == (("t@t.example",), "x", "ok")
    assert "To header unreadable (RecursionError); bare addresses taken" in parsed.defects


def test_nul_bytes_and_bare_cr() -> None:
    raw = b"From: a@b.example\rSubject: A\x00B\r\n\r\nBe\x00zahlt\rok\r\n"
    parsed = parse(raw)
    assert not UNSAFE.search(parsed.subject)
    assert "\x00" not in parsed.text


def test_accepts_bytearray_and_memoryview() -> None:
    raw = (DATA / "reply_rfc2047_umlauts.eml").read_bytes()
    assert parse(bytearray(raw)) == parse(memoryview(raw)) == parse(raw)


def test_defects_are_capped() -> None:
    parts = "".join(
        f"--b\r\nContent-Type: text/plain; charset=x-cs-{i}\r\n\r\ntext\r\n" for i in range(80)
    )
    raw = mail('From: a@b.example\nContent-Type: multipart/mixed; boundary="b"', parts + "--b--")
    defects = parse(raw).defects
    assert len(defects) == 51
    assert defects[-1].startswith("... and ") and defects[-1].endswith(" more defects")
