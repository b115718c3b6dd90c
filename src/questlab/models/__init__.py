"""Model families behind one interface (``questlab.models.base.Model``) and the name registry.

A family registers under a short name, used as ``model.name`` in a run config. Families with
heavy imports (torch) are imported lazily, so ``questlab check`` stays fast.
"""

from __future__ import annotations

import importlib

from questlab.errors import UnknownNameError
from questlab.models.base import FitLog, Model, ModelParams, NotFittedError

# name -> "module:Class"; imported on first use.
_REGISTRY: dict[str, str] = {
    "mean": "questlab.models.mean:MeanModel",
    "tfidf": "questlab.models.tfidf:TfidfModel",
    "transformer": "questlab.models.transformer:TransformerModel",
    "embedding": "questlab.models.embedding:EmbeddingModel",
}


def register(name: str, target: str) -> None:
    """Register a model family under ``name``; ``target`` is ``"package.module:ClassName"``."""
    _REGISTRY[name] = target


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[Model]:
    """Return the class registered under ``name``; a clear error lists the known names."""
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown model {name!r}; known models: {', '.join(model_names())}")
    module_name, class_name = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_model(name: str, params: dict | ModelParams | None = None) -> Model:
    """Instantiate a registered model family with validated params."""
    return get_model_class(name)(params)


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
