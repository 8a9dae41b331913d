"""A real Dovecot IMAP server on 127.0.0.1 for tests, stopped and restarted on demand.

The IMAP shell is tested against a real server, never a mocked imaplib: what SEARCH
matches (Dovecot compares headers as substrings), which flags a FETCH sets, APPENDUID
and a server going away under a connected client only show up for real. Each server
is its own `dovecot -F` with a config, Maildirs, users and a log of its own, on free
ports, so it never meets a system Dovecot on 143/993.

Use it by importing the fixtures into a test module:

    import imap_server as loopback_imap

    imap_server = loopback_imap.imap_server
    make_imap_server = loopback_imap.make_imap_server

(Assigned rather than imported by name: ruff reports a fixture imported by name
and then taken as a test's argument as a redefinition, F811.)

`imap_server` listens on a plain port that offers STARTTLS and on an implicit-TLS
port, with the users USER and OTHER_USER, each with INBOX and Sent. Tests put mail
in with `deliver()` and look at it with `messages()`, both through Dovecot itself
(stdlib imaplib, not the code under test). `stop()` and `start()` take the server
away and bring it back on the same ports with the same mail, while clients may be
connected. `make_imap_server` builds variants (`starttls=False`: no TLS at all).
All servers stop when the test ends; `log` names the server's log file for debugging.

Run as root, Dovecot's own processes use the `dovecot` and `dovenull` users that
Debian's package creates and the mail belongs to `mail`; run as anyone else,
everything runs as that user without chroot, and the tests skip if Dovecot will not
start that way. Failed logins are penalised per client IP by default (2 s, growing
to 15 s, also for the next good login); these servers turn that off, but a failed
login still takes about half a second.
"""

from __future__ import annotations

import base64
import grp
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from mahnwerk.rules import Imap

# One throwaway certificate per run, shared with the SMTP fixture.
from smtp_server import Certificate, certificate

HOST = "127.0.0.1"
USER = "mahnwerk"
PASSWORD = "correct horse battery staple"
OTHER_USER = "buchhaltung"
OTHER_PASSWORD = "ein anderes Passwort"
SENT = "Sent"
SEPARATOR = "/"
STARTUP_SECONDS = 15.0
STOP_GRACE_SECONDS = 0.3
_USER_NAME = re.compile(r"^[A-Za-z0-9._@+-]+$")


class DovecotUnavailable(RuntimeError):
    """Dovecot is installed but would not start here; the message says why."""


@dataclass(frozen=True)
class Stored:
    """One message in a folder, as the server has it."""

    uid: int
    flags: frozenset[str]
    data: bytes


def _missing(what: str) -> None:
    # scripts/test.sh installs what is missing; only a bare local run may skip.
    if os.environ.get("CI"):
        pytest.fail(what)
    pytest.skip(what)


def dovecot_binary() -> str:
    """The dovecot command; /usr/sbin is often not on a normal user's PATH."""
    found = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        _missing("Dovecot is needed for the IMAP tests (apt-get install dovecot-imapd)")
        raise AssertionError("unreachable")
    return found


# -- modified UTF-7 (RFC 3501 5.1.3), so that folder names may be German --------------


def mutf7_encode(name: str) -> str:
    out: list[str] = []
    pending = ""
    for ch in [*name, None]:
        if ch is not None and not "\x20" <= ch <= "\x7e":
            pending += ch
            continue
        if pending:
            b64 = base64.b64encode(pending.encode("utf-16-be")).decode("ascii")
            out.append("&" + b64.rstrip("=").replace("/", ",") + "-")
            pending = ""
        if ch is not None:
            out.append("&-" if ch == "&" else ch)
    return "".join(out)


def mutf7_decode(name: str) -> str:
    def one(match: re.Match[str]) -> str:
        b64 = match.group(1).replace(",", "/")
        if not b64:
            return "&"
        return base64.b64decode(b64 + "=" * (-len(b64) % 4)).decode("utf-16-be")

    return re.sub(r"&([A-Za-z0-9+,]*)-", one, name)


