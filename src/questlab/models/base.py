"""The one interface every questlab model shares, and the FitLog models report through.

The CV runner (``questlab.cv``) only ever calls ``fit``, ``predict``, ``save`` and ``load``;
it knows nothing of a model's internals. A fitted model is a folder: ``model.json`` (which
class, its params, the questlab version) plus whatever state the family writes beside it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from questlab import __version__
from questlab.errors import QuestlabError, RunFormatError
from questlab.schema import N_TARGETS
from questlab.strictjson import number
from questlab.tasks import TaskRef


class ModelParams(BaseModel):
    """Base of every model family's typed params; unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class NotFittedError(RuntimeError):
    """Raised when ``predict`` or ``save`` is called before ``fit``."""


@dataclass
class FitLog:
    """What a model reports while it fits: the run records it, the analysis reads it.

    ``epochs`` holds one dict per epoch (or boosting round, or fit) with any of ``epoch``,
    ``train_loss``, ``valid_loss``, ``train_score``, ``valid_score``; ``truncation`` holds, per
    text part, how much the model's token budget cut (see ``record_truncation``); ``info`` is
    free-form facts worth keeping (best epoch, feature counts, timings). ``workdir`` is a fold
    scratch folder that survives a crash: models put resumable checkpoints there.
    """

    workdir: Path | None = None
    epochs: list[dict[str, float]] = field(default_factory=list)
    truncation: dict[str, dict[str, float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def log_epoch(self, **values: float) -> None:
        """Record one epoch's numbers (train/valid loss and score, lr, ...)."""
        self.epochs.append({k: float(v) for k, v in values.items()})

    def record_truncation(self, part: str, n_tokens: np.ndarray, kept: np.ndarray) -> None:
        """Record, for one text part, the token counts before and after the budget cut."""
        n_tokens = np.asarray(n_tokens, dtype=float)
        kept = np.asarray(kept, dtype=float)
        cut = n_tokens > kept
        lost = np.where(n_tokens > 0, (n_tokens - kept) / np.maximum(n_tokens, 1), 0.0)
        self.truncation[part] = {
            "n": len(n_tokens),
            "share_cut": float(cut.mean()) if len(cut) else 0.0,
            "mean_lost_share_when_cut": float(lost[cut].mean()) if cut.any() else 0.0,
            "mean_tokens": float(n_tokens.mean()) if len(n_tokens) else 0.0,
            "mean_kept": float(kept.mean()) if len(kept) else 0.0,
            "p50_tokens": float(np.percentile(n_tokens, 50)) if len(n_tokens) else 0.0,
            "p90_tokens": float(np.percentile(n_tokens, 90)) if len(n_tokens) else 0.0,
        }
        if len(n_tokens):  # 20 bins up to 4 budgets (kept.max()); past that, one bin holds every longer text
            budget, longest = float(kept.max()), float(n_tokens.max())
            over = 4 * budget if 0 < 4 * budget < longest else None
            edges = [*np.linspace(0, over, 20), over * 20 / 19] if over else np.linspace(0, max(longest, 1), 21)
            hist = np.histogram(np.minimum(n_tokens, over or longest), bins=edges)[0].tolist()
            self.truncation[part] |= {"budget": budget, "overflow_from": over, "tokens_hist": hist}
            self.truncation[part]["tokens_hist_edges"] = np.asarray(edges, dtype=float).tolist()

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "truncation": self.truncation,
            "info": self.info,
            "timings": self.timings,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitLog:
        """Read back ``to_dict`` from fit_log.json: an epoch's ``null`` (a NaN loss, say) is NaN again."""
        return cls(
            epochs=[{k: number(v) for k, v in e.items()} for e in data.get("epochs", [])],
            truncation=dict(data.get("truncation", {})),
            info=dict(data.get("info", {})),
            timings=dict(data.get("timings", {})),
        )


class Model:
    """Base class: fit on a frame, predict an (n, 30) array in [0, 1], save to / load from a folder.

    Subclasses set ``name`` and ``Params``, implement ``fit``/``predict`` and the two state hooks
    ``_save_state``/``_load_state``. ``__init__`` only stores params (scikit-learn's rule); what
    fitting learns lives in attributes that end in ``_``.
    """

    name: ClassVar[str] = "base"
    Params: ClassVar[type[ModelParams]] = ModelParams

    def __init__(self, params: ModelParams | dict[str, Any] | None = None, task: TaskRef = None) -> None:
        from questlab.tasks import load_task

        self.task = load_task(task)
        if params is None:
            params = self.Params()
        elif isinstance(params, dict):
            params = self.Params(**params)
        self.params = params
        self.fitted_ = False

    # --- the contract -------------------------------------------------------------------
    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None, log: FitLog) -> Model:
        """Learn from ``train`` (inputs + 30 targets). ``valid`` (with targets) may be used for
        early stopping / epoch selection only; report progress into ``log``. Returns self."""
        raise NotImplementedError

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Return an (len(frame), 30) float array in [0, 1], columns in ``schema.TARGETS`` order."""
        raise NotImplementedError

    def prepare(self, frames: list[pd.DataFrame]) -> None:
        """Work every fold would repeat on these rows, done once before the folds (optional).

        The CV runner calls it on an unfitted model with all the rows its folds will see, before
        fold workers start: a family that can share work across folds (the embedding family
        fills its vector cache) does it here, so parallel folds do not each redo it. It must
        not learn anything from the rows: ``fit`` still sees only its fold's train rows.
        """

    def _save_state(self, folder: Path) -> None:
        raise NotImplementedError

    def _load_state(self, folder: Path) -> None:
        raise NotImplementedError

    @classmethod
    def pretrained_encoders(cls, params: dict[str, Any]) -> list[str]:
        """Encoders (names or folders) a saved model of these params loads from outside its folder.

        An export copies them into the bundle. Families whose saved folder holds everything
        (TF-IDF, a fine-tuned transformer) need none.
        """
        return []

    # --- shared machinery ---------------------------------------------------------------
    def check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit() first")

    def save(self, folder: Path) -> None:
        """Write the fitted model to ``folder`` (created): model.json + the family's state."""
        self.check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._save_state(folder)
        meta = {
            "model": self.name,
            "params": self.params.model_dump(mode="json"),
            "questlab_version": __version__,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "task": self.task.to_data(),  # TEMP (helper RUN): helper MODELS owns save/load of the task
        }
        # model.json last: its presence marks a complete save (a crash mid-save leaves none).
        (folder / "model.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path) -> Model:
        """Load a model saved by ``save``; the registry picks the class from model.json."""
        from questlab.models.registry import get_model_class

        folder = Path(folder)
        meta_path = folder / "model.json"
        if not meta_path.exists():
            raise RunFormatError(f"{folder}: no model.json here, so no complete saved model")
        damaged = "re-run the fold (questlab run --resume) or re-export the bundle"
        try:
            meta = json.loads(meta_path.read_text())
            klass = get_model_class(meta["model"]) if cls is Model else cls
            model = klass(klass.Params(**meta["params"]), task=meta.get("task"))  # no key: quest
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, QuestlabError):
                raise
            raise RunFormatError(
                f"{meta_path}: not a readable model.json ({type(exc).__name__}: {exc}); {damaged}"
            ) from None
        try:
            model._load_state(folder)
        except QuestlabError:
            raise
        except Exception as exc:  # a truncated or corrupted state file: name the folder, not "error: 195"
            raise RunFormatError(
                f"{folder}: the saved {meta['model']} model cannot be loaded ({type(exc).__name__}: {exc}); "
                f"its files are damaged or incomplete: {damaged}"
            ) from exc
        model.fitted_ = True
        return model


def check_predictions(pred: np.ndarray, n_rows: int, who: str, n_targets: int = N_TARGETS) -> np.ndarray:
    """Validate a model's output at the boundary: shape (n, 30), finite, inside [0, 1]."""
    pred = np.asarray(pred, dtype=np.float64)
    if pred.shape != (n_rows, n_targets):
        raise ValueError(f"{who} returned predictions of shape {pred.shape}; expected ({n_rows}, {n_targets})")
    if not np.isfinite(pred).all():
        bad = np.argwhere(~np.isfinite(pred))[0]
        raise ValueError(f"{who} returned a non-finite prediction (row {bad[0]}, target {bad[1]})")
    if n_targets == N_TARGETS and (pred.min() < 0 or pred.max() > 1):  # TEMP (helper RUN): MODELS checks ranges
        raise ValueError(f"{who} returned predictions outside [0, 1] ({pred.min():.3g}..{pred.max():.3g})")
    return pred


def to_unit_interval(raw: np.ndarray, margin: float = 0.01) -> np.ndarray:
    """Map unbounded scores into (0, 1) without creating ties.

    Values inside [margin, 1 - margin] pass unchanged; values beyond decay exponentially towards
    0 or 1. Unlike clipping (which turns every negative score of a rare target into the same 0
    and throws their order away) the map is strictly increasing, so Spearman sees every rank.
    """
    raw = np.asarray(raw, dtype=np.float64)
    low, high = margin, 1.0 - margin
    out = raw.copy()
    below, above = raw < low, raw > high
    out[below] = low * np.exp((raw[below] - low) / low)
    out[above] = 1.0 - margin * np.exp(-(raw[above] - high) / margin)
    return out
