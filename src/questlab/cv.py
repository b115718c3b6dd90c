"""The CV loop and what a run records. It knows models only through ``fit/predict/save/load``.

What a run folder holds, and every name in it, is :mod:`questlab.rundir`'s business; this module
fills one in, fold by fold, and logs each finished part to the store (:meth:`Store.sync`), so a
run on a remote tracking server is recorded as it goes, like a local one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
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
from questlab.data import Kind, check_pair, load, validate_frame
from questlab.errors import UsageError
from questlab.folds import FOLDS_FILE, check_grouped, load_folds, make_folds, save_folds
from questlab.metric import CVScore, score_cv
from questlab.models import FitLog, Model, build_model
from questlab.models.base import check_predictions
from questlab.rundir import (
    FOLD_DONE_FILE,
    FOLD_MODEL_DIR,
    WORK_DIR,
    RunFolder,
    RunMeta,
    file_sha256,
    git_commit,
    predictions_frame,
)
from questlab.schema import ID, TARGETS
from questlab.store import TAG_COMPLETE, TAG_KIND, TAG_MODEL, Store

Say = Callable[[str], None]
OnFold = Callable[[int, float, list[float]], None]  # fold, its score, every recorded fold's score


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def is_main_process() -> bool:
    """Under ``accelerate launch`` / torchrun only rank 0 records; the others just train."""
    return int(os.environ.get("RANK", "0")) == 0


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


Data = str | Path | pd.DataFrame  # a QUEST CSV file, or a frame with the same columns


@dataclass(frozen=True)
class Dataset:
    """A validated input and its identity: the name and sha256 a run records."""

    frame: pd.DataFrame
    name: str  # the file's name, or "DataFrame"
    sha256: str  # of the file's bytes; of a frame, of its validated CSV text

    @classmethod
    def read(cls, source: Data, kind: Kind) -> Dataset:
        """Load and validate a file, or validate a frame exactly as a file would be."""
        if isinstance(source, pd.DataFrame):
            frame = validate_frame(source, kind, source=f"{'train' if kind == 'train' else 'test'} DataFrame")
            digest = hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()
            return cls(frame, "DataFrame", digest)
        path = Path(source)
        return cls(load(path, kind), path.name, file_sha256(path))


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
        folder = store.folder(store.resolve_id(source.from_run))
        if not folder.has(FOLDS_FILE):
            raise UsageError(f"run {source.from_run} recorded no {FOLDS_FILE}")
        folds = load_folds(folder / FOLDS_FILE, train)
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
    log = FitLog(workdir=fold_dir / WORK_DIR)
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
    run: RunFolder,
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
    fold_dir = run.fold_dir(k)
    t0 = time.perf_counter()
    model.save(fold_dir / FOLD_MODEL_DIR)
    timings["save_s"] = time.perf_counter() - t0
    score = mean_spearman(data.train.loc[in_valid, list(TARGETS)].to_numpy(), valid_pred)
    run.write_fold_outputs(
        k,
        predictions_frame(data.train.loc[in_valid, ID], valid_pred),
        predictions_frame(data.test[ID], test_pred) if test_pred is not None else None,
        log.to_dict(),
        {"fold": k, "score": score, "timings": timings},
    )
    # The fold is recorded: its resumable checkpoints (hundreds of MB for a transformer) can go.
    shutil.rmtree(fold_dir / WORK_DIR, ignore_errors=True)
    return score


def _fit_and_record_fold(config: RunConfig, data: RunData, run: RunFolder, k: int) -> tuple[int, float, dict]:
    run.fold_dir(k).mkdir(parents=True, exist_ok=True)
    model = build_model(config.model.name, config.model.params)
    valid_pred, test_pred, log, timings = _fit_fold(model, data, k, run.fold_dir(k), config.seed, _stderr)
    score = _record_fold(run, k, model, data, valid_pred, test_pred, log, timings)
    return k, score, timings


def _run_folds(config: RunConfig, data: RunData, run: RunFolder, todo: list[int]) -> Iterator[tuple[int, float, dict]]:
    """Fit the folds in ``todo``, in this process or (``parallel_folds`` > 1) in worker processes.

    Workers write their fold folders themselves; only this process talks to the store. Parallel
    folds suit single-threaded models (TF-IDF, ridge heads); torch models use the cores already.
    """
    if config.parallel_folds <= 1 or len(todo) <= 1:
        for k in todo:
            yield _fit_and_record_fold(config, data, run, k)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=min(config.parallel_folds, len(todo)), return_as="generator_unordered")
    yield from parallel(delayed(_fit_and_record_fold)(config, data, run, k) for k in todo)


def _check_same_data(meta: RunMeta, part: str, data: Dataset | None, run_id: str) -> None:
    """Refuse train/test data other than what the run was made from (by sha256)."""
    want, name = getattr(meta, f"{part}_sha256"), getattr(meta, f"{part}_file")
    if data is None:
        if want is not None:
            raise UsageError(f"run {run_id} was made with {part} data {name} (sha256 {want[:12]}...): give it again")
        return
    if want is not None and data.sha256 != want:
        raise UsageError(
            f"the {part} data given ({data.name}) is not what run {run_id} was made with "
            f"({name}, sha256 {want[:12]}...)"
        )


def run_cv(
    config: RunConfig | None,
    train: Data,
    test: Data | None = None,
    store: Store | None = None,
    only_folds: list[int] | None = None,
    resume: str | None = None,
    say: Say = _stderr,
    on_fold: OnFold | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Run (or resume) grouped CV for ``config`` and record it; returns the run id.

    ``train`` and ``test`` are QUEST CSV files or DataFrames (validated alike). ``only_folds`` runs
    a subset (``--fold k``): the run is recorded as partial and ``collect`` merges partial runs.
    ``resume`` re-enters an earlier run by id (``config`` is then the recorded one): finished folds
    are kept, an unfinished fold restarts from the checkpoints its model left in ``work/``; the
    data must be what the run was made from. ``on_fold(k, score, scores_so_far)`` is called as
    each fold is recorded; raising :class:`~questlab.store.RunStopped` there stops the run
    (marked KILLED). ``tags`` are added to a new run's tags.
    """
    store = store or Store()
    train_data = Dataset.read(train, "train")
    test_data = Dataset.read(test, "test") if test is not None else None
    train_df = train_data.frame
    test_df = test_data.frame if test_data is not None else None
    if test_df is not None:
        check_pair(train_df, test_df, test if not isinstance(test, pd.DataFrame) else "test DataFrame")

    if resume:
        run_id = store.resolve_id(resume)
        run = store.folder(run_id, models=True)
        meta = run.read_meta()
        _check_same_data(meta, "train", train_data, run_id)
        _check_same_data(meta, "test", test_data, run_id)
        config = parse_config(meta.config, source=f"run {run_id}")
        folds = load_folds(run / FOLDS_FILE, train_df)
        only_folds = meta.folds_selected
    else:
        if config is None:
            raise UsageError("give a config (or resume an earlier run)")
        folds = resolve_folds(config, train_df, store)
    data = RunData(train=train_df, test=test_df, folds=folds)
    all_folds = sorted(int(k) for k in folds["fold"].unique())
    selected = sorted(only_folds) if only_folds is not None else all_folds
    unknown = [k for k in selected if k not in all_folds]
    if unknown:
        raise UsageError(f"no fold {unknown[0]}: the folds are {all_folds}")

    if not is_main_process():
        # A DDP worker: train alongside rank 0 (collectives need every rank) but record nothing.
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for k in selected:
                # On --resume, skip exactly the folds rank 0 skips, or the processes fall out of step.
                if resume and run.fold_is_done(k):
                    continue
                model = build_model(config.model.name, config.model.params)
                _fit_fold(model, data, k, Path(tmp) / f"fold_{k}", config.seed, say)
        return ""

    if resume:
        store.reopen(run_id)
        run = _resume_writer(store, run_id, run)
        say(f"resuming run {run_id}")
    else:
        run_id = store.create_run(config.name, tags={**_cv_run_tags(config), **(tags or {})})

    t_start = time.perf_counter()
    with store.recording(run_id), _sigterm_as_interrupt():
        if not resume:
            run = store.writer(run_id)
            run.write_config(config.to_yaml())
            save_folds(folds, run.path)
            run.write_meta(
                RunMeta(
                    run_id=run_id,
                    kind="cv",
                    name=config.name,
                    model=config.model.name,
                    config=config.model_dump(mode="json"),
                    seed=config.seed,
                    train_file=train_data.name,
                    train_sha256=train_data.sha256,
                    test_file=test_data.name if test_data else None,
                    test_sha256=test_data.sha256 if test_data else None,
                    git_commit=git_commit(),
                    folds_all=all_folds,
                    folds_selected=selected,
                )
            )
            store.sync(run_id, "config.yaml", FOLDS_FILE, "run.json")
            store.log_params(run_id, flatten(config.model_dump(mode="json")))
            say(f"run {run_id} ({config.name}): model {config.model.name}, folds {selected} of {len(all_folds)}")
        _fit_folds_with_progress(store, run_id, config, data, run, selected, say, on_fold)
        cv = finalize_run(store, run_id, run, data.train, data.test, config.bootstrap, selected, all_folds)
        run.update_meta(timings={"total_s": time.perf_counter() - t_start})
        store.sync(run_id, "run.json")
        if selected == all_folds and config.log_model:
            _log_model(store, run_id, say)
        say(f"CV mean Spearman {cv.score:.4f} (95% CI {cv.ci_low:.4f}..{cv.ci_high:.4f}) over folds {selected}")
    return run_id


