"""The ensemble report: what combining runs gained, measured nested (honest) and in-sample (not).

``build_ensemble`` returns one; the run keeps it as ``report`` in its ``ensemble.json``; the CLI
prints it with one printer. Gains are summaries as :func:`~questlab.ensemble.combine.gain_summary`
and :func:`~questlab.ensemble.combine.fold_mean_summary` return them (``gain``, and ``ci_low`` /
``ci_high`` or ``gain_ci_low`` / ``gain_ci_high`` where resampled). It also reads as the mapping
it is stored as (``report["nested_score"]``, ``"postprocess_nested_gain" in report``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Summary = dict[str, float]


class EnsembleReport(BaseModel):
    """An ensemble run's figures. Only the nested ones are honest; in-sample is never a gain."""

    model_config = ConfigDict(extra="allow")

    members: dict[str, float]  # member run id -> its own CV score
    nested_score: float  # each fold combined by a combiner fitted without it
    # Optional below: reports of older questlab versions lack some of them.
    best_member: str | None = None
    nested_score_before_postprocess: float | None = None
    in_sample_score: float | None = None  # the combiner fitted on every OOF row: optimistic
    nested_gain: Summary | None = None  # over the best member alone
    nested_fold_mean: Summary | None = None  # the same, fold by fold then averaged
    in_sample_gain: Summary | None = None
    notes: list[str] = Field(default_factory=list)
    question_share_nested_gain: Summary | None = None  # with a question share: its own nested gain
    question_share_chosen: dict[str, float] | None = None
    postprocess_nested_gain: Summary | None = None  # with post-processing: its own nested gain
    postprocess_chosen: dict[str, str] | None = None
    postprocess_mapped_folds: dict[str, list[int]] | None = None  # per target, the outer folds that mapped it
    postprocess_mixed: dict[str, list[int]] | None = None  # mapped in some outer folds only
    metric: str | None = None  # the metric every score and gain is in (None: before tasks, Spearman)

    def to_dict(self) -> dict[str, Any]:
        """The report as stored in ``ensemble.json`` (parts that do not apply are left out)."""
        return self.model_dump(exclude_none=True)

    # Read as the mapping it is stored as.
    def __getitem__(self, key: str) -> Any:
        value = getattr(self, key, None)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and getattr(self, key, None) is not None

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key, None)
        return default if value is None else value

    def keys(self) -> Iterator[str]:
        return iter(self.to_dict())

    def items(self) -> Any:
        return self.to_dict().items()

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  # a mapping's keys, not pydantic's pairs
        return self.keys()
