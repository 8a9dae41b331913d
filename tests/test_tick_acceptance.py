"""Acceptance for `mahnwerk tick`: the real process, the shipped rules, the samples, real SMTP.

Every command runs as `python -m mahnwerk` in a subprocess, against the aiosmtpd
server of tests/smtp_server.py on loopback. What a test expects is derived from
rules.yaml (stage days, contact limits, notify address) and from what `plan`
says, not from a list of dates written down here.

Speed: every CLI call is a process (~0.6 s, mostly imports). The eight-week run
(one tick per working day, about 50 processes) is one scenario shared by several
tests. It runs on a thread of its own from the start
of this module, while the fault tests, which come first in the file, use the
other core; the scenario's tests at the end then only wait for its result.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

import smtp_server as loopback
from _workspace import SAMPLES, load, smtp_section, write_rules
from mahnwerk.csvparse import parse_invoices
from mahnwerk.models import Invoice
from mahnwerk.rules import Policy, Rules
from mahnwerk.store import messages

smtp_server = loopback.smtp_server

SAMPLE_FILES = ("invoices-de.csv", "invoices-en.csv")
# The day the samples were made for (samples/README.md), a Wednesday.
START = date(2026, 11, 25)
# Ticks every working day through this day: the first invoices run through every stage.
END = START + timedelta(weeks=8)
ONE_DAY = timedelta(days=1)
SATURDAY = date(2026, 11, 28)
# German public holidays (all states) that fall on a weekday of the run.
HOLIDAYS = {date(2026, 12, 25): "Christmas Day", date(2027, 1, 1): "New Year's Day"}
# Ticked to show the window is closed; the other holidays are skipped like weekends.
CHRISTMAS = date(2026, 12, 25)
# Due 2026-11-27: pre_due on the first day, then every stage within the eight weeks.
PROOF_INVOICE = "RE-2026-0467"
# A customer with one invoice, mailed on the first day: the one the fault tests hurt.
VICTIM = "C-2002"
VICTIM_INVOICE = "INV-2026-1214"
DONE = ("reminder_sent", "escalated")
SCENARIO_TIMEOUT = 600.0


# -- running mahnwerk --------------------------------------------------------------------


@dataclass(frozen=True)
class Workspace:
    """A rules file and a state directory; runs the real CLI on them."""

    config: Path
    state: Path

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("STATE_DIRECTORY", "MAHNWERK_CRASH_AT", "CREDENTIALS_DIRECTORY")
        }
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "mahnwerk",
                "--config",
                str(self.config),
                "--state-dir",
                str(self.state),
                *args,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if ok:
            assert proc.returncode == 0, f"mahnwerk {' '.join(args)}: {proc.stderr}"
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def tick(self, as_of: str) -> dict[str, Any]:
        report: dict[str, Any] = self.json("tick", "--as-of", as_of)
        return report

    def outbox(self, *args: str) -> dict[str, Any]:
        listing: dict[str, Any] = self.json("outbox", *args)
        return listing

    def thread(self, number: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.json("thread", number)
        return events


@dataclass(frozen=True)
class Mail:
    """One message the server accepted, with the headers the tests compare."""

    key: str
    to: str
    to_header: str
    subject: str
    message_id: str
    rcpt: tuple[str, ...]
    data: bytes

    @classmethod
    def of(cls, received: loopback.Received) -> Mail:
        msg = message_from_bytes(received.data, policy=policy.default)
        return cls(
            key=str(msg["X-Mahnwerk-Key"]),
            to=parseaddr(str(msg["To"]))[1],
            to_header=str(msg["To"]),
            subject=str(msg["Subject"]),
            message_id=str(msg["Message-ID"]),
            rcpt=received.rcpt_tos,
            data=received.data,
        )

    def text(self) -> str:
        msg = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        body = msg.get_body(("plain",))
        assert isinstance(body, EmailMessage)
        return str(body.get_content())


def received_since(server: loopback.LoopbackSmtp, before: int) -> list[Mail]:
    return [Mail.of(m) for m in server.messages[before:]]


def steps(report: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """What happened to one mail in a tick, after it was queued (that is a step of its own)."""
    return [s for s in report["steps"] if s["key"] == key and s["result"] != "queued"]


def results(report: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for s in report["steps"]:
        out[s["result"]].append(s["key"])
    return dict(out)


def rewrite_sample(
    name: str, folder: Path, change: Callable[[dict[str, str]], dict[str, str]]
) -> Path:
    """A sample file as the next export would write it, with `change` applied to each row."""
    delimiter = ";" if name.endswith("-de.csv") else ","
    text = (SAMPLES / name).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    writer.writerows(change(dict(r)) for r in rows)
    path = folder / f"changed-{name}"
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


# -- a store with the samples imported, copied for each fault test ----------------------


@dataclass(frozen=True)
class Imported:
    state: Path
    # `plan --json` on START: what the first tick queues.
    plan: list[dict[str, Any]]

    def key(self, customer: str) -> str:
        (key,) = [m["key"] for m in self.plan if m["customer_id"] == customer]
        return str(key)

    def skip(self, customer: str) -> int:
        """How many mails go out before this customer's on the first tick (oldest, then key)."""
        return sorted(m["key"] for m in self.plan).index(self.key(customer))

    def to(self, customer: str) -> str:
        (to,) = [m["to"] for m in self.plan if m["customer_id"] == customer]
        return str(to)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Imported:
    folder = tmp_path_factory.mktemp("imported")
    ws = Workspace(write_rules(folder, smtp=smtp_section(9)), folder / "state")
    for name in SAMPLE_FILES:
        ws.run("import", str(SAMPLES / name))
    return Imported(ws.state, ws.json("plan", "--as-of", START.isoformat()))


