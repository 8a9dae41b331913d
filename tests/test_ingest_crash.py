"""kill -9 of the real `mahnwerk ingest` process, against a real Dovecot.

Nothing lost, nothing twice: wherever the ingest dies (after its commit, between its
moves, before its commit with the raw bytes stored, or at a random moment), running it
again ends with every delivered reply recorded once (one mail_received per key in the
journal, one reply_received per invoice and key), filed once in the processed or review
folder its record names, its bytes under state/messages, and its notices queued once.
And a server that renumbers the INBOX (a new UIDVALIDITY) gets nothing processed again.

The ingest runs as its own process (`python -m mahnwerk ... ingest`) and dies at a crash
point (MAHNWERK_CRASH_AT) or by SIGKILL from here. One Dovecot serves the file; each
scenario reads the INBOX of a user of its own, from a state dir of its own copied from
one template (the sample book, the reminders of 2026-11-25 sent).

An ingest is mostly Python start-up (~0.7 s of imports of ~1 s), so the scenarios run
in the background from the first test of the file on, two at a time: the random rounds
in one thread, the crash points in another; each test then waits for its own.
_ingest_crash_support.py has the workspace, the replies and the checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import pytest

import _ingest_crash_support as support
import imap_server as loopback_imap
import smtp_server as loopback
from _ingest_crash_support import PROCESSED, REVIEW, Mails, Template, Workspace, key_of
from mahnwerk.store import TinyDBStore

imap_server = loopback_imap.imap_server

SEED = int(os.environ.get("MAHNWERK_CRASH_SEED", "20261126"))
ROUNDS = 50
AGAIN = f"seed {SEED} (run again with MAHNWERK_CRASH_SEED={SEED})"
CRASH_POINTS = ("ingested", "moved:1", "moved:2", "before the commit")
USERS = ("reference", "rounds", *(f"crash-{i}" for i in range(len(CRASH_POINTS))))


def the_set(mails: Mails, tag: str) -> list[bytes]:
    """One of each kind (11), then the paid reply delivered again as it was and the
    promise again by another path (same Message-ID, one more Received line)."""
    data = [make(tag) for make in mails.kinds().values()]
    return [*data, data[0], support.duplicate_with_other_bytes(data[1])]


# What an ingest makes of the_set: the stranger, the malformed message, the reply from
# a stranger's address and the question wait for a person; the copies are duplicates.
SET_STATES = {"processed": 7, "review": 4, "duplicate": 2}


# -- the scenarios -------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """What an ingest nobody kills makes of the set."""

    outcome: dict[str, tuple[str, str, tuple[str, ...]]]
    notices: dict[str, tuple[str, str]]  # key -> (to, subject)


def _reference(folder: Path, dovecot: loopback_imap.LoopbackImap, template: Template) -> Reference:
    ws = Workspace.create(folder, dovecot, "reference", template)
    data = the_set(Mails(template.sent), "set")
    ws.deliver_all(data)
    done = ws.ingest()
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["errors"] == []
    assert Counter(m["state"] for m in report["messages"]) == SET_STATES, report
    checked = support.check(ws, data, "reference")
    notices = {k: (n["to"], n["subject"]) for k, n in checked.notices.items()}
    return Reference(support.summary(checked.records), notices)


@dataclass
class Killed:
    """One crash-point scenario: what the kill left, and what the next ingest did."""

    ws: Workspace
    data: list[bytes]
    returncode: int
    stdout: str
    stderr: str
    inbox: Counter[str]  # key -> copies left in the INBOX by the kill
    moved: dict[str, Counter[str]]  # folder -> key -> copies moved there before the kill
    recorded: Counter[str]  # mail_received per key in the journal after the kill
    stored: set[str]  # state/messages after the kill
    again: dict[str, Any]  # the next ingest's --json report


def _wait_at_commit(ws: Workspace, data: list[bytes]) -> subprocess.CompletedProcess[str]:
    """An ingest held at its commit (this thread holds the store's lock), SIGKILLed there
    once every raw message of the batch is on disk."""
    raw = {hashlib.sha256(d).hexdigest() for d in data}
    with ws.store_locked(), ws.start() as child:
        support.kill_when(child, lambda: raw <= ws.stored())
        _, err = child.communicate(timeout=support.TIMEOUT)
    return subprocess.CompletedProcess(child.args, child.returncode, "", err)


def _crash(
    folder: Path, dovecot: loopback_imap.LoopbackImap, template: Template, point: str
) -> Killed:
    ws = Workspace.create(folder, dovecot, f"crash-{CRASH_POINTS.index(point)}", template)
    data = the_set(Mails(template.sent), "set")
    ws.deliver_all(data)
    crashed = _wait_at_commit(ws, data) if point == "before the commit" else ws.ingest(crash=point)
    inbox = Counter(key_of(m.data) for m in ws.folder("INBOX"))
    moved = {f: Counter(key_of(m.data) for m in ws.folder(f)) for f in (PROCESSED, REVIEW)}
    recorded, stored = ws.recorded(), ws.stored()
    again = ws.ingest()
    assert again.returncode == 0, again.stderr
    return Killed(
        ws,
        data,
        crashed.returncode,
        crashed.stdout,
        crashed.stderr,
        inbox,
        moved,
        recorded,
        stored,
        json.loads(again.stdout),
    )


# Where a kill landed, from what the journal, state/messages and the INBOX showed after it.
PHASES = (
    "finished before the kill",
    "before the raw bytes were stored",
    "raw bytes stored, not committed",
    "committed, nothing moved",
    "committed, partly moved",
    "committed and moved, not exited",
)
POINTS = ("ingested:1", "moved:1", "moved:2")
# Timed kills spread over a little more than the typical ingest or session: some then
# land after its end (exiting; logging out), and the typical one is not always the
# length of this one (the raw bytes come at about three quarters of the session, after
# fetching, parsing and classifying; commit and moves take the last few ms).
LONGER = 1.25


@dataclass(frozen=True)
class Round:
    number: int
    how: str  # "anywhere", "session", or a crash point
    fraction: float
    kinds: tuple[str, ...]
    again: bool  # also deliver an earlier message once more

    def __str__(self) -> str:
        timed = self.how in ("anywhere", "session")
        kill = f"SIGKILL {self.how} {self.fraction:.3f}" if timed else f"crash at {self.how}"
        also = ", an earlier one again" if self.again else ""
        return f"round {self.number} ({kill}; {'+'.join(self.kinds)}{also})"


def _rounds(rng: random.Random, kinds: list[str]) -> list[Round]:
    """One of five rounds SIGKILLs at a random moment of a whole ingest ("anywhere": it is
    mostly Python start-up); three of five at a random moment of its IMAP session, from
    its login on ("session": fetch, parse, store, commit, move, 20-50 ms); one of five dies
    at a crash point, each in turn. A round brings one to three new replies, and one in
    four also an earlier one once more (as it was, or by another path)."""
    out = []
    for number in range(ROUNDS):
        how = ("anywhere", "session", "session", "point", "session")[number % 5]
        if how == "point":
            how = POINTS[(number // 5) % len(POINTS)]
        picked = tuple(rng.sample(kinds, rng.randint(1, 3)))
        out.append(Round(number, how, rng.random(), picked, rng.random() < 0.25))
    return out


class Timing:
    """How long an ingest takes ("whole": the warm-up's) and how long its IMAP session
    is ("session": the warm-up's, then the latest ones seen in the "anywhere" rounds
    whose kill came after the logout), so that the session kills keep spreading over
    the session when the machine (shared, two cores) gets busier or quieter.

    Not from the "session" rounds: a session seen whole there was shorter than the
    round's delay, and the estimate would only ever shrink. The "anywhere" kill comes
    at a random part of a whole ingest, some 30 times longer than its session."""

    def __init__(self, whole: float, session: float) -> None:
        self.warm_up = (whole, session)
        self.session = deque([session], maxlen=5)

    def typical(self) -> tuple[float, float]:
        return self.warm_up[0], median(self.session)


@dataclass
class Rounds:
    ws: Workspace
    delivered: list[bytes] = field(default_factory=list)
    phases: Counter[str] = field(default_factory=Counter)
    by_how: dict[str, Counter[str]] = field(default_factory=dict)
    timing: Timing | None = None
    final: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _phase(
    rc: int, before: int, pending: set[str], raw: set[str], ws: Workspace, peek: support.Peek
) -> str:
    """Where the kill landed; `before`: the end of the journal's committed units before the
    ingest started, `pending`: the keys in the INBOX then, `raw`: their hashes not stored."""
    if rc == 0:
        return "finished before the kill"
    if ws.committed() == before:
        stored = bool(raw) and raw <= ws.stored()
        return "raw bytes stored, not committed" if stored else "before the raw bytes were stored"
    left = {key_of(m) for m in peek.messages("INBOX")}
    if not left:
        return "committed and moved, not exited"
    return "committed, nothing moved" if pending <= left else "committed, partly moved"


def _timed(
    ws: Workspace, log: support.SessionLog, spec: Round | None, typical: tuple[float, float]
) -> tuple[int, float, float | None]:
    """Run an ingest and SIGKILL it as `spec` says (None: not at all), at a fraction of the
    `typical` (whole, session) seconds. Returns its return code, how long it ran, and how
    long its IMAP session was if its login and logout both showed in Dovecot's log."""
    log.mark()
    began = time.monotonic()
    login = logout = 0.0
    kill_at = float("inf")
    with ws.start() as child:
        if spec is not None and spec.how == "anywhere":
            kill_at = began + spec.fraction * LONGER * typical[0]
        elif spec is not None:
            while child.poll() is None and not log.logged_in():
                assert time.monotonic() < began + support.TIMEOUT, f"{spec}: no login"
                time.sleep(0.0005)
            login = time.monotonic()
            kill_at = login + spec.fraction * LONGER * typical[1]
        while child.poll() is None and time.monotonic() < kill_at:
            if not login and log.logged_in():
                login = time.monotonic()
            if login and not logout and log.logged_out():
                logout = time.monotonic()
            time.sleep(0.001)
        if child.poll() is None:
            # Not reaped yet: even if it exits now, the pid is still its own.
            os.kill(child.pid, signal.SIGKILL)
        _, err = child.communicate(timeout=support.TIMEOUT)
    assert child.returncode in (0, -signal.SIGKILL), f"{spec}: exit {child.returncode}: {err}"
    session = logout - login if logout else None
    return child.returncode, time.monotonic() - began, session


def _run_rounds(folder: Path, dovecot: loopback_imap.LoopbackImap, template: Template) -> Rounds:
    started = time.monotonic()
    rng = random.Random(SEED)
    mails = Mails(template.sent)
    kinds = mails.kinds()
    result = Rounds(Workspace.create(folder, dovecot, "rounds", template))
    ws = result.ws
    peek = support.Peek(dovecot, ws.user)
    log = support.SessionLog(dovecot, ws.user)
    try:
        # Warm-up, nobody killed: the set, then two replies (a round's size), timed.
        result.delivered = the_set(mails, "warm-up")
        peek.deliver(result.delivered)
        assert ws.ingest().returncode == 0
        small = [mails.paid("warm-up-2"), mails.stranger("warm-up-2")]
        peek.deliver(small)
        result.delivered += small
        rc, whole, session = _timed(ws, log, None, (0.0, 0.0))
        assert rc == 0 and session is not None, "no login and logout in Dovecot's log"
        result.timing = timing = Timing(whole, session)

        for spec in _rounds(rng, sorted(kinds)):
            where = f"{AGAIN}, {spec}"
            new = [kinds[kind](f"r{spec.number}") for kind in spec.kinds]
            if spec.again:
                earlier = rng.choice(result.delivered)
                twin = support.duplicate_with_other_bytes(earlier)
                new.append(twin if rng.random() < 0.5 else earlier)
            peek.deliver(new)
            result.delivered += new
            waiting = peek.messages("INBOX")
            pending = {key_of(m) for m in waiting}
            raw = {hashlib.sha256(m).hexdigest() for m in waiting} - ws.stored()
            before = ws.committed()
            if spec.how in ("anywhere", "session"):
                rc, _, session = _timed(ws, log, spec, timing.typical())
                if session is not None and spec.how == "anywhere":
                    timing.session.append(session)
            else:
                done = ws.ingest(crash=spec.how)
                rc = done.returncode
                assert rc in (0, -signal.SIGKILL), f"{where}: exit {rc}: {done.stderr}"
            phase = _phase(rc, before, pending, raw, ws, peek)
            result.phases[phase] += 1
            result.by_how.setdefault(spec.how.partition(":")[0], Counter())[phase] += 1
            twice = {k: n for k, n in ws.recorded().items() if n > 1}
            assert not twice, f"{where}: recorded twice: {twice}"
    finally:
        peek.close()
        log.close()

    final = ws.ingest()
    assert final.returncode == 0, f"{AGAIN}: the last ingest: {final.stderr}"
    result.final = json.loads(final.stdout)
    result.seconds = time.monotonic() - started
    return result


# -- all started at once --------------------------------------------------------------------


@dataclass
class Campaign:
    reference: Future[Reference] | None = None
    crashes: dict[str, Future[Killed]] = field(default_factory=dict)
    rounds: Future[Rounds] | None = None


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> loopback.Certificate:
    return loopback.certificate(tmp_path_factory)


@pytest.fixture(scope="module")
def dovecot(
    tmp_path_factory: pytest.TempPathFactory, cert: loopback.Certificate
) -> Iterator[loopback_imap.LoopbackImap]:
    """One Dovecot for the scenarios, with a user for each (all made before it starts:
    Dovecot rereads its passwd file by mtime, and misses a change within the second)."""
    files = tmp_path_factory.mktemp("dovecot")
    users = dict.fromkeys(USERS, loopback_imap.PASSWORD)
    with ExitStack() as stack:
        yield loopback_imap.start_or_skip(
            lambda: stack.enter_context(loopback_imap.running(cert, files, users=users))
        )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, cert: loopback.Certificate) -> Template:
    """The sample book with the reminders of 2026-11-25 sent: the replies answer them."""
    return support.make_template(tmp_path_factory.mktemp("template"), cert)


@pytest.fixture(scope="module")
def campaign(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    dovecot: loopback_imap.LoopbackImap,
    template: Template,
) -> Iterator[Campaign]:
    """Starts the scenarios of the tests selected in this file; waits for all at the end."""
    selected = {getattr(item, "originalname", item.name) for item in request.session.items}
    found = Campaign()
    pool = ThreadPoolExecutor(2)
    try:
        if _random.__name__ in selected:
            found.rounds = pool.submit(
                _run_rounds, tmp_path_factory.mktemp("rounds"), dovecot, template
            )
        if _points.__name__ in selected:
            found.reference = pool.submit(
                _reference, tmp_path_factory.mktemp("reference"), dovecot, template
            )
            for point in CRASH_POINTS:
                folder = tmp_path_factory.mktemp("crash")
                found.crashes[point] = pool.submit(_crash, folder, dovecot, template, point)
        yield found
    finally:
        # Interrupted: what has not started yet never will.
        pool.shutdown(wait=True, cancel_futures=True)


# -- 3. a new UIDVALIDITY (first: it has a Dovecot of its own, and runs while the rest do) --


def _uidvalidity(imap: loopback_imap.LoopbackImap, user: str) -> int:
    with imap.imap(user) as conn:
        typ, data = conn.status("INBOX", "(UIDVALIDITY)")
    assert typ == "OK", data
    raw = data[0]
    assert isinstance(raw, bytes)
    return int(raw.rsplit(b"UIDVALIDITY", 1)[1].strip(b" )"))


@pytest.mark.usefixtures("campaign")
def test_a_new_uidvalidity_processes_nothing_again_and_what_is_new_once(
    tmp_path: Path, imap_server: loopback_imap.LoopbackImap, template: Template
) -> None:
    """Dovecot forgets the INBOX's UIDs (its uidlist and index deleted, as after a restore
    or a move to another server) while copies of processed replies are back in it: a new
    UIDVALIDITY, UIDs from 1 again. The copies are filed as duplicates; the new replies,
    which get UIDs the processed ones were recorded with, are processed, not taken for
    recorded ones."""
    imap, user = imap_server, loopback_imap.USER
    ws = Workspace.create(tmp_path, imap, user, template)
    mails = Mails(template.sent)
    first = [mails.paid("u"), mails.dispute("u"), mails.malformed("u"), mails.stranger("u")]
    ws.deliver_all(first)
    assert ws.ingest().returncode == 0
    old = _uidvalidity(imap, user)
    store = TinyDBStore(ws.state)
    try:
        old_uids = {r["uid"] for r in store.view().received_all()}
    finally:
        store.close()
    assert len(old_uids) == len(first)

    imap.stop()
    maildir = imap.maildir(user)
    for name in os.listdir(maildir):
        if name == "dovecot-uidlist" or name.startswith("dovecot.index"):
            (maildir / name).unlink()
    # Copies of two filed replies back in the INBOX as new mail: the paid one, and the
    # malformed one, which has no Message-ID and is known by its bytes.
    again = [first[0], first[2]]
    marks = [b"<paid.u@", b"this is not base64 !!! u"]
    copied = []
    for folder in (".Mahnwerk.Processed", ".Mahnwerk.Review"):
        for path in sorted((maildir / folder).glob("[nc][eu][wr]/*")):
            if any(mark in path.read_bytes() for mark in marks):
                target = maildir / "new" / f"copy.{path.name.partition(':')[0]}"
                shutil.copyfile(path, target)
                st = path.stat()
                os.chown(target, st.st_uid, st.st_gid)
                copied.append(path.name)
    assert len(copied) == len(again), copied
    imap.start()
    later = [mails.promise("u"), mails.question("u")]
    uids = [ws.deliver(d) for d in later]
    assert _uidvalidity(imap, user) != old
    # The new replies have UIDs the first ones were recorded with, under the old UIDVALIDITY.
    assert set(uids) <= old_uids, (uids, old_uids)

    done = ws.ingest()
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["errors"] == []
    states = {m["key"]: m["state"] for m in report["messages"]}
    assert states == {
        **{key_of(d): "duplicate" for d in again},
        key_of(later[0]): "processed",
        key_of(later[1]): "review",
    }, states
    support.check(ws, first + again + later, "new UIDVALIDITY")


# -- 1. each crash point, and a kill before the commit ------------------------------------


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_killed_at_a_crash_point_the_next_ingest_records_and_files_each_reply_once(
    campaign: Campaign, point: str
) -> None:
    assert campaign.reference is not None
    reference = campaign.reference.result()
    k = campaign.crashes[point].result()
    assert k.returncode == -signal.SIGKILL, (k.returncode, k.stderr)
    assert k.stdout == ""
    keys = {key_of(d) for d in k.data}
    processed = {key for key, (_, state, _) in reference.outcome.items() if state == "processed"}

    # What the kill left: committed or not, moved or not, nothing half way.
    if point == "before the commit":
        assert k.recorded == {}
        # The raw bytes went first; the mail itself is still where it arrived.
        assert {hashlib.sha256(d).hexdigest() for d in k.data} <= k.stored
        assert k.inbox.total() == len(k.data) and not any(k.moved.values())
    else:
        assert k.recorded == dict.fromkeys(keys, 1)
    if point == "ingested":
        assert k.inbox.total() == len(k.data) and not any(k.moved.values())
    if point == "moved:1":
        # The processed replies went first (the first of the batch is one), the review
        # ones wait in the INBOX for the next pass.
        assert set(k.moved[PROCESSED]) == processed and not k.moved[REVIEW]
        assert set(k.inbox) == keys - processed
    if point == "moved:2":
        assert not k.inbox

    # The next ingest.
    assert k.again["errors"] == []
    lines = k.again["messages"]
    if point == "before the commit":
        assert Counter(m["state"] for m in lines) == SET_STATES
    else:
        # Recorded by the killed pass: only moved now, not processed again; a second
        # copy left in the INBOX is known by its key, and filed as a duplicate.
        assert all(m["state"] == "duplicate" for m in lines), lines
        assert len(lines) == k.inbox.total() - len(k.inbox)
        assert k.again["moved"] == k.inbox.total()

    checked = support.check(k.ws, k.data, point)
    # The kill changed nothing of what the replies did.
    assert support.summary(checked.records) == reference.outcome
    notices = {key: (n["to"], n["subject"]) for key, n in checked.notices.items()}
    assert notices == reference.notices


_points = test_killed_at_a_crash_point_the_next_ingest_records_and_files_each_reply_once


# -- 2. random kills, round after round -----------------------------------------------------


def test_50_kill_9_rounds_during_ingestion_lose_nothing_and_process_nothing_twice(
    campaign: Campaign,
) -> None:
    assert campaign.rounds is not None
    try:
        r = campaign.rounds.result()
    except AssertionError as exc:
        pytest.fail(f"{AGAIN}: {exc}")
    assert r.final["errors"] == [], AGAIN
    checked = support.check(r.ws, r.delivered, AGAIN)
    labels = Counter(rec["label"] for rec in checked.records.values())
    assert r.timing is not None
    whole, session = r.timing.typical()
    print(
        f"\n{AGAIN}: {ROUNDS} rounds, {len(r.delivered)} messages delivered "
        f"({len(checked.records)} distinct keys) in {r.seconds:.1f} s; an ingest of two "
        f"took {r.timing.warm_up[0]:.2f} s, its IMAP session {r.timing.warm_up[1] * 1000:.0f} ms; "
        f"lately {whole:.2f} s and {session * 1000:.0f} ms"
    )
    for how, phases in sorted(r.by_how.items()):
        print(f"  {how}: " + ", ".join(f"{phases[p]} {p}" for p in PHASES if phases[p]))
    print(f"  labels: {dict(labels)}; notices queued: {len(checked.notices)}")
    # The premise: kills landed before the commit, between commit and moves, and after.
    assert r.phases["before the raw bytes were stored"] >= 5, (AGAIN, r.phases)
    assert r.phases["committed, nothing moved"] >= 3, (AGAIN, r.phases)
    moved = r.phases["committed, partly moved"] + r.phases["committed and moved, not exited"]
    assert moved >= 3, (AGAIN, r.phases)


_random = test_50_kill_9_rounds_during_ingestion_lose_nothing_and_process_nothing_twice
