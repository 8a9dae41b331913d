"""Invoice numbers in a customer's text.

Customers retype our numbers: "RE 2026 0431", "re-2026-431", "RE20260431", "Rechnung
2026-0431", "invoice #1187".  A reply is only useful to the ledger when it names the
invoice the way the ledger does, so a match against a known number is returned in its
canonical form.  Numbers we do not know are still returned (as written) when a cue such
as "Rechnungsnummer" or "invoice no." or our own prefixes (RE-, INV-) says they are one:
they tell a person which invoice the customer means, even a mistyped one.

Pure: no I/O.  Matching works on runs of letters and digits, so it is independent of the
separators a customer uses, and a number inside a longer one never matches.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from functools import lru_cache
from typing import TypeVar

__all__ = ["find_invoice_refs"]

# Runs of letters/digits; what lies between two runs decides whether they may form one
# number: at most two separator characters, and only these (no ":" or newline).
_RUN = re.compile(r"[^\W_]+")
_JOIN = re.compile(r"[ \t\-‐‑–_/.#]{0,3}")
# A number spans at most this many runs ("RE 2026 0431" is three).
_MAX_RUNS = 5
_GROUP = re.compile(r"[^\W\d_]+|\d+")
_K = TypeVar("_K", str, tuple[str, ...])

# Cues after which the next token is an invoice number even when we do not know it.
_CUE = re.compile(
    r"(?<![^\W_])(?:rechnungs?[\s\-]?(?:nummer|nr\.?)|rechnung(?:\s+nr\.?)?|rg\.?[\s\-]?nr\.?"
    r"|re\.?[\s\-]?nr\.?|beleg(?:nummer|[\s\-]?nr\.?)|faktura(?:\s+nr\.?)?"
    r"|invoice(?:\s+(?:no\.?|number|nr\.?|#))?|inv\.?\s*(?:no\.?|#))"
    r"\s*[:#]?\s*",
    re.IGNORECASE,
)
_CUED_REF = re.compile(r"(?=[\w\-/]*\d)[^\W_][\w\-/]*[^\W_]")
# Our own style of number, known or not: RE-2026-0431, INV-2026-1187, RG 2026/17.
_STYLED = re.compile(
    r"(?<![^\W_])(?:RE|INV|RG|RNG|RECH)[\-_ ]?\d{4}[\-_/ ]?\d{2,6}(?![^\W_])", re.IGNORECASE
)


def _groups(s: str) -> tuple[str, ...]:
    """Letter and digit groups, digits without leading zeros ("0431" and "431" agree)."""
    return tuple((g.lstrip("0") or "0") if g.isdigit() else g for g in _GROUP.findall(s))


_NOT_ALNUM = re.compile(r"[\W_]+")


def _key(s: str) -> str:
    return _NOT_ALNUM.sub("", s).casefold()


class _Index:
    """Lookup keys of the known numbers; a key two numbers share is dropped."""

    def __init__(self, known: Iterable[str]) -> None:
        self.exact: dict[str, str | None] = {}
        self.loose: dict[tuple[str, ...], str | None] = {}
        self.tail: dict[str, str | None] = {}
        for number in known:
            key = _key(number)
            if not key:
                continue
            groups = _groups(number.casefold())
            self._add(self.exact, key, number)
            self._add(self.loose, groups, number)
            # Without the letter prefix ("2026-0431"), when enough digits remain to be
            # distinctive.
            if groups and not groups[0].isdigit():
                rest = key[len(groups[0]) :]
                if sum(ch.isdigit() for ch in rest) >= 6:
                    self._add(self.exact, rest, number)
            # The last number group alone ("invoice #1187"), only after a cue.
            if groups and groups[-1].isdigit() and len(groups) > 1:
                self._add(self.tail, groups[-1], number)
        # How a key begins, so that most runs of a text are skipped at once.
        self.heads = {k[:2] for k in self.exact} | {k[:1] for k in self.exact}

    @staticmethod
    def _add(table: dict[_K, str | None], key: _K, number: str) -> None:
        if key in table and table[key] != number:
            table[key] = None
        else:
            table[key] = number

    def could_start(self, run: str) -> bool:
        return run[:2].casefold() in self.heads

    def lookup(self, candidate: str) -> str | None:
        key = _key(candidate)
        found = self.exact.get(key)
        if found is None and len(key) >= 4:
            found = self.loose.get(_groups(candidate.casefold()))
        return found


@lru_cache(maxsize=16)
def _index(known: frozenset[str]) -> _Index:
    """The lookup keys of `known`; the same set is passed mail after mail, and a
    frozenset keeps its hash, so finding it again costs nothing however large it is."""
    return _Index(known)


def _embedded(text: str, runs: list[tuple[int, int]], i: int, j: int) -> bool:
    """Whether a number without its letter prefix ("2026-0431") is part of something
    longer: "XRE-2026-0431", a phone number "089 2026 0431 9"."""
    if not text[runs[i][0]].isdigit():
        return False
    if i > 0:
        gap = text[runs[i - 1][1] : runs[i][0]]
        glued = not any(ch.isspace() for ch in gap)  # "XRE-2026-0431"
        if _JOIN.fullmatch(gap) and (glued or text[runs[i - 1][0]].isdigit()):
            return True
    if j + 1 < len(runs):
        gap = text[runs[j][1] : runs[j + 1][0]]
        if _JOIN.fullmatch(gap) and text[runs[j + 1][0]].isdigit():
            return True
    return False


def find_invoice_refs(text: str, known: Collection[str] = ()) -> tuple[str, ...]:
    """Invoice numbers in `text`, in order of first mention, each once.

    Known numbers come back canonical (as given in `known`); unknown ones as written
    (upper-cased when in our own RE-/INV- style), only where a cue or that style says
    they are invoice numbers.
    """
    index = _index(known if isinstance(known, frozenset) else frozenset(known))
    found: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []
    runs = [(m.start(), m.end()) for m in _RUN.finditer(text)]

    # Known numbers: longest sequence of joined runs from each start.
    if index.exact:
        i = 0
        while i < len(runs):
            if not index.could_start(text[runs[i][0] : runs[i][1]]):
                i += 1
                continue
            best: tuple[int, str] | None = None
            for j in range(i, min(i + _MAX_RUNS, len(runs))):
                if j > i and not _JOIN.fullmatch(text, runs[j - 1][1], runs[j][0]):
                    break
                hit = index.lookup(text[runs[i][0] : runs[j][1]])
                if hit is not None and not _embedded(text, runs, i, j):
                    best = (j, hit)
            if best is None:
                i += 1
                continue
            found.append((runs[i][0], best[1]))
            taken.append((runs[i][0], runs[best[0]][1]))
            i = best[0] + 1

    def free(start: int, end: int) -> bool:
        return all(end <= a or start >= b for a, b in taken)

    for m in _STYLED.finditer(text):
        if free(m.start(), m.end()):
            found.append((m.start(), m.group().upper()))
            taken.append((m.start(), m.end()))

    for cue in _CUE.finditer(text):
        ref_m = _CUED_REF.match(text, cue.end())
        if ref_m is None or len(ref_m.group()) < 3 or not free(ref_m.start(), ref_m.end()):
            continue
        ref = ref_m.group().strip("-/")
        tail = _groups(ref.casefold())
        hit = index.tail.get(tail[0]) if len(tail) == 1 and tail[0].isdigit() else None
        found.append((ref_m.start(), hit or ref))
        taken.append((ref_m.start(), ref_m.end()))

    out: list[str] = []
    for _, ref in sorted(found, key=lambda f: f[0]):
        if ref not in out:
            out.append(ref)
    return tuple(out)
