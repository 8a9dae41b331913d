"""Replies ingested per second by mahnwerk, against a raw IMAP FETCH of the same messages.

Run from the repository root:  python bench/ingest.py [--replies M] [--customers N] [--repeat R]
A state whose N customers each got one reminder (a real tick over an aiosmtpd server on
127.0.0.1), a Dovecot on 127.0.0.1 (tests/imap_server.py), and M customers' replies to those
reminders (paid, promise, dispute, question, auto-reply, bounce, other; German and English;
plain, Outlook, HTML-only, with attachment) put into its INBOX. `Ingest(...).run()` reads,
stores, parses, matches, classifies, decides, commits and files them; timed next to a raw
imaplib loop (SELECT, UID SEARCH, UID FETCH BODY.PEEK[] in batches of 100) over the same
messages, each on a freshly filled INBOX. Prints a table, where the time of one pass goes,
and a last line `RESULT {json}`; never asserts.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import gc
import imaplib
import io
import json
import os
import pstats
import quopri
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.header import Header
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any

import yaml
from imapclient import IMAPClient  # type: ignore[import-untyped]

from _data import BERLIN, DEFAULT_SEED, PLAN_NOW, REFERENCE_DAY, Timing, fmt_s, make_invoices
from send import (
    Span,
    Split,
    cpu_per_mail,
    due_invoices,
    filesystem,
    fsync_probe,
    populate,
    rate,
)
from send import running as smtp_running

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests"))

import imap_server as loopback_imap  # noqa: E402
from mahnwerk import inbox, replies, replytext  # noqa: E402
from mahnwerk.classify import classify  # noqa: E402
from mahnwerk.config import LoadedRules, load_rules  # noqa: E402
from mahnwerk.delivery import Tick  # noqa: E402
from mahnwerk.imap import ImapSession  # noqa: E402
from mahnwerk.inbound import parse  # noqa: E402
from mahnwerk.inbox import Ingest, IngestReport  # noqa: E402
from mahnwerk.matching import match  # noqa: E402
from mahnwerk.models import Invoice  # noqa: E402
from mahnwerk.store import TinyDBStore, messages  # noqa: E402
from mahnwerk.store.base import StoreView  # noqa: E402
from smtp_server import Certificate  # noqa: E402

TARGET_RATE = 200.0
TARGET_RATIO = 0.5
HOST = loopback_imap.HOST
BATCH = inbox.BATCH  # the raw loop fetches as many at a time as Ingest does
RULES = ROOT / "rules.yaml"
REPLIES = ROOT / "tests" / "data" / "replies"
PASSWORD_ENV = "BENCH_IMAP_PASSWORD"
ENV = {PASSWORD_ENV: loopback_imap.PASSWORD}
INBOX = "INBOX"
# The replies come in over the day after the reminders; the pass runs the morning after.
INGEST_NOW = datetime(2026, 11, 26, 9, 30, tzinfo=BERLIN)
FIRST_REPLY = datetime(2026, 11, 25, 9, 20, tzinfo=BERLIN)


# -- the replies ------------------------------------------------------------------------


@dataclass(frozen=True)
class Ours:
    """One reminder we sent, as the customer's mail client shows it."""

    raw: bytes
    to_addr: str
    to_name: str
    sender: str
    reply_to: str
    subject: str
    message_id: str
    references: str
    language: str
    plain: str
    html: str  # what is inside <body>
    invoices: tuple[str, ...]


def our_reminders(state: Path, store: TinyDBStore) -> list[Ours]:
    out = []
    for entry in store.view().entries():
        if entry.kind != "reminder" or entry.state != "sent":
            continue
        raw = messages.get(state, entry.eml)
        mail: Any = message_from_bytes(raw, policy=policy.default)
        html = mail.get_body(("html",)).get_content()
        start = html.find(">", html.find("<body")) + 1
        html = html[start : html.rfind("</body>")].strip()
        to = mail["To"].addresses[0]
        out.append(
            Ours(
                raw=raw,
                to_addr=to.addr_spec,
                to_name=to.display_name,
                sender=str(mail["From"]),
                reply_to=str(mail["Reply-To"] or parseaddr(str(mail["From"]))[1]),
                subject=str(mail["Subject"]),
                message_id=str(mail["Message-ID"]),
                references=str(mail["References"] or ""),
                language=str(mail["Content-Language"] or "de")[:2],
                plain=mail.get_body(("plain",)).get_content(),
                html=html,
                invoices=tuple(i.number for i in entry.items),
            )
        )
    return out


def reply_texts() -> dict[tuple[str, str], list[str]]:
    """(label, language) -> customers' words, from the classifier's labelled tables."""
    pools: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name in ("de.yaml", "en.yaml", "more.yaml"):
        for row in yaml.safe_load((REPLIES / name).read_text(encoding="utf-8")):
            text = str(row.get("text") or "").strip()
            if row["label"] == "bounce" or row.get("bounce") or not text:
                continue
            rid = str(row["id"])
            if rid.startswith(("de-", "mo-de-")):
                langs: tuple[str, ...] = ("de",)
            elif rid.startswith(("en-", "mo-en-")):
                langs = ("en",)
            else:
                langs = ("de", "en")
            for lang in langs:
                pools[(str(row["label"]), lang)].append(text)
    return pools


# What comes in: answers of customers (labelled by their words), automatic answers, bounces
# of our reminders, and mail that has nothing to do with them.
KINDS = {
    "paid": 20,
    "promise": 17,
    "dispute": 10,
    "question": 12,
    "thanks": 5,
    "auto_reply": 16,
    "bounce": 8,
    "stranger": 12,
}
# How customers' clients write an answer.
FORMATS = {"plain": 40, "outlook": 30, "html": 15, "attachment": 15}
# Share of customers' answers written as a new mail naming the invoice (no In-Reply-To).
NEW_MAIL_SHARE = 0.1

