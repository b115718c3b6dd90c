"""A recipe under a time budget: what each member will cost on the data at hand, and which fit.

The cost of a member to fit is an *estimate*: its model is fitted twice on small slices of the
train rows (``PROBE_ROWS`` and half as many; while the larger fit takes under ``MIN_PROBE_S``, 4x
as many rows again, up to a fold's), timed, and a line ``t(n) = a + b n`` through the last two
points (``a``: a fixed cost such as loading an encoder, ``b``: seconds per row) is scaled to the
rows one fold trains on, times the number of folds. Families in :data:`ENCODE_ONCE` keep their
per-row cost (text vectors) in a cache shared by the folds, so their rows are paid once:
``k a + b N`` for ``N`` train rows; their two probes take disjoint rows so that the second is not
read from the first's cache (a warm cache from earlier runs shows as a cheap probe, as it should).
Linear scaling is a guess, not a promise:
models whose cost grows faster than their rows are underestimated, which the runner's guard
(a member that would end past the budget is stopped after its next fold) catches. Fold workers
(``parallel_folds``) are not credited: the estimate is for folds one after another. A member the
store already holds finished (same config, data and folds) costs nothing; a resumed one is
costed in full.

Members are taken in the recipe's order (its most valuable first) while their sum fits in the
budget less a reserve for the ensemble step (:data:`ENSEMBLE_SHARE` of it, at least
:data:`ENSEMBLE_MIN_S`); the rest are dropped, never shrunk (a member with fewer folds could not
join the ensemble). At least one member runs: when none fits, the cheapest is kept alone if it
fits; if even it does not, the recipe is refused before any member is fitted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from questlab.config import RunConfig
from questlab.console import Say
from questlab.errors import UsageError
from questlab.models import FitLog, build_model
from questlab.tasks import Task
from questlab.timebudget import Budget, fmt_duration

PROBE_ROWS = 240  # the larger probe slice; the smaller is half of it
MIN_PROBE_S = 1.0  # a larger probe below this is too short to time well: 4x the rows, up to a fold's
ENCODE_ONCE = frozenset({"embedding"})  # families whose per-row cost is a cached encoding, paid once per text
ENSEMBLE_SHARE = 0.10  # of the budget, kept for the ensemble step
ENSEMBLE_MIN_S = 5.0
OVERHEAD_S = 1.0  # per member: recording, scoring, the bootstrap


@dataclass
class MemberCost:
    """One member's expected cost and whether the plan keeps it."""

    name: str
    seconds: float
    how: str  # "recorded" (reused: ~0) | "measured"
    keep: bool = True
    why: str = ""

    def describe(self) -> str:
        """``tfidf ~40 s`` / ``emb ~2 h: dropped (does not fit)``."""
        cost = "recorded, reused" if self.how == "recorded" else f"~{fmt_duration(self.seconds)}"
        return f"{self.name} {cost}" + ("" if self.keep else f": dropped ({self.why})")


@dataclass
class Plan:
    """The members' costs in the recipe's order and the reserve kept for the ensemble."""

    budget: float
    members: list[MemberCost]
    reserve: float

    @property
    def kept(self) -> list[int]:
        """Indices of the members that run."""
        return [i for i, m in enumerate(self.members) if m.keep]

    def describe(self) -> str:
        """``plan for 15 min: a ~40 s, b ~2 h: dropped (does not fit); ensemble ~1 min 30 s``."""
        parts = ", ".join(m.describe() for m in self.members)
        return f"plan for {fmt_duration(self.budget)}: {parts}; ensemble reserve ~{fmt_duration(self.reserve)}"


def ensemble_reserve(budget: float) -> float:
    """Seconds kept for the ensemble step of a recipe under ``budget``."""
    return max(ENSEMBLE_MIN_S, ENSEMBLE_SHARE * budget)


def fold_train_rows(n_rows: int, n_splits: int) -> int:
    """Rows one fold trains on."""
    return max(1, round(n_rows * (n_splits - 1) / max(n_splits, 1)))


def _probe(config: RunConfig, frame: pd.DataFrame, task: Task, idx: np.ndarray) -> float:
    """Seconds to fit the member's model on rows ``idx`` of ``frame`` and predict a quarter as many."""
    part = frame.iloc[np.sort(idx)].reset_index(drop=True)
    model = build_model(config.model.name, config.model.params, task=task)
    t0 = time.perf_counter()
    model.fit(part, None, FitLog())
    model.predict(part.iloc[: max(1, len(part) // 4)])
    return time.perf_counter() - t0


def measure_member(config: RunConfig, frame: pd.DataFrame, task: Task, n_splits: int) -> float:
    """Estimated seconds to fit ``config`` by CV on ``frame``: two timed probe fits, scaled linearly."""
    fold_rows = fold_train_rows(len(frame), n_splits)
    order = np.random.default_rng(config.seed).permutation(len(frame))
    big = min(PROBE_ROWS, fold_rows)
    small = max(2, big // 2)
    # disjoint rows where the frame allows: the second probe must not hit the first one's cache
    second = order[small : small + big] if small + big <= len(frame) else order[:big]
    t_small = _probe(config, frame, task, order[:small])
    t_big = _probe(config, frame, task, second)
    while t_big < MIN_PROBE_S and big < fold_rows:
        small, t_small = big, t_big
        big = min(4 * big, fold_rows)
        t_big = _probe(config, frame, task, order[:big])
    per_row = max(0.0, (t_big - t_small) / max(1, big - small))
    fixed = max(0.0, t_small - per_row * small)
    if config.model.name in ENCODE_ONCE:
        return n_splits * fixed + per_row * len(frame) + OVERHEAD_S
    return n_splits * (fixed + per_row * fold_rows) + OVERHEAD_S


def plan_members(
    configs: list[RunConfig],
    reused: list[bool],
    frame: pd.DataFrame,
    task: Task,
    budget: Budget,
    say: Say,
) -> Plan:
    """Cost every member (``reused[i]``: the store holds it finished), then keep those that fit.

    The probes' own time is spent from ``budget``; the plan is made against what is left.
    """
    n_splits = configs[0].folds.n_splits
    costs: list[MemberCost] = []
    for config, done in zip(configs, reused, strict=True):
        if done:
            costs.append(MemberCost(config.name, 0.0, "recorded"))
        else:
            costs.append(MemberCost(config.name, measure_member(config, frame, task, n_splits), "measured"))
    reserve = ensemble_reserve(budget.limit)
    left = budget.remaining - reserve
    for cost in costs:
        cost.keep = cost.seconds <= left
        if cost.keep:
            left -= cost.seconds
        else:
            cost.why = "does not fit"
    plan = Plan(budget.limit, costs, reserve)
    if not plan.kept:
        cheapest = min(range(len(costs)), key=lambda i: costs[i].seconds)
        if costs[cheapest].seconds > budget.remaining:
            say(plan.describe())
            raise UsageError(
                f"--time-limit {fmt_duration(budget.limit)}: not even the cheapest member "
                f"({costs[cheapest].name}, ~{fmt_duration(costs[cheapest].seconds)}) fits; give more time"
            )
        costs[cheapest].keep, costs[cheapest].why = True, ""
    return plan