def workspace(
    tmp_path: Path, server: loopback.LoopbackSmtp, imported: Imported, **smtp: Any
) -> Workspace:
    state = tmp_path / "state"
    shutil.copytree(imported.state, state)
    return Workspace(write_rules(tmp_path, smtp=smtp_section(server.port, **smtp)), state)


# -- 4. faults, through the real process ----------------------------------------------


def test_a_451_at_rcpt_is_retried_after_next_at_and_delivered_exactly_once(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp, imported: Imported
) -> None:
    ws = workspace(tmp_path, smtp_server, imported)
    key = imported.key(VICTIM)
    smtp_server.handler.fail("RCPT", 451, "4.7.1 greylisted", skip=imported.skip(VICTIM))

    first = ws.tick(START.isoformat())
    (step,) = steps(first, key)
    assert step["result"] == "retry" and "retry at" in step["detail"], step
    assert len(results(first)["sent"]) == len(imported.plan) - 1
    assert key not in {m.key for m in received_since(smtp_server, 0)}
    (entry,) = [e for e in ws.outbox()["entries"] if e["key"] == key]
    assert entry["state"] == "retry" and entry["last"]["code"] == 451
    queued_at = datetime.fromisoformat(entry["queued_at"])
    next_at = datetime.fromisoformat(entry["next_at"])
    assert next_at > queued_at

    before = len(smtp_server.messages)
    early = ws.tick((queued_at + (next_at - queued_at) / 2).isoformat())
    assert steps(early, key) == [] and len(smtp_server.messages) == before

    due = ws.tick((next_at + timedelta(seconds=1)).isoformat())
    assert [s["result"] for s in steps(due, key)] == ["sent"]
    later = ws.tick(f"{START.isoformat()}T15:00")
    assert later["steps"] == []
    got = [m for m in received_since(smtp_server, 0) if m.key == key]
    assert [m.message_id for m in got] == [entry["message_id"]]
    types = [e["type"] for e in ws.thread(VICTIM_INVOICE)]
    assert types.count("reminder_sent") == 1
    assert types.index("delivery_deferred") < types.index("reminder_sent")


