"""Replies end to end: reminders out over a loopback SMTP server, customers' answers into a
real Dovecot, `Ingest` reads, matches, classifies, acts and files them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

import imap_server as loopback_imap
import smtp_server as loopback
from _workspace import delivery_status, import_samples, load, smtp_section, write_rules
from mahnwerk import ledger
from mahnwerk.delivery import Tick
from mahnwerk.inbox import Ingest
from mahnwerk.store import TinyDBStore

smtp_server = loopback.smtp_server
imap_server = loopback_imap.imap_server

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=BERLIN)
LATER = datetime(2026, 11, 26, 9, 30, tzinfo=BERLIN)
ENV = {"TEST_IMAP_PASSWORD": loopback_imap.PASSWORD}
NOTIFY = "forderungen-team@muster-handel.example"
PROCESSED = "Mahnwerk/Processed"
REVIEW = "Mahnwerk/Review"


@dataclass
class World:
    store: TinyDBStore
    rules_path: Path
    smtp: loopback.LoopbackSmtp
    imap: loopback_imap.LoopbackImap
    sent: dict[str, Any]  # recipient -> our parsed reminder

    def ingest(self, now: datetime = LATER) -> Any:
        return Ingest(self.store, load(self.rules_path), now, ENV).run()

    def tick(self, now: datetime) -> Any:
        return Tick(self.store, load(self.rules_path), now, environ=ENV).run()


@pytest.fixture
def world(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp, imap_server: loopback_imap.LoopbackImap
) -> Iterator[World]:
    settings = imap_server.settings(password_env="TEST_IMAP_PASSWORD")
    imap = settings.model_dump(exclude_defaults=True)
    imap.pop("sent_folder", None)
    rules_path = write_rules(
        tmp_path,
        smtp=smtp_section(smtp_server.port),
        imap=imap,
        notify={"to": NOTIFY, "language": "de"},
    )
    store = TinyDBStore(tmp_path / "state")
    import_samples(store, NOW)
    w = World(store, rules_path, smtp_server, imap_server, {})
    report = w.tick(NOW)
    assert not report.errors, report.errors
    for m in smtp_server.messages:
        parsed = message_from_bytes(m.data, policy=policy.default)
        w.sent[m.rcpt_tos[0]] = parsed
    assert len(w.sent) >= 6, sorted(w.sent)
    yield w
    store.close()


def reply(
    ours: Any,
    body: str,
    *,
    sender: str | None = None,
    subject: str | None = None,
    extra: str = "",
    message_id: str,
) -> bytes:
    """A customer's answer to one of our reminders, as their mail client would send it."""
    frm = sender or str(ours["To"].addresses[0].addr_spec)
    head = (
        f"From: {frm}\r\n"
        f"To: {ours['Reply-To'] or ours['From']}\r\n"
        f"Subject: {subject or 'AW: ' + str(ours['Subject'])}\r\n"
        f"Date: {format_datetime(LATER)}\r\n"
        f"Message-ID: {message_id}\r\n"
        f"In-Reply-To: {ours['Message-ID']}\r\n"
        f"References: {ours['References']} {ours['Message-ID']}\r\n"
        f"{extra}"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    )
    lines = ours.get_body(("plain",)).get_content().split("\n")
    quoted = "\r\n".join("> " + line for line in lines)
    return (head + body.replace("\n", "\r\n") + "\r\n\r\n" + quoted + "\r\n").encode("utf-8")


def thread_types(store: TinyDBStore, invoice: str) -> list[str]:
    return [e.type for e in store.thread(invoice)]


def reply_event(store: TinyDBStore, invoice: str) -> Any:
    found = [e for e in store.thread(invoice) if e.type == ledger.REPLY_RECEIVED]
    assert found, thread_types(store, invoice)
    return found[-1]


