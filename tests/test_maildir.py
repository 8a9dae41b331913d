"""The local Maildir that `mahnwerk demo` reads in place of IMAP: folders, UIDs that stay
put, exact bytes, MOVE, as ingestion (inbox.Mailbox) relies on them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mahnwerk.inbox import Mailbox
from mahnwerk.maildir import UIDLIST, Maildir

PROCESSED = "Mahnwerk/Processed"
START = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def mail(n: int) -> bytes:
    # CRLF, 8-bit text and no final newline: nothing may be rewritten on the way.
    return (
        f"From: kunde{n}@example.org\r\nSubject: Antwort {n}\r\n"
        f"Message-ID: <{n}@example.org>\r\n\r\nGrüße, Zeile\r\nzwei {n}"
    ).encode()


def fill(box: Maildir, count: int, first: int = 1) -> None:
    for n in range(first, first + count):
        box.deliver(mail(n), when=START + timedelta(minutes=n))


def test_it_is_a_mailbox(tmp_path: Path) -> None:
    box: Mailbox = Maildir(tmp_path / "m")
    assert box.open_folder("INBOX").exists == 0


def test_uids_and_uidvalidity_are_stable_across_instances(tmp_path: Path) -> None:
    first = Maildir(tmp_path / "m")
    fill(first, 3)
    state = first.open_folder("INBOX")
    assert state.uidvalidity > 0
    assert (state.exists, state.uidnext) == (3, 4)
    assert first.uids() == [1, 2, 3]
    by_uid = first.fetch([1, 2, 3])

    second = Maildir(tmp_path / "m")
    again = second.open_folder("INBOX")
    assert again.uidvalidity == state.uidvalidity
    assert second.uids() == [1, 2, 3]
    assert second.fetch([1, 2, 3]) == by_uid
    # New mail is numbered after the old, whichever instance sees it first.
    fill(second, 1, first=4)
    assert first.uids() == [1, 2, 3, 4]
    assert second.uids() == [1, 2, 3, 4]
    assert Maildir(tmp_path / "m").open_folder("INBOX").uidvalidity == state.uidvalidity


def test_uids_follow_arrival_order(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "m")
    box.deliver(mail(2), when=START + timedelta(hours=2))
    box.deliver(mail(1), when=START + timedelta(hours=1))
    box.open_folder("INBOX")
    fetched = box.fetch(box.uids())
    assert [fetched[uid] for uid in sorted(fetched)] == [mail(1), mail(2)]


def test_fetch_returns_the_exact_bytes(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "m")
    fill(box, 2)
    box.open_folder("INBOX")
    assert box.fetch([1, 2]) == {1: mail(1), 2: mail(2)}
    # A UID that is not there is left out, as an IMAP server does.
    assert box.fetch([2, 99]) == {2: mail(2)}


def test_a_mail_client_marking_a_mail_read_keeps_its_uid(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "m")
    fill(box, 2)
    box.open_folder("INBOX")
    new = sorted((tmp_path / "m" / "new").iterdir())[0]
    new.rename(tmp_path / "m" / "cur" / f"{new.name}:2,S")
    assert box.uids() == [1, 2]
    assert box.fetch([1]) == {1: mail(1)}


def test_folders_are_made_once_in_maildir_plus_plus_layout(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "m")
    assert box.ensure_folder(PROCESSED) is True
    assert box.ensure_folder(PROCESSED) is False
    folder = tmp_path / "m" / ".Mahnwerk.Processed"
    assert all((folder / sub).is_dir() for sub in ("tmp", "new", "cur"))
    assert box.open_folder(PROCESSED).exists == 0
    with pytest.raises(FileNotFoundError, match="Mahnwerk/Review"):
        box.open_folder("Mahnwerk/Review")
    for bad in ("a.b", "a//b", "/a"):
        with pytest.raises(ValueError):
            box.ensure_folder(bad)


def test_move_renames_into_the_target_cur(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "m")
    box.ensure_folder(PROCESSED)
    fill(box, 4)
    box.open_folder("INBOX")
    assert box.uids() == [1, 2, 3, 4]
    box.move([1, 3], PROCESSED)
    assert box.uids() == [2, 4]
    assert box.fetch([2, 4]) == {2: mail(2), 4: mail(4)}
    moved = sorted(p.name for p in (tmp_path / "m" / ".Mahnwerk.Processed" / "cur").iterdir())
    assert len(moved) == 2 and all(name.endswith(":2,") for name in moved)
    # UIDs are never given again in a folder: the next mail gets 5.
    fill(box, 1, first=5)
    assert box.uids() == [2, 4, 5]

    other = Maildir(tmp_path / "m")
    state = other.open_folder(PROCESSED)
    assert state.exists == 2
    assert other.fetch(other.uids()) == {1: mail(1), 2: mail(3)}
    with pytest.raises(FileNotFoundError):
        box.move([2], "Mahnwerk/Review")


def test_a_lost_uid_list_means_a_new_uidvalidity(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "m")
    fill(box, 1)
    before = box.open_folder("INBOX").uidvalidity
    (tmp_path / "m" / UIDLIST).unlink()
    after = Maildir(tmp_path / "m").open_folder("INBOX").uidvalidity
    # The UIDs may mean other messages now; ingestion then goes by Message-ID.
    assert after != before
