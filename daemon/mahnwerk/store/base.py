"""The repository interface the rest of mahnwerk talks to.

Callers see invoices, histories, threads and transactions, never files, so a
PostgreSQL backend can replace the embedded one without touching the core.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

from mahnwerk import mailbox
from mahnwerk.ledger import history_of, invoice_of
from mahnwerk.models import EMPTY_HISTORY, Event, History, Invoice
from mahnwerk.outbox import Entry, undeliverable_reasons


class StoreError(Exception):
    """The store cannot be used as it is; the message says why and what to do."""


class StoreBusy(StoreError):
    pass


# number -> (the record converted, its Invoice, its History). A record is replaced,
# never changed, when an event touches it, so `cached[0] is record` says the
# conversions still hold; the cache keeps the record alive, so its id is not reused.
ConversionCache = dict[str, tuple[dict[str, Any], Invoice, History]]


class StoreView:
    """A consistent, read-only picture of the store at one moment.

    Conversions to Invoice and History are kept in a cache that outlives the
    view, so a long-running service converts only what changed between ticks.
    """

    def __init__(
        self,
        records: Mapping[str, dict[str, Any]],
        cache: ConversionCache | None = None,
        outbox: Mapping[str, dict[str, Any]] | None = None,
        addresses: Mapping[str, dict[str, Any]] | None = None,
        mailbox: Mapping[str, dict[str, Any]] | None = None,
        cursors: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        self._records = records
        self._cache: ConversionCache = {} if cache is None else cache
        self._outbox = outbox or {}
        self._addresses = addresses or {}
        self._mailbox = mailbox or {}
        self._cursors = cursors or {}

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, number: object) -> bool:
        return number in self._records

    def numbers(self) -> Iterator[str]:
        return iter(self._records)

    def _converted(self, number: str, record: dict[str, Any]) -> tuple[Invoice, History]:
        hit = self._cache.get(number)
        if hit is not None and hit[0] is record:
            return hit[1], hit[2]
        invoice, history = invoice_of(record), history_of(record)
        self._cache[number] = (record, invoice, history)
        return invoice, history

    def invoice(self, number: str) -> Invoice | None:
        record = self._records.get(number)
        return None if record is None else self._converted(number, record)[0]

    def invoices(self) -> list[Invoice]:
        converted = self._converted
        return [converted(n, r)[0] for n, r in self._records.items()]

    def histories(self) -> dict[str, History]:
        """Only invoices with something in their history; the rest read as empty."""
        out = {}
        converted = self._converted
        for number, record in self._records.items():
            history = converted(number, record)[1]
            if history is not EMPTY_HISTORY:
                out[number] = history
        return out

    def entries(self) -> list[Entry]:
        """Every outbox entry, sent and cancelled ones included."""
        return [Entry.from_json(e) for e in self._outbox.values()]

    def entry_keys(self) -> set[str]:
        """The keys alone, without converting every entry."""
        return set(self._outbox)

    def entry(self, key: str) -> Entry | None:
        raw = self._outbox.get(key)
        return None if raw is None else Entry.from_json(raw)

    def addresses(self) -> list[dict[str, Any]]:
        """The addresses the mail server refused for good, with why and when."""
        return [dict(a) for a in self._addresses.values()]

    def undeliverable(self) -> dict[str, str]:
        return undeliverable_reasons(self._addresses)

    def received(self, key: str) -> dict[str, Any] | None:
        """A received mail's record (mailbox.py) by its key, None if never processed."""
        raw = self._mailbox.get(key)
        return None if raw is None else dict(raw)

    def received_all(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._mailbox.values()]

    def received_by_uid(self) -> dict[tuple[str, int, int], dict[str, Any]]:
        return mailbox.by_uid(self._mailbox)

    def review_queue(self) -> list[dict[str, Any]]:
        return mailbox.review_queue(self._mailbox)

    def cursor(self, folder: str) -> dict[str, Any] | None:
        raw = self._cursors.get(folder)
        return None if raw is None else dict(raw)


class Transaction(Protocol):
    @property
    def view(self) -> StoreView: ...

    def add(self, event: Event) -> None: ...

    def add_all(self, events: Iterable[Event]) -> None: ...


class Repository(Protocol):
    def view(self) -> StoreView: ...

    def transaction(self, *, durable: bool = True) -> AbstractContextManager[Transaction]: ...

    def sync(self) -> None: ...

    def thread(self, invoice_number: str) -> list[Event]: ...

    def outbox_thread(self, key: str) -> list[Event]: ...

    def close(self) -> None: ...