def test_replies_are_matched_classified_acted_on_and_filed(world: World) -> None:
    w, imap = world, world.imap
    mueller = w.sent["buchhaltung@mueller-soehne.example"]
    alpen = w.sent["finanzen@alpenblick-treuhand.example"]
    vandijk = w.sent["facturen@vandijk-logistiek.example"]
    cafe = w.sent["petra.koehler@cafe-zuckerhut.example"]
    imap.deliver(
        "INBOX",
        reply(
            mueller,
            "Sehr geehrte Damen und Herren,\n\nwir werden den Betrag bis zum 10.12. überweisen.\n\n"
            "Mit freundlichen Grüßen\nK. Müller",
            message_id="<r1@mueller-soehne.example>",
        ),
    )
    imap.deliver(
        "INBOX",
        reply(
            alpen,
            "Guten Tag,\n\ndie Rechnung ist falsch, die Leistung wurde nie erbracht. "
            "Wir widersprechen der Forderung und zahlen nicht.\n\nAlpenblick Treuhand",
            message_id="<r2@alpenblick-treuhand.example>",
        ),
    )
    imap.deliver(
        "INBOX",
        reply(
            vandijk,
            "Dear Sir or Madam,\n\nwe paid this invoice yesterday by bank transfer."
            "\n\nKind regards",
            message_id="<r3@vandijk-logistiek.example>",
        ),
    )
    imap.deliver(
        "INBOX",
        reply(
            cafe,
            "Ich bin bis einschließlich 4.12. nicht im Haus und lese meine E-Mails danach.",
            subject="Abwesenheitsnotiz: " + str(cafe["Subject"]),
            extra="Auto-Submitted: auto-replied\r\n",
            message_id="<r4@cafe-zuckerhut.example>",
        ),
    )
    stranger = (
        b"From: someone@unrelated.example\r\nTo: forderungen@muster-handel.example\r\n"
        b"Subject: Frage\r\nDate: Thu, 26 Nov 2026 08:00:00 +0100\r\n"
        b"Message-ID: <s1@unrelated.example>\r\n\r\nKoennen Sie mir ein Angebot schicken?\r\n"
    )
    imap.deliver("INBOX", stranger)

    report = w.ingest()

    assert not report.errors, report.errors
    by_key = {line.key: line for line in report.lines}
    assert set(by_key) == {
        "<r1@mueller-soehne.example>",
        "<r2@alpenblick-treuhand.example>",
        "<r3@vandijk-logistiek.example>",
        "<r4@cafe-zuckerhut.example>",
        "<s1@unrelated.example>",
    }
    assert by_key["<r1@mueller-soehne.example>"].label == "promise"
    assert by_key["<r2@alpenblick-treuhand.example>"].label == "dispute"
    assert by_key["<r3@vandijk-logistiek.example>"].label == "paid"
    assert by_key["<r4@cafe-zuckerhut.example>"].label == "auto_reply"
    assert by_key["<s1@unrelated.example>"].state == "review"

    view = w.store.view()
    histories = view.histories()
    # Promise: paused until the promised day plus grace, with the promise kept.
    hold = histories["RE-2026-0431"].hold
    assert hold is not None and hold.kind == "promise"
    assert hold.promised is not None and hold.promised.isoformat() == "2026-12-10"
    assert hold.until is not None and hold.until.isoformat() == "2026-12-13"
    # Dispute: Mahnstopp.
    assert histories["RE-2026-0277"].stop is not None
    # Paid: held for the import to confirm.
    paid_hold = histories["RE-2026-0426"].hold
    assert paid_hold is not None and paid_hold.kind == "paid"
    # Every matched reply is in its invoice's thread, with how it matched and why.
    event = reply_event(w.store, "RE-2026-0426")
    assert event.data["match"]["how"] == "message_id"
    assert event.data["label"] == "paid"
    assert event.data["reasons"]
    assert "paid" in event.reason
    # The quoted reminder did not leak into what was kept of the customer's words.
    assert "IBAN" not in event.data["text"]

    # Filed only after the commit: the inbox is empty, the stranger waits in review.
    assert imap.messages("INBOX") == []
    assert len(imap.messages(PROCESSED)) == 4
    assert len(imap.messages(REVIEW)) == 1
    assert [r["key"] for r in view.review_queue()] == ["<s1@unrelated.example>"]

    # A person is mailed the dispute, through the outbox; the stranger only waits in review.
    notices = [e for e in view.entries() if e.kind == "notice" and e.to == NOTIFY]
    assert [e.subject for e in notices] == [
        "Einspruch: Alpenblick Treuhand AG (K-1004), Rechnung RE-2026-0277"
    ]

    # A second pass finds nothing new.
    again = w.ingest()
    assert again.lines == [] and again.moved == 0

    # The same mail delivered twice is filed, not processed twice.
    imap.deliver("INBOX", imap.messages(PROCESSED)[0].data)
    dup = w.ingest()
    assert [line.state for line in dup.lines] == ["duplicate"]
    assert imap.messages("INBOX") == []
    assert thread_types(w.store, "RE-2026-0426").count(ledger.REPLY_RECEIVED) == 1


