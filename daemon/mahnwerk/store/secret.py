"""The key behind Message-IDs and thread tokens, kept in the state directory.

Made once and never changed: a new key would give a resent mail a new
Message-ID, and replies to old reminders would no longer match their thread.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from mahnwerk.store.atomic import fsync_dir
from mahnwerk.store.base import StoreError

SECRET = "secret"
SECRET_BYTES = 32


def load_or_create(state_dir: Path) -> bytes:
    """The state directory's secret; made on first use, atomically and readable by us only.

    Written to a temp file and linked into place: link fails if another process
    won the race, and then its secret is the one to use. Nobody ever reads half
    a secret.
    """
    path = state_dir / SECRET
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = state_dir / f".{SECRET}.{os.getpid()}.new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, secrets.token_bytes(SECRET_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(state_dir)
    return _read(path)


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    if len(data) != SECRET_BYTES:
        raise StoreError(
            f"{path} has {len(data)} bytes, not {SECRET_BYTES}: it was damaged or replaced. "
            "Restore it from a backup; a new secret would break the matching of replies"
        )
    return data
