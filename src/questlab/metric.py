"""The QUEST score: mean over the 30 targets of the Spearman correlation, done carefully.

A target whose prediction is constant has no Spearman (the seed loop got NaN there and then
either crashed or silently skipped it). Here such a target is *reported* with its status and
counts 0 in the mean, so a model cannot look better by giving up on hard targets. A target whose
truth is constant in the scored rows (possible for rare targets in one fold) is reported as
"truth constant" and also counts 0, since no prediction could be ranked against it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from questlab.schema import TARGETS
from questlab.strictjson import number

OK, CONSTANT_PREDICTION, CONSTANT_TRUTH = "ok", "constant prediction", "constant truth"


def is_constant(columns: np.ndarray) -> np.ndarray:
    """Per column: True when every value is the same (to float noise)."""
    return np.ptp(columns, axis=0) <= 1e-12 * np.maximum(1.0, np.abs(columns).max(axis=0))


def _pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    denom = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=0) / denom


def spearman_per_target(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Spearman per column and a status per column (ok / constant prediction / constant truth).

    The returned correlation is NaN exactly where the status is not "ok"; callers decide how to
    count it (``mean_spearman`` counts it as 0).
    """
    y_true, y_pred = _as_2d(y_true, y_pred)
    const_pred, const_true = is_constant(y_pred), is_constant(y_true)
    rho = _pearson_columns(rankdata(y_true, axis=0), rankdata(y_pred, axis=0))
    status = [
        CONSTANT_TRUTH if ct else CONSTANT_PREDICTION if cp else OK
        for ct, cp in zip(const_true, const_pred, strict=True)
    ]
    rho[const_true | const_pred] = np.nan
    return rho, status


