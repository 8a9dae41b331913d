"""The shared corpus of real messages (../shared/mail-corpus) through a real Dovecot and
one `Ingest` pass: nothing crashes, nothing errs, every message is recorded and filed, and
bounces and out-of-office replies are recognised as such.

Every message is APPENDed to the INBOX, as an MTA would deliver it; the ones Dovecot
refuses to take that way are written into the Maildir's new/ instead (none so far; the
test says which). The corpus is not part of the repository; without it these tests skip.
"""

from __future__ import annotations

import hashlib
import imaplib
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import imap_server as loopback_imap
import smtp_server as loopback
from _workspace import import_samples, load, smtp_section, write_rules
from mahnwerk import mailbox
from mahnwerk.inbound import parse
from mahnwerk.inbox import Ingest, IngestReport
from mahnwerk.store import TinyDBStore, messages

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "mail-corpus"
ABSENT = f"shared mail corpus not found at {CORPUS}"
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 26, 9, 30, tzinfo=BERLIN)
ENV = {"TEST_IMAP_PASSWORD": loopback_imap.PASSWORD}
PROCESSED = "Mahnwerk/Processed"
REVIEW = "Mahnwerk/Review"

# The corpus kinds a label is expected for, and how many of them must get it.
RECOGNISED = {"bounce": "bounce", "auto_reply": "auto_reply"}
# Messages of those kinds that are not labelled so, each with the reason.
NOT_RECOGNISED = {
    "auto-replies/flanker__disposition-notification.eml": (
        "a read receipt (MDN, multipart/report; report-type=disposition-notification): "
        "labelled other, so it waits in review; the corpus counts MDNs as automatic replies"
    ),
    "auto-replies/mimekit__disposition-notification.eml": "likewise, an MDN labelled other",
}
# Messages of other kinds labelled bounce or auto_reply, each with the reason.
LOOKALIKES = {
    "malformed/cpython__msg_42.eml": (
        "a 'Mail Delivery Subsystem' DSN the corpus files as malformed for its missing "
        "start boundary: rightly a bounce"
    ),
    "malformed/enmime__multipart-wo-boundary.eml": (
        "'Delivery Status Notification (Failure)' from mailer-daemon, multipart without a "
        "boundary: rightly a bounce"
    ),
    "malformed/otobo__FilenameWithCRLF.eml": (
        "'Delivery Status' with a delivery-status part, filed as malformed for its "
        "attachment's name: rightly a bounce"
    ),
    "malformed/otobo__FilenameWithNewline.eml": (
        "the same DSN with a newline for the CRLF (and its Message-ID: filed as a "
        "duplicate of it): rightly a bounce"
    ),
    "malformed/sisimai__mac__lhost-postfix-01.eml": (
        "a Postfix bounce with CR-only line endings: rightly a bounce"
    ),
    "malformed/sisimai__mac__rfc3834-01.eml": (
        "an RFC 3834 auto-reply with CR-only line endings: rightly an auto_reply"
    ),
    "malformed/rubymail__encoding_madness.eml": "machine mail from no-reply@: fair",
    "misc/rubymail__raw_email_trailing_dot.eml": (
        "a tracker's notification from noreply@rubyforge.org: machine mail, fair"
    ),
    "misc/otobo__NestedMessage-Test1.eml": (
        "QUESTIONABLE: a person's test mail ('Test ticket w/attachment') read as an "
        "out-of-office for 'Ticket' and '2.2.' as a return date"
    ),
    "malformed/rt__very-long-subject.eml": (
        "QUESTIONABLE: a person's text ('... but we creat ticket ...') read as a ticket "
        "system's acknowledgement"
    ),
}

# What ingesting ran into: parse and classify never raise (inbox.py catches it if they
# do, and notes it in the record: these are the notes).
CRASH_NOTES = re.compile(r"^(parser failed|message could not be parsed|classifier failed)")


