"""Time `questlab run configs/tfidf.yaml` end to end (5 grouped folds + test) and print its CV score.

Usage: python bench/tfidf_run.py [--train ../shared/quest/train.csv] [--test ../shared/quest/test.csv]
Target: under 20 s on a 2-core machine. A throwaway store is used, so nothing is left behind.
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

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default=str(ROOT.parent / "shared" / "quest" / "train.csv"))
    parser.add_argument("--test", default=str(ROOT.parent / "shared" / "quest" / "test.csv"))
    parser.add_argument("--config", default=str(ROOT / "configs" / "tfidf.yaml"))
    args = parser.parse_args()
    questlab = Path(sys.executable).with_name("questlab")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "QUESTLAB_STORE": tmp}
        start = time.perf_counter()
        out = subprocess.run(
            [str(questlab), "run", args.config, "--train", args.train, "--test", args.test],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - start
        run_id = out.stdout.strip().splitlines()[-1]
        from questlab.store import Store

        run_dir = Store(tmp).get(run_id).dir
        scores = json.loads((run_dir / "scores.json").read_text())
        fit_s = [
            json.loads((run_dir / "folds" / f"fold_{k}" / "fold.json").read_text())["timings"]["fit_s"]
            for k in range(5)
        ]
    print(f"config        {args.config}")
    print(f"wall time     {wall:.1f} s  (target < 20 s; includes process start, MLflow, 5 folds, test, bootstrap)")
    print(f"fold fit      {' '.join(f'{s:.1f}' for s in fit_s)} s")
    print(f"CV score      {scores['score']:.4f}  (95% CI {scores['ci_low']:.4f}..{scores['ci_high']:.4f})")
    print(f"load average  {os.getloadavg()[0]:.1f} (cores: {os.cpu_count()})")


if __name__ == "__main__":
    main()
