"""Prometheus metrics of `mahnwerk run`: optional, off by default, bound to localhost.

A registry of its own, so nothing else in the process (or a test) adds to it, served by
prometheus-client's small HTTP server thread; the service updates it after every tick
and every pass over the reply folder.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from mahnwerk.delivery import TickReport
from mahnwerk.inbox import IngestReport


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sent = Counter(
            "mahnwerk_mails_sent",
            "Mails the SMTP server accepted, by stage",
            ["stage"],
            registry=self.registry,
        )
        self.replies = Counter(
            "mahnwerk_replies",
            "Replies read, by label",
            ["label"],
            registry=self.registry,
        )
        self.review = Gauge(
            "mahnwerk_review_queue", "Replies waiting for a person", registry=self.registry
        )
        self.last_tick = Gauge(
            "mahnwerk_last_tick_timestamp_seconds",
            "When the last tick finished without errors",
            registry=self.registry,
        )
        self.imap = Gauge(
            "mahnwerk_imap_connected", "1 while the mailbox is connected", registry=self.registry
        )
        self.errors = Counter(
            "mahnwerk_job_errors", "Jobs that failed (logged and recorded)", registry=self.registry
        )

    def serve(self, address: str, port: int) -> None:
        start_http_server(port, addr=address, registry=self.registry)

    def tick(self, report: TickReport, finished: datetime) -> None:
        for step in report.steps:
            if step.result == "sent":
                self.sent.labels(step.stage).inc()
        if not report.errors:
            self.last_tick.set(finished.timestamp())

    def ingest(self, report: IngestReport) -> None:
        for line in report.lines:
            if line.state != "duplicate":
                self.replies.labels(line.label or "none").inc()
