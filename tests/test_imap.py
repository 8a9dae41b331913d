"""The IMAP shell against a real Dovecot on loopback (no mocked imaplib or imapclient)."""

from __future__ import annotations

import base64
import logging
import re
import socket
import threading
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

import imap_server as loopback_imap
from imap_server import OTHER_PASSWORD, OTHER_USER, PASSWORD, SENT, USER, LoopbackImap
from mahnwerk.imap import ImapConnectError, ImapError, ImapSession
from mahnwerk.rules import Imap

# The loopback server's fixtures, found by pytest under these names.
imap_server = loopback_imap.imap_server
make_imap_server = loopback_imap.make_imap_server

MakeServer = Callable[..., LoopbackImap]

MID = "<20261125.4711.rechnung-123@acme.example>"


def mail(message_id: str | None = MID, *, extra: str = "") -> bytes:
    lines = [
        "From: Acme GmbH <forderungen@acme.example>",
        "To: buchhaltung@kunde.example",
        "Subject: Zahlungserinnerung",
        "Date: Wed, 25 Nov 2026 09:00:00 +0100",
        *([f"Message-ID: {message_id}"] if message_id is not None else []),
        *([extra] if extra else []),
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Sehr geehrte Damen und Herren,",
    ]
    return "\r\n".join(lines).encode() + b"\r\n"


def session(server: LoopbackImap, security: str = "none", **overrides: object) -> ImapSession:
    settings = server.settings(security=security, **overrides)
    return ImapSession(settings, PASSWORD, ssl_context=server.client_context())


def logins(server: LoopbackImap) -> list[str]:
    return [line for line in server.log.read_text().splitlines() if "Login: user=<" in line]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- connecting ---------------------------------------------------------------------------


@pytest.mark.parametrize("security", ["ssl", "starttls", "none"])
def test_connects_and_logs_in_with_each_security(imap_server: LoopbackImap, security: str) -> None:
    with session(imap_server, security) as s:
        assert s.connected
        capabilities = s.capabilities()

    assert "IMAP4REV1" in capabilities and "UIDPLUS" in capabilities
    [login] = logins(imap_server)
    assert f"user=<{USER}>" in login
    # Dovecot's log says whether the session it accepted was encrypted.
    assert (" TLS," in login) == (security != "none")


def test_starttls_never_falls_back_to_plain(make_imap_server: MakeServer) -> None:
    server = make_imap_server(starttls=False)
    with pytest.raises(ImapConnectError, match=r"^TLS failed .*does not offer STARTTLS") as err:
        session(server, "starttls").__enter__()
    assert err.value.stage == "TLS"
    assert logins(server) == []


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_untrusted_certificate_is_a_tls_error(imap_server: LoopbackImap, security: str) -> None:
    # No ssl_context: the system's trust store, which does not know the test certificate.
    s = ImapSession(imap_server.settings(security=security), PASSWORD)
    with pytest.raises(ImapConnectError, match=r"^TLS failed .*CERTIFICATE_VERIFY_FAILED") as err:
        s.__enter__()
    assert err.value.stage == "TLS"
    assert logins(imap_server) == []


def test_implicit_tls_on_the_plain_port_is_a_tls_error(imap_server: LoopbackImap) -> None:
    # The usual mistake: security ssl with port 143.
    s = session(imap_server, "ssl", port=imap_server.port)
    with pytest.raises(ImapConnectError, match=r"^TLS failed") as err:
        s.__enter__()
    assert err.value.stage == "TLS"


def test_wrong_password_is_an_authentication_error(imap_server: LoopbackImap) -> None:
    s = ImapSession(imap_server.settings(), "hunter2-wrong")
    with pytest.raises(
        ImapConnectError, match=r"^authentication failed .*AUTHENTICATIONFAILED"
    ) as err:
        s.__enter__()
    assert err.value.stage == "authentication"
    shown = "".join(traceback.format_exception(err.value))
    assert "hunter2" not in shown
    assert not s.connected


def test_non_ascii_password_logs_in_over_sasl_plain(imap_server: LoopbackImap) -> None:
    imap_server.add_user("kasse", "Grüße-öffentlich")
    with ImapSession(imap_server.settings(username="kasse"), "Grüße-öffentlich") as s:
        assert s.connected


