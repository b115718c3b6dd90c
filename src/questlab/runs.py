"""The CV loop and what a run records. It knows models only through ``fit/predict/save/load``.

A run folder (the MLflow run's artifact folder) holds::

    config.yaml          the resolved config (every default filled in)
    run.json             kind, model, data files and their sha256, git commit, folds, timings
    folds.csv            qa_id, group, fold: reusable by a later run (folds.from_run)
    folds/fold_K/        model/ (the fitted fold model), fit_log.json, valid_pred.csv,
                         test_pred.csv, work/ (model checkpoints), fold.json (written last:
                         its presence marks the fold done, so --resume skips it)
    oof.csv              qa_id, group, fold and the 30 out-of-fold predictions
    oof_truth.csv        qa_id and the 30 true ratings of the scored rows
    scores.json          CVScore: overall, per target, per fold, bootstrap interval
    per_target.csv       the per-target table, for eyes and spreadsheets
    submission.csv       test predictions (mean of the fold models), sample_submission order
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from questlab import __version__
from questlab.config import RunConfig, parse_config
from questlab.data import check_pair, load_test, load_train
from questlab.folds import FOLDS_FILE, check_grouped, load_folds, make_folds, save_folds
from questlab.metric import CVScore, score_cv
from questlab.models import FitLog, Model, build_model
from questlab.models.base import check_predictions
from questlab.schema import ID, TARGETS
from questlab.store import TAG_COMPLETE, TAG_KIND, TAG_MODEL, Store

Say = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def is_main_process() -> bool:
    """Under ``accelerate launch`` / torchrun only rank 0 records; the others just train."""
    return int(os.environ.get("RANK", "0")) == 0


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_commit() -> str:
    """The commit of the questlab checkout (``+dirty`` when it has uncommitted changes)."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def predictions_frame(ids: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    """qa_id + the 30 targets in submission order: the one format predictions are saved in."""
    frame = pd.DataFrame(pred, columns=list(TARGETS))
    frame.insert(0, ID, np.asarray(ids))
    return frame


def read_predictions(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    return frame[[ID, *TARGETS]]


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (a job scheduler stopping us) into KeyboardInterrupt so the run is marked KILLED."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not in the main thread (e.g. inside a server): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class RunData:
    """What a run trains and predicts on."""

    train: pd.DataFrame
    test: pd.DataFrame | None
    folds: pd.DataFrame  # qa_id, group, fold aligned to train rows


def resolve_folds(config: RunConfig, train: pd.DataFrame, store: Store) -> pd.DataFrame:
    """Make the config's folds, or load them from an earlier run / a folds file."""
    source = config.folds
    if source.from_run:
        path = store.get(source.from_run).dir / FOLDS_FILE
        if not path.exists():
            raise FileNotFoundError(f"run {source.from_run} recorded no {FOLDS_FILE}")
        folds = load_folds(path, train)
    elif source.from_file:
        folds = load_folds(source.from_file, train)
    else:
        folds = make_folds(train, n_splits=source.n_splits, seed=source.seed)
    check_grouped(folds)
    return folds


def _cv_run_tags(config: RunConfig) -> dict[str, str]:
    """The tags every new CV run starts with (complete flips to "true" when all folds are in)."""
    return {
        TAG_KIND: "cv",
        TAG_MODEL: config.model.name,
        TAG_COMPLETE: "false",
        "questlab.git_commit": git_commit(),
        "questlab.version": __version__,
    }


def _seed_everything(seed: int) -> None:
    """Seed the global generators a model may draw from (models with a seed param use theirs)."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def _fit_fold(
    model: Model, data: RunData, k: int, fold_dir: Path, seed: int, say: Say
) -> tuple[np.ndarray, np.ndarray | None, FitLog, dict[str, float]]:
    """Fit one fold's model; return valid and test predictions, the fit log and timings."""
    in_valid = data.folds["fold"].to_numpy() == k
    train_rows, valid_rows = data.train[~in_valid], data.train[in_valid]
    log = FitLog(workdir=fold_dir / "work")
    log.workdir.mkdir(parents=True, exist_ok=True)
    log.info["seed"] = seed
    _seed_everything(seed + k)
    t0 = time.perf_counter()
    model.fit(train_rows.reset_index(drop=True), valid_rows.reset_index(drop=True), log)
    t1 = time.perf_counter()
    valid_pred = check_predictions(model.predict(valid_rows.reset_index(drop=True)), len(valid_rows), model.name)
    t2 = time.perf_counter()
    test_pred = None
    if data.test is not None:
        test_pred = check_predictions(model.predict(data.test), len(data.test), model.name)
    t3 = time.perf_counter()
    timings = {"fit_s": t1 - t0, "predict_valid_s": t2 - t1, "predict_test_s": t3 - t2}
    log.timings.update(timings)
    return valid_pred, test_pred, log, timings


