"""`mahnwerk demo`: eight weeks of dunning in seconds, with no server but our own.

The README's first command. It runs the production code paths end to end (planner,
outbox, SMTP, ingestion, classifier, the reply table) on the shipped rules, templates
and sample invoices, and replaces only the outside world:

- the mail provider is a real SMTP server (aiosmtpd) on 127.0.0.1, in this process;
- the customers are a script (`SCRIPT`): after a given reminder arrives they answer
  (a promise, a dispute, "paid", an out-of-office, a bounce) or stay silent; their
  mails are written into a local Maildir (maildir.py), which ingestion reads in place
  of IMAP;
- the accounting system is a CSV export that marks paid what the script pays;
- the calendar is simulated: one `Tick` per weekday at the send window's opening,
  with `now` passed in, never read from the clock.

The workspace (rules.yaml, templates, samples, the store, the Maildir) is kept in a new
folder, so that every `mahnwerk` command can be run on it afterwards.
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from mahnwerk.calendar import SendCalendar
from mahnwerk.config import LoadedRules, load_rules
from mahnwerk.csvparse import parse_invoices
from mahnwerk.delivery import Tick, TickReport
from mahnwerk.importer import import_events
from mahnwerk.inbox import Mailbox
from mahnwerk.maildir import Maildir
from mahnwerk.models import EMPTY_HISTORY, History, Invoice
from mahnwerk.resources import SHIPPED, shipped_root
from mahnwerk.store import open_store
from mahnwerk.store.tinydb_store import TinyDBStore

# The day the samples were made for (samples/README.md), a Wednesday.
START = date(2026, 11, 25)
WEEKS = 8
# The thread printed in full at the end: a promise, kept, and the export that shows it.
THREAD = "RE-2026-0431"
SAMPLE_FILES = ("invoices-de.csv", "invoices-en.csv")
# Folders of the local mailbox, as an IMAP account would have them.
PROCESSED = "Mahnwerk/Processed"
REVIEW = "Mahnwerk/Review"
# Never resolved (RFC 2606): the imap: section only has to exist, the Maildir is read.
IMAP_HOST = "maildir.invalid"
LOOPBACK = "127.0.0.1"

Kind = Literal["reply", "out_of_office", "bounce"]


@dataclass(frozen=True, slots=True)
class Answer:
    """One customer's part in the script: what they send once a reminder reaches them."""

    customer_id: str
    after: str  # the stage of our mail that prompts it
    days: int  # calendar days after that mail arrived
    at: str  # the time it arrives that day, HH:MM (it is read at the next tick)
    kind: Kind
    body: str = ""
    # Invoices the accounting export shows as paid, and how many days after the answer.
    pays: tuple[str, ...] = ()
    pays_after: int = 0


# What the customers write, in their own words (and languages).
PROMISE_DE = (
    "Sehr geehrte Damen und Herren,\n\n"
    "entschuldigen Sie die Verzögerung. Wir werden den Betrag bis zum 10.12. überweisen.\n\n"
    "Mit freundlichen Grüßen\nKarin Müller\nBuchhaltung, Müller & Söhne KG"
)
DISPUTE_DE = (
    "Guten Tag,\n\n"
    "die Rechnung ist falsch, die Leistung wurde nie vollständig erbracht. "
    "Wir widersprechen der Forderung und zahlen nicht.\n\n"
    "Freundliche Grüße\nAlpenblick Treuhand AG"
)
PAID_EN = (
    "Dear Sir or Madam,\n\n"
    "we paid this invoice yesterday by bank transfer.\n\n"
    "Kind regards\nPieter van Dijk\nVan Dijk Logistiek B.V."
)
AWAY_DE = (
    "Vielen Dank für Ihre Nachricht. Ich bin bis einschließlich 4.12. nicht im Haus "
    "und lese meine E-Mails danach.\n\nPetra Köhler\nCafé Zuckerhut"
)
PROMISE_EN = (
    "Hello,\n\n"
    "apologies for the delay. We will pay both invoices by 18 December.\n\n"
    "Best regards\nOliver Grant\nThornbury Consulting Ltd"
)

