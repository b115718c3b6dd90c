"""Stacking: a per-target ridge meta-model over the members' out-of-fold predictions.

For target ``t`` the inputs are every member's prediction of ``t`` (as given to the combiner:
values, or with ``average="rank"`` their quantile in that member's stored OOF predictions) and,
with ``related=True``, the members' predictions of the ``RELATED`` other targets whose columns
correlate most with ``t``'s truth on the fitting rows: a member that predicts
``question_type_instructions`` well carries signal about ``answer_type_instructions``, which a
weighted average of ``t``'s own columns cannot use. (All 29 other targets of every member as
inputs fit noise: on synthetic members it cost 0.02 Spearman on the targets without such signal.)

The ridge (scikit-learn ``RidgeCV``, penalty chosen by efficient leave-one-out on the fitting rows)
is fitted on the rows it is given; :func:`questlab.ensemble.combine.nested_fit` hands it the other
folds' OOF rows only, exactly like blend weights. Its output is squashed by a logistic map fixed at
fit time (strictly increasing, so ranks are kept) into (0, 1): clipping would create ties.
That squash is for a rank metric (``metric.rank_based``); under an error metric the ridge's
output is the prediction itself (``squash=False``), clipped to the target's range by the combiner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from questlab.schema import TARGETS

STACK_METHODS = ("stack", "stack+related")  # ridge on each target's own columns; + the other targets'
ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))  # ridge penalties RidgeCV chooses from
RELATED = 3  # other-target columns (member, target) added per target with related=True


def _design(x: np.ndarray, t: int, extra: list[tuple[int, int]]) -> np.ndarray:
    """(n, features) inputs of target ``t``: every member's column ``t``, then the ``extra`` columns."""
    return np.column_stack([x[:, :, t].T, *[x[m, :, u] for m, u in extra]])


def _related_columns(x: np.ndarray, y: np.ndarray, t: int) -> list[tuple[int, int]]:
    """The (member, target) columns of other targets most correlated (absolute) with ``y``."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.abs(np.einsum("mnt,n->mt", xc, yc) / np.sqrt((xc**2).sum(axis=1) * (yc**2).sum()))
    corr = np.nan_to_num(corr, nan=0.0)  # a constant column carries nothing
    corr[:, t] = -1.0  # the own target's columns are always in
    best = np.argsort(corr, axis=None)[::-1][:RELATED]
    return [(int(m), int(u)) for m, u in zip(*np.unravel_index(best, corr.shape), strict=True)]


@dataclass
class TargetStack:
    """One target's fitted meta-model: ridge coefficients, intercept and the logistic squash."""

    coef: list[float]
    intercept: float
    centre: float  # mean of the fitted outputs on the fitting rows
    scale: float  # their standard deviation (1 when they were constant)
    alpha: float | None  # the penalty RidgeCV chose (None: no ridge was fitted)
    extra: list[tuple[int, int]] = field(default_factory=list)  # related (member, target) inputs
    squash: bool = True  # logistic squash into (0, 1) (rank metrics); False: the ridge's values

    def predict(self, design: np.ndarray) -> np.ndarray:
        raw = design @ np.asarray(self.coef) + self.intercept
        if not self.squash:
            return raw
        return 1.0 / (1.0 + np.exp(-(raw - self.centre) / self.scale))

    def to_dict(self) -> dict:
        out = dict(vars(self))
        if self.squash:
            del out["squash"]  # the default: files written before tasks read the same
        return out


@dataclass
class Stacker:
    """One ridge per target over the members' predictions (``related``: all targets' columns)."""

    targets: list[TargetStack]
    related: bool = False
    n_members: int = 0
    notes: list[str] = field(default_factory=list)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n_members, n, n_targets) member predictions -> (n, n_targets) in (0, 1)."""
        if x.shape[0] != self.n_members:
            raise ValueError(f"the stack was fitted on {self.n_members} members, got {x.shape[0]}")
        return np.column_stack([m.predict(_design(x, t, m.extra)) for t, m in enumerate(self.targets)])

    def to_dict(self) -> dict:
        return {
            "related": self.related,
            "n_members": self.n_members,
            "targets": [m.to_dict() for m in self.targets],
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Stacker:
        targets = [TargetStack(**(m | {"extra": [tuple(e) for e in m.get("extra", [])]})) for m in d["targets"]]
        return cls(targets, d["related"], d["n_members"], list(d.get("notes", [])))


def fit_stacker(
    x: np.ndarray, truth: np.ndarray, related: bool, squash: bool = True, names: tuple[str, ...] = TARGETS
) -> Stacker:
    """Fit one ridge per target on these rows: ``x`` (n_members, n, n_targets), ``truth`` (n, n_targets).

    ``squash`` False (an error metric) keeps the ridge's values; ``names`` are the targets' (notes).
    """
    from sklearn.linear_model import RidgeCV

    targets, notes = [], []
    for t in range(truth.shape[1]):
        y = truth[:, t]
        if np.ptp(y) == 0:
            # Nothing to learn (a rare target constant in these rows): fall back to the members' mean.
            design = _design(x, t, [])
            notes.append(f"{_name(t, names)}: truth constant on the fitting rows; the members' mean is used")
            targets.append(_squashed(design, np.full(x.shape[0], 1.0 / x.shape[0]), 0.0, None, [], squash))
            continue
        extra = _related_columns(x, y, t) if related else []
        design = _design(x, t, extra)
        model = RidgeCV(alphas=ALPHAS).fit(design, y)
        targets.append(_squashed(design, model.coef_, float(model.intercept_), float(model.alpha_), extra, squash))
    return Stacker(targets, related, x.shape[0], notes)


def _name(t: int, names: tuple[str, ...] = TARGETS) -> str:
    return names[t] if t < len(names) else f"target {t}"


def _squashed(
    design: np.ndarray,
    coef: np.ndarray,
    intercept: float,
    alpha: float | None,
    extra: list[tuple[int, int]],
    squash: bool = True,
) -> TargetStack:
    raw = design @ coef + intercept
    scale = float(raw.std())
    centre, scale = float(raw.mean()), scale if scale > 0 else 1.0
    return TargetStack([float(c) for c in coef], intercept, centre, scale, alpha, extra, squash)
