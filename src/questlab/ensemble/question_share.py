"""The question is shared: pull a question's ``question_*`` predictions towards their mean over its answers.

Several rows of a QUEST file are answers to the same question, and the 21 ``question_*`` targets
rate the question alone, so all of its answers have the same true value. A model reading the whole
pair predicts them a little differently per answer; that difference is noise. For each question
target a share ``s`` in {0, 0.25, 0.5, 0.75, 1} is chosen on the fitting rows:

    prediction' = (1 - s) * prediction + s * mean of the prediction over the question's answers

and kept only where it beats ``s = 0`` there by more than ``min_gain``. ``answer_*`` targets are
never touched. Rows are grouped as the folds group them (:func:`questlab.folds.question_groups`:
same URL or same title + body), so a question never spans two folds and the nested evaluation in
:mod:`questlab.ensemble.combine` sees each question whole. The mean is over the rows of the batch
being predicted: a question answered once in a batch is left as it is.

For any task: this applies only where the task has groups (rows of one group share the texts of
the first segment, QUEST's question) and to the targets routed to that segment alone
(``task.route_of(t) == "first"``: QUEST's ``question_*``). A task without groups or such targets
has nothing to share (:func:`shared_columns` is empty, and asking for it is refused upstream).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from questlab.metric import spearman_per_target
from questlab.metrics import Metric
from questlab.schema import QUESTION_TARGETS, TARGETS
from questlab.tasks import Task, load_task

SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
MIN_GAIN = 0.001  # metric gain on the fitting rows a target's share must show to be kept
QUESTION_COLUMNS = tuple(TARGETS.index(t) for t in QUESTION_TARGETS)  # QUEST's (0.9.0 name)


def shared_columns(task: Task | None = None) -> tuple[int, ...]:
    """The target columns a group shares: routed to the first segment alone, in a task with groups."""
    task = load_task(task)
    if task.groups is None:
        return ()
    return tuple(i for i, t in enumerate(task.target_names) if task.route_of(t) == "first")


def question_means(pred: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each row's columns replaced by their mean over the rows of its group."""
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)
    sums = np.zeros((len(counts), pred.shape[1]))
    np.add.at(sums, inverse, pred)
    return sums[inverse] / counts[inverse, None]


@dataclass
class QuestionShare:
    """The share of the question mean each target takes (0: untouched), in ``TARGETS`` order."""

    shares: list[float]
    fit_gains: dict[str, float] = field(default_factory=dict)  # target -> gain on the fitting rows
    targets: list[str] = field(default_factory=lambda: list(TARGETS))

    def apply(self, pred: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
        """Shared predictions; ``groups`` None (nothing known of the questions) leaves them as they are."""
        share = np.asarray(self.shares)
        if groups is None or not share.any():
            return pred
        return (1.0 - share) * pred + share * question_means(pred, groups)

    def chosen(self) -> dict[str, float]:
        """The targets that are shared, with their share."""
        return {t: s for t, s in zip(self.targets, self.shares, strict=True) if s > 0}

    def to_dict(self) -> dict:
        return {"shares": dict(zip(self.targets, self.shares, strict=True)), "fit_gains": self.fit_gains}

    @classmethod
    def from_dict(cls, d: dict) -> QuestionShare:
        targets = list(d["shares"])  # written in the task's target order
        return cls([float(d["shares"][t]) for t in targets], dict(d.get("fit_gains", {})), targets)


def _scores(metric: Metric, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    if metric.rank_based:
        rho, _ = spearman_per_target(truth, pred)
        return np.nan_to_num(rho, nan=0.0)  # undefined (constant) columns count 0, as in the score
    values, _ = metric.per_target(truth, pred)
    return values


def fit_question_share(
    pred: np.ndarray, truth: np.ndarray, groups: np.ndarray, min_gain: float = MIN_GAIN, task: Task | None = None
) -> QuestionShare:
    """Choose each shared target's share on these rows (other targets keep 0); ``task`` None is QUEST."""
    task = load_task(task)
    metric = task.scorer
    pred, truth = np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    cols = list(shared_columns(task))
    names = list(task.target_names)
    shares = [0.0] * len(names)
    gains: dict[str, float] = {}
    if not cols:
        return QuestionShare(shares, gains, names)
    means = question_means(pred[:, cols], groups)
    scores = np.array([_scores(metric, truth[:, cols], (1 - s) * pred[:, cols] + s * means) for s in SHARES])
    for j, t in enumerate(cols):
        best = metric.best(scores[:, j])
        gain = float(metric.gain(scores[best, j], scores[0, j]))
        gains[names[t]] = gain
        if gain > min_gain:
            shares[t] = SHARES[best]
    return QuestionShare(shares, gains, names)
