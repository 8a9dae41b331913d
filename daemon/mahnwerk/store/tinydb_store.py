"""The embedded store: a TinyDB snapshot plus an append-only journal of events.

Files in the state directory:
- `journal.log`: every thread event, a line each, and a commit line per unit of work
  (journal.py). The truth.
- `store.json`: a TinyDB document file with one record per invoice (ledger.py),
  one per outbox entry (outbox.py) and one per undeliverable address: the fold
  of the journal up to `journal_pos`. A cache: delete it and it is rebuilt
  from the journal.
- `lock`: held (flock) by the one process that may write.

A unit of work is one journal append (one write, fsync'd): O(1), whatever
the number of invoices. The snapshot is rewritten atomically only when the
journal has grown past `checkpoint_bytes` since the last one, so opening the
store replays a bounded tail.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from tinydb import Storage, TinyDB

from mahnwerk import ledger, mailbox, outbox
from mahnwerk.gcpause import paused_gc
from mahnwerk.models import Event
from mahnwerk.store import journal
from mahnwerk.store.atomic import atomic_write, remove_stale_temps
from mahnwerk.store.base import ConversionCache, StoreBusy, StoreError, StoreView
from mahnwerk.store.migrations import MIGRATIONS, Migration, SchemaTooNew, meta, migrate

SNAPSHOT = "store.json"
JOURNAL = "journal.log"
LOCK = "lock"
DEFAULT_CHECKPOINT_BYTES = 8 << 20


class AtomicJSONStorage(Storage):
    """TinyDB storage that never leaves a half-written file (stock JSONStorage does)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Any] | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            with paused_gc():
                loaded = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise StoreError(
                f"{self.path} is not valid JSON ({exc}); it is a cache of {JOURNAL}: "
                "move it away and mahnwerk rebuilds it"
            ) from None
        return loaded if isinstance(loaded, dict) else None

    def write(self, data: dict[str, Any]) -> None:
        atomic_write(self.path, orjson.dumps(data))

    def close(self) -> None:
        pass


class _Tx:
    def __init__(self, store: TinyDBStore) -> None:
        self._store = store
        self.events: list[Event] = []

    @property
    def view(self) -> StoreView:
        store = self._store
        return StoreView(
            store._records,
            store._cache,
            store._outbox,
            store._addresses,
            store._mailbox,
            store._cursors,
        )

    def add(self, event: Event) -> None:
        self.events.append(event)

    def add_all(self, events: Iterable[Event]) -> None:
        self.events.extend(events)


