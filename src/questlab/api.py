"""questlab from code: the functions a notebook, a script or an agent calls.

    import questlab as ql
    run = ql.run("configs/tfidf.yaml", train=train_df, test=test_df, set={"model.params.alpha": 3})
    run.cv, run.ci, run.fold_scores, run.per_target, run.oof
    run.predict(new_df); run.evaluate(labelled_df); run.diagnose(); run.export("bundle/")
    ql.compare(run, other); ql.runs(sort="cv"); ql.load_run(run_id); ql.load_bundle("bundle/")
    ql.run("tfidf", train=train_df)   # a config shipped with questlab, by name; ql.model_params(): every parameter

Inputs are validated exactly like files (a bad cell names its column and row). Every function
takes ``store=`` (a folder, an MLflow tracking URI, or a :class:`~questlab.store.Store`); the
default is ``$QUESTLAB_STORE``, else ``./questlab-store``. The CLI calls the same functions.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from questlab import console
from questlab.config import RunConfig, resolve_config
from questlab.ensemble.report import EnsembleReport
from questlab.rundir import TAG_MODEL
from questlab.store import RunRecord, Store, as_store

StoreLike = str | Path | Store | None
DataLike = str | Path | pd.DataFrame


class Verdicts(list):
    """``diagnose``'s verdicts: a list of :class:`Verdict` objects that also shows as a table."""

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([v.to_dict() for v in self], columns=["severity", "code", "message", "evidence"])

    def _repr_html_(self) -> str:
        return self.to_frame()[["severity", "code", "message"]].to_html(index=False)