def test_the_next_tick_sends_the_notices_and_no_reminder_to_who_answered(world: World) -> None:
    w = world
    mueller = w.sent["buchhaltung@mueller-soehne.example"]
    w.imap.deliver(
        "INBOX",
        reply(
            mueller,
            "Die Lieferung war unvollständig, daher zahlen wir nicht.",
            message_id="<d1@mueller-soehne.example>",
        ),
    )
    before = len(w.smtp.messages)
    report = w.tick(datetime(2026, 12, 9, 9, 0, tzinfo=BERLIN))
    assert report.ingest is not None and [m.label for m in report.ingest.lines] == ["dispute"]
    new = w.smtp.messages[before:]
    assert NOTIFY in {m.rcpt_tos[0] for m in new}
    # The disputed invoice is under Mahnstopp; another one of the customer's may go on.
    to_mueller = [m.data for m in new if m.rcpt_tos[0] == "buchhaltung@mueller-soehne.example"]
    assert not any(b"RE-2026-0431" in data for data in to_mueller)
    notice = next(m for m in new if m.rcpt_tos[0] == NOTIFY)
    body = message_from_bytes(notice.data, policy=policy.default).get_body(("plain",))
    assert "Lieferung war unvollständig" in body.get_content()


def test_a_bounce_blocks_the_address(world: World) -> None:
    w = world
    ours = w.sent["j.weiss@web.example"]
    dsn = delivery_status(
        ours,
        recipient="j.weiss@web.example",
        message_id="<bounce1@mx.example>",
        date=format_datetime(LATER),
    )
    w.imap.deliver("INBOX", dsn)
    report = w.ingest()
    assert [(m.label, m.state) for m in report.lines] == [("bounce", "processed")]
    assert "j.weiss@web.example" in w.store.view().undeliverable()
    assert reply_event(w.store, "RE-2026-0440").data["match"]["how"] in ("bounce", "message_id")


def test_a_broken_promise_is_followed_up_once(world: World) -> None:
    w = world
    mueller = w.sent["buchhaltung@mueller-soehne.example"]
    w.imap.deliver(
        "INBOX",
        reply(mueller, "Wir überweisen bis zum 10.12.", message_id="<p1@mueller-soehne.example>"),
    )
    w.ingest()

    def to_mueller(since: int) -> list[Any]:
        return [
            message_from_bytes(m.data, policy=policy.default)
            for m in w.smtp.messages[since:]
            if m.rcpt_tos[0] == "buchhaltung@mueller-soehne.example"
        ]

    before = len(w.smtp.messages)
    # Paused through the promised day plus three days' grace (until 13 December).
    w.tick(datetime(2026, 12, 11, 9, 0, tzinfo=BERLIN))
    assert not any("0431" in str(m["Subject"]) for m in to_mueller(before))
    before = len(w.smtp.messages)
    w.tick(datetime(2026, 12, 14, 9, 0, tzinfo=BERLIN))
    follow = to_mueller(before)
    assert [str(m["Subject"]) for m in follow] == ["Ihre Zahlungszusage: Rechnung RE-2026-0431"]
    text = follow[0].get_body(("plain",)).get_content()
    assert "bis zum 10. Dezember 2026" in text
    # Once: the next tick days later goes on with the regular stages, not another follow-up.
    before = len(w.smtp.messages)
    w.tick(datetime(2026, 12, 15, 9, 0, tzinfo=BERLIN))
    assert all("Zahlungszusage" not in str(m["Subject"]) for m in to_mueller(before))


