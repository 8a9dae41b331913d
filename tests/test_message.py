"""The wire form of a reminder: headers, threading, encoding, and no header injection."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone, tzinfo
from email.header import decode_header, make_header
from email.message import EmailMessage, MIMEPart
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mahnwerk import message
from mahnwerk.config import load_rules
from mahnwerk.plan_types import PlannedReminder
from mahnwerk.render import RenderedMail, Renderer, sample_reminder
from mahnwerk.rules import Rules

ROOT = Path(__file__).resolve().parents[1]
RULES: Rules = load_rules(ROOT / "rules.yaml").rules
RENDERER = Renderer(ROOT / RULES.templates_dir, RULES)
TODAY = date(2026, 10, 5)
SENT_AT = datetime(2026, 10, 5, 9, 30, tzinfo=ZoneInfo("Europe/Berlin"))
SECRET = b"0123456789abcdef0123456789abcdef"
DOMAIN = "muster-handel.example"
CUSTOMER = "Müller & Söhne GmbH"
TO = "buchhaltung@mueller-soehne.example"
EARLIER = [f"<{n:032x}@{DOMAIN}>" for n in range(1, 4)]


class NoOffset(tzinfo):
    """A time zone object that does not know its offset: as naive as no tzinfo at all."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


def reminder(
    language: str = "de",
    template: str = "reminder_1",
    *,
    customer_name: str | None = None,
    to: str | None = None,
    key: str | None = None,
) -> PlannedReminder:
    sample = sample_reminder(RULES, template, template, language, TODAY)
    return dataclasses.replace(
        sample,
        customer_name=sample.customer_name if customer_name is None else customer_name,
        to=sample.to if to is None else to,
        key=sample.key if key is None else key,
    )


def build(
    rendered: RenderedMail,
    planned: PlannedReminder,
    *,
    rules: Rules = RULES,
    previous_ids: Sequence[str] = (),
    when: datetime = SENT_AT,
) -> bytes:
    return message.build(
        rendered,
        planned,
        rules,
        message_id=message.message_id(SECRET, planned.key, DOMAIN),
        thread_token=message.thread_token(SECRET, planned.customer_id, DOMAIN),
        previous_ids=previous_ids,
        date=when,
    )


def wire(data: bytes) -> tuple[bytes, EmailMessage]:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return data, parsed


