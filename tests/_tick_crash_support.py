"""Helpers for test_tick_crash.py: run the real `mahnwerk tick`, kill it, look at what it left.

Only `tick` runs as a process of its own (it is what gets killed); the other commands
(`import`, `plan`, `outbox`, `thread`, `outbox confirm|retry`) go through the same click
entry point in one worker process started once: the CLI without 0.6 s of start-up per
call, and without sharing sys.stdout with pytest and the other threads.

`run_day` takes a state dir through one day: a tick that dies (at a crash point, or by
SIGKILL from here), restarts until a tick exits normally, a person resolving what is
held as "unknown" (and a tick after that), and what the server and the store show at
the end; `check_day` and `check_threads` say what must hold then. `run_round` is a
fresh state dir with its own server taken through one or more such days.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from email.parser import BytesHeaderParser
from pathlib import Path
from statistics import median
from typing import Any, Literal, Self

import orjson
from click.testing import CliRunner

import mahnwerk.cli
import smtp_server as loopback
from _workspace import smtp_section, write_rules
from mahnwerk import faults
from mahnwerk.config import load_rules
from mahnwerk.settings import resolve_as_of
from mahnwerk.store import TinyDBStore, messages
from mahnwerk.store.atomic import TMP_SUFFIX

OnUnknown = Literal["hold", "resend"]
# Longer than any tick here takes, even on a slow, loaded machine.
TIMEOUT = 120.0
# How often a killed tick is restarted at most before the round counts as stuck.
RESTARTS = 3
# Where a kill landed, from what the store and the server showed right after it.
PHASES = (
    "finished before the kill",
    "before the batch was queued",
    "queued, before the first attempt",
    "attempt recorded, payload not taken",
    "server took it, not recorded",
    "between two mails",
    "after the last mail was recorded",
)


# -- what the server got ---------------------------------------------------------------


HEADERS = ("X-Mahnwerk-Key", "Message-ID")


@dataclass(frozen=True)
class Mail:
    """One message as the server accepted it."""

    key: str
    message_id: str
    data: bytes


def parse(data: bytes) -> Mail:
    head = BytesHeaderParser().parsebytes(data.partition(b"\r\n\r\n")[0])
    # A header may be folded onto more lines; neither the key nor the id has spaces.
    key, message_id = ("".join(str(head[name]).split()) for name in HEADERS)
    return Mail(key, message_id, data)


def received(server: loopback.LoopbackSmtp, start: int = 0) -> list[Mail]:
    return [parse(m.data) for m in list(server.messages)[start:]]


# -- invoice files -----------------------------------------------------------------------

HEADER = (
    "invoice_number,customer_id,customer_name,email,amount,currency,issue_date,due_date,language"
)


def write_invoices(path: Path, customers: int) -> Path:
    """An international-form CSV in which every customer is due a mail on 2026-11-25 and
    again on 2026-12-09: pre_due then reminder_1, reminder_1 then reminder_2, or both
    kinds of invoice in one mail."""
    rows = [HEADER]
    soon, late, long_ago = date(2026, 12, 2), date(2026, 11, 10), date(2026, 9, 30)
    for c in range(customers):
        cid = f"T-{c:04d}"
        name = f"Kunde {c} Müller" if c % 2 else f"Customer {c} Ltd"
        lang = "de" if c % 2 else "en"
        dues = {0: [soon], 1: [late, soon], 2: [long_ago]}[c % 3]
        for j, due in enumerate(dues):
            issue = due - timedelta(days=30)
            rows.append(
                f"INV-{c:04d}-{j},{cid},{name},c{c}@kunde.example,{100 + c}.{j}5,EUR,"
                f"{issue.isoformat()},{due.isoformat()},{lang}"
            )
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


# -- the workspace -----------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    exit_code: int
    stdout: bytes
    stderr: str


def _pinned(moment: datetime) -> type[datetime]:
    """datetime, with now() at `moment`."""

    class Pinned(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Self:
            return cls.fromtimestamp(moment.timestamp(), tz)

    return Pinned


def _run_cli(args: list[str], at: datetime | None) -> Output:
    """One command, in the process of _cli_workers(); `at` pins the clock it reads."""
    names = vars(mahnwerk.cli)
    clock = names["datetime"]
    if at is not None:
        names["datetime"] = _pinned(at)
    try:
        result = CliRunner().invoke(mahnwerk.cli.main, args, catch_exceptions=False)
    finally:
        names["datetime"] = clock
    return Output(result.exit_code, result.stdout_bytes, result.stderr)


# CliRunner swaps sys.stdout, and so does pytest between tests (in this process, a command
# run from a scenario's thread then and there lost its output): commands run in a process
# of their own, started once.
_workers: ProcessPoolExecutor | None = None
_workers_lock = threading.Lock()


def _cli_workers() -> ProcessPoolExecutor:
    global _workers
    with _workers_lock:
        if _workers is None:
            # Not forked: this process has threads (servers, the scenarios' pool).
            _workers = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        return _workers


def stop_cli_workers() -> None:
    global _workers
    with _workers_lock:
        if _workers is not None:
            _workers.shutdown(wait=True, cancel_futures=True)
            _workers = None


def child_env(crash: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STATE_DIRECTORY", faults.ENV)}
    if crash is not None:
        env[faults.ENV] = crash
    return env


@dataclass(frozen=True)
class Workspace:
    config: Path
    state: Path

    @classmethod
    def create(
        cls, folder: Path, port: int, on_unknown: OnUnknown, template: Path | None = None
    ) -> Workspace:
        """rules.yaml pointed at the server; the state a copy of `template` (imported once)."""
        config = write_rules(
            folder,
            smtp=smtp_section(port, rate_per_minute=10_000),
            outbox={"on_unknown": on_unknown},
            imap=None,
        )
        state = folder / "state"
        if template is not None:
            shutil.copytree(template, state)
        return cls(config, state)

    def _global(self) -> list[str]:
        return ["--config", str(self.config), "--state-dir", str(self.state)]

    def tick_argv(self, day: date) -> list[str]:
        return [sys.executable, "-m", "mahnwerk", *self._global(), "tick", "--as-of", str(day)]

    def tick(self, day: date, crash: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.tick_argv(day),
            env=child_env(crash),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )

    def start_tick(self, day: date) -> subprocess.Popen[str]:
        # Its report is not read: a full stdout pipe would stop it before the kill.
        return subprocess.Popen(
            self.tick_argv(day),
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def cli(self, *args: str, code: int = 0, at: datetime | None = None) -> Output:
        """A command through mahnwerk's CLI, in the worker process; `at` pins the clock it
        reads (the commands without --as-of: import, outbox confirm|retry|...)."""
        result = _cli_workers().submit(_run_cli, [*self._global(), *args], at).result()
        assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
        return result

    def as_of(self, day: date) -> datetime:
        """What `--as-of DAY` means to a tick: the day at the opening of the send window."""
        return resolve_as_of(str(day), load_rules(self.config).rules)

    def cli_json(self, *args: str) -> Any:
        return orjson.loads(self.cli(*args).stdout)

    def import_csv(self, path: Path) -> None:
        self.cli("import", str(path))

    def plan(self, day: date) -> list[dict[str, Any]]:
        planned: list[dict[str, Any]] = self.cli_json("plan", "--as-of", str(day), "--json")
        return planned

    def entries(self, all_: bool = True) -> list[dict[str, Any]]:
        """`mahnwerk outbox [--all] --json`: the entries."""
        listing = self.cli_json("outbox", *(["--all"] if all_ else []), "--json")
        found: list[dict[str, Any]] = listing["entries"]
        return found

    def thread(self, invoice: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.cli_json("thread", invoice, "--json")
        return events

    def eml(self, sha256: str) -> bytes:
        """The file a thread's `eml` hash names, which must lie under state/messages/."""
        path = messages.path_of(self.state, sha256)
        assert path.is_relative_to(self.state / messages.MESSAGES), path
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha256, f"{path} does not match its name"
        return data

    def threads(self) -> Callable[[str], list[dict[str, Any]]]:
        """Thread reader straight from the store: one open for hundreds of invoices
        (`mahnwerk thread` re-reads rules and store per call)."""
        store = TinyDBStore(self.state)
        try:
            view = store.view()
            cache = {n: [e.to_json() for e in store.thread(n)] for n in view.numbers()}
        finally:
            store.close()
        return lambda n: cache[n]


