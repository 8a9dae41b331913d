"""The SMTP transport against a real aiosmtpd server on loopback (no mocked smtplib)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

import smtp_server as loopback
from mahnwerk.rules import Smtp
from mahnwerk.smtp import Outcome, SmtpConnectError, SmtpSession, backoff, gives_up, password
from smtp_server import PASSWORD, USER, LoopbackSmtp

# The loopback server's fixtures, found by pytest under these names.
smtp_server = loopback.smtp_server
make_smtp_server = loopback.make_smtp_server

FROM = "forderungen@acme.example"
TO = "buchhaltung@kunde.example"
MAIL = (
    b"From: Acme GmbH <forderungen@acme.example>\r\n"
    b"To: buchhaltung@kunde.example\r\n"
    b"Subject: Zahlungserinnerung\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Sehr geehrte Damen und Herren,\r\n"
    b".\r\n"
    b"..eine Zeile mit Punkten, die SMTP verdoppeln muss.\r\n"
    b"Gr\xc3\xbc\xc3\x9fe\r\n"
)

MakeServer = Callable[..., LoopbackSmtp]


class FakeTime:
    """A clock that only moves when the code under test sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def session(server: LoopbackSmtp, **settings: object) -> SmtpSession:
    return SmtpSession(server.settings(**settings), PASSWORD, ssl_context=server.client_context())


# -- accepted ---------------------------------------------------------------------------


def test_accepted_mail_arrives_byte_exact_with_the_servers_reply(smtp_server: LoopbackSmtp) -> None:
    with session(smtp_server) as s:
        outcome = s.send(MAIL, FROM, [TO])

    assert outcome == Outcome("accepted", 250, "2.0.0 Ok: queued as Q0001", command="DATA")
    [received] = smtp_server.messages
    assert received.data == MAIL
    assert (received.mail_from, received.rcpt_tos) == (FROM, (TO,))


def test_one_connection_carries_the_whole_batch(smtp_server: LoopbackSmtp) -> None:
    with session(smtp_server) as s:
        outcomes = [s.send(MAIL, FROM, [f"k{i}@kunde.example"]) for i in range(3)]

    assert [o.kind for o in outcomes] == ["accepted"] * 3
    assert [o.response for o in outcomes] == [f"2.0.0 Ok: queued as Q000{i}" for i in (1, 2, 3)]
    assert (smtp_server.handler.connections, smtp_server.handler.quits) == (1, 1)
    assert [m.rcpt_tos for m in smtp_server.messages] == [
        (f"k{i}@kunde.example",) for i in range(3)
    ]


def test_data_must_be_in_wire_form(smtp_server: LoopbackSmtp) -> None:
    with session(smtp_server) as s:
        with pytest.raises(ValueError, match="CRLF"):
            s.send(b"Subject: x\n\nbody\n", FROM, [TO])
        with pytest.raises(ValueError, match="CRLF"):
            s.send(b"Subject: x\r\n\r\nbody", FROM, [TO])
    assert smtp_server.messages == []


# -- refused ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "code", "kind"),
    [
        ("MAIL", 451, "temporary"),
        ("MAIL", 553, "permanent"),
        ("RCPT", 451, "temporary"),
        ("RCPT", 550, "permanent"),
        ("DATA", 452, "temporary"),
        ("DATA", 554, "permanent"),
    ],
)
def test_refusals_map_to_temporary_or_permanent_and_the_session_goes_on(
    smtp_server: LoopbackSmtp, command: str, code: int, kind: str
) -> None:
    smtp_server.handler.fail(command, code, "x.y.z said the test")  # type: ignore[arg-type]
    with session(smtp_server) as s:
        refused = s.send(MAIL, FROM, [TO])
        after = s.send(MAIL, FROM, [TO])

    assert (refused.kind, refused.code, refused.response) == (kind, code, "x.y.z said the test")
    assert refused.command == command
    assert not refused.maybe_delivered
    if command == "RCPT":
        assert refused.refused == ((TO, code, "x.y.z said the test"),)
    assert after.kind == "accepted"
    assert len(smtp_server.messages) == 1
    assert smtp_server.handler.connections == 1


def test_one_refused_recipient_stops_the_mail_for_all(smtp_server: LoopbackSmtp) -> None:
    # The first RCPT is accepted, the second refused: nobody may get the mail,
    # or a retry would reach the first recipient twice.
    both = ["a@kunde.example", "b@kunde.example"]
    with session(smtp_server) as s:
        smtp_server.handler.fail("RCPT", 550, skip=1)
        permanent = s.send(MAIL, FROM, both)
        smtp_server.handler.fail("RCPT", 451, skip=1)
        temporary = s.send(MAIL, FROM, both)
        smtp_server.handler.fail("RCPT", 452, times=1)
        smtp_server.handler.fail("RCPT", 550, times=1)
        worst = s.send(MAIL, FROM, both)

    assert permanent.kind == "permanent"
    assert permanent.refused == (("b@kunde.example", 550, "5.0.0 injected by test"),)
    assert temporary.kind == "temporary"
    assert (worst.kind, worst.code, len(worst.refused)) == ("permanent", 550, 2)
    assert smtp_server.messages == []


