"""A local Maildir that stands in for the IMAP server (`mahnwerk demo`).

Implements `inbox.Mailbox`, so ingestion reads it exactly as it reads IMAP: folders,
UIDs, UIDVALIDITY, fetch and MOVE. The layout is Maildir++ as Dovecot writes it: the
root is INBOX, a folder `Mahnwerk/Processed` is the directory `.Mahnwerk.Processed`,
each with `tmp/`, `new/` and `cur/`; a mail client pointed at the root shows them all.

UIDs must stay the same for a message as long as it is in its folder (ingestion records
them, and a kill between its commit and its move relies on finding the same UID again).
File names alone cannot give that, so each folder keeps a `mahnwerk-uidlist` (like
Dovecot's `dovecot-uidlist`): its UIDVALIDITY, the next UID and one line per message,
keyed by the file's base name (the part before `:2,`, which flags change). Files not
yet listed get the next UIDs in the order of their names, which is arrival order for
names made by `deliver`.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import secrets
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from mahnwerk.imap import FolderState

INBOX = "INBOX"
UIDLIST = "mahnwerk-uidlist"
_LOCK = "mahnwerk-uidlist.lock"
_SUBDIRS = ("tmp", "new", "cur")
# One counter per process keeps names unique when two mails arrive in one microsecond.
_counter = itertools.count(1)


class Maildir:
    """One Maildir++ tree; `open_folder` selects the folder the other calls work on."""

    def __init__(self, root: Path) -> None:
        self.root = root
        _make(root)
        self._selected: str | None = None
        self._paths: dict[int, Path] = {}

    # -- what ingestion calls (inbox.Mailbox) ----------------------------------------

    def ensure_folder(self, folder: str) -> bool:
        """Create `folder` unless it exists; True if it was created."""
        path = self.folder_path(folder)
        if all((path / sub).is_dir() for sub in _SUBDIRS):
            return False
        _make(path)
        return True

    def open_folder(self, folder: str) -> FolderState:
        """Select `folder`. A missing folder is an error, as on IMAP: a typo in rules.yaml
        must not quietly read an empty new folder."""
        path = self.folder_path(folder)
        if not (path / "cur").is_dir() or not (path / "new").is_dir():
            raise FileNotFoundError(f"no folder {folder!r} in the Maildir {self.root}")
        self._selected = folder
        validity, next_uid, paths = self._scan(path)
        self._paths = paths
        return FolderState(folder, validity, next_uid, len(paths))

    def uids(self) -> list[int]:
        """Every UID in the selected folder, ascending; mail delivered since it was opened
        counts too, as on IMAP."""
        self._paths = self._scan(self._folder())[2]
        return sorted(self._paths)

    def fetch(self, uids: list[int]) -> dict[int, bytes]:
        """The exact bytes of each message; a UID that is gone is left out, as IMAP does."""
        out: dict[int, bytes] = {}
        for uid in uids:
            data = self._read(uid)
            if data is not None:
                out[uid] = data
        return out

    def move(self, uids: list[int], folder: str) -> None:
        """Rename each message into `folder`'s cur/ (atomic per message, like IMAP MOVE);
        the target gives it a UID the next time it is read."""
        if not uids:
            return
        target = self.folder_path(folder)
        if not (target / "cur").is_dir():
            raise FileNotFoundError(f"no folder {folder!r} in the Maildir {self.root}")
        source = self._folder()
        with _locked(source):
            for uid in uids:
                path = self._paths.get(uid)
                if path is None:
                    continue
                name = path.name if ":" in path.name else f"{path.name}:2,"
                with contextlib.suppress(FileNotFoundError):  # moved meanwhile: gone either way
                    os.rename(path, target / "cur" / name)
        self._paths = self._scan(source)[2]

    # -- delivering, as the MTA would --------------------------------------------------

    def deliver(self, data: bytes, folder: str = INBOX, *, when: datetime | None = None) -> Path:
        """Put a message into `folder`'s new/ the Maildir way: written in tmp/, then renamed,
        so a reader never sees half a mail. The bytes are kept exactly as given.

        `when` is the arrival time the name carries (default: now); names sort by it, so
        new mail is numbered in the order it arrived (a simulation passes its own time).
        """
        path = self.folder_path(folder)
        if not (path / "new").is_dir():
            raise FileNotFoundError(f"no folder {folder!r} in the Maildir {self.root}")
        # The standard unique name: time, microseconds, pid, a counter, the host.
        now = when.timestamp() if when is not None else time.time()
        seconds, micro = int(now), int((now % 1) * 1_000_000)
        host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        name = f"{seconds}.M{micro:06d}P{os.getpid()}Q{next(_counter)}.{host}"
        tmp = path / "tmp" / name
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        final = path / "new" / name
        os.rename(tmp, final)
        return final

    def folder_path(self, folder: str) -> Path:
        """Maildir++: INBOX is the root, `A/B` is `.A.B`."""
        if folder.upper() == INBOX:
            return self.root
        parts = folder.split("/")
        if any(not p or "." in p or p.startswith("~") for p in parts):
            raise ValueError(f"folder {folder!r}: no empty parts and no '.' in a Maildir++ name")
        return self.root / ("." + ".".join(parts))

    def close(self) -> None:
        """Nothing to release; here so that a Maildir can be used where a session is."""

    # -- the UID list ------------------------------------------------------------------

    def _folder(self) -> Path:
        if self._selected is None:
            raise RuntimeError("no folder selected: call open_folder first")
        return self.folder_path(self._selected)

    def _read(self, uid: int) -> bytes | None:
        for attempt in range(2):
            path = self._paths.get(uid)
            if path is None:
                return None
            try:
                return path.read_bytes()
            except FileNotFoundError:
                if attempt == 0:  # renamed new/ -> cur/ by a mail client: look again
                    self._paths = self._scan(self._folder())[2]
        return None

    def _scan(self, folder: Path) -> tuple[int, int, dict[int, Path]]:
        """Read the folder's UID list, number the files not in it, drop the ones gone."""
        with _locked(folder):
            listed = folder / UIDLIST
            validity, next_uid, by_name = _read_uidlist(listed)
            files = {_base(p.name): p for sub in ("new", "cur") for p in _entries(folder / sub)}
            changed = validity == 0
            if changed:
                validity = secrets.randbelow(2**31 - 1) + 1
            for name in list(by_name):
                if name not in files:
                    del by_name[name]
                    changed = True
            for name in sorted(set(files) - set(by_name)):
                by_name[name] = next_uid
                next_uid += 1
                changed = True
            if changed:
                _write_uidlist(listed, validity, next_uid, by_name)
        return validity, next_uid, {uid: files[name] for name, uid in by_name.items()}