_FIRST = ("Anna", "Bernd", "Clara", "Dieter", "Eva", "Frank", "Greta", "Hans", "Ines", "Jonas")
_LAST = ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Koch")
_SIGN_OFF = {
    "de": ("Mit freundlichen Grüßen", "Viele Grüße", "Freundliche Grüße", "Beste Grüße", "MfG"),
    "en": ("Kind regards", "Best regards", "Best", "Many thanks", "Regards"),
}
_GREETING = {"de": "Sehr geehrte Damen und Herren,", "en": "Dear Sir or Madam,"}
_GREETED = frozenset(("sehr", "guten", "hallo", "liebe", "lieber", "dear", "hi", "hello"))
_FOOTER = {
    "de": (
        "{company} · Hauptstraße {n} · 8{n:04d} München\n"
        "Geschäftsführer: {person} · Amtsgericht München HRB {hrb} · USt-IdNr. DE{vat}\n"
        "Diese E-Mail enthält vertrauliche Informationen. Wenn Sie nicht der richtige "
        "Adressat sind, informieren Sie bitte sofort den Absender und vernichten Sie "
        "diese E-Mail."
    ),
    "en": (
        "{company}, {n} High Street, London EC1A {n}BB\n"
        "Registered in England and Wales No. {hrb}. VAT GB{vat}.\n"
        "This e-mail and any attachments are confidential and intended solely for the "
        "addressee. If you have received it in error, please notify the sender and delete it."
    ),
}
_AUTO_PREFIX = {
    "de": ("Automatische Antwort: ", "Abwesenheitsnotiz: ", "Automatische Antwort: "),
    "en": ("Automatic reply: ", "Out of Office: ", "Auto-Reply: "),
}
_OUTLOOK_STYLE = (
    "<style><!--\n@font-face {font-family:Calibri;}\n"
    "p.MsoNormal, li.MsoNormal, div.MsoNormal {margin:0cm; font-size:11.0pt; "
    'font-family:"Calibri",sans-serif;}\n'
    "a:link, span.MsoHyperlink {color:#0563C1; text-decoration:underline;}\n"
    "span.E-MailFormatvorlage18 {mso-style-type:personal-reply; color:windowtext;}\n"
    "@page WordSection1 {size:612.0pt 792.0pt; margin:70.85pt 70.85pt 2.0cm 70.85pt;}\n"
    "div.WordSection1 {page:WordSection1;}\n--></style>"
)


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _qp(text: str) -> str:
    return quopri.encodestring(text.encode("utf-8")).decode("ascii")


