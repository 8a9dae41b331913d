"""`mahnwerk run`: the long-running service, as systemd runs it (Type=notify).

One thread. The main loop runs the jobs that are due (the schedule library: a tick every
`service.tick_interval_seconds`), then waits for replies in IMAP IDLE until the next job
is due (or half the watchdog interval, whichever comes first), reads whatever arrived,
tells systemd it is alive, and goes round again. Everything that changes state goes
through the same units of work as the CLI, so a kill at any instruction loses nothing.

Signals (handled between steps, never inside a unit of work):
- SIGTERM / SIGINT: finish the mail in flight, commit, exit 0; a second one exits at once.
- SIGHUP: re-read rules.yaml and the templates; swap them in only if they are valid.

systemd sees READY=1 once the rules and the store are loaded and the mailbox is
connected, STATUS= with a one-line summary, WATCHDOG=1 after every round of the loop
(so a hung connection ends in a restart), RELOADING=1 with MONOTONIC_USEC on reload,
STOPPING=1 on the way out.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from types import FrameType

import schedule

from mahnwerk.checks import check_rules
from mahnwerk.config import ConfigInvalid, LoadedRules, load_rules
from mahnwerk.delivery import Tick, TickBusy, TickReport
from mahnwerk.metrics import Metrics
from mahnwerk.models import Event
from mahnwerk.sentfolder import SentFolder
from mahnwerk.smtp import SendStopped, SmtpSession, password
from mahnwerk.store.base import StoreError
from mahnwerk.store.tinydb_store import TinyDBStore
from mahnwerk.watch import ReplyWatcher

log = logging.getLogger("mahnwerk")

SERVICE_ERROR = "service_error"
# Without a watchdog, the longest wait in IDLE before the loop goes round (and renews).
LONGEST_WAIT = 9 * 60.0
# syslog priorities journald reads from a "<N>" line prefix (sd-daemon(3)).
PRIORITIES = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class _Interrupt(Exception):
    """Raised by a signal handler, only while the loop waits (no unit of work is open)."""


# -- systemd ---------------------------------------------------------------------------


class Notifier:
    """sd_notify(3) without a library: one datagram per message to $NOTIFY_SOCKET."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.address = environ.get("NOTIFY_SOCKET", "")
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog = int(usec) / 1e6 if usec.isdigit() and mine else None

    def __call__(self, **fields: object) -> None:
        if not self.address:
            return
        text = "\n".join(f"{k.upper()}={v}" for k, v in fields.items())
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(text.encode("utf-8"), address)
        except OSError as exc:  # systemd gone: nothing to tell, nothing to stop for
            log.debug("sd_notify failed: %s", exc)


def setup_logging(environ: Mapping[str, str]) -> None:
    """One line per event on stderr; under systemd with a "<N>" priority prefix."""
    journal = bool(environ.get("JOURNAL_STREAM"))

    class Formatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            line = super().format(record).replace("\n", " | ")
            if journal:
                return f"<{PRIORITIES.get(record.levelno, 6)}>{line}"
            return line

    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(name)s: %(message)s" if journal else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # imapclient logs whole commands and message bodies at DEBUG; never below INFO.
    logging.getLogger("imapclient").setLevel(logging.WARNING)


# -- the service -------------------------------------------------------------------------


