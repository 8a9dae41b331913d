"""One pass over the reply folder: fetch, store, parse, match, classify, decide, commit, move.

The imperative shell of the incoming side. It decides nothing itself: `inbound.parse`
reads the bytes, `matching.match` finds the invoices, `classify.classify` labels the
reply, `replies.decide` says what that does. This module carries it out in an order
that survives a kill at any instruction:

1. the raw bytes of each new message are stored first, content-addressed (a message
   is never lost because parsing or anything after it failed);
2. one unit of work per batch records every message (`mail_received`, keyed by its
   Message-ID), its invoices' events, the notices to people (as outbox entries, sent
   by the next delivery), and the folder's cursor (UIDVALIDITY, last UID);
3. only then are the messages moved to the processed or review folder.

A kill before 2 leaves the messages in the folder: the next pass processes them (their
bytes are already stored, by the same hash). A kill between 2 and 3 leaves them in the
folder too, but recorded: the next pass only moves them. A message whose key is known
(the same mail delivered twice, or a new UIDVALIDITY) is moved, never processed again.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from mahnwerk import mailbox, message, outbox, replies
from mahnwerk.classify import CLASSIFIER_VERSION, classify
from mahnwerk.config import LoadedRules
from mahnwerk.faults import crash_point
from mahnwerk.imap import FolderState, ImapSession
from mahnwerk.inbound import parse
from mahnwerk.inbound_types import Classification, InboundMail
from mahnwerk.matching import Match, MatchIndex, Sent, build_index, match
from mahnwerk.models import Event, Invoice
from mahnwerk.plan_types import PlannedItem, PlannedReminder
from mahnwerk.render import Renderer, RenderError
from mahnwerk.rules import Imap
from mahnwerk.smtp import password
from mahnwerk.store import messages, secret
from mahnwerk.store.tinydb_store import TinyDBStore

log = logging.getLogger(__name__)
# mail-parser logs every MIME part type it does not know and every header it cannot decode
# (quoting customer text); the defects of a
# mail are recorded in its thread instead.
logging.getLogger("mailparser").setLevel(logging.CRITICAL)

# A pass with at least this many new mails parses and classifies them in worker processes.
PARALLEL_FROM = 32
MAX_WORKERS = 4
# Messages fetched and committed together: one fsync per batch, and a kill redoes at
# most one batch (its results were not committed, so nothing is done twice).
BATCH = 100
NOTICE_TEMPLATE = "reply_notice"
# Labels a person is mailed about (the table in replies.py says which).
LABEL_NAMES = {
    "de": {
        "paid": "Zahlung gemeldet",
        "promise": "Zahlungszusage",
        "dispute": "Einspruch",
        "question": "Rückfrage",
        "auto_reply": "Automatische Antwort",
        "bounce": "Unzustellbar",
        "other": "Sonstiges",
    },
    "en": {
        "paid": "Payment reported",
        "promise": "Promise to pay",
        "dispute": "Dispute",
        "question": "Question",
        "auto_reply": "Automatic reply",
        "bounce": "Undeliverable",
        "other": "Other",
    },
}


class Mailbox(Protocol):
    """What a pass needs of the mailbox: ImapSession, or a local stand-in (the demo)."""

    def open_folder(self, folder: str) -> FolderState: ...

    def uids(self) -> list[int]: ...

    def fetch(self, uids: list[int]) -> dict[int, bytes]: ...

    def move(self, uids: list[int], folder: str) -> None: ...

    def ensure_folder(self, folder: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Line:
    """One message of the pass, for the CLI."""

    key: str
    uid: int
    sender: str
    subject: str
    label: str
    confidence: float
    state: str  # processed | review | duplicate
    invoices: tuple[str, ...]
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "uid": self.uid,
            "from": self.sender,
            "subject": self.subject,
            "label": self.label,
            "confidence": self.confidence,
            "state": self.state,
            "invoices": list(self.invoices),
            "reason": self.reason,
        }


@dataclass
class IngestReport:
    folder: str = ""
    lines: list[Line] = field(default_factory=list)
    moved: int = 0
    errors: list[str] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(1 for line in self.lines if line.state == state)

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "messages": [line.to_json() for line in self.lines],
            "moved": self.moved,
            "errors": self.errors,
        }


@dataclass(frozen=True, slots=True)
class _Done:
    """One message's result, before the batch is committed."""

    uid: int
    key: str
    sha256: str
    events: list[Event]
    notices: list[tuple[PlannedReminder, bytes, str, str]]  # mail, bytes, Message-ID, subject
    target: str | None
    line: Line