# -- one round ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Kill:
    """How a day's first tick dies: at a crash point ("attempt:7"), or by os.kill from
    here `delay` seconds after it started (or after its first mail reached the server)."""

    crash: str | None = None
    delay: float | None = None
    after_first_mail: bool = False

    def __str__(self) -> str:
        if self.crash:
            return f"crash at {self.crash}"
        since = "its first mail reached the server" if self.after_first_mail else "it started"
        return f"SIGKILL {self.delay:.3f} s after {since}"


@dataclass
class DayResult:
    day: date
    kill: Kill | None
    plan: list[dict[str, Any]]  # `mahnwerk plan --json` before the first tick
    duration: float  # wall time of the first tick, until it exited or died
    killed_rc: int
    killed_stderr: str
    at_kill: dict[str, str]  # key -> state, this day's entries right after the kill
    taken_at_kill: int  # messages the server had taken that day when the tick died
    restarts: list[int] = field(default_factory=list)  # return codes; the last is 0
    held: list[dict[str, Any]] = field(default_factory=list)  # "unknown" after the restart
    resolved: dict[str, str] = field(default_factory=dict)  # key -> "confirm" | "retry"
    final_open: list[dict[str, Any]] = field(default_factory=list)  # `mahnwerk outbox --json`
    final_all: dict[str, dict[str, Any]] = field(default_factory=dict)  # `outbox --all --json`
    mails: list[Mail] = field(default_factory=list)  # what the server took that day
    plan_after: list[dict[str, Any]] = field(default_factory=list)  # the same day, at the end
    phase: str = ""

    @property
    def keys(self) -> list[str]:
        """The planned mails in the order the tick delivers them (queued together: by key)."""
        return sorted(p["key"] for p in self.plan)

    def copies(self, key: str) -> list[Mail]:
        return [m for m in self.mails if m.key == key]