class Service:
    def __init__(
        self,
        config: Path,
        store: TinyDBStore,
        environ: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.environ = environ
        self.clock = clock
        self.notify = Notifier(environ)
        self.loaded = self._load()
        self.stopping = False
        self.reload_wanted = False
        self.last_tick: datetime | None = None
        self.last_error = ""
        self.errors = 0
        self.watcher: ReplyWatcher | None = None
        self.scheduler = schedule.Scheduler()
        self.metrics = Metrics()
        self._waiting = False

    # -- life cycle ----------------------------------------------------------------------

    def run(self) -> int:
        self._signals()
        self._schedule()
        service = self.loaded.rules.service
        if service.metrics_port is not None:
            self.metrics.serve(service.metrics_address, service.metrics_port)
            log.info(
                "metrics on http://%s:%s/metrics", service.metrics_address, service.metrics_port
            )
        if self.loaded.rules.imap is not None:
            self.watcher = ReplyWatcher(
                self.store,
                lambda: self.loaded,
                self.environ,
                now=self.now,
                sleep=self._sleep,
                on_report=self.metrics.ingest,
            )
            # Connected and caught up before READY: a reply that came in while we were
            # down is acted on before the first reminder. A mailbox that is down does not
            # hold READY back (systemd would restart us in a loop); STATUS says so, and
            # the watcher reconnects with backoff.
            try:
                self._guard("replies", lambda: self._replies(0.0))
            except _Interrupt:
                self.watcher.close()
        self.notify(ready=1, status=self.status())
        log.info("running: a tick every %ss", self.loaded.rules.service.tick_interval_seconds)
        first = True
        try:
            while not self.stopping:
                try:
                    if first:
                        first = False
                        self._guard("tick", self.tick)  # the first tick at once
                    else:
                        self._round()
                except _Interrupt:
                    # Cut out of a wait (IDLE): that connection is in no state to reuse.
                    if self.watcher is not None:
                        self.watcher.close()
                self.notify(watchdog=1, status=self.status())
        finally:
            self.notify(stopping=1, status="stopping")
            if self.watcher is not None:
                self.watcher.close()
        log.info("stopped")
        return 0

    def _round(self) -> None:
        if self.reload_wanted:
            self.reload()
        self._guard("jobs", self.scheduler.run_pending)
        if self.stopping:
            return
        wait = self._wait_budget()
        if self.watcher is not None:
            self._guard("replies", functools.partial(self._replies, wait))
        else:
            self._sleep(wait)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), self.loaded.rules.company.tz)

    def _wait_budget(self) -> float:
        idle = self.scheduler.idle_seconds
        wait = LONGEST_WAIT if idle is None else max(0.0, idle)
        if self.notify.watchdog:
            wait = min(wait, self.notify.watchdog / 2)
        return min(wait, LONGEST_WAIT)

    def _replies(self, wait: float) -> None:
        assert self.watcher is not None
        self.watcher.step(wait)

    @property
    def waiting(self) -> bool:
        """Whether a signal may interrupt right now: only in a wait, never in a pass."""
        return self._waiting or (self.watcher is not None and self.watcher.waiting)

    def _sleep(self, seconds: float) -> None:
        """A wait a signal may cut short (the handler raises only while `_waiting`)."""
        was = self._waiting
        self._waiting = True
        try:
            if self.stopping or self.reload_wanted:
                raise _Interrupt
            time.sleep(seconds)
        finally:
            self._waiting = was

    # -- jobs ---------------------------------------------------------------------------

    def _schedule(self) -> None:
        self.scheduler.clear()
        every = self.loaded.rules.service.tick_interval_seconds
        self.scheduler.every(every).seconds.do(self._guard, "tick", self.tick)

    def tick(self) -> None:
        if self.watcher is not None:
            # Replies first, on the watcher's connection: what arrived stops today's mail.
            self._replies(0.0)
        folder = SentFolder.hooks_for(self.loaded.rules.imap, self.environ)
        hooks = folder.tick_hooks() if folder is not None else {}
        try:
            report = Tick(
                self.store,
                self.loaded,
                self.now(),
                environ=self.environ,
                ingest=False,
                stop=lambda: self.stopping,
                session_factory=self._smtp_session,
                **hooks,
            ).run()
        except TickBusy as exc:
            log.warning("tick skipped: %s", exc)
            return
        finally:
            if folder is not None:
                folder.close()
        self.last_tick = report.now
        self.metrics.tick(report, self.now())
        self._log_tick(report)

    def _smtp_session(self) -> SmtpSession:
        settings = self.loaded.rules.smtp
        assert settings is not None  # Tick asks only when there is an smtp: section
        return SmtpSession(settings, password(settings, self.environ), sleep=self._rate_sleep)

    def _rate_sleep(self, seconds: float) -> None:
        """The rate limit's wait, given up when a stop is asked for (the mail stays queued)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.stopping:
                raise SendStopped
            time.sleep(min(left, 0.2))

    def _log_tick(self, report: TickReport) -> None:
        last = {s.key: s for s in report.steps}
        for s in last.values():
            log.info("%s %s %s <%s>: %s", s.result, s.stage, s.customer_id, s.to, s.detail)
        for e in report.errors:
            log.warning("tick: %s", e)

    def _guard(self, job: str, fn: Callable[[], object]) -> None:
        """A failing job is logged and recorded, and the loop goes on (schedule would not)."""
        try:
            fn()
        except _Interrupt:
            raise
        except Exception as exc:
            self.errors += 1
            self.metrics.errors.inc()
            self.last_error = f"{job}: {type(exc).__name__}: {exc}"
            log.error("%s failed: %s", job, "".join(traceback.format_exception_only(exc)).strip())
            log.debug("%s", traceback.format_exc())
            try:
                with self.store.transaction() as tx:
                    tx.add(
                        Event(
                            "",
                            SERVICE_ERROR,
                            self.now(),
                            f"{job} failed: {type(exc).__name__}: {exc}",
                            {"job": job, "error": type(exc).__name__},
                        )
                    )
            except StoreError as store_exc:
                log.error("could not record the failure: %s", store_exc)

    # -- reload -------------------------------------------------------------------------

    def _load(self) -> LoadedRules:
        loaded = load_rules(self.config)
        errors, _ = check_rules(loaded)
        if errors:
            raise ConfigInvalid(errors)
        return loaded

    def reload(self) -> None:
        self.reload_wanted = False
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify(reloading=1, monotonic_usec=usec, status="reloading rules.yaml")
        try:
            loaded = self._load()
        except ConfigInvalid as exc:
            for e in exc.errors:
                log.error("reload refused, the old rules stay: %s", e)
        else:
            old = self.loaded.rules.service.tick_interval_seconds
            self.loaded = loaded
            if loaded.rules.service.tick_interval_seconds != old:
                self._schedule()
            log.info("rules reloaded from %s", self.config)
        self.notify(ready=1, status=self.status())

    # -- signals ------------------------------------------------------------------------

    def _signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            # A second request: go now. Every write is a unit of work; nothing is half done.
            os._exit(1)
        self.stopping = True
        log.info("%s: finishing the mail in flight, then stopping", signal.Signals(signum).name)
        if self.waiting:
            raise _Interrupt

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.reload_wanted = True
        if self.waiting:
            raise _Interrupt

    # -- status -------------------------------------------------------------------------

    def status(self) -> str:
        view = self.store.view()
        open_ = sum(1 for i in view.invoices() if i.status == "open")
        review = len(view.review_queue())
        self.metrics.review.set(review)
        self.metrics.imap.set(1 if self.watcher is not None and self.watcher.connected else 0)
        parts = [f"{open_} open", f"{review} in review"]
        waiting = sum(1 for e in view.entries() if e.state in ("queued", "retry"))
        if waiting:
            parts.append(f"{waiting} to send")
        parts.append(
            f"last tick {self.last_tick.strftime('%H:%M')}" if self.last_tick else "no tick yet"
        )
        if self.watcher is not None and not self.watcher.connected:
            parts.append("mailbox disconnected")
        if self.errors:
            parts.append(f"{self.errors} error(s), last: {self.last_error[:80]}")
        return ", ".join(parts)


def run_service(config: Path, store: TinyDBStore, environ: Mapping[str, str]) -> int:
    setup_logging(environ)
    return Service(config, store, environ).run()
