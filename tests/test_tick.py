"""`mahnwerk tick` in-process against a real SMTP server on loopback."""

from __future__ import annotations

from datetime import date
from email import message_from_bytes, policy
from pathlib import Path

import smtp_server as loopback
from _factory import at
from _workspace import import_samples, load, smtp_section, write_rules
from mahnwerk.delivery import Tick, TickReport
from mahnwerk.store import TinyDBStore

smtp_server = loopback.smtp_server

DAY = date(2026, 11, 25)


def run(state: Path, config: Path, day: date, hour: int = 9) -> TickReport:
    store = TinyDBStore(state)
    try:
        return Tick(store, load(config), at(day, hour), environ={}).run()
    finally:
        store.close()


def test_first_tick_sends_the_planned_mails_and_a_second_sends_nothing(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp
) -> None:
    config = write_rules(tmp_path, smtp=smtp_section(smtp_server.port))
    state = tmp_path / "state"
    store = TinyDBStore(state)
    import_samples(store, at(DAY))
    store.close()
    report = run(state, config, DAY)
    assert report.errors == []
    assert report.count("sent") == 14
    assert len(smtp_server.messages) == 14
    again = run(state, config, DAY, 11)
    assert again.count("sent") == 0 and again.count("queued") == 0
    assert len(smtp_server.messages) == 14
    first = message_from_bytes(smtp_server.messages[0].data, policy=policy.default)
    assert first["Auto-Submitted"] == "auto-generated"
