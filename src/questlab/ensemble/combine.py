"""The ensemble maths: weights on the simplex, rank averaging, post-processing, the nested fit.

An ensemble is a :class:`Combiner` fitted on the members' out-of-fold predictions:

1. each member's predictions, as values or (``average="rank"``) as their quantile in that
   member's stored OOF predictions (so a batch of one row gets the same rank it would get in a
   batch of thousands: ranks never come from the batch being predicted);
2. a weighted mean per target (weights non-negative, summing to 1; one set for all targets or one
   per target; found on OOF by a grid on the simplex, or given);
   or (``method="stack"``) a per-target ridge meta-model over them (:mod:`questlab.ensemble.stack`);
3. optionally the question share (:mod:`questlab.ensemble.question_share`): ``question_*``
   predictions pulled towards their mean over the question's answers in the batch;
4. optionally the per-target post-processing of :mod:`questlab.ensemble.postprocess`.

Whatever is fitted is fitted once per outer fold on the other folds' rows (:func:`nested_fit`),
so the pooled result never saw its own labels. Nothing here reads or writes runs.

The task (``task=None``: QUEST) says which metric every fit and every gain uses. Under a rank
metric (``metric.rank_based``: Spearman) all of the above is as before tasks existed. Under an
error metric (MCRMSE) rank averaging is refused, weights are fitted on the values (a simplex grid
scored by the metric, polished by ``scipy.optimize``), a stack outputs values, and predictions are
clipped to each target's ``[low, high]`` instead of [0, 1].
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

from questlab.ensemble.gains import fold_mean_summary, gain_summary  # noqa: F401  (importable from here)
from questlab.ensemble.postprocess import MIN_GAIN, PostProcessor, check_method, fit_postprocessor
from questlab.ensemble.question_share import QuestionShare, fit_question_share, shared_columns
from questlab.ensemble.stack import STACK_METHODS, Stacker, fit_stacker
from questlab.errors import UsageError
from questlab.metrics import Metric
from questlab.tasks import Task, load_task

AVERAGES = ("value", "rank")
WEIGHT_MODES = ("auto", "equal")  # or an explicit list of numbers, one per member
METHODS = ("weights", *STACK_METHODS)  # how member predictions become one: a weighted mean, or a stack
MAX_GRID = 1000  # simplex points tried when searching weights


def to_quantiles(pred: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each prediction's mid-quantile among the stored reference predictions of its column.

    ``reference`` is (n_ref, 30), each column sorted. Ties count half, so on the reference itself
    this is (rank - 0.5) / n_ref.
    """
    out = np.empty_like(pred, dtype=np.float64)
    for t in range(pred.shape[1]):
        ref = reference[:, t]
        out[:, t] = (np.searchsorted(ref, pred[:, t], "left") + np.searchsorted(ref, pred[:, t], "right")) / (
            2.0 * len(ref)
        )
    return out


def simplex_grid(n_members: int, max_points: int = MAX_GRID) -> np.ndarray:
    """Weight vectors (non-negative, summing to 1) on the finest grid step 1/s (s <= 10) that fits."""
    for steps in range(10, 0, -1):
        points = [c for c in itertools.product(range(steps + 1), repeat=n_members) if sum(c) == steps]
        if len(points) <= max_points:
            return np.array(points, dtype=np.float64) / steps
    return np.eye(n_members)