@dataclass
class Corpus:
    """The pass over the whole corpus, and what it left."""

    entries: list[dict[str, Any]]
    state: Path
    report: IngestReport
    seconds: float
    records: dict[str, dict[str, Any]]  # key -> record
    by_file: dict[str, dict[str, Any]]  # file -> its key's record ({"missing": True} if none)
    labels: dict[str, str]  # file -> the label the pass gave it ("" for a duplicate)
    folders: dict[str, int]  # folder -> messages in it afterwards
    refused: dict[str, str]  # file -> what APPEND answered, for those written into new/
    crashes: list[str]  # errors logged during the pass, and the records' crash notes


def _normal(data: bytes) -> bytes:
    """Line endings as IMAP serves them (and as imaplib's APPEND sends them): CRLF."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def _deliver(imap: loopback_imap.LoopbackImap, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """APPEND every message over one connection; those Dovecot refuses are written into
    the Maildir's new/ (tmp/, then renamed), as a local delivery agent would.
    Returns file -> its UID (APPENDUID), or what APPEND answered for a refused one."""
    out: dict[str, Any] = {}
    refused: list[bytes] = []
    with imap.imap() as conn:
        for entry in entries:
            data = (CORPUS / entry["file"]).read_bytes()
            try:
                typ, resp = conn.append("INBOX", None, None, data)
            except imaplib.IMAP4.error as exc:
                typ, resp = "NO", [str(exc).encode()]
            uid = re.search(rb"\[APPENDUID \d+ (\d+)\]", resp[0] or b"")
            if typ == "OK" and uid:
                out[entry["file"]] = int(uid.group(1))
            else:
                out[entry["file"]] = (resp[0] or b"?").decode(errors="replace")
                refused.append(data)
    maildir = imap.maildir()
    owner = (maildir / "cur").stat()
    for n, data in enumerate(refused):
        name = f"{int(time.time())}.corpus{n}.localhost"
        (maildir / "tmp" / name).write_bytes(data)
        os.chown(maildir / "tmp" / name, owner.st_uid, owner.st_gid)
        (maildir / "tmp" / name).rename(maildir / "new" / name)
    return out


class _Errors(logging.Handler):
    """Every error mahnwerk logs (inbox.py logs a parser's or classifier's exception)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(f"{record.name}: {record.getMessage()}")


