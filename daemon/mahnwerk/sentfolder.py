"""The IMAP Sent folder as the outbox sees it: where a crashed send is looked up, and filed.

Only consulted when rules.yaml names `imap.sent_folder`. The lookup is trusted
only when the provider files every submitted mail there itself (Gmail,
Microsoft 365); with `append_sent` mahnwerk files the copy itself, after the
"sent" record, so a mail interrupted before that record is never there, and
the lookup would wrongly say "not sent". Then on_unknown decides instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mahnwerk.credentials import password
from mahnwerk.outbox import Entry
from mahnwerk.rules import Imap, Rules


def imap_hooks(rules: Rules, environ: Mapping[str, str]) -> dict[str, Any]:
    """The `sent_lookup` and `filer` arguments of delivery.Tick for these rules."""
    settings = rules.imap
    if settings is None or settings.sent_folder is None:
        return {}
    if settings.append_sent:
        return {"filer": lambda data: file_copy(settings, environ, data)}
    return {"sent_lookup": lambda entries: look_up(settings, environ, entries)}


def look_up(
    settings: Imap, environ: Mapping[str, str], entries: Sequence[Entry]
) -> dict[str, bool]:
    """Whether each entry's Message-ID is in the Sent folder; raises if the folder cannot tell."""
    from mahnwerk.imap import ImapSession  # imapclient only when there is a folder to ask

    folder = settings.sent_folder
    assert folder is not None
    with ImapSession(settings, password(settings, environ)) as session:
        return {e.key: bool(session.find_message_id(folder, e.message_id)) for e in entries}


def file_copy(settings: Imap, environ: Mapping[str, str], data: bytes) -> None:
    from mahnwerk.imap import ImapSession

    folder = settings.sent_folder
    assert folder is not None
    with ImapSession(settings, password(settings, environ)) as session:
        session.append(folder, data, seen=True)
