"""A fold's fit log as separate learning curves, and the epoch each curve's model kept.

One fold may train several networks in turn: the embedding model's MLP head logs one curve per
target group and seed (``group``, ``seed`` tags, epochs from 0), the dual transformer one per
stage (``stage`` tag, epochs from 1). Joined end to end they read as one curve that jumps back to
epoch 0, so both the report and ``diagnose`` split them here: a new curve starts where a tag
changes or where the epoch number does not go up (which also splits logs written before the
tags existed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CURVE_TAGS = ("stage", "group", "seed")  # outermost first: the order of the label


@dataclass
class Curve:
    """One learning curve of a fold: its tags, its epochs in order, its position in the log."""

    index: int
    tags: dict[str, int]
    epochs: list[dict[str, float]]

    @property
    def label(self) -> str:
        """ "stage 1", "group 0 seed 2", or "" for an untagged log's only curve."""
        return " ".join(f"{k} {v}" for k, v in self.tags.items())

    def epoch_numbers(self) -> list[int]:
        return [int(e.get("epoch", i + 1)) for i, e in enumerate(self.epochs)]


def split_curves(epochs: list[dict[str, float]]) -> list[Curve]:
    """Split a fit log's epoch entries into curves (see the module docstring)."""
    curves: list[Curve] = []
    last_tags: dict[str, int] | None = None
    last_epoch: float | None = None
    for i, entry in enumerate(epochs):
        tags = {k: int(entry[k]) for k in CURVE_TAGS if k in entry}
        epoch = entry.get("epoch", float(i + 1))
        if not curves or tags != last_tags or (last_epoch is not None and epoch <= last_epoch):
            curves.append(Curve(len(curves), tags, []))
        curves[-1].epochs.append(entry)
        last_tags, last_epoch = tags, epoch
    if len(curves) > 1:  # an untagged log split on the epoch number: number its curves
        for c in curves:
            c.tags = c.tags or {"curve": c.index}
    return curves


def kept_epoch(info: dict[str, Any], curve: Curve, curves: list[Curve]) -> int | None:
    """The epoch whose weights the model kept for ``curve``, when the fit log says so; else None.

    The transformer records ``stage{k}_best_epoch`` (the last epoch when it does not select the
    best one); the embedding MLP records ``best_epochs``, one per seed curve in log order.
    """
    if "stage" in curve.tags:
        value = info.get(f"stage{curve.tags['stage']}_best_epoch")
        return int(value) if value is not None else None
    best = info.get("best_epochs")
    seeded = [c for c in curves if "seed" in c.tags]
    if "seed" in curve.tags and isinstance(best, list) and len(best) == len(seeded):
        return int(best[seeded.index(curve)])
    return None