class Ingest:
    """One pass; the caller holds the tick lock (delivery.tick_lock)."""

    def __init__(
        self,
        store: TinyDBStore,
        loaded: LoadedRules,
        now: datetime,
        environ: Mapping[str, str],
        *,
        session_factory: Callable[[], Mailbox] | None = None,
    ) -> None:
        self.store = store
        self.rules = loaded.rules
        self.now = now
        self.environ = environ
        self.session_factory = session_factory
        self.report = IngestReport()
        self.state_dir = store.dir
        self._secret = secret.load_or_create(self.state_dir)
        self._domain = message.sender_domain(self.rules.company.sender)
        self._renderer = Renderer(loaded.templates_dir, self.rules)
        self._tz = ZoneInfo(self.rules.company.timezone)
        self._analyser = Analyser((), parallel=False)

    @property
    def settings(self) -> Imap:
        if self.rules.imap is None:
            raise ValueError("rules.yaml has no imap: section, so there is no mailbox to read")
        return self.rules.imap

    def run(self) -> IngestReport:
        """One pass. A session from `session_factory` stays open (the caller's, e.g. the
        watcher's, which waits in IDLE on it next); one made here is closed."""
        settings = self.settings
        if self.session_factory is not None:
            self._pass(self.session_factory(), settings)
            return self.report
        session = ImapSession(settings, password(settings, self.environ))
        try:
            self._pass(session, settings)
        finally:
            session.close()
        return self.report

    # -- the pass --------------------------------------------------------------------

    def _pass(self, session: Mailbox, settings: Imap) -> None:
        for target in (settings.processed_folder, settings.review_folder):
            if target:
                session.ensure_folder(target)
        state = session.open_folder(settings.folder)
        self.report.folder = settings.folder
        view = self.store.view()
        cursor = view.cursor(settings.folder)
        last = (
            int(cursor["uid"])
            if cursor is not None and cursor["uidvalidity"] == state.uidvalidity
            else 0
        )
        known = view.received_by_uid()
        moves: dict[str, list[int]] = defaultdict(list)
        fresh: list[int] = []
        moving = bool(settings.processed_folder or settings.review_folder)
        for uid in session.uids():
            record = known.get((settings.folder, state.uidvalidity, uid))
            if record is not None:
                # Recorded, but a kill struck before it was moved.
                if record.get("target"):
                    moves[record["target"]].append(uid)
            elif uid > last or moving:
                fresh.append(uid)
        self._move(session, moves)
        if not fresh:
            return
        # Built once per pass: within it only notices are added, which nobody replies to.
        index = self._index(view)
        with Analyser(index.known, parallel=len(fresh) >= PARALLEL_FROM) as a:
            self._analyser = a
            for start in range(0, len(fresh), BATCH):
                self._batch(session, settings, state, fresh[start : start + BATCH], index)

    def _batch(
        self,
        session: Mailbox,
        settings: Imap,
        state: FolderState,
        uids: list[int],
        index: MatchIndex,
    ) -> None:
        fetched = session.fetch(uids)
        # The raw bytes first, durable: whatever fails after, the mail is kept.
        messages.put_many(self.state_dir, list(fetched.values()))
        crash_point("stored")
        view = self.store.view()
        analysed = dict(zip(fetched, self._analyser.run(list(fetched.values())), strict=True))
        done: list[_Done] = []
        seen: dict[str, _Done] = {}
        for uid in uids:
            raw = fetched.get(uid)
            if raw is None:
                self.report.errors.append(f"UID {uid}: the server returned no message")
                continue
            result = self._one(uid, raw, analysed[uid], index, settings, state, view, seen)
            done.append(result)
            if result.line.state != "duplicate":
                seen[result.key] = result
        if not done:
            return
        # The notices' bytes before the unit that names them.
        notices = [n for d in done for n in d.notices]
        notice_hashes = messages.put_many(self.state_dir, [n[1] for n in notices])
        events: list[Event] = []
        for d in done:
            events += d.events
        queued = view.entry_keys()
        for (mail, _data, message_id, subject), sha in zip(notices, notice_hashes, strict=True):
            if mail.key in queued:
                continue
            queued.add(mail.key)
            events += outbox.queue(
                replace(mail, items=()),  # a notice marks no invoice as waiting
                kind="notice",
                to=mail.to,
                message_id=message_id,
                eml=sha,
                subject=subject,
                now=self.now,
            )
        events.append(mailbox.cursor(settings.folder, state.uidvalidity, max(uids), self.now))
        with self.store.transaction() as tx:
            tx.add_all(events)
        crash_point("ingested")
        self.report.lines += [d.line for d in done]
        moves: dict[str, list[int]] = defaultdict(list)
        for d in done:
            if d.target:
                moves[d.target].append(d.uid)
        self._move(session, moves)

    def _move(self, session: Mailbox, moves: Mapping[str, list[int]]) -> None:
        for target, uids in moves.items():
            session.move(sorted(uids), target)
            self.report.moved += len(uids)
            crash_point("moved")

    # -- one message -----------------------------------------------------------------

    def _one(
        self,
        uid: int,
        raw: bytes,
        analysed: tuple[InboundMail, Classification],
        index: MatchIndex,
        settings: Imap,
        state: FolderState,
        view: Any,
        seen: Mapping[str, _Done],
    ) -> _Done:
        sha = hashlib.sha256(raw).hexdigest()
        mail, result = analysed
        key = mailbox.key_for(mail.message_id, sha)
        earlier = view.received(key)
        if earlier is not None or key in seen:
            target = earlier.get("target") if earlier is not None else seen[key].target
            why = "already processed" + (f" on {earlier['at'][:10]}" if earlier else "")
            line = Line(key, uid, mail.from_address, mail.subject, "", 0.0, "duplicate", (), why)
            return _Done(uid, key, sha, [], [], target, line)
        found = match(mail, index)
        received = replies.Received(
            key,
            sha,
            mail.message_id,
            mail.from_address,
            mail.subject,
            mail.date,
            mail.own_text,
            mail.defects,
        )
        bounced_to = None
        if mail.bounce is not None and mail.bounce.permanent:
            sent = index.sent.get(mail.bounce.original_message_id)
            bounced_to = sent.to if sent is not None else next(iter(mail.bounce.recipients), None)
        decision = replies.decide(
            received,
            found,
            result,
            trust_problem=replies.auth_problem(mail.headers, settings.trusted_authserv_id),
            rules=self.rules.replies,
            now=self.now,
            today=self.now.astimezone(self._tz).date(),
            bounced_to=bounced_to,
        )
        events = list(decision.events)
        if decision.block_address:
            events.append(
                Event(
                    "",
                    outbox.ADDRESS_UNDELIVERABLE,
                    self.now,
                    f"bounced: {decision.block_address} ({_bounce_text(mail)})",
                    {
                        "email": decision.block_address,
                        "customer_id": found.customer_id,
                        "response": _bounce_text(mail),
                        "key": key,
                    },
                )
            )
        target = settings.review_folder if decision.state == replies.REVIEW else None
        target = target or settings.processed_folder
        events.insert(
            0,
            mailbox.received(
                self.now,
                decision.reason,
                key=key,
                sha256=sha,
                message_id=mail.message_id,
                **{"from": mail.from_address},
                subject=mail.subject,
                date=mail.date.isoformat() if mail.date else None,
                folder=settings.folder,
                uidvalidity=state.uidvalidity,
                uid=uid,
                state=decision.state,
                label=result.label,
                confidence=round(result.confidence, 3),
                customer_id=found.customer_id,
                invoices=list(found.invoices),
                match={"how": found.how, "detail": found.detail},
                reasons=list(result.reasons),
                classifier=result.version,
                text=mail.own_text[: replies.EXCERPT_CHARS],
                defects=list(mail.defects),
                target=target,
            ),
        )
        notices = self._notices(key, mail, found, result, decision, view)
        line = Line(
            key,
            uid,
            mail.from_address,
            mail.subject,
            result.label,
            round(result.confidence, 3),
            decision.state,
            found.invoices,
            decision.reason,
        )
        return _Done(uid, key, sha, events, notices, target, line)

    # -- notices -----------------------------------------------------------------------

    def _notices(
        self,
        key: str,
        mail: InboundMail,
        found: Match,
        result: Classification,
        decision: replies.Decision,
        view: Any,
    ) -> list[tuple[PlannedReminder, bytes, str, str]]:
        out = []
        invoices = [inv for n in found.invoices if (inv := view.invoice(n)) is not None]
        notify = self.rules.notify
        # Disputes, questions and bounces (the table); the rest of the review queue is
        # what `mahnwerk review` lists, not a mail per stranger or thank-you.
        if notify is not None and decision.notify:
            to = _addr_spec(notify.to)
            out.append(
                self._notice(
                    f"notice:reply:{_short(key)}",
                    NOTICE_TEMPLATE,
                    notify.language,
                    to,
                    to,
                    found.customer_id or "",
                    invoices,
                    mail,
                    result,
                    decision,
                )
            )
        if decision.acknowledge and invoices:
            first = invoices[0]
            out.append(
                self._notice(
                    f"notice:ack:{_short(key)}",
                    decision.acknowledge,
                    first.language,
                    first.email,
                    first.customer_name,
                    first.customer_id,
                    invoices,
                    mail,
                    result,
                    decision,
                )
            )
        return [n for n in out if n is not None]

    def _notice(
        self,
        notice_key: str,
        template: str,
        language: str,
        to: str,
        name: str,
        customer_id: str,
        invoices: Sequence[Invoice],
        mail: InboundMail,
        result: Classification,
        decision: replies.Decision,
    ) -> tuple[PlannedReminder, bytes, str, str] | None:
        today = self.now.astimezone(self._tz).date()
        items = tuple(
            PlannedItem(inv, "reply", decision.reason, (today - inv.due_date).days)
            for inv in invoices
        )
        totals: dict[str, Any] = {}
        for inv in invoices:
            totals[inv.currency] = totals.get(inv.currency, 0) + inv.open_amount
        customer_name = invoices[0].customer_name if invoices else ""
        planned = PlannedReminder(
            key=notice_key,
            customer_id=customer_id or "-",
            customer_name=name,
            to=to,
            language=language,
            policy="",
            stage=f"reply_{result.label}",
            action="email",
            template=template,
            items=items,
            totals=totals,
            fee=None,
            fee_currency=self.rules.company.currency,
            deadline=None,
            planned_day=today,
            reason=decision.reason,
        )
        labels = LABEL_NAMES.get(language, LABEL_NAMES["en"])
        extra = {
            "reply": {
                "label": result.label,
                "label_name": labels[result.label],
                "confidence": result.confidence,
                "reasons": list(result.reasons),
                "decision": decision.reason,
                "review": decision.state == replies.REVIEW,
                "sender": mail.from_address,
                "subject": mail.subject,
                "date": mail.date,
                "text": mail.own_text or mail.text,
                "facts": result.facts,
                "customer_name": customer_name,
                "customer_id": customer_id,
                "key": mail.message_id or "",
            }
        }
        try:
            rendered = self._renderer.render(planned, today, extra)
            own_id = message.message_id(self._secret, notice_key, self._domain)
            earlier = [mail.message_id] if message.is_message_id(mail.message_id) else []
            data = message.build(
                rendered,
                planned,
                self.rules,
                message_id=own_id,
                thread_token=message.thread_token(self._secret, planned.customer_id, self._domain),
                previous_ids=earlier,
                date=self.now,
            )
        except (RenderError, ValueError) as exc:
            self.report.errors.append(f"{notice_key}: notice not queued: {exc}")
            return None
        return planned, data, own_id, rendered.subject

    # -- the index -------------------------------------------------------------------

    def _index(self, view: Any) -> MatchIndex:
        invoices: list[Invoice] = view.invoices()
        tokens = {
            message.thread_token(self._secret, customer, self._domain): customer
            for customer in {inv.customer_id for inv in invoices}
        }
        sent = {
            e.message_id: Sent(e.customer_id, tuple(i.number for i in e.items), e.to)
            for e in view.entries()
            if e.kind == "reminder"
        }
        return build_index(invoices, sent, tokens)


