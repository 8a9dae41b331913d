"""The embedded store (TinyDBStore): events fold into invoices and histories, threads
read back in order, units of work are all or nothing, the snapshot is a cache of
the journal, a torn journal tail is cut, damage is refused, schema versions and
migrations are recorded, and writers take turns.

The tests look at the store through its interface and its files (store.json,
journal.log), not at the journal's line format.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from _factory import TODAY, at, inv
from mahnwerk import ledger
from mahnwerk.models import EMPTY_HISTORY, Event, History, Hold, Invoice, SentStage
from mahnwerk.models import invoice_to_json as wire
from mahnwerk.store import StoreBusy, StoreError, TinyDBStore, Transaction
from mahnwerk.store import journal as journal_mod
from mahnwerk.store.migrations import MIGRATIONS, Migration, Snapshot, meta
from mahnwerk.store.tinydb_store import JOURNAL, SNAPSHOT

LATEST = max(m.version for m in MIGRATIONS)
ALL = [m.name for m in MIGRATIONS]

WORKER = Path(__file__).with_name("_store_worker.py")
T0 = at(TODAY, 9)
T1 = at(TODAY + timedelta(days=1), 10, 30)
T2 = at(TODAY + timedelta(days=8), 11)


# -- helpers -------------------------------------------------------------------


def ev(number: str, type_: str, data: dict[str, Any] | None = None, **kw: Any) -> Event:
    return Event(
        number,
        type_,
        kw.get("when", T0),
        kw.get("reason", f"{type_} {number}"),
        data if data is not None else {},
    )


def imported(number: str, **kw: Any) -> Event:
    return ev(number, ledger.IMPORTED, {"invoice": wire(inv(number))}, **kw)


def note(number: str, text: str, **kw: Any) -> Event:
    return ev(number, ledger.NOTE, {"text": text}, **kw)


def commit(store: TinyDBStore, *events: Event) -> None:
    with store.transaction() as tx:
        tx.add_all(events)


def snapshot_meta(state: Path) -> dict[str, Any]:
    return meta(orjson.loads((state / SNAPSHOT).read_bytes()))


def journal_bytes(state: Path) -> bytes:
    return (state / JOURNAL).read_bytes()


def picture(store: TinyDBStore, numbers: Iterable[str]) -> tuple[Any, ...]:
    """Everything a caller can see of the store, to compare two stores."""
    view = store.view()
    return (
        sorted(view.invoices(), key=lambda i: i.number),
        view.histories(),
        {n: store.thread(n) for n in numbers},
    )


# How a test reads back what it wrote: the writing object itself, or a new one
# (the snapshot read plus the journal tail replayed), or a new one after the
# snapshot was deleted (all rebuilt from the journal).
def _same(state: Path, writer: TinyDBStore) -> TinyDBStore:
    return writer


def _reopened(state: Path, writer: TinyDBStore) -> TinyDBStore:
    return TinyDBStore(state)


def _rebuilt(state: Path, writer: TinyDBStore) -> TinyDBStore:
    (state / SNAPSHOT).unlink()
    return TinyDBStore(state)


READERS: dict[str, tuple[int | None, Callable[[Path, TinyDBStore], TinyDBStore]]] = {
    # name: (writer's checkpoint_bytes, None for the default; how to read)
    "same object": (None, _same),
    "reopened": (None, _reopened),
    "reopened, every commit checkpointed": (1, _reopened),
    "rebuilt from the journal": (None, _rebuilt),
    "rebuilt, every commit checkpointed": (1, _rebuilt),
}


def _writer(state: Path, checkpoint: int | None) -> TinyDBStore:
    return (
        TinyDBStore(state)
        if checkpoint is None
        else TinyDBStore(state, checkpoint_bytes=checkpoint)
    )


# -- events fold into invoices and histories -------------------------------------

BASE = inv("R-1")
SENT_1 = SentStage("reminder_1", T1, "m-1", "email")
SENT_2 = SentStage("escalate", T2, "m-2", "escalate")
AMENDED = BASE._replace(amount=Decimal("250.00"), tags=("vip",))

# (event on R-1, R-1's invoice after it, R-1's history after it)
ROUND_TRIP: list[tuple[Event, Invoice, History]] = [
    (imported("R-1"), BASE, EMPTY_HISTORY),
    (
        ev(
            "R-1",
            ledger.UPDATED,
            {"changes": {"amount": ["100.00", "250.00"], "tags": [[], ["vip"]]}},
        ),
        AMENDED,
        EMPTY_HISTORY,
    ),
    (
        ev("R-1", ledger.REMINDER_SENT, {"stage": "reminder_1", "mail_key": "m-1"}, when=T1),
        AMENDED,
        History(sent=(SENT_1,)),
    ),
    (
        ev(
            "R-1",
            ledger.PAUSED,
            {"until": "2026-12-04", "kind": "promise", "promised": "2026-12-01"},
            reason="promise to pay",
        ),
        AMENDED,
        History(
            sent=(SENT_1,),
            hold=Hold("promise to pay", date(2026, 12, 4), "promise", date(2026, 12, 1), T0),
        ),
    ),
    (
        ev("R-1", ledger.RESUMED),
        AMENDED,
        History(sent=(SENT_1,)),
    ),
    (
        ev("R-1", ledger.ESCALATED, {"stage": "escalate", "mail_key": "m-2"}, when=T2),
        AMENDED,
        History(sent=(SENT_1, SENT_2)),
    ),
    (
        ev("R-1", ledger.STOPPED, reason="dispute"),
        AMENDED,
        History(sent=(SENT_1, SENT_2), stop="dispute"),
    ),
    (
        ev("R-1", ledger.MARKED_PAID),
        AMENDED._replace(status="paid"),
        History(sent=(SENT_1, SENT_2), stop="dispute"),
    ),
]


@pytest.mark.parametrize("reader", READERS)
def test_events_fold_into_invoices_and_histories(tmp_path: Path, reader: str) -> None:
    checkpoint, read = READERS[reader]
    state = tmp_path / "state"
    bystander = inv("R-2", customer="K-2", amount="75.00")
    writer = _writer(state, checkpoint)
    commit(writer, ev("R-2", ledger.IMPORTED, {"invoice": wire(bystander)}))
    for step, (event, invoice, history) in enumerate(ROUND_TRIP):
        commit(writer, event)
        store = read(state, writer)
        view = store.view()
        assert sorted(view.invoices(), key=lambda i: i.number) == [invoice, bystander], step
        assert view.invoice("R-1") == invoice, step
        histories = view.histories()
        assert histories.get("R-1", EMPTY_HISTORY) == history, step
        # Only invoices with something in their history are listed.
        assert set(histories) == ({"R-1"} if history != EMPTY_HISTORY else set()), step
        for sent in histories.get("R-1", EMPTY_HISTORY).sent:
            assert sent.at.utcoffset() is not None
        assert store.thread("R-1") == [e for e, _i, _h in ROUND_TRIP[: step + 1]], step


# -- threads ------------------------------------------------------------------------

# Three units of work; the first touches A and B, interleaved.
UNITS: list[list[Event]] = [
    [
        imported("A", reason="first-unit"),
        imported("B"),
        note("A", "called, promised Friday"),
        ev("B", ledger.REMINDER_SENT, {"stage": "reminder_1", "mail_key": "k-b1"}, when=T1),
        note("A", "second note, same unit", when=T1),
    ],
    [imported("C")],
    [note("B", "disputes the amount", when=T2), ev("A", ledger.PAUSED, {"until": None})],
]
THREADS: dict[str, list[Event]] = {
    "A": [UNITS[0][0], UNITS[0][2], UNITS[0][4], UNITS[2][1]],
    "B": [UNITS[0][1], UNITS[0][3], UNITS[2][0]],
    "C": [UNITS[1][0]],
    "unknown": [],
}


@pytest.mark.parametrize("reader", READERS)
def test_thread_returns_exactly_the_invoices_events_in_order(tmp_path: Path, reader: str) -> None:
    checkpoint, read = READERS[reader]
    state = tmp_path / "state"
    writer = _writer(state, checkpoint)
    for unit in UNITS:
        commit(writer, *unit)
    store = read(state, writer)
    for number, expected in THREADS.items():
        got = store.thread(number)
        assert got == expected, number
        assert all(e.at.tzinfo is not None and e.at.utcoffset() is not None for e in got)
        assert [e.at.utcoffset() for e in got] == [e.at.utcoffset() for e in expected]


# -- a unit of work is all or nothing -----------------------------------------------


class Boom(Exception):
    pass


def _raise_after_add(tx: Transaction) -> None:
    tx.add(imported("NEW"))
    raise Boom


def _raise_after_add_all(tx: Transaction) -> None:
    tx.add_all([note("A", "lost"), imported("NEW")])
    raise Boom


def _raise_interrupt(tx: Transaction) -> None:
    tx.add(note("A", "lost"))
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("body", "exc"),
    [(_raise_after_add, Boom), (_raise_after_add_all, Boom), (_raise_interrupt, KeyboardInterrupt)],
    ids=["add", "add_all", "interrupt"],
)
def test_transaction_whose_body_raises_writes_nothing(
    tmp_path: Path, body: Callable[[Transaction], None], exc: type[BaseException]
) -> None:
    state = tmp_path / "state"
    store = TinyDBStore(state)
    commit(store, imported("A"))
    journal_before = journal_bytes(state)
    snapshot_before = (state / SNAPSHOT).read_bytes()
    seen_before = picture(store, ["A", "NEW"])

    with pytest.raises(exc), store.transaction() as tx:
        body(tx)

    assert journal_bytes(state) == journal_before
    assert (state / SNAPSHOT).read_bytes() == snapshot_before
    assert picture(store, ["A", "NEW"]) == seen_before
    assert picture(TinyDBStore(state), ["A", "NEW"]) == seen_before
    # The lock was let go: another writer gets it at once.
    other = TinyDBStore(state, lock_timeout=0.2)
    commit(other, note("A", "after the failure"))
    assert [e.type for e in store.thread("A")] == ["imported", "note"]


# -- the snapshot is a cache of the journal ------------------------------------------


@pytest.mark.parametrize("checkpoint", [None, 1], ids=["tail only", "checkpointed"])
@pytest.mark.parametrize("while_open", [False, True], ids=["closed", "while open"])
def test_deleted_snapshot_is_rebuilt_from_the_journal(
    tmp_path: Path, checkpoint: int | None, while_open: bool
) -> None:
    state = tmp_path / "state"
    writer = _writer(state, checkpoint)
    for unit in UNITS:
        commit(writer, *unit)
    before = picture(writer, THREADS)
    if not while_open:
        writer.close()

    (state / SNAPSHOT).unlink()
    store = writer if while_open else TinyDBStore(state)
    assert picture(store, THREADS) == before
    # It keeps working: the next unit lands, and a snapshot written now is a good one.
    commit(store, note("C", "after the rebuild"))
    store.checkpoint()
    # The rewritten snapshot still says which schema it is in.
    assert snapshot_meta(state).get("schema") == LATEST
    assert snapshot_meta(state)["journal_pos"] == (state / JOURNAL).stat().st_size
    assert store.schema_version == LATEST
    again = TinyDBStore(state)
    assert again.thread("C") == [*THREADS["C"], store.thread("C")[-1]]
    assert picture(again, ["A", "B"]) == picture(store, ["A", "B"])


# -- torn and damaged journals ----------------------------------------------------------


def _garbage(journal: bytes) -> bytes:
    return b'7f3a91c0 {"a record cut short, no newline": '


def _bad_crc_line(journal: bytes) -> bytes:
    return b"00000000 " + orjson.dumps({"invoice": "A", "type": "note"}) + b"\n"


def _half_of_last_line(journal: bytes) -> bytes:
    last = journal[journal.rstrip(b"\n").rfind(b"\n") + 1 :]
    return last[: len(last) // 2]


def _bad_crc_copy_of_last_line(journal: bytes) -> bytes:
    last = journal[journal.rstrip(b"\n").rfind(b"\n") + 1 :]
    crc = b"ffffffff" if not last.startswith(b"ffffffff") else b"00000000"
    return crc + last[8:]


def _events_without_their_commit_line(good: bytes) -> bytes:
    """A unit whose event lines all made it to disk, but not its commit line."""
    seq = orjson.loads(good.splitlines()[-1][9:])["u"] + 1
    event = note("A", "never committed", when=T2).to_json()
    data, _ = journal_mod.encode_unit(seq, [event, event], len(good))
    return data[: data.rindex(b"\n", 0, len(data) - 1) + 1]


@pytest.mark.parametrize(
    "make_tail",
    [
        _garbage,
        _bad_crc_line,
        _half_of_last_line,
        _bad_crc_copy_of_last_line,
        _events_without_their_commit_line,
    ],
)
def test_torn_journal_tail_is_ignored_by_readers_and_cut_by_the_next_transaction(
    tmp_path: Path, make_tail: Callable[[bytes], bytes]
) -> None:
    state = tmp_path / "state"
    clean = tmp_path / "clean"
    writer = TinyDBStore(state)
    for unit in UNITS:
        commit(writer, *unit)
    before = picture(writer, THREADS)
    shutil.copytree(state, clean)
    good = journal_bytes(state)
    tail = make_tail(good)
    with (state / JOURNAL).open("ab") as fh:
        fh.write(tail)

    # Readers: the object that wrote, a new one, and one rebuilding from the journal.
    assert picture(writer, THREADS) == before
    assert picture(TinyDBStore(state), THREADS) == before
    rebuilt_dir = tmp_path / "rebuilt"
    shutil.copytree(state, rebuilt_dir)
    (rebuilt_dir / SNAPSHOT).unlink()
    assert picture(TinyDBStore(rebuilt_dir), THREADS) == before

    # The next transaction cuts the tail: the journal is what a clean store would have.
    last = [note("B", "after the tear", when=T2), imported("D")]
    commit(TinyDBStore(state), *last)
    commit(TinyDBStore(clean), *last)
    assert journal_bytes(state) == journal_bytes(clean)
    assert journal_bytes(state).startswith(good)
    (state / SNAPSHOT).unlink()
    after = TinyDBStore(state)
    assert after.thread("B") == [*THREADS["B"], last[0]]
    assert after.thread("D") == [last[1]]


def _damage_first_unit(state: Path) -> None:
    data = journal_bytes(state)
    assert data.count(b"first-unit") == 1
    (state / JOURNAL).write_bytes(data.replace(b"first-unit", b"first-UNIT"))


def _view(store: TinyDBStore) -> object:
    return store.view()


def _thread_a(store: TinyDBStore) -> object:
    return store.thread("A")


# (writer's checkpoint_bytes, delete the snapshot before reading, how to read)
DAMAGE_CASES = {
    "replayed from the snapshot's position": (None, False, _view),
    "rebuilt from the journal": (None, True, _view),
    "rebuilt, read a thread": (None, True, _thread_a),
    # The snapshot has folded the damaged unit already; the thread must read it.
    "folded into the snapshot, read a thread": (1, False, _thread_a),
}


@pytest.mark.parametrize("case", DAMAGE_CASES)
def test_damaged_record_in_the_middle_raises_store_error(tmp_path: Path, case: str) -> None:
    checkpoint, drop_snapshot, read = DAMAGE_CASES[case]
    state = tmp_path / "state"
    writer = _writer(state, checkpoint)
    for unit in UNITS:
        commit(writer, *unit)
    _damage_first_unit(state)
    if drop_snapshot:
        (state / SNAPSHOT).unlink()
    store = TinyDBStore(state)
    with pytest.raises(StoreError):
        read(store)


def test_journal_shorter_than_the_snapshot_has_read_raises_store_error(tmp_path: Path) -> None:
    # E.g. a journal restored from an older backup next to a newer snapshot: the
    # snapshot's journal_pos points past its end. Appending there would leave a
    # hole the next rebuild cannot read past.
    state = tmp_path / "state"
    writer = TinyDBStore(state, checkpoint_bytes=1)
    for unit in UNITS:
        commit(writer, *unit)
    data = journal_bytes(state)
    assert snapshot_meta(state)["journal_pos"] == len(data)
    (state / JOURNAL).write_bytes(data[: len(data) // 2])
    store = TinyDBStore(state)
    with pytest.raises(StoreError):
        store.view()


# -- checkpoints ---------------------------------------------------------------------------


def test_small_checkpoint_rewrites_snapshot_and_reopening_replays_only_the_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = 1500
    state = tmp_path / "state"
    store = TinyDBStore(state, checkpoint_bytes=checkpoint)
    ends = []
    numbers: list[str] = []
    expected_pos = rewrites = 0
    # Commit until the snapshot was rewritten twice and a tail follows the last rewrite.
    while rewrites < 2 or ends[-1] == expected_pos:
        assert len(numbers) < 100, "the snapshot is never rewritten"
        number = f"R-{len(numbers)}"
        numbers.append(number)
        commit(store, imported(number), note(number, "x" * 200))
        ends.append((state / JOURNAL).stat().st_size)
        # Model: the snapshot is rewritten once the journal grew by checkpoint_bytes since.
        if ends[-1] - expected_pos >= checkpoint:
            expected_pos = ends[-1]
            rewrites += 1
    assert snapshot_meta(state)["journal_pos"] == expected_pos
    # The snapshot folded exactly the units up to journal_pos.
    snapshot = orjson.loads((state / SNAPSHOT).read_bytes())
    assert len(snapshot["invoices"]) == ends.index(expected_pos) + 1 < len(numbers)
    before = picture(store, numbers)

    reads: list[int] = []
    real_read_from = journal_mod.read_from

    def spy(path: Path, offset: int) -> Any:
        reads.append(offset)
        return real_read_from(path, offset)

    monkeypatch.setattr(journal_mod, "read_from", spy)
    again = TinyDBStore(state)
    assert picture(again, numbers) == before
    assert reads and reads[0] == expected_pos

    # An explicit checkpoint folds the tail: the next reopening replays nothing.
    again.checkpoint()
    assert snapshot_meta(state)["journal_pos"] == ends[-1]
    reads.clear()
    assert picture(TinyDBStore(state), numbers) == before
    assert reads and reads[0] == ends[-1]


def test_appending_below_checkpoint_bytes_does_not_rewrite_the_snapshot(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = TinyDBStore(state)
    path = state / SNAPSHOT
    st, content = path.stat(), path.read_bytes()
    size = 0
    time.sleep(0.02)  # past the file system's timestamp granularity
    for unit in UNITS:
        commit(store, *unit)
        assert (state / JOURNAL).stat().st_size > size
        size = (state / JOURNAL).stat().st_size
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        st.st_ino,
        st.st_mtime_ns,
        st.st_size,
    )
    assert path.read_bytes() == content
    assert store.thread("A") == THREADS["A"]


# -- a view is a picture of one moment -----------------------------------------------------


def test_view_does_not_change_under_later_commits(tmp_path: Path) -> None:
    store = TinyDBStore(tmp_path / "state")
    commit(store, imported("A"), imported("B"))
    view = store.view()
    commit(store, imported("C"), ev("A", ledger.MARKED_PAID))
    assert sorted(view.numbers()) == ["A", "B"]
    assert view.invoice("A") == inv("A")
    # A caller may walk a view and commit as it goes.
    for number in view.numbers():
        commit(store, imported(f"{number}-copy"))
    assert sorted(store.view().numbers()) == ["A", "A-copy", "B", "B-copy", "C"]


# -- schema versions and migrations ------------------------------------------------------


def test_new_store_records_the_latest_schema_and_every_migration(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = TinyDBStore(state)
    assert store.schema_version == LATEST
    assert store.applied_migrations == ALL
    assert snapshot_meta(state)["schema"] == LATEST
    assert snapshot_meta(state)["migrations"] == ALL
    commit(store, imported("A"))
    store.checkpoint()
    assert snapshot_meta(state)["migrations"] == ALL
    assert TinyDBStore(state).applied_migrations == ALL


def test_a_schema_1_store_is_upgraded_to_the_outbox_and_keeps_its_threads(tmp_path: Path) -> None:
    state = tmp_path / "state"
    old = TinyDBStore(state, migrations=MIGRATIONS[:1])
    commit(old, *UNITS[0])
    old.checkpoint()
    before = picture(old, ["A"])
    old.close()
    store = TinyDBStore(state)
    assert store.applied_migrations == ALL
    assert picture(store, ["A"]) == before
    assert store.view().entries() == []


def _newer(calls: list[str]) -> list[Migration]:
    def add_marker(snapshot: Snapshot) -> Snapshot:
        calls.append("0099_test")
        meta(snapshot)["marker"] = "0002 was here"
        return snapshot

    return [*MIGRATIONS, Migration(LATEST + 1, "0099_test", add_marker)]


def _open_after_newer(state: Path) -> None:
    TinyDBStore(state, migrations=_newer([]))
    TinyDBStore(state)


def _view_after_newer(state: Path) -> None:
    old = TinyDBStore(state)
    TinyDBStore(state, migrations=_newer([]))
    old.view()


def _transaction_after_newer(state: Path) -> None:
    old = TinyDBStore(state)
    TinyDBStore(state, migrations=_newer([]))
    commit(old, note("A", "written by an old mahnwerk"))


@pytest.mark.parametrize(
    "use_with_old_code",
    [_open_after_newer, _view_after_newer, _transaction_after_newer],
    ids=["open", "view while open", "transaction while open"],
)
def test_store_from_a_newer_mahnwerk_is_refused_with_upgrade_hint(
    tmp_path: Path, use_with_old_code: Callable[[Path], None]
) -> None:
    state = tmp_path / "state"
    commit(TinyDBStore(state), imported("A"))
    journal_before = journal_bytes(state)
    with pytest.raises(StoreError, match="upgrade"):
        use_with_old_code(state)
    assert journal_bytes(state) == journal_before
    assert snapshot_meta(state)["schema"] == LATEST + 1


@pytest.mark.parametrize("existing", [True, False], ids=["existing store", "new store"])
def test_injected_migration_is_applied_once_and_recorded(tmp_path: Path, existing: bool) -> None:
    state = tmp_path / "state"
    if existing:
        old = TinyDBStore(state, checkpoint_bytes=1)
        commit(old, *UNITS[0])
        old.checkpoint_bytes = 1 << 20
        commit(old, *UNITS[1])  # in the journal's tail, not in the snapshot
    calls: list[str] = []
    migrations = _newer(calls)

    store = TinyDBStore(state, migrations=migrations)
    assert calls == ["0099_test"]
    assert store.schema_version == LATEST + 1
    assert store.applied_migrations == [*ALL, "0099_test"]
    assert snapshot_meta(state)["migrations"] == [*ALL, "0099_test"]
    assert snapshot_meta(state)["marker"] == "0002 was here"
    commit(store, imported("Z"))
    store.checkpoint()
    for _ in range(2):
        again = TinyDBStore(state, migrations=migrations)
        assert again.applied_migrations == [*ALL, "0099_test"]
        commit(again, note("Z", "another day"))
    assert calls == ["0099_test"]
    assert snapshot_meta(state)["migrations"] == [*ALL, "0099_test"]
    last = TinyDBStore(state, migrations=migrations)
    assert [e.type for e in last.thread("Z")] == ["imported", "note", "note"]
    if existing:
        assert {n: last.thread(n) for n in THREADS} == {
            **THREADS,
            "A": THREADS["A"][:3],
            "B": THREADS["B"][:2],
        }


# -- writers take turns ------------------------------------------------------------------


def test_second_store_waiting_for_the_lock_raises_store_busy(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = TinyDBStore(state)
    commit(first, imported("A"))
    second = TinyDBStore(state, lock_timeout=0.2)
    with first.transaction() as tx:
        tx.add(note("A", "from the first"))
        started = time.monotonic()
        with pytest.raises(StoreBusy), second.transaction() as tx2:
            tx2.add(note("A", "from the second, never written"))
        waited = time.monotonic() - started
        # Readers do not wait for the lock.
        assert "A" in second.view()
    assert 0.2 <= waited < 5
    assert [e.data["text"] for e in second.thread("A")[1:]] == ["from the first"]
    # Once the first let go, the second writes, and sees what the first wrote.
    with second.transaction() as tx2:
        tx2.add(note("A", "from the second"))
    assert [e.data["text"] for e in first.thread("A")[1:]] == ["from the first", "from the second"]


def _start_worker(
    state: Path, tag: str, start: Path, checkpoint: int, pause: float
) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(WORKER), str(state), "--mode", "notes", "--count", "100"]
    cmd += ["--invoice", "SHARED", "--tag", tag, "--start-file", str(start)]
    cmd += ["--checkpoint-bytes", str(checkpoint), "--lock-timeout", "30"]
    cmd += ["--pause", str(pause)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# (checkpoint_bytes, pause between a worker's units, least number of hand-overs)
WRITERS = {
    "back to back": (8 << 20, 0.0, 1),
    "back to back, checkpoints": (2048, 0.0, 1),
    # A pause lets the other writer in between units: they take turns many times.
    "taking turns, checkpoints": (2048, 0.005, 10),
}


@pytest.mark.parametrize("case", WRITERS)
def test_concurrent_writer_processes_lose_no_event(tmp_path: Path, case: str) -> None:
    checkpoint, pause, handovers = WRITERS[case]
    state = tmp_path / "state"
    start = tmp_path / "go"
    commit(TinyDBStore(state), imported("SHARED"))
    procs = [_start_worker(state, tag, start, checkpoint, pause) for tag in ("w1", "w2")]
    outputs = []
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline() == "ready\n"
        start.touch()
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            outputs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for out in outputs:
        assert out.split() == [str(i) for i in range(100)]

    for store in (TinyDBStore(state), _rebuilt(state, TinyDBStore(state))):
        thread = store.thread("SHARED")
        notes = [e for e in thread if e.type == ledger.NOTE]
        assert [e.type for e in thread[:1]] == ["imported"]
        assert len(notes) == len(thread) - 1 == 200
        for tag in ("w1", "w2"):
            assert [e.data["i"] for e in notes if e.data["tag"] == tag] == list(range(100))
        assert all(e.at.utcoffset() is not None for e in thread)
        turns = sum(a.data["tag"] != b.data["tag"] for a, b in itertools.pairwise(notes))
        assert turns >= handovers


def test_state_dir_files_are_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    commit(TinyDBStore(state), imported("A"))
    for name in (SNAPSHOT, JOURNAL):
        assert os.stat(state / name).st_mode & 0o077 == 0, name


# -- units written without their own fsync ---------------------------------------------


def test_a_unit_without_fsync_is_visible_at_once_and_synced_before_anything_relies_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`durable=False` (an SMTP answer) is written before the transaction returns, so a
    killed process and every other reader keep it; its fsync comes with the next durable
    unit, `sync()`, a checkpoint or close, never later."""
    state = tmp_path / "state"
    writer = TinyDBStore(state)
    commit(writer, ev("R-1", ledger.IMPORTED, {"invoice": wire(BASE)}))
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])

    with writer.transaction(durable=False) as tx:
        tx.add(ev("R-1", ledger.NOTE, {"text": "answer 1"}))
    assert synced == []
    assert [e.data.get("text") for e in TinyDBStore(state).thread("R-1")][-1] == "answer 1"

    writer.sync()
    assert len(synced) == 1
    writer.sync()  # nothing new: no second fsync
    assert len(synced) == 1

    with writer.transaction(durable=False) as tx:
        tx.add(ev("R-1", ledger.NOTE, {"text": "answer 2"}))
    commit(writer, ev("R-1", ledger.NOTE, {"text": "attempt"}))  # durable: covers both
    assert len(synced) == 2
    writer.sync()
    assert len(synced) == 2

    with writer.transaction(durable=False) as tx:
        tx.add(ev("R-1", ledger.NOTE, {"text": "answer 3"}))
    journal_syncs: list[Path] = []
    real_fsync_file = journal_mod.fsync_file
    monkeypatch.setattr(
        journal_mod, "fsync_file", lambda p: (journal_syncs.append(p), real_fsync_file(p))[1]
    )
    writer.checkpoint()  # the snapshot must not point past the durable journal
    assert journal_syncs == [state / JOURNAL]
    writer.close()
    texts = [e.data.get("text") for e in TinyDBStore(state).thread("R-1")]
    assert texts[-4:] == ["answer 1", "answer 2", "attempt", "answer 3"]