# Who answers which of our mails, how and when; every other customer stays silent and
# goes through the stages to the hand-off.
SCRIPT: tuple[Answer, ...] = (
    # Promises the 10th, and the export of 8 December shows it paid.
    Answer("K-1001", "reminder_1", 2, "10:12", "reply", PROMISE_DE, ("RE-2026-0431",), 11),
    Answer("K-1004", "reminder_1", 1, "15:40", "reply", DISPUTE_DE),
    # Says it has paid; the next export confirms it.
    Answer("K-1007", "reminder_1", 1, "11:05", "reply", PAID_EN, ("RE-2026-0426",), 4),
    Answer("K-1010", "reminder_1", 0, "09:01", "out_of_office", AWAY_DE),
    # The address does not exist: the customer's server returns a DSN.
    Answer("K-1006", "reminder_1", 0, "09:02", "bounce"),
    # Promises the 18th and does not pay: a follow-up, then the stages go on.
    Answer("C-2001", "reminder_1", 3, "16:30", "reply", PROMISE_EN),
)


# -- the provider: an SMTP server on loopback --------------------------------------------


@dataclass
class _Provider:
    """aiosmtpd hooks: accept every mail and keep its bytes, as the provider would send."""

    received: list[tuple[str, bytes]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.original_content is not None
        with self._lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append((rcpt, envelope.original_content))
            queue_id = f"D{len(self.received):05d}"
        return f"250 2.0.0 Ok: queued as {queue_id}"

    def since(self, start: int) -> list[tuple[str, bytes]]:
        with self._lock:
            return self.received[start:]


class _Controller(Controller):
    """Listens on any free port (0): no clash with a real server or a second demo."""

    def _trigger_server(self) -> None:
        # aiosmtpd connects to itself to check it is up: it must know the real port first.
        server = self.server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@contextmanager
def _provider() -> Iterator[tuple[_Provider, int]]:
    handler = _Provider()
    controller = _Controller(handler, hostname=LOOPBACK, port=0, server_hostname="mx.demo")
    controller.start()
    try:
        yield handler, int(controller.port)
    finally:
        controller.stop()


# -- the workspace -----------------------------------------------------------------------


def make_workspace(folder: Path, smtp_port: int) -> Path:
    """The shipped rules, templates and samples (as `mahnwerk init` writes them), with
    smtp: pointed at the loopback server and an imap: section for the local Maildir."""
    root = shipped_root()
    for name in SHIPPED:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, folder / name)
    path = folder / "rules.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["smtp"] = {
        "host": LOOPBACK,
        "port": smtp_port,
        "security": "none",
        # The loopback server takes any rate; a provider's limit would only slow the run.
        "rate_per_minute": 10_000,
    }
    data["imap"] = {
        "host": IMAP_HOST,
        "security": "none",
        "folder": "INBOX",
        "processed_folder": PROCESSED,
        "review_folder": REVIEW,
    }
    head = (
        "# The shipped rules.yaml as `mahnwerk demo` ran it: smtp points at its loopback\n"
        "# server (gone now), and replies were read from maildir/ here in place of imap.\n"
    )
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    path.write_text(head + text, encoding="utf-8")
    return path


def import_file(store: TinyDBStore, path: Path, now: datetime) -> int:
    """What `mahnwerk import FILE` does; the number of invoices new or changed."""
    parsed = parse_invoices(path.read_bytes(), str(path))
    if parsed.errors:
        raise ValueError(f"{path}: {parsed.errors[0]}")
    with store.transaction() as tx:
        existing = {inv.number: inv for inv in tx.view.invoices()}
        summary = import_events(
            existing, parsed.invoices, source=path.name, open_items=False, now=now
        )
        tx.add_all(summary.events)
    return summary.new + summary.updated


def write_export(workspace: Path, paid: set[str], day: date) -> list[Path]:
    """The accounting system's export of `day`: the sample files, with the invoices paid
    so far marked paid in full (status and paid_amount, as a real export has them)."""
    out = []
    for name in SAMPLE_FILES:
        text = (workspace / "samples" / name).read_text(encoding="utf-8-sig")
        delimiter = ";" if text.split("\n", 1)[0].count(";") else ","
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
        header = rows[0]
        number, amount = header.index("invoice_number"), header.index("amount")
        paid_amount, status = header.index("paid_amount"), header.index("status")
        changed = False
        for row in rows[1:]:
            if row and row[number] in paid:
                row[paid_amount], row[status] = row[amount], "paid"
                changed = True
        if not changed:
            continue
        target = workspace / "exports" / f"{day.isoformat()}-{name}"
        target.parent.mkdir(exist_ok=True)
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerows(rows)
        target.write_text(buffer.getvalue(), encoding="utf-8")
        out.append(target)
    return out