def body(part: MIMEPart) -> str:
    # MIME text is CRLF on the wire and comes back that way; the templates write "\n".
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def header_block(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


@pytest.mark.parametrize("language", ["de", "en"])
@pytest.mark.parametrize("template", ["pre_due", "reminder_1", "final_notice"])
def test_every_header_and_both_parts(language: str, template: str) -> None:
    planned = reminder(language, template)
    rendered = RENDERER.render(planned, TODAY)
    data, parsed = wire(build(rendered, planned, previous_ids=EARLIER))

    mid = message.message_id(SECRET, planned.key, DOMAIN)
    token = message.thread_token(SECRET, planned.customer_id, DOMAIN)
    assert parsed["Message-ID"] == mid
    assert parsed["Date"].datetime == SENT_AT
    assert parsed["Date"] == "Mon, 05 Oct 2026 09:30:00 +0200"
    assert parsed["From"] == "Muster Handel GmbH <forderungen@muster-handel.example>"
    assert parsed["Reply-To"] == "forderungen@muster-handel.example"
    (to,) = parsed["To"].addresses
    assert (to.display_name, to.addr_spec) == (CUSTOMER, TO)
    assert parsed["Subject"] == rendered.subject
    assert parsed["In-Reply-To"] == EARLIER[-1]
    assert parsed["References"].split() == [token, *EARLIER]
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["X-Auto-Response-Suppress"] == "OOF, AutoReply"
    assert parsed["X-Mahnwerk-Key"] == planned.key
    assert parsed["Content-Language"] == language
    assert parsed["MIME-Version"] == "1.0"
    # Only the headers above, each once: nothing leaks in, nothing is doubled.
    assert sorted(k.lower() for k in parsed) == sorted(
        [
            "message-id",
            "date",
            "from",
            "reply-to",
            "to",
            "subject",
            "in-reply-to",
            "references",
            "auto-submitted",
            "x-auto-response-suppress",
            "x-mahnwerk-key",
            "content-language",
            "mime-version",
            "content-type",
        ]
    )

    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part, text in zip(parts, [rendered.text, rendered.html], strict=True):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
        assert body(part) == text
    # 7-bit clean on the wire: no server needs 8BITMIME or SMTPUTF8 for it.
    assert data.isascii()


@pytest.mark.parametrize(
    "subject",
    [
        "Zahlungserinnerung: Rechnung RE-2026-0042 für Müller & Söhne, fällig am 5. Oktober",
        # Python's own folder leaves two spaces before "fällig" in this one.
        "Ihre Rechnungen RE-2026-0042 und RE-2026-0057 werden bald fällig",
        "Ihre Rechnung wird bald fällig – bitte prüfen Sie Ihre Überweisung (ÄÖÜäöüß €)",
        "Zahlungserinnerung " + "ä" * 200,
        "Re: Abo actualités digitales 20 semaines d’abonnement à 24 heures, Bilan, Tribune de "
        "Genève et tous les titres",
        "=?utf-8?q?Gef=C3=A4lscht?= Mahnung",
    ],
)
def test_subjects_round_trip_exactly(subject: str) -> None:
    planned = reminder()
    rendered = dataclasses.replace(RENDERER.render(planned, TODAY), subject=subject)
    data, parsed = wire(build(rendered, planned))
    assert parsed["Subject"] == subject
    assert b"?==?" not in data
    subject_line = re.search(rb"^Subject: (.*)$", data, re.MULTILINE)
    assert subject_line is not None and subject_line.group(1).startswith(b"=?utf-8?")


def raw_header(data: bytes, name: str) -> str:
    """A header as sent, unfolded but not decoded."""
    found = re.search(rb"\r\n" + name.encode() + rb": (.*?)\r\n(?! )", b"\r\n" + data, re.DOTALL)
    assert found is not None, name
    return found.group(1).decode("ascii").replace("\r\n ", " ")


@pytest.mark.parametrize(
    "subject",
    ["Payment reminder", "Reminder: " + ", ".join(["invoice RE-2026-0042"] * 10), "x" * 900],
)
def test_ascii_subjects_stay_readable(subject: str) -> None:
    planned = reminder()
    rendered = dataclasses.replace(RENDERER.render(planned, TODAY), subject=subject)
    data, parsed = wire(build(rendered, planned))
    assert raw_header(data, "Subject") == parsed["Subject"] == subject
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_ids_and_keys_are_never_encoded() -> None:
    domain = "mail.forderungsmanagement.muster-handel-gruppe-international.example"
    numbers = "+".join(f"RE-2026-{n:04d}" for n in range(40))
    planned = reminder(key=f"mail:K-10077:reminder_1:{numbers}:2026-10-05")
    mid = message.message_id(SECRET, planned.key, domain)
    token = message.thread_token(SECRET, planned.customer_id, domain)
    earlier = [f"<{n:032x}@{domain}>" for n in range(5)]
    msg = message.build(
        RENDERER.render(planned, TODAY),
        planned,
        RULES,
        message_id=mid,
        thread_token=token,
        previous_ids=earlier,
        date=SENT_AT,
    )
    data, parsed = wire(msg)
    assert raw_header(data, "Message-ID") == parsed["Message-ID"] == mid
    assert raw_header(data, "In-Reply-To") == parsed["In-Reply-To"] == earlier[-1]
    assert raw_header(data, "References") == parsed["References"] == " ".join([token, *earlier])
    assert raw_header(data, "X-Mahnwerk-Key") == parsed["X-Mahnwerk-Key"] == planned.key
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


@pytest.mark.parametrize(
    "name",
    [
        CUSTOMER,
        "Müller, Söhne & Co. KG",
        'Jörg "Jo" Weiß \\ Partner',
        "Ærøskøbing Café",
        "Nordwestdeutsche Versorgungs- und Entsorgungsgesellschaft mbH & Co. KG, Filiale 7",
        "=?utf-8?q?Chef?= Müller",
        "=?utf-8?q?Chef?=",
    ],
)
def test_display_names_round_trip(name: str) -> None:
    planned = reminder(customer_name=name)
    data, parsed = wire(build(RENDERER.render(planned, TODAY), planned))
    (to,) = parsed["To"].addresses
    assert (to.display_name, to.addr_spec) == (name, TO)
    assert not parsed["To"].defects
    assert all(len(line) <= 78 for line in header_block(data).split(b"\r\n"))


@pytest.mark.parametrize("name", ["a" * 120 + "ü", "Ærøskøbing Café " * 5 + "GmbH"])
def test_long_encoded_names_follow_rfc_2047(name: str) -> None:
    # More than one encoded word: RFC 2047 decoders join them without a space, as intended;
    # Python's own phrase parser inserts one, so it is not the judge here.
    planned = reminder(customer_name=name)
    data, _ = wire(build(RENDERER.render(planned, TODAY), planned))
    value = raw_header(data, "To")
    assert str(make_header(decode_header(value))) == f"{name.strip()} <{TO}>"
    assert all(len(line) <= 78 for line in header_block(data).split(b"\r\n"))


def test_a_long_address_and_an_umlaut_sender() -> None:
    long_to = "buchhaltung.zentrale." + "x" * 70 + "@mueller-soehne.example"
    company = RULES.company.model_copy(
        update={"sender": "Müller Inkasso <mahnung@mueller.example>"}
    )
    rules = RULES.model_copy(update={"company": company})
    planned = reminder(to=long_to)
    data, parsed = wire(build(RENDERER.render(planned, TODAY), planned, rules=rules))
    (to,) = parsed["To"].addresses
    assert (to.display_name, to.addr_spec) == (CUSTOMER, long_to)
    (sender,) = parsed["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Müller Inkasso", "mahnung@mueller.example")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_umlauts_in_the_body_are_encoded_and_decode_intact() -> None:
    planned = reminder()
    rendered = RenderedMail(
        subject="Grüße",
        text="Sehr geehrte Damen und Herren,\nGrüße aus München\n",
        html="<p>Ä€</p>\n",
    )
    data, parsed = wire(build(rendered, planned))
    text, html = parsed.iter_parts()
    assert body(text) == rendered.text
    assert body(html) == rendered.html
    assert "Grüße aus München".encode() not in data


INJECTIONS = [
    ("Evil\r\nBcc: x@evil.example", "Evil Bcc: x@evil.example"),
    ("Evil\nBcc: x@evil.example", "Evil Bcc: x@evil.example"),
    ("Evil\rBcc: x@evil.example", "Evil Bcc: x@evil.example"),
    ("Evil\r\n\r\nBcc: x@evil.example", "Evil Bcc: x@evil.example"),
    ("Evil\x85Bcc: x@evil.example", "Evil Bcc: x@evil.example"),
    ("Evil\u2028Bcc: x@evil.example", "Evil Bcc: x@evil.example"),
    ("Evil\x00\tBcc:\x0bx@evil.example", "Evil Bcc: x@evil.example"),
    ("Müller\r\nTo: x@evil.example, y@evil.example", "Müller To: x@evil.example, y@evil.example"),
    ("\u202eHbmH neh\u00f6S", "HbmH nehöS"),
]


@pytest.mark.parametrize(("name", "shown"), INJECTIONS)
def test_customer_names_cannot_inject_headers(name: str, shown: str) -> None:
    planned = reminder(customer_name=name)
    rendered = dataclasses.replace(
        RENDERER.render(planned, TODAY), subject="Mahnung\r\nBcc: y@evil.example\nX-Evil: 1"
    )
    data, parsed = wire(build(rendered, planned))
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None
    assert len(parsed.get_all("To", [])) == 1
    (to,) = parsed["To"].addresses
    assert (to.display_name, to.addr_spec) == (shown, TO)
    assert parsed["Subject"] == "Mahnung Bcc: y@evil.example X-Evil: 1"
    lines = header_block(data).split(b"\r\n")
    assert not [line for line in lines if line.lower().startswith((b"bcc", b"x-evil"))]
    assert not parsed.defects


def test_lines_are_crlf_and_short() -> None:
    planned = reminder(customer_name="Müller " * 60)
    rendered = RenderedMail(
        subject="Zahlungserinnerung für Müller " * 40,
        text="ä" * 3000 + "\n" + "x" * 3000 + "\n",
        html="<p>" + "ö" * 3000 + "</p>\n<p>" + "y" * 3000 + "</p>\n",
    )
    data, parsed = wire(build(rendered, planned, previous_ids=EARLIER * 4))
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert all(len(line) <= 78 for line in header_block(data).split(b"\r\n"))
    text, html = parsed.iter_parts()
    assert (body(text), body(html)) == (rendered.text, rendered.html)


def test_references_keep_the_token_and_the_last_ten() -> None:
    planned = reminder()
    mid = message.message_id(SECRET, planned.key, DOMAIN)
    token = message.thread_token(SECRET, planned.customer_id, DOMAIN)
    history = [f"<{n:032x}@{DOMAIN}>" for n in range(1, 13)]
    # A resend after a crash may find its own id, or a duplicate, in the history.
    _, parsed = wire(build(RENDERER.render(planned, TODAY), planned, previous_ids=[*history, mid]))
    assert parsed["References"].split() == [token, *history[-10:]]
    assert parsed["In-Reply-To"] == history[-1]

    _, parsed = wire(build(RENDERER.render(planned, TODAY), planned, previous_ids=[]))
    assert parsed["References"] == token
    assert parsed["In-Reply-To"] is None


def test_reply_to_defaults_to_the_sender() -> None:
    company = RULES.company.model_copy(update={"reply_to": None})
    rules = RULES.model_copy(update={"company": company})
    planned = reminder()
    _, parsed = wire(build(RENDERER.render(planned, TODAY), planned, rules=rules))
    assert parsed["Reply-To"] == RULES.company.sender


def test_the_same_input_gives_the_same_bytes() -> None:
    planned = reminder()
    rendered = RENDERER.render(planned, TODAY)
    first = build(rendered, planned, previous_ids=EARLIER)
    again = build(rendered, planned, previous_ids=EARLIER)
    assert first == again
    other = dataclasses.replace(planned, key=planned.key + "x")
    assert (build(rendered, other, previous_ids=EARLIER)) != first


def test_message_ids_are_deterministic_and_keyed() -> None:
    mid = message.message_id(SECRET, "mail:K-1:reminder_1:RE-1:2026-10-05", DOMAIN)
    assert re.fullmatch(rf"<[0-9a-f]{{32}}@{re.escape(DOMAIN)}>", mid)
    assert mid == message.message_id(SECRET, "mail:K-1:reminder_1:RE-1:2026-10-05", DOMAIN)
    assert mid == message.message_id(
        SECRET, "mail:K-1:reminder_1:RE-1:2026-10-05", "Muster-Handel.Example"
    )
    others = {
        message.message_id(SECRET, "mail:K-1:reminder_1:RE-1:2026-10-06", DOMAIN),
        message.message_id(SECRET, "mail:K-2:reminder_1:RE-1:2026-10-05", DOMAIN),
        message.message_id(b"another secret", "mail:K-1:reminder_1:RE-1:2026-10-05", DOMAIN),
        message.thread_token(SECRET, "mail:K-1:reminder_1:RE-1:2026-10-05", DOMAIN),
    }
    assert mid not in others and len(others) == 4


def test_thread_tokens_are_stable_per_customer() -> None:
    token = message.thread_token(SECRET, "K-10077", DOMAIN)
    assert re.fullmatch(rf"<mw-[0-9a-f]{{32}}@{re.escape(DOMAIN)}>", token)
    assert token == message.thread_token(SECRET, "K-10077", DOMAIN)
    assert token != message.thread_token(SECRET, "K-10078", DOMAIN)
    assert token != message.thread_token(b"another secret", "K-10077", DOMAIN)


@pytest.mark.parametrize(
    ("call", "args"),
    [
        (message.message_id, (b"", "key", DOMAIN)),
        (message.thread_token, (b"", "K-1", DOMAIN)),
        (message.message_id, (SECRET, "key", "")),
        (message.message_id, (SECRET, "key", "bad domain")),
        (message.message_id, (SECRET, "key", "x.example>\r\nBcc: y@evil.example")),
    ],
)
def test_ids_refuse_an_empty_secret_or_a_bad_domain(call: object, args: tuple[object, ...]) -> None:
    assert callable(call)
    with pytest.raises(ValueError):
        call(*args)


@pytest.mark.parametrize(
    ("sender", "domain"),
    [
        ("Muster Handel GmbH <forderungen@muster-handel.example>", "muster-handel.example"),
        ("forderungen@Muster-Handel.Example", "muster-handel.example"),
        ('"Müller, Söhne" <a@mail.mueller.example>', "mail.mueller.example"),
    ],
)
def test_sender_domain(sender: str, domain: str) -> None:
    assert message.sender_domain(sender) == domain


@pytest.mark.parametrize(
    "sender",
    ["Muster Handel", "Acme, Inc. <x@acme.example>", "a@x.example, b@x.example", "<nobody>", ""],
)
def test_sender_domain_refuses_anything_but_one_address(sender: str) -> None:
    with pytest.raises(ValueError):
        message.sender_domain(sender)


def test_a_sender_of_two_addresses_is_refused() -> None:
    company = RULES.company.model_copy(update={"sender": "Acme, Inc. <x@acme.example>"})
    rules = RULES.model_copy(update={"company": company})
    planned = reminder()
    with pytest.raises(ValueError, match="sender"):
        build(RENDERER.render(planned, TODAY), planned, rules=rules)


@pytest.mark.parametrize(
    "when",
    [datetime(2026, 10, 5, 9, 30), datetime(2026, 10, 5, 9, 30, tzinfo=NoOffset())],
)
def test_a_naive_date_is_refused(when: datetime) -> None:
    planned = reminder()
    with pytest.raises(ValueError, match="time zone"):
        build(RENDERER.render(planned, TODAY), planned, when=when)


def test_an_aware_date_keeps_its_offset() -> None:
    planned = reminder()
    when = datetime(2026, 12, 1, 8, 0, tzinfo=timezone(timedelta(hours=-5)))
    _, parsed = wire(build(RENDERER.render(planned, TODAY), planned, when=when))
    assert parsed["Date"] == "Tue, 01 Dec 2026 08:00:00 -0500"


@pytest.mark.parametrize(
    "to",
    [
        "",
        "buchhaltung",
        "a b@mueller.example",
        "a@b@mueller.example",
        "@mueller.example",
        "a@",
        "a@mueller.example\r\nBcc: x@evil.example",
        "a@mueller.example\n",
        "jörg@mueller.example",
        "<a@mueller.example>",
        "a@mueller.example, b@evil.example",
        "Name <a@mueller.example>",
        "a\x00@mueller.example",
    ],
)
def test_an_invalid_recipient_is_refused(to: str) -> None:
    planned = reminder(to=to)
    with pytest.raises(ValueError, match="recipient"):
        build(RENDERER.render(planned, TODAY), planned)


@pytest.mark.parametrize(
    "bad",
    ["", "no-brackets@x.example", "<a@x.example>\r\nBcc: y@evil.example", "<a b@x.example>"],
)
def test_malformed_ids_are_refused(bad: str) -> None:
    planned = reminder()
    rendered = RENDERER.render(planned, TODAY)
    good = message.message_id(SECRET, planned.key, DOMAIN)
    token = message.thread_token(SECRET, planned.customer_id, DOMAIN)
    cases = [(bad, token, []), (good, bad, []), (good, token, [bad])]
    for mid, thread, previous in cases:
        with pytest.raises(ValueError):
            message.build(
                rendered,
                planned,
                RULES,
                message_id=mid,
                thread_token=thread,
                previous_ids=previous,
                date=SENT_AT,
            )
