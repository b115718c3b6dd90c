"""Streaming prediction: time and peak memory of ``questlab predict`` against the number of rows.

    .venv/bin/python bench/predict_stream.py --store /tmp/qlbench/store --run RUN_ID \
        --rows 47600 100000 500000 --tmp /tmp/qlbench/pairs [--mode stream|whole] [--unique-texts]

Builds N pairs by replicating the real test.csv (476 rows) with new qa_ids, in --tmp (never in the
repo), then predicts them in a fresh Python process per N, which reports its wall time (imports
and model loading included), the time of the prediction itself, and its peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``).

- ``--mode stream``: today's ``questlab predict`` path (``stream_predictions``: pieces of
  ``CHUNK_ROWS`` rows read, predicted and appended to the output);
- ``--mode whole``: questlab 0.3.0's path, kept here as the baseline: ``load_test`` of the whole
  file, one ``predict_frame``, one ``to_csv``.

``--unique-texts`` appends the replicate number to each title and answer, so every text is new:
an embedding run then really embeds every row (replicated texts would be read from its cache).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from questlab.csvfile import CHUNK_ROWS

REPO = Path(__file__).resolve().parents[1]
TEST = REPO.parent / "shared" / "quest" / "test.csv"

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
mode, store, run_id, source, dest, chunk_rows = sys.argv[1:7]
from questlab.data import load_test
from questlab.predict import load_predictor, predict_frame, stream_predictions
from questlab.store import Store
predictor = load_predictor(Store(store, create=False), run_id)
t1 = time.perf_counter()
if mode == "stream":
    rows = stream_predictions(predictor, source, dest, chunk_rows=int(chunk_rows))
else:  # questlab 0.3.0's predict_file: the whole file at once
    out = predict_frame(predictor, load_test(source))
    out.to_csv(dest, index=False)
    rows = len(out)
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
print(json.dumps({"rows": rows, "total_s": t2 - t0, "load_s": t1 - t0, "predict_s": t2 - t1, "peak_rss_mb": peak}))
"""


def build_pairs(n: int, folder: Path, unique: bool) -> Path:
    """``n`` pairs: test.csv replicated (the last copy cut short), new qa_ids; written piece by piece."""
    path = folder / f"pairs-{n}{'-unique' if unique else ''}.csv"
    if path.exists():
        return path
    base = pd.read_csv(TEST, dtype=str, keep_default_na=False)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        for rep, start in enumerate(range(0, n, len(base))):
            part = base.head(min(len(base), n - start)).copy()
            part["qa_id"] = [str(10_000_000 + start + i) for i in range(len(part))]
            if unique:
                part["question_title"] = part["question_title"] + f" [{rep}]"
                part["answer"] = part["answer"] + f" [{rep}]"
            part.to_csv(fh, header=start == 0, index=False)
    tmp.replace(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--rows", type=int, nargs="+", default=[47_600, 100_000, 500_000])
    parser.add_argument("--tmp", type=Path, required=True, help="where the pairs and predictions go (not the repo)")
    parser.add_argument("--mode", choices=["stream", "whole"], default="stream")
    parser.add_argument("--unique-texts", action="store_true")
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, help="rows per piece (stream mode)")
    args = parser.parse_args()
    if REPO in args.tmp.resolve().parents:
        parser.error("--tmp must be outside the repository")
    print(f"run {args.run}, mode {args.mode}, pieces of {args.chunk_rows} rows, unique texts {args.unique_texts}")
    print(f"{'rows':>8} {'total s':>8} {'load s':>7} {'predict s':>9} {'rows/s':>8} {'peak RSS MB':>11}")
    for n in args.rows:
        source = build_pairs(n, args.tmp, args.unique_texts)
        dest = args.tmp / f"pred-{n}.csv"
        child = [
            sys.executable,
            "-c",
            CHILD,
            args.mode,
            args.store,
            args.run,
            str(source),
            str(dest),
            str(args.chunk_rows),
        ]
        done = subprocess.run(child, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"n={n}: the prediction failed:\n{done.stderr[-3000:]}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        rate = r["rows"] / r["predict_s"]
        line = f"{r['rows']:>8} {r['total_s']:>8.1f} {r['load_s']:>7.1f} {r['predict_s']:>9.1f} {rate:>8.0f}"
        print(f"{line} {r['peak_rss_mb']:>11.0f}", flush=True)
        dest.unlink()


if __name__ == "__main__":
    main()