def _resume_writer(store: Store, run_id: str, downloaded: RunFolder) -> RunFolder:
    """The folder to continue writing a run in; a remote run's staging starts from its download."""
    run = store.writer(run_id)
    if run.path != downloaded.path:
        shutil.copytree(downloaded.path, run.path, dirs_exist_ok=True)
    return run


def _fit_folds_with_progress(
    store: Store,
    run_id: str,
    config: RunConfig,
    data: RunData,
    run: RunFolder,
    selected: list[int],
    say: Say,
    on_fold: OnFold | None = None,
) -> None:
    """Fit the folds not yet done, logging each one's score and artifacts as it finishes."""
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
        if run.fold_is_done(k):
            say(f"fold {k}: already done, kept")
        else:
            todo.append(k)
    with progress:
        task = progress.add_task("folds", total=len(todo))
        for k, score, timings in _run_folds(config, data, run, todo):
            store.sync(run_id, f"folds/fold_{k}")
            store.log_metrics(run_id, {"fold_score": score}, step=k)
            say(f"fold {k}: mean Spearman {score:.4f} (fit {timings['fit_s']:.1f} s)")
            progress.advance(task)
            if on_fold is not None:
                scores = [json.loads((run.fold_dir(j) / FOLD_DONE_FILE).read_text())["score"] for j in run.done_folds()]
                on_fold(k, score, scores)