# -- lost connections -------------------------------------------------------------------


def test_timeout_after_data_is_temporary_but_maybe_delivered(smtp_server: LoopbackSmtp) -> None:
    smtp_server.handler.stall_after_data(1.0)
    with session(smtp_server, timeout_seconds=0.4) as s:
        outcome = s.send(MAIL, FROM, [TO])

    assert outcome.kind == "temporary"
    assert outcome.code is None
    assert outcome.maybe_delivered
    assert "timed out" in outcome.response
    # The dangerous case: the server did take the mail.
    assert [m.data for m in smtp_server.messages] == [MAIL]


@pytest.mark.parametrize(("command", "maybe"), [("MAIL", False), ("RCPT", False), ("DATA", True)])
def test_dropped_connection_is_temporary_and_the_next_send_reconnects(
    smtp_server: LoopbackSmtp, command: str, maybe: bool
) -> None:
    smtp_server.handler.drop(command)  # type: ignore[arg-type]
    with session(smtp_server) as s:
        dropped = s.send(MAIL, FROM, [TO])
        again = s.send(MAIL, FROM, [TO])

    assert dropped.kind == "temporary"
    assert dropped.code is None
    assert dropped.maybe_delivered is maybe
    assert again.kind == "accepted"
    assert smtp_server.handler.connections == 2
    assert smtp_server.handler.quits == 1  # only the second connection could say goodbye
    assert [m.data for m in smtp_server.messages] == [MAIL]


