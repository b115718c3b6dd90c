"""What every metric offers, and the CV score record they all fill.

A metric is scored per target (a value and a status each: "ok", or why the value is undefined),
then combined into one number; its bootstrap resamples draw whole groups with replacement (rows,
where the task has no groups). ``higher_is_better`` is the only place a direction lives:
``gain``, ``better`` and ``best`` turn it into the comparisons that leaderboards, tuning, early
stopping, ensemble weights and every "gain" use.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from questlab.strictjson import number

OK, CONSTANT_PREDICTION, CONSTANT_TRUTH = "ok", "constant prediction", "constant truth"


def group_weights(groups: np.ndarray, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Row multiplicities of ``n_boot`` resamples that draw whole groups with replacement."""
    _, group_idx = np.unique(groups, return_inverse=True)
    n_groups = group_idx.max() + 1
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        group_counts = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
        yield group_counts[group_idx].astype(np.float64)


def as_2d(y_true: np.ndarray, y_pred: np.ndarray, what: str = "a score") -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as float64 (n, targets), checked: same shape, 2+ rows, finite predictions."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim == 1:
        y_true, y_pred = y_true[:, None], y_pred[:, None]
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has shape {y_pred.shape}")
    if len(y_true) < 2:
        raise ValueError(f"need at least 2 rows to compute {what}")
    if not np.isfinite(y_pred).all():
        raise ValueError("predictions contain NaN or infinity: fix the model, a score would hide it")
    return y_true, y_pred


