"""A mahnwerk workspace for tests: the shipped rules pointed at loopback servers, a store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from mahnwerk.config import LoadedRules, load_rules
from mahnwerk.csvparse import parse_invoices
from mahnwerk.importer import import_events
from mahnwerk.store import TinyDBStore

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


def write_rules(folder: Path, **sections: Any) -> Path:
    """The shipped rules.yaml with top-level sections replaced (None removes one)."""
    data = yaml.safe_load((ROOT / "rules.yaml").read_text(encoding="utf-8"))
    data["templates_dir"] = str(ROOT / "templates")
    for name, value in sections.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def smtp_section(port: int, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port, "security": "none", **extra}


def load(path: Path) -> LoadedRules:
    return load_rules(path)


def import_samples(store: TinyDBStore, now: datetime, *names: str) -> None:
    for name in names or ("invoices-de.csv", "invoices-en.csv"):
        path = SAMPLES / name
        parsed = parse_invoices(path.read_bytes(), str(path))
        assert not parsed.errors, parsed.errors
        with store.transaction() as tx:
            existing = {i.number: i for i in tx.view.invoices()}
            summary = import_events(
                existing, parsed.invoices, source=name, open_items=False, now=now
            )
            tx.add_all(summary.events)


def delivery_status(ours: Any, *, recipient: str, message_id: str, date: str) -> bytes:
    """A Postfix-style DSN (RFC 3464) returning the headers of our mail `ours`."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example>\r\n"
        "To: forderungen@muster-handel.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {date}\r\n"
        f"Message-ID: {message_id}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {ours['Message-ID']}\r\nSubject: {ours['Subject']}\r\n"
        "--B--\r\n"
    ).encode()
