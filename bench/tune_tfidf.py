"""Time `questlab tune` on configs/tfidf.yaml: 30 TF-IDF trials over alpha, n-gram range, min_df and
max_features on the full train.csv, pruning on, 20% of the questions held out.

Usage: python bench/tune_tfidf.py [--train ../shared/quest/train.csv] [--trials 30] [--workers 2]
       [--parallel-folds 1]
Target: under 5 minutes on a 2-core machine. It runs the CLI end to end (process start, MLflow,
every trial, the held-out run, the report) in a throwaway store, so nothing is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default=str(ROOT.parent / "shared" / "quest" / "train.csv"))
    parser.add_argument("--config", default=str(ROOT / "configs" / "tfidf.yaml"))
    parser.add_argument("--space", default=str(ROOT / "configs" / "spaces" / "tfidf.yaml"))
    parser.add_argument("--trials", type=int, default=30)
    # Two processes with one fold at a time beat one process with two folds at once: a pruned
    # trial stops after its fold, where joblib would kill and respawn its fold workers (and
    # their memoised tokenisation) to stop the second one.
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--parallel-folds", type=int, default=1)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "questlab.cli", "tune", args.config,
            "--space", args.space, "--train", args.train, "--trials", str(args.trials),
            "--workers", str(args.workers), "--set", f"parallel_folds={args.parallel_folds}",
            "--store", tmp, "--best-config", str(Path(tmp) / "best.yaml"),
        ]  # fmt: skip
        start = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if out.returncode != 0:
            sys.exit(f"questlab tune failed ({out.returncode}):\n{out.stderr[-3000:]}")
        parent = out.stdout.strip().splitlines()[-1]
        from questlab.store import Store

        store = Store(tmp)
        record = store.get(parent)
        m = record.metrics
        info = json.loads((record.dir / "study.json").read_text())
        n_runs = sum(1 for r in store.list_runs() if r.tags.get("questlab.trial") is not None)
        best = yaml.safe_load((Path(tmp) / "best.yaml").read_text())["model"]["params"]
        tuned = [k.rsplit(".", 1)[-1] for k in yaml.safe_load(Path(args.space).read_text())["params"]]
        import optuna

        study = optuna.load_study(study_name=record.name, storage=f"sqlite:///{Path(tmp) / 'optuna.db'}")
        seconds = {
            state: [t.duration.total_seconds() for t in study.trials if t.state.name == state and t.duration]
            for state in ("COMPLETE", "PRUNED")
        }
    print(f"study         {args.trials} trials, {args.workers} worker(s), parallel_folds {args.parallel_folds}")
    print(f"wall time     {wall:.0f} s  (target < 300 s; process start, every trial, held-out run, report)")
    print(f"trials        {m['trials_complete']:.0f} complete, {m['trials_pruned']:.0f} pruned ({n_runs} trial runs)")
    print(f"best CV       {m['best_cv']:.4f}  (95% CI {m['best_cv_ci_low']:.4f}..{m['best_cv_ci_high']:.4f})")
    print(
        f"held out      {m['holdout_score']:.4f}  (95% CI {m['holdout_ci_low']:.4f}..{m['holdout_ci_high']:.4f}) "
        f"on {info['holdout_questions']} questions, {info['holdout_rows']} rows"
    )
    values = ", ".join(f"{k}={best[k]:.4g}" if isinstance(best[k], float) else f"{k}={best[k]}" for k in tuned)
    print(f"best trial    {record.tags.get('questlab.best_trial')}: {values}")
    print(
        "trial time    "
        + ", ".join(f"{s.lower()} {sum(v) / len(v):.1f} s each ({len(v)})" for s, v in seconds.items() if v)
    )
    print(f"load average  {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after (cores: {os.cpu_count()})")


if __name__ == "__main__":
    main()