class Run:
    """A recorded run: its scores, predictions and model, read from the store on demand."""

    def __init__(self, record: RunRecord, store: Store) -> None:
        self.record = record
        self.store = store

    # --- identity ---------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.record.run_id

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def model(self) -> str:
        return self.record.tags.get(TAG_MODEL, "")

    @property
    def kind(self) -> str:
        return self.record.kind

    @property
    def status(self) -> str:
        return self.record.status

    @cached_property
    def config(self) -> dict[str, Any] | None:
        """The resolved config the run recorded (None for ensembles)."""
        return self.record.folder.config_dict()

    @cached_property
    def task(self) -> Any:
        """The :class:`~questlab.tasks.Task` the run was made under (runs before tasks: quest)."""
        from questlab.rundir import read_task

        return read_task(self.record.folder)

    # --- scores -----------------------------------------------------------------------------
    @cached_property
    def scores(self) -> Any:
        """The full :class:`~questlab.metric.CVScore` (per target, per fold, interval)."""
        from questlab.recording import load_scores

        return load_scores(self.record.folder)

    @property
    def cv(self) -> float:
        """The task's metric over all out-of-fold rows (QUEST: mean Spearman, constants count 0)."""
        return float(self.scores.score)

    @property
    def ci(self) -> tuple[float, float]:
        """The 95% question-bootstrap interval of ``cv``."""
        return float(self.scores.ci_low), float(self.scores.ci_high)

    @property
    def fold_scores(self) -> pd.Series:
        """The score (the task's metric) of each fold's out-of-fold rows, indexed by fold."""
        return self.scores.per_fold["score"].rename("score")

    @cached_property
    def ensemble_report(self) -> EnsembleReport | None:
        """An ensemble's report: nested score (pooled) and the mean of the outer folds' scores, gains
        with intervals, post-processing choices per target and per outer fold; None for a CV run."""
        if self.kind != "ensemble":
            return None
        report = self.record.folder.read_ensemble().get("report")
        return EnsembleReport.model_validate(report) if report is not None else None

    @property
    def per_target(self) -> pd.DataFrame:
        """Per-target Spearman and status (ok / constant prediction / constant truth)."""
        return self.scores.per_target

    @cached_property
    def oof(self) -> pd.DataFrame:
        """Out-of-fold predictions indexed by id: the task's targets (``group``/``fold`` in ``oof_folds``)."""
        return self.record.folder.read_oof().set_index(self.task.id)[list(self.task.target_names)]

    @cached_property
    def oof_folds(self) -> pd.DataFrame:
        """qa_id -> question group and fold of each scored row."""
        return self.record.folder.read_oof().set_index(self.task.id)[["group", "fold"]]

    @cached_property
    def truth(self) -> pd.DataFrame:
        """The true ratings of the scored rows, indexed by qa_id like ``oof``."""
        return self.record.folder.read_truth().set_index(self.task.id)[list(self.task.target_names)]

    @property
    def submission(self) -> pd.DataFrame | None:
        """The run's test predictions (qa_id + 30 targets), if it was given test data."""
        return self.record.folder.read_submission()

    # --- using it ---------------------------------------------------------------------------
    @cached_property
    def predictor(self) -> Any:
        from questlab.predict import load_predictor

        return load_predictor(self.store, self.id)

    def predict(self, pairs: DataLike) -> pd.DataFrame:
        """Predict new pairs (a test-format DataFrame or CSV): qa_id + 30 columns, submission order.

        A labelled (train-format) input predicts too: its targets are ignored, and a line on stderr says so.
        """
        return _predict_pairs(self.predictor, pairs)

    def evaluate(self, data: DataLike, n_boot: int = 200) -> Any:
        """Score the run's model on labelled pairs (a train-format DataFrame or CSV) against their own
        targets: an :class:`~questlab.evaluation.Evaluation` (score, ci, per_target, n_rows).

        Mean Spearman as the run's CV computes it, the interval resampling questions. Rows the run
        was trained on are counted in ``notes`` (their score is optimistic).
        """
        from questlab.evaluation import evaluate

        return evaluate(
            self.predictor, data, n_boot=n_boot, run_id=self.id, trained_on=self.trained_on(), task=self.task
        )

    def trained_on(self) -> np.ndarray | None:
        """The qa_ids of the rows the run was fitted on (its folds' rows), None where not recorded."""
        from questlab.errors import QuestlabError
        from questlab.folds import FOLDS_FILE

        folder = self.record.folder
        try:
            frame = folder.read_folds() if folder.has(FOLDS_FILE) else folder.read_oof()
        except (QuestlabError, OSError, ValueError, KeyError):
            return None
        key = self.task.id
        return frame[key].to_numpy() if key in frame.columns else None

    def diagnose(self, n_boot: int = 200) -> Verdicts:
        """Verdicts on the run (constant predictions, weak folds, fitting, imbalance, ...)."""
        from questlab.analysis.diagnose import by_severity, diagnose_run

        return Verdicts(by_severity(diagnose_run(self.store, self.id, n_boot=n_boot)))

    def export(self, dest: str | Path) -> Path:
        """Write the run as a self-contained bundle folder (see :mod:`questlab.export`)."""
        from questlab.export import export_run

        return export_run(self.store, self.id, Path(dest))

    def refresh(self) -> Run:
        """Re-read the run's record (status, tags, metrics) and drop cached reads."""
        return Run(self.store.get(self.id), self.store)

    def __repr__(self) -> str:
        cv = f"cv={self.record.metrics['cv_score']:.4f}, " if "cv_score" in self.record.metrics else ""
        return f"Run({self.id[:8]}, {self.name!r}, model={self.model!r}, {cv}status={self.status})"

    def _repr_html_(self) -> str:
        m = self.record.metrics
        rows = [("run", self.id), ("name", self.name), ("model", self.model), ("kind", self.kind),
                ("status", self.status)]  # fmt: skip
        if "cv_score" in m:
            low, high = m.get("cv_ci_low", np.nan), m.get("cv_ci_high", np.nan)
            rows.append(("CV (95% CI)", f"{m['cv_score']:.4f} ({low:.4f}..{high:.4f})"))
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        return f"<table>{body}</table>"


def run(
    config: str | Path | Mapping | RunConfig,
    train: DataLike,
    test: DataLike | None = None,
    *,
    set: Mapping[str, Any] | Sequence[str] | None = None,
    store: StoreLike = None,
    folds: list[int] | None = None,
    quiet: bool = False,
    pseudo: str | Path | Any | None = None,
    name: str | None = None,
    task: str | Path | Any | None = None,
) -> Run:
    """Run grouped CV for a config (a YAML path, a shipped config's name such as ``"tfidf"``, a dict or
    a RunConfig) and record it.

    ``train``/``test`` are QUEST CSV paths or DataFrames; ``set`` overrides config keys
    (``{"model.params.alpha": 3}`` or ``["model.params.alpha=3"]``); ``folds`` runs only those.
    ``pseudo``: a file from ``questlab pseudo-label`` (or a ``questlab.pseudo.PseudoLabels``):
    fold k also trains on its pseudo rows labelled by teacher fold k (the teacher's folds required).
    ``name``: the run's name (default: the config's name with its overrides, ``tfidf[alpha=3]``); a
    name another run of the store has gets the first free suffix ``-2``, ``-3``, ...
    ``task``: a built-in task's name (``"ell"``), a task spec YAML or a ``questlab.tasks.Task``;
    it overrides the config's ``task`` (neither: ``quest``).
    """
    from questlab.cv import default_run_name, run_cv, unique_run_name
    from questlab.pseudo import PseudoLabels

    cfg = resolve_config(config, set)
    labels = pseudo if pseudo is None or isinstance(pseudo, PseudoLabels) else PseudoLabels.read(pseudo)
    st = as_store(store, create=True)
    say = console.quiet if quiet else console.stderr
    run_name = unique_run_name(st, name or default_run_name(cfg))
    run_id = run_cv(
        cfg, train, test, store=st, only_folds=folds, say=say, pseudo=labels, name=run_name, task=task
    )  # tags pseudo
    return Run(st.get(run_id), st)