def _record_fold(
    fold_dir: Path,
    k: int,
    model: Model,
    data: RunData,
    valid_pred: np.ndarray,
    test_pred: np.ndarray | None,
    log: FitLog,
    timings: dict[str, float],
) -> float:
    from questlab.metric import mean_spearman

    in_valid = data.folds["fold"].to_numpy() == k
    t0 = time.perf_counter()
    model.save(fold_dir / "model")
    timings["save_s"] = time.perf_counter() - t0
    predictions_frame(data.train.loc[in_valid, ID], valid_pred).to_csv(fold_dir / "valid_pred.csv", index=False)
    if test_pred is not None:
        predictions_frame(data.test[ID], test_pred).to_csv(fold_dir / "test_pred.csv", index=False)
    (fold_dir / "fit_log.json").write_text(json.dumps(log.to_dict(), indent=1))
    score = mean_spearman(data.train.loc[in_valid, list(TARGETS)].to_numpy(), valid_pred)
    # fold.json last: it marks the fold complete for --resume and collect.
    (fold_dir / "fold.json").write_text(json.dumps({"fold": k, "score": score, "timings": timings}, indent=1))
    # The fold is recorded: its resumable checkpoints (hundreds of MB for a transformer) can go.
    shutil.rmtree(fold_dir / "work", ignore_errors=True)
    return score


def _fit_and_record_fold(config: RunConfig, data: RunData, run_dir: Path, k: int) -> tuple[int, float, dict]:
    fold_dir = run_dir / "folds" / f"fold_{k}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(config.model.name, config.model.params)
    valid_pred, test_pred, log, timings = _fit_fold(model, data, k, fold_dir, config.seed, _stderr)
    score = _record_fold(fold_dir, k, model, data, valid_pred, test_pred, log, timings)
    return k, score, timings


def _run_folds(config: RunConfig, data: RunData, run_dir: Path, todo: list[int]) -> Iterator[tuple[int, float, dict]]:
    """Fit the folds in ``todo``, in this process or (``parallel_folds`` > 1) in worker processes.

    Workers write their fold folders themselves; only this process talks to the store. Parallel
    folds suit single-threaded models (TF-IDF, ridge heads); torch models use the cores already.
    """
    if config.parallel_folds <= 1 or len(todo) <= 1:
        for k in todo:
            yield _fit_and_record_fold(config, data, run_dir, k)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=min(config.parallel_folds, len(todo)), return_as="generator_unordered")
    yield from parallel(delayed(_fit_and_record_fold)(config, data, run_dir, k) for k in todo)


def fold_is_done(fold_dir: Path) -> bool:
    return (fold_dir / "fold.json").exists() and (fold_dir / "model" / "model.json").exists()


