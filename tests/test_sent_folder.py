"""The Sent folder through the real `mahnwerk tick`: a real Dovecot and a real SMTP server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest

import imap_server as loopback_imap
import smtp_server as loopback
from _workspace import smtp_section, write_rules
from mahnwerk import faults

smtp_server = loopback.smtp_server
imap_server = loopback_imap.imap_server

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-11-25"


def mw(
    tmp_path: Path, *args: str, crash: str | None = None, code: int = 0
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
    env["TEST_IMAP_PASSWORD"] = loopback_imap.PASSWORD
    if crash:
        env[faults.ENV] = crash
    config = ["--config", str(tmp_path / "rules.yaml"), "--state-dir", str(tmp_path / "state")]
    proc = subprocess.run(
        [sys.executable, "-m", "mahnwerk", *config, *args],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == code, proc.stderr.decode()
    return proc


def workspace(
    tmp_path: Path,
    smtp: loopback.LoopbackSmtp,
    imap: loopback_imap.LoopbackImap,
    **imap_extra: object,
) -> None:
    settings = imap.settings(password_env="TEST_IMAP_PASSWORD", **imap_extra)
    write_rules(
        tmp_path,
        smtp=smtp_section(smtp.port),
        imap=settings.model_dump(exclude_defaults=True),
    )
    for name in ("invoices-de.csv", "invoices-en.csv"):
        mw(tmp_path, "import", str(ROOT / "samples" / name))


def ids(smtp: loopback.LoopbackSmtp) -> list[str]:
    return [message_from_bytes(m.data, policy=policy.default)["Message-ID"] for m in smtp.messages]


@pytest.mark.parametrize("filed", [True, False], ids=["provider filed it", "server never had it"])
def test_a_mail_a_crash_left_unknown_is_settled_by_the_sent_folder(
    tmp_path: Path,
    smtp_server: loopback.LoopbackSmtp,
    imap_server: loopback_imap.LoopbackImap,
    filed: bool,
) -> None:
    workspace(tmp_path, smtp_server, imap_server)
    mw(tmp_path, "tick", "--as-of", DAY, crash="accepted", code=-signal.SIGKILL)
    (first,) = smtp_server.messages
    if filed:
        # What Gmail or Microsoft 365 do with every mail they accept.
        imap_server.deliver(loopback_imap.SENT, first.data, flags=["\\Seen"])
    out = mw(tmp_path, "tick", "--as-of", DAY, "--json").stdout
    first_id = ids(smtp_server)[0]
    assert ids(smtp_server).count(first_id) == (1 if filed else 2)
    assert len(set(ids(smtp_server))) == 14
    assert (b'"result":"confirmed"' if filed else b'"result":"released"') in out
    listing = mw(tmp_path, "outbox", "--json").stdout
    assert b'"entries":[]' in listing


def test_append_sent_files_each_sent_mail_once(
    tmp_path: Path,
    smtp_server: loopback.LoopbackSmtp,
    imap_server: loopback_imap.LoopbackImap,
) -> None:
    workspace(tmp_path, smtp_server, imap_server, append_sent=True)
    mw(tmp_path, "tick", "--as-of", DAY)
    mw(tmp_path, "tick", "--as-of", DAY)
    filed = imap_server.messages(loopback_imap.SENT)
    assert sorted(m.data for m in filed) == sorted(m.data for m in smtp_server.messages)
    assert all("\\Seen" in m.flags for m in filed)


def test_an_unreachable_sent_folder_leaves_the_mail_for_the_next_tick(
    tmp_path: Path,
    smtp_server: loopback.LoopbackSmtp,
    imap_server: loopback_imap.LoopbackImap,
) -> None:
    workspace(tmp_path, smtp_server, imap_server)
    mw(tmp_path, "tick", "--as-of", DAY, crash="accepted", code=-signal.SIGKILL)
    imap_server.stop()
    proc = mw(tmp_path, "tick", "--as-of", DAY, code=1)
    assert b"Sent folder lookup failed" in proc.stderr
    assert len(smtp_server.messages) == 14  # the other 13 went out; the first waits
    imap_server.start()
    mw(tmp_path, "tick", "--as-of", DAY)
    assert len(smtp_server.messages) == 15  # not filed: sent again, same Message-ID
    assert len(set(ids(smtp_server))) == 14
