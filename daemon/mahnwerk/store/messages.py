"""Sent mail, byte for byte, named by its SHA-256: the proof the thread points to.

Content-addressed, so a file is written once and never changed, a resend after a
crash finds its bytes already there, and the hash in the thread proves the file
was not altered since.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mahnwerk.store.atomic import TMP_SUFFIX, atomic_write
from mahnwerk.store.base import StoreError

MESSAGES = "messages"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def path_of(state_dir: Path, sha256: str) -> Path:
    return state_dir / MESSAGES / sha256[:2] / f"{sha256}.eml"


def put(state_dir: Path, data: bytes) -> str:
    """Store the message durably (before the outbox names it) and return its hash."""
    sha = digest(data)
    path = path_of(state_dir, sha)
    if path.exists() and digest(path.read_bytes()) == sha:
        return sha
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, data)
    return sha


def get(state_dir: Path, sha256: str) -> bytes:
    path = path_of(state_dir, sha256)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path} is missing: the sent message cannot be shown or resent") from None
    if digest(data) != sha256:
        raise StoreError(f"{path} does not match its hash: it was changed after it was written")
    return data


def remove_stale_temps(state_dir: Path) -> int:
    """Temp files of a write a kill interrupted; call while holding the tick lock."""
    removed = 0
    for tmp in (state_dir / MESSAGES).glob(f"*/.*{TMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed
