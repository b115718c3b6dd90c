"""A predictor is a folder: every predictor saves itself into one and loads back from it.

A predictor has ``run_id``, ``task`` (the :class:`~questlab.tasks.Task` it predicts, saved as
``task.json`` in its folder: a 0.9.0 folder without one predicts ``quest``), ``predict(frame) ->
(n, task.n_targets)``, ``notes`` (batch-level remarks of the
last call), ``save(folder)`` and ``encoders()`` (the pretrained encoders its models load). Two
kinds exist, told apart by the folder's ``predictor.json``:

- :class:`FoldAverage` (``"kind": "folds"``): a CV run's fold models, averaged and clipped to
  [0, 1]; its folder holds ``fold_K/`` (each fold's saved model);
- :class:`EnsemblePredictor` (``"kind": "ensemble"``): member predictors combined by a stored
  :class:`~questlab.ensemble.combine.Combiner`; its folder holds ``members/member_I/`` (each a
  predictor folder), ``ensemble.json`` (weights, averaging, stack, question share),
  ``references.npz`` (the members' sorted OOF, rank averaging) and ``postprocess.json`` (maps).

:func:`load_predictor` builds one from a recorded run in a store; :func:`load_folder` from a
saved folder (a bundle's ``predictor/``, an MLflow model's). ``questlab predict``, ``serve``,
bundles and MLflow models all predict through these two classes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from questlab.ensemble.combine import Combiner, restore_combiner
from questlab.ensemble.postprocess import PostProcessor
from questlab.errors import BundleError, PredictionError, UsageError
from questlab.models import Model, get_model_class
from questlab.rundir import FOLD_MODEL_DIR, POSTPROCESS_FILE, RunFolder, read_task
from questlab.store import Store
from questlab.strictjson import strict_json
from questlab.tasks import Task, TaskRef, load_task
from questlab.tasks.grouping import group_ids

TREE_FILE = "predictor.json"  # what kind of predictor a folder holds, and its parts
ENSEMBLE_STATE_FILE = "ensemble.json"
REFERENCES_FILE = "references.npz"
POSTPROCESS_STATE_FILE = "postprocess.json"
MEMBERS_DIR = "members"
TASK_FILE = "task.json"  # the task a predictor folder predicts (absent: a 0.9.0 folder, quest)
# What an ensemble's predictor keeps of the run's ensemble.json (the rest is its record: report, seed).
PREDICTOR_KEYS = ("members", "average", "weights", "postprocess", "stack", "question_share")


class _FoldsTree(BaseModel):
    """``predictor.json`` of a fold average: its fold numbers (folders ``fold_K`` beside it)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["folds"]
    run_id: str
    folds: list[int]


