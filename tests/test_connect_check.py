"""`mahnwerk check --connect` against a real SMTP server and a real Dovecot on loopback.

Each failure must be named by the step it happened at (DNS, connect, TLS,
authentication, folder), since that is what tells the user where to look. The
command runs as a subprocess, as a user would run it, so the certificate is trusted
the way a user would make it trusted: SSL_CERT_FILE.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import imap_server as loopback_imap
import smtp_server as loopback
from _workspace import smtp_section, write_rules

smtp_server = loopback.smtp_server
imap_server = loopback_imap.imap_server

WRONG = "not the password"
UNKNOWN_HOST = "mail.mahnwerk.invalid"  # RFC 2606: never resolves
# Whatever the developer's shell sets must not decide a test.
CLEARED = ("STATE_DIRECTORY", "CREDENTIALS_DIRECTORY", "SSL_CERT_FILE", "SSL_CERT_DIR")
# Short, so that a test that would hang fails instead; loopback answers at once.
TIMEOUT = 5
MAHNWERK = (sys.executable, "-m", "mahnwerk")


def check_connect(
    tmp_path: Path,
    *,
    smtp: dict[str, Any] | None,
    imap: dict[str, Any] | None,
    env: dict[str, str],
    code: int,
) -> tuple[list[str], str]:
    """The report lines (after the rules line) and stderr; never a password in either."""
    config = write_rules(tmp_path, smtp=smtp, imap=imap)
    environ = {k: v for k, v in os.environ.items() if k not in CLEARED} | env
    proc = subprocess.run(
        [
            *MAHNWERK,
            "--config",
            str(config),
            "--state-dir",
            str(tmp_path / "state"),
            "check",
            "--connect",
        ],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == code, proc.stdout + proc.stderr
    for secret in (loopback.PASSWORD, loopback_imap.PASSWORD, WRONG):
        assert secret not in proc.stdout + proc.stderr
    first, *lines = proc.stdout.splitlines()
    assert first.startswith(f"{config}: OK"), proc.stdout
    print(proc.stdout, proc.stderr, sep="")  # shown with -s or on failure
    return lines, proc.stderr


def smtp_login(port: int, host: str = "127.0.0.1", **extra: Any) -> dict[str, Any]:
    return (
        smtp_section(
            port,
            host=host,
            security="starttls",
            username=loopback.USER,
            password_env="TEST_SMTP_PASSWORD",
            timeout_seconds=TIMEOUT,
        )
        | extra
    )


def imap_login(server: loopback_imap.LoopbackImap, security: str, **extra: Any) -> dict[str, Any]:
    settings = server.settings(
        security, password_env="TEST_IMAP_PASSWORD", timeout_seconds=TIMEOUT, **extra
    )
    return settings.model_dump(exclude_defaults=True)


def trusting(server: loopback.LoopbackSmtp | loopback_imap.LoopbackImap) -> dict[str, str]:
    # ssl.create_default_context() reads it (OpenSSL's default verify paths); both
    # servers share one self-signed certificate.
    return {"SSL_CERT_FILE": str(server.certificate.cert)}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_both_logins_work_with_credentials_as_systemd_passes_them(
    tmp_path: Path,
    smtp_server: loopback.LoopbackSmtp,
    imap_server: loopback_imap.LoopbackImap,
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    # As LoadCredential= would: a file per password, named by `credential`.
    (credentials / "smtp-password").write_text(loopback.PASSWORD + "\n")
    (credentials / "imap-password").write_text(loopback_imap.PASSWORD + "\n")
    imap_server.create_folder("Mahnwerk/Processed")
    smtp = smtp_login(smtp_server.port)
    del smtp["password_env"]
    imap = imap_login(imap_server, "ssl")
    del imap["password_env"]
    env = {"CREDENTIALS_DIRECTORY": str(credentials), **trusting(smtp_server)}

    lines, _ = check_connect(tmp_path, smtp=smtp, imap=imap, env=env, code=0)

    assert lines == [
        f"smtp 127.0.0.1:{smtp_server.port} (starttls): OK, logged in as mahnwerk",
        f"imap 127.0.0.1:{imap_server.tls_port} (ssl): OK, logged in as mahnwerk; "
        "folders found: INBOX (imap.folder), Sent (imap.sent_folder)",
        "imap folders: Mahnwerk/Processed (imap.processed_folder) exists; "
        "Mahnwerk/Review (imap.review_folder) missing, created on first use",
    ]
    # A check: nothing sent, nothing created.
    assert smtp_server.messages == []
    assert "Mahnwerk/Review" not in imap_server.folders()


def test_wrong_passwords_fail_at_authentication(
    tmp_path: Path,
    smtp_server: loopback.LoopbackSmtp,
    imap_server: loopback_imap.LoopbackImap,
) -> None:
    env = {"TEST_SMTP_PASSWORD": WRONG, "TEST_IMAP_PASSWORD": WRONG, **trusting(smtp_server)}
    smtp, imap = smtp_login(smtp_server.port), imap_login(imap_server, "ssl")

    lines, stderr = check_connect(tmp_path, smtp=smtp, imap=imap, env=env, code=1)

    smtp_line, imap_line = lines
    assert smtp_line.startswith(
        f"smtp 127.0.0.1:{smtp_server.port} (starttls): FAILED at authentication: 535 "
    )
    assert imap_line.startswith(
        f"imap 127.0.0.1:{imap_server.tls_port} (ssl): FAILED at authentication: "
    )
    assert "authentication failed" in imap_line.lower()
    assert "2 connection check(s) failed" in stderr


@pytest.mark.parametrize("unknown", ["smtp", "imap"])
def test_an_unknown_host_fails_at_dns_and_a_closed_port_at_connect(
    tmp_path: Path, unknown: str
) -> None:
    port = closed_port()
    hosts = {"smtp": "127.0.0.1", "imap": "127.0.0.1", unknown: UNKNOWN_HOST}
    smtp = smtp_login(port, host=hosts["smtp"])
    imap = {
        "host": hosts["imap"],
        "port": port,
        "username": "mahnwerk",
        "password_env": "TEST_IMAP_PASSWORD",
        "timeout_seconds": TIMEOUT,
    }
    env = {"TEST_SMTP_PASSWORD": WRONG, "TEST_IMAP_PASSWORD": WRONG}

    lines, stderr = check_connect(tmp_path, smtp=smtp, imap=imap, env=env, code=1)

    security = {"smtp": "starttls", "imap": "ssl"}
    expected = {
        name: f"{name} {UNKNOWN_HOST}:{port} ({security[name]}): FAILED at DNS: "
        f"cannot resolve {UNKNOWN_HOST!r}"
        if name == unknown
        else f"{name} 127.0.0.1:{port} ({security[name]}): FAILED at connect: "
        for name in ("smtp", "imap")
    }
    assert [line.split(" ")[0] for line in lines] == ["smtp", "imap"]
    for line, name in zip(lines, ("smtp", "imap"), strict=True):
        assert line.startswith(expected[name]), line
    assert "2 connection check(s) failed" in stderr


def test_tls_failures_are_named(
    tmp_path: Path,
    smtp_server: loopback.LoopbackSmtp,
    imap_server: loopback_imap.LoopbackImap,
) -> None:
    # SMTP: implicit TLS against a plain-text port. IMAP: a certificate nobody vouches for
    # (no SSL_CERT_FILE, so only the system's CAs count).
    smtp = smtp_login(smtp_server.port, security="ssl")
    imap = imap_login(imap_server, "ssl")
    env = {"TEST_SMTP_PASSWORD": loopback.PASSWORD, "TEST_IMAP_PASSWORD": loopback_imap.PASSWORD}

    lines, _ = check_connect(tmp_path, smtp=smtp, imap=imap, env=env, code=1)

    smtp_line, imap_line = lines
    assert smtp_line.startswith(f"smtp 127.0.0.1:{smtp_server.port} (ssl): FAILED at TLS: ")
    assert imap_line.startswith(f"imap 127.0.0.1:{imap_server.tls_port} (ssl): FAILED at TLS: ")
    assert "certificate verify failed" in imap_line


def test_missing_folders_are_all_named_and_smtp_may_be_absent(
    tmp_path: Path, imap_server: loopback_imap.LoopbackImap
) -> None:
    imap = imap_login(imap_server, "starttls", folder="Antworten", sent_folder="Gesendet")
    env = {"TEST_IMAP_PASSWORD": loopback_imap.PASSWORD, **trusting(imap_server)}

    lines, stderr = check_connect(tmp_path, smtp=None, imap=imap, env=env, code=1)

    assert lines == [
        "smtp: not configured (no smtp: section in rules.yaml)",
        f"imap 127.0.0.1:{imap_server.port} (starttls): FAILED at folder: logged in as "
        "mahnwerk, but no folder 'Antworten' (imap.folder), 'Gesendet' (imap.sent_folder)",
    ]
    assert "1 connection check(s) failed" in stderr
    assert imap_server.folders() == ["INBOX", "Sent"]


def test_nothing_configured_is_not_a_failure(tmp_path: Path) -> None:
    lines, _ = check_connect(tmp_path, smtp=None, imap=None, env={}, code=0)
    assert lines == [
        "smtp: not configured (no smtp: section in rules.yaml)",
        "imap: not configured (no imap: section in rules.yaml)",
    ]
