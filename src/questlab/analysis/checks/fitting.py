"""From the fit logs: under- and over-fitting along the learning curves, and token truncation."""

from __future__ import annotations

import math

import numpy as np

from questlab.analysis.curves import Curve, kept_epoch, split_curves
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


def _judge(curve: Curve, curves: list[Curve], info: dict) -> tuple[str, dict] | None:
    """One curve's verdict kind (under / over / kept / fine) and evidence; None without a valid series."""
    valid = _curve(curve.epochs, "valid_score", "valid_loss")
    if valid is None or len(valid[1]) < 2:
        return None
    vkey, v = valid
    train = _curve(curve.epochs, "train_score", "train_loss")
    best = int(np.argmax([_improvement(vkey, v[0], x) for x in v]))
    epoch_no = curve.epoch_numbers()
    ev = {
        "curve": curve.label,
        "metric": vkey,
        "values": [rounded(x) for x in v],
        "best_epoch": epoch_no[best],
        "epochs": epoch_no,
    }
    if best == len(v) - 1 and _improvement(vkey, v[-2], v[-1]) > EPOCH_TOL:
        return "under", ev
    if (
        best < len(v) - 1
        and _improvement(vkey, v[-1], v[best]) > EPOCH_TOL
        and (train is not None and _improvement(train[0], train[1][best], train[1][-1]) > EPOCH_TOL)
    ):
        ev.update(train_metric=train[0], train_values=[rounded(x) for x in train[1]])
        kept = kept_epoch(info, curve, curves)
        if kept is not None and kept in epoch_no:
            ev["kept_epoch"] = kept
            # The model went back to (or stopped at) its best epoch: the later epochs are not in it.
            if _improvement(vkey, v[epoch_no.index(kept)], v[best]) <= EPOCH_TOL:
                return "kept", ev
        return "over", ev
    return "fine", ev


def _where(k: int, ev: dict) -> str:
    return f"fold {k}" + (f" {ev['curve']}" if ev["curve"] else "")


def _scope(found: list[tuple[int, dict]], n_curves: int) -> str:
    """ "fold(s) 0, 2", plus how many of the curves when folds hold several."""
    folds = sorted({k for k, _ in found})
    many = n_curves > len({k for k, _ in found}) or any(ev["curve"] for _, ev in found)
    return f"fold(s) {folds_text(folds)}" + (f" ({len(found)} of {n_curves} curves)" if many else "")


def _evidence(found: list[tuple[int, dict]]) -> dict:
    first: dict[int, dict] = {}
    for k, ev in found:
        first.setdefault(k, ev)
    return {"folds": first, "curves": [{"fold": k, **ev} for k, ev in found]}


def check_fitting(fit_logs: dict[int, FitLog]) -> list[Verdict]:
    """Per learning curve (a fold may hold several: seeds, stages): under-training (valid still
    improving at the last epoch), over-fitting (valid worse, train better), or a fall after the
    epoch the model kept (early stopping: said as info, the kept model is not over-fit)."""
    if not fit_logs:
        return [Verdict("info", "fit.no_log", "no fit logs recorded (no folds folder): fitting cannot be judged", {})]
    found: dict[str, list[tuple[int, dict]]] = {"under": [], "over": [], "kept": [], "fine": []}
    flat: dict[int, FitLog] = {}
    n_curves = 0
    for k, log in fit_logs.items():
        curves = split_curves(log.epochs)
        judged = [(c, _judge(c, curves, log.info)) for c in curves]
        judged = [(c, j) for c, j in judged if j is not None]
        if not judged:
            flat[k] = log
            continue
        n_curves += len(judged)
        for _, (kind, ev) in judged:
            found[kind].append((k, ev))
    out = []
    if found["under"]:
        k, ev = found["under"][0]
        out.append(
            Verdict(
                "warning",
                "fit.under",
                f"under-trained in {_scope(found['under'], n_curves)}: {ev['metric']} still improved at the last"
                f" epoch ({_where(k, ev)}: {fmt(ev['values'][-2])} -> {fmt(ev['values'][-1])} at epoch"
                f" {ev['epochs'][-1]}); train longer",
                _evidence(found["under"]),
            )
        )
    if found["over"]:
        k, ev = found["over"][0]
        b = ev["epochs"].index(ev["best_epoch"])
        kept = f"; the model kept epoch {ev['kept_epoch']}" if "kept_epoch" in ev else ""
        out.append(
            Verdict(
                "warning",
                "fit.over",
                f"over-fit in {_scope(found['over'], n_curves)}: {ev['metric']} fell after epoch {ev['best_epoch']}"
                f" while {ev['train_metric']} kept improving ({_where(k, ev)}: valid {fmt(ev['values'][b])}"
                f" -> {fmt(ev['values'][-1])}, train {fmt(ev['train_values'][b])}"
                f" -> {fmt(ev['train_values'][-1])}{kept})",
                _evidence(found["over"]),
            )
        )
    if found["kept"]:
        k, ev = found["kept"][0]
        b = ev["epochs"].index(ev["best_epoch"])
        out.append(
            Verdict(
                "info",
                "fit.early_stopped",
                f"{ev['metric']} fell after the best epoch in {_scope(found['kept'], n_curves)}, but the model"
                f" kept epoch {ev['kept_epoch']} (early stopping), so the kept weights are not over-fit"
                f" ({_where(k, ev)}: valid {fmt(ev['values'][b])} at epoch {ev['best_epoch']},"
                f" {fmt(ev['values'][-1])} at epoch {ev['epochs'][-1]})",
                _evidence(found["kept"]),
            )
        )
    if found["fine"] and not found["under"] and not found["over"]:
        shown = [f"{_where(k, ev)}: {ev['best_epoch']}/{ev['epochs'][-1]}" for k, ev in found["fine"]]
        more = f" (+{len(shown) - 6} more curves)" if len(shown) > 6 else ""
        out.append(
            Verdict(
                "ok",
                "fit.ok",
                "learning curves flatten out: best epochs " + ", ".join(shown[:6]) + more,
                _evidence(found["fine"]),
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