@dataclass(frozen=True)
class Refused:
    """The store after the first tick, in which the server refused the victim's address."""

    state: Path
    report: dict[str, Any]
    received: list[Mail]
    key: str
    address: str

    def workspace(self, tmp_path: Path, server: loopback.LoopbackSmtp) -> Workspace:
        state = tmp_path / "state"
        shutil.copytree(self.state, state)
        return Workspace(write_rules(tmp_path, smtp=smtp_section(server.port)), state)


@pytest.fixture(scope="module")
def refused(imported: Imported, tmp_path_factory: pytest.TempPathFactory) -> Refused:
    """One first tick with a 550 at RCPT for the victim, shared by the tests below."""
    folder = tmp_path_factory.mktemp("refused")
    with loopback.running(loopback.certificate(tmp_path_factory)) as server:
        ws = workspace(folder, server, imported)
        server.handler.fail("RCPT", 550, "5.1.1 no such user", skip=imported.skip(VICTIM))
        report = ws.tick(START.isoformat())
        received = received_since(server, 0)
    return Refused(ws.state, report, received, imported.key(VICTIM), imported.to(VICTIM))


def test_a_550_at_rcpt_fails_the_mail_blocks_the_address_and_plan_says_why(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp, refused: Refused, imported: Imported
) -> None:
    (step,) = steps(refused.report, refused.key)
    assert step["result"] == "failed" and "550" in step["detail"], step
    assert len(results(refused.report)["sent"]) == len(imported.plan) - 1
    assert refused.address not in {m.to for m in refused.received}
    ws = refused.workspace(tmp_path, smtp_server)
    box = ws.outbox()
    (entry,) = box["entries"]
    assert (entry["key"], entry["state"], entry["last"]["code"]) == (refused.key, "failed", 550)
    (blocked,) = box["undeliverable"]
    assert (blocked["email"], blocked["customer_id"]) == (refused.address, VICTIM)
    assert "550" in blocked["response"]

    next_day = (START + ONE_DAY).isoformat()
    report = ws.tick(next_day)
    assert [s for s in report["steps"] if s["customer_id"] == VICTIM] == []
    assert [m for m in received_since(smtp_server, 0) if m.to == refused.address] == []
    text = ws.run("plan", "--as-of", next_day).stdout
    (why,) = [ln for ln in text.splitlines() if ln.startswith(f"held back: {VICTIM} ")]
    assert VICTIM_INVOICE in why and ("undeliverable" in why or "failed" in why), text


def test_outbox_unblock_lets_the_next_mail_go_to_the_address_again(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp, refused: Refused
) -> None:
    ws = refused.workspace(tmp_path, smtp_server)
    proc = ws.run("outbox", "unblock", refused.address)
    assert "mail may go there again from the next tick" in proc.stdout
    assert ws.outbox()["undeliverable"] == []

    next_day = (START + ONE_DAY).isoformat()
    report = ws.tick(next_day)
    got = received_since(smtp_server, 0)
    if not any(m.to == refused.address for m in got):
        plan = ws.run("plan", "--as-of", next_day).stdout
        pytest.fail(f"no mail to {refused.address} after `outbox unblock`; plan says:\n{plan}")
    assert [s["result"] for s in report["steps"] if s["customer_id"] == VICTIM] == [
        "queued",
        "sent",
    ]
    assert [m.to for m in got] == [refused.address]


def test_importing_a_corrected_address_lets_mail_go_to_the_new_one(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp, refused: Refused
) -> None:
    ws = refused.workspace(tmp_path, smtp_server)
    new = "accounts-payable@harbourfinch.example"

    def corrected(row: dict[str, str]) -> dict[str, str]:
        return {**row, "email": new} if row["customer_id"] == VICTIM else row

    changed = rewrite_sample("invoices-en.csv", tmp_path, corrected)
    summary = ws.json("import", str(changed))
    assert (summary["new"], summary["updated"]) == (0, 1)

    report = ws.tick((START + ONE_DAY).isoformat())
    mine = {s["result"]: s for s in report["steps"] if s["customer_id"] == VICTIM}
    assert set(mine) == {"cancelled", "queued", "sent"}, report["steps"]
    assert mine["cancelled"]["key"] == refused.key
    assert f"changed to {new}" in mine["cancelled"]["detail"]
    got = received_since(smtp_server, 0)
    assert [(m.to, m.rcpt) for m in got] == [(new, (new,))]
    box = ws.outbox()
    assert box["entries"] == []
    # The old address was refused and stays so; the new one is not affected.
    assert [a["email"] for a in box["undeliverable"]] == [refused.address]


