"""`mahnwerk check`: what can only be checked with the files at hand.

The schema (rules.py) catches typos and bad values; here we look for the
templates every stage names and render each with sample data, so a typo in a
template fails now rather than leaving a blank in a customer's mail.
"""

from __future__ import annotations

import difflib

from mahnwerk.config import ConfigError, LoadedRules
from mahnwerk.message import sender_domain
from mahnwerk.models import LANGUAGES
from mahnwerk.render import Renderer

PARTS = ("subject", "txt", "html")
ACK_TEMPLATES = ("ack_promise", "ack_dispute")


def check_rules(loaded: LoadedRules) -> tuple[list[ConfigError], int]:
    """Errors located in rules.yaml, and how many template/language pairs rendered."""
    templates_dir = loaded.templates_dir
    if not templates_dir.is_dir():
        return [
            loaded.error(
                ("templates_dir",),
                f"templates folder {templates_dir} not found",
                "templates_dir is relative to rules.yaml; 'mahnwerk init DIR' writes one",
            )
        ], 0
    renderer = Renderer(templates_dir, loaded.rules)
    errors: list[ConfigError] = _address_errors(loaded)
    checked: set[tuple[str, str]] = set()
    rendered = 0
    replies = loaded.rules.replies
    # The mails replies cause: the notice to a person, the optional acknowledgements and
    # the broken-promise follow-up (each only when the rules use it).
    reply_templates: list[tuple[tuple[str | int, ...], str]] = []
    if loaded.rules.notify is not None:
        reply_templates.append((("notify",), "reply_notice"))
    if replies.acknowledge:
        reply_templates += [(("replies", "acknowledge"), t) for t in ACK_TEMPLATES]
    if replies.broken_promise_template:
        reply_templates.append(
            (("replies", "broken_promise_template"), replies.broken_promise_template)
        )
    stages = [
        (("policies", pi, "stages", si, "template"), template)
        for pi, si, template in loaded.rules.referenced_templates()
    ]
    for loc, template in [*stages, *reply_templates]:
        for language in LANGUAGES:
            if (template, language) in checked:
                continue
            checked.add((template, language))
            missing = [
                renderer.path(template, language, part).name
                for part in PARTS
                if not renderer.path(template, language, part).is_file()
            ]
            if missing:
                errors.append(
                    loaded.error(
                        loc,
                        f"template {template!r} does not exist for {language}: "
                        f"missing {', '.join(missing)} in {templates_dir / language}",
                        _hint(loaded, template, language),
                    )
                )
                continue
            problems = renderer.check(template, language)
            for problem in problems:
                errors.append(loaded.error(loc, f"template {template!r} ({language}): {problem}"))
            rendered += not problems
    return errors, rendered


def _hint(loaded: LoadedRules, template: str, language: str) -> str:
    folder = loaded.templates_dir / language
    names = sorted(
        {p.name.split(".")[0] for p in folder.glob("*.j2") if not p.name.startswith("_")}
    )
    close = difflib.get_close_matches(template, names, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return "available: " + (", ".join(names) if names else "none")


def _address_errors(loaded: LoadedRules) -> list[ConfigError]:
    """The From and Reply-To must each be one address: caught here, not at send time."""
    company = loaded.rules.company
    errors = []
    for key, value in (("sender", company.sender), ("reply_to", company.reply_to)):
        if value is None:
            continue
        try:
            sender_domain(value)
        except ValueError as exc:
            errors.append(
                loaded.error(
                    ("company", key),
                    f"company.{key}: {exc}",
                    'one address, e.g. "Acme GmbH <forderungen@acme.example>"; '
                    "quote a name with a comma",
                )
            )
    return errors