def test_failed_reconnect_raises_so_the_batch_stops(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server()
    s = session(server)
    with s:
        server.handler.drop("MAIL")
        assert s.send(MAIL, FROM, [TO]).kind == "temporary"
        s.settings = s.settings.model_copy(update={"port": _closed_port()})
        with pytest.raises(SmtpConnectError) as err:
            s.send(MAIL, FROM, [TO])
    assert err.value.stage == "connect"


# -- TLS and login ----------------------------------------------------------------------


def test_starttls_with_login(smtp_server: LoopbackSmtp) -> None:
    with session(smtp_server, security="starttls", username=USER) as s:
        outcome = s.send(MAIL, FROM, [TO])

    assert outcome.kind == "accepted"
    [received] = smtp_server.messages
    assert received.tls and received.authenticated
    assert received.data == MAIL


def test_plain_session_neither_encrypts_nor_logs_in(smtp_server: LoopbackSmtp) -> None:
    with session(smtp_server) as s:
        s.send(MAIL, FROM, [TO])
    [received] = smtp_server.messages
    assert not received.tls and not received.authenticated


def test_implicit_tls(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(implicit_tls=True)
    with session(server, security="ssl", username=USER) as s:
        outcome = s.send(MAIL, FROM, [TO])

    assert outcome.kind == "accepted"
    assert server.messages[0].tls and server.messages[0].authenticated


def test_starttls_never_falls_back_to_plain(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(starttls=False)
    with pytest.raises(SmtpConnectError, match=r"^TLS failed .*does not offer STARTTLS") as err:
        session(server, security="starttls", username=USER).__enter__()
    assert err.value.stage == "TLS"
    assert server.messages == []


@pytest.mark.parametrize(
    ("security", "implicit_tls"), [("starttls", False), ("ssl", True)], ids=["starttls", "ssl"]
)
def test_untrusted_certificate_is_a_tls_error(
    make_smtp_server: MakeServer, security: str, implicit_tls: bool
) -> None:
    server = make_smtp_server(implicit_tls=implicit_tls)
    with pytest.raises(SmtpConnectError, match=r"^TLS failed .*CERTIFICATE_VERIFY_FAILED"):
        SmtpSession(server.settings(security=security), None).__enter__()


def test_wrong_password_is_an_authentication_error(smtp_server: LoopbackSmtp) -> None:
    settings = smtp_server.settings(security="starttls", username=USER)
    s = SmtpSession(settings, "wrong", ssl_context=smtp_server.client_context())
    with pytest.raises(SmtpConnectError, match=r"^authentication failed .*535") as err:
        s.__enter__()
    assert err.value.stage == "authentication"
    assert "wrong" not in str(err.value)


def test_non_ascii_password_fails_without_showing_it(smtp_server: LoopbackSmtp) -> None:
    import traceback

    s = SmtpSession(smtp_server.settings(username=USER), "geheim-öß")
    with pytest.raises(SmtpConnectError, match="ASCII") as err:
        s.__enter__()
    shown = "".join(traceback.format_exception(err.value))
    assert err.value.stage == "authentication"
    assert "ö" not in shown and "\\xf6" not in shown and "geheim" not in shown


def test_missing_password_is_an_authentication_error_before_connecting(
    smtp_server: LoopbackSmtp,
) -> None:
    settings = smtp_server.settings(username=USER, password_env="SMTP_PW")
    with pytest.raises(SmtpConnectError, match=r"authentication.*\$SMTP_PW.*smtp-password"):
        SmtpSession(settings, None).__enter__()
    assert smtp_server.handler.connections == 0


def test_required_auth_without_login_is_permanent_at_mail(make_smtp_server: MakeServer) -> None:
    # A 5xx at MAIL is about our account, not the customer's address.
    server = make_smtp_server(auth_required=True)
    with session(server) as s:
        outcome = s.send(MAIL, FROM, [TO])
    assert (outcome.kind, outcome.code, outcome.command) == ("permanent", 530, "MAIL")


def test_unknown_host_is_a_dns_error() -> None:
    with pytest.raises(
        SmtpConnectError, match=r"^DNS failed for mail\.mahnwerk\.invalid:25"
    ) as err:
        SmtpSession(Smtp(host="mail.mahnwerk.invalid", port=25, security="none"), None).__enter__()
    assert err.value.stage == "DNS"


def test_nobody_listening_is_a_connect_error() -> None:
    settings = Smtp(host="127.0.0.1", port=_closed_port(), security="none", timeout_seconds=2)
    with pytest.raises(SmtpConnectError, match=r"^connect failed .*refused") as err:
        SmtpSession(settings, None).__enter__()
    assert err.value.stage == "connect"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_repr_never_shows_the_password(smtp_server: LoopbackSmtp) -> None:
    s = SmtpSession(smtp_server.settings(username=USER), "hunter2-secret")
    assert "hunter2" not in repr(s)
    assert USER in repr(s)


# -- rate limit -------------------------------------------------------------------------


def test_rate_limit_waits_until_the_oldest_send_is_a_minute_old(
    smtp_server: LoopbackSmtp,
) -> None:
    t = FakeTime()
    s = SmtpSession(smtp_server.settings(rate_per_minute=2), None, clock=t.clock, sleep=t.sleep)
    with s:
        s.send(MAIL, FROM, [TO])  # t=1000
        t.now += 10
        s.send(MAIL, FROM, [TO])  # t=1010
        t.now += 5
        assert t.sleeps == []
        s.send(MAIL, FROM, [TO])  # t=1015, must wait until 1060
        assert t.sleeps == [45.0]
        s.send(MAIL, FROM, [TO])  # t=1060, window holds 1010 and 1060: wait until 1070
        assert t.sleeps == [45.0, 10.0]
        t.now += 120
        s.send(MAIL, FROM, [TO])
    assert t.sleeps == [45.0, 10.0]
    assert len(smtp_server.messages) == 5


# -- password ---------------------------------------------------------------------------


def test_password_from_environment() -> None:
    settings = Smtp(host="h", password_env="SMTP_PW")
    assert password(settings, {"SMTP_PW": "from-env"}) == "from-env"
    assert password(settings, {}) is None
    # Without password_env, no environment variable is consulted.
    assert password(Smtp(host="h"), {"SMTP_PW": "from-env"}) is None


def test_password_from_credentials_directory(tmp_path: Path) -> None:
    settings = Smtp(host="h", password_env="SMTP_PW", credential="smtp-pw")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert password(settings, env) is None

    (tmp_path / "smtp-pw").write_text("from-file\n")
    assert password(settings, env) == "from-file"
    assert password(settings, {**env, "SMTP_PW": ""}) == "from-file"
    assert password(settings, {**env, "SMTP_PW": "from-env"}) == "from-env"

    (tmp_path / "smtp-pw").write_bytes(b" spaced \n\n")
    assert password(settings, env) == " spaced \n"
    (tmp_path / "smtp-pw").write_bytes(b"crlf\r\n")
    assert password(settings, env) == "crlf"
    (tmp_path / "smtp-pw").write_bytes(b"p\xc3\xa4ss")
    assert password(settings, env) == "päss"


# -- retry schedule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "seconds"),
    [
        (0, 60),
        (1, 120),
        (2, 240),
        (3, 480),
        (4, 960),
        (5, 1920),
        (6, 3600),
        (7, 3600),
        (10**6, 3600),
    ],
)
def test_backoff(attempt: int, seconds: float) -> None:
    assert backoff(attempt) == seconds


def test_backoff_rejects_negative_attempts() -> None:
    with pytest.raises(ValueError):
        backoff(-1)


@pytest.mark.parametrize(
    ("hours", "elapsed", "expected"),
    [(24, 0, False), (24, 24 * 3600 - 1, False), (24, 24 * 3600, True), (1, 3601, True)],
)
def test_gives_up(hours: int, elapsed: float, expected: bool) -> None:
    settings = Smtp(host="h", retry_for_hours=hours)
    assert gives_up(1_700_000_000.0, 1_700_000_000.0 + elapsed, settings) is expected
