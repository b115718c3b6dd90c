"""Model families behind one interface (``questlab.models.base.Model``) and the name registry.

A family registers under a short name, used as ``model.name`` in a run config. Families with
heavy imports (torch) are imported lazily, so ``questlab check`` stays fast.
"""

from __future__ import annotations

from questlab.models.base import FitLog, Model, ModelParams, NotFittedError
from questlab.models.registry import build_model, get_model_class, model_names, register

__all__ = [
    "FitLog",
    "Model",
    "ModelParams",
    "NotFittedError",
    "build_model",
    "get_model_class",
    "model_names",
    "register",
]