def test_wrong_non_ascii_password_fails_without_showing_it(imap_server: LoopbackImap) -> None:
    s = ImapSession(imap_server.settings(), "geheim-öß")
    with pytest.raises(ImapConnectError, match=r"^authentication failed") as err:
        s.__enter__()
    shown = "".join(traceback.format_exception(err.value))
    assert "geheim" not in shown and "ö" not in shown and "\\xf6" not in shown


def test_missing_password_is_an_authentication_error_before_connecting() -> None:
    # Nothing listens on the port: reaching it would be a connect error.
    settings = Imap(host="127.0.0.1", port=_closed_port(), username=USER, password_env="IMAP_PW")
    with pytest.raises(ImapConnectError, match=r"^authentication.*\$IMAP_PW.*imap-password"):
        ImapSession(settings, None).__enter__()


def test_missing_username_is_an_authentication_error() -> None:
    settings = Imap(host="127.0.0.1", port=_closed_port())
    with pytest.raises(ImapConnectError, match=r"^authentication.*username") as err:
        ImapSession(settings, PASSWORD).__enter__()
    assert err.value.stage == "authentication"


def test_nobody_listening_is_a_connect_error() -> None:
    settings = Imap(host="127.0.0.1", port=_closed_port(), security="none", username=USER)
    with pytest.raises(
        ImapConnectError, match=r"^connect failed for 127\.0\.0\.1:\d+: .*refused"
    ) as err:
        ImapSession(settings, PASSWORD).__enter__()
    assert err.value.stage == "connect"


def test_unknown_host_is_a_dns_error() -> None:
    settings = Imap(host="imap.mahnwerk.invalid", username=USER)
    with pytest.raises(
        ImapConnectError, match=r"^DNS failed for imap\.mahnwerk\.invalid:993"
    ) as err:
        ImapSession(settings, PASSWORD).__enter__()
    assert err.value.stage == "DNS"


def test_missing_configured_folder_is_a_folder_error(imap_server: LoopbackImap) -> None:
    s = session(imap_server, sent_folder="Gesendete Elemente")
    with pytest.raises(ImapConnectError, match=r"^folder failed .*'Gesendete Elemente'") as err:
        s.__enter__()
    assert err.value.stage == "folder"
    assert not s.connected
    assert "Gesendete Elemente" not in imap_server.folders()


def test_folder_check_can_be_left_to_the_caller(imap_server: LoopbackImap) -> None:
    settings = imap_server.settings(sent_folder="Gesendete Elemente")
    with ImapSession(settings, PASSWORD, check_folders=False) as s:
        assert s.ensure_folder("Gesendete Elemente") is True


def test_the_password_never_reaches_the_log(
    imap_server: LoopbackImap, caplog: pytest.LogCaptureFixture
) -> None:
    # imapclient has imaplib log every command at DEBUG; LOGIN must come out redacted.
    caplog.set_level(logging.DEBUG)
    imap_server.add_user("kasse", "Grüße-öffentlich")
    with session(imap_server, "starttls") as s:
        s.find_message_id(SENT, MID)
    with ImapSession(imap_server.settings(username="kasse"), "Grüße-öffentlich") as s:
        s.find_message_id(SENT, MID)

    assert "LOGIN" in caplog.text and "AUTHENTICATE" in caplog.text
    assert PASSWORD not in caplog.text and "horse" not in caplog.text
    plain = base64.b64encode("\0kasse\0Grüße-öffentlich".encode()).decode()
    assert "Grüße" not in caplog.text and plain not in caplog.text


def test_repr_never_shows_the_password(imap_server: LoopbackImap) -> None:
    with ImapSession(imap_server.settings(), PASSWORD) as s:
        assert PASSWORD not in repr(s)
        assert USER in repr(s) and "connected" in repr(s)


# -- finding a sent reminder by its Message-ID ----------------------------------------------


def test_append_then_find_exactly_that_message(imap_server: LoopbackImap) -> None:
    decoys = [
        mail(f"<x{MID}>"),  # contains the whole id, brackets and all
        mail(MID.replace("rechnung", "RECHNUNG")),  # the local part is case-sensitive
        mail("<other@acme.example>", extra=f"References: {MID}"),  # a reply to it
        mail(None, extra=f"X-Original-Message-ID: {MID}"),  # another header
    ]
    for decoy in decoys:
        imap_server.deliver(SENT, decoy)
    with session(imap_server) as s:
        uid = s.append(SENT, mail())
        found = s.find_message_id(SENT, MID)

    assert uid is not None
    assert found == [uid]
    # The server's own SEARCH does find the first two: the exact check is what saves us.
    with imap_server.imap() as conn:
        conn.select(SENT, readonly=True)
        typ, data = conn.uid("SEARCH", "HEADER", "Message-ID", f'"{MID}"')
    assert typ == "OK" and len(data[0].split()) == 3


