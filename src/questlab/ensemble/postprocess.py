"""Per-target post-processing: map predictions onto the rating levels, only where it helps.

Each QUEST target is the mean of a few raters' answers, so it takes a handful of values
(0, 1/3, 1/2, 2/3, 1, ...). Spearman rewards predictions that tie where the truth ties, so a
monotone step map from predictions to those levels can raise the score. Two ways to place the
steps, both learned from (OOF prediction, truth) pairs of the fitting rows only:

- ``distribution``: distribution matching. The share of rows given each level equals the share
  of that level in the fitting rows' truth: the steps sit at the matching quantiles of the
  predictions.
- ``thresholds``: optimised thresholds. Starting from the distribution-matching steps, each step
  is moved (coordinate ascent) to the position that maximises Spearman on the fitting rows; a
  step may merge two levels, which is how a heavily imbalanced target ends up with a large tie.
- ``identity``: leave the column as it is.

Those two are rank maps, for a rank-based metric (``metric.rank_based``). For an error metric
(MCRMSE) predictions are always clipped to each target's ``[low, high]`` first, then per target:

- ``snap``: round to the nearest of the target's levels (ordinal targets only);
- ``shrink``: move a share ``s`` of the way to the nearest level (``s`` fitted on the fitting rows).

A :class:`PostProcessor` holds one map per target. :func:`fit_postprocessor` chooses the method
per target by an inner cross-validation over question groups *inside the fitting rows*: a method
is kept only where it beats identity on rows it was not fitted on. A map that would make its
column constant is replaced by identity, and the note says so. How much all this is worth is
measured elsewhere (``questlab.ensemble``) with folds nested around the whole fit.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from questlab.errors import UsageError
from questlab.metric import spearman_per_target
from questlab.metrics import Metric
from questlab.schema import TARGETS
from questlab.strictjson import strict_json
from questlab.tasks import Task, load_task

IDENTITY, DISTRIBUTION, THRESHOLDS = "identity", "distribution", "thresholds"
SNAP, SHRINK = "snap", "shrink"  # level maps for error metrics
METHODS: tuple[str, ...] = (IDENTITY, DISTRIBUTION, THRESHOLDS)
VALUE_METHODS: tuple[str, ...] = (IDENTITY, SNAP, SHRINK)
# What a user may ask for: "auto" lets each target pick among all methods (identity included).
CHOICES: dict[str, tuple[str, ...]] = {
    "auto": METHODS,
    DISTRIBUTION: (IDENTITY, DISTRIBUTION),
    THRESHOLDS: (IDENTITY, THRESHOLDS),
    IDENTITY: (IDENTITY,),
}
# The same for an error metric: maps move values towards the target's levels.
VALUE_CHOICES: dict[str, tuple[str, ...]] = {
    "auto": VALUE_METHODS,
    SNAP: (IDENTITY, SNAP),
    SHRINK: (IDENTITY, SHRINK),
    IDENTITY: (IDENTITY,),
}
SHRINKS = (0.25, 0.5, 0.75)  # shares of the way to the nearest level a shrink map may take

MIN_GAIN = 0.01  # inner-CV Spearman gain over identity a target's map must show to be kept
GRID_STEPS = 50  # optimised thresholds sit on the 2% quantiles of the fitting predictions


def check_method(method: str, metric: Metric | None = None) -> tuple[str, ...]:
    """The candidate methods for a user's ``--method`` under ``metric`` (None: a rank metric, as
    QUEST's); a bad value lists the accepted ones."""
    choices = CHOICES if metric is None or metric.rank_based else VALUE_CHOICES
    if method not in choices:
        kind = "" if metric is None else f" with metric {metric.name}"
        raise UsageError(f"unknown post-processing method {method!r}{kind}; choose one of {', '.join(choices)}")
    return choices[method]