def _mailbox(name: str) -> str:
    quoted = mutf7_encode(name).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}"'


def _unquote(text: str) -> str:
    if text.startswith('"') and text.endswith('"'):
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


# -- processes and ports ----------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    # Held open together so the ports differ; Dovecot binds them a moment later.
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _group_alive(pgid: int, *, besides: int | None = None) -> bool:
    """Whether a process of the group (other than `besides`) still runs.

    Dovecot's children outlive a stopped master as orphans, and then as zombies until
    init reaps them, which some container inits do only every few seconds. A zombie
    holds no port or file, so it does not count; on Linux /proc tells them apart.
    """
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return besides is None
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == besides:
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        # "pid (comm) state ppid pgrp ...": comm may itself contain ") ".
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclass(frozen=True)
class _Accounts:
    """Which system users the Dovecot processes and the mail files belong to."""

    internal: str
    internal_group: str
    login: str
    mail_uid: int
    mail_gid: int

    @classmethod
    def here(cls) -> _Accounts:
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid())
            group = grp.getgrgid(me.pw_gid).gr_name
            return cls(me.pw_name, group, me.pw_name, me.pw_uid, me.pw_gid)
        try:
            pwd.getpwnam("dovecot")
            pwd.getpwnam("dovenull")
        except KeyError:
            _missing(
                "Dovecot run as root needs the system users dovecot and dovenull "
                "(Debian's dovecot-core package creates them)"
            )
        # Mail is never accessed as root or as Dovecot's own users.
        for name in ("mail", "nobody"):
            with suppress(KeyError):
                owner = pwd.getpwnam(name)
                return cls("dovecot", "dovecot", "dovenull", owner.pw_uid, owner.pw_gid)
        _missing("no system user 'mail' or 'nobody' to own the test Maildirs")
        raise AssertionError("unreachable")

    @property
    def rootless(self) -> bool:
        return os.geteuid() != 0


def _config(
    *,
    work: Path,
    log: Path,
    cert: Certificate,
    accounts: _Accounts,
    port: int,
    tls_port: int | None,
) -> str:
    tls = tls_port is not None
    lines = [
        "# Written by tests/imap_server.py for one test server.",
        "protocols = imap",
        f"listen = {HOST}",
        f"base_dir = {work}/run",
        f"state_dir = {work}/state",
        f"instance_name = mahnwerk-test-{port}",
        f"log_path = {log}",
        "auth_verbose = yes",
        # Tests log in wrongly on purpose: no 2 s wait after each failure.
        "auth_failure_delay = 0",
        # Loopback is "secured" for Dovecot anyway; say so rather than rely on it.
        "disable_plaintext_auth = no",
        "auth_mechanisms = plain login",
        f"ssl = {'yes' if tls else 'no'}",
        *([f"ssl_cert = <{cert.cert}", f"ssl_key = <{cert.key}"] if tls else []),
        f"default_internal_user = {accounts.internal}",
        f"default_internal_group = {accounts.internal_group}",
        f"default_login_user = {accounts.login}",
        f"first_valid_uid = {accounts.mail_uid}",
        f"last_valid_uid = {accounts.mail_uid}",
        "mail_location = maildir:~/Maildir",
        "mail_fsync = never",
        "passdb {",
        "  driver = passwd-file",
        f"  args = scheme=PLAIN username_format=%u {work}/passwd",
        "}",
        "userdb {",
        "  driver = static",
        f"  args = uid={accounts.mail_uid} gid={accounts.mail_gid} home={work}/home/%u",
        "}",
        "namespace inbox {",
        "  inbox = yes",
        f"  separator = {SEPARATOR}",
        f"  mailbox {SENT} {{",
        "    auto = subscribe",
        "    special_use = \\Sent",
        "  }",
        "}",
        "service imap-login {",
        "  inet_listener imap {",
        f"    address = {HOST}",
        f"    port = {port}",
        "  }",
        # Always named: Dovecot's built-in imaps listener would otherwise take 993.
        "  inet_listener imaps {",
        f"    address = {HOST}",
        f"    port = {tls_port if tls else 0}",
        f"    ssl = {'yes' if tls else 'no'}",
        "  }",
        *(["  chroot ="] if accounts.rootless else []),
        "}",
        # The per-IP login penalty (2 s, then 4, 8, 15 s, also for good logins) would
        # make every test after a wrong password slow. Without its socket it is off.
        "service anvil {",
        "  unix_listener anvil-auth-penalty {",
        "    mode = 0",
        "  }",
        *(["  chroot ="] if accounts.rootless else []),
        "}",
    ]
    return "\n".join(lines) + "\n"


class LoopbackImap:
    """A Dovecot on loopback: where it listens, who may log in, and what is in the folders."""

    host = HOST
    user = USER
    password = PASSWORD

    def __init__(
        self, *, files: Path, cert: Certificate, starttls: bool, users: dict[str, str]
    ) -> None:
        self.certificate = cert
        self.starttls = starttls
        self.users: dict[str, str] = {}
        self._binary = dovecot_binary()
        self._accounts = _Accounts.here()
        self.log = files / "dovecot.log"
        self._stderr = files / "dovecot.stderr"
        self.config = files / "dovecot.conf"
        # Not under pytest's tmp: that is 0700 for its owner, and the dovecot and mail
        # users must reach the passwd file and the Maildirs.
        self.work = Path(tempfile.mkdtemp(prefix="mahnwerk-dovecot-"))
        self.work.chmod(0o755)
        for sub in ("run", "state", "home"):
            (self.work / sub).mkdir()
        if not self._accounts.rootless:
            os.chown(self.work / "home", self._accounts.mail_uid, self._accounts.mail_gid)
        for name, password in users.items():
            self._set_user(name, password)
        self._write_passwd()
        self._proc: subprocess.Popen[bytes] | None = None
        self.port: int = 0
        self.tls_port: int | None = None
        self._choose_ports()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LoopbackImap {HOST}:{self.port} tls={self.tls_port} {state}>"

    # -- where it listens ---------------------------------------------------------------

    def _choose_ports(self) -> None:
        ports = _free_ports(2 if self.starttls else 1)
        self.port = ports[0]
        self.tls_port = ports[1] if self.starttls else None
        self.config.write_text(
            _config(
                work=self.work,
                log=self.log,
                cert=self.certificate,
                accounts=self._accounts,
                port=self.port,
                tls_port=self.tls_port,
            ),
            encoding="utf-8",
        )

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this server's certificate."""
        return self.certificate.client_context()

    def settings(self, security: str = "none", **overrides: Any) -> Imap:
        """rules.yaml's `imap:` pointing here, logging in as USER; plain IMAP unless told."""
        if security == "ssl" and self.tls_port is None:
            raise ValueError("this server has no TLS port (made with starttls=False)")
        values: dict[str, Any] = {
            "host": HOST,
            "port": self.tls_port if security == "ssl" else self.port,
            "security": security,
            "username": USER,
            "sent_folder": SENT,
            "timeout_seconds": 10.0,
        }
        values.update(overrides)
        return Imap(**values)

    # -- running ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None

    def start(self) -> None:
        """Start Dovecot on this server's ports and wait until it greets."""
        if self._proc is not None:
            raise RuntimeError("the server is already running")
        started = time.monotonic()
        with self._stderr.open("ab") as err:
            self._proc = subprocess.Popen(
                [self._binary, "-F", "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                # Its own process group: stop() ends Dovecot's children by the group's id.
                start_new_session=True,
            )
        try:
            self._wait_until_ready(started + STARTUP_SECONDS)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop Dovecot and all its processes; connected clients get BYE and lose the connection.

        The whole process group gets SIGTERM at once: told alone, the master exits
        after a second and leaves the imap processes serving their clients. Those say
        BYE and exit at once, and so does the master, mostly. Sometimes a login process
        just forked lives on, and the master waits up to 6 s for it; so after a moment,
        whatever is left of the group is killed.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        pgid = proc.pid
        _signal_group(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            proc.wait()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            deadline = time.monotonic() + 2
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.01)
            if not _group_alive(pgid):
                break
            _signal_group(pgid, sig)
        # A killed master leaves its pid file; a new process with that pid would make
        # the next start() believe Dovecot still runs.
        (self.work / "run" / "master.pid").unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop, and remove the Maildirs (the config and log stay in pytest's tmp)."""
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def _wait_until_ready(self, deadline: float) -> None:
        assert self._proc is not None
        while True:
            if self._proc.poll() is not None:
                raise DovecotUnavailable(
                    f"dovecot exited with status {self._proc.returncode}:\n{self.log_tail()}"
                )
            # The master binds all its ports before it starts any login process, so
            # one greeting says the TLS port listens too. (Only touching that port
            # would leave a login process starting up, which then holds up stop().)
            if self._greets():
                return
            if time.monotonic() > deadline:
                raise DovecotUnavailable(
                    f"dovecot did not greet within {STARTUP_SECONDS} s:\n{self.log_tail()}"
                )
            time.sleep(0.01)

    def _greets(self) -> bool:
        # A greeting, not just an open port: it means the login and auth processes work.
        try:
            with (
                socket.create_connection((HOST, self.port), timeout=2) as sock,
                sock.makefile("rb") as reader,
            ):
                greeting = reader.readline()
                sock.sendall(b"a LOGOUT\r\n")
        except OSError:
            return False
        return greeting.startswith(b"* OK")

    def log_tail(self, lines: int = 30) -> str:
        """The end of Dovecot's log and of what it printed before it had a log."""
        text = ""
        for path in (self._stderr, self.log):
            if path.exists():
                text += path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # -- users --------------------------------------------------------------------------

    def add_user(self, name: str, password: str) -> None:
        """Add or change a login; Dovecot rereads the passwd file by itself."""
        self._set_user(name, password)
        self._write_passwd()

    def _set_user(self, name: str, password: str) -> None:
        if not _USER_NAME.match(name):
            raise ValueError(f"user name {name!r} does not fit a passwd file")
        if any(ch in password for ch in ":\r\n\0"):
            raise ValueError("a passwd-file password cannot contain ':' or line breaks")
        self.users[name] = password

    def _write_passwd(self) -> None:
        text = "".join(f"{name}:{{PLAIN}}{pw}::::::\n" for name, pw in self.users.items())
        # Replaced, not rewritten in place, so Dovecot never reads half a file.
        tmp = self.work / "passwd.new"
        tmp.write_text(text, encoding="utf-8")
        # Read by Dovecot's auth process, which runs as the dovecot user under root.
        tmp.chmod(0o644)
        tmp.replace(self.work / "passwd")

    def maildir(self, user: str = USER) -> Path:
        return self.work / "home" / user / "Maildir"

    # -- mail, through Dovecot itself ----------------------------------------------------

    @contextmanager
    def imap(self, user: str = USER) -> Iterator[imaplib.IMAP4]:
        """A logged-in stdlib imaplib connection on the plain port, for looking around."""
        if self._proc is None:
            raise RuntimeError("the server is stopped; start() it first")
        password = self.users[user]
        conn = imaplib.IMAP4(HOST, self.port, timeout=10)
        try:
            # AUTHENTICATE PLAIN is UTF-8; imaplib's LOGIN only takes ASCII.
            conn.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())
            yield conn
        finally:
            try:
                conn.logout()
            except (imaplib.IMAP4.error, OSError):
                with suppress(OSError):
                    conn.shutdown()

    def deliver(
        self,
        folder: str,
        data: bytes,
        *,
        user: str = USER,
        flags: Iterable[str] = (),
        when: datetime | None = None,
    ) -> int:
        """Put a message into `folder` (APPEND, as an MTA's delivery would) and return its UID."""
        flag_list = " ".join(flags)
        with self.imap(user) as conn:
            typ, resp = conn.append(_mailbox(folder), f"({flag_list})", when, data)
        if typ != "OK":
            raise RuntimeError(f"APPEND to {folder!r} failed: {resp!r}")
        match = re.search(rb"\[APPENDUID \d+ (\d+)\]", resp[0] or b"")
        assert match, resp
        return int(match.group(1))

    def create_folder(self, folder: str, *, user: str = USER) -> None:
        with self.imap(user) as conn:
            typ, resp = conn.create(_mailbox(folder))
        if typ != "OK":
            raise RuntimeError(f"CREATE {folder!r} failed: {resp!r}")

    def folders(self, *, user: str = USER) -> list[str]:
        with self.imap(user) as conn:
            typ, resp = conn.list()
        assert typ == "OK", resp
        names = []
        for line in resp:
            assert isinstance(line, bytes), line
            match = re.fullmatch(rb'\(([^)]*)\) (?:"(?:\\.|[^"])"|NIL) (.+)', line)
            assert match, line
            names.append(mutf7_decode(_unquote(match.group(2).decode("ascii"))))
        return sorted(names)

    def messages(self, folder: str, *, user: str = USER) -> list[Stored]:
        """Every message in `folder` with its flags, read without changing any (EXAMINE, PEEK)."""
        with self.imap(user) as conn:
            typ, resp = conn.select(_mailbox(folder), readonly=True)
            if typ != "OK":
                raise RuntimeError(f"EXAMINE {folder!r} failed: {resp!r}")
            if resp[0] == b"0":
                return []
            typ, resp = conn.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
        assert typ == "OK", resp
        # imaplib gives each message as (text up to the literal, literal), then the text
        # after it: FLAGS may be on either side of BODY[].
        parts: list[tuple[bytes, bytes]] = []
        for item in resp:
            if isinstance(item, tuple):
                parts.append((item[0], item[1]))
            elif isinstance(item, bytes) and parts:
                parts[-1] = (parts[-1][0] + item, parts[-1][1])
        stored = []
        for meta, data in parts:
            uid = re.search(rb"UID (\d+)", meta)
            flags = re.search(rb"FLAGS \(([^)]*)\)", meta)
            assert uid and flags, meta
            names = frozenset(flags.group(1).decode("ascii").split())
            stored.append(Stored(int(uid.group(1)), names, data))
        return sorted(stored, key=lambda s: s.uid)


@contextmanager
def running(
    cert: Certificate,
    files: Path,
    *,
    starttls: bool = True,
    users: dict[str, str] | None = None,
) -> Iterator[LoopbackImap]:
    """Run a Dovecot for the duration of the block; `files` keeps its config and log."""
    accounts = {USER: PASSWORD, OTHER_USER: OTHER_PASSWORD} if users is None else users
    server = LoopbackImap(files=files, cert=cert, starttls=starttls, users=accounts)
    try:
        try:
            server.start()
        except DovecotUnavailable:
            if "Address already in use" not in server.log_tail():
                raise
            # Another process took a port between choosing and binding it: once more.
            server._choose_ports()
            server.start()
        yield server
    finally:
        server.close()


def start_or_skip(make: Callable[[], LoopbackImap]) -> LoopbackImap:
    """Start a server; as a non-root user whose Dovecot cannot start, skip the test."""
    try:
        return make()
    except DovecotUnavailable as exc:
        if os.geteuid() != 0:
            pytest.skip(f"Dovecot would not start as a non-root user: {exc}")
        raise


@pytest.fixture
def imap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackImap]:
    """A Dovecot on loopback with STARTTLS and implicit TLS, users USER and OTHER_USER."""
    cert = certificate(tmp_path_factory)
    with ExitStack() as stack:
        files = tmp_path_factory.mktemp("dovecot")
        yield start_or_skip(lambda: stack.enter_context(running(cert, files)))


@pytest.fixture
def make_imap_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., LoopbackImap]]:
    """Start servers with `running()`'s options; all stop when the test ends."""
    cert = certificate(tmp_path_factory)
    with ExitStack() as stack:

        def make(**options: Any) -> LoopbackImap:
            files = tmp_path_factory.mktemp("dovecot")
            return start_or_skip(lambda: stack.enter_context(running(cert, files, **options)))

        yield make