def test_find_accepts_a_folded_header_and_another_case_for_the_domain(
    imap_server: LoopbackImap,
) -> None:
    folded = imap_server.deliver(SENT, mail(f"\r\n {MID}"))
    upper_domain = imap_server.deliver(SENT, mail(MID.replace("acme.example", "ACME.Example")))
    with session(imap_server) as s:
        assert s.find_message_id(SENT, MID) == [folded, upper_domain]


def test_find_in_empty_folder_and_for_unknown_id(imap_server: LoopbackImap) -> None:
    with session(imap_server) as s:
        assert s.find_message_id(SENT, MID) == []
        imap_server.deliver(SENT, mail("<other@acme.example>"))
        assert s.find_message_id(SENT, MID) == []


def test_find_quotes_wildcards_and_braces_in_the_id(imap_server: LoopbackImap) -> None:
    odd = '<50%*{3}off"me\\@acme.example>'
    uid = imap_server.deliver(SENT, mail(odd))
    with session(imap_server) as s:
        assert s.find_message_id(SENT, odd) == [uid]


def test_find_does_not_mark_anything_read(imap_server: LoopbackImap) -> None:
    uid = imap_server.deliver("INBOX", mail())
    with session(imap_server) as s:
        assert s.find_message_id("INBOX", MID) == [uid]

    [stored] = imap_server.messages("INBOX")
    assert "\\Seen" not in stored.flags


def test_find_rejects_an_id_without_angle_brackets(imap_server: LoopbackImap) -> None:
    with session(imap_server) as s, pytest.raises(ValueError, match="Message-ID"):
        s.find_message_id(SENT, MID.strip("<>"))


def test_find_in_a_missing_folder_is_a_folder_error(imap_server: LoopbackImap) -> None:
    with session(imap_server) as s:
        with pytest.raises(ImapConnectError, match=r"^folder failed .*'Archiv'") as err:
            s.find_message_id("Archiv", MID)
        assert err.value.stage == "folder"
        assert s.connected  # the session itself is fine
        assert s.find_message_id(SENT, MID) == []


def test_other_users_do_not_see_the_copy(imap_server: LoopbackImap) -> None:
    with session(imap_server) as s:
        s.append(SENT, mail())
    other = ImapSession(imap_server.settings(username=OTHER_USER), OTHER_PASSWORD)
    with other:
        assert other.find_message_id(SENT, MID) == []


# -- appending the sent copy ------------------------------------------------------------------


def test_append_stores_the_bytes_as_read_with_its_date(imap_server: LoopbackImap) -> None:
    when = datetime(2026, 11, 25, 9, 30, tzinfo=timezone(timedelta(hours=1)))
    data = mail() + "Grüße\r\n".encode()
    with session(imap_server) as s:
        seen = s.append(SENT, data, when=when)
        unseen = s.append(SENT, data, seen=False)

    stored = {m.uid: m for m in imap_server.messages(SENT)}
    assert stored[seen].data == data
    assert "\\Seen" in stored[seen].flags
    assert "\\Seen" not in stored[unseen].flags
    with imap_server.imap() as conn:
        conn.select(SENT, readonly=True)
        typ, fetched = conn.uid("FETCH", str(seen), "(INTERNALDATE)")
    assert typ == "OK" and isinstance(fetched[0], bytes)
    # Maildir keeps the instant (as the file's mtime), not the offset.
    internal = re.search(rb'INTERNALDATE "([^"]+)"', fetched[0])
    assert internal and datetime.strptime(internal[1].decode(), "%d-%b-%Y %H:%M:%S %z") == when


def test_append_to_a_missing_folder_is_a_folder_error_and_creates_nothing(
    imap_server: LoopbackImap,
) -> None:
    with session(imap_server) as s:
        with pytest.raises(ImapConnectError, match=r"^folder failed .*'Gesendet'") as err:
            s.append("Gesendet", mail())
        assert err.value.stage == "folder"
    assert "Gesendet" not in imap_server.folders()


