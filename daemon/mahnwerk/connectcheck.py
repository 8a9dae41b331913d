"""`mahnwerk check --connect`: log in to the mail servers the way the service will.

A wrong password or a closed firewall would otherwise show up only at the first tick,
in the journal, long after whoever edited rules.yaml has moved on. Each server gets
one line naming the step that failed (DNS, connect, TLS, authentication, folder),
found by the same sessions the service uses, so what passes here works there.
Nothing is sent, created or marked read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mahnwerk.credentials import password
from mahnwerk.imap import ImapConnectError, ImapError, ImapSession
from mahnwerk.rules import Imap, Rules, Server, Smtp
from mahnwerk.smtp import SmtpConnectError, SmtpSession

# Folders that must exist: reading replies and the Sent folder lookup fail without them.
REQUIRED_FOLDERS = ("folder", "sent_folder")
# Folders mahnwerk creates on first use: missing is fine, but worth saying.
OWN_FOLDERS = ("processed_folder", "review_folder")


@dataclass(frozen=True)
class Result:
    """One line of the report; only `failed` ones make the exit status 1."""

    what: str  # "smtp", "imap", "imap folders"
    where: str  # "host:port (security)", or "" when there is no server to name
    failed: bool
    text: str

    def line(self) -> str:
        head = f"{self.what} {self.where}" if self.where else self.what
        return f"{head}: {self.text}"


class _FolderProbe(ImapSession):
    """An ImapSession that can look a folder up by LIST, which neither creates nor
    selects it (SELECT would clear \\Recent in a folder a person reads)."""

    def folder_exists(self, folder: str) -> bool:
        with self._command(f"looking for folder {folder!r}") as conn:
            return self._folder_exists(conn, folder)


def check_connections(rules: Rules, environ: Mapping[str, str]) -> list[Result]:
    """Log in to each configured server once; a missing section is reported, not failed."""
    checks: tuple[tuple[str, Server | None, Callable[..., list[Result]]], ...] = (
        ("smtp", rules.smtp, _smtp),
        ("imap", rules.imap, _imap),
    )
    results: list[Result] = []
    for name, settings, run in checks:
        if settings is None:
            results.append(
                Result(name, "", False, f"not configured (no {name}: section in rules.yaml)")
            )
        else:
            results += run(settings, password(settings, environ))
    return results


def _where(settings: Server) -> str:
    return f"{settings.host}:{settings.port} ({settings.security})"


def _failed(what: str, settings: Server, exc: SmtpConnectError | ImapConnectError) -> Result:
    # The sessions' messages start "<stage> failed for host:port: ", which the line says.
    prefix = f"{exc.stage} failed for {settings.host}:{settings.port}: "
    return Result(
        what, _where(settings), True, f"FAILED at {exc.stage}: {str(exc).removeprefix(prefix)}"
    )


def _smtp(settings: Smtp, secret: str | None) -> list[Result]:
    try:
        # Entering connects, says EHLO, starts TLS and logs in; leaving says QUIT.
        with SmtpSession(settings, secret):
            pass
    except SmtpConnectError as exc:
        return [_failed("smtp", settings, exc)]
    who = f"logged in as {settings.username}" if settings.username else "connected (no username)"
    return [Result("smtp", _where(settings), False, f"OK, {who}")]


def _folders(settings: Imap, keys: tuple[str, ...]) -> dict[str, str]:
    """`imap.<key>` to folder name, for the keys that are set."""
    return {f"imap.{key}": name for key in keys if (name := getattr(settings, key))}


def _imap(settings: Imap, secret: str | None) -> list[Result]:
    required, own = _folders(settings, REQUIRED_FOLDERS), _folders(settings, OWN_FOLDERS)
    where = _where(settings)
    try:
        # Folders are looked up below, so that every missing one is named at once.
        probe = _FolderProbe(settings, secret, check_folders=False)
        with probe:
            missing = [k for k, name in required.items() if not probe.folder_exists(name)]
            exists = {key: probe.folder_exists(name) for key, name in own.items()}
    except ImapConnectError as exc:
        return [_failed("imap", settings, exc)]
    except ImapError as exc:
        return [Result("imap", where, True, f"FAILED at folder: {exc}")]
    if missing:
        names = ", ".join(f"{required[k]!r} ({k})" for k in missing)
        text = f"FAILED at folder: logged in as {settings.username}, but no folder {names}"
        return [Result("imap", where, True, text)]
    found = ", ".join(f"{name} ({key})" for key, name in required.items())
    ok = f"OK, logged in as {settings.username}; folders found: {found}"
    results = [Result("imap", where, False, ok)]
    if own:
        states = "; ".join(
            f"{own[key]} ({key}) " + ("exists" if there else "missing, created on first use")
            for key, there in exists.items()
        )
    else:
        states = "imap.processed_folder and imap.review_folder are off"
    results.append(Result("imap folders", "", False, states))
    return results
