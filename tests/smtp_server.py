"""A real SMTP server on 127.0.0.1 for tests, with faults injected on demand.

The SMTP transport is tested against the wire protocol, never a mocked smtplib:
reply parsing, timeouts, dropped sockets and TLS only show up on a real socket.
aiosmtpd runs in its own thread; the handler records what it accepted and can
be told to refuse, stall or hang up on the next commands.

Use it by importing the fixtures into a test module:

    import smtp_server as loopback

    smtp_server = loopback.smtp_server
    make_smtp_server = loopback.make_smtp_server

(Assigned rather than imported by name: ruff reports a fixture imported by name
and then taken as a test's argument as a redefinition, F811.)

`smtp_server` is a plain server that offers STARTTLS and AUTH; `make_smtp_server`
builds variants (no STARTTLS, implicit TLS, auth required). Both stop their
servers when the test ends.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mahnwerk.rules import Smtp

HOST = "127.0.0.1"
USER = "mahnwerk"
PASSWORD = "correct horse battery staple"
Command = Literal["MAIL", "RCPT", "DATA"]
# Longer than any test waits: a hung-up or stalled hook is cancelled when the
# client goes away or the server stops, never by this running out.
_FOREVER = 3600.0


@dataclass(frozen=True)
class Received:
    """One message the server accepted, as the bytes it got after DATA."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    queue_id: str
    tls: bool
    authenticated: bool


@dataclass
class _Fault:
    action: Literal["pass", "reply", "drop", "stall"]
    reply: str = ""
    seconds: float = 0.0