def _parsed(raw: bytes) -> InboundMail:
    try:
        return parse(raw)
    except Exception as exc:  # parse promises not to raise; a bug must not lose the mail
        log.exception("parser failed")
        return InboundMail(defects=(f"parser failed: {type(exc).__name__}: {exc}",))


def _classified(mail: InboundMail, known: Collection[str]) -> Classification:
    try:
        return classify(mail, known_invoices=known)
    except Exception as exc:  # a classifier bug sends the mail to a person, never away
        log.exception("classifier failed")
        return Classification(
            "other", 0.0, reasons=(f"classifier failed: {exc}",), version=CLASSIFIER_VERSION
        )


def _analyse(raw: bytes, known: Collection[str]) -> tuple[InboundMail, Classification]:
    mail = _parsed(raw)
    return mail, _classified(mail, known)


# Set in each worker process once, so that the invoice numbers are not sent per message.
_worker_known: frozenset[str] = frozenset()


def _worker_init(known: frozenset[str]) -> None:
    global _worker_known
    _worker_known = known


def _worker_analyse(raw: bytes) -> tuple[InboundMail, Classification]:
    return _analyse(raw, _worker_known)


class Analyser:
    """Parsing and classifying, the CPU-bound part of a pass, over every core.

    Both are pure functions of the bytes (and the invoice numbers), so a backlog is spread
    over worker processes (forkserver: safe beside the threads of the store); a handful of
    mails is read in this process, where starting workers would cost more than it saves.
    A worker that dies takes nothing with it: that batch is read here instead.
    """

    def __init__(self, known: Collection[str], *, parallel: bool) -> None:
        self.known = frozenset(known)
        workers = min(os.cpu_count() or 1, MAX_WORKERS)
        self._pool: ProcessPoolExecutor | None = None
        if parallel and workers > 1:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["mahnwerk.inbox"])
            self._pool = ProcessPoolExecutor(
                workers, mp_context=context, initializer=_worker_init, initargs=(self.known,)
            )

    def __enter__(self) -> Analyser:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def run(self, raws: list[bytes]) -> list[tuple[InboundMail, Classification]]:
        if self._pool is not None and len(raws) > 1:
            try:
                return list(self._pool.map(_worker_analyse, raws, chunksize=8))
            except BrokenProcessPool:
                log.error("a parser process died; reading this batch in the main process")
                self._pool = None
        return [_analyse(raw, self.known) for raw in raws]


def _bounce_text(mail: InboundMail) -> str:
    b = mail.bounce
    if b is None:
        return "bounce"
    return " ".join(x for x in (b.status, b.diagnostic[:200]) if x) or "bounce"


def _short(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


def _addr_spec(value: str) -> str:
    from email.utils import parseaddr

    return parseaddr(value)[1] or value