def test_a_lost_reply_is_held_for_a_person_who_confirms_or_retries_it(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp, imported: Imported
) -> None:
    ws = workspace(tmp_path, smtp_server, imported, timeout_seconds=1)
    # The server takes the first two messages but answers only after the client gave up.
    smtp_server.handler.stall_after_data(3)
    smtp_server.handler.stall_after_data(3)
    first = ws.tick(START.isoformat())
    unknown = sorted(results(first)["unknown"])
    assert len(unknown) == 2, first["steps"]
    held, resent = unknown
    listed = {e["key"]: e for e in ws.outbox()["entries"]}
    assert set(listed) == set(unknown)
    assert {e["state"] for e in listed.values()} == {"unknown"}

    proc = ws.run("outbox", "confirm", held)
    assert "confirmed as delivered by a person" in proc.stdout
    done = [
        e for e in ws.thread(listed[held]["invoice_numbers"][0]) if e["type"] == "reminder_sent"
    ]
    assert [e["data"]["message_id"] for e in done] == [listed[held]["message_id"]]

    ws.run("outbox", "retry", resent)
    again = ws.tick(f"{START.isoformat()}T10:00")
    assert [(s["key"], s["result"]) for s in again["steps"]] == [(resent, "sent")]
    copies = [m for m in received_since(smtp_server, 0) if m.key == resent]
    assert [m.message_id for m in copies] == [listed[resent]["message_id"]] * 2
    assert copies[0].data == copies[1].data
    assert [m.key for m in received_since(smtp_server, 0)].count(held) == 1
    (number,) = listed[resent]["invoice_numbers"]
    types = [e["type"] for e in ws.thread(number)]
    assert types.count("reminder_sent") == 1
    assert types.index("delivery_unknown") < types.index("reminder_sent")
    states = {e["key"]: e["state"] for e in ws.outbox("--all")["entries"]}
    assert (states[held], states[resent]) == ("sent", "sent")
    assert set(states.values()) == {"sent"}  # nothing left for `outbox` to list


# -- 5. a paid invoice is not chased ----------------------------------------------------


@pytest.mark.parametrize("how", ["reimport-as-paid", "open-items"])
def test_a_mail_waiting_for_a_retry_is_cancelled_once_its_invoice_is_paid(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp, imported: Imported, how: str
) -> None:
    ws = workspace(tmp_path, smtp_server, imported)
    key = imported.key(VICTIM)
    smtp_server.handler.fail("RCPT", 451, "4.3.0 try again later", skip=imported.skip(VICTIM))
    first = ws.tick(START.isoformat())
    assert [s["result"] for s in steps(first, key)] == ["retry"]

    if how == "reimport-as-paid":

        def paid(row: dict[str, str]) -> dict[str, str]:
            return {**row, "status": "paid"} if row["invoice_number"] == VICTIM_INVOICE else row

        summary = ws.json("import", str(rewrite_sample("invoices-en.csv", tmp_path, paid)))
        assert summary["updated"] == 1
    else:
        export = tmp_path / "offene-posten.csv"
        export.write_text(_open_items_without(VICTIM_INVOICE), encoding="utf-8")
        summary = ws.json("import", str(export), "--open-items")
        assert (summary["marked_paid"], summary["updated"]) == (1, 0)

    before = len(smtp_server.messages)
    # Hours after the retry was due (the backoff is a minute, at most an hour).
    report = ws.tick(f"{START.isoformat()}T14:00")
    assert [(s["key"], s["result"]) for s in report["steps"]] == [(key, "cancelled")]
    assert f"{VICTIM_INVOICE} is paid" in report["steps"][0]["detail"]
    assert len(smtp_server.messages) == before
    assert key not in {m.key for m in received_since(smtp_server, 0)}
    states = {e["key"]: e["state"] for e in ws.outbox("--all")["entries"]}
    assert states[key] == "cancelled"
    assert set(states.values()) == {"sent", "cancelled"}  # nothing left for `outbox` to list
    types = [e["type"] for e in ws.thread(VICTIM_INVOICE)]
    assert "reminder_cancelled" in types and "reminder_sent" not in types