def run_cv(
    config: RunConfig,
    train_path: Path,
    test_path: Path | None = None,
    store: Store | None = None,
    only_folds: list[int] | None = None,
    resume: str | None = None,
    say: Say = _stderr,
) -> str:
    """Run (or resume) grouped CV for ``config`` and record it; returns the run id.

    ``only_folds`` runs a subset (``--fold k``): the run is recorded as partial and
    ``collect`` merges partial runs. ``resume`` re-enters an earlier run by id: finished folds
    are kept, an unfinished fold restarts from the checkpoints its model left in ``work/``.
    """
    store = store or Store()
    train_path = Path(train_path)
    train = load_train(train_path)
    test = load_test(test_path) if test_path else None
    if test is not None:
        check_pair(train, test, test_path)

    if resume:
        run_id = store.resolve_id(resume)
        run_dir = store.get(run_id).dir
        meta = json.loads((run_dir / "run.json").read_text())
        config = parse_config(meta["config"], source=f"run {run_id}")
        folds = load_folds(run_dir / FOLDS_FILE, train)
        if meta["train_sha256"] != file_sha256(train_path):
            raise ValueError(f"run {run_id} was trained on another train file ({meta['train_path']})")
        only_folds = meta["folds_selected"]
    else:
        folds = resolve_folds(config, train, store)
    data = RunData(train=train, test=test, folds=folds)
    all_folds = sorted(int(k) for k in folds["fold"].unique())
    selected = sorted(only_folds) if only_folds is not None else all_folds
    unknown = [k for k in selected if k not in all_folds]
    if unknown:
        raise ValueError(f"no fold {unknown[0]}: the folds are {all_folds}")

    if not is_main_process():
        # A DDP worker: train alongside rank 0 (collectives need every rank) but record nothing.
        import tempfile

        # On --resume, skip exactly the folds rank 0 skips, or the processes fall out of step.
        done_dir = store.get(run_id).dir / "folds" if resume else None
        with tempfile.TemporaryDirectory() as tmp:
            for k in selected:
                if done_dir is not None and fold_is_done(done_dir / f"fold_{k}"):
                    continue
                _fit_fold(
                    build_model(config.model.name, config.model.params),
                    data,
                    k,
                    Path(tmp) / f"fold_{k}",
                    config.seed,
                    say,
                )
        return ""

    if resume:
        store.reopen(run_id)
        say(f"resuming run {run_id}")
    else:
        run_id = store.create_run(config.name, tags=_cv_run_tags(config))
        run_dir = store.run_dir(run_id)
        (run_dir / "config.yaml").write_text(config.to_yaml())
        save_folds(folds, run_dir)
        meta = {
            "run_id": run_id,
            "kind": "cv",
            "name": config.name,
            "model": config.model.name,
            "config": config.model_dump(mode="json"),
            "seed": config.seed,
            "train_path": str(train_path.resolve()),
            "train_sha256": file_sha256(train_path),
            "test_path": str(Path(test_path).resolve()) if test_path else None,
            "test_sha256": file_sha256(Path(test_path)) if test_path else None,
            "git_commit": git_commit(),
            "questlab_version": __version__,
            "folds_all": all_folds,
            "folds_selected": selected,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        (run_dir / "run.json").write_text(json.dumps(meta, indent=1))
        store.log_params(run_id, _flatten(config.model_dump(mode="json")))
        say(f"run {run_id} ({config.name}): model {config.model.name}, folds {selected} of {len(all_folds)}")

    t_start = time.perf_counter()
    with store.recording(run_id), _sigterm_as_interrupt():
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=True,
            console=_console(),
        )
        todo = []
        for k in selected:
            if fold_is_done(run_dir / "folds" / f"fold_{k}"):
                say(f"fold {k}: already done, kept")
            else:
                todo.append(k)
        with progress:
            task = progress.add_task("folds", total=len(todo))
            for k, score, timings in _run_folds(config, data, run_dir, todo):
                store.log_metrics(run_id, {"fold_score": score}, step=k)
                say(f"fold {k}: mean Spearman {score:.4f} (fit {timings['fit_s']:.1f} s)")
                progress.advance(task)
        cv = finalize_run(store, run_id, data.train, test, config.bootstrap, selected, all_folds)
        _update_meta(run_dir, timings={"total_s": time.perf_counter() - t_start})
        say(f"CV mean Spearman {cv.score:.4f} (95% CI {cv.ci_low:.4f}..{cv.ci_high:.4f}) over folds {selected}")
    return run_id


def _console():  # a stderr console, so stdout carries only the run id
    from rich.console import Console

    return Console(stderr=True)


def _update_meta(run_dir: Path, **updates: object) -> None:
    path = run_dir / "run.json"
    meta = json.loads(path.read_text())
    meta.update(updates)
    path.write_text(json.dumps(meta, indent=1))


def _flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def finalize_run(
    store: Store,
    run_id: str,
    train: pd.DataFrame,
    test: pd.DataFrame | None,
    n_boot: int,
    selected: list[int],
    all_folds: list[int],
) -> CVScore:
    """Assemble the fold outputs of a run into OOF predictions, scores and the submission."""
    run_dir = store.run_dir(run_id)
    folds = load_folds(run_dir / FOLDS_FILE, train)
    fold_dirs = {k: run_dir / "folds" / f"fold_{k}" for k in selected}
    missing = [k for k, d in fold_dirs.items() if not fold_is_done(d)]
    if missing:
        raise RuntimeError(f"run {run_id}: fold(s) {missing} have no complete result")
    valid = pd.concat([read_predictions(d / "valid_pred.csv") for d in fold_dirs.values()], ignore_index=True)
    oof = folds.merge(valid, on=ID, how="inner")  # train row order, scored rows only
    truth = train.set_index(ID).loc[oof[ID], list(TARGETS)].reset_index()
    submission = None
    if all((d / "test_pred.csv").exists() for d in fold_dirs.values()) and fold_dirs:
        preds = [read_predictions(d / "test_pred.csv") for d in fold_dirs.values()]
        mean = np.mean([p[list(TARGETS)].to_numpy() for p in preds], axis=0)
        submission = predictions_frame(preds[0][ID], np.clip(mean, 0.0, 1.0))
    return record_outputs(store, run_id, oof, truth, submission, n_boot, selected, complete=selected == all_folds)