@dataclass
class LevelMap:
    """One target's monotone map. ``identity`` passes values through; otherwise a step map:
    a prediction ``p`` becomes ``levels[i]`` where ``i`` counts the thresholds ``<= p``."""

    method: str = IDENTITY
    thresholds: list[float] = field(default_factory=list)  # increasing, len(levels) - 1
    levels: list[float] = field(default_factory=list)
    shrink: float = 1.0  # the share of the way to the step's level taken (1: all the way; ``shrink`` maps)

    def apply(self, pred: np.ndarray) -> np.ndarray:
        pred = np.asarray(pred, dtype=np.float64)
        if self.method == IDENTITY:
            return pred
        stepped = np.asarray(self.levels)[np.searchsorted(self.thresholds, pred, side="right")]
        if self.shrink == 1.0:
            return stepped
        return pred + self.shrink * (stepped - pred)

    def to_dict(self) -> dict:
        out = {"method": self.method, "thresholds": self.thresholds, "levels": self.levels}
        if self.shrink != 1.0:
            out["shrink"] = self.shrink  # only where used: QUEST's files stay as they were
        return out


def nearest_level_map(levels: tuple[float, ...] | list[float], method: str = SNAP, shrink: float = 1.0) -> LevelMap:
    """A map sending a value (a share ``shrink`` of the way) to its nearest level: steps at the midpoints."""
    lv = [float(v) for v in levels]
    mids = [(a + b) / 2.0 for a, b in itertools.pairwise(lv)]
    return LevelMap(method, mids, lv, shrink)


