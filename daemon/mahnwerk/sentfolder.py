"""The IMAP Sent folder as the outbox sees it: where a crashed send is looked up, and filed.

Only used when rules.yaml names `imap.sent_folder`. The lookup is trusted only
when the provider files every submitted mail there itself (Gmail, Microsoft
365). With `append_sent`, mahnwerk files the copy itself, after the "sent"
record, so a mail interrupted before that record is never there and the lookup
would wrongly say "not sent"; `outbox.on_unknown` decides instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mahnwerk.credentials import password
from mahnwerk.outbox import Entry
from mahnwerk.rules import Imap

if TYPE_CHECKING:
    from mahnwerk.imap import ImapSession


class SentFolder:
    """One IMAP login per tick, made on first use (most ticks never need one)."""

    def __init__(self, settings: Imap, environ: Mapping[str, str]) -> None:
        if settings.sent_folder is None:
            raise ValueError("imap.sent_folder is not set")
        self.settings = settings
        self.folder: str = settings.sent_folder
        self._environ = environ
        self._session: ImapSession | None = None

    @classmethod
    def hooks_for(cls, settings: Imap | None, environ: Mapping[str, str]) -> SentFolder | None:
        if settings is None or settings.sent_folder is None:
            return None
        return cls(settings, environ)

    def tick_hooks(self) -> dict[str, Any]:
        """The `sent_lookup` or `filer` argument of delivery.Tick (never both; see above)."""
        if self.settings.append_sent:
            return {"filer": self.file}
        return {"sent_lookup": self.look_up}

    def _open(self) -> ImapSession:
        # imapclient is imported only when a folder is really asked.
        from mahnwerk.imap import ImapSession

        if self._session is None or not self._session.connected:
            session = ImapSession(self.settings, password(self.settings, self._environ))
            session.__enter__()
            self._session = session
        return self._session

    def look_up(self, entries: Sequence[Entry]) -> dict[str, bool]:
        """Whether each entry's Message-ID is in the folder; raises if the folder cannot tell."""
        session = self._open()
        return {e.key: bool(session.find_message_id(self.folder, e.message_id)) for e in entries}

    def file(self, data: bytes) -> None:
        self._open().append(self.folder, data, seen=True)

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()
