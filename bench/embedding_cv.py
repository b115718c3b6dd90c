"""Grouped 5-fold CV of embedding-model variants in one process (the ablation behind docs/embedding.md).

Every variant reads the same cached vectors, so after the first variant embedding costs nothing.
Usage:
    PYTHONPATH=src python bench/embedding_cv.py --train ../shared/quest/train.csv \
        --variant base:'{}' --variant no_host:'{"features": ["lengths", "counts"]}'
Each variant is NAME:JSON, JSON overriding EmbeddingParams; prints mean-Spearman CV per variant.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from questlab.data import load_train
from questlab.folds import make_folds
from questlab.metric import mean_spearman
from questlab.models.base import FitLog
from questlab.models.embedding import EmbeddingModel
from questlab.schema import TARGETS


def cv(frame, folds, params: dict) -> tuple[float, list[float], float]:
    """Out-of-fold mean Spearman, per-fold scores and wall seconds for one params dict."""
    t0 = time.perf_counter()
    oof = np.zeros((len(frame), len(TARGETS)))
    per_fold = []
    for k in sorted(folds["fold"].unique()):
        tr, va = frame[folds["fold"].to_numpy() != k], frame[folds["fold"].to_numpy() == k]
        model = EmbeddingModel(params).fit(tr, va, FitLog())
        oof[va.index] = model.predict(va)
        per_fold.append(mean_spearman(va[list(TARGETS)].to_numpy(), oof[va.index]))
    return mean_spearman(frame[list(TARGETS)].to_numpy(), oof), per_fold, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--rows", type=int, default=0, help="use only the first N rows (0: all)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--variant", action="append", required=True, help="NAME:JSON params override")
    args = ap.parse_args()
    frame = load_train(args.train)
    if args.rows:
        frame = frame.head(args.rows).reset_index(drop=True)
    folds = make_folds(frame, n_splits=args.folds, seed=42)
    for spec in args.variant:
        name, _, raw = spec.partition(":")
        params = json.loads(raw or "{}")
        score, per_fold, secs = cv(frame, folds, params)
        folds_txt = " ".join(f"{s:.4f}" for s in per_fold)
        print(f"{name:<24} oof {score:.4f}  mean-fold {np.mean(per_fold):.4f}  [{folds_txt}]  {secs:.0f}s", flush=True)


if __name__ == "__main__":
    main()
