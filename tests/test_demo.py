"""`mahnwerk demo`, the README's first command: the real process, run to the end, and every
scripted outcome checked in the store it leaves behind (not only in what it prints)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mahnwerk import ledger
from mahnwerk.maildir import Maildir
from mahnwerk.store import TinyDBStore, open_store

NOTIFY = "buchhaltung@muster-handel.example"


@dataclass(frozen=True)
class Run:
    workspace: Path
    stdout: str
    store: TinyDBStore

    def types(self, invoice: str) -> list[str]:
        return [e.type for e in self.store.thread(invoice)]

    def status(self, invoice: str) -> str:
        found = self.store.view().invoice(invoice)
        assert found is not None, invoice
        return found.status

    def labels(self, invoice: str) -> list[str]:
        return [
            e.data["label"] for e in self.store.thread(invoice) if e.type == ledger.REPLY_RECEIVED
        ]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    workspace = tmp_path_factory.mktemp("demo") / "ws"
    env = {k: v for k, v in os.environ.items() if k not in ("STATE_DIRECTORY", "COLUMNS")}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mahnwerk", "demo", "--dir", str(workspace)],
        cwd=workspace.parent,  # no rules.yaml here: the demo needs none
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    print(f"\nmahnwerk demo ran in {time.monotonic() - started:.1f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert proc.stderr == ""
    store = open_store(workspace / "state")
    yield Run(workspace, proc.stdout, store)
    store.close()


def test_a_promise_pauses_and_the_export_settles_it(demo: Run) -> None:
    assert demo.labels("RE-2026-0431") == ["promise"]
    paused = [e for e in demo.store.thread("RE-2026-0431") if e.type == ledger.PAUSED]
    assert paused and paused[0].data["kind"] == "promise"
    assert paused[0].data["promised"] == "2026-12-10"
    assert demo.status("RE-2026-0431") == "paid"
    assert "promises to pay by 2026-12-10 → paused until 2026-12-13" in demo.stdout


def test_a_dispute_stops_the_invoice_and_a_person_is_told(demo: Run) -> None:
    view = demo.store.view()
    assert demo.labels("RE-2026-0277") == ["dispute"]
    assert view.histories()["RE-2026-0277"].stop is not None
    notices = [e for e in view.entries() if e.kind == "notice" and e.to == NOTIFY]
    assert any(
        e.subject.startswith("Einspruch: Alpenblick") and e.state == "sent" for e in notices
    ), [e.subject for e in notices]
    # Nothing more went to the customer after the dispute.
    assert "reminder_2" not in view.histories()["RE-2026-0277"].sent_names()


def test_paid_is_held_then_settled(demo: Run) -> None:
    assert demo.labels("RE-2026-0426") == ["paid"]
    assert demo.status("RE-2026-0426") == "paid"


def test_the_out_of_office_is_recognised_and_pauses(demo: Run) -> None:
    assert demo.labels("RE-2026-0219") == ["auto_reply"]
    paused = [e for e in demo.store.thread("RE-2026-0219") if e.type == ledger.PAUSED]
    assert [e.data["kind"] for e in paused] == ["auto_reply"]


def test_the_bounce_makes_the_address_undeliverable(demo: Run) -> None:
    view = demo.store.view()
    assert demo.labels("RE-2026-0440") == ["bounce"]
    assert "j.weiss@web.example" in view.undeliverable()
    assert view.histories()["RE-2026-0440"].sent_names() == {"reminder_1"}


def test_a_broken_promise_is_followed_up(demo: Run) -> None:
    assert demo.labels("INV-2026-1187") == ["promise"]
    assert "broken_promise" in demo.store.view().histories()["INV-2026-1187"].sent_names()


def test_a_silent_customer_goes_through_the_stages_to_the_hand_off(demo: Run) -> None:
    history = demo.store.view().histories()["RE-2026-0301"]
    assert [s.stage for s in history.sent] == [
        "reminder_1",
        "reminder_2",
        "final_notice",
        "escalate",
    ]
    assert ledger.ESCALATED in demo.types("RE-2026-0301")
    assert demo.labels("RE-2026-0301") == []


def test_every_reply_was_read_from_the_maildir_and_filed(demo: Run) -> None:
    box = Maildir(demo.workspace / "maildir")
    box.open_folder("INBOX")
    assert box.uids() == []
    box.open_folder("Mahnwerk/Processed")
    assert len(box.uids()) == 6
    assert demo.store.view().review_queue() == []


def test_it_prints_the_story_the_table_and_one_whole_thread(demo: Run) -> None:
    out = demo.stdout
    assert "Where every customer stands on Tue 2027-01-19" in out
    for customer in ("K-1001", "K-1011", "C-2001", "C-2009"):
        assert customer in out
    head = "The whole thread of RE-2026-0431"
    assert head in out
    thread = out.split(head, 1)[1]
    for kind in ("imported", "reminder_sent", "reply_received", "paused", "updated"):
        assert f"  {kind}" in thread
    assert f"--state-dir {demo.workspace / 'state'} thread" in out
    assert not [line for line in out.splitlines() if line.startswith("error")]
