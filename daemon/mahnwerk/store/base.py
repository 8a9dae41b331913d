"""The repository interface the rest of mahnwerk talks to.

Callers see invoices, histories, threads and transactions, never files, so a
PostgreSQL backend can replace the embedded one without touching the core.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

from mahnwerk.ledger import history_of, invoice_of
from mahnwerk.models import EMPTY_HISTORY, Event, History, Invoice


class StoreError(Exception):
    """The store cannot be used as it is; the message says why and what to do."""


class StoreBusy(StoreError):
    pass


class StoreView:
    """A consistent, read-only picture of the store at one moment."""

    def __init__(self, records: Mapping[str, dict[str, Any]]) -> None:
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, number: object) -> bool:
        return number in self._records

    def numbers(self) -> Iterator[str]:
        return iter(self._records)

    def invoice(self, number: str) -> Invoice | None:
        record = self._records.get(number)
        return None if record is None else invoice_of(record)

    def invoices(self) -> list[Invoice]:
        return [invoice_of(r) for r in self._records.values()]

    def histories(self) -> dict[str, History]:
        """Only invoices with something in their history; the rest read as empty."""
        out = {}
        for number, record in self._records.items():
            history = history_of(record)
            if history is not EMPTY_HISTORY:
                out[number] = history
        return out


class Transaction(Protocol):
    @property
    def view(self) -> StoreView: ...

    def add(self, event: Event) -> None: ...

    def add_all(self, events: Iterable[Event]) -> None: ...


class Repository(Protocol):
    def view(self) -> StoreView: ...

    def transaction(self) -> AbstractContextManager[Transaction]: ...

    def thread(self, invoice_number: str) -> list[Event]: ...

    def close(self) -> None: ...
