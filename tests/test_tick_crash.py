"""kill -9 of the real `mahnwerk tick` process, against a real SMTP server on loopback.

Nothing twice, nothing lost: whatever instruction the tick dies at, restarting it (and,
under `outbox.on_unknown: hold`, a person resolving what it holds) ends with every
planned mail received once, with its one Message-ID, recorded once in each invoice's
thread, with the stored .eml byte for byte what the server received.

The tick runs as its own process (`python -m mahnwerk ... tick`) and dies at a crash
point (MAHNWERK_CRASH_AT) or by SIGKILL from here; the other commands run through the
same CLI entry point in one worker process started once (_tick_crash_support.py says
why).

Every scenario has its own state dir and its own server, so they all run from one pool,
WORKERS at a time, started when the first test of the file needs them; each test then
waits for its own. A tick is CPU-bound, and most of it is Python start-up (~0.6 s of
imports and rules for each of the ~170 ticks started here): run one after the other,
the file would take about twice as long on two cores.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

import _tick_crash_support as support
import smtp_server as loopback
from _tick_crash_support import (
    DayResult,
    Durations,
    Kill,
    RoundResult,
    RoundSpec,
    Timed,
    Workspace,
)
from _workspace import SAMPLES
from mahnwerk import delivery, faults

smtp_server = loopback.smtp_server

DAY = date(2026, 11, 25)
# Two weeks on: pre_due -> reminder_1, reminder_1 -> reminder_2.
LATER = date(2026, 12, 9)
WORKERS = max(2, min(4, os.cpu_count() or 2))

# 1 and 2: each crash point, for the first of the samples' 14 mails of DAY and one in
# the middle ("queued" is passed once per tick, so only n = 1).
CRASHES = [
    ("queued", 1),
    ("attempt", 1),
    ("attempt", 7),
    ("accepted", 1),
    ("accepted", 7),
    ("recorded", 1),
    ("recorded", 7),
]
MODES: tuple[support.OnUnknown, ...] = ("hold", "resend")
# The points that leave a mail whose fate only the server knows.
HELD = {"attempt", "accepted"}
Scenario = tuple[support.OnUnknown, str, int]
Killed = tuple[Workspace, DayResult]

# 3: random kills on a bigger book, one fresh state dir per round.
SEED = int(os.environ.get("MAHNWERK_CRASH_SEED", "20261125"))
ROUNDS = 50
# Enough to kill a tick while it delivers: half the timed kills wait for its first mail
# at the server, so the book need not be big for that (a tick of 60 mails is ~0.9 s on
# an idle core, ~0.1 s of it delivering; 150 would cost 15 s more per run, not more kills).
CUSTOMERS = 60
AGAIN = f"seed {SEED} (run again with MAHNWERK_CRASH_SEED={SEED})"


# -- the scenarios, all started at once ---------------------------------------------------


@dataclass
class Campaign:
    crashes: dict[Scenario, Future[Killed]] = field(default_factory=dict)
    specs: list[RoundSpec] = field(default_factory=list)
    rounds: list[Future[RoundResult]] = field(default_factory=list)
    durations: Durations = field(default_factory=Durations)
    started: float = field(default_factory=time.monotonic)


def _states_at_kill(point: str, n: int, keys: list[str]) -> dict[str, str]:
    """What the outbox must show right after the kill: the mails before the n-th sent."""
    if point == "queued":
        return dict.fromkeys(keys, "queued")
    done = n if point == "recorded" else n - 1
    states = dict.fromkeys(keys[:done], "sent") | dict.fromkeys(keys[done:], "queued")
    if point in HELD:
        states[keys[n - 1]] = "sending"
    return states


def _kill_at(
    folder: Path, cert: loopback.Certificate, template: Path, scenario: Scenario
) -> Killed:
    on_unknown, point, n = scenario
    with loopback.running(cert) as server:
        ws = Workspace.create(folder, server.port, on_unknown, template)
        r = support.run_day(ws, server, DAY, Kill(crash=f"{point}:{n}"), on_unknown)
    assert r.killed_rc == -signal.SIGKILL, r.killed_stderr
    assert r.restarts == [0]
    assert len(r.keys) == 14
    assert r.taken_at_kill == (0 if point == "queued" else n - (point == "attempt"))
    return ws, r


def _in_flight(r: DayResult) -> dict[str, str]:
    return {k: s for k, s in r.at_kill.items() if s not in ("queued", "sent")}


def _specs(rng: random.Random) -> list[RoundSpec]:
    """Mostly SIGKILL at a random moment: half of them anywhere in the tick, half while
    it delivers (start-up and rendering are most of a tick, so these wait for its first
    mail at the server, then a random part of how long delivering takes). Every fifth
    round a crash point instead, each in turn, with a random n. Every tenth round runs
    two days (the later stages), and another every tenth runs under `resend`."""
    specs = []
    points = itertools.cycle(faults.POINTS)
    for number in range(ROUNDS):
        days = (DAY, LATER) if number % 10 == 3 else (DAY,)
        kills: list[tuple[date, str | Timed | None]] = []
        for day in days:
            if number % 5 == 4:
                point = next(points)
                n = 1 if point == "queued" else rng.randint(1, CUSTOMERS)
                kills.append((day, f"{point}:{n}"))
            else:
                kills.append((day, Timed(rng.random(), rng.choice(("tick", "delivery")))))
        specs.append(RoundSpec(number, "resend" if number % 10 == 6 else "hold", tuple(kills)))
    return specs


def _imported(folder: Path, *files: Path) -> Path:
    """A state dir with `files` imported by `mahnwerk import`, for the scenarios to copy."""
    ws = Workspace.create(folder, 9, "hold")
    for path in files:
        ws.import_csv(path)
    return ws.state


@pytest.fixture(scope="module")
def campaign(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Campaign]:
    """Starts the scenarios of the tests selected in this file; waits for all at the end."""
    selected = {getattr(item, "originalname", item.name) for item in request.session.items}
    crashes = bool(selected & {_hold.__name__, _resend.__name__})
    rounds = _random.__name__ in selected
    cert = loopback.certificate(tmp_path_factory)
    found = Campaign()
    folder = tmp_path_factory.mktemp("book")
    book = _imported(folder, support.write_invoices(folder / "book.csv", CUSTOMERS))
    samples = _imported(
        tmp_path_factory.mktemp("samples"), SAMPLES / "invoices-de.csv", SAMPLES / "invoices-en.csv"
    )

    def start(spec: RoundSpec) -> Future[RoundResult]:
        folder = tmp_path_factory.mktemp(f"round{spec.number}")
        return pool.submit(support.run_round, spec, folder, book, cert, found.durations)

    pool = ThreadPoolExecutor(WORKERS)
    try:
        if rounds:
            # First one uninterrupted: how long a tick takes (Durations goes on measuring
            # as rounds restart whole ticks). The rounds wait for it; the crashes do not.
            found.specs = [RoundSpec(-1, "hold", ((DAY, None), (LATER, None)))]
            found.rounds = [start(found.specs[0])]
        if crashes:
            for on_unknown in MODES:
                for point, n in CRASHES:
                    scenario = (on_unknown, point, n)
                    folder = tmp_path_factory.mktemp(f"{on_unknown}-{point}-{n}")
                    found.crashes[scenario] = pool.submit(_kill_at, folder, cert, samples, scenario)
        if rounds:
            found.specs += _specs(random.Random(SEED))
            found.rounds += [start(spec) for spec in found.specs[1:]]
        yield found
    finally:
        # Interrupted: what has not started yet never will.
        pool.shutdown(wait=True, cancel_futures=True)
        support.stop_cli_workers()


# -- 4. one tick at a time (first: it needs no scenario and runs while they do) ------------


@pytest.mark.usefixtures("campaign")
def test_a_second_tick_while_one_holds_the_lock_exits_and_sends_nothing(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp
) -> None:
    state = _imported(tmp_path / "import", SAMPLES / "invoices-de.csv")
    ws = Workspace.create(tmp_path, smtp_server.port, "hold", state)
    plan = ws.plan(DAY)
    lock = ws.state / delivery.TICK_LOCK
    # The server sits on the first mail's 250 for a while: the first tick is then inside
    # its delivery, holding the lock, however late this test gets to stop it.
    smtp_server.handler.stall_after_data(2.0)
    with ws.start_tick(DAY) as first:
        deadline = time.monotonic() + support.TIMEOUT
        while not smtp_server.messages:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.001)
        os.kill(first.pid, signal.SIGSTOP)
        try:
            assert lock.read_text().split() == [str(first.pid)]
            # Taking the lock from here must fail: the stopped tick holds it.
            with open(lock, "rb") as probe, pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            journal = (ws.state / "journal.log").read_bytes()
            second = ws.tick(DAY)
            assert second.returncode == 1, second
            assert f"another tick (pid {first.pid}) is running on" in second.stderr
            assert second.stdout == ""
            assert len(smtp_server.messages) == 1
            assert (ws.state / "journal.log").read_bytes() == journal
        finally:
            os.kill(first.pid, signal.SIGCONT)
        _, err = first.communicate(timeout=support.TIMEOUT)
    assert first.returncode == 0, err
    mails = support.received(smtp_server)
    assert sorted(m.key for m in mails) == sorted(p["key"] for p in plan)


# -- the date of a mail a person confirms (runs while the scenarios do, too) -------------


@pytest.mark.usefixtures("campaign")
def test_a_mail_a_person_confirms_is_dated_when_it_was_sent(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp
) -> None:
    """The thread dates a reminder_sent by the tick that sent the mail (its Date header),
    also when a person confirms it after a crash: the next stage is spaced from it, and
    it is the record of when the customer was reminded.

    Fails today: `outbox confirm` (cli.py `_change`, `datetime.now()`) dates it by the
    person's clock. Run with --as-of on a later day than the clock's, a mail confirmed
    on 2026-12-09 counts as sent on the clock's day, and the next tick of 2026-12-09
    sends the next stage the same day (seen in the random rounds: reminder_2 and
    final_notice to one customer on one day); on the real clock the thread says the
    Mahnung went out when the person got round to it.
    """
    state = _imported(tmp_path / "import", SAMPLES / "invoices-de.csv")
    ws = Workspace.create(tmp_path, smtp_server.port, "hold", state)
    assert ws.tick(DAY, "accepted:2").returncode == -signal.SIGKILL
    assert ws.tick(DAY).returncode == 0
    (held,) = [e for e in ws.entries(all_=False) if e["state"] == "unknown"]
    ws.cli("outbox", "confirm", held["key"])
    dated = {}
    for mail in support.received(smtp_server):
        head = BytesHeaderParser().parsebytes(mail.data.partition(b"\r\n\r\n")[0])
        date_header = parsedate_to_datetime(str(head["Date"]))
        (entry,) = [e for e in ws.entries() if e["key"] == mail.key]
        for number in entry["invoice_numbers"]:
            for event in ws.thread(number):
                if event["type"] == "reminder_sent" and event["data"]["mail_key"] == mail.key:
                    dated[mail.key, number] = (datetime.fromisoformat(event["at"]), date_header)
    acknowledged = {k: v for k, v in dated.items() if k[0] != held["key"]}
    assert len(acknowledged) >= 5 and all(at == sent for at, sent in acknowledged.values())
    confirmed = {k: v for k, v in dated.items() if k[0] == held["key"]}
    assert confirmed
    for (key, number), (at, sent) in confirmed.items():
        assert at == sent, (
            f"{number}: the reminder_sent of {key}, confirmed by a person, is dated "
            f"{at.isoformat()} (the person's clock); the mail says Date {sent.isoformat()}"
        )


# -- 1. each crash point, a person resolving what is held ---------------------------------


@pytest.mark.parametrize(("point", "n"), CRASHES)
def test_killed_at_a_crash_point_each_mail_arrives_once_under_hold(
    campaign: Campaign, point: str, n: int
) -> None:
    ws, r = campaign.crashes["hold", point, n].result()
    where = f"hold, {point}:{n}"
    support.check_day(r, "hold", where)
    support.check_threads(r, ws.thread, ws.eml, where)
    # Only the mail the kill caught between its attempt and its answer waits for a
    # person, who finds it at the server after "accepted", and not after "attempt";
    # after "queued" and "recorded" no mail is in flight and nobody is needed.
    # Fails for "recorded" since c4fdbf1 ("answers ride with the next attempt"): mail n's
    # answer is written in one unit with mail n+1's attempt, so a kill right after the
    # record leaves mail n+1 in "sending", and under hold a person must retry it.
    nth = r.keys[n - 1]
    held = [e["key"] for e in r.held]
    assert held == ([nth] if point in HELD else []), (
        f"after a kill at {point}:{n} a person had to resolve {held}; in flight at the "
        f"kill: {_in_flight(r)}"
    )
    assert r.at_kill == _states_at_kill(point, n, r.keys)
    assert r.resolved == ({nth: "confirm" if point == "accepted" else "retry"} if held else {})


_hold = test_killed_at_a_crash_point_each_mail_arrives_once_under_hold


# -- 2. the same under on_unknown: resend -------------------------------------------------


@pytest.mark.parametrize(("point", "n"), CRASHES)
def test_killed_at_a_crash_point_each_mail_arrives_once_under_resend(
    campaign: Campaign, point: str, n: int
) -> None:
    ws, r = campaign.crashes["resend", point, n].result()
    # No person; the mail caught mid-way goes again with the same Message-ID, and
    # arrives twice only if the server had taken it before the kill.
    assert r.held == [] and r.resolved == {}
    nth = r.keys[n - 1]
    assert len(r.copies(nth)) == (2 if point == "accepted" else 1)
    where = f"resend, {point}:{n}"
    support.check_day(r, "resend", where)
    support.check_threads(r, ws.thread, ws.eml, where)


_resend = test_killed_at_a_crash_point_each_mail_arrives_once_under_resend


# -- 3. random kills ----------------------------------------------------------------------


def test_random_kills_leave_nothing_twice_and_nothing_lost(campaign: Campaign) -> None:
    results: list[RoundResult] = []
    failed: list[str] = []
    for spec, future in zip(campaign.specs, campaign.rounds, strict=True):
        try:
            results.append(future.result())
        except Exception as exc:  # every round's failure, not only the first
            failed.append(f"{spec}: {exc}")
    refs = [r for r in results if r.spec.number < 0]
    killed = [r for res in results if res.spec.number >= 0 for r in res.days]
    how = [
        (what.window if isinstance(what, Timed) else "crash point", r)
        for res in results
        if res.spec.number >= 0
        for (_, what), r in zip(res.spec.days, res.days, strict=True)
    ]
    anywhere = Counter(r.phase for w, r in how if w == "tick")
    delivering = Counter(r.phase for w, r in how if w == "delivery")
    pointed = Counter(r.phase for w, r in how if w == "crash point")
    print(
        f"\n{AGAIN}: {len(killed)} killed ticks in {ROUNDS} rounds, {WORKERS} at a time, "
        f"{time.monotonic() - campaign.started:.1f} s since the file's scenarios started; "
        "a whole tick took "
        + ", ".join(f"{r.duration:.2f} s ({r.day})" for ref in refs for r in ref.days)
    )
    for title, counts in (
        ("SIGKILL anywhere in the tick", anywhere),
        ("SIGKILL while it delivers", delivering),
        ("crash point", pointed),
    ):
        print(f"  {title}: " + ", ".join(f"{counts[p]} {p}" for p in support.PHASES))
    print(f"  restarts per kill: {dict(Counter(len(r.restarts) for r in killed))}")
    print(f"  resolved: {dict(Counter(a for r in killed for a in r.resolved.values()))}")
    resent = [
        k
        for res in results
        if res.spec.on_unknown == "resend"
        for r in res.days
        for k in r.keys
        if len(r.copies(k)) > 1
    ]
    print(f"  received twice in the resend rounds (same Message-ID): {len(resent)}")
    temps = [t for res in results for t in res.temps]
    print(f"  temp files left behind in {sum(bool(res.temps) for res in results)} rounds: {temps}")
    print(
        f"  of {sum(len(r.plan) for r in killed)} mails compared, "
        f"{sum(res.dotted for res in results)} had a line starting with '.'"
    )
    assert not failed, f"{AGAIN}:\n" + "\n".join(failed)
    (ref,) = refs
    assert [len(r.plan) for r in ref.days] == [CUSTOMERS, CUSTOMERS]
    # The premise: kills landed before, between and inside the deliveries.
    timed = anywhere + delivering
    assert timed["before the batch was queued"], timed
    assert sum(timed[p] for p in support.PHASES[2:6]) >= 5, timed
    points = {r.kill.crash.partition(":")[0] for r in killed if r.kill and r.kill.crash}
    assert points == set(faults.POINTS), AGAIN


_random = test_random_kills_leave_nothing_twice_and_nothing_lost
