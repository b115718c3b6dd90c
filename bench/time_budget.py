"""Time budgets: a recipe under ``--time-limit`` on QUEST's full train, one fresh store per budget.

For each budget: wall time, overrun (% of the budget; negative: time to spare), the members that
ran and those left out, and the ensemble's CV. Nothing is reused between budgets (a fresh store
each, and with ``--cold``, the default, a fresh embedding cache each), so each figure is a cold
run; the load average is printed, as the machine may be shared.

    PYTHONPATH=src python bench/time_budget.py --train ../shared/quest/train.csv --budgets 5m,15m,60m
    PYTHONPATH=src python bench/time_budget.py --recipe fast-minilm --budgets 5m   # without MPNet
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def run_one(recipe: str, train: str, budget: str, root: Path, cold: bool = True) -> dict:
    """One cold recipe run under ``budget``; what it reports."""
    from questlab.recipes import run_recipe
    from questlab.store import Store
    from questlab.timebudget import parse_duration

    limit = parse_duration(budget)
    t0 = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f} s] {message}", flush=True)

    if cold:  # a fresh embedding cache: no text vectors from earlier runs (encoders resolve as before)
        os.environ["QUESTLAB_CACHE"] = str(root / f"cache-{budget}")
    store = Store(root / f"store-{budget}")
    t0 = time.perf_counter()  # the store is made before the clock starts, as the CLI's run_recipe makes its own
    out = run_recipe(recipe, train, store=store, say=say, time_limit=limit)
    wall = time.perf_counter() - t0
    cv = store.get(out.ensemble_id).metrics.get("cv_score", float("nan"))
    return {
        "budget": budget,
        "limit_s": limit,
        "wall_s": wall,
        "overrun_pct": 100 * (wall - limit) / limit,
        "members": [m.name for m in out.members],
        "left_out": out.skipped,
        "plan": out.plan.describe() if out.plan else "",
        "cv": cv,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default="../shared/quest/train.csv")
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--budgets", default="5m,15m,60m", help="comma-separated durations (90s, 15m, 1h)")
    parser.add_argument("--root", default=None, help="folder for the stores (default: a temporary one)")
    parser.add_argument("--warm", action="store_true", help="keep the usual embedding cache (default: a fresh one)")
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="questlab-budget-"))
    rows = []
    for budget in args.budgets.split(","):
        print(f"== recipe {args.recipe}, budget {budget}, load average {os.getloadavg()} ==", flush=True)
        rows.append(run_one(args.recipe, args.train, budget.strip(), root, cold=not args.warm))
        print(f"   load average after: {os.getloadavg()}", flush=True)
    print(f"\n{'budget':>7} {'wall':>9} {'overrun':>8} {'CV':>7}  members (left out)")
    for r in rows:
        left = f" (left out: {', '.join(r['left_out'])})" if r["left_out"] else ""
        figures = f"{r['budget']:>7} {r['wall_s']:8.0f}s {r['overrun_pct']:+7.1f}% {r['cv']:7.4f}"
        print(f"{figures}  {', '.join(r['members'])}{left}")


if __name__ == "__main__":
    main()
