"""One cycle of `mahnwerk tick`: read replies, reconcile, tidy, plan, queue, deliver, record.

The imperative shell around the planner and the outbox. It decides nothing on
its own: the planner says what is due, outbox.py says what every step and every
server answer means, and this module carries it out in this order, each step a
unit of work in the journal:

0. read the replies (inbox.py), so that a promise or a dispute holds today's mail;
1. reconcile mails a crash left in "sending" (Sent folder lookup, else on_unknown);
2. cancel waiting mails that went out of date (paid, amount or address changed);
3. plan, render and queue each new mail: its .eml first (content-addressed),
   then the outbox entry and its invoices' "queued" events in one unit;
4. deliver what is due over one SMTP connection: the attempt is recorded after
   the server's 354 and before the first byte of the message, and the answer
   (with the invoices' "sent" events) in the unit after it.

So after a kill at any instruction: a mail without an attempt record never
reached the server and is sent on the next tick; one with an attempt record and
no answer is reconciled (step 1); one with its answer is done. Nothing is sent
twice by accident, and nothing is lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mahnwerk import message, outbox
from mahnwerk.config import LoadedRules
from mahnwerk.faults import crash_point
from mahnwerk.ledger import ESCALATED
from mahnwerk.models import Event, Invoice
from mahnwerk.outbox import Entry
from mahnwerk.outcome import Outcome
from mahnwerk.plan_types import Plan, PlannedReminder
from mahnwerk.planning import plan_from_store
from mahnwerk.render import Renderer, RenderError
from mahnwerk.smtp import SendStopped, SmtpConnectError, SmtpSession, password
from mahnwerk.store import messages, secret
from mahnwerk.store.base import StoreError
from mahnwerk.store.tinydb_store import TinyDBStore

if TYPE_CHECKING:
    from mahnwerk.inbox import IngestReport, Mailbox

log = logging.getLogger(__name__)

TICK_LOCK = "tick.lock"
# key -> whether the Sent folder has the entry's Message-ID; raises if it cannot tell.
SentLookup = Callable[[Sequence[Entry]], Mapping[str, bool]]
# Files a copy of a sent mail in the Sent folder (imap.append_sent).
Filer = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class _Built:
    """A mail rendered and built, not yet stored or queued."""

    reminder: PlannedReminder
    kind: outbox.Kind
    to: str
    message_id: str
    subject: str
    data: bytes


class _Withdrawn(Exception):
    """The mail stopped being due while the tick was on its way to sending it."""


class TickBusy(StoreError):
    """Another tick is running on this state directory."""


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the tick's report: what happened to one mail, and why."""

    key: str
    customer_id: str
    stage: str
    to: str
    result: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "customer_id": self.customer_id,
            "stage": self.stage,
            "to": self.to,
            "result": self.result,
            "detail": self.detail,
        }


@dataclass
class TickReport:
    now: datetime
    window_open: bool = True
    window_note: str = ""
    steps: list[Step] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ingest: IngestReport | None = None

    def count(self, result: str) -> int:
        return sum(1 for s in self.steps if s.result == result)

    def to_json(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "window_open": self.window_open,
            "window_note": self.window_note,
            "steps": [s.to_json() for s in self.steps],
            "errors": list(self.errors),
            "replies": self.ingest.to_json() if self.ingest is not None else None,
        }


