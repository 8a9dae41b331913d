"""`mahnwerk run` as systemd runs it: a real subprocess, sd_notify on a socket we listen on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import imap_server as loopback_imap
import smtp_server as loopback
from _workspace import smtp_section, write_rules
from mahnwerk.store import TinyDBStore

smtp_server = loopback.smtp_server
imap_server = loopback_imap.imap_server

ROOT = Path(__file__).resolve().parents[1]


class Notifications:
    """The datagrams the service sends to $NOTIFY_SOCKET, as dicts, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.5)
        self.seen: list[dict[str, str]] = []

    def wait_for(self, key: str, value: str | None = None, timeout: float = 30.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.seen:
                if key in message and (value is None or message[key] == value):
                    self.seen.remove(message)
                    return message
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.seen.append(fields)
        raise AssertionError(f"no {key}={value or '*'} within {timeout} s; got {self.seen}")

    def close(self) -> None:
        self.sock.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _state(tmp_path: Path) -> list[str]:
    return ["--state-dir", str(tmp_path / "state")]


class Running:
    def __init__(self, tmp_path: Path, rules: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.rules = rules
        self.notify = Notifications(tmp_path / "notify.sock")
        env = {
            **env,
            "NOTIFY_SOCKET": str(self.notify.path),
            "WATCHDOG_USEC": "2000000",
        }
        self.stderr = (tmp_path / "service.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mahnwerk", "--config", str(rules), *_state(tmp_path), "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )

    def log(self) -> str:
        return (self.tmp_path / "service.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()
        self.notify.close()


@pytest.fixture
def workspace(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp, imap_server: loopback_imap.LoopbackImap
) -> Iterator[tuple[Path, dict[str, str]]]:
    imap = imap_server.settings(password_env="TEST_IMAP_PASSWORD").model_dump(exclude_defaults=True)
    imap.pop("sent_folder", None)
    rules = write_rules(
        tmp_path,
        smtp=smtp_section(smtp_server.port),
        imap=imap,
        service={"tick_interval_seconds": 2, "metrics_port": _free_port()},
        # Always open, so that the test does not depend on the day it runs.
        send_window={
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "from": "00:00",
            "to": "23:59",
            "holidays": None,
        },
    )
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
    env["TEST_IMAP_PASSWORD"] = loopback_imap.PASSWORD
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mahnwerk",
            "--config",
            str(rules),
            "--state-dir",
            str(tmp_path / "state"),
            "import",
            str(ROOT / "samples" / "invoices-de.csv"),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    yield rules, env


def test_ready_watchdog_reload_and_stop(
    tmp_path: Path, workspace: tuple[Path, dict[str, str]], smtp_server: loopback.LoopbackSmtp
) -> None:
    rules, env = workspace
    svc = Running(tmp_path, rules, env)
    try:
        ready = svc.notify.wait_for("READY", "1")
        assert "open" in ready.get("STATUS", ""), ready
        svc.notify.wait_for("WATCHDOG", "1")
        svc.notify.wait_for("WATCHDOG", "1")
        # The first tick sent the due reminders.
        deadline = time.monotonic() + 30
        while not smtp_server.messages and time.monotonic() < deadline:
            time.sleep(0.2)
        assert smtp_server.messages, svc.log()

        # Metrics on localhost: what was sent, the review queue, the mailbox, the last tick.
        port = yaml.safe_load(rules.read_text(encoding="utf-8"))["service"]["metrics_port"]
        deadline = time.monotonic() + 20
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                metrics = r.read().decode()
            if "mahnwerk_last_tick_timestamp_seconds 1" in metrics or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert 'mahnwerk_mails_sent_total{stage="reminder_1"}' in metrics, metrics
        assert "mahnwerk_imap_connected 1.0" in metrics
        assert "mahnwerk_review_queue 0.0" in metrics

        # A valid reload: RELOADING with the monotonic clock, then READY again.
        svc.proc.send_signal(signal.SIGHUP)
        reloading = svc.notify.wait_for("RELOADING", "1")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        svc.notify.wait_for("READY", "1")

        # An invalid rules.yaml: refused, logged with where, the old rules keep running.
        good = rules.read_text(encoding="utf-8")
        rules.write_text(good.replace("tick_interval_seconds: 2", "tick_interval: 2"))
        svc.proc.send_signal(signal.SIGHUP)
        svc.notify.wait_for("RELOADING", "1")
        svc.notify.wait_for("READY", "1")
        svc.notify.wait_for("WATCHDOG", "1")
        assert svc.proc.poll() is None
        assert "reload refused" in svc.log() and "rules.yaml:" in svc.log()

        # SIGTERM: STOPPING, exit 0, quickly.
        started = time.monotonic()
        svc.proc.send_signal(signal.SIGTERM)
        assert svc.proc.wait(timeout=20) == 0, svc.log()
        assert time.monotonic() - started < 15
        svc.notify.wait_for("STOPPING", "1")
    finally:
        svc.stop()


def test_sigterm_mid_batch_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, workspace: tuple[Path, dict[str, str]], smtp_server: loopback.LoopbackSmtp
) -> None:
    rules, env = workspace
    data = yaml.safe_load(rules.read_text(encoding="utf-8"))
    # Slow enough to be stopped in the middle: two mails, then a wait for the rate limit.
    data["smtp"]["rate_per_minute"] = 2
    rules.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    svc = Running(tmp_path, rules, env)
    try:
        svc.notify.wait_for("READY", "1")
        deadline = time.monotonic() + 30
        while len(smtp_server.messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        svc.proc.send_signal(signal.SIGTERM)
        assert svc.proc.wait(timeout=20) == 0, svc.log()
    finally:
        svc.stop()
    first = len(smtp_server.messages)
    store = TinyDBStore(tmp_path / "state")
    waiting = [e for e in store.view().entries() if e.state in ("queued", "retry")]
    store.close()
    assert waiting, "stopped after the whole batch: nothing left to test"

    # Started again, it sends the rest, and nothing a second time.
    svc = Running(tmp_path, rules, env)
    try:
        svc.notify.wait_for("READY", "1")
        deadline = time.monotonic() + 60
        while len(smtp_server.messages) < first + 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.5)  # one more tick: it must add nothing
        svc.proc.send_signal(signal.SIGTERM)
        assert svc.proc.wait(timeout=20) == 0, svc.log()
    finally:
        svc.stop()
    recipients = [m.rcpt_tos[0] for m in smtp_server.messages]
    keys = [
        line.split(b":", 1)[1].strip()
        for m in smtp_server.messages
        for line in m.data.split(b"\r\n")
        if line.startswith(b"X-Mahnwerk-Key:")
    ]
    assert len(keys) == len(set(keys)), "a mail went out twice"
    assert len(recipients) >= first + 2
    # Every mail the server got is recorded as sent, and only those.
    store = TinyDBStore(tmp_path / "state")
    sent = {e.key.encode() for e in store.view().entries() if e.state == "sent"}
    store.close()
    assert sent == set(keys)


def _reply(n: int) -> bytes:
    return (
        "From: buchhaltung@mueller-soehne.example\r\n"
        "To: forderungen@muster-handel.example\r\n"
        f"Subject: Rechnung RE-2026-0431 ({n})\r\n"
        "Date: Thu, 26 Nov 2026 10:00:00 +0100\r\n"
        f"Message-ID: <svc-{n}@mueller-soehne.example>\r\n\r\n"
        "Die Rechnung RE-2026-0431 haben wir gestern bezahlt.\r\n"
    ).encode()


def _received(tmp_path: Path) -> set[str]:
    store = TinyDBStore(tmp_path / "state")
    keys = {r["key"] for r in store.view().received_all()}
    store.close()
    return keys


def _until(check: object, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_the_service_reconnects_after_dovecot_restarts_and_loses_nothing(
    tmp_path: Path,
    workspace: tuple[Path, dict[str, str]],
    imap_server: loopback_imap.LoopbackImap,
) -> None:
    rules, env = workspace
    svc = Running(tmp_path, rules, env)
    try:
        svc.notify.wait_for("READY", "1")
        imap_server.deliver("INBOX", _reply(1))
        _until(lambda: "<svc-1@mueller-soehne.example>" in _received(tmp_path))
        imap_server.stop()
        svc.notify.wait_for("WATCHDOG", "1")  # the loop goes on while the server is away
        time.sleep(2)
        assert svc.proc.poll() is None, svc.log()
        imap_server.start()
        imap_server.deliver("INBOX", _reply(2))
        _until(lambda: "<svc-2@mueller-soehne.example>" in _received(tmp_path), timeout=60)
        _until(lambda: imap_server.messages("INBOX") == [])
        svc.proc.send_signal(signal.SIGTERM)
        assert svc.proc.wait(timeout=20) == 0, svc.log()
    finally:
        svc.stop()
    assert "trying again" in svc.log()


def test_a_second_sigterm_exits_at_once(
    tmp_path: Path, workspace: tuple[Path, dict[str, str]]
) -> None:
    rules, env = workspace
    svc = Running(tmp_path, rules, env)
    try:
        svc.notify.wait_for("READY", "1")
        started = time.monotonic()
        svc.proc.send_signal(signal.SIGTERM)
        svc.proc.send_signal(signal.SIGTERM)
        code = svc.proc.wait(timeout=10)
        # Whichever came first: a clean exit (0) or the forced one (1); never a hang.
        assert code in (0, 1), svc.log()
        assert time.monotonic() - started < 5
    finally:
        svc.stop()
    # Forced or not, the store opens (a mail cut off mid-attempt is "sending", which the
    # next tick reconciles, as after a kill -9).
    store = TinyDBStore(tmp_path / "state")
    assert len(store.view()) > 0
    store.close()