class TinyDBStore:
    def __init__(
        self,
        state_dir: Path,
        *,
        checkpoint_bytes: int = DEFAULT_CHECKPOINT_BYTES,
        lock_timeout: float = 60.0,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.dir = state_dir
        self.checkpoint_bytes = checkpoint_bytes
        self.lock_timeout = lock_timeout
        self._migrations = migrations
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._journal = self.dir / JOURNAL
        self._db = TinyDB(self.dir / SNAPSHOT, storage=AtomicJSONStorage)
        self._records: dict[str, dict[str, Any]] = {}
        self._outbox: dict[str, dict[str, Any]] = {}
        self._addresses: dict[str, dict[str, Any]] = {}
        self._mailbox: dict[str, dict[str, Any]] = {}
        self._cursors: dict[str, dict[str, Any]] = {}
        self._cache: ConversionCache = {}
        self._meta: dict[str, Any] = {}
        self._snap_ident: tuple[int, int, int] | None = None
        self._snap_pos = 0
        self._pos = 0
        self._seq = 0
        self._unsynced = False
        self._lock_fd: int | None = None
        self._temps_cleared = False
        self._ensure_schema()

    # -- reading -------------------------------------------------------------

    def view(self) -> StoreView:
        """The current state, including what other processes committed since."""
        self._refresh()
        return StoreView(
            dict(self._records),
            self._cache,
            dict(self._outbox),
            dict(self._addresses),
            dict(self._mailbox),
            dict(self._cursors),
        )

    def thread(self, invoice_number: str) -> list[Event]:
        """The invoice's events, oldest first, read from the journal by offset."""
        self._refresh()
        record = self._records.get(invoice_number)
        if record is None:
            return []
        try:
            return [
                Event.from_json(journal.read_event_at(self._journal, offset))
                for offset in record["thread"]
            ]
        except journal.JournalCorrupt as exc:
            raise StoreError(str(exc)) from None

    def outbox_thread(self, key: str) -> list[Event]:
        """An outbox entry's own events, oldest first."""
        self._refresh()
        entry = self._outbox.get(key)
        if entry is None:
            return []
        try:
            return [
                Event.from_json(journal.read_event_at(self._journal, offset))
                for offset in entry["thread"]
            ]
        except journal.JournalCorrupt as exc:
            raise StoreError(str(exc)) from None

    @property
    def schema_version(self) -> int:
        return int(self._meta.get("schema", 0))

    @property
    def applied_migrations(self) -> list[str]:
        return list(self._meta.get("migrations", []))

    def _snapshot_ident(self) -> tuple[int, int, int] | None:
        try:
            st = (self.dir / SNAPSHOT).stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load_snapshot(
        self, data: dict[str, Any] | None = None, ident: tuple[int, int, int] | None = None
    ) -> None:
        """Take the snapshot as the state; `data` and `ident` when the caller has read it."""
        if data is None:
            ident = self._snapshot_ident()
            data = self._db.storage.read()
            if data is None:
                # Deleted under us: start over as a new store would, and replay the journal.
                data, _ = migrate(None, self._migrations)
        doc = meta(data)
        self._meta = dict(doc)
        known = max(m.version for m in self._migrations)
        if int(doc.get("schema", 0)) > known:
            raise StoreError(
                f"{self.dir / SNAPSHOT} has schema version {doc['schema']}, this mahnwerk "
                f"knows up to {known}: upgrade mahnwerk before using this state directory"
            )
        with paused_gc():
            docs = (data.get("invoices") or {}).values()
            self._records = {r["invoice"]["number"]: r for r in docs}
            self._outbox = {e["key"]: e for e in (data.get("outbox") or {}).values()}
            self._addresses = {
                a["email"].casefold(): a for a in (data.get("addresses") or {}).values()
            }
            self._mailbox = {r["key"]: r for r in (data.get("mailbox") or {}).values()}
            self._cursors = {c["folder"]: c for c in (data.get("cursors") or {}).values()}
            self._cache.clear()
        self._snap_pos = self._pos = int(doc.get("journal_pos", 0))
        self._seq = int(doc.get("seq", 0))
        self._snap_ident = ident

    def _refresh(self) -> None:
        if self._snapshot_ident() != self._snap_ident:
            self._load_snapshot()
        try:
            units, end = journal.read_from(self._journal, self._pos)
        except journal.JournalCorrupt as exc:
            raise StoreError(str(exc)) from None
        with paused_gc():
            for unit in units:
                self._apply(unit.seq, unit.events)
        self._pos = end

    def _apply(self, seq: int, events: list[tuple[int, dict[str, Any]]]) -> None:
        for offset, raw in events:
            event = Event.from_json(raw)
            if event.type in outbox.OUTBOX_EVENTS:
                key = event.data["key"]
                entry = outbox.apply(self._outbox.get(key), event)
                if entry is not None:
                    self._outbox[key] = {**entry, "thread": [*entry["thread"], offset]}
                continue
            if event.type in outbox.ADDRESS_EVENTS:
                outbox.apply_address(self._addresses, event)
                continue
            if event.type in mailbox.MAILBOX_EVENTS:
                key = event.data["key"]
                mail = mailbox.apply(self._mailbox.get(key), event)
                if mail is not None:
                    self._mailbox[key] = {**mail, "thread": [*mail["thread"], offset]}
                continue
            if event.type in mailbox.CURSOR_EVENTS:
                mailbox.apply_cursor(self._cursors, event)
                continue
            record = ledger.apply(self._records.get(event.invoice), event)
            if record is None:
                continue
            # A new dict: a view handed out earlier keeps the record it saw.
            self._records[event.invoice] = {**record, "thread": [*record["thread"], offset]}
        self._seq = max(self._seq, seq)

    # -- writing -------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[_Tx]:
        """One unit of work: exclusive across processes, committed with one journal write.

        Nothing is written if the body raises.  `durable=False` skips the fsync: the unit
        is written before this returns, so a killed process keeps it, and it becomes
        power-safe with the next durable unit or `sync()`.  For records whose loss on a
        power cut is already handled (an SMTP answer: the mail reconciles as unknown).
        """
        with self._locked():
            self._refresh()
            tx = _Tx(self)
            yield tx
            if tx.events:
                self._commit(tx.events, durable=durable)

    def sync(self) -> None:
        """Make every unit written so far durable."""
        if self._unsynced:
            journal.fsync_file(self._journal)
            self._unsynced = False

    def checkpoint(self) -> None:
        with self._locked():
            self._refresh()
            self._write_snapshot()

    def _commit(self, events: list[Event], *, durable: bool = True) -> None:
        seq = self._seq + 1
        raw = [e.to_json() for e in events]
        data, offsets = journal.encode_unit(seq, raw, self._pos)
        end = journal.append(self._journal, self._pos, data, sync=durable)
        # One fsync covers every earlier write to the file.
        self._unsynced = not durable
        self._apply(seq, list(zip(offsets, raw, strict=True)))
        self._pos = end
        if end - self._snap_pos >= self.checkpoint_bytes:
            self._write_snapshot()

    def _write_snapshot(self) -> None:
        # The snapshot must never point past the durable end of the journal.
        self.sync()
        self._meta = {**self._meta, "journal_pos": self._pos, "seq": self._seq}
        data = {
            "_meta": {"1": self._meta},
            "invoices": {str(i): r for i, r in enumerate(self._records.values(), 1)},
            "outbox": {str(i): e for i, e in enumerate(self._outbox.values(), 1)},
            "addresses": {str(i): a for i, a in enumerate(self._addresses.values(), 1)},
            "mailbox": {str(i): r for i, r in enumerate(self._mailbox.values(), 1)},
            "cursors": {str(i): c for i, c in enumerate(self._cursors.values(), 1)},
        }
        self._db.storage.write(data)
        self._snap_pos = self._pos
        self._snap_ident = self._snapshot_ident()

    def _ensure_schema(self) -> None:
        ident = self._snapshot_ident()
        current = self._db.storage.read()
        latest = max(m.version for m in self._migrations)
        if current is not None and int(meta(current).get("schema", 0)) == latest:
            self._load_snapshot(current, ident)
            return
        with self._locked():
            ident = self._snapshot_ident()
            current = self._db.storage.read()
            try:
                migrated, applied = migrate(current, self._migrations)
            except SchemaTooNew as exc:
                raise StoreError(str(exc)) from None
            if applied:
                self._db.storage.write(migrated)
                ident = self._snapshot_ident()
            self._load_snapshot(migrated, ident)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._lock_fd is not None:
            raise StoreError("nested transaction: a unit of work must not open another")
        fd = os.open(self.dir / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    os.close(fd)
                    raise StoreBusy(
                        f"another mahnwerk process (pid {holder}) has held the store "
                        f"{self.dir} for {self.lock_timeout:g} s; try again later"
                    ) from None
                time.sleep(0.05)
        try:
            # Fixed width, written only when it changes: no truncate on the hot path.
            stamp = f"{os.getpid():<20}\n".encode()
            if os.pread(fd, len(stamp), 0) != stamp:
                os.pwrite(fd, stamp, 0)
            if not self._temps_cleared:
                # Once per process: a temp file can only be left by a writer that died.
                remove_stale_temps(self.dir)
                self._temps_cleared = True
            self._lock_fd = fd
            yield
        finally:
            self._lock_fd = None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def close(self) -> None:
        self.sync()
        self._db.close()


def open_store(state_dir: Path, **kwargs: Any) -> TinyDBStore:
    return TinyDBStore(state_dir, **kwargs)