class Metric(ABC):
    """One way to score predictions of several targets: per target, combined, resampled."""

    name: str
    higher_is_better: bool
    column: str  # the per-target value's name in scores (``spearman``, ``rmse``)
    rank_based: bool  # only the order of each column's predictions counts (rank maps, rank averages)

    @property
    def label(self) -> str:
        """What printed lines call the score ("mean Spearman", "mcrmse")."""
        return self.name

    @property
    def sign(self) -> float:
        """+1 where higher is better, -1 where lower is: ``sign * score`` is always "higher is better"."""
        return 1.0 if self.higher_is_better else -1.0

    def gain(self, new: float, old: float) -> float:
        """How much better ``new`` is than ``old`` (negative when worse), in the metric's units."""
        return self.sign * (new - old)

    def better(self, a: float, b: float) -> bool:
        """True when score ``a`` is strictly better than ``b``."""
        return self.gain(a, b) > 0

    def best(self, scores: Sequence[float]) -> int:
        """The index of the best of ``scores`` (the first on ties)."""
        values = self.sign * np.asarray(scores, dtype=np.float64)
        return int(np.argmax(values))

    @property
    def worst(self) -> float:
        """A value every real score beats (for "nothing yet")."""
        return -np.inf if self.higher_is_better else np.inf

    @abstractmethod
    def per_target(self, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """A value and a status per target; the value is NaN exactly where the status is not "ok"."""

    @abstractmethod
    def combine(self, values: np.ndarray) -> float:
        """The overall score from per-target values (how undefined ones count is the metric's)."""

    def score(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        """The score of ``y_pred`` against ``y_true`` (2+ rows, same shape)."""
        values, _ = self.per_target(y_true, y_pred)
        return self.combine(values)

    def per_target_cv(self, y_true: np.ndarray, y_pred: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Per-target values of pooled out-of-fold predictions (a metric may mark more undefined)."""
        return self.per_target(y_true, y_pred)

    def notes(self, status: list[str]) -> list[str]:
        """What a report should say about the targets' statuses (nothing, by default)."""
        return []

    @abstractmethod
    def bootstrap_targets(
        self, y_true: np.ndarray, y_preds: list[np.ndarray], groups: np.ndarray, n_boot: int = 1000, seed: int = 0
    ) -> list[np.ndarray]:
        """Per-target values on ``n_boot`` group resamples, one (n_boot, n_targets) array per prediction.

        Every prediction is scored on the same resamples: differences between them are paired.
        """

    def bootstrap_overall(
        self, y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, counted: np.ndarray, n_boot: int, seed: int
    ) -> np.ndarray:
        """The overall score on ``n_boot`` resamples, targets not ``counted`` counting as undefined."""
        boots = self.bootstrap_targets(y_true, [y_pred], groups, n_boot=n_boot, seed=seed)[0]
        boots[:, ~counted] = np.nan
        return np.array([self.combine(row) for row in boots])

    def score_cv(
        self,
        y_true: np.ndarray,
        y_pred: np.ndarray,
        folds: np.ndarray,
        groups: np.ndarray,
        targets: Sequence[str],
        n_boot: int = 1000,
        seed: int = 0,
    ) -> CVScore:
        """Score out-of-fold predictions overall, per target, per fold, with a bootstrap interval."""
        targets = tuple(targets)
        values, status = self.per_target_cv(y_true, y_pred, folds)
        per_target = pd.DataFrame({self.column: values, "status": status}, index=pd.Index(targets, name="target"))
        fold_rows, fold_target, fold_status = [], {}, {}
        for k in np.unique(folds):
            sel = folds == k
            r, s = self.per_target(y_true[sel], y_pred[sel])
            fold_target[int(k)] = dict(zip(targets, r, strict=True))
            fold_status[int(k)] = dict(zip(targets, s, strict=True))
            fold_rows.append(
                {
                    "fold": int(k),
                    "score": self.combine(r),
                    "n_rows": int(sel.sum()),
                    "n_constant_pred": s.count(CONSTANT_PREDICTION),
                    "n_constant_truth": s.count(CONSTANT_TRUTH),
                }
            )
        boots = (
            self.bootstrap_overall(y_true, y_pred, groups, np.isfinite(values), n_boot, seed)
            if n_boot
            else np.array([np.nan])
        )
        notes = self.notes(status)
        return CVScore(
            score=self.combine(values),
            ci_low=float(np.percentile(boots, 2.5)),
            ci_high=float(np.percentile(boots, 97.5)),
            per_target=per_target,
            per_fold=pd.DataFrame(fold_rows).set_index("fold"),
            per_fold_target=pd.DataFrame.from_dict(fold_target, orient="index").rename_axis("fold"),
            per_fold_status=pd.DataFrame.from_dict(fold_status, orient="index").rename_axis("fold"),
            n_boot=n_boot,
            notes=notes,
            metric=self.name,
        )


@dataclass
class CVScore:
    """Everything a run reports about its score."""

    score: float  # the metric over all out-of-fold rows (undefined targets count as the metric says)
    ci_low: float  # bootstrap 95% interval, resampling groups (rows where the task has none)
    ci_high: float
    per_target: pd.DataFrame  # index: target; columns: the metric's value column (spearman, rmse), status
    per_fold: pd.DataFrame  # index: fold; columns: score, n_rows, n_constant_pred, n_constant_truth
    per_fold_target: pd.DataFrame  # index: fold; columns: the targets (NaN where undefined)
    per_fold_status: pd.DataFrame  # index: fold; columns: the targets; values: status
    n_boot: int = 0
    notes: list[str] = field(default_factory=list)
    metric: str = "spearman"  # the metric's name (records written before tasks hold Spearman)

    @property
    def target_values(self) -> pd.Series:
        """The per-target values (NaN where undefined), whatever the metric's column is called."""
        return self.per_target.drop(columns="status").iloc[:, 0]

    def to_dict(self) -> dict:
        return {
            "score": self.score,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n_boot": self.n_boot,
            "per_target": self.per_target.reset_index().to_dict(orient="records"),
            "per_fold": self.per_fold.reset_index().to_dict(orient="records"),
            "per_fold_target": {
                str(k): {t: (None if np.isnan(v) else float(v)) for t, v in row.items()}
                for k, row in self.per_fold_target.iterrows()
            },
            "per_fold_status": {str(k): row.to_dict() for k, row in self.per_fold_status.iterrows()},
            "notes": self.notes,
            "metric": self.metric,
        }

    @classmethod
    def from_dict(cls, d: dict) -> CVScore:
        """Read back ``to_dict`` from scores.json: ``null`` (undefined) is NaN again; so is an old file's NaN."""
        pft = pd.DataFrame.from_dict(
            {int(k): {t: number(v) for t, v in row.items()} for k, row in d["per_fold_target"].items()},
            orient="index",
        )
        pfs = pd.DataFrame.from_dict({int(k): row for k, row in d["per_fold_status"].items()}, orient="index")
        per_target = pd.DataFrame(d["per_target"]).set_index("target")
        per_fold = pd.DataFrame(d["per_fold"]).set_index("fold")
        column = next(c for c in per_target.columns if c != "status")
        per_target[column] = per_target[column].astype(np.float64)  # all null: object column
        per_fold["score"] = per_fold["score"].astype(np.float64)
        return cls(
            score=number(d["score"]),
            ci_low=number(d["ci_low"]),
            ci_high=number(d["ci_high"]),
            per_target=per_target,
            per_fold=per_fold,
            per_fold_target=pft.rename_axis("fold"),
            per_fold_status=pfs.rename_axis("fold"),
            n_boot=d.get("n_boot", 0),
            notes=list(d.get("notes", [])),
            metric=d.get("metric", "spearman"),
        )