def _make(path: Path) -> None:
    for sub in _SUBDIRS:
        (path / sub).mkdir(parents=True, exist_ok=True, mode=0o700)


def _entries(directory: Path) -> Iterator[Path]:
    with os.scandir(directory) as it:
        for entry in it:
            if not entry.name.startswith(".") and entry.is_file():
                yield Path(entry.path)


def _base(name: str) -> str:
    return name.split(":", 1)[0]


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Two readers numbering the same new files at once would give them different UIDs."""
    fd = os.open(folder / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read_uidlist(path: Path) -> tuple[int, int, dict[str, int]]:
    """(UIDVALIDITY, next UID, base name -> UID); (0, 1, {}) for a folder never read."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return 0, 1, {}
    head = dict((w[0], int(w[1:])) for w in lines[0].split()) if lines else {}
    by_name: dict[str, int] = {}
    for line in lines[1:]:
        uid, _, name = line.partition(" ")
        if name:
            by_name[name] = int(uid)
    return head.get("V", 0), head.get("N", 1), by_name


def _write_uidlist(path: Path, validity: int, next_uid: int, by_name: dict[str, int]) -> None:
    rows = sorted(by_name.items(), key=lambda item: item[1])
    text = f"V{validity} N{next_uid}\n" + "".join(f"{uid} {name}\n" for name, uid in rows)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
