"""Fit a transformer config on CV folds and report each valid score, wall time and peak memory.

A stand-alone measurement (it does not record an MLflow run: ``questlab run --fold k`` does
that, and needs MLflow, which a bare GPU machine may lack). Several ``--fold`` also print the
score of the pooled out-of-fold predictions, as ``questlab run`` computes its CV. Rerun with the
same ``--workdir`` after a kill and it resumes from the last finished epoch.

    PYTHONPATH=src python bench/transformer_fold.py configs/transformer-cpu.yaml \
        --train ../shared/quest/train.csv --fold 0 --workdir /tmp/tf-fold0 --out fold0.json [--set epochs=1]
    PYTHONPATH=src python bench/transformer_fold.py configs/transformer-cpu.yaml --fold 0 --fold 1 ... \
        --workdir /tmp/tf --out cv.json     # 5 folds: the CV of the pooled OOF predictions
    # another split of the questions, and the OOF predictions kept (.npy, NaN for rows not yet predicted)
    ... --folds-seed 7 --oof oof.npy
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
from questlab.metric import mean_spearman, spearman_per_target
from questlab.models import FitLog, build_model
from questlab.schema import ANSWER_TARGETS, QUESTION_TARGETS, TARGETS


def fit_fold(config: dict, frame, folds: np.ndarray, fold: int, workdir: Path) -> tuple[dict, np.ndarray]:
    """Fit ``config``'s model on every fold but ``fold``; its valid rows' scores and predictions."""
    started = time.perf_counter()
    train, valid = frame[folds != fold].reset_index(drop=True), frame[folds == fold].reset_index(drop=True)
    model = build_model(config["model"]["name"], config["model"]["params"])
    log = FitLog(workdir=workdir / f"fold{fold}")
    model.fit(train, valid, log)
    pred = model.predict(valid)
    truth = valid[list(TARGETS)].to_numpy()
    q, a = [TARGETS.index(t) for t in QUESTION_TARGETS], [TARGETS.index(t) for t in ANSWER_TARGETS]
    status = spearman_per_target(truth, pred)[1]
    result = {
        "fold": fold,
        "rows": {"train": len(train), "valid": len(valid)},
        "valid_score": mean_spearman(truth, pred),
        "valid_score_question": mean_spearman(truth[:, q], pred[:, q]),
        "valid_score_answer": mean_spearman(truth[:, a], pred[:, a]),
        "undefined_targets": [t for t, st in zip(TARGETS, status, strict=True) if st != "ok"],
        "pred_std_mean": float(np.std(pred, axis=0).mean()),
        "wall_s": time.perf_counter() - started,
        "log": log.to_dict(),
    }
    return result, pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--train", type=Path, default=Path("../shared/quest/train.csv"))
    parser.add_argument("--fold", type=int, action="append", help="a fold to fit (repeatable; default 0)")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--folds-seed", type=int, help="split the questions with this seed (default: the config's)")
    parser.add_argument("--oof", type=Path, help="write the OOF predictions here (.npy) after each fold")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a model param")
    args = parser.parse_args()

    started = time.perf_counter()
    config = yaml.safe_load(args.config.read_text())
    for item in args.set:  # values parsed as YAML scalars: --set epochs=1 --set max_length=128
        key, _, value = item.partition("=")
        config["model"]["params"][key] = yaml.safe_load(value)
    if args.folds_seed is not None:
        config["folds"]["seed"] = args.folds_seed
    frame = load_train(args.train)
    folds = make_folds(frame, **config["folds"])["fold"].to_numpy()
    result: dict = {"config": str(args.config), "split": config["folds"], "overrides": args.set, "folds": []}
    oof = np.full((len(frame), len(TARGETS)), np.nan)
    for fold in args.fold or [0]:
        fold_result, oof[folds == fold] = fit_fold(config, frame, folds, fold, args.workdir)
        result["folds"].append(fold_result)
        print(json.dumps({k: v for k, v in fold_result.items() if k != "log"}), flush=True)
        args.out.write_text(json.dumps(result, indent=1, default=float))  # each finished fold is kept
        if args.oof is not None:
            np.save(args.oof, oof)
    seen = ~np.isnan(oof).any(axis=1)
    result["pooled_score"] = mean_spearman(frame[list(TARGETS)].to_numpy()[seen], oof[seen])
    result["pooled_rows"] = int(seen.sum())
    result["wall_s"] = time.perf_counter() - started
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    args.out.write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps({k: result[k] for k in ("pooled_score", "pooled_rows", "wall_s", "peak_rss_gib")}))


if __name__ == "__main__":
    main()