def _b64(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii")


def _subject(text: str) -> str:
    return text if text.isascii() else Header(text, "utf-8").encode()


def _html_lines(text: str) -> str:
    return "<br>\n".join(
        line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        for line in text.split("\n")
    )


def _boundary(rng: random.Random) -> str:
    return f"----=_Part_{rng.getrandbits(48):012x}"


def _message_id(rng: random.Random, domain: str) -> str:
    return f"<{rng.getrandbits(96):024x}@{domain}>"


def _transport(rng: random.Random, sender: str, to: str, when: datetime) -> str:
    """What our mail server adds, and the sender's DKIM signature: about 1 kB on every mail."""
    domain = sender.rpartition("@")[2]
    queue_id = f"{rng.getrandbits(40):010X}"
    ip = f"198.51.100.{rng.randint(2, 254)}"
    body_hash = base64.b64encode(rng.randbytes(32)).decode()
    sig = base64.b64encode(rng.randbytes(256)).decode()
    sig = "\n\t ".join(sig[i : i + 70] for i in range(0, len(sig), 70))
    return (
        f"Return-Path: <{sender}>\n"
        f"Delivered-To: {to}\n"
        f"Received: from mail.{domain} (mail.{domain} [{ip}])\n"
        f"\tby mx.muster-handel.example (Postfix) with ESMTPS id {queue_id}\n"
        f"\tfor <{to}>; {format_datetime(when)}\n"
        "Authentication-Results: mx.muster-handel.example;\n"
        f"\tdkim=pass header.d={domain} header.s=mail;\n"
        f"\tspf=pass smtp.mailfrom={sender};\n"
        f"\tdmarc=pass (p=none) header.from={domain}\n"
        f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=mail;\n"
        f"\tt={int(when.timestamp())}; h=From:To:Subject:Date:Message-ID:In-Reply-To:References;\n"
        f"\tbh={body_hash};\n"
        f"\tb={sig}\n"
    )


def _signature(rng: random.Random, ours: Ours, lang: str) -> str:
    sign_off = rng.choice(_SIGN_OFF[lang])
    company = any(w in ours.to_name for w in ("GmbH", "AG", "KG", "e.K.", "UG", "Ltd"))
    if not company:
        return f"{sign_off}\n{ours.to_name}"
    person = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    phone = f"+49 {rng.randint(30, 989)} {rng.randint(100000, 9999999)}"
    role = "Buchhaltung" if lang == "de" else "Accounts Payable"
    footer = _FOOTER[lang].format(
        company=ours.to_name,
        n=rng.randint(1, 99),
        person=person,
        hrb=rng.randint(10000, 999999),
        vat=rng.randint(100000000, 999999999),
    )
    return f"{sign_off}\n{person}\n{role}\n{ours.to_name}\nTel. {phone}\n\n{footer}"


def _attribution(ours: Ours, lang: str) -> str:
    if lang == "de":
        return f"Am 25.11.2026 um 09:00 schrieb {ours.sender}:"
    return f"On Wed, 25 Nov 2026 at 09:00, {ours.sender} wrote:"


def _outlook_block(ours: Ours, lang: str) -> str:
    if lang == "de":
        return (
            "-----Ursprüngliche Nachricht-----\n"
            f"Von: {ours.sender}\nGesendet: Mittwoch, 25. November 2026 09:00\n"
            f"An: {ours.to_name} <{ours.to_addr}>\nBetreff: {ours.subject}\n"
        )
    return (
        "________________________________\n"
        f"From: {ours.sender}\nSent: Wednesday, November 25, 2026 9:00 AM\n"
        f"To: {ours.to_name} <{ours.to_addr}>\nSubject: {ours.subject}\n"
    )


def _pdf(rng: random.Random, size: int) -> bytes:
    return b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + rng.randbytes(size)


def _answer(rng: random.Random, ours: Ours, text: str, when: datetime) -> bytes:
    """A customer's answer to our reminder, in one of the clients' usual shapes."""
    lang = ours.language
    fmt = _pick(rng, FORMATS)
    new_mail = rng.random() < NEW_MAIL_SHARE
    greeted = text.split(maxsplit=1)[0].rstrip(",").lower() in _GREETED
    if not greeted and rng.random() < 0.5:
        text = f"{_GREETING[lang]}\n\n{text}"
    own = f"{text}\n\n{_signature(rng, ours, lang)}"
    domain = ours.to_addr.rpartition("@")[2]
    if new_mail:
        word = "Rechnung" if lang == "de" else "Invoice"
        subject = f"{word} {ours.invoices[0]}"
        threading_headers = ""
    else:
        subject = ("AW: " if lang == "de" else "RE: ") + ours.subject
        threading_headers = (
            f"In-Reply-To: {ours.message_id}\nReferences: {ours.references} {ours.message_id}\n"
        )
    quoted = "\n".join(("> " + line).rstrip() for line in ours.plain.split("\n"))
    if new_mail:
        plain = own + "\n"
    elif fmt == "outlook":
        plain = f"{own}\n\n{_outlook_block(ours, lang)}\n{ours.plain}\n"
    else:
        plain = f"{own}\n\n{_attribution(ours, lang)}\n{quoted}\n"
    head = _transport(rng, ours.to_addr, ours.reply_to, when) + (
        f'From: "{ours.to_name}" <{ours.to_addr}>\n'
        f"To: {ours.reply_to}\n"
        f"Subject: {_subject(subject)}\n"
        f"Date: {format_datetime(when)}\n"
        f"Message-ID: {_message_id(rng, domain)}\n"
        f"{threading_headers}"
        "MIME-Version: 1.0\n"
    )
    if fmt == "plain":
        agent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Thunderbird/128.5.0"
        return _wire(
            head + f"User-Agent: {agent}\n"
            "Content-Type: text/plain; charset=UTF-8; format=flowed\n"
            "Content-Transfer-Encoding: 8bit\n\n" + plain
        )
    if fmt == "outlook":
        b = _boundary(rng)
        paragraphs = "".join(
            f'<p class="MsoNormal">{_html_lines(p)}<o:p></o:p></p>\n'
            f'<p class="MsoNormal"><o:p>&nbsp;</o:p></p>\n'
            for p in own.split("\n\n")
        )
        history = _html_lines(_outlook_block(ours, lang)).replace("\n", "")
        quoted_html = ours.html if not new_mail else ""
        html = (
            '<html xmlns:o="urn:schemas-microsoft-com:office:office" '
            'xmlns="http://www.w3.org/TR/REC-html40"><head>'
            '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
            '<meta name="Generator" content="Microsoft Word 15 (filtered medium)">'
            f"{_OUTLOOK_STYLE}</head>\n"
            f'<body lang="{lang.upper()}" link="#0563C1" vlink="#954F72">'
            f'<div class="WordSection1">\n{paragraphs}'
            + (
                ""
                if new_mail
                else '<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3pt 0 0">'
                f'<p class="MsoNormal">{history}</p></div>\n{quoted_html}\n'
            )
            + "</div></body></html>\n"
        )
        return _wire(
            head + "X-Mailer: Microsoft Outlook 16.0\n"
            f"Thread-Topic: {_subject(ours.subject)}\n"
            f'Content-Type: multipart/alternative; boundary="{b}"\n\n'
            f"--{b}\nContent-Type: text/plain; charset=utf-8\n"
            f"Content-Transfer-Encoding: quoted-printable\n\n{_qp(plain)}\n"
            f"--{b}\nContent-Type: text/html; charset=utf-8\n"
            f"Content-Transfer-Encoding: quoted-printable\n\n{_qp(html)}\n--{b}--\n"
        )
    if fmt == "html":
        quote = (
            ""
            if new_mail
            else '<br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">'
            f"{_html_lines(_attribution(ours, lang))}<br></div>"
            '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;'
            f'border-left:1px solid rgb(204,204,204);padding-left:1ex">{ours.html}</blockquote>'
            "</div>"
        )
        html = f'<div dir="ltr">{_html_lines(own)}</div>{quote}\n'
        return _wire(
            head + "Content-Type: text/html; charset=UTF-8\n"
            "Content-Transfer-Encoding: base64\n\n" + _b64(html.encode("utf-8"))
        )
    b = _boundary(rng)
    name = "Zahlungsbeleg.pdf" if lang == "de" else "remittance-advice.pdf"
    return _wire(
        head + "User-Agent: Apple Mail (2.3774)\n"
        f'Content-Type: multipart/mixed; boundary="{b}"\n\n'
        f"--{b}\nContent-Type: text/plain; charset=utf-8\n"
        f"Content-Transfer-Encoding: quoted-printable\n\n{_qp(plain)}\n"
        f'--{b}\nContent-Type: application/pdf; name="{name}"\n'
        f'Content-Disposition: attachment; filename="{name}"\n'
        f"Content-Transfer-Encoding: base64\n\n{_b64(_pdf(rng, rng.randint(600, 1400)))}"
        f"--{b}--\n"
    )


def _auto_reply(rng: random.Random, ours: Ours, text: str, when: datetime) -> bytes:
    lang = ours.language
    domain = ours.to_addr.rpartition("@")[2]
    own = f"{text}\n\n{_signature(rng, ours, lang)}\n"
    headers = "Auto-Submitted: auto-replied\nX-Auto-Response-Suppress: All\n"
    if rng.random() < 0.3:  # some only say it in the subject and the words
        headers = ""
    head = _transport(rng, ours.to_addr, ours.reply_to, when) + (
        f'From: "{ours.to_name}" <{ours.to_addr}>\n'
        f"To: {ours.reply_to}\n"
        f"Subject: {_subject(rng.choice(_AUTO_PREFIX[lang]) + ours.subject)}\n"
        f"Date: {format_datetime(when)}\n"
        f"Message-ID: {_message_id(rng, domain)}\n"
        f"In-Reply-To: {ours.message_id}\n"
        f"References: {ours.references} {ours.message_id}\n"
        f"{headers}MIME-Version: 1.0\n"
    )
    if rng.random() < 0.5:
        return _wire(
            head + "Content-Type: text/plain; charset=utf-8\n"
            f"Content-Transfer-Encoding: quoted-printable\n\n{_qp(own)}"
        )
    b = _boundary(rng)
    html = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
        f"{_OUTLOOK_STYLE}</head><body>"
        f'<div class="WordSection1"><p class="MsoNormal">{_html_lines(own)}</p></div>'
        "</body></html>\n"
    )
    return _wire(
        head + f"X-MS-Exchange-Inbox-Rules-Loop: {ours.to_addr}\n"
        f'Content-Type: multipart/alternative; boundary="{b}"\n\n'
        f"--{b}\nContent-Type: text/plain; charset=utf-8\n"
        f"Content-Transfer-Encoding: quoted-printable\n\n{_qp(own)}\n"
        f"--{b}\nContent-Type: text/html; charset=utf-8\n"
        f"Content-Transfer-Encoding: quoted-printable\n\n{_qp(html)}\n--{b}--\n"
    )