@contextlib.contextmanager
def tick_lock(state_dir: Path) -> Iterator[None]:
    """One tick at a time: two would both see the same queued mail as due."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(state_dir / TICK_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise TickBusy(f"another tick (pid {holder}) is running on {state_dir}") from None
        os.pwrite(fd, f"{os.getpid():<20}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


class Tick:
    """Carries out one cycle; see the module docstring for the order and why."""

    def __init__(
        self,
        store: TinyDBStore,
        loaded: LoadedRules,
        now: datetime,
        *,
        environ: Mapping[str, str],
        sent_lookup: SentLookup | None = None,
        filer: Filer | None = None,
        session_factory: Callable[[], SmtpSession] | None = None,
        wall_clock: Callable[[], float] = time.time,
        ingest: bool = True,
        mailbox_factory: Callable[[], Mailbox] | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.loaded = loaded
        self.rules = loaded.rules
        self.now = now
        self.environ = environ
        self.sent_lookup = sent_lookup
        self.filer = filer
        self.session_factory = session_factory
        self.wall_clock = wall_clock
        self.ingest = ingest
        self.mailbox_factory = mailbox_factory
        # Asked between mails: a stopping service finishes the mail in flight, no more.
        self.stop = stop
        self.report = TickReport(now)
        self.state_dir = store.dir
        self._secret = secret.load_or_create(self.state_dir)
        self._domain = message.sender_domain(self.rules.company.sender)
        self._renderer = Renderer(loaded.templates_dir, self.rules)
        self._mail_from = _addr_spec(self.rules.company.sender)

    def run(self) -> TickReport:
        with tick_lock(self.state_dir):
            if self.ingest and self.rules.imap is not None:
                self.read_replies()
            self.reconcile()
            self.tidy()
            result = self.plan()
            self.report.window_open = result.window_open
            self.report.window_note = result.window_note
            self.queue(result.reminders)
            if result.window_open:
                self.deliver()
        return self.report

    # -- 0. replies -------------------------------------------------------------------

    def read_replies(self) -> None:
        """Replies first, so that a dispute or a promise that came in stops today's mail.

        A mailbox that cannot be read is reported and the tick goes on: a server down for
        days must not stop every reminder; what arrived is read on the next tick.
        """
        # Here, not at the top: a tick without imap: (and every other command) does not
        # load the classifier and the mail parser.
        from mahnwerk.imap import ImapError
        from mahnwerk.inbox import Ingest

        try:
            self.report.ingest = Ingest(
                self.store,
                self.loaded,
                self.now,
                self.environ,
                session_factory=self.mailbox_factory,
            ).run()
        except (ImapError, OSError) as exc:
            self.report.errors.append(f"replies not read: {exc}")
            return
        self.report.errors += self.report.ingest.errors

    # -- 1. reconcile ------------------------------------------------------------

    def reconcile(self) -> None:
        stuck = outbox.in_states(self.store.view().entries(), ("sending",))
        if not stuck:
            return
        found: Mapping[str, bool] = {}
        if self.sent_lookup is not None:
            try:
                found = self.sent_lookup(stuck)
            except Exception as exc:  # the folder cannot tell now; ask again next tick
                self.report.errors.append(f"Sent folder lookup failed, will try again: {exc}")
                return
        on_unknown = self.rules.outbox.on_unknown
        for entry in stuck:
            with self.store.transaction() as tx:
                current = tx.view.entry(entry.key)
                if current is None or current.state != "sending":
                    continue
                events = outbox.reconcile(
                    current, found.get(entry.key), now=self.now, on_unknown=on_unknown
                )
                tx.add_all(events)
            self._note(entry, events)

    # -- 2. tidy -----------------------------------------------------------------

    def tidy(self) -> None:
        with self.store.transaction() as tx:
            view = tx.view
            waiting = [e for e in view.entries() if e.state in outbox.OPEN_STATES]
            if not waiting:
                return
            current: dict[str, Invoice] = {}
            for e in waiting:
                for n in e.numbers:
                    inv = view.invoice(n)
                    if inv is not None:
                        current[n] = inv
            events = outbox.housekeeping(waiting, current, self.now)
            tx.add_all(events)
        by_key = {e.key: e for e in waiting}
        for ev in events:
            if ev.type == outbox.CANCELLED:
                self._step(by_key[ev.data["key"]], "cancelled", ev.reason)

    # -- 3. plan and queue -------------------------------------------------------

    def plan(self) -> Plan:
        return plan_from_store(self.store, self.rules, self.now)

    def queue(self, reminders: Sequence[PlannedReminder]) -> None:
        if not reminders:
            return
        view = self.store.view()
        entries = view.entries()
        states = {e.key: e.state for e in entries}
        earlier = self._earlier_ids(entries)
        built: list[_Built] = []
        direct: list[Event] = []
        for r in reminders:
            if r.key in states:
                if states[r.key] != "cancelled":
                    continue  # queued before: a second tick the same day adds nothing
                # Cancelled as out of date and planned again the same day: a new entry.
                r = replace(r, key=_free_key(r.key, states))
            try:
                if r.action == "escalate" and (self.rules.notify is None or r.template is None):
                    direct += self._hand_off_unmailed(r)
                    continue
                built.append(self._build(r, earlier.get(r.customer_id, [])))
            except (RenderError, ValueError) as exc:
                self.report.errors.append(f"{r.key}: not queued: {exc}")
                self.report.steps.append(
                    Step(r.key, r.customer_id, r.stage, r.to, "error", str(exc))
                )
        if not built and not direct:
            return
        # The .eml files first, durable, so that no entry ever names a missing file.
        hashes = messages.put_many(self.state_dir, [b.data for b in built])
        units = [
            outbox.queue(
                b.reminder,
                kind=b.kind,
                to=b.to,
                message_id=b.message_id,
                eml=sha,
                subject=b.subject,
                now=self.now,
            )
            for b, sha in zip(built, hashes, strict=True)
        ]
        # One unit for the whole batch: one fsync, and the batch is queued whole or not at all.
        with self.store.transaction() as tx:
            fresh = {e.key for e in tx.view.entries()}
            for events in units:
                if events[0].data["key"] not in fresh:
                    tx.add_all(events)
            tx.add_all(direct)
        for events in units:
            head = events[0]
            self.report.steps.append(
                Step(
                    head.data["key"],
                    head.data["customer_id"],
                    head.data["stage"],
                    head.data["to"],
                    "queued",
                    head.reason,
                )
            )
        crash_point("queued")

    def _earlier_ids(self, entries: Sequence[Entry]) -> dict[str, list[str]]:
        """Message-IDs of the reminders each customer got, oldest first (for References)."""
        sent = sorted(
            (e for e in entries if e.kind == "reminder" and e.state == "sent"),
            key=lambda e: (e.queued_at, e.key),
        )
        out: dict[str, list[str]] = defaultdict(list)
        for e in sent:
            out[e.customer_id].append(e.message_id)
        return out

    def _build(self, r: PlannedReminder, previous: list[str]) -> _Built:
        kind: outbox.Kind = "reminder"
        to = r.to
        mailed = r
        rendered_for = r
        if r.action == "escalate":
            notify = self.rules.notify
            assert notify is not None
            kind = "notice"
            rendered_for = replace(r, language=notify.language)
            mailed = replace(rendered_for, to=_addr_spec(notify.to), customer_name=_name(notify.to))
            to = mailed.to
            previous = []
        rendered = self._renderer.render(rendered_for, r.planned_day)
        own_id = message.message_id(self._secret, r.key, self._domain)
        data = message.build(
            rendered,
            mailed,
            self.rules,
            message_id=own_id,
            thread_token=message.thread_token(self._secret, r.customer_id, self._domain),
            previous_ids=previous,
            date=self.now,
        )
        return _Built(r, kind, to, own_id, rendered.subject, data)

    def _hand_off_unmailed(self, r: PlannedReminder) -> list[Event]:
        why = (
            "no notify address in rules.yaml"
            if self.rules.notify is None
            else f"stage {r.stage} has no template"
        )
        reason = f"{r.stage}: handed off to a person ({why}; this thread is the notice): {r.reason}"
        self.report.steps.append(Step(r.key, r.customer_id, r.stage, "", "escalated", reason))
        return [
            Event(
                n,
                ESCALATED,
                self.now,
                f"{reason}: {r.reason}",
                {"stage": r.stage, "mail_key": r.key},
            )
            for n in r.invoice_numbers
        ]

    # -- 4. deliver --------------------------------------------------------------

    def deliver(self) -> None:
        ready = outbox.due(self.store.view().entries(), self.now)
        if not ready:
            return
        settings = self.rules.smtp
        if settings is None:
            self.report.errors.append(
                f"{len(ready)} mail(s) waiting, but rules.yaml has no smtp: section"
            )
            return
        session = (
            self.session_factory()
            if self.session_factory is not None
            else SmtpSession(settings, password(settings, self.environ))
        )
        try:
            for i, entry in enumerate(ready):
                if self.stop():
                    log.info("stopping: %d mail(s) left for the next tick", len(ready) - i)
                    return
                try:
                    self._deliver_one(session, entry)
                except SendStopped:
                    log.info("stopping: %d mail(s) left for the next tick", len(ready) - i)
                    return
                except SmtpConnectError as exc:
                    # Nothing of this mail reached the server; the rest would fare no better.
                    self.report.errors.append(str(exc))
                    for left in ready[i:]:
                        self._record(left.key, Outcome("temporary", None, str(exc)))
                    return
        finally:
            self.store.sync()
            session.close()

    def _deliver_one(self, session: SmtpSession, entry: Entry) -> None:
        data = messages.get(self.state_dir, entry.eml)

        def before_payload() -> None:
            with self.store.transaction() as tx:
                current = tx.view.entry(entry.key)
                if current is None or current.state not in outbox.TRANSITIONS[outbox.ATTEMPT][0]:
                    # A person cancelled it (`mahnwerk outbox cancel`) since the tick began.
                    raise _Withdrawn(current.state if current else "gone")
                tx.add_all(outbox.attempt(current, self.now))
            crash_point("attempt")

        try:
            outcome = session.send(data, self._mail_from, [entry.to], before_payload)
        except _Withdrawn as exc:
            self._step(entry, "skipped", f"not sent: it is {exc} now")
            return
        if outcome.kind == "accepted":
            crash_point("accepted")
        self._record(entry.key, outcome)
        if outcome.kind == "accepted" and self.filer is not None:
            try:
                self.filer(data)
            except Exception as exc:  # the mail is sent; a missing copy is only reported
                self.report.errors.append(f"{entry.key}: sent, but not filed in Sent: {exc}")

    def _record(self, key: str, outcome: Outcome) -> None:
        """The server's answer, in its own unit at once: the window in which the server has a
        mail we have not recorded is as short as it can be (kill -9 tests).

        Written without its own fsync: the next mail's attempt unit (or the end of the
        batch) makes it durable.  A killed process keeps it either way; a power cut in
        between leaves the mail "sending", which reconciles as unknown, never as unsent.
        """
        settings = self.rules.smtp
        assert settings is not None
        with self.store.transaction(durable=False) as tx:
            entry = tx.view.entry(key)
            if entry is None:
                raise StoreError(f"{key} vanished from the outbox")
            events = outbox.after_outcome(
                entry,
                outcome,
                now=self.now,
                accepted_at=datetime.fromtimestamp(self.wall_clock(), UTC),
                retry_for=timedelta(hours=settings.retry_for_hours),
                on_unknown=self.rules.outbox.on_unknown,
            )
            if outcome.kind == "accepted" and entry.to.casefold() in tx.view.undeliverable():
                # A person retried a refused mail and the server took it: the address works.
                events.append(
                    Event(
                        "",
                        outbox.ADDRESS_CLEARED,
                        self.now,
                        f"{entry.to} accepted again",
                        {"email": entry.to, "key": entry.key},
                    )
                )
            tx.add_all(events)
        crash_point("recorded")
        self._note(entry, events)

    # -- the report ----------------------------------------------------------------

    def _note(self, entry: Entry, events: Sequence[Event]) -> None:
        head = events[0]
        result = outbox.TRANSITIONS[head.type][1]
        if head.type == outbox.CONFIRMED:
            result = "confirmed"
        elif head.type == outbox.RELEASED:
            result = "released"
        self._step(entry, result, head.reason)

    def _step(self, entry: Entry, result: str, detail: str) -> None:
        self.report.steps.append(
            Step(entry.key, entry.customer_id, entry.stage, entry.to, result, detail)
        )


def _free_key(key: str, taken: Mapping[str, str]) -> str:
    n = 2
    while f"{key}~{n}" in taken:
        n += 1
    return f"{key}~{n}"


def _addr_spec(value: str) -> str:
    return parseaddr(value)[1] or value


def _name(value: str) -> str:
    return parseaddr(value)[0]