# -- the customers' mail -----------------------------------------------------------------


def answer_mail(answer: Answer, ours: EmailMessage, when: datetime, message_id: str) -> bytes:
    """The customer's mail in answer to `ours`, as their mail client (or server) writes it:
    In-Reply-To our Message-ID, References, our reminder quoted below their words."""
    if answer.kind == "bounce":
        return _bounce(ours, when, message_id)
    subject = str(ours["Subject"])
    english = ours["Content-Language"] == "en"
    headers = [
        f"From: {ours['To']}",
        f"To: {ours['Reply-To'] or ours['From']}",
        f"Subject: {('RE: ' if english else 'AW: ') + subject}",
        f"Date: {format_datetime(when)}",
        f"Message-ID: {message_id}",
        f"In-Reply-To: {ours['Message-ID']}",
        f"References: {' '.join(str(r) for r in (ours['References'], ours['Message-ID']) if r)}",
    ]
    if answer.kind == "out_of_office":
        headers[2] = f"Subject: Abwesenheitsnotiz: {subject}"
        headers.append("Auto-Submitted: auto-replied")
    sent = ours["Date"].datetime if ours["Date"] is not None else when
    intro = (
        f"On {sent:%d %b %Y}, {ours['From']} wrote:"
        if english
        else f"Am {sent:%d.%m.%Y} schrieb {ours['From']}:"
    )
    quoted = "\n".join("> " + line for line in _plain(ours).split("\n"))
    return _wire(
        "\n".join(headers)
        + "\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
        + "Content-Transfer-Encoding: 8bit\n\n"
        + f"{answer.body}\n\n{intro}\n{quoted}\n"
    )


def _bounce(ours: EmailMessage, when: datetime, message_id: str) -> bytes:
    """A DSN (RFC 3464) from the customer's server, returning our reminder's headers."""
    to = str(ours["To"].addresses[0].addr_spec)
    mx = "mx." + to.rpartition("@")[2]
    return _wire(
        f"From: Mail Delivery System <MAILER-DAEMON@{mx}>\n"
        f"To: {ours['Reply-To'] or ours['From']}\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        f"Date: {format_datetime(when)}\n"
        f"Message-ID: {message_id}\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="DSN"\n\n'
        "--DSN\nContent-Type: text/plain; charset=us-ascii\n\n"
        f"This is the mail system at host {mx}.\n\n"
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients.\n\n"
        f"<{to}>: 550 5.1.1 Recipient address rejected: User unknown\n\n"
        "--DSN\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; {mx}\n\n"
        f"Final-Recipient: rfc822; {to}\n"
        "Action: failed\n"
        "Status: 5.1.1\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{to}>: Recipient address rejected: User unknown\n\n"
        "--DSN\nContent-Type: text/rfc822-headers\n\n"
        f"From: {ours['From']}\n"
        f"To: {ours['To']}\n"
        f"Subject: {ours['Subject']}\n"
        f"Message-ID: {ours['Message-ID']}\n\n"
        "--DSN--\n"
    )


def _plain(ours: EmailMessage) -> str:
    body = ours.get_body(("plain",))
    return str(body.get_content()) if body is not None else ""


def _wire(text: str) -> bytes:
    """CRLF line endings, as mail travels."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


# -- the simulation ----------------------------------------------------------------------


@dataclass(order=True, frozen=True, slots=True)
class _Arrival:
    """A customer's mail on its way: it lands in the Maildir once `at` has passed."""

    at: datetime
    customer_id: str
    data: bytes = field(compare=False)