def mean_spearman(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The competition score, with undefined (constant) columns counted as 0."""
    rho, _ = spearman_per_target(y_true, y_pred)
    return float(np.nan_to_num(rho, nan=0.0).mean())


def _as_2d(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim == 1:
        y_true, y_pred = y_true[:, None], y_pred[:, None]
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has shape {y_pred.shape}")
    if len(y_true) < 2:
        raise ValueError("need at least 2 rows to compute a Spearman correlation")
    if not np.isfinite(y_pred).all():
        raise ValueError("predictions contain NaN or infinity: fix the model, a score would hide it")
    return y_true, y_pred


class _WeightedRanker:
    """Exact Spearman of bootstrap resamples without re-sorting.

    A resample is a vector of row multiplicities ``w``. Sorting each column once gives its tie
    blocks; the average rank of a block in the resample is the weight of the blocks before it plus
    (block weight + 1) / 2. Pearson of those ranks, weighted by ``w``, is the Spearman of the
    resampled data, ties and duplicates included.
    """

    def __init__(self, values: np.ndarray) -> None:
        m = values.shape[1]
        order = np.argsort(values, axis=0, kind="stable")
        sorted_vals = np.take_along_axis(values, order, axis=0)
        new_block = np.vstack([np.ones((1, m), bool), np.diff(sorted_vals, axis=0) != 0])
        block_in_col = np.cumsum(new_block, axis=0) - 1  # block index within each column
        n_blocks = block_in_col[-1] + 1
        self.offsets = np.concatenate([[0], np.cumsum(n_blocks)[:-1]])
        block_sorted = block_in_col + self.offsets  # global block id, in sorted order
        self.block_of_row = np.empty_like(block_sorted)
        np.put_along_axis(self.block_of_row, order, block_sorted, axis=0)
        self.n_total = int(n_blocks.sum())
        self.col_of_block = np.repeat(np.arange(m), n_blocks)

    def ranks(self, w: np.ndarray) -> np.ndarray:
        m = self.block_of_row.shape[1]
        block_w = np.bincount(self.block_of_row.ravel(), weights=np.repeat(w, m), minlength=self.n_total)
        cum = np.cumsum(block_w)
        col_start = np.concatenate([[0.0], cum])[self.offsets]  # weight before each column's first block
        before = cum - block_w - col_start[self.col_of_block]
        rank_of_block = before + (block_w + 1.0) / 2.0
        return rank_of_block[self.block_of_row]


def _group_weights(groups: np.ndarray, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Row multiplicities of ``n_boot`` resamples that draw whole questions with replacement."""
    _, group_idx = np.unique(groups, return_inverse=True)
    n_groups = group_idx.max() + 1
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        group_counts = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
        yield group_counts[group_idx].astype(np.float64)


def bootstrap_scores(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Mean-Spearman of ``n_boot`` resamples that draw whole questions (groups) with replacement.

    Returns an (n_boot,) array; columns undefined in a resample count 0, as in the score.
    """
    return bootstrap_target_scores(y_true, [y_pred], groups, n_boot=n_boot, seed=seed)[0].mean(axis=1)


def bootstrap_paired(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    groups: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Score of ``pred_b`` minus score of ``pred_a`` on the same ``n_boot`` question resamples.

    Pairing matters: both predictions see the same resampled questions, so the interval of the
    difference is much narrower than the two score intervals suggest (their noise is shared).
    """
    boot_a, boot_b = bootstrap_target_scores(y_true, [pred_a, pred_b], groups, n_boot=n_boot, seed=seed)
    return boot_b.mean(axis=1) - boot_a.mean(axis=1)


def bootstrap_target_scores(
    y_true: np.ndarray,
    y_preds: list[np.ndarray],
    groups: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[np.ndarray]:
    """Per-target Spearman of ``n_boot`` question resamples, one (n_boot, n_targets) array per prediction.

    Every prediction in ``y_preds`` is scored on the *same* resamples, so differences between
    them are paired by row: the interval of ``out[1] - out[0]`` is the interval of "B minus A".
    Columns undefined in a resample (constant) count 0, as in the score.
    """
    checked = [_as_2d(y_true, p) for p in y_preds]
    y_true = checked[0][0]
    rank_true = _WeightedRanker(y_true)
    rank_preds = [_WeightedRanker(p) for _, p in checked]
    out = [np.empty((n_boot, y_true.shape[1])) for _ in y_preds]
    for b, w in enumerate(_group_weights(groups, n_boot, seed)):
        total = w.sum()
        rt = rank_true.ranks(w)
        rt = rt - (w @ rt) / total
        var_t = w @ (rt * rt)
        for ranker, res in zip(rank_preds, out, strict=True):
            rp = ranker.ranks(w)
            rp = rp - (w @ rp) / total
            cov = w @ (rt * rp)
            denom = np.sqrt(var_t * (w @ (rp * rp)))
            with np.errstate(invalid="ignore", divide="ignore"):
                res[b] = np.where(denom > 1e-12, cov / np.where(denom > 0, denom, 1.0), 0.0)
    return out


def fold_mean_score(y_true: np.ndarray, y_pred: np.ndarray, folds: np.ndarray) -> float:
    """The mean over folds of each fold's score: the textbook nested-CV estimate.

    The pooled score ranks rows of different fitted models against each other. Where those models
    map a target differently (one fold's post-processing onto the rating levels, another's left
    continuous) the pooled Spearman mixes two scales and understates both; each fold's own score
    is what one fitted model gets on questions it never saw, as on a test file.
    """
    return float(np.mean([mean_spearman(y_true[folds == k], y_pred[folds == k]) for k in np.unique(folds)]))


def bootstrap_fold_means(
    y_true: np.ndarray,
    y_preds: list[np.ndarray],
    folds: np.ndarray,
    groups: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[np.ndarray]:
    """Fold-mean score of each prediction on ``n_boot`` resamples, one (n_boot,) array each.

    Each resample draws whole questions with replacement *within* every fold, so a fold keeps its
    size and its own fitted model; all predictions see the same resamples (paired differences).
    """
    ks = np.unique(folds)
    out = [np.zeros(n_boot) for _ in y_preds]
    for i, k in enumerate(ks):
        sel = folds == k
        boots = bootstrap_target_scores(y_true[sel], [p[sel] for p in y_preds], groups[sel], n_boot, seed + i)
        for acc, b in zip(out, boots, strict=True):
            acc += b.mean(axis=1) / len(ks)
    return out


@dataclass
class CVScore:
    """Everything a run reports about its score."""

    score: float  # mean Spearman over the 30 targets on all out-of-fold rows (constants count 0)
    ci_low: float  # bootstrap 95% interval, resampling questions
    ci_high: float
    per_target: pd.DataFrame  # index: target; columns: spearman, status
    per_fold: pd.DataFrame  # index: fold; columns: score, n_rows, n_constant_pred, n_constant_truth
    per_fold_target: pd.DataFrame  # index: fold; columns: the targets (NaN where undefined)
    per_fold_status: pd.DataFrame  # index: fold; columns: the targets; values: status
    n_boot: int = 0
    notes: list[str] = field(default_factory=list)

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
        per_target["spearman"] = per_target["spearman"].astype(np.float64)  # all null: object column
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
        )


def constant_in_every_fold(y_pred: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Columns whose out-of-fold predictions are constant inside every fold.

    Such a column only varies *between* folds (each fold model predicting its own train mean,
    say): its pooled Spearman would rank fold offsets, not rows. It is a constant prediction and
    counts 0 wherever a run is scored or compared.
    """
    return np.all([is_constant(y_pred[folds == k]) for k in np.unique(folds)], axis=0)


def without_fold_offsets(y_pred: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """``y_pred`` with each column that is constant inside every fold made constant overall.

    Pooled, such a column would rank fold offsets, not rows; :func:`score_cv` counts it 0, and
    :func:`mean_spearman` of the returned array does too (a report's figures then match the run's).
    """
    cols = constant_in_every_fold(y_pred, folds)
    if not cols.any():
        return y_pred
    out = np.array(y_pred, dtype=np.float64, copy=True)
    out[:, cols] = 0.0
    return out


def score_cv(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    folds: np.ndarray,
    groups: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    targets: tuple[str, ...] = TARGETS,
) -> CVScore:
    """Score out-of-fold predictions overall, per target, per fold, with a bootstrap interval."""
    rho, status = spearman_per_target(y_true, y_pred)
    for j in np.flatnonzero(constant_in_every_fold(y_pred, folds)):
        if status[j] == OK:
            rho[j], status[j] = np.nan, CONSTANT_PREDICTION
    per_target = pd.DataFrame({"spearman": rho, "status": status}, index=pd.Index(targets, name="target"))
    fold_rows, fold_target, fold_status = [], {}, {}
    for k in np.unique(folds):
        sel = folds == k
        r, s = spearman_per_target(y_true[sel], y_pred[sel])
        fold_target[int(k)] = dict(zip(targets, r, strict=True))
        fold_status[int(k)] = dict(zip(targets, s, strict=True))
        fold_rows.append(
            {
                "fold": int(k),
                "score": float(np.nan_to_num(r, nan=0.0).mean()),
                "n_rows": int(sel.sum()),
                "n_constant_pred": s.count(CONSTANT_PREDICTION),
                "n_constant_truth": s.count(CONSTANT_TRUTH),
            }
        )
    if n_boot:
        # Columns that count 0 count 0 in every resample too.
        counted = np.isfinite(rho)
        if counted.any():
            boots = bootstrap_scores(y_true[:, counted], y_pred[:, counted], groups, n_boot=n_boot, seed=seed)
            boots = boots * counted.sum() / len(targets)
        else:
            boots = np.zeros(n_boot)
    else:
        boots = np.array([np.nan])
    notes = []
    n_const = status.count(CONSTANT_PREDICTION)
    if n_const:
        notes.append(f"{n_const} target(s) have constant predictions and count 0 in the mean")
    return CVScore(
        score=float(np.nan_to_num(rho, nan=0.0).mean()),
        ci_low=float(np.percentile(boots, 2.5)),
        ci_high=float(np.percentile(boots, 97.5)),
        per_target=per_target,
        per_fold=pd.DataFrame(fold_rows).set_index("fold"),
        per_fold_target=pd.DataFrame.from_dict(fold_target, orient="index").rename_axis("fold"),
        per_fold_status=pd.DataFrame.from_dict(fold_status, orient="index").rename_axis("fold"),
        n_boot=n_boot,
        notes=notes,
    )
