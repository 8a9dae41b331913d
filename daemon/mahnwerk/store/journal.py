"""The append-only journal of thread events.

A unit of work is written as one line per event followed by a commit line,
all with one write() and one fsync:

    <crc32 hex> {"u": 7, "e": {...event...}}
    <crc32 hex> {"u": 7, "e": {...event...}}
    <crc32 hex> {"u": 7, "n": 2}

A reader applies a unit only once it sees its commit line, so a unit is in
the journal whole or not at all; a unit torn by a crash (a line that fails its
checksum, lacks its newline, or has no commit line after it) is cut off on the
next write. Each event has a line of its own, so an invoice's thread is read by
seeking to its events' offsets, whatever else the unit held. Appending costs
O(1) whatever the number of invoices.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mahnwerk.gcpause import paused_gc
from mahnwerk.store.atomic import fsync_dir


class JournalCorrupt(Exception):
    pass


@dataclass(frozen=True)
class Unit:
    seq: int
    # (offset of the event's line, the event as JSON)
    events: list[tuple[int, dict[str, Any]]]
    end: int


def _line(body: dict[str, Any]) -> bytes:
    payload = orjson.dumps(body)
    return b"%08x " % zlib.crc32(payload) + payload + b"\n"


def encode_unit(seq: int, events: list[dict[str, Any]], start: int) -> tuple[bytes, list[int]]:
    """The bytes of one unit of work, and the offset each event's line will have."""
    lines = [_line({"u": seq, "e": e}) for e in events]
    lines.append(_line({"u": seq, "n": len(events)}))
    offsets = []
    pos = start
    for ln in lines[:-1]:
        offsets.append(pos)
        pos += len(ln)
    return b"".join(lines), offsets


def _decode(line: bytes) -> dict[str, Any] | None:
    """The line's body, or None for a torn or damaged line."""
    if len(line) < 10 or not line.endswith(b"\n") or line[8:9] != b" ":
        return None
    payload = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(payload):
            return None
        body = orjson.loads(payload)
    except ValueError:
        return None
    return body if isinstance(body, dict) and isinstance(body.get("u"), int) else None


def read_from(path: Path, offset: int) -> tuple[list[Unit], int]:
    """Committed units from `offset` on, and the end of the last one.

    What follows that end is a torn unit at most. A bad line with good lines
    after it means the file was damaged, and we stop rather than guess.
    """
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < offset:
                raise JournalCorrupt(
                    f"{path} has {size} bytes, but the snapshot has read {offset} bytes of it"
                )
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        if offset:
            raise JournalCorrupt(
                f"{path} is missing, but the snapshot has read {offset} bytes of it"
            ) from None
        return [], 0
    units: list[Unit] = []
    pending: list[tuple[int, dict[str, Any]]] = []
    pending_seq = -1
    good_end = offset
    pos = 0
    with paused_gc():
        while pos < len(data):
            nl = data.find(b"\n", pos)
            line = data[pos:] if nl < 0 else data[pos : nl + 1]
            body = _decode(line)
            if body is None:
                if _has_commit_after(data, pos + len(line)):
                    raise JournalCorrupt(
                        f"{path}: damaged line at byte {offset + pos} with committed units after it"
                    )
                break
            seq = body["u"]
            if pending and seq != pending_seq:
                raise JournalCorrupt(
                    f"{path}: unit {pending_seq} has no commit line before unit {seq} "
                    f"(byte {offset + pos})"
                )
            if "e" in body:
                if not pending:
                    pending_seq = seq
                pending.append((offset + pos, body["e"]))
            elif body.get("n") == len(pending) and pending:
                units.append(Unit(seq, pending, offset + pos + len(line)))
                good_end = offset + pos + len(line)
                pending = []
            else:
                raise JournalCorrupt(
                    f"{path}: commit line without its events at byte {offset + pos}"
                )
            pos += len(line)
    return units, good_end


def _has_commit_after(data: bytes, start: int) -> bool:
    """Whether a good commit line follows: then the bad line is damage, not a torn tail."""
    pos = start
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            return False
        body = _decode(data[pos : nl + 1])
        if body is not None and "n" in body:
            return True
        pos = nl + 1
    return False


def read_event_at(path: Path, offset: int) -> dict[str, Any]:
    with path.open("rb") as fh:
        fh.seek(offset)
        body = _decode(fh.readline())
    if body is None or "e" not in body:
        raise JournalCorrupt(f"{path}: no event at byte {offset}")
    event: dict[str, Any] = body["e"]
    return event


def append(path: Path, good_end: int, data: bytes, *, sync: bool = True) -> int:
    """Append one unit after `good_end`, cutting any torn tail first; returns the new end.

    `sync=False` leaves the fsync to the next synced append (or `fsync_file`): the unit
    survives a killed process at once (it is in the page cache) and a power cut only once
    synced, which is all a caller may rely on.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if good_end == 0:
            # A new journal: its name must be durable too, or a power cut can take the
            # first unit. No extra stat on the hot path: only an empty journal pays.
            fsync_dir(path.parent)
        if os.fstat(fd).st_size != good_end:
            os.ftruncate(fd, good_end)
        os.lseek(fd, good_end, os.SEEK_SET)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        except BaseException:
            # Disk full or interrupted: leave no partial unit behind.
            os.ftruncate(fd, good_end)
            raise
    finally:
        os.close(fd)
    return good_end + len(data)


def fsync_file(path: Path) -> None:
    """Make units appended with `sync=False` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
