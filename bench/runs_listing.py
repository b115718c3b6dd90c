"""Time `questlab runs` and `questlab findings` on a store of 100 tiny runs (target: under 1 s each).

Usage: python bench/runs_listing.py [--runs 100] [--findings 20] [--repeat 3] [--store DIR]
The runs are made through the store API (tags, params and metrics, no fitting), so building the
store takes seconds; each command then runs as a subprocess, as a user types it, and the best of
``--repeat`` wall times is printed in seconds. ``--store`` keeps the store (reused if it exists).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(store_dir: Path, n_runs: int, n_findings: int) -> None:
    from questlab.analysis.findings import add_finding
    from questlab.rundir import TAG_COMPLETE, TAG_FOLDS_DONE, TAG_KIND, TAG_MODEL
    from questlab.store import Store

    store = Store(store_dir)
    ids = []
    for i in range(n_runs):
        model = ("tfidf", "mean", "embedding")[i % 3]
        run_id = store.create_run(
            f"{model}-{i:03d}",
            {TAG_MODEL: model, TAG_KIND: "cv", TAG_FOLDS_DONE: "0,1,2,3,4", TAG_COMPLETE: "true"},
        )
        store.log_params(run_id, {"model": model, "seed": i})
        store.log_metrics(run_id, {"cv_score": 0.3 + i / 1000, "cv_ci_low": 0.28, "cv_ci_high": 0.32})
        store.finish(run_id)
        ids.append(run_id)
    for i in range(n_findings):
        add_finding(store, f"finding {i}: run {i} beats the mean", [ids[i]], ["bench"])


def time_command(args: list[str], store_dir: Path, repeat: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "questlab.cli", *args, "--store", str(store_dir)],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--findings", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store", default=None, help="keep the store here (reused if it exists)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    with tempfile.TemporaryDirectory() as tmp:
        store_dir = Path(args.store) if args.store else Path(tmp) / "store"
        if not store_dir.exists():
            t0 = time.perf_counter()
            build(store_dir, args.runs, args.findings)
            print(f"store of {args.runs} runs, {args.findings} findings built in {time.perf_counter() - t0:.1f} s")
        print(f"questlab runs: {time_command(['runs'], store_dir, args.repeat):.2f} s")
        print(f"questlab findings: {time_command(['findings'], store_dir, args.repeat):.2f} s")


if __name__ == "__main__":
    main()
