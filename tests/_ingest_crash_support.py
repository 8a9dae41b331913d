"""Helpers for test_ingest_crash.py: run the real `mahnwerk ingest`, kill it, look at what it left.

A `Workspace` is a state dir with the sample book, reminders sent by one tick (so that
replies match by In-Reply-To), rules.yaml pointing at one user of a shared Dovecot, and
`replies.acknowledge` on (so a reply also queues a mail to the customer). `ingest` runs
as its own process (`python -m mahnwerk ... ingest`), because it is what gets killed.

`Mails` builds the replies (paid, promise, dispute, question, out-of-office, a DSN of
one of our reminders, a stranger, a malformed message, ...), each with a tag in its
Message-ID so every round of the random kills brings new ones. `check`
says what must hold once an ingest ran to completion: every delivered message recorded
exactly once, filed exactly once, its bytes stored, its notices queued exactly once.
"""

from __future__ import annotations

import fcntl
import hashlib
import imaplib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

import imap_server as loopback_imap
import smtp_server as loopback
from _workspace import ROOT, delivery_status, import_samples, load, smtp_section, write_rules
from mahnwerk import faults, ledger, mailbox, outbox, replies
from mahnwerk.delivery import Tick
from mahnwerk.inbound import parse
from mahnwerk.store import TinyDBStore, journal, messages
from mahnwerk.store.tinydb_store import JOURNAL, LOCK

BERLIN = ZoneInfo("Europe/Berlin")
# The day of the tick that sends the reminders; `ingest` itself reads the real clock.
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=BERLIN)
PASSWORD_ENV = "TEST_IMAP_PASSWORD"
NOTIFY = "forderungen-team@muster-handel.example"
PROCESSED = "Mahnwerk/Processed"
REVIEW = "Mahnwerk/Review"
FOLDERS = ("INBOX", PROCESSED, REVIEW)
# Longer than any ingest here takes, even on a slow, loaded machine.
TIMEOUT = 120.0


def key_of(data: bytes) -> str:
    """The key mahnwerk records a message under: its Message-ID, else the hash of its bytes."""
    return mailbox.key_for(parse(data).message_id, hashlib.sha256(data).hexdigest())


def notice_key(kind: str, key: str) -> str:
    """The outbox key of a reply's notice ("reply": to notify.to; "ack": to the customer).

    Written out here rather than imported (inbox._short): the test must notice if the
    keys stop being a function of the reply's key."""
    return f"notice:{kind}:{hashlib.sha256(key.encode('utf-8')).hexdigest()[:24]}"


# -- the template: the sample book, reminders sent ----------------------------------------


@dataclass(frozen=True)
class Template:
    state: Path
    sent: dict[str, EmailMessage]  # recipient -> our reminder, as the server received it


def make_template(folder: Path, cert: loopback.Certificate) -> Template:
    """A state dir with both sample books imported and the tick of NOW run against a
    loopback SMTP server; the scenarios copy it."""
    with loopback.running(cert) as server:
        rules = write_rules(folder, smtp=smtp_section(server.port), imap=None)
        store = TinyDBStore(folder / "state")
        try:
            import_samples(store, NOW)
            report = Tick(store, load(rules), NOW, environ={}).run()
            assert not report.errors, report.errors
        finally:
            store.close()
        sent = {
            m.rcpt_tos[0]: message_from_bytes(m.data, policy=policy.default)
            for m in server.messages
        }
    assert len(sent) >= 6, sorted(sent)
    return Template(folder / "state", sent)


# -- the replies ---------------------------------------------------------------------------


LATER = "Thu, 26 Nov 2026 09:30:00 +0100"


