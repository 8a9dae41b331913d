"""Where a mail server password comes from: never rules.yaml.

Shared by the SMTP and IMAP logins, so both follow the same order: the environment
variable an operator sets by hand, else the systemd credential file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mahnwerk.rules import Server


def password(settings: Server, environ: Mapping[str, str]) -> str | None:
    """Find the SMTP password without it ever being written into rules.yaml.

    The environment variable wins because it is what an operator sets by hand;
    the systemd credential file is the unattended route. An empty variable
    counts as unset so that `FOO=` in a unit file does not hide the credential.
    """
    if settings.password_env:
        value = environ.get(settings.password_env)
        if value:
            return value
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    try:
        text = (Path(directory) / settings.credential).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    # Editors and `echo` add one newline; anything beyond that belongs to the password.
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    return text or None
