"""rules.yaml: every mistake is named with file, line, column and a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from mahnwerk.config import ConfigInvalid, load_rules

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = (ROOT / "rules.yaml").read_text(encoding="utf-8")


def _line_of(text: str, needle: str) -> int:
    return text.splitlines().index(next(ln for ln in text.splitlines() if needle in ln)) + 1


def _broken(tmp_path: Path, old: str, new: str) -> tuple[Path, str]:
    assert old in SHIPPED, old
    text = SHIPPED.replace(old, new, 1)
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path, text


def test_shipped_rules_load() -> None:
    rules = load_rules(ROOT / "rules.yaml").rules
    assert [s.name for s in rules.policies[-1].stages] == [
        "pre_due",
        "reminder_1",
        "reminder_2",
        "final_notice",
        "escalate",
    ]
    assert rules.contact_limits.max_per_week == 2
    assert rules.send_window.days == ["mon", "tue", "wed", "thu", "fri"]


# (old text, new text, line marker in the new text, column, message fragment, hint fragment)
CASES = [
    (
        "        template: reminder_1\n",
        "        tempalte: reminder_1\n",
        "tempalte",
        9,
        "unknown key 'tempalte'",
        "did you mean 'template'",
    ),
    ("  max_per_week: 2", "  max_per_week: -1", "max_per_week: -1", 17, "max_per_week", None),
    (
        "  min_days_between: 3",
        "  min_days_betwen: 3",
        "min_days_betwen",
        3,
        "unknown key 'min_days_betwen'",
        "did you mean 'min_days_between'",
    ),
    # Unquoted 9:00 is the integer 540 in YAML 1.1.
    ('  from: "09:00"', "  from: 9:00", "from: 9:00", 9, "quotes", None),
    (
        "  timezone: Europe/Berlin",
        "  timezone: Europe/Berlln",
        "Europe/Berlln",
        13,
        "unknown time zone",
        None,
    ),
    ("  holidays: DE\n", "  holidays: DE-XX\n", "DE-XX", 13, "no subdivision 'XX'", None),
    ("  holidays: DE\n", "  holidays: XY\n", "holidays: XY", 13, "no holiday calendar", None),
    ("        days: 21\n", "        days: true\n", "days: true", 15, "valid integer", None),
    (
        "  invoices: {}",
        "  invoices:\n    1001: {exclude: {reason: x}}",
        "1001:",
        5,
        "string",
        "quote the id",
    ),
    (
        "    iban: DE89 3704 0044 0532 0130 00",
        "    iban: DE89 3704 0044 0532 0130 01",
        "0130 01",
        11,
        "check sum",
        None,
    ),
    ("        days: 21\n", "        days: 2\n", "days: 2", 15, "in order of 'days'", None),
    (
        "company:\n",
        "company:\n  password: geheim\n",
        "password: geheim",
        3,
        "unknown key",
        "secrets never live",
    ),
    (
        "    match: {}\n",
        "    match: {tags: [vip]}\n",
        "match: {tags",
        12,
        "must match everything",
        None,
    ),
]


@pytest.mark.parametrize(("old", "new", "marker", "column", "message", "hint"), CASES)
def test_errors_name_line_and_column(
    tmp_path: Path, old: str, new: str, marker: str, column: int, message: str, hint: str | None
) -> None:
    path, text = _broken(tmp_path, old, new)
    with pytest.raises(ConfigInvalid) as info:
        load_rules(path)
    errors = info.value.errors
    assert len(errors) == 1, [str(e) for e in errors]
    error = errors[0]
    assert error.file == str(path)
    assert error.line == _line_of(text, marker)
    assert error.column == column
    assert message in error.message
    if hint:
        assert error.hint is not None and hint in error.hint


def test_yaml_syntax_error_has_position(tmp_path: Path) -> None:
    path, text = _broken(tmp_path, '  to: "16:00"', '  to: "16:00')
    with pytest.raises(ConfigInvalid) as info:
        load_rules(path)
    assert info.value.errors[0].message.startswith("YAML:")
    assert info.value.errors[0].line >= _line_of(text, 'to: "16:00')


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path, text = _broken(tmp_path, "  max_per_week: 2", "  max_per_week: 2\n  max_per_week: 5")
    with pytest.raises(ConfigInvalid) as info:
        load_rules(path)
    assert "duplicate key 'max_per_week'" in info.value.errors[0].message
    assert info.value.errors[0].line == _line_of(text, "max_per_week: 5")


def test_all_errors_are_reported_at_once(tmp_path: Path) -> None:
    text = SHIPPED.replace("  max_per_week: 2", "  max_per_week: 0").replace(
        "  locale: de_DE", "  locale: xx_YY"
    )
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigInvalid) as info:
        load_rules(path)
    assert len(info.value.errors) == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigInvalid, match="file not found"):
        load_rules(tmp_path / "nope.yaml")


def test_yaml_merge_keys_share_settings(tmp_path: Path) -> None:
    shared = "company_limits: &limits {min_days_between: 4, max_per_week: 3}\n"
    path, _ = _broken(tmp_path, "contact_limits:\n", shared + "contact_limits:\n  <<: *limits\n")
    # The anchor's host key is unknown and reported; the merge itself is no error.
    with pytest.raises(ConfigInvalid) as info:
        load_rules(path)
    messages = [e.message for e in info.value.errors]
    assert messages == ["unknown key 'company_limits'"], messages


def test_merge_key_overridden_by_an_explicit_key(tmp_path: Path) -> None:
    text = (
        SHIPPED.replace(
            "contact_limits:\n", "contact_limits:\n  <<: {min_days_between: 9, max_per_week: 5}\n"
        )
        .replace("  min_days_between: 3\n", "")
        .replace("  max_per_week: 2", "  max_per_week: 4")
    )
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    limits = load_rules(path).rules.contact_limits
    assert (limits.min_days_between, limits.max_per_week) == (9, 4)


def test_holiday_codes_are_case_insensitive(tmp_path: Path) -> None:
    path, _ = _broken(tmp_path, "  holidays: DE\n", "  holidays: de-by\n")
    assert load_rules(path).rules.send_window.holidays == "DE-BY"


# YAML escapes, so the characters reach the schema (PyYAML refuses some of them raw).
@pytest.mark.parametrize("name", ["Acme\\u202eGmbH", "Acme\\u2028GmbH", "Acme\\r\\nBcc: x"])
def test_company_fields_refuse_invisible_line_breaks_and_bidi(tmp_path: Path, name: str) -> None:
    path, _ = _broken(tmp_path, "  name: Muster Handel GmbH", f'  name: "{name}"')
    with pytest.raises(ConfigInvalid, match="single line of plain text"):
        load_rules(path)


def test_the_port_follows_the_security_unless_given() -> None:
    from mahnwerk.rules import Imap, Smtp

    assert [Smtp(host="h", security=s).port for s in ("ssl", "starttls", "none")] == [465, 587, 25]
    assert [Imap(host="h", security=s).port for s in ("ssl", "starttls", "none")] == [993, 143, 143]
    assert Smtp(host="h").port == 587 and Imap(host="h").port == 993
    assert Imap(host="h", security="starttls", port=1143).port == 1143