@dataclass(frozen=True)
class Timed:
    """SIGKILL after `fraction` of a typical tick ("tick"), or after `fraction` of its
    deliveries once its first mail reached the server ("delivery")."""

    fraction: float
    window: Literal["tick", "delivery"] = "tick"

    def __str__(self) -> str:
        return f"{self.fraction:.3f} of the {self.window}"


class Durations:
    """How long an uninterrupted tick takes on each day, and how long it delivers (from
    its first mail at the server to its last), from the latest ones seen.

    Measured as the rounds go (reference ticks, and restarts that had to do the whole
    tick again), so that timed kills keep spreading over a whole tick when the machine
    gets busier or quieter.
    """

    def __init__(self, keep: int = 8) -> None:
        self._keep = keep
        self._seen: dict[date, deque[float]] = {}
        self._delivering: dict[date, deque[float]] = {}
        self._abandoned = False
        self._changed = threading.Condition()

    def observe(self, day: date, seconds: float, mails: tuple[float, float] | None = None) -> None:
        """A whole tick took `seconds`; the server had its first and last mails at `mails`."""
        with self._changed:
            self._seen.setdefault(day, deque(maxlen=self._keep)).append(seconds)
            if mails is not None:
                first, last = mails
                self._delivering.setdefault(day, deque(maxlen=self._keep)).append(last - first)
            self._changed.notify_all()

    def abandon(self) -> None:
        """The reference failed: nothing will be measured, nobody should wait for it."""
        with self._changed:
            self._abandoned = True
            self._changed.notify_all()

    def kill(self, day: date, timed: Timed) -> Kill:
        with self._changed:
            self._changed.wait_for(lambda: day in self._delivering or self._abandoned, TIMEOUT)
            assert day in self._delivering, f"no uninterrupted tick on {day} to measure"
            if timed.window == "tick":
                return Kill(delay=timed.fraction * median(self._seen[day]))
            delivering = median(self._delivering[day])
            return Kill(delay=timed.fraction * delivering, after_first_mail=True)


def _watched(
    ws: Workspace, server: loopback.LoopbackSmtp, day: date
) -> tuple[int, str, tuple[float, float] | None]:
    """An uninterrupted tick, watching the server: its return code, stderr, and when
    (seconds after its start) the server had the first and the last of its mails."""
    before = len(server.messages)
    began = time.monotonic()
    first = last = 0.0
    with ws.start_tick(day) as child:
        seen = before
        while child.poll() is None:
            now = len(server.messages)
            if now > seen:
                last = time.monotonic() - began
                first = first or last
                seen = now
            time.sleep(0.001)
        _, stderr = child.communicate(timeout=TIMEOUT)
    return child.returncode, stderr, (first, last) if first else None