def record_outputs(
    store: Store,
    run_id: str,
    oof: pd.DataFrame,
    truth: pd.DataFrame,
    submission: pd.DataFrame | None,
    n_boot: int,
    selected: list[int],
    complete: bool,
) -> CVScore:
    """Write a run's oof.csv, oof_truth.csv, scores.json, per_target.csv and submission.csv, and
    log its scores and completion tags: what CV runs and ensemble runs both record."""
    run_dir = store.run_dir(run_id)
    oof.to_csv(run_dir / "oof.csv", index=False)
    truth.to_csv(run_dir / "oof_truth.csv", index=False)
    cv = score_cv(
        truth[list(TARGETS)].to_numpy(),
        oof[list(TARGETS)].to_numpy(),
        oof["fold"].to_numpy(),
        oof["group"].to_numpy(),
        n_boot=n_boot,
    )
    (run_dir / "scores.json").write_text(json.dumps(cv.to_dict(), indent=1))
    cv.per_target.to_csv(run_dir / "per_target.csv")
    if submission is not None:
        submission.to_csv(run_dir / "submission.csv", index=False)
    store.log_metrics(
        run_id,
        {
            "cv_score": cv.score,
            "cv_ci_low": cv.ci_low,
            "cv_ci_high": cv.ci_high,
            **{f"spearman.{t}": v for t, v in cv.per_target["spearman"].items()},
            "n_constant_pred": int((cv.per_target["status"] == "constant prediction").sum()),
        },
    )
    store.set_tags(run_id, {TAG_COMPLETE: str(complete).lower(), "questlab.folds_done": ",".join(map(str, selected))})
    return cv


def collect_runs(store: Store, run_ids: list[str], name: str | None = None, say: Say = _stderr) -> str:
    """Merge single-fold runs (``run --fold k``) made with the same config and folds into one run."""
    records = [store.get(r) for r in run_ids]
    metas = [json.loads((r.dir / "run.json").read_text()) for r in records]
    base = metas[0]
    for r, m in zip(records[1:], metas[1:], strict=True):
        if m["config"]["model"] != base["config"]["model"]:
            raise ValueError(f"run {r.run_id} has another model config than {records[0].run_id}: cannot collect")
        if m["train_sha256"] != base["train_sha256"]:
            raise ValueError(f"run {r.run_id} was trained on another train file than {records[0].run_id}")
        if file_sha256(r.dir / FOLDS_FILE) != file_sha256(records[0].dir / FOLDS_FILE):
            raise ValueError(f"run {r.run_id} used other folds than {records[0].run_id}: cannot collect")
    taken: dict[int, Path] = {}
    for r, m in zip(records, metas, strict=True):
        for k in m["folds_selected"]:
            if k in taken:
                raise ValueError(f"fold {k} is in more than one of the runs given")
            if not fold_is_done(r.dir / "folds" / f"fold_{k}"):
                raise ValueError(f"run {r.run_id}: fold {k} is not finished")
            taken[k] = r.dir / "folds" / f"fold_{k}"
    train = load_train(base["train_path"])
    test = load_test(base["test_path"]) if base.get("test_path") else None
    config = parse_config(base["config"])
    run_id = store.create_run(
        name or f"{config.name}-collected",
        tags={**_cv_run_tags(config), "questlab.collected_from": ",".join(r.run_id for r in records)},
    )
    with store.recording(run_id):
        run_dir = store.run_dir(run_id)
        shutil.copy(records[0].dir / FOLDS_FILE, run_dir / FOLDS_FILE)
        (run_dir / "config.yaml").write_text(config.to_yaml())
        for k, src in sorted(taken.items()):
            shutil.copytree(src, run_dir / "folds" / f"fold_{k}", ignore=shutil.ignore_patterns("work"))
        selected = sorted(taken)
        meta = {**base, "run_id": run_id, "folds_selected": selected, "collected_from": [r.run_id for r in records]}
        (run_dir / "run.json").write_text(json.dumps(meta, indent=1))
        store.log_params(run_id, _flatten(config.model_dump(mode="json")))
        cv = finalize_run(store, run_id, train, test, config.bootstrap, selected, meta["folds_all"])
        say(f"collected folds {selected} into run {run_id}: CV mean Spearman {cv.score:.4f}")
    return run_id


def load_scores(run_dir: Path) -> CVScore:
    return CVScore.from_dict(json.loads((Path(run_dir) / "scores.json").read_text()))