@contextmanager
def _dovecot(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[loopback_imap.LoopbackImap]:
    cert = loopback.certificate(tmp_path_factory)
    files = tmp_path_factory.mktemp("dovecot")
    with ExitStack() as stack:
        yield loopback_imap.start_or_skip(
            lambda: stack.enter_context(loopback_imap.running(cert, files))
        )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    """Every corpus message into one Dovecot's INBOX, then one `Ingest` pass."""
    if not (CORPUS / "index.json").is_file():
        pytest.skip(ABSENT)
    entries: list[dict[str, Any]] = json.loads((CORPUS / "index.json").read_text("utf-8"))
    folder = tmp_path_factory.mktemp("corpus")
    with _dovecot(tmp_path_factory) as imap:
        section = imap.settings(password_env="TEST_IMAP_PASSWORD").model_dump(exclude_defaults=True)
        section.pop("sent_folder", None)
        rules = write_rules(
            folder,
            smtp=smtp_section(9),
            imap=section,
            notify={"to": "forderungen-team@muster-handel.example", "language": "de"},
        )
        store = TinyDBStore(folder / "state")
        import_samples(store, NOW)
        delivered = _deliver(imap, entries)

        # Each file's message as the server serves it (what mahnwerk reads and keys).
        held = {m.uid: m.data for m in imap.messages("INBOX")}
        assert len(held) == len(entries)
        by_content = {_normal(d): u for u, d in held.items() if u not in delivered.values()}
        uid_of = {
            f: where if isinstance(where, int) else by_content[_normal((CORPUS / f).read_bytes())]
            for f, where in delivered.items()
        }

        errors = _Errors()
        logging.getLogger("mahnwerk").addHandler(errors)
        began = time.monotonic()
        try:
            report = Ingest(store, load(rules), NOW, ENV).run()
        finally:
            logging.getLogger("mahnwerk").removeHandler(errors)
        seconds = time.monotonic() - began
        try:
            records = {r["key"]: r for r in store.view().received_all()}
        finally:
            store.close()
        folders = {name: len(imap.messages(name)) for name in ("INBOX", PROCESSED, REVIEW)}

    by_file = {}
    for file, uid in uid_of.items():
        data = held[uid]
        key = mailbox.key_for(parse(data).message_id, hashlib.sha256(data).hexdigest())
        by_file[file] = records.get(key, {"key": key, "missing": True})
    lines = {line.uid: line for line in report.lines}
    crashes = errors.seen + [
        f"{key}: {note}"
        for key, record in records.items()
        for note in [*record.get("defects", []), *record.get("reasons", [])]
        if CRASH_NOTES.match(note)
    ]
    yield Corpus(
        entries=entries,
        state=folder / "state",
        report=report,
        seconds=seconds,
        records=records,
        by_file=by_file,
        labels={f: lines[u].label for f, u in uid_of.items() if u in lines},
        folders=folders,
        refused={f: v for f, v in delivered.items() if isinstance(v, str)},
        crashes=crashes,
    )


def _label(c: Corpus, file: str) -> str:
    """What the pass labelled the message; a duplicate (another corpus message has its
    Message-ID) is not read again, and counts with the label its key was recorded with."""
    return c.labels.get(file) or c.by_file[file]["label"]


def test_every_message_is_ingested_without_a_crash_or_an_error(corpus: Corpus) -> None:
    c = corpus
    states = Counter(line.state for line in c.report.lines)
    print(
        f"\n{len(c.entries)} corpus messages ingested in {c.seconds:.1f} s: {dict(states)} "
        f"({len(c.records)} distinct keys); refused by APPEND and written into new/: "
        f"{sorted(c.refused) or 'none'}"
    )
    assert c.crashes == []
    assert c.report.errors == []
    assert len(c.report.lines) == len(c.entries)
    assert not [f for f, r in c.by_file.items() if r.get("missing")]
    # Recorded, every one, with its bytes stored; a duplicate under the first one's key.
    targets: Counter[str] = Counter()
    for file, record in c.by_file.items():
        assert record["state"] in ("processed", "review"), (file, record["state"])
        assert record["target"] in (PROCESSED, REVIEW), file
        assert messages.path_of(c.state, record["sha256"]).is_file(), file
        targets[record["target"]] += 1
    # Moved, every one: the INBOX is empty, each in the folder its record names.
    assert c.folders == {"INBOX": 0, PROCESSED: targets[PROCESSED], REVIEW: targets[REVIEW]}
    assert states["duplicate"] == len(c.entries) - len(c.records)


@pytest.mark.parametrize("kind", sorted(RECOGNISED))
def test_bounces_and_auto_replies_are_recognised(corpus: Corpus, kind: str) -> None:
    c = corpus
    want = RECOGNISED[kind]
    files = [e["file"] for e in c.entries if e["kind"] == kind]
    missed = {f: _label(c, f) for f in files if _label(c, f) != want}
    rate = 1 - len(missed) / len(files)
    print(f"\n{kind}: {len(files) - len(missed)} of {len(files)} labelled {want} ({rate:.1%})")
    for f, label in sorted(missed.items()):
        print(f"  {f}: {label} ({NOT_RECOGNISED.get(f, 'not listed')})")
    listed = {f for f in NOT_RECOGNISED if f in files}
    assert set(missed) == listed, (
        f"newly missed: {sorted(set(missed) - listed)}; "
        f"recognised now, drop from NOT_RECOGNISED: {sorted(listed - set(missed))}"
    )


def test_no_other_kind_is_taken_for_a_bounce_or_an_auto_reply(corpus: Corpus) -> None:
    c = corpus
    taken = {
        e["file"]: _label(c, e["file"])
        for e in c.entries
        if e["kind"] not in RECOGNISED and _label(c, e["file"]) in RECOGNISED.values()
    }
    for f, label in sorted(taken.items()):
        print(f"\n  {f}: {label} ({LOOKALIKES.get(f, 'not listed')})", end="")
    assert set(taken) == set(LOOKALIKES), (
        f"newly taken: {sorted(set(taken) - set(LOOKALIKES))}; "
        f"no longer, drop from LOOKALIKES: {sorted(set(LOOKALIKES) - set(taken))}"
    )
