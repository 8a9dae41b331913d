"""Persistence behind a small repository interface (base.Repository)."""

from mahnwerk.store.base import Repository, StoreBusy, StoreError, StoreView, Transaction
from mahnwerk.store.tinydb_store import TinyDBStore, open_store

__all__ = [
    "Repository",
    "StoreBusy",
    "StoreError",
    "StoreView",
    "TinyDBStore",
    "Transaction",
    "open_store",
]