def run_day(
    ws: Workspace,
    server: loopback.LoopbackSmtp,
    day: date,
    kill: Kill | None,
    on_unknown: OnUnknown,
    durations: Durations | None = None,
) -> DayResult:
    """Kill the day's tick as told, restart it until it exits normally, then act as a
    person: confirm what the server has, retry what it has not, and tick once more."""
    start = len(server.messages)
    plan = ws.plan(day)
    keys = {p["key"] for p in plan}
    began = time.monotonic()
    mails = None
    if kill is None:
        rc, stderr, mails = _watched(ws, server, day)
    elif kill.crash is not None:
        proc = ws.tick(day, kill.crash)
        rc, stderr = proc.returncode, proc.stderr
    else:
        assert kill.delay is not None
        with ws.start_tick(day) as child:
            while kill.after_first_mail and child.poll() is None and len(server.messages) == start:
                time.sleep(0.0005)
            time.sleep(kill.delay)
            if child.poll() is None:
                # Not reaped yet: even if it exits right now, the pid is still its own.
                os.kill(child.pid, signal.SIGKILL)
            _, stderr = child.communicate(timeout=TIMEOUT)
        rc = child.returncode
    duration = time.monotonic() - began
    taken = len(server.messages) - start
    at_kill = {e["key"]: e["state"] for e in ws.entries() if e["key"] in keys}
    result = DayResult(day, kill, plan, duration, rc, stderr, at_kill, taken)
    if kill is None and durations is not None:
        durations.observe(day, duration, mails)
    if rc != 0:
        assert rc == -signal.SIGKILL, (rc, stderr)
        while True:
            began = time.monotonic()
            code, stderr, mails = _watched(ws, server, day)
            result.restarts.append(code)
            if code == 0:
                break
            assert len(result.restarts) < RESTARTS, (result.restarts, stderr)
        if not at_kill and len(result.restarts) == 1 and durations is not None:
            # Killed before it queued anything: the restart did the whole tick.
            durations.observe(day, time.monotonic() - began, mails)
    listed = ws.entries(all_=False)
    result.held = [e for e in listed if e["state"] == "unknown"]
    result.mails = received(server, start)
    ids = {m.message_id for m in result.mails}
    for entry in result.held:
        action = "confirm" if entry["message_id"] in ids else "retry"
        # The person acts on the day of the ticks: `outbox confirm` has no --as-of, and
        # it dates the mail's reminder_sent by its clock (see test_tick_crash.py).
        ws.cli("outbox", action, entry["key"], at=ws.as_of(day))
        result.resolved[entry["key"]] = action
    if result.resolved:
        last = ws.tick(day)
        assert last.returncode == 0, last.stderr
        result.mails += received(server, start + len(result.mails))
        listed = ws.entries(all_=False)
    result.final_open = listed
    result.final_all = {e["key"]: e for e in ws.entries()}
    result.plan_after = ws.plan(day)
    result.phase = _phase(result, on_unknown)
    return result


def _phase(r: DayResult, on_unknown: OnUnknown) -> str:
    if r.killed_rc == 0:
        return "finished before the kill"
    if not r.at_kill:
        return "before the batch was queued"
    states = Counter(r.at_kill.values())
    sending = [k for k, s in r.at_kill.items() if s == "sending"]
    if sending:
        # Under hold the person found it at the server; under resend the restart sent it
        # again, so a second copy means the killed tick had delivered one.
        had = any(
            r.resolved.get(k) == "confirm" if on_unknown == "hold" else len(r.copies(k)) > 1
            for k in sending
        )
        return "server took it, not recorded" if had else "attempt recorded, payload not taken"
    if states["queued"] == len(r.at_kill):
        return "queued, before the first attempt"
    if states["sent"] == len(r.at_kill):
        return "after the last mail was recorded"
    return "between two mails"


# -- what must hold afterwards -------------------------------------------------------------


