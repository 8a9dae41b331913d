"""`mahnwerk ingest --watch`: replies read as they arrive, through a Dovecot restart."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import imap_server as loopback_imap
from _workspace import write_rules

imap_server = loopback_imap.imap_server

ROOT = Path(__file__).resolve().parents[1]


def customer_mail(n: int) -> bytes:
    return (
        "From: buchhaltung@mueller-soehne.example\r\n"
        "To: forderungen@muster-handel.example\r\n"
        f"Subject: Rechnung RE-2026-0431 ({n})\r\n"
        "Date: Thu, 26 Nov 2026 10:00:00 +0100\r\n"
        f"Message-ID: <watch-{n}@mueller-soehne.example>\r\n\r\n"
        "Wir haben die Rechnung RE-2026-0431 gestern bezahlt.\r\n"
    ).encode()


class Lines:
    """The watcher's stdout, a JSON object per line, read in a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._q: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout
        threading.Thread(target=lambda: [self._q.put(line) for line in stdout], daemon=True).start()

    def next(self, timeout: float = 30.0) -> dict[str, Any]:
        line = self._q.get(timeout=timeout)
        found: dict[str, Any] = json.loads(line)
        return found


def test_watch_reads_replies_as_they_come_and_survives_a_server_restart(
    tmp_path: Path, imap_server: loopback_imap.LoopbackImap
) -> None:
    settings = imap_server.settings(password_env="TEST_IMAP_PASSWORD").model_dump(
        exclude_defaults=True
    )
    settings.pop("sent_folder", None)
    rules = write_rules(tmp_path, imap=settings, smtp=None)
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
    env["TEST_IMAP_PASSWORD"] = loopback_imap.PASSWORD
    base = [sys.executable, "-m", "mahnwerk", "--config", str(rules)]
    base += ["--state-dir", str(tmp_path / "state")]
    subprocess.run(
        [*base, "import", str(ROOT / "samples" / "invoices-de.csv")], env=env, check=True
    )
    imap_server.deliver("INBOX", customer_mail(1))
    proc = subprocess.Popen(
        [*base, "ingest", "--watch", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = Lines(proc)
        # What was there before it started: the catch-up pass.
        first = lines.next()
        assert (first["key"], first["label"]) == ("<watch-1@mueller-soehne.example>", "paid")
        # Pushed while it waits in IDLE.
        imap_server.deliver("INBOX", customer_mail(2))
        assert lines.next()["key"] == "<watch-2@mueller-soehne.example>"
        # The server goes away and comes back; what arrived meanwhile is read after the
        # reconnect, without a notification for it.
        imap_server.stop()
        time.sleep(1.5)
        imap_server.start()
        imap_server.deliver("INBOX", customer_mail(3))
        assert lines.next(timeout=60)["key"] == "<watch-3@mueller-soehne.example>"
        assert imap_server.messages("INBOX") == []
        # SIGTERM while it waits: a clean, quick exit.
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