class Simulation:
    """The calendar, the customers and the accounting system around the real service.

    `day` runs one weekday: the export first (a night's payment run), then the mail that
    arrived since the last tick lands in the Maildir, then one `Tick` at the send window's
    opening, then the customers read what the provider got and answer per the script.
    """

    def __init__(
        self,
        workspace: Path,
        store: TinyDBStore,
        loaded: LoadedRules,
        provider: _Provider,
        maildir: Maildir,
        *,
        script: Sequence[Answer] = SCRIPT,
        say: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.workspace = workspace
        self.store = store
        self.loaded = loaded
        self.provider = provider
        self.maildir = maildir
        self.script = {a.customer_id: a for a in script}
        self.say = say
        self.calendar = SendCalendar(loaded.rules.send_window, loaded.rules.company.tz)
        self.arriving: list[_Arrival] = []
        self.payments: list[tuple[date, tuple[str, ...]]] = []
        self.paid: set[str] = set()
        self.answered: set[str] = set()  # customers whose answer is on its way
        self.ticks = 0
        self.replies = 0
        self.errors: list[str] = []
        self._seen = 0  # provider messages already read by the customers
        self._names: dict[str, str] = {}
        self._blocked: set[str] = set()

    def day(self, day: date) -> TickReport:
        now = self.calendar.opening(day)
        self._export(day, now)
        self._land(now)
        mailbox: Mailbox = self.maildir
        report = Tick(
            self.store, self.loaded, now, environ={}, mailbox_factory=lambda: mailbox
        ).run()
        self.ticks += 1
        self.replies += len(report.ingest.lines) if report.ingest is not None else 0
        self.errors += [f"{day}: {e}" for e in report.errors]
        self._tell(day, report)
        self._answer(now)
        return report

    def _export(self, day: date, now: datetime) -> None:
        due = [numbers for when, numbers in self.payments if when <= day]
        if not due:
            return
        self.payments = [(when, n) for when, n in self.payments if when > day]
        fresh = {n for numbers in due for n in numbers} - self.paid
        self.paid |= fresh
        files = write_export(self.workspace, self.paid, day)
        for path in files:
            import_file(self.store, path, now)
        where = ", ".join(f"exports/{path.name}" for path in files)
        self.say(f"{day}  accounting export: {', '.join(sorted(fresh))} paid ({where})")

    def _land(self, now: datetime) -> None:
        while self.arriving and self.arriving[0].at <= now:
            mail = self.arriving.pop(0)
            self.maildir.deliver(mail.data, when=mail.at)

    def _answer(self, now: datetime) -> None:
        """The customers read the mail the provider took today and answer per the script."""
        new = self.provider.since(self._seen)
        self._seen += len(new)
        if not new:
            return
        ours = {e.message_id: e for e in self.store.view().entries()}
        for rcpt, data in new:
            mail = message_from_bytes(data, policy=policy.default)
            assert isinstance(mail, EmailMessage)
            entry = ours.get(str(mail["Message-ID"]))
            if entry is None or entry.kind != "reminder":
                continue  # notices go to our own people, who are not in the script
            answer = self.script.get(entry.customer_id)
            if answer is None or answer.after != entry.stage or entry.customer_id in self.answered:
                continue
            day = now.date() + timedelta(days=answer.days)
            at = datetime.combine(day, clock_time.fromisoformat(answer.at), tzinfo=now.tzinfo)
            domain = rcpt.rpartition("@")[2]
            message_id = f"<demo.{entry.customer_id.lower()}.{day:%Y%m%d}@{domain}>"
            self.answered.add(entry.customer_id)
            self.arriving.append(
                _Arrival(at, entry.customer_id, answer_mail(answer, mail, at, message_id))
            )
            self.arriving.sort()
            if answer.pays:
                self.payments.append((day + timedelta(days=answer.pays_after), answer.pays))

    def _tell(self, day: date, report: TickReport) -> None:
        """A line for what a person would want to hear of: replies, hand-offs, follow-ups."""
        view = self.store.view()
        histories = view.histories()
        blocked = set(view.undeliverable())
        newly_blocked = ", ".join(sorted(blocked - self._blocked))
        self._blocked = blocked
        if report.ingest is not None:
            for line in report.ingest.lines:
                holds = [h.hold for n in line.invoices if (h := histories.get(n)) and h.hold]
                facts = {
                    "until": holds[0].until if holds else None,
                    "promised": holds[0].promised if holds else None,
                    "address": newly_blocked,
                }
                who = self.names.get(_customer_of(view, line.invoices), line.sender)
                self.say(f"{day}  {who}: {_effect(line.label, line.state, facts)}")
        for step in report.steps:
            said = SENT_NEWS.get(step.stage) if step.result == "sent" else None
            entry = view.entry(step.key)
            if said and entry is not None:
                who = self.names.get(step.customer_id, step.customer_id)
                self.say(f"{day}  {who}: {', '.join(entry.numbers)} {said}")

    @property
    def names(self) -> dict[str, str]:
        """customer_id -> "Name (id)", for the story lines."""
        if not self._names:
            self._names = {
                inv.customer_id: f"{inv.customer_name} ({inv.customer_id})"
                for inv in self.store.view().invoices()
            }
        return self._names


# What a reply did, by label; a fact missing (None) falls back to FALLBACK_EFFECT.
EFFECTS: dict[str, str] = {
    "promise": "promises to pay by {promised} → paused until {until}",
    "paid": "says it has paid → held until {until} for the payment to show in an export",
    "auto_reply": "out-of-office → paused until {until}",
    "dispute": "disputes the claim → Mahnstopp, a person is mailed the reply",
    "bounce": "bounce → address {address} undeliverable, a person is mailed",
}
FALLBACK_EFFECT = "{label} → {state}"
# Mails sent that are news in the story (the stages themselves are in the table).
SENT_NEWS: dict[str, str] = {
    "escalate": "handed off to a person (a notice to notify.to)",
    "broken_promise": "promise not kept → a follow-up mail",
}


def _effect(label: str, state: str, facts: dict[str, Any]) -> str:
    """The story line for one reply: its label's row, filled with what the service did."""
    if state != "processed":  # review or duplicate: the table's effects did not apply
        return f"{label or 'mail'} → {state}"
    known = {k: v for k, v in facts.items() if v not in (None, "")}
    try:
        return EFFECTS.get(label, FALLBACK_EFFECT).format(label=label, state=state, **known)
    except KeyError:  # a fact the row names is missing (an out-of-office without a date)
        return FALLBACK_EFFECT.format(label=label, state=state)


def _customer_of(view: Any, numbers: Sequence[str]) -> str:
    for n in numbers:
        inv = view.invoice(n)
        if inv is not None:
            return str(inv.customer_id)
    return ""


# -- what happened -----------------------------------------------------------------------


def invoice_state(inv: Invoice, history: History, blocked: set[str], today: date) -> str:
    """Where one invoice stands, the most decisive fact first."""
    if inv.status != "open":
        return inv.status
    if history.stop:
        return "Mahnstopp (disputed)"
    if "escalate" in history.sent_names():
        return "handed off to a person"
    if inv.email.casefold() in blocked:
        return "open, address undeliverable"
    hold = history.hold
    if hold is not None and hold.until is not None and hold.until >= today:
        return f"paused until {hold.until} ({hold.kind or 'a person'})"
    last = history.last_stage()
    return f"open, {last} sent" if last else "open, nothing due yet"


def summary_table(store: TinyDBStore, today: date) -> Table:
    """One row per invoice, grouped by customer: the stages sent, the replies read (by the
    classifier's label), where the invoice stands."""
    view = store.view()
    histories = view.histories()
    blocked = set(view.undeliverable())
    labels: dict[str, list[str]] = defaultdict(list)
    for record in sorted(view.received_all(), key=lambda r: str(r.get("at", ""))):
        for number in record.get("invoices") or ():
            labels[number].append(str(record.get("label", "?")))
    table = Table(header_style="bold", pad_edge=False, box=box.SIMPLE_HEAD)
    table.add_column("customer", no_wrap=True, max_width=30, overflow="ellipsis")
    for title in ("invoice", "sent", "replies", "now"):
        table.add_column(title)
    previous = ""
    for inv in sorted(view.invoices(), key=lambda i: (i.customer_id, i.due_date, i.number)):
        history = histories.get(inv.number, EMPTY_HISTORY)
        table.add_row(
            "" if inv.customer_id == previous else f"{inv.customer_id} {inv.customer_name}",
            inv.number,
            ", ".join(s.stage for s in history.sent) or "-",
            ", ".join(labels[inv.number]) or "-",
            invoice_state(inv, history, blocked, today),
        )
        previous = inv.customer_id
    return table


def thread_lines(store: TinyDBStore, invoice: str) -> list[str]:
    """As `mahnwerk thread INVOICE` prints it."""
    return [
        f"{e.at.isoformat(timespec='seconds')}  {e.type:<16} {e.reason}"
        for e in store.thread(invoice)
    ]


# -- the command -------------------------------------------------------------------------


def _new_workspace(directory: Path | None) -> Path:
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="mahnwerk-demo-"))
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty: the demo writes only into a new folder")
    directory.mkdir(parents=True, exist_ok=True)
    return directory.resolve()