class _EnsembleTree(BaseModel):
    """``predictor.json`` of an ensemble: its members' folder names (``members/member_I``)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["ensemble"]
    run_id: str
    members: list[Annotated[str, StringConstraints(pattern=r"^member_[0-9]+$")]]


class Predictor(Protocol):
    """What every predictor offers: predict a validated test-format frame, save to a folder."""

    run_id: str
    task: Task
    notes: list[str]

    def predict(self, frame: pd.DataFrame) -> np.ndarray: ...

    def save(self, folder: Path, link: bool = False) -> None: ...

    def encoders(self) -> set[str]: ...


class FoldAverage:
    """The mean of a CV run's fold models, clipped to each target's [low, high].

    The models load when first needed: saving a run's predictor (a bundle, an MLflow model)
    copies its fold folders without loading them.
    """

    def __init__(
        self, run_id: str, model_dirs: list[Path], folds: list[int] | None = None, task: TaskRef = None
    ) -> None:
        self.run_id = run_id
        self.task = load_task(task)
        self.model_dirs = [Path(d) for d in model_dirs]
        self.folds = list(folds) if folds is not None else list(range(len(self.model_dirs)))
        self.notes: list[str] = []

    @cached_property
    def models(self) -> list[Model]:
        return [Model.load(d) for d in self.model_dirs]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        preds = []
        for k, model in enumerate(self.models):
            pred = model.predict(frame)  # a ValueError here is a model refusing the input
            try:  # checked as CV checks them: a NaN would pass np.clip and reach the submission
                preds.append(
                    check_task_predictions(pred, len(frame), f"fold model {k} of run {self.run_id}", self.task)
                )
            except ValueError as exc:
                raise PredictionError(f"{exc}: refit the run or re-export it") from None
        return np.clip(np.mean(preds, axis=0), self.task.lows, self.task.highs)

    def encoders(self) -> set[str]:
        found: set[str] = set()
        for d in self.model_dirs:
            saved = json.loads((d / "model.json").read_text())
            found.update(get_model_class(saved["model"]).pretrained_encoders(saved["params"]))
        return found

    def save(self, folder: Path, link: bool = False) -> None:
        """Copy (``link``: hard-link where possible) each fold model into ``folder/fold_K``."""
        folder.mkdir(parents=True)
        for k, model_dir in zip(self.folds, self.model_dirs, strict=True):
            copy_tree(model_dir, folder / f"fold_{k}", link)
        write_task(folder, self.task)
        _write_tree(folder, {"kind": "folds", "run_id": self.run_id, "folds": self.folds})

    @classmethod
    def load(cls, folder: Path, tree: _FoldsTree, root: Path) -> FoldAverage:
        dirs = [_inside(root, folder / f"fold_{k}") for k in tree.folds]
        predictor = cls(tree.run_id, dirs, tree.folds, read_task_file(folder, root))
        predictor.models  # noqa: B018  # load now: a broken model is an error at load time, not later
        return predictor


class EnsemblePredictor:
    """Member predictors combined with stored weights, rank references and maps."""

    def __init__(
        self,
        run_id: str,
        members: list[Predictor],
        state: dict[str, Any],
        references: list[np.ndarray] | None,
        postprocess: Path | None,
        task: TaskRef = None,
    ) -> None:
        self.run_id = run_id
        self.task = load_task(task)
        for i, member in enumerate(members):  # one task through the whole tree
            check_same_task(self.task, task_of(member), f"member {i} ({member.run_id}) of ensemble {run_id}")
        self.members = members
        self.state = {k: state[k] for k in PREDICTOR_KEYS if k in state}
        self.references = references
        self.postprocess = postprocess if postprocess is not None and postprocess.exists() else None
        postprocessor = PostProcessor.load(self.postprocess) if self.postprocess is not None else None
        self.combiner: Combiner = restore_combiner(self.state, references, postprocessor, self.task)
        self.notes: list[str] = []  # constant-column fallbacks of the last batch

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """(n, task.n_targets) predictions for a test-format frame; nothing is refitted.

        Each row is mapped on its own (ranks against stored OOF, stored weights and maps), with
        one exception that is a property of the batch: a column the maps would make constant over
        a batch whose raw blend varies is left unmapped for that batch (see ``self.notes``).
        """
        groups = group_ids(self.task, frame) if self.combiner.question_share is not None else None  # shared questions
        pred, self.notes = self.combiner.apply(np.stack([m.predict(frame) for m in self.members]), groups)
        return pred

    def encoders(self) -> set[str]:
        return set().union(*(m.encoders() for m in self.members))

    def save(self, folder: Path, link: bool = False) -> None:
        """Members in ``members/member_I``, then the combiner's stored state beside them."""
        folder.mkdir(parents=True)
        names = [f"member_{i}" for i in range(len(self.members))]
        for name, member in zip(names, self.members, strict=True):
            member.save(folder / MEMBERS_DIR / name, link)
        (folder / ENSEMBLE_STATE_FILE).write_text(strict_json(self.state))
        if self.references is not None:
            np.savez(folder / REFERENCES_FILE, *self.references)
        if self.postprocess is not None:
            shutil.copy(self.postprocess, folder / POSTPROCESS_STATE_FILE)
        write_task(folder, self.task)
        _write_tree(folder, {"kind": "ensemble", "run_id": self.run_id, "members": names})

    @classmethod
    def load(cls, folder: Path, tree: _EnsembleTree, root: Path) -> EnsemblePredictor:
        members = [load_folder(_inside(root, folder / MEMBERS_DIR / name), root) for name in tree.members]
        state = json.loads(_inside(root, folder / ENSEMBLE_STATE_FILE).read_text())
        refs = None
        if state["average"] == "rank":
            with np.load(_inside(root, folder / REFERENCES_FILE), allow_pickle=False) as npz:
                refs = [npz[f"arr_{i}"] for i in range(len(members))]
        postprocess = _inside(root, folder / POSTPROCESS_STATE_FILE)
        return cls(tree.run_id, members, state, refs, postprocess, read_task_file(folder, root))


def write_task(folder: Path, task: Task) -> None:
    """``folder/task.json``: the resolved task the predictor predicts."""
    (folder / TASK_FILE).write_text(strict_json(task.to_data()))


def read_task_file(folder: Path, root: Path | None = None) -> Task:
    """The task saved in ``folder/task.json``; a folder without one (questlab 0.9.0) predicts ``quest``."""
    path = _inside(root if root is not None else folder, folder / TASK_FILE)
    if not path.exists():
        return load_task(None)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc}); re-export the run") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path}: not a task spec (expected a mapping); re-export the run")
    return load_task(data)


def check_task_predictions(pred: np.ndarray, n_rows: int, who: str, task: Task) -> np.ndarray:
    """A model's output checked at the boundary: shape (n, task.n_targets), finite, inside each
    target's [low, high] (QUEST: the messages of ``models.base.check_predictions``)."""
    pred = np.asarray(pred, dtype=np.float64)
    if pred.shape != (n_rows, task.n_targets):
        raise ValueError(f"{who} returned predictions of shape {pred.shape}; expected ({n_rows}, {task.n_targets})")
    if not np.isfinite(pred).all():
        bad = np.argwhere(~np.isfinite(pred))[0]
        raise ValueError(f"{who} returned a non-finite prediction (row {bad[0]}, target {bad[1]})")
    off = (pred < task.lows) | (pred > task.highs)
    if off.any():
        row, col = np.argwhere(off)[0]
        target = task.targets[col]
        if len({(t.low, t.high) for t in task.targets}) == 1:  # one range for all: said as before
            span = f"({pred.min():.3g}..{pred.max():.3g})"
        else:
            span = f"(target {target.name}: {pred[row, col]:.3g} at row {row})"
        raise ValueError(f"{who} returned predictions outside [{target.low:g}, {target.high:g}] {span}")
    return pred


