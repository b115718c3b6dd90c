"""Bundle sizes and predict times: export recorded runs, then predict test.csv from each bundle.

    python bench/bundle_predict.py --store STORE RUN_ID [RUN_ID ...] [--input ../shared/quest/test.csv]

For each run: ``questlab export`` (timed), the bundle's size on disk (and its encoder copy), then
``questlab predict --model BUNDLE`` in a fresh process (imports and model loading included, as in
a Kaggle notebook cell) and ``questlab predict RUN`` from the store, for comparison. Both outputs
must be equal.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
QUESTLAB = [sys.executable, "-m", "questlab.cli"]


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return time.perf_counter() - t0


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--store", required=True)
    parser.add_argument("--input", default=str(ROOT.parent / "shared" / "quest" / "test.csv"))
    args = parser.parse_args()
    rows = len(pd.read_csv(args.input))
    print(f"{'run':10} {'model':12} {'bundle MB':>10} {'encoders MB':>12} {'export s':>9} {'predict s':>10} "
          f"{'from store s':>13}  ({rows} rows)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in args.runs:
            bundle = Path(tmp) / run_id
            export_s = _timed([*QUESTLAB, "export", run_id, str(bundle), "--store", args.store])
            out_b, out_s = Path(tmp) / f"{run_id}-b.csv", Path(tmp) / f"{run_id}-s.csv"
            io = ["--input", args.input, "--output"]
            predict_s = _timed([*QUESTLAB, "predict", "--model", str(bundle), *io, str(out_b)])
            store_s = _timed([*QUESTLAB, "predict", run_id, "--store", args.store, *io, str(out_s)])
            a, b = pd.read_csv(out_b), pd.read_csv(out_s)
            np.testing.assert_allclose(a.to_numpy(dtype=float), b.to_numpy(dtype=float), atol=1e-6)
            model = json.loads((bundle / "bundle.json").read_text())["model"]
            enc = _size_mb(bundle / "encoders") if (bundle / "encoders").exists() else 0.0
            print(f"{run_id[:8]:10} {model:12} {_size_mb(bundle):10.1f} {enc:12.1f} {export_s:9.1f} {predict_s:10.1f} "
                  f"{store_s:13.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