def run(
    directory: Path | None = None,
    *,
    weeks: int = WEEKS,
    thread: str = THREAD,
    console: Console | None = None,
) -> int:
    """The whole demo; 0 if every tick went through without an error."""
    out = console or Console(highlight=False)
    if not out.is_terminal:
        out.width = max(out.width, 120)  # a log is read later, not in an 80-column window
    started = time.monotonic()  # only for the "took" line: the simulation never reads it
    workspace = _new_workspace(directory)
    days = weeks * 7
    last = START + timedelta(days=days - 1)
    with _provider() as (provider, port):
        config = make_workspace(workspace, port)
        store = open_store(workspace / "state")
        try:
            loaded = load_rules(config)
            sim = Simulation(workspace, store, loaded, provider, Maildir(workspace / "maildir"))
            imported = sum(
                import_file(store, workspace / "samples" / name, sim.calendar.opening(START))
                for name in SAMPLE_FILES
            )
            _say(
                out,
                f"mahnwerk demo: {weeks} weeks from {START:%a %Y-%m-%d} in seconds, on the "
                f"shipped rules and templates and {imported} sample invoices of "
                f"{len(sim.names)} customers.\n"
                f"  workspace  {workspace} (kept)\n"
                f"  provider   an SMTP server (aiosmtpd) on {LOOPBACK}:{port}, in this process\n"
                f"  replies    {workspace / 'maildir'}, a Maildir read in place of IMAP\n",
            )
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("days"),
                console=out,
                transient=True,
            ) as bar:
                sim.say = lambda line: _say(bar.console, line)
                task = bar.add_task("", total=days)
                for offset in range(days):
                    day = START + timedelta(days=offset)
                    if day.weekday() < 5:  # the service runs on weekdays, holidays included
                        sim.day(day)
                    bar.update(task, advance=1, description=f"{day:%a %Y-%m-%d}")
            _say(out, f"Where every customer stands on {last:%a %Y-%m-%d}:")
            out.print(summary_table(store, last))
            if thread in store.view():
                _say(out, f"\nThe whole thread of {thread}, as `mahnwerk thread` prints it:")
                _say(out, "\n".join(thread_lines(store, thread)))
            else:
                _say(out, f"\nno invoice {thread!r}, so no thread to show")
        finally:
            store.close()
    mw = f"{_command()} --config {config} --state-dir {workspace / 'state'}"
    _say(
        out,
        f"\n{sim.ticks} ticks, {len(provider.received)} mails through the SMTP server, "
        f"{sim.replies} replies read, in {time.monotonic() - started:.1f} s.\n"
        f"The workspace is kept: look around with\n"
        f"  {mw} thread INV-2026-1187\n"
        f"  {mw} outbox --all\n"
        f"and remove it with: rm -rf {workspace}",
    )
    for error in sim.errors:
        out.print(f"error: {error}", markup=False, style="red")
    return 1 if sim.errors else 0


def _say(out: Console, text: str) -> None:
    """Plain text, never wrapped: paths and thread lines must stay whole to be copied."""
    out.print(text, markup=False, highlight=False, soft_wrap=True)


def _command() -> str:
    """How the user runs mahnwerk afterwards: the script beside this Python (a venv's, which
    scripts/demo.sh put on PATH only for itself), else from PATH, else as a module."""
    script = Path(sys.executable).parent / "mahnwerk"
    if script.exists():
        return str(script)
    return "mahnwerk" if shutil.which("mahnwerk") else f"{sys.executable} -m mahnwerk"