def _spearman_columns(rank_true_centred: np.ndarray, pred: np.ndarray) -> np.ndarray:
    rp = rankdata(pred, axis=0)
    rp -= rp.mean(axis=0)
    denom = np.sqrt((rank_true_centred**2).sum(axis=0) * (rp**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (rank_true_centred * rp).sum(axis=0) / np.where(denom > 0, denom, 1), 0.0)


def fit_weights(x: np.ndarray, truth: np.ndarray, per_target: bool, metric: Metric | None = None) -> np.ndarray:
    """Grid-search weights on these rows: (n_targets, n_members), rows summing to 1.

    ``x`` is (n_members, n_rows, n_targets). Global weights maximise the mean Spearman; per-target
    ones each column's Spearman. Under an error ``metric`` they are fitted on the values instead
    (:func:`fit_value_weights`).
    """
    if metric is not None and not metric.rank_based:
        return fit_value_weights(x, truth, per_target, metric)
    grid = simplex_grid(x.shape[0])
    rt = rankdata(truth, axis=0)
    rt -= rt.mean(axis=0)
    scores = np.array([_spearman_columns(rt, np.einsum("m,mnt->nt", w, x)) for w in grid])  # (grid, 30)
    if per_target:
        return grid[scores.argmax(axis=0)]
    return np.tile(grid[scores.mean(axis=1).argmax()], (x.shape[2], 1))


def fit_value_weights(x: np.ndarray, truth: np.ndarray, per_target: bool, metric: Metric) -> np.ndarray:
    """Weights of a weighted mean of values that score best under ``metric`` on these rows.

    The best point of the simplex grid (by ``metric.best``), then polished on the simplex by SLSQP
    on the metric itself; the polish is kept only where it scores better.
    """
    grid = simplex_grid(x.shape[0])
    values = np.array([metric.per_target(truth, np.einsum("m,mnt->nt", w, x))[0] for w in grid])  # (grid, t)
    if per_target:
        return np.array(
            [_polish(x[:, :, [t]], truth[:, [t]], grid[metric.best(values[:, t])], metric) for t in range(x.shape[2])]
        )
    start = grid[metric.best([metric.combine(v) for v in values])]
    return np.tile(_polish(x, truth, start, metric), (x.shape[2], 1))


def _polish(x: np.ndarray, truth: np.ndarray, start: np.ndarray, metric: Metric) -> np.ndarray:
    from scipy.optimize import minimize

    if len(start) == 1:
        return start

    def score(w: np.ndarray) -> float:
        return metric.score(truth, np.einsum("m,mnt->nt", w, x))

    res = minimize(
        lambda w: -metric.sign * score(w),
        start,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * len(start),
        constraints=({"type": "eq", "fun": lambda w: w.sum() - 1.0},),
    )
    w = np.clip(res.x, 0.0, None)
    if not np.isfinite(w).all() or w.sum() <= 0:
        return start
    w = w / w.sum()
    return w if metric.better(score(w), score(start)) else start


@dataclass
class Combiner:
    """Everything needed to turn member predictions into ensemble predictions."""

    weights: np.ndarray  # (30, n_members)
    average: str = "value"
    references: list[np.ndarray] | None = None  # per member, sorted OOF predictions (rank averaging)
    postprocessor: PostProcessor | None = None
    stacker: Stacker | None = None  # when set, replaces the weighted mean
    question_share: QuestionShare | None = None
    lows: np.ndarray | None = None  # per target, the range predictions are clipped to (None: [0, 1])
    highs: np.ndarray | None = None

    def clip(self, pred: np.ndarray) -> np.ndarray:
        """``pred`` inside each target's range."""
        if self.lows is None:
            return np.clip(pred, 0.0, 1.0)
        return np.clip(pred, self.lows, self.highs)

    def blend(self, member_preds: np.ndarray) -> np.ndarray:
        """(n_members, n, 30) member predictions -> (n, 30) weighted mean or stack (before sharing)."""
        x = member_preds
        if self.average == "rank":
            x = np.stack([to_quantiles(p, ref) for p, ref in zip(member_preds, self.references, strict=True)])
        if self.stacker is not None:
            return self.stacker.predict(x)
        return np.einsum("tm,mnt->nt", self.weights, x)

    def combine(self, member_preds: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        """Blend, then share question predictions over each question's rows (``groups``), if fitted."""
        pred = self.blend(member_preds)
        if self.question_share is not None:
            pred = self.question_share.apply(pred, groups)
        return pred

    def apply(self, member_preds: np.ndarray, groups: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        """Blend, share (given the rows' question ``groups``), post-process, clip to the targets'
        ranges; also return the constant-column notes."""
        pred = self.combine(member_preds, groups)
        notes: list[str] = []
        if self.postprocessor is not None:
            pred, notes = self.postprocessor.apply(pred)
        return self.clip(pred), notes


@dataclass
class EnsembleSpec:
    """What the user asked for."""

    weights: str | list[float] = "auto"  # "auto", "equal" or one number per member
    per_target: bool = False
    average: str = "value"
    postprocess: str = "none"  # "none" or a questlab.ensemble.postprocess method choice
    min_gain: float = MIN_GAIN  # inner-CV gain a target's map must show to be kept
    seed: int = 0
    method: str = "weights"  # one of METHODS
    question_share: bool = False  # try sharing question predictions over a question's answers

    def check(self, n_members: int, task: Task | None = None) -> None:
        """Refuse settings that do not apply (``task`` None: QUEST), one line each."""
        task = load_task(task)
        metric = task.scorer
        if self.average == "rank" and not metric.rank_based:
            raise UsageError(
                f"rank averaging needs a rank-based metric: task {task.name} scores {metric.name}; use --average value"
            )
        if self.question_share and not shared_columns(task):
            raise UsageError(
                "the question share needs groups and targets reading the first segment alone: "
                f"task {task.name} has none"
            )
        if self.method not in METHODS:
            raise UsageError(f"unknown ensembling method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.method != "weights" and self.weights != "auto":
            raise UsageError(f"weights {self.weights!r} apply to method 'weights'; the {self.method} fits its own")
        if self.average not in AVERAGES:
            raise UsageError(f"unknown averaging {self.average!r}; choose one of {', '.join(AVERAGES)}")
        if self.postprocess != "none":
            check_method(self.postprocess, metric)
        if isinstance(self.weights, str):
            if self.weights not in WEIGHT_MODES:
                raise UsageError(
                    f"unknown weights {self.weights!r}; give one of {', '.join(WEIGHT_MODES)} "
                    "or numbers such as 0.7,0.3"
                )
        else:
            if len(self.weights) != n_members:
                raise UsageError(f"{len(self.weights)} weights given for {n_members} runs")
            if min(self.weights) < 0 or sum(self.weights) <= 0:
                raise UsageError("weights must be non-negative with a positive sum")


def fit_combiner(
    member_preds: np.ndarray,
    truth: np.ndarray,
    groups: np.ndarray,
    spec: EnsembleSpec,
    references: list[np.ndarray] | None,
    task: Task | None = None,
) -> Combiner:
    """Fit weights, then post-processing on the blend, using only these rows (``task`` None: QUEST)."""
    task = load_task(task)
    metric = task.scorer
    n_members, _, n_targets = member_preds.shape
    combiner = Combiner(np.full((n_targets, n_members), 1.0 / n_members), spec.average, references)
    if not metric.rank_based:
        combiner.lows, combiner.highs = task.lows, task.highs
    if spec.method in STACK_METHODS:
        combiner.stacker = fit_stacker(
            _inputs(member_preds, spec, references), truth, spec.method == "stack+related", metric.rank_based,
            task.target_names,
        )  # fmt: skip
    elif isinstance(spec.weights, list):
        w = np.asarray(spec.weights, dtype=np.float64)
        combiner.weights = np.tile(w / w.sum(), (n_targets, 1))
    elif spec.weights == "auto" and n_members > 1:
        combiner.weights = fit_weights(_inputs(member_preds, spec, references), truth, spec.per_target, metric)
    if spec.question_share:
        combiner.question_share = fit_question_share(combiner.blend(member_preds), truth, groups, task=task)
    if spec.postprocess != "none":
        combiner.postprocessor = fit_postprocessor(
            combiner.combine(member_preds, groups), truth, groups, spec.postprocess, min_gain=spec.min_gain,
            seed=spec.seed, task=task,
        )  # fmt: skip
    return combiner


def _inputs(member_preds: np.ndarray, spec: EnsembleSpec, references: list[np.ndarray] | None) -> np.ndarray:
    """The member predictions weights or stacks are fitted on: values, or quantiles in the references."""
    if spec.average == "value":
        return member_preds
    return np.stack([to_quantiles(p, r) for p, r in zip(member_preds, references, strict=True)])


def combiner_state(combiner: Combiner) -> dict:
    """What ``ensemble.json`` records of a combiner beyond weights and averaging (stack, question share)."""
    return {
        "method": "weights" if combiner.stacker is None else ("stack+related" if combiner.stacker.related else "stack"),
        "stack": combiner.stacker.to_dict() if combiner.stacker is not None else None,
        "question_share": combiner.question_share.to_dict() if combiner.question_share is not None else None,
    }


def restore_combiner(
    spec: dict, references: list[np.ndarray] | None, postprocessor: PostProcessor | None, task: Task | None = None
) -> Combiner:
    """The Combiner an ``ensemble.json`` (or a bundle's copy of it) describes (``task`` None: QUEST)."""
    task = load_task(task)
    stack, share = spec.get("stack"), spec.get("question_share")
    ranges = {} if task.scorer.rank_based else {"lows": task.lows, "highs": task.highs}
    return Combiner(
        weights=np.array([spec["weights"][t] for t in task.target_names], dtype=np.float64),
        average=spec["average"],
        references=references,
        postprocessor=postprocessor,
        stacker=Stacker.from_dict(stack) if stack else None,
        question_share=QuestionShare.from_dict(share) if share else None,
        **ranges,
    )


@dataclass
class NestedResult:
    """The nested (honest) and in-sample predictions of a combiner fit on OOF rows."""

    nested: np.ndarray  # fold k's rows combined by a combiner fitted without fold k
    nested_blend: np.ndarray  # the same before post-processing (question share included)
    in_sample: np.ndarray  # every row combined by the combiner fitted on all rows
    final: Combiner  # fitted on all rows: what test predictions use
    notes: list[str] = field(default_factory=list)
    nested_unshared: np.ndarray | None = None  # the nested blend before the question share
    # per target: the outer folds whose combiner mapped it onto the rating levels (post-processing)
    mapped_folds: dict[str, list[int]] = field(default_factory=dict)


def nested_fit(
    member_preds: np.ndarray,
    truth: np.ndarray,
    folds: np.ndarray,
    groups: np.ndarray,
    spec: EnsembleSpec,
    references: list[np.ndarray] | None,
    task: Task | None = None,
) -> NestedResult:
    """Fit once per outer fold without that fold (nested) and once on everything (in-sample)."""
    task = load_task(task)
    nested, nested_blend, unshared = np.empty_like(truth), np.empty_like(truth), np.empty_like(truth)
    notes: list[str] = []
    mapped: dict[str, list[int]] = {}
    for k in np.unique(folds):
        fit_rows, held = folds != k, folds == k
        c = fit_combiner(member_preds[:, fit_rows], truth[fit_rows], groups[fit_rows], spec, references, task)
        unshared[held] = c.blend(member_preds[:, held])
        nested_blend[held] = c.combine(member_preds[:, held], groups[held])
        nested[held], fold_notes = c.apply(member_preds[:, held], groups[held])
        notes += [f"fold {k}: {n}" for n in fold_notes]
        if c.postprocessor is not None:  # what was applied: a map that would make a column constant is not
            changed = np.any(nested[held] != c.clip(nested_blend[held]), axis=0)
            for t in np.flatnonzero(changed):
                mapped.setdefault(task.target_names[t], []).append(int(k))
    final = fit_combiner(member_preds, truth, groups, spec, references, task)
    in_sample, final_notes = final.apply(member_preds, groups)
    if final.postprocessor is not None:
        notes += final.postprocessor.notes
    if final.stacker is not None:
        notes += final.stacker.notes
    return NestedResult(nested, nested_blend, in_sample, final, notes + final_notes, unshared, mapped)
