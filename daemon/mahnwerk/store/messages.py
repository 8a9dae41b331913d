"""Sent mail, byte for byte, named by its SHA-256: the proof the thread points to.

Content-addressed, so a file is written once and never changed, a resend after a
crash finds its bytes already there, and the hash in the thread proves the file
was not altered since.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mahnwerk.store.atomic import TMP_SUFFIX, atomic_write, fsync_dir
from mahnwerk.store.base import StoreError

MESSAGES = "messages"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def path_of(state_dir: Path, sha256: str) -> Path:
    # One folder: a batch then needs one folder fsync, not one per file (ext4 indexes
    # large folders, and a busy year is some ten thousand files).
    return state_dir / MESSAGES / f"{sha256}.eml"


def put(state_dir: Path, data: bytes) -> str:
    """Store the message durably (before the outbox names it) and return its hash."""
    return put_many(state_dir, [data])[0]


def put_many(state_dir: Path, datas: list[bytes]) -> list[str]:
    """Store a batch durably; one fsync per file and one for the folder."""
    folder = state_dir / MESSAGES
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    hashes = []
    for data in datas:
        sha = digest(data)
        hashes.append(sha)
        path = path_of(state_dir, sha)
        if path.exists() and digest(path.read_bytes()) == sha:
            continue
        atomic_write(path, data, sync_dir=False)
    fsync_dir(folder)
    return hashes


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
    for tmp in (state_dir / MESSAGES).glob(f".*{TMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed
