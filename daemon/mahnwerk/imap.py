"""Reads and writes the mailbox over IMAP (the imperative shell around imapclient).

The outbox needs two things from the mailbox: after a crash left a reminder's fate
unknown, whether a mail with its Message-ID is in the Sent folder (then it went out,
and sending it again would remind the customer twice); and a copy of each sent reminder
in the Sent folder, for servers that do not file one themselves. Reading replies
(`inbox.py`) lists, fetches and moves the messages of the reply folder, and waits in IDLE.

Like smtp.py, nothing here retries on its own: a command that fails raises ImapError,
and if the connection broke, the next call reconnects. Nothing here marks a message
read: the Sent folder is only EXAMINEd, and everything is fetched with BODY.PEEK, so the
person who reads the same mailbox still sees what is new. Replies are moved out of the
reply folder only once their result is committed (`inbox.py`).
"""

from __future__ import annotations

import email.parser
import email.policy
import imaplib
import logging
import re
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, NamedTuple

from imapclient import IMAPClient  # type: ignore[import-untyped]

from mahnwerk.credentials import password
from mahnwerk.rules import Imap

__all__ = ["FolderState", "ImapConnectError", "ImapError", "ImapSession", "password"]

log = logging.getLogger(__name__)

ConnectStage = Literal["DNS", "connect", "TLS", "authentication", "folder"]

# A msg-id as mahnwerk writes it: <left@right>, printable ASCII, no spaces. Anything else
# could not be searched for reliably and is a bug in the caller.
_MESSAGE_ID = re.compile(r"<([\x21-\x3b\x3d\x3f-\x7e]+)@([\x21-\x3b\x3d\x3f-\x7e]+)>")
_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")
_BARE_EOL = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_HEADER_ITEM = b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"


class ImapError(Exception):
    """An IMAP command failed: the server refused it, or the connection broke.

    After a broken connection the session reconnects on its next call. A failed
    APPEND may still have stored the message; find_message_id tells.
    """


class ImapConnectError(ImapError):
    """The session could not be opened, or a folder it needs is missing.

    `stage` tells the user where to look; `mahnwerk check --connect` shows the
    message as is. Every stage but "folder" means nothing was read or written.
    """

    def __init__(self, stage: ConnectStage, host: str, port: int, detail: str) -> None:
        super().__init__(f"{stage} failed for {host}:{port}: {detail}")
        self.stage: ConnectStage = stage


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _same_message_id(found: str, wanted: str) -> bool:
    """Compare as msg-ids: the part left of @ exactly, the domain without case.

    Servers SEARCH headers by case-insensitive substring, so `<a@x>` also finds
    `<xa@x>` and `<A@x>`; only this comparison decides.
    """
    found_match = _MESSAGE_ID.fullmatch(found.strip())
    wanted_match = _MESSAGE_ID.fullmatch(wanted)
    if found_match is None or wanted_match is None:
        return False
    return (
        found_match.group(1) == wanted_match.group(1)
        and found_match.group(2).casefold() == wanted_match.group(2).casefold()
    )


def _message_ids(header_block: bytes) -> list[str]:
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(header_block)
    # compat32 leaves folded lines as they were: unfold before comparing.
    return [re.sub(r"\r?\n", "", str(v)) for v in parsed.get_all("Message-ID", [])]


