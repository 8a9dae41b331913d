"""Replies as they arrive: IMAP IDLE, renewed, with a catch-up pass after every wake-up.

IDLE is a hint, not a guarantee: a server may drop a notification, and nothing is
announced while the connection is down. So every wake-up, every renewal and every
reconnect is followed by a full pass (`inbox.Ingest`), which reads whatever is in the
folder; the pass is what is exactly-once, not the notification. Servers without IDLE
are polled. A lost connection is retried with growing pauses, and the loop goes on.

Used by `mahnwerk ingest --watch`, and by the service loop (`mahnwerk run`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from mahnwerk.config import LoadedRules
from mahnwerk.delivery import TickBusy, tick_lock
from mahnwerk.imap import ImapError, ImapSession
from mahnwerk.inbox import Ingest, IngestReport
from mahnwerk.smtp import password
from mahnwerk.store.tinydb_store import TinyDBStore

log = logging.getLogger(__name__)

# RFC 2177: servers may drop an IDLE after 30 minutes; renew well before.
RENEW_SECONDS = 9 * 60
POLL_SECONDS = 60.0
BACKOFF_SECONDS: Sequence[float] = (1, 2, 5, 10, 30, 60, 120, 300)


class ReplyWatcher:
    """One IMAP connection kept open; `step()` does one wait and one pass."""

    def __init__(
        self,
        store: TinyDBStore,
        rules: Callable[[], LoadedRules],
        environ: Mapping[str, str],
        *,
        now: Callable[[], datetime],
        on_report: Callable[[IngestReport], None] = lambda report: None,
        sleep: Callable[[float], None] = time.sleep,
        renew: float = RENEW_SECONDS,
        poll: float = POLL_SECONDS,
        backoff: Sequence[float] = BACKOFF_SECONDS,
    ) -> None:
        self.store = store
        self.rules = rules
        self.environ = environ
        self.now = now
        self.on_report = on_report
        self.sleep = sleep
        self.renew = renew
        self.poll = poll
        self.backoff = backoff
        self.failures = 0
        # True while waiting for news: a signal handler may then interrupt at once, as no
        # unit of work is open (`mahnwerk ingest --watch`, the service).
        self.waiting = False
        self._session: ImapSession | None = None
        self._catch_up = True

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.connected

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def step(self, wait: float) -> IngestReport | None:
        """Wait up to `wait` seconds for news (IDLE, or a poll), then read the folder.

        Returns the pass's report, None when the folder could not be read (the error is
        logged and the next step reconnects after a pause) or another tick holds it.
        """
        try:
            session = self._connect()
            if not self._catch_up and wait > 0:
                self.waiting = True
                try:
                    if "IDLE" in session.capabilities():
                        session.idle_wait(min(wait, self.renew))
                    else:
                        self.sleep(min(wait, self.poll))
                finally:
                    self.waiting = False
            self._catch_up = False
            report = self._pass(session)
        except (ImapError, OSError) as exc:
            self._lost(exc)
            return None
        self.failures = 0
        if report is not None:
            self.on_report(report)
        return report

    def _connect(self) -> ImapSession:
        if self._session is not None and self._session.connected:
            return self._session
        loaded = self.rules()
        settings = loaded.rules.imap
        if settings is None:
            raise ImapError("rules.yaml has no imap: section")
        session = ImapSession(settings, password(settings, self.environ))
        session.__enter__()
        self._session = session
        # Whatever arrived while we were away was announced to nobody.
        self._catch_up = True
        log.info("connected to %s:%s, reading %s", settings.host, settings.port, settings.folder)
        return session

    def _pass(self, session: ImapSession) -> IngestReport | None:
        try:
            with tick_lock(self.store.dir):
                report = Ingest(
                    self.store,
                    self.rules(),
                    self.now(),
                    self.environ,
                    session_factory=lambda: session,
                ).run()
        except TickBusy:
            # A tick is running; it reads the replies itself first.
            return None
        for line in report.lines:
            log.info("reply %s: %s %s", line.key, line.state, line.label or "-")
        for error in report.errors:
            log.warning("replies: %s", error)
        return report

    def _lost(self, exc: BaseException) -> None:
        pause = self.backoff[min(self.failures, len(self.backoff) - 1)]
        self.failures += 1
        log.warning("mailbox: %s; trying again in %.0f s", exc, pause)
        self.close()
        self.waiting = True
        try:
            self.sleep(pause)
        finally:
            self.waiting = False