class Mails:
    """Replies to the template's reminders; `tag` makes each Message-ID (and bytes) unique."""

    def __init__(self, sent: dict[str, EmailMessage]) -> None:
        self.sent = sent

    def reply(
        self,
        to: str,
        body: str,
        message_id: str,
        *,
        sender: str | None = None,
        subject: str | None = None,
        extra: str = "",
    ) -> bytes:
        """A customer's answer to our reminder to `to`, quoting it, as a mail client sends it."""
        ours = self.sent[to]
        head = (
            f"From: {sender or to}\r\n"
            f"To: {ours['Reply-To'] or ours['From']}\r\n"
            f"Subject: {subject or 'AW: ' + str(ours['Subject'])}\r\n"
            f"Date: {LATER}\r\n"
            f"Message-ID: {message_id}\r\n"
            f"In-Reply-To: {ours['Message-ID']}\r\n"
            f"References: {ours['References'] or ''} {ours['Message-ID']}\r\n"
            f"{extra}"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
        )
        plain = ours.get_body(("plain",))
        assert plain is not None, to
        quoted = "\r\n".join("> " + line for line in plain.get_content().splitlines())
        return (head + body.replace("\n", "\r\n") + "\r\n\r\n" + quoted + "\r\n").encode()

    def kinds(self) -> dict[str, Callable[[str], bytes]]:
        """Every kind of message, each a function of the tag."""
        return {
            "paid": self.paid,
            "promise": self.promise,
            "dispute": self.dispute,
            "question": self.question,
            "auto_reply": self.auto_reply,
            "bounce": self.bounce,
            "stranger": self.stranger,
            "malformed": self.malformed,
            "promise_en": self.promise_en,
            "foreign_sender": self.foreign_sender,
            "html_only": self.html_only,
        }

    def paid(self, tag: str) -> bytes:
        return self.reply(
            "facturen@vandijk-logistiek.example",
            "Dear Sir or Madam,\n\nwe paid this invoice yesterday by bank transfer.\n\n"
            "Kind regards",
            f"<paid.{tag}@vandijk-logistiek.example>",
        )

    def promise(self, tag: str) -> bytes:
        return self.reply(
            "buchhaltung@mueller-soehne.example",
            "Sehr geehrte Damen und Herren,\n\nwir werden den Betrag bis zum 10.12. "
            "überweisen.\n\nMit freundlichen Grüßen\nK. Müller",
            f"<promise.{tag}@mueller-soehne.example>",
        )

    def dispute(self, tag: str) -> bytes:
        return self.reply(
            "finanzen@alpenblick-treuhand.example",
            "Guten Tag,\n\ndie Rechnung ist falsch, die Leistung wurde nie erbracht. "
            "Wir widersprechen der Forderung und zahlen nicht.\n\nAlpenblick Treuhand",
            f"<dispute.{tag}@alpenblick-treuhand.example>",
        )

    def question(self, tag: str) -> bytes:
        to = "rechnungen@baeckerei-schroeder.example"
        if to not in self.sent:
            to = sorted(self.sent)[0]
        return self.reply(
            to,
            "Hallo,\n\nkönnen Sie mir bitte eine Kopie der Rechnung schicken? "
            "Wir finden sie nicht.\n\nDanke",
            f"<question.{tag}@baeckerei-schroeder.example>",
        )

    def auto_reply(self, tag: str) -> bytes:
        to = "petra.koehler@cafe-zuckerhut.example"
        return self.reply(
            to,
            "Ich bin bis einschließlich 4.12. nicht im Haus und lese meine E-Mails danach.",
            f"<away.{tag}@cafe-zuckerhut.example>",
            subject="Abwesenheitsnotiz: " + str(self.sent[to]["Subject"]),
            extra="Auto-Submitted: auto-replied\r\n",
        )

    def bounce(self, tag: str) -> bytes:
        return delivery_status(
            self.sent["j.weiss@web.example"],
            recipient="j.weiss@web.example",
            message_id=f"<bounce.{tag}@mx.example>",
            date=LATER,
        )

    def stranger(self, tag: str) -> bytes:
        return (
            "From: someone@unrelated.example\r\nTo: forderungen@muster-handel.example\r\n"
            f"Subject: Frage\r\nDate: {LATER}\r\n"
            f"Message-ID: <stranger.{tag}@unrelated.example>\r\n\r\n"
            "Koennen Sie mir ein Angebot schicken?\r\n"
        ).encode()

    def malformed(self, tag: str) -> bytes:
        """No Message-ID (recorded by the hash of its bytes), an unreadable Date, a
        header of raw Latin-1, a charset nobody knows, and a multipart whose closing
        boundary never comes."""
        return (
            b"From: =?utf-8?q?kaputt?= <<broken@@example>\r\n"
            b"To: forderungen@muster-handel.example\r\n"
            b"Subject: Rechnung \xfcberwiesen =?bogus?x?zzz?=\r\n"
            b"Date: the day before yesterday\r\n"
            b"MIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="never-closed"\r\n\r\n'
            b"--never-closed\r\n"
            b"Content-Type: text/plain; charset=x-no-such-charset\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            b"this is not base64 !!! " + tag.encode() + b"\r\n"
            b"--never-closed\r\n"
            b"Content-Type: text/html\r\n\r\n"
            b"<p>unterminated <b>html\r\n"
        )

    def promise_en(self, tag: str) -> bytes:
        return self.reply(
            "accounts@thornbury-consulting.example",
            "Hello,\n\nwe will pay the outstanding amount by 15 December 2026.\n\nBest regards",
            f"<promise-en.{tag}@thornbury-consulting.example>",
        )

    def foreign_sender(self, tag: str) -> bytes:
        """In-Reply-To one of our reminders, from an address that is not the customer's."""
        return self.reply(
            "payables@harbourfinch.example",
            "We paid this invoice last week.",
            f"<foreign.{tag}@gmail.example>",
            sender="somebody@gmail.example",
        )

    def html_only(self, tag: str) -> bytes:
        ours = self.sent["ap@northgate-logistics.example"]
        return (
            "From: ap@northgate-logistics.example\r\n"
            f"To: {ours['Reply-To'] or ours['From']}\r\n"
            f"Subject: RE: {ours['Subject']}\r\nDate: {LATER}\r\n"
            f"Message-ID: <html.{tag}@northgate-logistics.example>\r\n"
            f"In-Reply-To: {ours['Message-ID']}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            "<html><body><p>We have paid the invoice today, please check.</p>"
            "<blockquote>Dear customer =E2=80=94 reminder</blockquote></body></html>\r\n"
        ).encode()