def _where(w: World) -> list[str]:
    return ["--config", str(w.rules_path), "--state-dir", str(w.store.dir)]


def mw(w: World, *args: str, code: int = 0) -> str:
    """The real command line on the world's rules and state."""
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
    env.update(ENV)
    proc = subprocess.run(
        [sys.executable, "-m", "mahnwerk", *_where(w), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == code, proc.stderr
    return proc.stdout


def test_the_human_loop_on_the_command_line(world: World, tmp_path: Path) -> None:
    w = world
    schroeder = w.sent["rechnungen@baeckerei-schroeder.example"]
    w.imap.deliver(
        "INBOX",
        reply(
            schroeder,
            "Koennen Sie uns die Rechnung bitte noch einmal als PDF schicken?",
            message_id="<q1@baeckerei-schroeder.example>",
        ),
    )
    out = json.loads(mw(w, "ingest", "--json"))
    assert [(m["label"], m["state"]) for m in out["messages"]] == [("question", "review")]
    queue = json.loads(mw(w, "review", "--json"))
    assert [r["key"] for r in queue] == ["<q1@baeckerei-schroeder.example>"]
    invoice = queue[0]["invoices"][0]

    # A person answered the question; the customer promised on the phone.
    mw(w, "resolve", invoice, "--as", "promise", "--date", "2026-12-20", "--note", "Telefon")
    assert json.loads(mw(w, "review", "--json")) == []
    hold = w.store.view().histories()[invoice].hold
    assert hold is not None and hold.kind == "promise" and str(hold.until) == "2026-12-23"
    thread = mw(w, "thread", invoice)
    assert "reply_received" in thread and "resolved by a person as promise (Telefon)" in thread

    mw(w, "resume", invoice)
    assert w.store.view().histories()[invoice].hold is None
    mw(w, "pause", invoice, "--reason", "Ratenplan", "--until", "2027-01-31")
    hold = w.store.view().histories()[invoice].hold
    assert hold is not None and str(hold.until) == "2027-01-31"
    mw(w, "pause", invoice, "--reason", "x", "--until", "31.01.2027", code=2)
    mw(w, "resolve", "NO-SUCH", "--as", "paid", code=1)

    # classify stores nothing and prints one JSON object per file.
    eml = tmp_path / "r.eml"
    eml.write_bytes(
        reply(schroeder, "Wir zahlen bis 10.12.", message_id="<c1@baeckerei-schroeder.example>")
    )
    before = w.store.view().received_all()
    row = json.loads(mw(w, "classify", str(eml), "--json"))
    assert row["label"] == "promise" and row["promised_date"] == "2026-12-10"
    assert set(row) == {
        "file",
        "label",
        "confidence",
        "promised_date",
        "paid_date",
        "amount",
        "invoice_refs",
        "reasons",
    }
    assert w.store.view().received_all() == before


def test_acknowledgements_go_to_the_customer_when_switched_on(world: World) -> None:
    w = world
    data = yaml.safe_load(w.rules_path.read_text(encoding="utf-8"))
    data["replies"]["acknowledge"] = True
    w.rules_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    mueller = w.sent["buchhaltung@mueller-soehne.example"]
    w.imap.deliver(
        "INBOX",
        reply(mueller, "Wir zahlen bis zum 10.12.", message_id="<a1@mueller-soehne.example>"),
    )
    w.ingest()
    acks = [e for e in w.store.view().entries() if e.key.startswith("notice:ack:")]
    assert [(e.to, e.subject) for e in acks] == [
        ("buchhaltung@mueller-soehne.example", "Ihre Zahlungszusage: Rechnung RE-2026-0431")
    ]
    before = len(w.smtp.messages)
    w.tick(LATER)
    sent = [m for m in w.smtp.messages[before:] if m.rcpt_tos[0] == acks[0].to]
    assert len(sent) == 1
    body = message_from_bytes(sent[0].data, policy=policy.default).get_body(("plain",))
    assert "10. Dezember 2026" in body.get_content()
    # It answers the customer's mail, in their thread.
    assert "<a1@mueller-soehne.example>" in str(
        message_from_bytes(sent[0].data, policy=policy.default)["In-Reply-To"]
    )