def recipe(
    recipe: str | Path,
    train: DataLike,
    test: DataLike | None = None,
    *,
    submission: str | Path | None = None,
    store: StoreLike = None,
    quiet: bool = False,
) -> Run:
    """Run a recipe (a built-in name such as ``"fast"``, or a recipe YAML path); return its ensemble run.

    Members already recorded with the same config, data and folds are reused, killed ones resumed;
    ``submission`` also writes the ensemble's test predictions there.
    """
    from questlab.recipes import run_recipe

    # run_recipe opens (creates) the store only once the recipe, the data and the submission are checked.
    outcome = run_recipe(
        recipe, train, test, store=store, submission=submission, say=console.quiet if quiet else console.stderr
    )
    st = as_store(store)
    return Run(st.get(outcome.ensemble_id), st)


def load_run(run_id: str, store: StoreLike = None) -> Run:
    """A recorded run by id (or unique prefix)."""
    st = as_store(store)
    return Run(st.get(run_id), st)


def runs(
    store: StoreLike = None,
    sort: str = "start",
    model: str | None = None,
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    status: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """The leaderboard: one row per run, filtered and sorted (see :func:`questlab.leaderboard.leaderboard`)."""
    from questlab.leaderboard import leaderboard

    return leaderboard(as_store(store), sort, model, name, tags, status, limit)


def compare(a: Run | str, b: Run | str, n_boot: int = 1000, store: StoreLike = None) -> Any:
    """Run B against run A: per-target and per-fold deltas with paired bootstrap intervals."""
    from questlab.analysis.compare import compare_runs

    st = a.store if isinstance(a, Run) else b.store if isinstance(b, Run) else as_store(store)
    ids = [x.id if isinstance(x, Run) else x for x in (a, b)]
    return compare_runs(st, ids[0], ids[1], n_boot=n_boot)


def evaluate(model: Run | str | Path | Any, data: DataLike, n_boot: int = 200, store: StoreLike = None) -> Any:
    """Score a run (a ``Run`` or a run id) or a bundle (``ql.load_bundle``'s model, or its folder) on
    labelled pairs: see :meth:`Run.evaluate`."""
    if isinstance(model, str | Path):
        model = load_bundle(model) if Path(model).is_dir() else load_run(str(model), store)
    if isinstance(model, Run):
        return model.evaluate(data, n_boot=n_boot)
    from questlab.evaluation import evaluate as score

    return score(getattr(model, "predictor", model), data, n_boot=n_boot)


def model_params(family: str | None = None) -> pd.DataFrame:
    """Every model family's parameters (or one family's): family, parameter, type, default, meaning.

    Generated from the families' typed params: what a config's ``model.params`` accepts. (Not
    ``ql.models``: that name is the ``questlab.models`` package.)
    """
    from questlab.models.catalog import parameters

    return parameters(family)


def _predict_pairs(predictor: Any, pairs: DataLike) -> pd.DataFrame:
    """Predictions for a file or frame of pairs; a labelled one's targets are dropped, saying so once."""
    from questlab.data import Dataset
    from questlab.predict import predict_file, predict_frame, without_targets

    if isinstance(pairs, pd.DataFrame):
        return predict_frame(predictor, Dataset.read(without_targets(pairs, "DataFrame", console.stderr), "test").frame)
    return predict_file(predictor, Path(pairs), None)


def load_bundle(path: str | Path) -> Any:
    """An exported bundle (or MLflow model folder) as a model: ``predict(frame)`` -> qa_id + 30 columns.

    Files are checked against the bundle's sha256 manifest first; see :mod:`questlab.export`.
    """
    from questlab.bundle import BundleModel

    return BundleModel(Path(path))


__all__ = ["Run", "Verdicts", "compare", "evaluate", "load_bundle", "load_run", "model_params", "recipe", "run", "runs"]