def check_day(r: DayResult, on_unknown: OnUnknown, where: str) -> None:
    """Nothing twice, nothing lost, nothing left half way.

    Every (customer, stage) the plan had was received with one Message-ID, the one
    the outbox gave it; exactly once, except under `resend` for the one mail the kill
    caught between its attempt record and its answer (the server may have had it).
    """
    at = f"{where}, {r.day}, {r.kill}, phase {r.phase!r}"
    assert r.plan, f"{at}: nothing planned"
    assert all(p["action"] == "email" for p in r.plan), at
    pairs = [(p["customer_id"], p["stage"]) for p in r.plan]
    assert len(set(pairs)) == len(pairs), f"{at}: a (customer, stage) twice in the plan"
    stray = {m.key for m in r.mails} - set(r.keys)
    assert not stray, f"{at}: received mails the plan did not have: {sorted(stray)}"
    for key in r.keys:
        got = r.copies(key)
        entry = r.final_all.get(key)
        assert entry is not None, f"{at}: {key} never queued"
        assert entry["state"] == "sent", f"{at}: {key} ends {entry['state']}"
        assert got, f"{at}: {key} lost: the server never received it"
        assert {m.message_id for m in got} == {entry["message_id"]}, f"{at}: {key} ids"
        assert len({m.data for m in got}) == 1, f"{at}: {key} sent with different bytes"
        may_repeat = on_unknown == "resend" and r.at_kill.get(key) == "sending"
        assert len(got) == 1 or (may_repeat and len(got) == 2), (
            f"{at}: {key} received {len(got)} times"
        )
    assert r.final_open == [], f"{at}: left in the outbox: {r.final_open}"
    assert r.plan_after == [], f"{at}: still due after the day's ticks: {r.plan_after}"
    if on_unknown == "resend":
        assert r.held == [] and r.resolved == {}, f"{at}: a person was needed under resend"


def check_threads(
    r: DayResult,
    thread: Callable[[str], list[dict[str, Any]]],
    eml: Callable[[str], bytes],
    where: str,
) -> int:
    """Each invoice of each mail has one reminder_sent for its stage (its own: a not yet
    due invoice listed in a reminder_1 mail is at pre_due), naming the mail's key, the
    Message-ID and the stored .eml of what the server received, byte for byte.

    Returns how many of the compared messages have a line that starts with "." (the
    SMTP transparency the server undid)."""
    dotted = 0
    for p in r.plan:
        mail = r.copies(p["key"])[0]
        for item in p["invoices"]:
            number, stage = item["invoice_number"], item["stage"]
            at = f"{where}, {r.day}, {r.kill}: {number} {stage}"
            sent = [e["data"] for e in thread(number) if e["type"] == "reminder_sent"]
            assert [d["stage"] for d in sent].count(stage) == 1, f"{at}: {sent}"
            (data,) = [d for d in sent if d["mail_key"] == p["key"]]
            assert data["stage"] == stage, at
            assert data["message_id"] == mail.message_id, at
            assert eml(data["eml"]) == mail.data, f"{at}: stored .eml differs from what was sent"
        dotted += b"\r\n." in mail.data
    return dotted


# -- rounds --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundSpec:
    """One fresh state dir, taken through `days`, each with how its first tick dies: at a
    crash point ("attempt:7"), by SIGKILL after a while (Timed), or not (None)."""

    number: int
    on_unknown: OnUnknown
    days: tuple[tuple[date, str | Timed | None], ...]

    def __str__(self) -> str:
        kills = ", ".join(f"{day}: {what or 'not killed'}" for day, what in self.days)
        return f"round {self.number} ({self.on_unknown}; {kills})"


@dataclass
class RoundResult:
    spec: RoundSpec
    days: list[DayResult]
    dotted: int  # compared messages with a line that needed dot-stuffing
    temps: list[str] = field(default_factory=list)  # temp files a kill left in the state dir


def run_round(
    spec: RoundSpec, folder: Path, template: Path, cert: loopback.Certificate, durations: Durations
) -> RoundResult:
    """Run and check one round on its own server; an AssertionError names the round."""
    try:
        with loopback.running(cert) as server:
            ws = Workspace.create(folder, server.port, spec.on_unknown, template)
            result = RoundResult(spec, [], 0)
            for day, what in spec.days:
                kill = Kill(crash=what) if isinstance(what, str) else None
                if isinstance(what, Timed):
                    kill = durations.kill(day, what)
                r = run_day(ws, server, day, kill, spec.on_unknown, durations)
                result.days.append(r)
                check_day(r, spec.on_unknown, str(spec))
                result.dotted += check_threads(r, ws.threads(), ws.eml, str(spec))
            result.temps = sorted(p.name for p in ws.state.rglob(f".*{TMP_SUFFIX}"))
    except BaseException:
        if all(what is None for _, what in spec.days):
            durations.abandon()
        raise
    return result
