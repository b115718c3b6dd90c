"""The objects the API hands back: :class:`Run` (a recorded run) and :class:`Verdicts` (a diagnosis)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from questlab import console
from questlab.ensemble.report import EnsembleReport
from questlab.rundir import TAG_METRIC, TAG_MODEL, TAG_TASK
from questlab.store import RunRecord, Store

StoreLike = str | Path | Store | None
DataLike = str | Path | pd.DataFrame


class Verdicts(list):
    """``diagnose``'s verdicts: a list of :class:`Verdict` objects that also shows as a table."""

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([v.to_dict() for v in self], columns=["severity", "code", "message", "evidence"])

    def __repr__(self) -> str:
        """One line: how many of each severity, and the codes of the errors and warnings."""
        counts = {s: sum(v.severity == s for v in self) for s in ("error", "warning", "info", "ok")}
        serious = list(dict.fromkeys(v.code for v in self if v.severity in ("error", "warning")))
        listed = f": {', '.join(serious)}" if serious else ""
        return "Verdicts(" + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + listed + ")"

    def _repr_html_(self) -> str:
        """The verdicts as a table (severity, code, message), every cell escaped."""
        return self.to_frame()[["severity", "code", "message"]].to_html(index=False, escape=True)


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
        """The 95% group-bootstrap interval (QUEST: questions) of ``cv``."""
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
        """id -> group (QUEST: question) and fold of each scored row."""
        return self.record.folder.read_oof().set_index(self.task.id)[["group", "fold"]]

    @cached_property
    def truth(self) -> pd.DataFrame:
        """The true ratings of the scored rows, indexed by id like ``oof``."""
        return self.record.folder.read_truth().set_index(self.task.id)[list(self.task.target_names)]

    @property
    def submission(self) -> pd.DataFrame | None:
        """The run's test predictions (the task's id + its targets), if it was given test data."""
        return self.record.folder.read_submission()

    # --- using it ---------------------------------------------------------------------------
    @cached_property
    def predictor(self) -> Any:
        from questlab.predict import load_predictor

        return load_predictor(self.store, self.id)

    def predict(self, pairs: DataLike) -> pd.DataFrame:
        """Predict new pairs (a test-format DataFrame or CSV): the task's id + its targets, submission order.

        A labelled (train-format) input predicts too: its targets are ignored, and a line on stderr says so.
        """
        return _predict_pairs(self.predictor, pairs)

    def evaluate(self, data: DataLike, n_boot: int = 200) -> Any:
        """Score the run's model on labelled pairs (a train-format DataFrame or CSV) against their own
        targets: an :class:`~questlab.evaluation.Evaluation` (score, ci, per_target, n_rows).

        The task's metric as the run's CV computes it, the interval resampling groups (QUEST:
        questions). Rows the run was trained on are counted in ``notes`` (their score is optimistic).
        """
        from questlab.evaluation import evaluate

        return evaluate(
            self.predictor, data, n_boot=n_boot, run_id=self.id, trained_on=self.trained_on(), task=self.task
        )

    def trained_on(self) -> np.ndarray | None:
        """The ids of the rows the run was fitted on (its folds' rows), None where not recorded."""
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

    def report(self, path: str | Path | None = None, open: bool = False, *, n_boot: int = 200,
               train: DataLike | None = None) -> Path:  # fmt: skip
        """Write the run's HTML report (what ``questlab report`` writes): into the run as
        ``report.html``, or to ``path``; ``open`` shows it in a web browser. Returns its path.

        ``train``: the run's own train file, for scores per value of each feature column of the
        task (QUEST: every category, the weakest hosts; none without features).
        """
        from questlab.analysis.run_report import write_run_report

        page = write_run_report(self.store, self.id, n_boot=n_boot, train=train, path=path, option="n_boot")
        if open:
            open_in_browser(page)
        return page

    def refresh(self) -> Run:
        """Re-read the run's record (status, tags, metrics) and drop cached reads."""
        return Run(self.store.get(self.id), self.store)

    @property
    def task_name(self) -> str:
        """The task's name: the run's tag where recorded (no read of its folder), else its task.json."""
        return self.record.tags.get(TAG_TASK) or self.task.name

    def _cv_text(self) -> str | None:
        m = self.record.metrics
        if "cv_score" not in m:
            return None
        low, high = m.get("cv_ci_low", np.nan), m.get("cv_ci_high", np.nan)
        return f"{m['cv_score']:.4f} [{low:.4f}, {high:.4f}]"

    def __repr__(self) -> str:
        """One line: name, id, model, task, CV with its 95% interval, status."""
        cv = self._cv_text()
        return (
            f"Run({self.name!r}, id={self.id[:8]}, model={self.model!r}, task={self.task_name!r}, "
            f"{f'cv={cv}, ' if cv else ''}status={self.status})"
        )

    def _repr_html_(self) -> str:
        metric = self.record.tags.get(TAG_METRIC) or self.task.metric
        rows = [("run", self.id), ("name", self.name), ("model", self.model), ("kind", self.kind),
                ("task", self.task_name), ("status", self.status)]  # fmt: skip
        cv = self._cv_text()
        if cv:
            rows.append((f"CV {metric} [95% CI]", cv))
        return html_table(rows)


def html_table(rows: Sequence[tuple[str, Any]]) -> str:
    """A two-column HTML table (key, value), every cell escaped."""
    body = "".join(
        f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in rows
    )
    return f"<table>{body}</table>"


def open_in_browser(path: Path) -> bool:
    """Open a local file in a web browser; False (saying so on stderr) where there is none."""
    import webbrowser

    opened = webbrowser.open(Path(path).resolve().as_uri())
    if not opened:
        console.stderr(f"no web browser here: open {path} yourself")
    return opened


def _predict_pairs(predictor: Any, pairs: DataLike) -> pd.DataFrame:
    """Predictions for a file or frame of pairs; a labelled one's targets are dropped, saying so once."""
    from questlab.data import Dataset
    from questlab.predict import predict_file, predict_frame, without_targets
    from questlab.predictors import task_of

    if isinstance(pairs, pd.DataFrame):
        task = task_of(predictor)
        unlabelled = without_targets(pairs, "DataFrame", console.stderr, task)
        return predict_frame(predictor, Dataset.read(unlabelled, "test", task).frame)
    return predict_file(predictor, Path(pairs), None)


__all__ = ["DataLike", "Run", "StoreLike", "Verdicts"]