def _bounce(rng: random.Random, ours: Ours, when: datetime) -> bytes:
    """A Postfix DSN for our reminder: the report and our mail (or its header) returned."""
    domain = ours.to_addr.rpartition("@")[2]
    mta = f"mail.{domain}"
    b = _boundary(rng)
    queue_id = f"{rng.getrandbits(40):010X}"
    action, subject = "failed", "Undelivered Mail Returned to Sender"
    if rng.random() < 0.8:
        status = "5.1.1"
        diagnostic = (
            f"smtp; 550 5.1.1 <{ours.to_addr}>: Recipient address rejected: "
            "User unknown in virtual mailbox table"
        )
    else:
        status = "5.2.2"
        diagnostic = f"smtp; 552 5.2.2 <{ours.to_addr}>: Mailbox full, quota exceeded"
    original = ours.raw.decode("utf-8", "replace").replace("\r\n", "\n")
    if rng.random() < 0.6:
        returned = f"Content-Type: message/rfc822\n\n{original}"
    else:
        returned = "Content-Type: text/rfc822-headers\n\n" + original.split("\n\n", 1)[0] + "\n"
    return _wire(
        f"Return-Path: <>\nDelivered-To: {ours.reply_to}\n"
        f"Received: by {mta} (Postfix) id {queue_id}; {format_datetime(when)}\n"
        f"Date: {format_datetime(when)}\n"
        f"From: MAILER-DAEMON@{mta} (Mail Delivery System)\n"
        f"Subject: {subject}\n"
        f"To: {ours.reply_to}\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{b}"\n'
        f"Message-Id: <{when.strftime('%Y%m%d%H%M%S')}.{queue_id}@{mta}>\n\n"
        "This is a MIME-encapsulated message.\n\n"
        f"--{b}\nContent-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\n"
        f"This is the mail system at host {mta}.\n\n"
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients. It's attached below.\n\n"
        "For further assistance, please send mail to postmaster.\n\n"
        "If you do so, please include this problem report. You can\n"
        "delete your own text from the attached returned message.\n\n"
        "                   The mail system\n\n"
        f"<{ours.to_addr}>: host {mta}[198.51.100.7] said: {diagnostic[6:]} "
        "(in reply to RCPT TO command)\n\n"
        f"--{b}\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; {mta}\nX-Postfix-Queue-ID: {queue_id}\n"
        f"Arrival-Date: {format_datetime(when)}\n\n"
        f"Final-Recipient: rfc822; {ours.to_addr}\nOriginal-Recipient: rfc822;{ours.to_addr}\n"
        f"Action: {action}\nStatus: {status}\nRemote-MTA: dns; {mta}\n"
        f"Diagnostic-Code: {diagnostic}\n\n"
        f"--{b}\nContent-Description: Undelivered Message\n{returned}\n--{b}--\n"
    )


_STRANGERS = (
    ("news@buero-bedarf24.example", "Büro-Bedarf24", "Nur diese Woche: 20 % auf Druckerpapier"),
    ("bewerbung.schulz@mail7.example", "Jonas Schulz", "Bewerbung als Buchhalter (m/w/d)"),
    ("rechnung@lieferant-nord.example", "Lieferant Nord GmbH", "Ihre Rechnung 2026-11-4711"),
    ("info@crm-tools.example", "CRM Tools", "Quick question about your receivables"),
    ("noreply@paketdienst.example", "Paketdienst", "Ihre Sendung kommt heute"),
)


def _stranger(rng: random.Random, pools: dict[tuple[str, str], list[str]], when: datetime) -> bytes:
    """Mail to the reply address that answers nothing of ours: a person must look at it."""
    addr, name, subject = rng.choice(_STRANGERS)
    domain = addr.rpartition("@")[2]
    to = "forderungen@muster-handel.example"
    lang = "de" if rng.random() < 0.7 else "en"
    text = rng.choice(pools[("other", lang)])
    head = _transport(rng, addr, to, when) + (
        f'From: "{_subject(name)}" <{addr}>\nTo: {to}\nSubject: {_subject(subject)}\n'
        f"Date: {format_datetime(when)}\nMessage-ID: {_message_id(rng, domain)}\n"
        "MIME-Version: 1.0\n"
    )
    if addr.startswith("news@"):
        rows = "".join(
            f'<tr><td style="padding:8px;border-bottom:1px solid #eee">Artikel {i}</td>'
            f'<td style="padding:8px;text-align:right">{rng.randint(5, 99)},99 €</td></tr>'
            for i in range(rng.randint(8, 20))
        )
        html = (
            '<html><body style="background:#f4f4f4"><table width="600" align="center" '
            f'style="background:#fff;font-family:Arial">{rows}</table>'
            f"<p>{text}</p></body></html>\n"
        )
        return _wire(
            head + "Precedence: bulk\nList-Unsubscribe: <https://buero-bedarf24.example/u>\n"
            "Content-Type: text/html; charset=utf-8\n"
            f"Content-Transfer-Encoding: quoted-printable\n\n{_qp(html)}"
        )
    b = _boundary(rng)
    body = f"{text}\n\n{rng.choice(_SIGN_OFF[lang])}\n{name}\n"
    return _wire(
        head + f'Content-Type: multipart/mixed; boundary="{b}"\n\n'
        f"--{b}\nContent-Type: text/plain; charset=utf-8\n"
        f"Content-Transfer-Encoding: quoted-printable\n\n{_qp(body)}\n"
        f'--{b}\nContent-Type: application/pdf; name="dokument.pdf"\n'
        'Content-Disposition: attachment; filename="dokument.pdf"\n'
        f"Content-Transfer-Encoding: base64\n\n{_b64(_pdf(rng, rng.randint(1500, 3000)))}"
        f"--{b}--\n"
    )


