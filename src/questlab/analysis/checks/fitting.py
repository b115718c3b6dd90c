"""From the fit logs: under- and over-fitting along the learning curves, and token truncation."""

from __future__ import annotations

import math

import numpy as np

from questlab.analysis.verdict import Verdict, fmt, folds_text, rounded
from questlab.models.base import FitLog

TRUNCATION_SHARE = 0.2
TRUNCATION_LOST = 0.1
EPOCH_TOL = 1e-3  # a change in valid score (or relative change in loss) smaller than this is noise


# --- learning curves --------------------------------------------------------------------------
def _curve(epochs: list[dict[str, float]], score_key: str, loss_key: str) -> tuple[str, np.ndarray] | None:
    """The named series (score preferred: it is what we optimise), or None when not recorded every epoch."""
    for key in (score_key, loss_key):
        values = [e.get(key) for e in epochs]
        if values and all(v is not None and math.isfinite(v) for v in values):
            return key, np.asarray(values, dtype=np.float64)
    return None


def _improvement(key: str, before: float, after: float) -> float:
    """How much ``after`` improves on ``before``: up for scores, down for losses (relative)."""
    if key.endswith("score"):
        return after - before
    return (before - after) / max(abs(before), 1e-12)


def check_fitting(fit_logs: dict[int, FitLog]) -> list[Verdict]:
    """Under-training (valid still improving at the last epoch) and over-fitting (valid worse, train better)."""
    if not fit_logs:
        return [Verdict("info", "fit.no_log", "no fit logs recorded (no folds folder): fitting cannot be judged", {})]
    under, over, fine, flat = {}, {}, {}, {}
    for k, log in fit_logs.items():
        valid = _curve(log.epochs, "valid_score", "valid_loss")
        if valid is None or len(valid[1]) < 2:
            flat[k] = log
            continue
        vkey, v = valid
        train = _curve(log.epochs, "train_score", "train_loss")
        best = int(np.argmax([_improvement(vkey, v[0], x) for x in v]))
        epoch_no = [int(e.get("epoch", i + 1)) for i, e in enumerate(log.epochs)]
        values = [rounded(x) for x in v]
        ev = {"fold": k, "metric": vkey, "values": values, "best_epoch": epoch_no[best], "epochs": epoch_no}
        if best == len(v) - 1 and _improvement(vkey, v[-2], v[-1]) > EPOCH_TOL:
            under[k] = ev
        elif (
            best < len(v) - 1
            and _improvement(vkey, v[-1], v[best]) > EPOCH_TOL
            and (train is not None and _improvement(train[0], train[1][best], train[1][-1]) > EPOCH_TOL)
        ):
            ev.update(train_metric=train[0], train_values=[rounded(x) for x in train[1]])
            over[k] = ev
        else:
            fine[k] = ev
    out = []
    if under:
        k, ev = next(iter(under.items()))
        out.append(
            Verdict(
                "warning",
                "fit.under",
                f"under-trained in fold(s) {folds_text(list(under))}: {ev['metric']} still improved at the last epoch"
                f" (fold {k}: {fmt(ev['values'][-2])} -> {fmt(ev['values'][-1])} at epoch {ev['epochs'][-1]});"
                " train longer",
                {"folds": under},
            )
        )
    if over:
        k, ev = next(iter(over.items()))
        b = ev["epochs"].index(ev["best_epoch"])
        out.append(
            Verdict(
                "warning",
                "fit.over",
                f"over-fit in fold(s) {folds_text(list(over))}: {ev['metric']} fell after epoch {ev['best_epoch']}"
                f" while {ev['train_metric']} kept improving (fold {k}: valid {fmt(ev['values'][b])}"
                f" -> {fmt(ev['values'][-1])}, train {fmt(ev['train_values'][b])}"
                f" -> {fmt(ev['train_values'][-1])})",
                {"folds": over},
            )
        )
    if fine and not under and not over:
        out.append(
            Verdict(
                "ok",
                "fit.ok",
                "learning curves flatten out: best epochs "
                + ", ".join(f"fold {k}: {ev['best_epoch']}/{ev['epochs'][-1]}" for k, ev in fine.items()),
                {"folds": fine},
            )
        )
    if flat:
        k, log = next(iter(flat.items()))
        how = log.info.get("fit", "")
        out.append(
            Verdict(
                "info",
                "fit.no_epochs",
                f"fold(s) {folds_text(list(flat))} recorded no per-epoch validation numbers"
                + (f" ({how})" if how else "")
                + ": under- and over-fitting cannot be judged from a learning curve",
                {"folds": list(flat), "fit": how},
            )
        )
    return out


# --- truncation -------------------------------------------------------------------------------
def check_truncation(fit_logs: dict[int, FitLog]) -> list[Verdict]:
    """Share of each text part cut by the model's token budget, and how much a cut text lost."""
    parts: dict[str, list[dict[str, float]]] = {}
    for log in fit_logs.values():
        for part, stats in log.truncation.items():
            parts.setdefault(part, []).append(stats)
    if not parts:
        return [
            Verdict(
                "info",
                "truncation.none",
                "no truncation recorded: the model has no token budget (TF-IDF, mean) or did not report one",
                {},
            )
        ]
    out = []
    for part, stats in parts.items():
        share = float(np.mean([s.get("share_cut", 0.0) for s in stats]))
        lost = float(np.mean([s.get("mean_lost_share_when_cut", 0.0) for s in stats]))
        tokens = float(np.mean([s.get("mean_tokens", 0.0) for s in stats]))
        kept = float(np.mean([s.get("mean_kept", 0.0) for s in stats]))
        severe = share >= TRUNCATION_SHARE and lost >= TRUNCATION_LOST
        out.append(
            Verdict(
                "warning" if severe else "info",
                "truncation",
                f"{part}: {share:.0%} of texts cut by the token budget, a cut text loses {lost:.0%} of its tokens"
                f" on average (mean {tokens:.0f} tokens, {kept:.0f} kept)",
                {
                    "part": part,
                    "share_cut": rounded(share),
                    "mean_lost_share_when_cut": rounded(lost),
                    "mean_tokens": rounded(tokens),
                    "mean_kept": rounded(kept),
                    "folds": len(stats),
                },
            )
        )
    return out