class _SortedFit:
    """The fitting rows sorted by prediction, with what step placement needs precomputed.

    A step map is a list of cut positions in this order; bucket ``j`` is rows
    ``bounds[j]:bounds[j+1]``. Its Spearman with the truth follows from per-bucket counts and
    truth-rank sums (prefix sums), so a cut can be tried at every position in O(1) each.
    """

    def __init__(self, pred: np.ndarray, truth: np.ndarray) -> None:
        order = np.argsort(pred, kind="stable")
        self.pred = pred[order]
        self.n = len(pred)
        rank_true = rankdata(truth)
        self.mu = (self.n + 1) / 2.0
        self.prefix = np.concatenate([[0.0], np.cumsum(rank_true[order])])
        self.var_true = float(((rank_true - self.mu) ** 2).sum())
        # A cut may only fall between two different prediction values, else the thresholds (in
        # value space) could not reproduce it.
        self.valid = np.concatenate([[True], np.diff(self.pred) > 0, [True]])
        self.valid_pos = np.flatnonzero(self.valid)
        # Thresholds may only sit on a coarse grid of quantiles: free placement at any of ~4,000
        # positions fits noise in the rare levels (seen on TF-IDF OOF: nested loss on rare targets).
        self.grid_pos = np.unique(self.snap(np.rint(np.linspace(0, 1, GRID_STEPS + 1) * self.n).astype(np.int64)))
        self.levels = np.unique(truth)
        self.level_share = np.cumsum([np.mean(truth == v) for v in self.levels])

    def snap(self, positions: np.ndarray) -> np.ndarray:
        """Move each position to the nearest valid cut position."""
        idx = np.clip(np.searchsorted(self.valid_pos, positions), 1, len(self.valid_pos) - 1)
        left, right = self.valid_pos[idx - 1], self.valid_pos[idx]
        return np.where(positions - left <= right - positions, left, right)

    def _terms(self, start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Covariance and prediction-variance contributions of buckets ``start:stop``."""
        count = stop - start
        centred = start + (count + 1) / 2.0 - self.mu  # the bucket's tied rank, centred
        return centred * (self.prefix[stop] - self.prefix[start]), count * centred**2

    def spearman(self, bounds: np.ndarray) -> float:
        cov, var = self._terms(bounds[:-1], bounds[1:])
        denom = np.sqrt(var.sum() * self.var_true)
        return float(cov.sum() / denom) if denom > 0 else 0.0

    def optimise(self, bounds: np.ndarray, passes: int = 4) -> np.ndarray:
        """Coordinate ascent: move each inner cut to its best position between its neighbours."""
        bounds = bounds.copy()
        best = self.spearman(bounds)
        for _ in range(passes):
            before = best
            for i in range(1, len(bounds) - 1):
                lo, hi = bounds[i - 1], bounds[i + 1]
                cand = np.unique(np.r_[lo, hi, self.grid_pos[(self.grid_pos >= lo) & (self.grid_pos <= hi)]])
                cov_all, var_all = self._terms(bounds[:-1], bounds[1:])
                keep = np.ones(len(cov_all), bool)
                keep[[i - 1, i]] = False
                c1, v1 = self._terms(np.full_like(cand, lo), cand)
                c2, v2 = self._terms(cand, np.full_like(cand, hi))
                var = var_all[keep].sum() + v1 + v2
                with np.errstate(invalid="ignore", divide="ignore"):
                    rho = np.where(var > 0, (cov_all[keep].sum() + c1 + c2) / np.sqrt(var * self.var_true), -np.inf)
                j = int(np.argmax(rho))
                if rho[j] > best + 1e-12:
                    best, bounds[i] = float(rho[j]), cand[j]
            if best <= before + 1e-12:
                break
        return bounds

    def distribution_bounds(self) -> np.ndarray:
        inner = self.snap(np.rint(self.level_share[:-1] * self.n).astype(np.int64))
        return np.concatenate([[0], np.maximum.accumulate(inner), [self.n]])

    def to_map(self, method: str, bounds: np.ndarray) -> LevelMap:
        """Thresholds in prediction space for the non-empty buckets (empty ones drop out)."""
        nonempty = np.flatnonzero(np.diff(bounds) > 0)
        starts = bounds[nonempty][1:]  # first sorted row of each non-empty bucket after the first
        thresholds = (self.pred[starts - 1] + self.pred[starts]) / 2.0
        return LevelMap(method, thresholds.tolist(), self.levels[nonempty].tolist())


def fit_level_map(pred: np.ndarray, truth: np.ndarray, method: str) -> LevelMap:
    """Fit one target's map of the given method on (prediction, truth) pairs."""
    pred, truth = np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if method == IDENTITY or len(np.unique(truth)) < 2 or len(np.unique(pred)) < 2:
        return LevelMap()
    fit = _SortedFit(pred, truth)
    bounds = fit.distribution_bounds()
    if method == THRESHOLDS:
        bounds = fit.optimise(bounds)
    elif method != DISTRIBUTION:
        raise UsageError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return fit.to_map(method, bounds)


def _per_target_spearman(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    rho, _ = spearman_per_target(truth, pred)
    return np.nan_to_num(rho, nan=0.0)  # undefined (constant) columns count 0, as in the score


def inner_group_folds(groups: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Assign each row an inner fold so that a question group never spans two folds."""
    uniq = np.unique(groups)
    rng = np.random.default_rng(seed)
    fold_of_group = dict(zip(rng.permutation(uniq), np.arange(len(uniq)) % n_folds, strict=True))
    return np.array([fold_of_group[g] for g in groups])


@dataclass
class PostProcessor:
    """One :class:`LevelMap` per target (in the task's target order) and the notes of its fitting.

    ``lows``/``highs`` are set for an error metric: predictions are clipped to them before mapping
    (a rank metric's maps see the values as they are, as before tasks existed).
    """

    maps: list[LevelMap]
    method: str = "auto"  # what was asked for
    notes: list[str] = field(default_factory=list)
    inner_scores: dict[str, list[float]] = field(default_factory=dict)  # method -> per-target inner CV
    targets: list[str] = field(default_factory=lambda: list(TARGETS))
    lows: list[float] | None = None
    highs: list[float] | None = None

    def apply(self, pred: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Map each column; under a rank metric a column the map would make constant is left as is,
        with a note (an error metric scores a constant column like any other)."""
        pred = np.asarray(pred, dtype=np.float64)
        if self.lows is not None:
            pred = np.clip(pred, self.lows, self.highs)
        out = pred.copy()
        notes = []
        for t, m in enumerate(self.maps):
            mapped = m.apply(pred[:, t])
            if self.lows is None and len(pred) > 1 and np.ptp(pred[:, t]) > 0 and np.ptp(mapped) == 0:
                notes.append(f"{self.targets[t]}: the {m.method} map made the column constant; left as is")
                continue
            out[:, t] = mapped
        return out, notes

    def chosen(self) -> dict[str, str]:
        """The method each target ended up with."""
        return {t: m.method for t, m in zip(self.targets, self.maps, strict=True)}

    def to_dict(self) -> dict:
        out = {
            "method": self.method,
            "targets": {t: m.to_dict() for t, m in zip(self.targets, self.maps, strict=True)},
            "inner_scores": self.inner_scores,
            "notes": self.notes,
        }
        if self.lows is not None:
            out |= {"lows": self.lows, "highs": self.highs}
        return out

    @classmethod
    def from_dict(cls, d: dict) -> PostProcessor:
        targets = list(d["targets"])  # written in the task's target order
        maps = [LevelMap(**d["targets"][t]) for t in targets]
        return cls(
            maps, d.get("method", "auto"), list(d.get("notes", [])), d.get("inner_scores", {}), targets,
            d.get("lows"), d.get("highs"),
        )  # fmt: skip

    def save(self, path: Path) -> None:
        Path(path).write_text(strict_json(self.to_dict()))

    @classmethod
    def load(cls, path: Path) -> PostProcessor:
        return cls.from_dict(json.loads(Path(path).read_text()))


def fit_postprocessor(
    pred: np.ndarray,
    truth: np.ndarray,
    groups: np.ndarray,
    method: str = "auto",
    inner_folds: int = 5,
    min_gain: float = MIN_GAIN,
    seed: int = 0,
    task: Task | None = None,
) -> PostProcessor:
    """Choose and fit a map per target on these rows only.

    The choice is made by ``inner_folds``-fold CV over groups within the rows: each candidate is
    fitted on the inner-train rows and scored (the task's metric, per target) on the
    inner-held-out rows; a target keeps identity unless the best method beats it by more than
    ``min_gain`` on average (``metric.gain``; a negative ``min_gain`` forces a mapping wherever one
    can be fitted). The chosen method is then refitted on all the rows. ``task`` None is QUEST.
    """
    task = load_task(task)
    metric = task.scorer
    candidates = check_method(method, metric)
    pred, truth = np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    lows = highs = None
    if not metric.rank_based:  # an error metric: values outside the range only cost
        lows, highs = task.lows.tolist(), task.highs.tolist()
        pred = np.clip(pred, lows, highs)
    n_targets = pred.shape[1]
    names = list(task.target_names)
    inner = inner_group_folds(np.asarray(groups), inner_folds, seed)
    scores = {m: np.zeros(n_targets) for m in (IDENTITY, *candidates)}
    for k in range(inner_folds):
        fit_rows, held = inner != k, inner == k
        for m in candidates:
            mapped = np.column_stack(
                [
                    _fit_map(task, t, pred[fit_rows, t], truth[fit_rows, t], m).apply(pred[held, t])
                    for t in range(n_targets)
                ]
            )
            scores[m] += _per_target(metric, truth[held], mapped) / inner_folds
    maps, notes = [], []
    others = [m for m in candidates if m != IDENTITY]
    for t in range(n_targets):
        best = others[metric.best([scores[m][t] for m in others])] if others else IDENTITY
        if best == IDENTITY or metric.gain(scores[best][t], scores[IDENTITY][t]) <= min_gain:
            maps.append(LevelMap())
            continue
        level_map = _fit_map(task, t, pred[:, t], truth[:, t], best)
        if metric.rank_based and np.ptp(level_map.apply(pred[:, t])) == 0:
            # Never hand back a constant column: Spearman is undefined there and counts 0.
            notes.append(f"{names[t]}: the {best} map made the column constant; identity kept")
            level_map = LevelMap()
        maps.append(level_map)
    return PostProcessor(maps, method, notes, {m: s.tolist() for m, s in scores.items()}, names, lows, highs)


def _per_target(metric: Metric, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    if metric.rank_based:
        return _per_target_spearman(truth, pred)  # QUEST's figures, exactly as before tasks
    values, _ = metric.per_target(truth, pred)
    return values


def _fit_map(task: Task, t: int, pred: np.ndarray, truth: np.ndarray, method: str) -> LevelMap:
    """One target's map: a rank map (fitted on the truth's levels) or a value map to the task's levels."""
    if method in (IDENTITY, DISTRIBUTION, THRESHOLDS):
        return fit_level_map(pred, truth, method)
    levels = task.targets[t].levels
    if not levels:  # a continuous target: nothing to snap to
        return LevelMap()
    if method == SNAP:
        return nearest_level_map(levels)
    # shrink: the share scoring best on these rows; it is kept only where inner CV says it helps
    full = nearest_level_map(levels).apply(pred)
    scores = [task.scorer.per_target(truth[:, None], (pred + s * (full - pred))[:, None])[0][0] for s in SHRINKS]
    return nearest_level_map(levels, SHRINK, SHRINKS[task.scorer.best(scores)])