def _open_items_without(number: str) -> str:
    """The accounting's list of open items (international form), `number` settled."""
    columns = list(Invoice._fields)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["invoice_number", *columns[1:]])
    for inv in sample_invoices().values():
        if inv.is_open and inv.number != number:
            writer.writerow(
                [";".join(inv.tags) if c == "tags" else str(getattr(inv, c)) for c in columns]
            )
    return out.getvalue()


# -- the eight-week scenario ------------------------------------------------------------


@dataclass(frozen=True)
class TickRun:
    day: date
    as_of: str
    report: dict[str, Any]
    received: list[Mail]


@dataclass(frozen=True)
class Scenario:
    ws: Workspace
    rules: Rules
    plan: list[dict[str, Any]]
    # One per working day (Monday to Friday, not a holiday) from START through END, in order.
    ticks: list[TickRun]
    # START again, at the window's opening and in the afternoon.
    repeats: list[TickRun]
    # Text output of `tick` on a Saturday and on Christmas Day.
    closed: dict[date, str]
    closed_received: int
    # `outbox --all --json` at the end, by key.
    entries: dict[str, dict[str, Any]]
    invoices: dict[str, Invoice]
    threads: dict[str, list[dict[str, Any]]]

    @property
    def policy(self) -> Policy:
        (only,) = self.rules.policies  # the shipped rules: one policy for everything
        return only

    def day_of(self, event: dict[str, Any]) -> date:
        return datetime.fromisoformat(event["at"]).astimezone(self.rules.company.tz).date()

    def mails(self) -> Iterator[tuple[date, Mail, dict[str, Any]]]:
        for run in self.ticks:
            for mail in run.received:
                yield run.day, mail, self.entries[mail.key]

    def recorded(self) -> dict[str, list[tuple[date, str]]]:
        """Each invoice's stages as its record has them: the thread where fetched.

        A mail listing one invoice records the mail's stage for it; for invoices
        that shared a mail, the thread is read (that is what the planner goes by).
        """
        out: dict[str, list[tuple[date, str]]] = defaultdict(list)
        for day, _mail, entry in self.mails():
            for number in entry["invoice_numbers"]:
                if number not in self.threads:
                    out[number].append((day, entry["stage"]))
        for number, events in self.threads.items():
            out[number] = [
                (self.day_of(e), e["data"]["stage"]) for e in events if e["type"] in DONE
            ]
        return dict(out)


def run_scenario(folder: Path, server: loopback.LoopbackSmtp) -> Scenario:
    config = write_rules(folder, smtp=smtp_section(server.port))
    ws = Workspace(config, folder / "state")
    for name in SAMPLE_FILES:
        ws.run("import", str(SAMPLES / name))
    plan = ws.json("plan", "--as-of", START.isoformat())

    def tick(day: date, as_of: str) -> TickRun:
        before = len(server.messages)
        report = ws.tick(as_of)
        return TickRun(day, as_of, report, received_since(server, before))

    ticks = [tick(START, START.isoformat())]
    repeats = [tick(START, START.isoformat()), tick(START, f"{START.isoformat()}T15:00")]
    closed: dict[date, str] = {}
    closed_received = 0
    day = START + ONE_DAY
    while day <= END:
        if day in (SATURDAY, CHRISTMAS):
            before = len(server.messages)
            closed[day] = ws.run("tick", "--as-of", day.isoformat()).stdout
            closed_received += len(server.messages) - before
        elif day.weekday() < 5 and day not in HOLIDAYS:
            ticks.append(tick(day, day.isoformat()))
        day += ONE_DAY
    entries = {e["key"]: e for e in ws.outbox("--all")["entries"]}
    shared = {
        n for e in entries.values() if len(e["invoice_numbers"]) > 1 for n in e["invoice_numbers"]
    }
    return Scenario(
        ws=ws,
        rules=load(config).rules,
        plan=plan,
        ticks=ticks,
        repeats=repeats,
        closed=closed,
        closed_received=closed_received,
        entries=entries,
        invoices=sample_invoices(),
        threads={n: ws.thread(n) for n in sorted(shared | {PROOF_INVOICE})},
    )


