"""questlab: a workbench for texts rated on many axes (Google QUEST Q&A Labeling built in, any task from a spec).

The public API (see :mod:`questlab.api`) is importable from the package top::

    import questlab as ql
    run = ql.run("tfidf", train="train.csv")   # a shipped config by name, or a YAML path

It is loaded on first use, so ``import questlab`` (and the CLI's light commands) stay fast.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__version__ = "0.11.0"

_API = (
    "Finding",
    "Run",
    "Verdicts",
    "add_finding",
    "check",
    "compare",
    "edit_finding",
    "ensemble",
    "evaluate",
    "findings",
    "leaderboard",
    "load_bundle",
    "load_run",
    "model_params",
    "postprocess",
    "pseudo_label",
    "recipe",
    "remove_finding",
    "report",
    "run",
    "runs",
    "tune",
)


def __getattr__(name: str) -> Any:
    if name == "tune":
        from questlab.tuning import tune

        return tune
    if name in _API:
        from questlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'questlab' has no attribute {name!r}")


def _api_function(name: str) -> property:
    """A package attribute that stays the API function ``name`` though a submodule of that name
    exists: the import system binds a loaded submodule to its parent's attribute, so the setter
    ignores it (the submodule stays in sys.modules, where imports find it)."""

    def get(self: types.ModuleType) -> Any:
        from questlab import api

        return getattr(api, name)

    def ignore(self: types.ModuleType, module: types.ModuleType) -> None:
        pass

    return property(get, ignore)


class _Package(types.ModuleType):
    """The ``questlab`` module's type: ``ql.ensemble`` and ``ql.leaderboard`` are API functions,
    though ``questlab.ensemble`` and ``questlab.leaderboard`` are modules too (``from
    questlab.ensemble import ...`` still imports the module)."""

    ensemble = _api_function("ensemble")
    leaderboard = _api_function("leaderboard")


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = ["__version__", *_API]
