"""kill -9 proof: a writer killed at any moment leaves a store that loads and keeps every
unit of work it reported as committed, whole, and nothing half.

tests/_store_worker.py commits units (an `imported` event for a new invoice plus a
`note` event) and prints each unit's number only after its transaction returned.
With a tiny checkpoint_bytes the snapshot is rewritten every few units. Half the
rounds kill after a random delay; the other half, after a random delay, wait for a
snapshot temp file to appear and kill the worker right then, so that kills are
sure to land inside snapshot rewrites too.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from _store_worker import commit_unit, unit_events, unit_invoice, unit_number
from mahnwerk.store import TinyDBStore
from mahnwerk.store.atomic import TMP_SUFFIX
from mahnwerk.store.tinydb_store import JOURNAL

WORKER = Path(__file__).with_name("_store_worker.py")
ROUNDS = 30
SEED = 20261125
# Delay between the worker's "ready" and its SIGKILL. A unit takes a few ms,
# so the kill lands at every stage of a commit.
MAX_DELAY = 0.25
# More units than the worker can commit before it is killed: it never finishes.
UNITS = 1_000_000
# Units stored before the first round, so that snapshot rewrites have some size.
PREFILL = 1000


def _temps(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob(f".*{TMP_SUFFIX}"))


def _events_in(body: Any) -> Iterator[dict[str, Any]]:
    """Every event ({"invoice": ..., "type": ...}) anywhere in a journal line's body."""
    if isinstance(body, dict):
        if isinstance(body.get("invoice"), str) and "type" in body:
            yield body
        for value in body.values():
            yield from _events_in(value)
    elif isinstance(body, list):
        for value in body:
            yield from _events_in(value)


def _raw_journal_units(state_dir: Path) -> tuple[set[str], set[str]]:
    """Invoices with an `imported` event and with a `note` event, straight from the journal.

    Only for a journal without a torn tail: every line `<crc32 hex> <json>` must check out.
    """
    data = (state_dir / JOURNAL).read_bytes()
    assert data.endswith(b"\n"), "torn tail left behind"
    imported: set[str] = set()
    noted: set[str] = set()
    for line in data.splitlines():
        crc, payload = line[:8], line[9:]
        assert int(crc, 16) == zlib.crc32(payload), f"bad line in the journal: {line[:80]!r}"
        for e in _events_in(orjson.loads(payload)):
            {"imported": imported, "note": noted}[e["type"]].add(e["invoice"])
    return imported, noted


def _wait_for_temp(state_dir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _temps(state_dir) and time.monotonic() < deadline:
        pass


def _run_and_kill(state_dir: Path, delay: float, in_snapshot: bool) -> list[int]:
    """Start a worker, SIGKILL it after `delay` s (and, if asked, once a snapshot
    rewrite is under way); returns the units it reported committed."""
    cmd = [sys.executable, str(WORKER), str(state_dir), "--count", str(UNITS)]
    cmd += ["--checkpoint-bytes", "2048", "--lock-timeout", "10"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        if first != "ready\n":
            proc.kill()
            raise AssertionError(f"worker did not start: {first!r} {proc.stderr.read()}")
        time.sleep(delay)
        if in_snapshot:
            _wait_for_temp(state_dir, timeout=2.0)
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, err)
    # A kill can land between a print's bytes: only whole lines count as reported.
    return [int(line) for line in out.split("\n")[:-1]]


def _check_store(state_dir: Path, reported: set[int], threads_from: int = 0) -> int:
    """Assert the store is whole; returns the number of units in it.

    The threads of units from `threads_from` on are read back one by one (the
    older ones were checked in earlier rounds).
    """
    store = TinyDBStore(state_dir)
    view = store.view()
    units = sorted(unit_number(n) for n in view.numbers())
    # Contiguous: no unit lost between two that survived.
    assert units == list(range(len(units))), "gap in the committed units"
    missing = reported - set(units)
    assert not missing, f"units reported committed but not in the store: {sorted(missing)}"
    for n in units[threads_from:]:
        assert [e.type for e in store.thread(unit_invoice(n))] == ["imported", "note"], n
    store.close()
    return len(units)


def test_sigkill_at_random_moments_loses_no_committed_unit(tmp_path: Path) -> None:
    started = time.monotonic()
    rng = random.Random(SEED)
    state_dir = tmp_path / "state"
    store = TinyDBStore(state_dir)
    for chunk in range(0, PREFILL, 100):
        with store.transaction() as tx:
            for n in range(chunk, chunk + 100):
                tx.add_all(unit_events(n, datetime.now(UTC)))
    store.close()
    reported = set(range(PREFILL))
    checked = 0
    killed_in_snapshot = 0

    for round_no in range(ROUNDS):
        got = _run_and_kill(state_dir, rng.uniform(0.0, MAX_DELAY), in_snapshot=round_no % 2 == 1)
        assert got == sorted(got), "a unit number was reused"
        assert not reported & set(got), "a unit number was reused"
        reported |= set(got)
        killed_in_snapshot += bool(_temps(state_dir))

        # Restarted after the kill: loads, and holds every reported unit whole.
        count = _check_store(state_dir, reported, threads_from=checked)
        checked = count

        # The next transaction (one more unit, from this process) continues the
        # numbering, cuts a torn journal tail and removes the killed writer's temp files.
        store = TinyDBStore(state_dir)
        with store.transaction() as tx:
            n = commit_unit(tx)
        store.close()
        assert n == count, round_no
        reported.add(n)
        assert _temps(state_dir) == []
        # Nothing half, nothing torn: the journal holds an imported event iff it
        # holds the note, and only for the units the store shows.
        imported, noted = _raw_journal_units(state_dir)
        assert imported == noted == {unit_invoice(i) for i in range(n + 1)}

    # Units committed just before a kill may not have been reported: never fewer.
    assert _check_store(state_dir, reported, threads_from=checked) >= len(reported)
    assert len(reported) > PREFILL + ROUNDS, "the workers committed nothing"
    # The premise of the test: kills did land inside snapshot rewrites.
    assert killed_in_snapshot >= ROUNDS // 4, killed_in_snapshot
    assert time.monotonic() - started < 60