class ImapSession:
    """One logged-in connection to the mailbox.

    Use as a context manager: entering connects, logs in and checks that the
    configured folders exist, so a wrong password or a mistyped folder shows up
    before the outbox relies on the mailbox; leaving logs out.
    """

    def __init__(
        self,
        settings: Imap,
        password: str | None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        check_folders: bool = True,
    ) -> None:
        self.settings = settings
        self._password = password
        self._ssl_context = ssl_context
        self._check_folders = check_folders
        self._conn: Any = None

    def __repr__(self) -> str:
        # Spelled out so that the password can never end up in a log line or traceback.
        s = self.settings
        state = "connected" if self._conn is not None else "closed"
        return f"<ImapSession {s.security} {s.username or '-'}@{s.host}:{s.port} {state}>"

    def __enter__(self) -> ImapSession:
        if self._conn is None:
            self._connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def close(self) -> None:
        """Log out if the connection still works, else just drop the socket."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.logout()
        except (imaplib.IMAP4.error, OSError):
            with suppress(imaplib.IMAP4.error, OSError):
                conn.shutdown()

    # -- connecting -------------------------------------------------------------------

    def _fail(self, stage: ConnectStage, detail: str) -> ImapConnectError:
        return ImapConnectError(stage, self.settings.host, self.settings.port, detail)

    def _connect(self) -> Any:
        s = self.settings
        if not s.username:
            raise self._fail("authentication", "no username: set imap.username in rules.yaml")
        if self._password is None:
            where = f"${s.password_env} or " if s.password_env else ""
            raise self._fail(
                "authentication",
                f"no password for {s.username!r}: set {where}"
                f"the credential file {s.credential!r} in $CREDENTIALS_DIRECTORY",
            )
        context = self._ssl_context or ssl.create_default_context()
        conn: Any = None
        stage: ConnectStage = "connect"
        try:
            conn = IMAPClient(
                s.host,
                port=s.port,
                ssl=s.security == "ssl",
                ssl_context=context,
                timeout=s.timeout_seconds,
            )
            if s.security == "starttls":
                stage = "TLS"
                if b"STARTTLS" not in conn.capabilities():
                    # Going on in plain text would send the password in the clear; the
                    # capability may also have been stripped by someone in between.
                    raise self._fail("TLS", "server does not offer STARTTLS")
                conn.starttls(context)
            stage = "authentication"
            self._login(conn, s.username, self._password)
            if self._check_folders:
                stage = "folder"
                for folder in dict.fromkeys(f for f in (s.folder, s.sent_folder) if f):
                    if not self._folder_exists(conn, folder):
                        raise self._fail("folder", f"no folder {folder!r} on the server")
        except BaseException as exc:
            if conn is not None:
                with suppress(imaplib.IMAP4.error, OSError):
                    conn.shutdown()
            error = self._connect_error(stage, exc)
            if error is exc:
                raise
            raise error from exc
        log.debug("connected to %s:%s (%s) as %s", s.host, s.port, s.security, s.username)
        self._conn = conn
        return conn

    def _connect_error(self, stage: ConnectStage, exc: BaseException) -> BaseException:
        if isinstance(exc, ImapConnectError):
            return exc
        if isinstance(exc, socket.gaierror):
            return self._fail("DNS", f"cannot resolve {self.settings.host!r} ({exc.strerror})")
        if isinstance(exc, UnicodeError):
            # The idna codec refusing the host name ("a..b"): it can never be resolved.
            return self._fail("DNS", f"{self.settings.host!r} is not a valid host name ({exc})")
        if isinstance(exc, ssl.SSLError):
            return self._fail("TLS", str(exc))
        if isinstance(exc, (OSError, imaplib.IMAP4.error)):
            # Refused and timed-out sockets, a BYE greeting, a NO to STARTTLS or LOGIN;
            # imapclient's errors carry the server's bytes.
            imap_error = isinstance(exc, imaplib.IMAP4.error) and exc.args
            detail = _text(exc.args[0]) if imap_error else str(exc)
            return self._fail(stage, detail or type(exc).__name__)
        return exc

    def _login(self, conn: Any, username: str, secret: str) -> None:
        if username.isascii() and secret.isascii():
            conn.login(username, secret)
            return
        # LOGIN goes through imaplib as ASCII; SASL PLAIN carries UTF-8.
        if b"AUTH=PLAIN" not in conn.capabilities():
            # Raised outside the except: a UnicodeEncodeError would quote the password.
            raise self._fail(
                "authentication",
                "the user name or password is not ASCII and the server offers no AUTH=PLAIN",
            )
        conn.plain_login(username, secret)

    @staticmethod
    def _folder_exists(conn: Any, folder: str) -> bool:
        # LIST takes a pattern ("*" and "%" are wildcards), so compare the names it returns.
        for flags, _delimiter, name in conn.list_folders("", folder):
            unusable = {f.lower() for f in flags} & {b"\\noselect", b"\\nonexistent"}
            same = name == folder or (name.upper() == "INBOX" == folder.upper())
            if same and not unusable:
                return True
        return False

    # -- commands ---------------------------------------------------------------------

    @contextmanager
    def _command(self, what: str) -> Iterator[Any]:
        """Run one step on a working connection, and say plainly what went wrong."""
        conn = self._conn if self._conn is not None else self._connect()
        try:
            yield conn
        except (imaplib.IMAP4.abort, OSError) as exc:
            # abort: the server said BYE or the socket ended mid-response.
            self._drop()
            raise ImapError(
                f"{what}: connection lost ({_text(exc) or type(exc).__name__})"
            ) from exc
        except imaplib.IMAP4.error as exc:
            raise ImapError(f"{what}: {_text(exc)}") from exc

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(imaplib.IMAP4.error, OSError):
                conn.shutdown()

    def _select(self, conn: Any, folder: str, *, readonly: bool) -> dict[bytes, Any]:
        """SELECT (or EXAMINE); a folder that is not there is a "folder" connect error."""
        try:
            selected: dict[bytes, Any] = conn.select_folder(folder, readonly=readonly)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            if self._missing_folder(conn, folder, exc):
                raise self._fail("folder", f"no folder {folder!r} on the server") from exc
            raise
        return selected

    def _missing_folder(self, conn: Any, folder: str, exc: imaplib.IMAP4.error) -> bool:
        if "[TRYCREATE]" in str(exc) or "[NONEXISTENT]" in str(exc):
            return True
        return not self._folder_exists(conn, folder)

    def capabilities(self) -> tuple[str, ...]:
        """The server's extensions after login, for callers whose next step depends on
        one (MOVE or COPY and delete; UIDPLUS, without which append returns no UID)."""
        with self._command("CAPABILITY") as conn:
            return tuple(_text(c) for c in conn.capabilities())

    def find_message_id(self, folder: str, message_id: str) -> list[int]:
        """UIDs of the messages in `folder` whose Message-ID is exactly `message_id`.

        `message_id` includes the angle brackets, as in the header. The folder is
        only EXAMINEd, so no flag changes, not even \\Recent.
        """
        if not _MESSAGE_ID.fullmatch(message_id):
            raise ValueError(f"not a Message-ID like <left@right>: {message_id!r}")
        with self._command(f"searching {folder!r}") as conn:
            selected = self._select(conn, folder, readonly=True)
            if not selected.get(b"EXISTS"):
                return []
            # Quoted by hand: imapclient leaves %, * and { unquoted, all valid in a msg-id.
            quoted = message_id.replace("\\", "\\\\").replace('"', '\\"')
            candidates = conn.search(f'HEADER Message-ID "{quoted}"'.encode("ascii"))
            if not candidates:
                return []
            fetched = conn.fetch(candidates, [_HEADER_ITEM])
        found = []
        for uid, items in fetched.items():
            for key, value in items.items():
                if not (isinstance(key, bytes) and key.startswith(b"BODY[HEADER.FIELDS")):
                    continue
                if isinstance(value, bytes) and any(
                    _same_message_id(mid, message_id) for mid in _message_ids(value)
                ):
                    found.append(int(uid))
        return sorted(found)

    def append(
        self, folder: str, data: bytes, *, seen: bool = True, when: datetime | None = None
    ) -> int | None:
        """Store `data` in `folder`; the new UID if the server says (UIDPLUS), else None.

        `data` must be the wire form (CRLF line endings), so the copy is byte for byte
        what was sent. `when` becomes the message's internal date (the time mail
        clients sort by); it must carry a time zone, as a naive time would be read in
        whatever zone this machine is set to.
        """
        if _BARE_EOL.search(data):
            raise ValueError("data must use CRLF line endings")
        if when is not None and when.utcoffset() is None:
            raise ValueError("when must be timezone-aware")
        flags = [b"\\Seen"] if seen else []
        with self._command(f"appending to {folder!r}") as conn:
            try:
                response = conn.append(folder, data, flags=flags, msg_time=when)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:
                if self._missing_folder(conn, folder, exc):
                    raise self._fail("folder", f"no folder {folder!r} on the server") from exc
                raise
        match = _APPENDUID.search(response if isinstance(response, bytes) else b"")
        return int(match.group(1)) if match else None

    def ensure_folder(self, folder: str) -> bool:
        """Create `folder` unless it exists (and subscribe to it, so mail clients show it).

        True if it was created. Only for folders mahnwerk owns: a configured folder
        that is missing is an error, as a typo would otherwise create a new folder.
        """
        with self._command(f"creating {folder!r}") as conn:
            if self._folder_exists(conn, folder):
                return False
            try:
                conn.create_folder(folder)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:
                # Someone else made it meanwhile: that is what we wanted.
                if "[ALREADYEXISTS]" in str(exc) or self._folder_exists(conn, folder):
                    return False
                raise
            with suppress(imaplib.IMAP4.error):
                conn.subscribe_folder(folder)
            return True

    # -- reading replies ----------------------------------------------------------------

    def open_folder(self, folder: str) -> FolderState:
        """SELECT `folder` read-write (moving mail out needs it); its UIDVALIDITY and UIDNEXT.

        A UIDVALIDITY that differs from the one recorded means every UID changed meaning:
        the caller then goes by Message-ID alone.
        """
        with self._command(f"opening {folder!r}") as conn:
            selected = self._select(conn, folder, readonly=False)
        return FolderState(
            folder,
            int(selected.get(b"UIDVALIDITY", 0)),
            int(selected.get(b"UIDNEXT", 0)),
            int(selected.get(b"EXISTS", 0)),
        )

    def uids(self) -> list[int]:
        """Every UID in the selected folder, ascending (processed mail is moved out, so the
        folder holds what is new plus what a crash left before its move)."""
        with self._command("listing messages") as conn:
            return sorted(int(u) for u in conn.search(["ALL"]))

    def fetch(self, uids: list[int]) -> dict[int, bytes]:
        """The full raw bytes of each message; BODY.PEEK, so nothing is marked read."""
        if not uids:
            return {}
        with self._command(f"fetching {len(uids)} message(s)") as conn:
            fetched = conn.fetch(uids, [b"BODY.PEEK[]"])
        out: dict[int, bytes] = {}
        for uid, items in fetched.items():
            body = items.get(b"BODY[]")
            if isinstance(body, bytes):
                out[int(uid)] = body
        return out

    def move(self, uids: list[int], folder: str) -> None:
        """Move messages of the selected folder to `folder`.

        MOVE (RFC 6851) where offered, which is atomic. Else COPY, then flag \\Deleted and,
        with UIDPLUS, expunge exactly those UIDs; without UIDPLUS they stay flagged, since a
        plain EXPUNGE would also remove what the user deleted and meant to keep.
        """
        if not uids:
            return
        with self._command(f"moving {len(uids)} message(s) to {folder!r}") as conn:
            caps = conn.capabilities()
            if b"MOVE" in caps:
                conn.move(uids, folder)
                return
            conn.copy(uids, folder)
            conn.add_flags(uids, [b"\\Deleted", PROCESSED_FLAG])
            if b"UIDPLUS" in caps:
                conn.uid_expunge(uids)

    def idle_wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds in IDLE for news in the selected folder.

        True if the server reported something. IDLE is a hint: callers fetch after every
        wake-up and after every reconnect anyway. Servers without IDLE are simply polled:
        this then sleeps on the socket-free path and returns False.
        """
        with self._command("IDLE") as conn:
            if b"IDLE" not in conn.capabilities():
                return False
            conn.idle()
            try:
                responses = conn.idle_check(timeout=timeout)
            finally:
                conn.idle_done()
        return bool(responses)


PROCESSED_FLAG = b"$MahnwerkProcessed"


class FolderState(NamedTuple):
    folder: str
    uidvalidity: int
    uidnext: int
    exists: int