def _log_model(store: Store, run_id: str, say: Say) -> None:
    """Record the finished run as an MLflow model (``runs:/RUN_ID/model``)."""
    from questlab.export import log_run_model

    t0 = time.perf_counter()
    log_run_model(store, run_id)
    say(f"MLflow model logged as runs:/{run_id}/model ({time.perf_counter() - t0:.1f} s)")


def _console():  # a stderr console, so stdout carries only the run id
    from rich.console import Console

    return Console(stderr=True)


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """A nested mapping as dotted keys (``model.params.alpha``): how configs become MLflow params."""
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def finalize_run(
    store: Store,
    run_id: str,
    run: RunFolder,
    train: pd.DataFrame,
    test: pd.DataFrame | None,
    n_boot: int,
    selected: list[int],
    all_folds: list[int],
) -> CVScore:
    """Assemble the fold outputs of a run into OOF predictions, scores and the submission."""
    folds = load_folds(run / FOLDS_FILE, train)
    missing = [k for k in selected if not run.fold_is_done(k)]
    if missing:
        raise RuntimeError(f"run {run_id}: fold(s) {missing} have no complete result")
    valid = pd.concat([run.read_fold_predictions(k, "valid") for k in selected], ignore_index=True)
    oof = folds.merge(valid, on=ID, how="inner")  # train row order, scored rows only
    truth = train.set_index(ID).loc[oof[ID], list(TARGETS)].reset_index()
    submission = None
    preds = [run.read_fold_predictions(k, "test") for k in selected]
    if preds and all(p is not None for p in preds):
        mean = np.mean([p[list(TARGETS)].to_numpy() for p in preds], axis=0)
        submission = predictions_frame(preds[0][ID], np.clip(mean, 0.0, 1.0))
    return record_outputs(store, run_id, run, oof, truth, submission, n_boot, selected, complete=selected == all_folds)