@dataclass
class Handler:
    """aiosmtpd hooks that record traffic and misbehave when told to."""

    messages: list[Received] = field(default_factory=list)
    connections: int = 0
    quits: int = 0
    _faults: dict[str, deque[_Fault]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- what tests call --------------------------------------------------------------

    def fail(
        self, command: Command, code: int, text: str = "", times: int = 1, skip: int = 0
    ) -> None:
        """Answer `times` `command`s with `code` (e.g. 451, 550), after `skip` normal ones."""
        reply = f"{code} {text or f'{code // 100}.0.0 injected by test'}"
        self._push(command, [_Fault("pass")] * skip + [_Fault("reply", reply=reply)] * times)

    def drop(self, command: Command, times: int = 1) -> None:
        """Close the connection instead of answering the next `command`s."""
        self._push(command, [_Fault("drop")] * times)

    def stall_after_data(self, seconds: float) -> None:
        """Take the next message, then wait `seconds` before saying 250.

        The message is recorded as accepted: this is the case where the server has
        the mail but the client never hears so.
        """
        self._push("DATA", [_Fault("stall", seconds=seconds)])

    def _push(self, command: str, faults: list[_Fault]) -> None:
        with self._lock:
            self._faults.setdefault(command, deque()).extend(faults)

    async def _fault(self, server: SMTP, command: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(command)
            fault = queue.popleft() if queue else None
        if fault is not None and fault.action == "drop":
            assert server.transport is not None
            server.transport.close()
            # connection_lost() cancels this hook; nothing must be answered.
            await asyncio.sleep(_FOREVER)
        return fault

    # -- aiosmtpd hooks ---------------------------------------------------------------

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        fault = await self._fault(server, "MAIL")
        if fault is not None and fault.action == "reply":
            return fault.reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        fault = await self._fault(server, "RCPT")
        if fault is not None and fault.action == "reply":
            return fault.reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = await self._fault(server, "DATA")
        if fault is not None and fault.action == "reply":
            return fault.reply
        assert envelope.mail_from is not None and envelope.original_content is not None
        with self._lock:
            queue_id = f"Q{len(self.messages) + 1:04d}"
            self.messages.append(
                Received(
                    envelope.mail_from,
                    tuple(envelope.rcpt_tos),
                    envelope.original_content,
                    queue_id,
                    tls=_encrypted(server),
                    authenticated=bool(session.authenticated),
                )
            )
        if fault is not None and fault.action == "stall":
            await asyncio.sleep(fault.seconds)
        return f"250 2.0.0 Ok: queued as {queue_id}"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self.quits += 1
        return "221 Bye"


def _encrypted(server: SMTP) -> bool:
    # Covers STARTTLS and implicit TLS alike (session.ssl is only set by STARTTLS).
    return server.transport is not None and bool(server.transport.get_extra_info("ssl_object"))


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


class _Controller(Controller):
    def factory(self) -> SMTP:
        # Called once per TCP connection, which is what "one connection per batch" is about.
        self.handler.connections += 1
        smtp: SMTP = super().factory()
        return smtp

    def _trigger_server(self) -> None:
        # Bound to port 0: learn the real port before aiosmtpd connects to itself.
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass(frozen=True)
class Certificate:
    """A throwaway self-signed certificate for 127.0.0.1 and localhost."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


_certificate: Certificate | None = None


def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """Make the test certificate once per test run (openssl CLI)."""
    global _certificate
    if _certificate is None or not _certificate.cert.exists():
        openssl = shutil.which("openssl")
        if openssl is None:
            # scripts/test.sh installs it; only a bare local run may skip the TLS tests.
            if os.environ.get("CI"):
                pytest.fail("the openssl command is needed to make a test certificate")
            pytest.skip("the openssl command is needed to make a test certificate")
        where = tmp_path_factory.mktemp("tls")
        cert, key = where / "cert.pem", where / "key.pem"
        args = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
        san = "subjectAltName=IP:127.0.0.1,DNS:localhost"
        out = ["-keyout", str(key), "-out", str(cert)]
        subprocess.run(
            [openssl, *args.split(), "-subj", "/CN=localhost", "-addext", san, *out],
            check=True,
            capture_output=True,
        )
        _certificate = Certificate(cert, key)
    return _certificate


class LoopbackSmtp:
    """A running server: where it listens, what it received, how to misbehave."""

    host = HOST
    user = USER
    password = PASSWORD

    def __init__(self, controller: _Controller, handler: Handler, cert: Certificate) -> None:
        self._controller = controller
        self.handler = handler
        self.certificate = cert

    @property
    def port(self) -> int:
        port: int = self._controller.port
        return port

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this server's certificate."""
        return self.certificate.client_context()

    def settings(self, **overrides: Any) -> Smtp:
        """rules.yaml's `smtp:` pointing here; plain SMTP unless told otherwise."""
        values: dict[str, Any] = {"host": HOST, "port": self.port, "security": "none"}
        values.update(overrides)
        return Smtp(**values)


@contextmanager
def running(
    cert: Certificate,
    *,
    starttls: bool = True,
    implicit_tls: bool = False,
    auth_required: bool = False,
) -> Iterator[LoopbackSmtp]:
    """Run a server for the duration of the block."""
    handler = Handler()
    kwargs: dict[str, Any] = {
        "server_hostname": "mx.test",
        "authenticator": _authenticator,
        # AUTH works on plain connections so tests can log in without TLS, except
        # when AUTH is required: aiosmtpd rightly warns about that combination.
        "auth_require_tls": auth_required,
        "auth_required": auth_required,
    }
    if starttls and not implicit_tls:
        kwargs["tls_context"] = cert.server_context()
    if implicit_tls:
        kwargs["ssl_context"] = cert.server_context()
    controller = _Controller(handler, hostname=HOST, port=0, **kwargs)
    controller.start()
    handler.connections = 0  # forget aiosmtpd's own start-up probe
    try:
        yield LoopbackSmtp(controller, handler, cert)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSmtp]:
    """A plain server on loopback offering STARTTLS and AUTH (USER/PASSWORD)."""
    with running(certificate(tmp_path_factory)) as server:
        yield server


@pytest.fixture
def make_smtp_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., LoopbackSmtp]]:
    """Start servers with `running()`'s options; all stop when the test ends."""
    cert = certificate(tmp_path_factory)
    with ExitStack() as stack:

        def make(**options: Any) -> LoopbackSmtp:
            return stack.enter_context(running(cert, **options))

        yield make
