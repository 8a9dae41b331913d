"""Crash points for the kill -9 tests: the process dies here, as a power cut would.

Set MAHNWERK_CRASH_AT=<point> (or <point>:<n> for the n-th time the point is
reached) and the process sends itself SIGKILL there: no cleanup, no finally,
no flush. Unset, a crash point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "MAHNWERK_CRASH_AT"
# The points, in the order one mail passes them (delivery.py), then a reply (inbox.py).
POINTS = ("queued", "attempt", "accepted", "recorded", "stored", "ingested", "moved")
_seen: dict[str, int] = {}


def crash_point(name: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