def task_of(predictor: object) -> Task:
    """A predictor's task; an object predicting without one (a 0.9.0-style predictor) predicts quest."""
    return load_task(getattr(predictor, "task", None))


def check_same_task(expected: Task, found: Task, who: str) -> None:
    """A UsageError unless ``found`` is ``expected`` (same resolved spec), naming both tasks."""
    if found.fingerprint != expected.fingerprint:
        same = " (same name, another spec)" if found.name == expected.name else ""
        raise UsageError(f"{who} predicts task {found.name!r}, not task {expected.name!r}{same}: refused")


def run_task(run: RunFolder) -> Task:
    """The task a recorded run was made for (``task.json``; no record: ``quest``)."""
    return read_task(run.path)


def _write_tree(folder: Path, tree: dict[str, Any]) -> None:
    (folder / TREE_FILE).write_text(strict_json(tree))


def _inside(root: Path, path: Path) -> Path:
    """``path`` if, links followed, it stays inside ``root``; else a BundleError."""
    if not path.resolve().is_relative_to(root.resolve()):
        raise BundleError(f"{root}: {path.relative_to(root)} leads outside the predictor's folder: refused")
    return path


def load_folder(folder: Path, root: Path | None = None) -> Predictor:
    """The predictor saved in ``folder`` (by :meth:`FoldAverage.save` or :meth:`EnsemblePredictor.save`).

    ``predictor.json`` is checked against its schema, and every path it leads to must stay inside
    ``root`` (the bundle; ``folder`` itself by default), links followed.
    """
    root = folder if root is None else root
    path = _inside(root, folder / TREE_FILE)
    try:
        raw = json.loads(path.read_text())
        kind = raw.get("kind") if isinstance(raw, dict) else None
        tree = (_EnsembleTree if kind == "ensemble" else _FoldsTree).model_validate(raw)
    except (json.JSONDecodeError, ValidationError) as exc:
        detail = exc.errors(include_url=False)[0] if isinstance(exc, ValidationError) else {"msg": str(exc)}
        where = ".".join(str(p) for p in detail.get("loc", ()))
        raise BundleError(
            f"{path}: not a predictor description ({where}: {detail['msg']}); re-export the run"
        ) from None
    if isinstance(tree, _EnsembleTree):
        return EnsemblePredictor.load(folder, tree, root)
    return FoldAverage.load(folder, tree, root)


def sorted_oof(run: RunFolder, task: TaskRef = None) -> np.ndarray:
    """A member's OOF predictions, each column sorted: the reference its ranks are taken against."""
    names = list(load_task(task).target_names)
    return np.sort(run.read_oof()[names].to_numpy(np.float64), axis=0)


def load_predictor(store: Store, run_id: str, load_models: bool = True) -> Predictor:
    """The predictor of a recorded run (CV or ensemble, members resolved in the same store).

    ``load_models=False`` leaves fold models on disk until first used (to save the predictor).
    """
    record = store.get(run_id)
    run = store.folder(record.run_id, models=True)
    meta = run.read_meta()
    task = run_task(run)
    if meta.kind == "ensemble":
        spec = run.read_ensemble()
        members = [load_predictor(store, m, load_models) for m in spec["members"]]
        rank = spec["average"] == "rank"
        refs = [sorted_oof(store.folder(m), task) for m in spec["members"]] if rank else None
        postprocess = run.verified(POSTPROCESS_FILE) if run.has(POSTPROCESS_FILE) else None
        return EnsemblePredictor(record.run_id, members, spec, refs, postprocess, task)
    dirs = run.fold_model_dirs(meta.folds_selected)
    predictor = FoldAverage(record.run_id, dirs, meta.folds_selected, task)
    if load_models:
        predictor.models  # noqa: B018  # load now, as a bundle does
    return predictor


def copy_tree(src: Path, dst: Path, link: bool, skip: re.Pattern | None = None) -> None:
    """Copy a folder's files (``link``: hard links where the file system allows), skipping names
    that match ``skip``."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if skip is not None and any(skip.search(part) for part in rel.parts):
            continue
        target = dst / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if link:
            try:
                os.link(path, target)
                continue
            except OSError:  # another file system, or links not allowed: copy
                pass
        shutil.copy2(path, target)


__all__ = [
    "FOLD_MODEL_DIR",
    "TASK_FILE",
    "EnsemblePredictor",
    "FoldAverage",
    "Predictor",
    "check_same_task",
    "check_task_predictions",
    "copy_tree",
    "load_folder",
    "load_predictor",
    "read_task_file",
    "run_task",
    "sorted_oof",
    "task_of",
    "write_task",
]