def record_outputs(
    store: Store,
    run_id: str,
    run: RunFolder,
    oof: pd.DataFrame,
    truth: pd.DataFrame,
    submission: pd.DataFrame | None,
    n_boot: int,
    selected: list[int],
    complete: bool,
) -> CVScore:
    """Write a run's OOF, truth, scores, per-target table and submission, and log its scores and
    completion tags: what CV runs and ensemble runs both record."""
    from questlab.rundir import OOF_FILE, PER_TARGET_FILE, SCORES_FILE, SUBMISSION_FILE, TRUTH_FILE

    cv = score_cv(
        truth[list(TARGETS)].to_numpy(),
        oof[list(TARGETS)].to_numpy(),
        oof["fold"].to_numpy(),
        oof["group"].to_numpy(),
        n_boot=n_boot,
    )
    run.write_outputs(oof, truth, cv.to_dict(), cv.per_target)
    if submission is not None:
        run.write_submission(submission)
    store.sync(run_id, OOF_FILE, TRUTH_FILE, SCORES_FILE, PER_TARGET_FILE, SUBMISSION_FILE)
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


def collect_runs(
    store: Store,
    run_ids: list[str],
    train: Data,
    test: Data | None = None,
    name: str | None = None,
    say: Say = _stderr,
) -> str:
    """Merge single-fold runs (``run --fold k``) made with the same config and folds into one run.

    ``train`` (and ``test``) must be the data the runs were made from (checked by sha256).
    """
    records = [store.get(r) for r in run_ids]
    sources = [store.folder(r.run_id, models=True) for r in records]
    metas = [f.read_meta() for f in sources]
    base = metas[0]
    for r, f, m in zip(records[1:], sources[1:], metas[1:], strict=True):
        if (m.config or {}).get("model") != (base.config or {}).get("model"):
            raise UsageError(f"run {r.run_id} has another model config than {records[0].run_id}: cannot collect")
        if m.train_sha256 != base.train_sha256:
            raise UsageError(f"run {r.run_id} was trained on another train file than {records[0].run_id}")
        if file_sha256(f / FOLDS_FILE) != file_sha256(sources[0] / FOLDS_FILE):
            raise UsageError(f"run {r.run_id} used other folds than {records[0].run_id}: cannot collect")
    train_data = Dataset.read(train, "train")
    test_data = Dataset.read(test, "test") if test is not None else None
    _check_same_data(base, "train", train_data, records[0].run_id)
    _check_same_data(base, "test", test_data, records[0].run_id)
    taken: dict[int, Path] = {}
    for r, f, m in zip(records, sources, metas, strict=True):
        for k in m.folds_selected:
            if k in taken:
                raise UsageError(f"fold {k} is in more than one of the runs given")
            if not f.fold_is_done(k):
                raise UsageError(f"run {r.run_id}: fold {k} is not finished")
            taken[k] = f.fold_dir(k)
    config = parse_config(base.config)
    run_id = store.create_run(
        name or f"{config.name}-collected",
        tags={**_cv_run_tags(config), "questlab.collected_from": ",".join(r.run_id for r in records)},
    )
    with store.recording(run_id):
        run = store.writer(run_id)
        shutil.copy(sources[0] / FOLDS_FILE, run / FOLDS_FILE)
        run.write_config(config.to_yaml())
        for k, src in sorted(taken.items()):
            shutil.copytree(src, run.fold_dir(k), ignore=shutil.ignore_patterns(WORK_DIR), dirs_exist_ok=True)
        selected = sorted(taken)
        meta = base.model_copy(
            update={
                "run_id": run_id,
                "folds_selected": selected,
                "collected_from": [r.run_id for r in records],
                "git_commit": git_commit(),
                "questlab_version": __version__,
            }
        )
        run.write_meta(meta)
        store.sync(run_id, FOLDS_FILE, "config.yaml", "run.json", *(f"folds/fold_{k}" for k in selected))
        store.log_params(run_id, flatten(config.model_dump(mode="json")))
        test_df = test_data.frame if test_data is not None else None
        cv = finalize_run(store, run_id, run, train_data.frame, test_df, config.bootstrap, selected, meta.folds_all)
        if selected == meta.folds_all and config.log_model:
            _log_model(store, run_id, say)
        say(f"collected folds {selected} into run {run_id}: CV mean Spearman {cv.score:.4f}")
    return run_id


def load_scores(run: RunFolder | Path) -> CVScore:
    """A run's recorded CVScore (from its folder)."""
    folder = run if isinstance(run, RunFolder) else RunFolder(Path(run))
    return CVScore.from_dict(folder.read_scores())
