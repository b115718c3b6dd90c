"""The registry of model families: a short name (``model.name`` in a config) -> ``module:Class``.

Families are imported on first use, so heavy ones (torch) cost nothing until a config names them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from questlab.errors import UnknownNameError

if TYPE_CHECKING:
    from questlab.models.base import Model, ModelParams
    from questlab.tasks import TaskRef

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


def build_model(name: str, params: dict | ModelParams | None = None, task: TaskRef = None) -> Model:
    """Instantiate a registered model family with validated params, for ``task`` (None: quest)."""
    return get_model_class(name)(params, task=task)