def _wire(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


@dataclass(frozen=True)
class Reply:
    kind: str
    data: bytes


def make_replies(reminders: Sequence[Ours], m: int, seed: int) -> list[Reply]:
    """M incoming mails, the same for the same seed; each answers a random reminder."""
    rng = random.Random(seed + 7)
    pools = reply_texts()
    out = []
    for i in range(m):
        kind = _pick(rng, KINDS)
        ours = rng.choice(reminders)
        when = FIRST_REPLY + timedelta(seconds=i * 80_000 // max(m, 1) + rng.randint(0, 59))
        if kind == "stranger":
            data = _stranger(rng, pools, when)
        elif kind == "bounce":
            data = _bounce(rng, ours, when)
        elif kind == "auto_reply":
            data = _auto_reply(rng, ours, rng.choice(pools[("auto_reply", ours.language)]), when)
        else:
            label = "other" if kind == "thanks" else kind
            data = _answer(rng, ours, rng.choice(pools[(label, ours.language)]), when)
        out.append(Reply(kind, data))
    return out


# -- the servers and the mailbox ----------------------------------------------------------


def write_rules(folder: Path, smtp_port: int, imap: loopback_imap.LoopbackImap) -> Path:
    """The shipped rules.yaml with smtp: and imap: pointing at the loopback servers."""
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    data["templates_dir"] = str(ROOT / "templates")
    data["smtp"] = {
        "host": HOST,
        "port": smtp_port,
        "security": "none",
        "rate_per_minute": 10_000,
    }
    section = imap.settings(password_env=PASSWORD_ENV).model_dump(exclude_defaults=True)
    section.pop("sent_folder", None)
    data["imap"] = section
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


class Mailstore:
    """The Dovecot account: fill the INBOX, empty the folders, count, and Dovecot's CPU."""

    def __init__(self, server: loopback_imap.LoopbackImap, folders: Sequence[str]) -> None:
        self.server = server
        self.port = server.port
        self.folders = tuple(folders)  # INBOX and where the pass files the mails

    def login(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(HOST, self.port, timeout=30)
        conn.login(loopback_imap.USER, loopback_imap.PASSWORD)
        return conn

    def deliver(self, mails: Sequence[bytes]) -> None:
        """APPEND every mail to INBOX over one connection, pipelined (LITERAL+), unread."""
        with (
            socket.create_connection((HOST, self.port), timeout=60) as sock,
            sock.makefile("rb") as reader,
        ):
            greeting = reader.readline()
            if b"LITERAL+" not in greeting:
                raise SystemExit(f"Dovecot does not offer LITERAL+: {greeting!r}")

            def expect(tag: bytes) -> None:
                while True:
                    line = reader.readline()
                    if not line:
                        raise SystemExit("Dovecot closed the connection while filling INBOX")
                    if line.startswith(tag + b" "):
                        if not line.startswith(tag + b" OK"):
                            raise SystemExit(f"Dovecot refused: {line!r}")
                        return

            user, password = loopback_imap.USER, loopback_imap.PASSWORD
            sock.sendall(f'l LOGIN {user} "{password}"\r\n'.encode())
            expect(b"l")
            for start in range(0, len(mails), BATCH):
                chunk = mails[start : start + BATCH]
                out = bytearray()
                for i, data in enumerate(chunk, start):
                    out += b"a%d APPEND INBOX () {%d+}\r\n" % (i, len(data)) + data + b"\r\n"
                sock.sendall(out)
                for i in range(start, start + len(chunk)):
                    expect(b"a%d" % i)
            sock.sendall(b"z LOGOUT\r\n")
            expect(b"z")

    def empty(self) -> None:
        conn = self.login()
        try:
            for folder in self.folders:
                typ, data = conn.select(f'"{folder}"')
                if typ != "OK":
                    raise SystemExit(f"cannot select {folder}: {data!r}")
                if int(data[0] or 0):
                    conn.uid("STORE", "1:*", "+FLAGS.SILENT", r"(\Deleted)")
                    conn.expunge()
        finally:
            conn.logout()

    def count(self, folder: str) -> int:
        conn = self.login()
        try:
            typ, data = conn.select(f'"{folder}"', readonly=True)
            return int(data[0] or 0) if typ == "OK" else -1
        finally:
            conn.logout()

    def cpu_seconds(self) -> float | None:
        """User + system CPU of Dovecot's processes so far, reaped children included."""
        proc = self.server._proc
        if proc is None:
            return None
        pgid = proc.pid
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid:
                total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        return total / os.sysconf("SC_CLK_TCK")


def create_probe(folder: Path, size: int, count: int = 500) -> Timing:
    """Create, write and close a new file of `size` bytes (no fsync): a stored mail's inode."""
    where = folder / "create-probe"
    where.mkdir()
    data = b"x" * size
    runs = []
    try:
        os.sync()
        for i in range(count):
            start = time.perf_counter()
            fd = os.open(where / f"{i:064x}.eml", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, data)
            os.close(fd)
            runs.append(time.perf_counter() - start)
    finally:
        shutil.rmtree(where)
    return Timing(runs)


def dovecot_version() -> str:
    try:
        out = subprocess.run(
            [loopback_imap.dovecot_binary(), "--version"], capture_output=True, text=True
        )
    except OSError:
        return "?"
    return out.stdout.split()[0] if out.stdout else "?"


# -- the measurements ---------------------------------------------------------------------


def clocked(box: Mailstore, fn: Callable[[], object]) -> Span:
    # Write out what setting up left unwritten (the state's copy, the INBOX just filled):
    # ext4 would otherwise flush it with the first fsync of the pass, on the pass's clock.
    os.sync()
    gc.collect()
    cpu, served = time.process_time(), box.cpu_seconds()
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu
    time.sleep(0.05)  # let Dovecot's master reap the connection's imap process
    after = box.cpu_seconds()
    return Span(wall, cpu, None if served is None or after is None else after - served)


def raw_imaplib(box: Mailstore, m: int) -> Span:
    """SELECT INBOX, UID SEARCH ALL, UID FETCH BODY.PEEK[] 100 at a time: the bytes only."""

    def read_all() -> None:
        conn = imaplib.IMAP4(HOST, box.port, timeout=30)
        got = 0
        try:
            conn.login(loopback_imap.USER, loopback_imap.PASSWORD)
            conn.select(INBOX)
            _typ, data = conn.uid("SEARCH", "ALL")
            uids = data[0].decode("ascii").split()
            for start in range(0, len(uids), BATCH):
                _typ, data = conn.uid("FETCH", ",".join(uids[start : start + BATCH]), "BODY.PEEK[]")
                got += sum(1 for item in data if isinstance(item, tuple))
        finally:
            conn.logout()
        if got != m:
            raise SystemExit(f"raw imaplib loop: {got} of {m} messages fetched")

    return clocked(box, read_all)


def raw_imapclient(box: Mailstore, m: int) -> Span:
    """The same with IMAPClient, the library ImapSession uses (its response parser)."""

    def read_all() -> None:
        conn = IMAPClient(HOST, port=box.port, ssl=False, timeout=30)
        got = 0
        try:
            conn.login(loopback_imap.USER, loopback_imap.PASSWORD)
            conn.select_folder(INBOX)
            uids = conn.search(["ALL"])
            for start in range(0, len(uids), BATCH):
                fetched = conn.fetch(uids[start : start + BATCH], [b"BODY.PEEK[]"])
                got += sum(1 for items in fetched.values() if b"BODY[]" in items)
        finally:
            conn.logout()
        if got != m:
            raise SystemExit(f"raw imapclient loop: {got} of {m} messages fetched")

    return clocked(box, read_all)


@dataclass(frozen=True)
class Outcome:
    labels: Counter[str]
    states: Counter[str]
    matched: int
    notices: int


def ingest_once(
    box: Mailstore,
    template: Path,
    state: Path,
    loaded: LoadedRules,
    m: int,
    around: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
) -> tuple[Span, Outcome]:
    """`Ingest(store, loaded, now, environ).run()` on a fresh copy of the state, store open.

    `around` wraps the pass alone (the timers of the split, the profiler).
    """
    shutil.copytree(template, state)
    store = TinyDBStore(state)
    reports: list[IngestReport] = []

    def one_pass() -> None:
        with around():
            reports.append(Ingest(store, loaded, INGEST_NOW, ENV).run())

    try:
        span = clocked(box, one_pass)
        notices = sum(1 for e in store.view().entries() if e.kind == "notice")
    finally:
        store.close()
    report = reports[0]
    if report.errors or len(report.lines) != m or report.moved != m:
        raise SystemExit(
            f"ingest: {len(report.lines)} of {m} replies read, {report.moved} moved; "
            f"errors: {report.errors[:3]}"
        )
    left = box.count(INBOX)
    if left:
        raise SystemExit(f"ingest left {left} messages in {INBOX}")
    shutil.rmtree(state)
    outcome = Outcome(
        Counter(line.label for line in report.lines),
        Counter(line.state for line in report.lines),
        sum(1 for line in report.lines if line.invoices),
        notices,
    )
    return span, outcome


# -- where the time goes --------------------------------------------------------------------


IMAP_OPEN = "IMAP connect, login, LIST, SELECT, SEARCH"
FETCH = "IMAP fetch (UID FETCH BODY.PEEK[], 100 a batch)"
RAW_STORE = "raw store (sha256, write: put_many)"
FSYNC_EML = "  fsync of the .eml files + folder"
PARSE = "parse (MIME, headers, bounce: inbound.parse)"
HTML = "  HTML to text (replytext.html_to_text)"
OWN = "  own-text extraction (replytext.own_text)"
VIEWS = "store views (view, entries, invoices, received)"
INDEX = "match index (thread tokens, build_index)"
MATCH = "match (matching.match)"
CLASSIFY = "classify (classify.classify)"
DECIDE = "decide (replies.decide, auth_problem)"
NOTICES = "notices (render + build MIME)"
UNIT = "journal unit (lock, refresh, commit)"
FSYNC_UNIT = "  fsync of the journal"
FSYNC_OTHER = "  fsync, other"
MOVE = "IMAP move (UID MOVE per batch and folder)"
OTHER = "other (hashing, events, report, close)"
CATEGORIES = (
    IMAP_OPEN,
    FETCH,
    RAW_STORE,
    FSYNC_EML,
    PARSE,
    HTML,
    OWN,
    VIEWS,
    INDEX,
    MATCH,
    CLASSIFY,
    DECIDE,
    NOTICES,
    UNIT,
    FSYNC_UNIT,
    FSYNC_OTHER,
    MOVE,
    OTHER,
)
FSYNCS = (FSYNC_UNIT, FSYNC_EML, FSYNC_OTHER)


@contextlib.contextmanager
def instrumented(split: Split) -> Iterator[None]:
    """Wrap the functions of one pass with timers (nothing in daemon/ changes); restore them."""
    main_thread = threading.get_ident()
    original_transaction = TinyDBStore.transaction

    @contextlib.contextmanager
    def transaction(store: TinyDBStore, **kwargs: Any) -> Iterator[Any]:
        split.enter(UNIT)
        try:
            with original_transaction(store, **kwargs) as tx:
                yield tx
        finally:
            split.leave()

    original_fsync = os.fsync

    def fsync(fd: Any) -> None:
        if threading.get_ident() != main_thread:
            # put_many's pool: its wall time is counted around the pool (below).
            original_fsync(fd)
            return
        parent = split.parent()
        split.enter(
            FSYNC_UNIT if parent == UNIT else FSYNC_EML if parent == RAW_STORE else FSYNC_OTHER
        )
        try:
            original_fsync(fd)
        finally:
            split.leave()

    class TimedPool(ThreadPoolExecutor):
        """put_many fsyncs its files side by side in a pool: time the pool as their fsync."""

        def __enter__(self) -> TimedPool:
            split.enter(FSYNC_EML)
            return self

        def __exit__(self, *exc: object) -> None:
            try:
                self.shutdown(wait=True)
            finally:
                split.leave()

    patches: list[tuple[Any, str, Any]] = [
        (ImapSession, "_connect", split.timed(IMAP_OPEN, ImapSession._connect)),
        (ImapSession, "ensure_folder", split.timed(IMAP_OPEN, ImapSession.ensure_folder)),
        (ImapSession, "open_folder", split.timed(IMAP_OPEN, ImapSession.open_folder)),
        (ImapSession, "uids", split.timed(IMAP_OPEN, ImapSession.uids)),
        (ImapSession, "close", split.timed(IMAP_OPEN, ImapSession.close)),
        (ImapSession, "fetch", split.timed(FETCH, ImapSession.fetch)),
        (ImapSession, "move", split.timed(MOVE, ImapSession.move)),
        (messages, "put_many", split.timed(RAW_STORE, messages.put_many)),
        (messages, "ThreadPoolExecutor", TimedPool),
        (inbox, "parse", split.timed(PARSE, parse)),
        (replytext, "html_to_text", split.timed(HTML, replytext.html_to_text)),
        (replytext, "own_text", split.timed(OWN, replytext.own_text)),
        (TinyDBStore, "view", split.timed(VIEWS, TinyDBStore.view)),
        (StoreView, "entries", split.timed(VIEWS, StoreView.entries)),
        (StoreView, "invoices", split.timed(VIEWS, StoreView.invoices)),
        (StoreView, "invoice", split.timed(VIEWS, StoreView.invoice)),
        (StoreView, "received", split.timed(VIEWS, StoreView.received)),
        (StoreView, "received_by_uid", split.timed(VIEWS, StoreView.received_by_uid)),
        (Ingest, "_index", split.timed(INDEX, Ingest._index)),
        (inbox, "match", split.timed(MATCH, match)),
        (inbox, "classify", split.timed(CLASSIFY, classify)),
        (replies, "decide", split.timed(DECIDE, replies.decide)),
        (replies, "auth_problem", split.timed(DECIDE, replies.auth_problem)),
        (Ingest, "_notices", split.timed(NOTICES, Ingest._notices)),
        (TinyDBStore, "transaction", transaction),
        (os, "fsync", fsync),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, value in patches:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def where_the_time_goes(
    box: Mailstore, template: Path, state: Path, loaded: LoadedRules, m: int
) -> tuple[float, Split]:
    split = Split()
    seconds = ingest_once(box, template, state, loaded, m, lambda: instrumented(split))[0].wall
    split.seconds[OTHER] = max(0.0, seconds - sum(split.seconds.values()))
    split.calls[OTHER] = 1
    return seconds, split


def profile_pass(
    box: Mailstore, template: Path, state: Path, loaded: LoadedRules, m: int, top: int = 30
) -> str:
    profiler = cProfile.Profile()

    @contextlib.contextmanager
    def profiled() -> Iterator[None]:
        profiler.enable()
        try:
            yield
        finally:
            profiler.disable()

    ingest_once(box, template, state, loaded, m, profiled)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return out.getvalue()


# -- the run --------------------------------------------------------------------------------


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--replies", type=int, default=1000, help="mails in the INBOX")
    parser.add_argument(
        "--customers", type=int, default=1000, help="customers, one reminder sent to each"
    )
    parser.add_argument(
        "--invoices",
        type=int,
        default=0,
        help="more open invoices (of N/5 more customers, none due) in the store besides",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs, each on a fresh state")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--tmpdir",
        type=Path,
        default=BENCH,
        help="where the temporary state directories go (default: bench/, the project's disk)",
    )
    parser.add_argument("--no-split", action="store_true", help="skip the per-reply cost split")
    parser.add_argument("--profile", action="store_true", help="also cProfile one more pass")
    args = parser.parse_args()
    if args.replies < 1 or args.customers < 1 or args.repeat < 1 or args.invoices < 0:
        parser.error("--replies, --customers and --repeat must be at least 1")
    return args


def ledger_invoices(n: int, seed: int) -> list[Invoice]:
    """`--invoices`: N more open invoices of N/5 other customers, none due for a mail yet.

    The rest of the ledger, which the pass's match index and invoice lookups carry.
    """
    out = []
    for i, inv in enumerate(make_invoices(n, max(1, n // 5), seed + 11)):
        due = REFERENCE_DAY + timedelta(days=8 + i % 53)
        local, _, domain = inv.email.partition("@")
        out.append(
            inv._replace(
                number=f"RE-{due.year}-{5_000_000 + i:07d}",
                customer_id="L" + inv.customer_id,
                email=f"{local}@ledger-{domain}",
                due_date=due,
                issue_date=due - (inv.due_date - inv.issue_date),
            )
        )
    return out


def send_reminders(template: Path, rules: Path, customers: int, ledger: int, seed: int) -> None:
    """The state the replies answer: N customers, one reminder each, sent by a real tick."""
    populate(template, due_invoices(customers, seed) + ledger_invoices(ledger, seed))
    store = TinyDBStore(template)
    try:
        report = Tick(store, load_rules(rules), PLAN_NOW, environ=ENV).run()
    finally:
        store.close()
    sent = report.count("sent")
    if report.errors or sent != customers:
        raise SystemExit(f"tick: {sent} of {customers} reminders sent; {report.errors[:3]}")


def main() -> int:
    args = arguments()
    m = args.replies
    spans: dict[str, list[Span]] = {"raw": [], "client": [], "ingest": []}
    outcome: Outcome | None = None
    split: tuple[float, Split] | None = None
    profile = ""
    args.tmpdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ingest-", dir=args.tmpdir) as tmp_name:
        tmp = Path(tmp_name)
        mount, device, fstype = filesystem(tmp)
        probe = fsync_probe(tmp)
        (tmp / "dovecot").mkdir()
        # Plain IMAP on loopback: the certificate is never read.
        cert = Certificate(tmp / "unused-cert.pem", tmp / "unused-key.pem")
        users = {loopback_imap.USER: loopback_imap.PASSWORD}
        with loopback_imap.running(cert, tmp / "dovecot", starttls=False, users=users) as dovecot:
            template = tmp / "template"
            setup = time.perf_counter()
            with smtp_running("process") as smtp:
                rules = write_rules(tmp, smtp.port, dovecot)
                send_reminders(template, rules, args.customers, args.invoices, args.seed)
            loaded = load_rules(rules)
            imap = loaded.rules.imap
            assert imap is not None
            filed = [f for f in (imap.processed_folder, imap.review_folder) if f]
            box = Mailstore(dovecot, [INBOX, *filed])
            store = TinyDBStore(template)
            try:
                reminders = our_reminders(template, store)
            finally:
                store.close()
            replies_ = make_replies(reminders, m, args.seed)
            mails = [r.data for r in replies_]
            sizes = [len(d) for d in mails]
            setup = time.perf_counter() - setup
            created = create_probe(tmp, round(statistics.mean(sizes)))
            ledger = (
                f" (and {args.invoices:,} open invoices of {max(1, args.invoices // 5):,} "
                "more customers, none due)"
                if args.invoices
                else ""
            )
            print(
                f"{m:,} mails into Dovecot {dovecot_version()} on {HOST}:{box.port} "
                f"(INBOX, read as {loopback_imap.USER}), answering {args.customers:,} "
                f"reminders sent by a tick to as many customers{ledger}; {args.repeat} run(s), "
                "each on a fresh state and a freshly filled INBOX"
            )
            kinds = Counter(r.kind for r in replies_)
            print(
                "mails: "
                + ", ".join(f"{k} {kinds[k]}" for k in KINDS)
                + f"; {statistics.mean(sizes) / 1e3:.1f} kB mean ({min(sizes):,}..{max(sizes):,} B)"
            )
            print(
                f"state on {fstype} ({device} at {mount}): a 512 B append + fsync takes "
                f"{fmt_s(probe.median)}, a new file of the mean size (create, write, close) "
                f"{fmt_s(created.median)} (medians of {len(probe.runs)}, {len(created.runs)}); "
                f"setup {setup:.1f} s"
            )
            if fstype in ("tmpfs", "ramfs"):
                print("  WARNING: a memory file system; fsync costs nothing here (use --tmpdir)")

            for r in range(args.repeat):

                def raw_runs() -> None:
                    box.deliver(mails)
                    spans["raw"].append(raw_imaplib(box, m))
                    spans["client"].append(raw_imapclient(box, m))
                    box.empty()

                def ingest_run(r: int = r) -> None:
                    nonlocal outcome
                    box.deliver(mails)
                    span, outcome = ingest_once(box, template, tmp / f"run-{r}", loaded, m)
                    spans["ingest"].append(span)
                    box.empty()

                # Alternate the order, so that neither side always runs on a warmer machine.
                if r % 2 == 0:
                    raw_runs()
                    ingest_run()
                else:
                    ingest_run()
                    raw_runs()
                last = spans["ingest"][-1]
                print(
                    f"  run {r + 1}: raw imaplib {rate(m, spans['raw'][-1].wall):,.0f}/s, "
                    f"raw imapclient {rate(m, spans['client'][-1].wall):,.0f}/s, "
                    f"mahnwerk {rate(m, last.wall):,.0f}/s "
                    f"({fmt_s(last.client_cpu / m)} CPU a reply)"
                )

            if not args.no_split:
                box.deliver(mails)
                split = where_the_time_goes(box, template, tmp / "split", loaded, m)
                box.empty()
            if args.profile:
                box.deliver(mails)
                profile = profile_pass(box, template, tmp / "profile", loaded, m)
                box.empty()

    timings = {key: Timing([s.wall for s in runs]) for key, runs in spans.items()}
    raw, client, ingest_t = timings["raw"], timings["client"], timings["ingest"]
    ratio = raw.median / ingest_t.median
    client_ratio = client.median / ingest_t.median
    ingest_rate = rate(m, ingest_t.median)

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    def row(label: str, timing: Timing, value: float, target: str) -> None:
        print(
            f"{label:<40}{fmt_s(timing.median):>10}{fmt_s(timing.best):>10}"
            f"{rate(m, timing.median):>11,.0f}{value:>8.3f}   {target}"
        )

    print()
    print(f"{'measurement':<40}{'median':>10}{'best':>10}{'replies/s':>11}{'ratio':>8}   target")
    row("raw FETCH, imaplib (the baseline)", raw, 1.0, "")
    row("raw FETCH, imapclient (as ImapSession)", client, raw.median / client.median, "(shown)")
    row(
        "mahnwerk Ingest.run(), end to end",
        ingest_t,
        ratio,
        f">= {TARGET_RATIO}  {verdict(ratio >= TARGET_RATIO)}",
    )
    print(
        f"mahnwerk: {ingest_rate:,.0f} replies/s (median), {rate(m, ingest_t.best):,.0f}/s best; "
        f"target >= {TARGET_RATE:.0f}/s  {verdict(ingest_rate >= TARGET_RATE)}"
    )
    print(
        f"ratio = replies/s over the raw loop's (medians); against the imapclient loop "
        f"{client_ratio:.3f}. Both loops: connect, LOGIN, SELECT, UID SEARCH, UID FETCH\n"
        f"BODY.PEEK[] {BATCH} at a time, LOGOUT. mahnwerk also stores each mail (fsync'd), "
        f"parses, matches,\nclassifies, decides, commits a journal unit per batch and MOVEs "
        f"every mail out of INBOX"
    )

    print()
    print(f"{'per reply (medians)':<40}{'wall':>10}{'our CPU':>10}{'Dovecot CPU':>13}")
    cpu_json: dict[str, Any] = {}
    for key, label in (
        ("raw", "raw FETCH, imaplib"),
        ("client", "raw FETCH, imapclient"),
        ("ingest", "mahnwerk Ingest.run()"),
    ):
        ours, served = cpu_per_mail(spans[key], m)
        print(
            f"{label:<40}{fmt_s(timings[key].median / m):>10}{fmt_s(ours):>10}"
            f"{fmt_s(served) if served is not None else 'n/a':>13}"
        )
        cpu_json[key] = {
            "client_cpu_per_reply_s": round(ours, 7),
            "server_cpu_per_reply_s": None if served is None else round(served, 7),
        }

    outcome_json: dict[str, Any] = {}
    if outcome is not None:
        print(
            f"\nwhat the mails came out as: labels {dict(outcome.labels.most_common())}; "
            f"{dict(outcome.states)}; {outcome.matched:,} matched to invoices; "
            f"{outcome.notices:,} notices queued"
        )
        outcome_json = {
            "labels": dict(outcome.labels),
            "states": dict(outcome.states),
            "matched": outcome.matched,
            "notices": outcome.notices,
        }

    split_json: dict[str, Any] = {}
    if split is not None:
        seconds, parts = split
        fsyncs = sum(parts.calls.get(c, 0) for c in FSYNCS)
        print()
        print(f"where one pass's time goes (one instrumented run, {fmt_s(seconds)}):")
        head = "part (own time, less the parts inside)"
        print(f"{head:<50}{'calls':>8}{'per reply':>11}{'share':>8}")
        for category in CATEGORIES:
            sec = parts.seconds.get(category, 0.0)
            calls = parts.calls.get(category, 0)
            print(f"{category:<50}{calls:>8,}{fmt_s(sec / m):>11}{sec / seconds:>8.0%}")
            split_json[category.strip()] = {"seconds": round(sec, 6), "calls": calls}
        print(
            f"per reply: {fsyncs / m:.2f} fsync calls in this thread (the .eml files' own "
            f"fsyncs run in put_many's pool, counted as its wall time), "
            f"{parts.calls.get(UNIT, 0) / m:.2f} journal units; the raw loop takes "
            f"{fmt_s(raw.median / m)} per reply in all"
        )
    if profile:
        print()
        print("cProfile of one more pass, by own time:")
        print(profile)

    figures: dict[str, Any] = {
        "benchmark": "ingest",
        "replies": m,
        "customers": args.customers,
        "repeat": args.repeat,
        "filesystem": fstype,
        "fsync_probe": probe.json(),
        "create_probe": created.json(),
        "ledger_invoices": args.invoices,
        "message_bytes_mean": round(statistics.mean(sizes)),
        "kinds": dict(kinds),
        "raw_imaplib": raw.json(),
        "raw_imapclient": client.json(),
        "ingest": ingest_t.json(),
        "raw_replies_per_s": round(rate(m, raw.median), 1),
        "imapclient_replies_per_s": round(rate(m, client.median), 1),
        "ingest_replies_per_s": round(ingest_rate, 1),
        "ratio": round(ratio, 4),
        "imapclient_ratio": round(client_ratio, 4),
        "target_rate": TARGET_RATE,
        "target_ratio": TARGET_RATIO,
        "rate_ok": ingest_rate >= TARGET_RATE,
        "ratio_ok": ratio >= TARGET_RATIO,
        "cpu": cpu_json,
        "outcome": outcome_json,
        "split": split_json,
        "python": sys.version.split()[0],
    }
    print("RESULT " + json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