def duplicate_with_other_bytes(data: bytes) -> bytes:
    """The same message as a second delivery path gives it: one more Received line."""
    return b"Received: from relay.example by mx.example; " + LATER.encode() + b"\r\n" + data


# -- the workspace ---------------------------------------------------------------------------


def child_env(crash: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STATE_DIRECTORY", faults.ENV)}
    env[PASSWORD_ENV] = loopback_imap.PASSWORD
    if crash is not None:
        env[faults.ENV] = crash
    return env


@dataclass
class Workspace:
    """A state dir and rules.yaml reading the INBOX of `user` on a shared Dovecot."""

    config: Path
    state: Path
    imap: loopback_imap.LoopbackImap
    user: str
    _read: int = 0
    _recorded: Counter[str] = field(default_factory=Counter)

    @classmethod
    def create(
        cls, folder: Path, imap: loopback_imap.LoopbackImap, user: str, template: Template
    ) -> Workspace:
        if user not in imap.users:
            imap.add_user(user, loopback_imap.PASSWORD)
        settings = imap.settings(password_env=PASSWORD_ENV, username=user)
        section = settings.model_dump(exclude_defaults=True)
        section.pop("sent_folder", None)
        shipped = yaml.safe_load((ROOT / "rules.yaml").read_text(encoding="utf-8"))
        config = write_rules(
            folder,
            smtp=smtp_section(9),  # ingest sends nothing
            imap=section,
            notify={"to": NOTIFY, "language": "de"},
            replies={**shipped["replies"], "acknowledge": True},
        )
        state = folder / "state"
        shutil.copytree(template.state, state)
        return cls(config, state, imap, user)

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mahnwerk",
            "--config",
            str(self.config),
            "--state-dir",
            str(self.state),
            "ingest",
            "--json",
        ]

    def ingest(self, crash: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(), env=child_env(crash), capture_output=True, text=True, timeout=TIMEOUT
        )

    def start(self) -> subprocess.Popen[str]:
        # Its report is not read: a full stdout pipe would stop it before the kill.
        return subprocess.Popen(
            self.argv(),
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def deliver(self, data: bytes) -> int:
        """APPEND one message to the INBOX; its UID."""
        return self.imap.deliver("INBOX", data, user=self.user)

    def deliver_all(self, datas: list[bytes]) -> None:
        """APPEND messages to the INBOX over one connection (a login costs ~50 ms)."""
        with self.imap.imap(self.user) as conn:
            for data in datas:
                typ, resp = conn.append("INBOX", None, None, data)
                assert typ == "OK", resp

    def folder(self, name: str) -> list[loopback_imap.Stored]:
        return self.imap.messages(name, user=self.user)

    def stored(self) -> set[str]:
        """The hashes of the files in state/messages."""
        folder = self.state / messages.MESSAGES
        return {p.stem for p in folder.glob("*.eml")} if folder.is_dir() else set()

    @contextmanager
    def store_locked(self) -> Iterator[None]:
        """Hold the store's lock: an ingest then waits at its commit, after it stored the
        raw messages, until it gives up (lock_timeout, 60 s) or is killed."""
        fd = os.open(self.state / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def events(self) -> list[dict[str, Any]]:
        """Every committed event of the journal, in order (a torn tail is not committed)."""
        units, _ = journal.read_from(self.state / JOURNAL, 0)
        return [event for unit in units for _, event in unit.events]

    def recorded(self) -> Counter[str]:
        """How many mail_received events the journal has for each key (read on from where
        the last call stopped: the journal only grows, and a torn tail is cut before the
        next unit is written where the committed ones end)."""
        units, self._read = journal.read_from(self.state / JOURNAL, self._read)
        for unit in units:
            for _, e in unit.events:
                if e["type"] == mailbox.MAIL_RECEIVED:
                    self._recorded[e["data"]["key"]] += 1
        return Counter(self._recorded)

    def committed(self) -> int:
        """Where the journal's last committed unit ends (every batch commits its cursor)."""
        self.recorded()
        return self._read


class Peek:
    """One IMAP connection kept open to look into a user's folders and fill its INBOX:
    a login costs ~50 ms, and the random rounds look many times."""

    def __init__(self, imap: loopback_imap.LoopbackImap, user: str) -> None:
        self._conn = imaplib.IMAP4(imap.host, imap.port, timeout=30)
        password = imap.users[user]
        self._conn.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())

    def close(self) -> None:
        self._conn.logout()

    def deliver(self, datas: list[bytes]) -> None:
        for data in datas:
            typ, resp = self._conn.append("INBOX", None, None, data)
            assert typ == "OK", resp

    def messages(self, folder: str) -> list[bytes]:
        """The messages of `folder`, read without changing any (EXAMINE, BODY.PEEK)."""
        typ, resp = self._conn.select(f'"{folder}"', readonly=True)
        assert typ == "OK", resp
        if resp[0] == b"0":
            return []
        typ, resp = self._conn.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert typ == "OK", resp
        # imaplib gives each message as (text up to the literal, literal), then ")".
        items: list[Any] = list(resp)
        return [bytes(item[1]) for item in items if isinstance(item, tuple)]


class SessionLog:
    """Dovecot's log, read on from `mark()`: whether `user` logged in or out since then.

    How the random rounds see an ingest's IMAP session begin and end: its login (after
    ~0.8 s of start-up) and its logout (~30 ms later: fetch, parse, store, commit, move).
    """

    def __init__(self, imap: loopback_imap.LoopbackImap, user: str) -> None:
        self._file = imap.log.open("rb")
        self._login = f"Login: user=<{user}>".encode()
        self._logout = f"imap({user})".encode()
        self._seen = b""

    def close(self) -> None:
        self._file.close()

    def mark(self) -> None:
        self._file.seek(0, os.SEEK_END)
        self._seen = b""

    def _read(self) -> bytes:
        self._seen += self._file.read()
        return self._seen

    def logged_in(self) -> bool:
        return self._login in self._read()

    def logged_out(self) -> bool:
        return any(
            self._logout in line and b"Logged out" in line for line in self._read().splitlines()
        )


def kill_when(child: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    """SIGKILL `child` once `ready()` holds (polled); it must not exit first."""
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        assert child.poll() is None, f"ingest exited with {child.returncode} before the kill"
        assert time.monotonic() < deadline, "the kill's moment never came"
        time.sleep(0.002)
    # Not reaped yet: even if it exits right now, the pid is still its own.
    os.kill(child.pid, signal.SIGKILL)


# -- what must hold --------------------------------------------------------------------------


@dataclass
class Checked:
    """What `check` saw, for the scenarios' own assertions."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    notices: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> outbox entry
    folders: dict[str, Counter[str]] = field(default_factory=dict)


def check(ws: Workspace, delivered: list[bytes], where: str) -> Checked:
    """After an ingest that ran to completion: nothing lost, nothing twice, nothing left.

    - one mail_received in the journal per distinct key delivered, and no other;
    - each matched invoice has exactly one reply_received per reply key, and only for
      the invoices its record names;
    - the INBOX is empty; every delivered copy is in exactly one of the processed and
      review folders, the one its record names, as often as it was delivered;
    - the raw bytes of every filed message are stored under state/messages/<sha256>.eml;
    - the notices (to notify.to, and acknowledgements to the customer) queued exactly
      once in the journal, each with its stored .eml, for exactly the replies whose row
      of the table (replies.ACTIONS) asks for one and that no gate sent to review.
    """
    delivered_keys = Counter(key_of(d) for d in delivered)
    recorded = ws.recorded()
    twice = {k: n for k, n in recorded.items() if n != 1}
    assert not twice, f"{where}: recorded more than once: {twice}"
    lost = set(delivered_keys) - set(recorded)
    assert not lost, f"{where}: delivered, never recorded: {sorted(lost)}"
    stray = set(recorded) - set(delivered_keys)
    assert not stray, f"{where}: recorded, never delivered: {sorted(stray)}"

    result = Checked()
    store = TinyDBStore(ws.state)
    try:
        view = store.view()
        result.records = {r["key"]: r for r in view.received_all()}
        assert set(result.records) == set(recorded), where
        replies_seen: Counter[tuple[str, str]] = Counter()
        for number in view.numbers():
            for event in store.thread(number):
                if event.type == ledger.REPLY_RECEIVED:
                    replies_seen[number, event.data["key"]] += 1
        entries = {e.key: e for e in view.entries()}
    finally:
        store.close()
    twice_in_thread = {k: n for k, n in replies_seen.items() if n != 1}
    assert not twice_in_thread, f"{where}: reply_received more than once: {twice_in_thread}"
    expected_threads = {(n, k) for k, r in result.records.items() for n in r["invoices"]}
    assert set(replies_seen) == expected_threads, (
        f"{where}: threads {sorted(set(replies_seen) ^ expected_threads)}"
    )

    # The folders.
    for name in FOLDERS:
        result.folders[name] = Counter()
    for name in FOLDERS:
        for stored in ws.folder(name):
            key = key_of(stored.data)
            result.folders[name][key] += 1
            sha = hashlib.sha256(stored.data).hexdigest()
            path = messages.path_of(ws.state, sha)
            assert path.exists(), f"{where}: {key} in {name}: its bytes are not in {path}"
            assert path.read_bytes() == stored.data, f"{where}: {path} differs from the mail"
    assert not result.folders["INBOX"], f"{where}: left in INBOX: {result.folders['INBOX']}"
    filed = result.folders[PROCESSED] + result.folders[REVIEW]
    assert filed == delivered_keys, (
        f"{where}: filed {dict(filed - delivered_keys)} too often, "
        f"{dict(delivered_keys - filed)} too rarely"
    )
    for key, record in result.records.items():
        assert record["state"] in (replies.PROCESSED, replies.REVIEW), (where, record)
        target = REVIEW if record["state"] == replies.REVIEW else PROCESSED
        assert record["target"] == target, f"{where}: {key}: {record['state']} -> {target}"
        assert result.folders[target][key] == delivered_keys[key], (
            f"{where}: {key} ({record['state']}) not (all) in {target}: "
            f"{ {n: c[key] for n, c in result.folders.items()} }"
        )
        sha = record["sha256"]
        assert hashlib.sha256(messages.get(ws.state, sha)).hexdigest() == sha, where

    # The notices: queued exactly once each, and only for the replies that want one.
    queued = Counter(
        e["data"]["key"]
        for e in ws.events()
        if e["type"] == outbox.QUEUED and e["data"]["kind"] == "notice"
    )
    twice_queued = {k: n for k, n in queued.items() if n != 1}
    assert not twice_queued, f"{where}: notices queued more than once: {twice_queued}"
    wanted: dict[str, str] = {}
    for key, record in result.records.items():
        action = replies.ACTIONS[record["label"]]
        # The table's action, unless a gate sent the reply to review (replies.decide).
        if record["reason"].startswith("review: "):
            continue
        if action.notify:
            wanted[notice_key("reply", key)] = NOTIFY
        if action.acknowledge and record["invoices"]:
            wanted[notice_key("ack", key)] = ""  # to the customer
    assert set(queued) == set(wanted), (
        f"{where}: notices missing {sorted(set(wanted) - set(queued))}, "
        f"unexpected {sorted(set(queued) - set(wanted))}"
    )
    for key, to in wanted.items():
        entry = entries[key]
        assert entry.kind == "notice", (where, entry)
        if to:
            assert entry.to == to, (where, entry)
        else:
            assert entry.to != NOTIFY, (where, entry)
        data = messages.get(ws.state, entry.eml)
        assert hashlib.sha256(data).hexdigest() == entry.eml, where
        result.notices[key] = {"to": entry.to, "subject": entry.subject, "state": entry.state}
    return result


def summary(records: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """key -> (label, state, invoices): what a run made of each message."""
    return {k: (r["label"], r["state"], tuple(sorted(r["invoices"]))) for k, r in records.items()}