@pytest.mark.parametrize(
    ("data", "when"),
    [
        (b"Subject: x\n\nbare LF\n", None),
        (b"Subject: x\r\n\r\nbare CR\r", None),
        (mail(), datetime(2026, 11, 25, 9, 30)),
    ],
    ids=["LF", "CR", "naive-date"],
)
def test_append_refuses_what_it_cannot_store_exactly(
    imap_server: LoopbackImap, data: bytes, when: datetime | None
) -> None:
    with session(imap_server) as s, pytest.raises(ValueError):
        s.append(SENT, data, when=when)
    assert imap_server.messages(SENT) == []


def test_ensure_folder_creates_once_and_subscribes(imap_server: LoopbackImap) -> None:
    folder = "Mahnwerk/Rückläufer"
    with session(imap_server) as s:
        assert s.ensure_folder(folder) is True
        assert s.ensure_folder(folder) is False
        assert s.ensure_folder(SENT) is False
        assert s.append(folder, mail()) is not None

    assert folder in imap_server.folders()
    with imap_server.imap() as conn:
        typ, data = conn.lsub()
    assert typ == "OK" and any(b"Mahnwerk/R&APw-ckl&AOQ-ufer" in line for line in data)


# -- the server goes away -----------------------------------------------------------------


def test_server_restart_between_sessions(imap_server: LoopbackImap) -> None:
    with session(imap_server, "starttls") as s:
        uid = s.append(SENT, mail())

    imap_server.restart()

    with session(imap_server, "ssl") as s:
        assert s.find_message_id(SENT, MID) == [uid]


def test_restart_under_a_connected_session_fails_one_call_then_reconnects(
    imap_server: LoopbackImap,
) -> None:
    with session(imap_server) as s:
        uid = s.append(SENT, mail())
        imap_server.restart()

        with pytest.raises(ImapError, match="connection lost") as err:
            s.find_message_id(SENT, MID)
        assert not isinstance(err.value, ImapConnectError)
        assert not s.connected

        assert s.find_message_id(SENT, MID) == [uid]
        assert s.connected
    assert len(logins(imap_server)) == 2


def test_reconnect_to_a_stopped_server_is_a_connect_error(imap_server: LoopbackImap) -> None:
    with session(imap_server) as s:
        imap_server.stop()
        with pytest.raises(ImapError, match="connection lost"):
            s.find_message_id(SENT, MID)
        with pytest.raises(ImapConnectError, match="refused") as err:
            s.find_message_id(SENT, MID)
        assert err.value.stage == "connect"


def test_stopped_server_refuses_new_sessions(imap_server: LoopbackImap) -> None:
    imap_server.stop()
    with pytest.raises(ImapConnectError) as err:
        session(imap_server).__enter__()
    assert err.value.stage == "connect"


# -- reading replies ---------------------------------------------------------------------


def test_open_list_fetch_and_move(imap_server: LoopbackImap) -> None:
    first = imap_server.deliver("INBOX", mail("<a@kunde.example>"))
    second = imap_server.deliver("INBOX", mail("<b@kunde.example>"))
    with session(imap_server) as s:
        assert s.ensure_folder("Mahnwerk/Processed") is True
        state = s.open_folder("INBOX")
        assert state.uidvalidity > 0 and state.exists == 2 and state.uidnext > second
        assert s.uids() == [first, second]
        fetched = s.fetch([first, second])
        assert fetched[first] == mail("<a@kunde.example>")
        s.move([first], "Mahnwerk/Processed")
        assert s.uids() == [second]
    # Fetching did not mark anything read.
    assert imap_server.messages("INBOX")[0].flags == frozenset()
    assert [m.data for m in imap_server.messages("Mahnwerk/Processed")] == [
        mail("<a@kunde.example>")
    ]


def test_open_folder_names_a_missing_folder(imap_server: LoopbackImap) -> None:
    with session(imap_server) as s, pytest.raises(ImapConnectError) as caught:
        s.open_folder("Antworten")
    assert caught.value.stage == "folder"


def test_idle_wakes_on_new_mail_and_times_out_without(imap_server: LoopbackImap) -> None:
    with session(imap_server) as s:
        s.open_folder("INBOX")
        assert s.idle_wait(0.3) is False
        timer = threading.Timer(0.3, lambda: imap_server.deliver("INBOX", mail()))
        timer.start()
        try:
            assert s.idle_wait(10) is True
        finally:
            timer.join()
        # Still usable after IDLE.
        assert len(s.uids()) == 1