def sample_invoices() -> dict[str, Invoice]:
    """The samples as the importer reads them (status, due date, address)."""
    out: dict[str, Invoice] = {}
    for name in SAMPLE_FILES:
        path = SAMPLES / name
        parsed = parse_invoices(path.read_bytes(), str(path))
        assert not parsed.errors, parsed.errors
        out.update((inv.number, inv) for _line, inv in parsed.invoices)
    return out


class Background:
    """Runs the scenario on its own thread; `result()` waits for it."""

    def __init__(self, work: Callable[[], Scenario]) -> None:
        self._work = work
        self._result: Scenario | None = None
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="tick-scenario", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._work()
        except Exception as exc:  # handed to the tests by result()
            self._error = exc

    def wait(self) -> None:
        self._thread.join(SCENARIO_TIMEOUT)

    def result(self) -> Scenario:
        self.wait()
        if self._thread.is_alive():
            raise TimeoutError(f"the scenario did not finish in {SCENARIO_TIMEOUT:g} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


@pytest.fixture(scope="module", autouse=True)
def _scenario_in_background(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Background | None]:
    """Starts the scenario with the module when a selected test needs it."""
    wanted = any(
        "scenario" in getattr(item, "fixturenames", ())
        for item in request.session.items
        if getattr(item, "module", None) is request.module
    )
    if not wanted:
        yield None
        return
    with loopback.running(loopback.certificate(tmp_path_factory)) as server:
        folder = tmp_path_factory.mktemp("scenario")
        background = Background(lambda: run_scenario(folder, server))
        try:
            yield background
        finally:
            background.wait()  # never stop the server under a running scenario


@pytest.fixture(scope="module")
def scenario(_scenario_in_background: Background | None) -> Scenario:
    assert _scenario_in_background is not None
    return _scenario_in_background.result()


# -- 1. the first tick delivers what plan lists ------------------------------------------


def test_the_first_tick_delivers_exactly_the_mails_plan_lists(scenario: Scenario) -> None:
    notify = scenario.rules.notify
    assert notify is not None
    expected = {
        m["key"]: (
            m["customer_id"],
            m["stage"],
            m["to"] if m["action"] == "email" else parseaddr(notify.to)[1],
            sorted(m["invoice_numbers"]),
        )
        for m in scenario.plan
    }
    first = scenario.ticks[0]
    got = {}
    for mail in first.received:
        entry = scenario.entries[mail.key]
        assert mail.message_id == entry["message_id"]
        assert mail.subject == entry["subject"]
        assert mail.rcpt == (mail.to,)
        body = mail.text()
        assert all(n in body for n in entry["invoice_numbers"]), (mail.key, body)
        got[mail.key] = (
            entry["customer_id"],
            entry["stage"],
            mail.to,
            sorted(entry["invoice_numbers"]),
        )
    assert got == expected
    assert len(first.received) == len(scenario.plan) == 14  # samples/README.md
    assert sorted(results(first.report)["sent"]) == sorted(expected)


# -- 2. a second tick the same day sends nothing -----------------------------------------


def test_ticking_again_the_same_day_sends_nothing(scenario: Scenario) -> None:
    for run in scenario.repeats:
        assert (run.as_of, run.report["steps"], run.received) == (run.as_of, [], [])
        assert run.report["window_open"] and run.report["errors"] == []
    every = [mail for _day, mail, _entry in scenario.mails()]
    assert len({m.message_id for m in every}) == len({m.key for m in every}) == len(every)


# -- 3. eight weeks of working days ------------------------------------------------------


def test_on_a_weekend_or_a_holiday_nothing_is_sent_and_tick_says_the_window_is_closed(
    scenario: Scenario,
) -> None:
    assert set(scenario.closed) == {SATURDAY, CHRISTMAS}
    for day, text in scenario.closed.items():
        assert "send window closed" in text and "nothing delivered" in text, (day, text)
        assert "nothing to do" in text, (day, text)
    assert "Saturday" in scenario.closed[SATURDAY]
    assert f"holiday ({HOLIDAYS[CHRISTMAS]})" in scenario.closed[CHRISTMAS]
    assert scenario.closed_received == 0
    # Every other weekday the window was open.
    assert all(run.report["window_open"] for run in scenario.ticks)
    assert {run.day for run in scenario.ticks}.isdisjoint(HOLIDAYS)


def test_every_tick_reports_what_the_server_received_and_nothing_goes_wrong(
    scenario: Scenario,
) -> None:
    for run in scenario.ticks:
        report = run.report
        assert report["errors"] == [], run.as_of
        by_result = results(report)
        assert set(by_result) <= {"queued", "sent"}, (run.as_of, report["steps"])
        assert sorted(by_result.get("sent", [])) == sorted(m.key for m in run.received)
        assert sorted(by_result.get("queued", [])) == sorted(by_result.get("sent", []))
    # Nothing is left for `mahnwerk outbox` to list.
    assert {e["state"] for e in scenario.entries.values()} == {"sent"}


def test_each_invoice_gets_its_stages_in_order_each_once_with_their_spacing(
    scenario: Scenario,
) -> None:
    stages = scenario.policy.stages
    names = [s.name for s in stages]
    days = {s.name: s.days for s in stages}
    first_after_due = next(i for i, s in enumerate(stages) if not s.is_pre_due)
    recorded = scenario.recorded()
    problems = []
    for number, sent in sorted(recorded.items()):
        index = [names.index(stage) for _day, stage in sent]
        if index[0] not in (0, first_after_due) or index != list(
            range(index[0], index[0] + len(index))
        ):
            problems.append(f"{number}: stages out of order, skipped or repeated: {sent}")
        for (d1, s1), (d2, s2) in pairwise(sent):
            if (d2 - d1).days < days[s2] - days[s1]:
                problems.append(f"{number}: {s2} on {d2}, only {(d2 - d1).days} days after {s1}")
    assert not problems, "\n".join(problems)
    open_ones = {n for n, inv in scenario.invoices.items() if inv.is_open}
    assert set(recorded) == open_ones  # and never a paid or cancelled one
    # Eight weeks are enough for the first invoices to run through every stage.
    assert any(len(sent) == len(stages) for sent in recorded.values())


def test_no_invoice_is_recorded_at_a_stage_before_its_own_offset(scenario: Scenario) -> None:
    """README: an invoice waits for its own offset from the due date; a pre-due
    stage is skipped only once the due date has passed. The plan gives every
    invoice its own stage (plan --json `invoices[].stage`); its record must say that."""
    stages = scenario.policy.stages
    days = {s.name: s.days for s in stages}
    problems = []
    for number, sent in sorted(scenario.recorded().items()):
        due = scenario.invoices[number].due_date
        for day, stage in sent:
            overdue = (day - due).days
            if overdue < days[stage] or (days[stage] < 0 <= overdue):
                problems.append(f"{number} (due {due}): {stage} recorded on {day}")
        if sent[0][1] != stages[0].name and sent[0][0] < due:
            problems.append(f"{number} (due {due}): {stages[0].name} skipped before the due date")
    planned = {i["invoice_number"]: i["stage"] for m in scenario.plan for i in m["invoices"]}
    recorded_first = {
        n: stage for n, sent in scenario.recorded().items() for day, stage in sent if day == START
    }
    problems += [
        f"{n}: plan gave it {planned[n]} on {START}, its record says {recorded_first[n]}"
        for n in sorted(planned)
        if recorded_first.get(n) != planned[n]
    ]
    assert not problems, "\n".join(problems)


def test_contact_limits_hold_for_every_customer(scenario: Scenario) -> None:
    limits = scenario.rules.contact_limits
    by_customer: dict[str, list[date]] = defaultdict(list)
    for day, _mail, entry in scenario.mails():
        if entry["kind"] == "reminder":  # a hand-off to a person is no contact
            by_customer[entry["customer_id"]].append(day)
    problems = []
    tightest = []
    for customer, days in sorted(by_customer.items()):
        for a, b in pairwise(days):
            tightest.append((b - a).days)
            if (b - a).days < limits.min_days_between:
                problems.append(f"{customer}: mails on {a} and {b}")
        for d in days:
            week = [x for x in days if 0 <= (d - x).days < 7]
            if len(week) > limits.max_per_week:
                problems.append(f"{customer}: {len(week)} mails in the 7 days up to {d}")
    assert not problems, "\n".join(problems)
    # The limit was reached (and held): the samples have stages that collide.
    assert min(tightest) == limits.min_days_between


def test_escalations_go_to_the_notify_address_and_never_to_a_customer(
    scenario: Scenario,
) -> None:
    notify = scenario.rules.notify
    assert notify is not None
    name, address = parseaddr(notify.to)
    customers = {inv.email.casefold() for inv in scenario.invoices.values()}
    escalate = {s.name for s in scenario.policy.stages if s.action == "escalate"}
    notices = 0
    for _day, mail, entry in scenario.mails():
        if entry["stage"] in escalate:
            notices += 1
            assert entry["kind"] == "notice"
            assert (mail.to, mail.rcpt) == (address, (address,))
            assert name in mail.to_header
        else:
            assert entry["kind"] == "reminder"
            assert mail.to.casefold() in customers and mail.to != address
            assert mail.rcpt == (mail.to,)
    assert address.casefold() not in customers
    assert notices > 0


def test_the_thread_records_each_mail_with_its_proof(scenario: Scenario) -> None:
    notify = scenario.rules.notify
    assert notify is not None
    events = [e for e in scenario.threads[PROOF_INVOICE] if e["invoice"] == PROOF_INVOICE]
    mail_events = [e for e in events if e["type"] in ("reminder_queued", *DONE)]
    by_key = {m.key: m for _day, m, _entry in scenario.mails()}
    keys = list(dict.fromkeys(e["data"]["mail_key"] for e in mail_events))
    # pre_due on the first day, then every stage in order, through the hand-off.
    assert [scenario.entries[k]["stage"] for k in keys] == [s.name for s in scenario.policy.stages]
    assert [e["type"] for e in mail_events] == [
        t
        for k in keys
        for t in (
            "reminder_queued",
            "escalated" if scenario.entries[k]["kind"] == "notice" else "reminder_sent",
        )
    ]
    ats = [datetime.fromisoformat(e["at"]) for e in mail_events]
    assert ats == sorted(ats)
    for i in range(0, len(mail_events), 2):
        queued, done = mail_events[i], mail_events[i + 1]
        key = queued["data"]["mail_key"]
        entry, mail = scenario.entries[key], by_key[key]
        assert done["data"]["mail_key"] == key
        assert queued["data"]["message_id"] == done["data"]["message_id"] == mail.message_id
        assert done["data"]["message_id"] == entry["message_id"]
        assert done["data"]["eml"] == entry["eml"]
        assert done["data"]["code"] == 250 and done["data"]["response"].startswith("2.0.0")
        assert done["data"]["to"] == mail.to
        if entry["kind"] == "notice":
            assert done["data"]["to"] == parseaddr(notify.to)[1]
        sha = done["data"]["eml"]
        eml = messages.path_of(scenario.ws.state, sha)
        data = eml.read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha
        assert data == mail.data
