"""The shell around the planner: read the store, plan, hand back the result.

One function so that `mahnwerk plan`, `tick` and bench/plan.py run the same
path. The cyclic garbage collector is paused throughout: the store's objects
hold no cycles, and the collector would otherwise rescan millions of them.
"""

from __future__ import annotations

from datetime import datetime

from mahnwerk.gcpause import paused_gc
from mahnwerk.plan_types import Plan
from mahnwerk.planner import plan
from mahnwerk.rules import Rules
from mahnwerk.store.base import Repository


def plan_from_store(store: Repository, rules: Rules, now: datetime) -> Plan:
    with paused_gc():
        view = store.view()
        return plan(view.invoices(), view.histories(), rules, now, view.undeliverable())
