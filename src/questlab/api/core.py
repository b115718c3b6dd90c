"""The API's first functions: run a config or a recipe, read runs back, compare, evaluate, load a bundle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from questlab import console
from questlab.api.objects import DataLike, Run, StoreLike
from questlab.config import RunConfig, resolve_config
from questlab.store import as_store


def run(
    config: str | Path | Mapping | RunConfig,
    train: DataLike,
    test: DataLike | None = None,
    *,
    set: Mapping[str, Any] | Sequence[str] | None = None,
    store: StoreLike = None,
    folds: list[int] | None = None,
    quiet: bool = False,
    pseudo: str | Path | Any | None = None,
    name: str | None = None,
    task: str | Path | Any | None = None,
) -> Run:
    """Run grouped CV for a config (a YAML path, a shipped config's name such as ``"tfidf"``, a dict or
    a RunConfig) and record it.

    ``train``/``test`` are QUEST CSV paths or DataFrames; ``set`` overrides config keys
    (``{"model.params.alpha": 3}`` or ``["model.params.alpha=3"]``); ``folds`` runs only those.
    ``pseudo``: a file from ``questlab pseudo-label`` (or a ``questlab.pseudo.PseudoLabels``):
    fold k also trains on its pseudo rows labelled by teacher fold k (the teacher's folds required).
    ``name``: the run's name (default: the config's name with its overrides, ``tfidf[alpha=3]``); a
    name another run of the store has gets the first free suffix ``-2``, ``-3``, ...
    ``task``: a built-in task's name (``"ell"``), a task spec YAML or a ``questlab.tasks.Task``;
    it overrides the config's ``task`` (neither: ``quest``).
    """
    from questlab.cv import default_run_name, run_cv, unique_run_name
    from questlab.pseudo import PseudoLabels

    cfg = resolve_config(config, set)
    labels = pseudo if pseudo is None or isinstance(pseudo, PseudoLabels) else PseudoLabels.read(pseudo)
    st = as_store(store, create=True)
    say = console.quiet if quiet else console.stderr
    run_name = unique_run_name(st, name or default_run_name(cfg))
    run_id = run_cv(
        cfg, train, test, store=st, only_folds=folds, say=say, pseudo=labels, name=run_name, task=task
    )  # tags pseudo
    return Run(st.get(run_id), st)


def recipe(
    recipe: str | Path,
    train: DataLike,
    test: DataLike | None = None,
    *,
    submission: str | Path | None = None,
    store: StoreLike = None,
    quiet: bool = False,
    time_limit: float | str | None = None,
) -> Run:
    """Run a recipe (a built-in name such as ``"fast"``, or a recipe YAML path); return its ensemble run.

    Members already recorded with the same config, data and folds are reused, killed ones resumed;
    ``submission`` also writes the ensemble's test predictions there. ``time_limit``: a wall-clock
    budget in seconds or as text (``"15m"``, ``"1h30m"``): members that will not fit are dropped
    (see :mod:`questlab.recipes.budget`).
    """
    from questlab.recipes import run_recipe

    # run_recipe opens (creates) the store only once the recipe, the data and the submission are checked.
    outcome = run_recipe(
        recipe,
        train,
        test,
        store=store,
        submission=submission,
        say=console.quiet if quiet else console.stderr,
        time_limit=time_limit,
    )
    st = as_store(store)
    return Run(st.get(outcome.ensemble_id), st)


def load_run(run_id: str, store: StoreLike = None) -> Run:
    """A recorded run by id (or unique prefix)."""
    st = as_store(store)
    return Run(st.get(run_id), st)


def runs(
    store: StoreLike = None,
    sort: str = "start",
    model: str | None = None,
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    status: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """The leaderboard: one row per run, filtered and sorted (see :func:`questlab.leaderboard.leaderboard`)."""
    from questlab.leaderboard import leaderboard

    return leaderboard(as_store(store), sort, model, name, tags, status, limit)


def leaderboard(store: StoreLike = None, model: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """Runs ranked by their score, best first, each ranked only among comparable runs (same task,
    metric, rows and folds; partial runs apart): ``runs(sort="cv")``."""
    return runs(store, sort="cv", model=model, limit=limit)


def compare(a: Run | str, b: Run | str, n_boot: int = 1000, store: StoreLike = None) -> Any:
    """Run B against run A: per-target and per-fold deltas with paired bootstrap intervals."""
    from questlab.analysis.compare import compare_runs

    st = a.store if isinstance(a, Run) else b.store if isinstance(b, Run) else as_store(store)
    ids = [x.id if isinstance(x, Run) else x for x in (a, b)]
    return compare_runs(st, ids[0], ids[1], n_boot=n_boot)


def evaluate(model: Run | str | Path | Any, data: DataLike, n_boot: int = 200, store: StoreLike = None) -> Any:
    """Score a run (a ``Run`` or a run id) or a bundle (``ql.load_bundle``'s model, or its folder) on
    labelled pairs: see :meth:`Run.evaluate`."""
    if isinstance(model, str | Path):
        model = load_bundle(model) if Path(model).is_dir() else load_run(str(model), store)
    if isinstance(model, Run):
        return model.evaluate(data, n_boot=n_boot)
    from questlab.evaluation import evaluate as score

    return score(getattr(model, "predictor", model), data, n_boot=n_boot)


def model_params(family: str | None = None) -> pd.DataFrame:
    """Every model family's parameters (or one family's): family, parameter, type, default, meaning.

    Generated from the families' typed params: what a config's ``model.params`` accepts. (Not
    ``ql.models``: that name is the ``questlab.models`` package.)
    """
    from questlab.models.catalog import parameters

    return parameters(family)


def load_bundle(path: str | Path) -> Any:
    """An exported bundle (or MLflow model folder) as a model: ``predict(frame)`` -> the task's id +
    its targets (QUEST: qa_id + 30 columns).

    Files are checked against the bundle's sha256 manifest first; see :mod:`questlab.export`.
    """
    from questlab.bundle import BundleModel

    return BundleModel(Path(path))


__all__ = ["compare", "evaluate", "load_bundle", "load_run", "model_params", "recipe", "run", "runs"]
