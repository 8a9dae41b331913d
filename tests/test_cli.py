"""Acceptance, from outside: the real `mahnwerk` process on the shipped rules and samples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules.yaml"
SAMPLES = ROOT / "samples"

# What the shipped policy prescribes for the samples on Wednesday 2026-11-25
# (customer -> (stage, invoices)), as the table in samples/README.md says.
EXPECTED = {
    "K-1001": ("reminder_1", ["RE-2026-0431"]),
    "K-1002": ("pre_due", ["RE-2026-0467"]),
    "K-1003": ("reminder_1", ["RE-2026-0301"]),
    "K-1004": ("reminder_1", ["RE-2026-0277"]),
    "K-1005": ("pre_due", ["RE-2026-0471"]),
    "K-1006": ("reminder_1", ["RE-2026-0440"]),
    "K-1007": ("reminder_1", ["RE-2026-0426"]),
    "K-1010": ("reminder_1", ["RE-2026-0219"]),
    "K-1011": ("pre_due", ["RE-2026-0474"]),
    "C-2001": ("reminder_1", ["INV-2026-1187", "INV-2026-1243"]),
    "C-2002": ("pre_due", ["INV-2026-1214"]),
    "C-2003": ("reminder_1", ["INV-2026-1169"]),
    "C-2004": ("reminder_1", ["INV-2026-1178"]),
    "C-2005": ("pre_due", ["INV-2026-1221"]),
}


def mw(
    state: Path, *args: str, config: Path = RULES, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mahnwerk",
            "--config",
            str(config),
            "--state-dir",
            str(state),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def mw_json(state: Path, *args: str) -> Any:
    return json.loads(mw(state, *args, "--json").stdout)


@pytest.fixture
def imported(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    mw(state, "import", str(SAMPLES / "invoices-de.csv"))
    mw(state, "import", str(SAMPLES / "invoices-en.csv"))
    return state


def test_check_passes_on_the_shipped_rules(tmp_path: Path) -> None:
    proc = mw(tmp_path, "check")
    assert "OK" in proc.stdout
    # 5 stages' templates, the reply notice and the broken-promise follow-up, de and en.
    assert "14 templates rendered" in proc.stdout


def _rules_copy(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    text = RULES.read_text(encoding="utf-8")
    assert old in text
    text = text.replace(old, new, 1)
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    (tmp_path / "templates").symlink_to(ROOT / "templates")
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if new.strip() in ln)
    return path, line


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("        template: reminder_2\n", "        tempalte: reminder_2\n", "did you mean"),
        ("        template: reminder_2\n", "        template: reminder_3\n", "does not exist"),
        ("  max_per_week: 2", "  max_per_week: -2", "greater than or equal to 1"),
        (
            '  sender: "Muster Handel GmbH <forderungen@muster-handel.example>"',
            "  sender: Muster, Handel GmbH <forderungen@muster-handel.example>",
            "company.sender",
        ),
    ],
)
def test_check_names_the_line_of_a_mistake(
    tmp_path: Path, old: str, new: str, fragment: str
) -> None:
    config, line = _rules_copy(tmp_path, old, new)
    proc = mw(tmp_path / "state", "check", config=config, ok=False)
    assert proc.returncode == 1
    assert f"{config}:{line}:" in proc.stderr
    assert fragment in proc.stderr


def test_plan_on_a_weekday_gives_the_prescribed_stages(imported: Path) -> None:
    mails = mw_json(imported, "plan", "--as-of", "2026-11-25")
    got = {m["customer_id"]: (m["stage"], m["invoice_numbers"]) for m in mails}
    assert got == EXPECTED
    assert len(mails) == len(got)  # one entry per customer
    for m in mails:
        assert m["reason"] and m["to"] and m["template"] == m["stage"]
        assert all(isinstance(v, str) for v in m["totals"].values())
    by_customer = {m["customer_id"]: m for m in mails}
    assert by_customer["K-1004"]["totals"] == {"CHF": "3600.00"}  # partly paid
    assert by_customer["C-2001"]["totals"] == {"EUR": "2070.00"}
    assert "RE-2026-0398" not in json.dumps(mails)  # paid
    assert "RE-2026-0415" not in json.dumps(mails)  # cancelled


@pytest.mark.parametrize("day", ["2026-11-28", "2026-12-25"])
def test_plan_on_a_saturday_or_a_holiday_gives_nothing(imported: Path, day: str) -> None:
    assert mw_json(imported, "plan", "--as-of", day) == []
    text = mw(imported, "plan", "--as-of", day).stdout
    assert "send window closed" in text and "opens 2026-1" in text


def test_plan_text_explains_each_mail(imported: Path) -> None:
    text = mw(imported, "plan", "--as-of", "2026-11-25").stdout
    assert "66 days overdue, no reminder sent yet" in text
    assert "14 planned" in text


def test_reimport_changes_nothing_and_updates_are_recorded(imported: Path, tmp_path: Path) -> None:
    again = mw_json(imported, "import", str(SAMPLES / "invoices-de.csv"))
    assert (again["new"], again["updated"], again["unchanged"]) == (0, 0, 15)
    text = (SAMPLES / "invoices-de.csv").read_text(encoding="utf-8")
    changed = tmp_path / "changed.csv"
    changed.write_text(text.replace("1.234,56;EUR", "1.234,56;EUR".replace("1.234", "1.200")))
    result = mw_json(imported, "import", str(changed))
    assert result["updated"] == 1
    events = mw_json(imported, "thread", "RE-2026-0431")
    assert [e["type"] for e in events] == ["imported", "updated"]
    assert "amount 1234.56 → 1200.56" in events[1]["reason"]


def test_a_bad_row_imports_nothing_and_names_file_line_column(tmp_path: Path) -> None:
    state = tmp_path / "state"
    bad = tmp_path / "bad.csv"
    lines = (SAMPLES / "invoices-en.csv").read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].replace(",EUR,", ",EUR,not-a-date,", 1).replace(",2026-", ",", 1)
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = mw(state, "import", str(bad), ok=False)
    assert proc.returncode == 1
    assert f"{bad}:4:" in proc.stderr
    assert "nothing imported" in proc.stderr
    assert mw_json(state, "invoices") == []
    skipped = mw_json(state, "import", str(bad), "--skip-bad")
    assert (skipped["new"], skipped["skipped"]) == (9, 1)


def test_open_items_marks_missing_invoices_paid_with_a_reason(
    imported: Path, tmp_path: Path
) -> None:
    lines = (SAMPLES / "invoices-de.csv").read_text(encoding="utf-8").splitlines()
    kept = [ln for ln in lines if "RE-2026-0431" not in ln]
    open_items = tmp_path / "offene-posten.csv"
    open_items.write_text("\n".join(kept) + "\n", encoding="utf-8")
    result = mw_json(imported, "import", str(open_items), "--open-items")
    # Every open invoice of the English file is missing too.
    assert result["marked_paid"] == 1 + 9
    events = mw_json(imported, "thread", "RE-2026-0431")
    assert events[-1]["type"] == "marked_paid"
    assert "open-items" in events[-1]["reason"]
    statuses = {i["number"]: i["status"] for i in mw_json(imported, "invoices")}
    assert statuses["RE-2026-0431"] == "paid"


def test_thread_of_an_unknown_invoice_is_an_error(imported: Path) -> None:
    proc = mw(imported, "thread", "NOPE-1", ok=False)
    assert proc.returncode == 1 and "no invoice 'NOPE-1'" in proc.stderr


def test_state_dir_defaults_to_the_systemd_variable(tmp_path: Path) -> None:
    env = {**os.environ, "STATE_DIRECTORY": str(tmp_path / "from-systemd")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mahnwerk",
            "--config",
            str(RULES),
            "import",
            str(SAMPLES / "invoices-en.csv"),
        ],
        check=True,
        capture_output=True,
        env=env,
        cwd=tmp_path,
    )
    assert (tmp_path / "from-systemd" / "journal.log").is_file()
    assert not (tmp_path / "state").exists()


def test_preview_renders_the_planned_mail(imported: Path) -> None:
    text = mw(imported, "preview", "C-2001", "--as-of", "2026-11-25").stdout
    assert text.startswith("To: Thornbury Consulting Ltd <accounts@thornbury-consulting.example>")
    assert "Subject: " in text and "INV-2026-1187" in text and "INV-2026-1243" in text
    assert "€1,450.00" in text  # English customer, en_GB formatting
    html = mw(imported, "preview", "K-1001", "--as-of", "2026-11-25", "--html").stdout
    assert "Müller &amp; Söhne KG" in html
    none = mw(imported, "preview", "C-2006", "--as-of", "2026-11-25", ok=False)
    assert none.returncode == 1 and "no stage is due" in none.stderr


def test_skip_bad_does_not_skip_a_broken_header(tmp_path: Path) -> None:
    state = tmp_path / "state"
    text = (SAMPLES / "invoices-en.csv").read_text(encoding="utf-8")
    bad = tmp_path / "typo.csv"
    bad.write_text(text.replace("invoice_number,", "invoice_numbr,", 1), encoding="utf-8")
    proc = mw(state, "import", str(bad), "--skip-bad", ok=False)
    assert proc.returncode == 1
    assert "did you mean 'invoice_number'" in proc.stderr
    assert "cannot be read as a whole" in proc.stderr
    assert mw_json(state, "invoices") == []


def test_open_items_refuses_an_empty_or_suspiciously_short_list(
    imported: Path, tmp_path: Path
) -> None:
    header = (SAMPLES / "invoices-de.csv").read_text(encoding="utf-8").splitlines()[0]
    empty = tmp_path / "leer.csv"
    empty.write_text(header + "\n", encoding="utf-8")
    proc = mw(imported, "import", str(empty), "--open-items", ok=False)
    assert proc.returncode == 1 and "lists no invoice" in proc.stderr
    # Only the English file: 13 of the 22 open invoices would be settled at once.
    english = SAMPLES / "invoices-en.csv"
    proc = mw(imported, "import", str(english), "--open-items", ok=False)
    assert proc.returncode == 1 and "13 of 22 open invoices" in proc.stderr
    assert {i["status"] for i in mw_json(imported, "invoices", "--status", "paid")} == {"paid"}
    assert len(mw_json(imported, "invoices", "--status", "open")) == 22
    forced = mw_json(imported, "import", str(english), "--open-items", "--force")
    assert forced["marked_paid"] == 13


def test_the_same_amount_written_differently_is_not_a_change(
    imported: Path, tmp_path: Path
) -> None:
    text = (SAMPLES / "invoices-en.csv").read_text(encoding="utf-8")
    # An empty paid_amount is stored as 0; the next export writes 0.00: the same amount.
    assert ",key_account,,open" in text
    rewritten = tmp_path / "same.csv"
    rewritten.write_text(
        text.replace(",key_account,,open", ",key_account,0.00,open"), encoding="utf-8"
    )
    result = mw_json(imported, "import", str(rewritten))
    assert (result["updated"], result["unchanged"]) == (0, 10)


def test_init_writes_a_working_setup_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "etc-mahnwerk"
    proc = mw(tmp_path / "state", "init", str(target))
    assert "next: edit company and bank" in proc.stdout
    config = target / "rules.yaml"
    assert config.read_text(encoding="utf-8") == RULES.read_text(encoding="utf-8")
    assert (target / "templates" / "de" / "reminder_1.txt.j2").is_file()
    assert "OK" in mw(tmp_path / "state", "check", config=config).stdout
    again = mw(tmp_path / "state", "init", str(target), ok=False)
    assert again.returncode == 1 and "not overwriting" in again.stderr


def test_the_wheel_carries_the_shipped_defaults(tmp_path: Path) -> None:
    import zipfile

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("mahnwerk-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mahnwerk/resources.py" in names
    assert "mahnwerk/_shipped/rules.yaml" in names
    assert "mahnwerk/_shipped/templates/de/final_notice.html.j2" in names
    assert "mahnwerk/_shipped/samples/invoices-de.csv" in names
