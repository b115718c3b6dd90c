"""Fit a transformer config on one CV fold and report its valid score, wall time and peak memory.

A stand-alone measurement (it does not record an MLflow run: ``questlab run --fold k`` does
that). Rerun with the same ``--workdir`` after a kill and it resumes from the last epoch.

    PYTHONPATH=src python bench/transformer_fold.py configs/transformer-cpu.yaml \
        --train ../shared/quest/train.csv --fold 0 --workdir /tmp/tf-fold0 --out fold0.json [--set epochs=1]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import yaml

from questlab.data import load_train
from questlab.folds import make_folds
from questlab.models import FitLog, build_model
from questlab.models.transformer.training import mean_spearman
from questlab.schema import ANSWER_TARGETS, QUESTION_TARGETS, TARGETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--train", type=Path, default=Path("../shared/quest/train.csv"))
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a model param")
    args = parser.parse_args()

    started = time.perf_counter()
    config = yaml.safe_load(args.config.read_text())
    for item in args.set:  # values parsed as YAML scalars: --set epochs=1 --set max_length=128
        key, _, value = item.partition("=")
        config["model"]["params"][key] = yaml.safe_load(value)
    frame = load_train(args.train)
    folds = make_folds(frame, **config["folds"])["fold"].to_numpy()
    train, valid = frame[folds != args.fold].reset_index(drop=True), frame[folds == args.fold].reset_index(drop=True)
    model = build_model(config["model"]["name"], config["model"]["params"])
    log = FitLog(workdir=args.workdir)
    model.fit(train, valid, log)
    pred = model.predict(valid)
    truth = valid[list(TARGETS)].to_numpy()
    q, a = [TARGETS.index(t) for t in QUESTION_TARGETS], [TARGETS.index(t) for t in ANSWER_TARGETS]
    result = {
        "config": str(args.config),
        "overrides": args.set,
        "fold": args.fold,
        "rows": {"train": len(train), "valid": len(valid)},
        "valid_score": mean_spearman(truth, pred)[0],
        "valid_score_question": mean_spearman(truth[:, q], pred[:, q])[0],
        "valid_score_answer": mean_spearman(truth[:, a], pred[:, a])[0],
        "undefined_targets": mean_spearman(truth, pred)[1],
        "pred_std_mean": float(np.std(pred, axis=0).mean()),
        "wall_s": time.perf_counter() - started,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "log": log.to_dict(),
    }
    args.out.write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps({k: v for k, v in result.items() if k != "log"}, indent=1))


if __name__ == "__main__":
    main()
