"""A study's parent run: the held-out groups, the folds and the records it holds; set up by the
first process, checked when a study resumes, read by joining workers; marked when a study ends badly.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
import pandas as pd

from questlab.config import RunConfig
from questlab.console import Say
from questlab.data import Dataset
from questlab.errors import StudyError
from questlab.folds import FOLDS_FILE, load_folds, make_folds, save_folds
from questlab.recording import RunWriter
from questlab.store import RunRecord, Store
from questlab.strictjson import strict_json
from questlab.tasks import Task, load_task
from questlab.tasks.grouping import group_ids, group_noun, stratify_labels
from questlab.tuning.common import (
    ATTR_CONFIG_SHA,
    ATTR_HOLDOUT,
    ATTR_PARENT,
    ATTR_PRUNE,
    ATTR_SEED,
    ATTR_SPACE_SHA,
    ATTR_STORE,
    ATTR_TASK,
    ATTR_TRAIN_SHA,
    ATTR_TRIALS,
    CONFIG_FILE,
    HOLDOUT_FILE,
    KIND_STUDY,
    SPACE_FILE,
    STUDY_FILE,
    TAG_STORAGE,
    TAG_STUDY,
    TAG_TASK,
    TASK_FILE,
    sha_of,
)
from questlab.tuning.context import StudyContext
from questlab.tuning.space import SearchSpace
from questlab.tuning.storage import count_counted, redact


def split_holdout(frame: pd.DataFrame, share: float, seed: int, task: Task | None = None) -> pd.DataFrame:
    """Hold out ``share`` of the groups (whole groups, stratified as the task's folds are), seeded.

    Returns ``id, group, fold`` in the frame's row order: fold 0 = held out, 1 = tuning. It is a
    folds file, so the final run scores it with ``folds.from_file`` and ``--fold 0``. ``task``
    None is QUEST (questions, stratified by category).
    """
    task = load_task(task)
    groups = group_ids(task, frame)
    labels = stratify_labels(task, frame)
    first = pd.DataFrame({"group": groups, "label": labels}).drop_duplicates("group")
    first = first.sort_values("group", kind="stable").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    # Within each stratum a random order, spread over [0, 1): taking the lowest ranks overall
    # keeps every stratum's share close to ``share`` and the total exact.
    position = np.empty(len(first))
    for _, idx in first.groupby("label", sort=True).indices.items():
        position[idx] = (rng.permutation(len(idx)) + rng.random(len(idx))) / len(idx)
    n_held = round(share * len(first))
    held = first["group"].to_numpy()[np.argsort(position, kind="stable")[:n_held]]
    fold = np.where(np.isin(groups, held), 0, 1)
    return pd.DataFrame({task.id: frame[task.id].to_numpy(), "group": groups, "fold": fold})


def _make_folds(tuning: pd.DataFrame, base: RunConfig, task: Task) -> pd.DataFrame:
    return make_folds(tuning, n_splits=base.folds.n_splits, seed=base.folds.seed, task=task)


def parent_record(store: Store, parent_id: str, attrs: Mapping[str, Any], name: str) -> RunRecord:
    try:
        return store.get(parent_id)
    except LookupError:
        raise StudyError(
            f"study {name}'s parent run {parent_id} is not in store {store.uri} (it was started with "
            f"store {attrs.get(ATTR_STORE)}): give that store"
        ) from None


def check_train(attrs: Mapping[str, Any], data: Dataset, name: str) -> None:
    want = attrs.get(ATTR_TRAIN_SHA)
    if want and want != data.sha256:
        raise StudyError(
            f"the train data given ({data.name}, sha256 {data.sha256[:12]}...) is not what study {name} "
            f"was started with (sha256 {want[:12]}...)"
        )


def load_split(store: Store, parent_id: str, frame: pd.DataFrame, task: Task | None = None) -> pd.DataFrame:
    folder = store.folder(parent_id)
    if not folder.has(HOLDOUT_FILE):
        raise StudyError(f"parent run {parent_id} holds no {HOLDOUT_FILE}: the study's split is lost")
    return load_folds(folder / HOLDOUT_FILE, frame, task=load_task(task))


def tuning_rows(frame: pd.DataFrame, split: pd.DataFrame | None) -> pd.DataFrame:
    if split is None:
        return frame
    return frame[split["fold"].to_numpy() == 1].reset_index(drop=True)


def prepare_study(
    study: optuna.Study,
    name: str,
    url: str,
    store: Store,
    base: RunConfig,
    space: SearchSpace,
    data: Dataset,
    trials: int,
    seed: int,
    holdout: float,
    prune: bool,
    say: Say,
) -> StudyContext:
    """Set up a new study's parent run, split and folds; or check a resumed one is the same.

    The task is the base config's (none: QUEST); the parent records it (``task.json``, a tag)."""
    task = load_task(getattr(base, "task", None))
    attrs = study.user_attrs
    parent_id = attrs.get(ATTR_PARENT)
    wanted = {
        ATTR_CONFIG_SHA: (
            sha_of(base.model_dump(mode="json")),
            f"another config (see {CONFIG_FILE} of the parent run)",
        ),
        ATTR_SPACE_SHA: (space.digest(), f"another search space (see {SPACE_FILE} of the parent run)"),
        ATTR_HOLDOUT: (holdout, f"holdout {attrs.get(ATTR_HOLDOUT)}"),
        ATTR_SEED: (seed, f"seed {attrs.get(ATTR_SEED)}"),
        ATTR_PRUNE: (prune, "pruning " + ("on" if attrs.get(ATTR_PRUNE) else "off")),
        # a study made before tasks is QUEST's
        ATTR_TASK: (task.fingerprint, f"another task (see {TASK_FILE} of the parent run)"),
    }
    recorded = {**attrs, ATTR_TASK: attrs.get(ATTR_TASK, load_task(None).fingerprint)}
    if parent_id:
        check_train(attrs, data, name)
        for key, (value, what) in wanted.items():
            if recorded.get(key) != value:
                raise StudyError(
                    f"study {name} (parent run {parent_id}) was started with {what}: resume it as it was "
                    "started, or give a new --study name"
                )
        record = parent_record(store, parent_id, attrs, name)
        if record.status != "RUNNING":
            store.reopen(parent_id)
        study.set_user_attr(ATTR_TRIALS, trials)
        split = load_split(store, parent_id, data.frame, task) if holdout > 0 else None
        done = count_counted(study)
        say(f"resuming study {name} (parent run {parent_id}): {done} of {trials} trials done")
    else:
        split = split_holdout(data.frame, holdout, seed, task) if holdout > 0 else None
        tuning = tuning_rows(data.frame, split)
        if split is not None:
            n_held = int(split.loc[split["fold"] == 0, "group"].nunique())
            if n_held < 2:
                held_out = f"{n_held} {group_noun(task).removesuffix('s')}(s)"
                raise StudyError(f"holdout {holdout} keeps {held_out} out: too few to score; give more")
        folds = _make_folds(tuning, base, task)
        tags = {TAG_STUDY: name, TAG_STORAGE: redact(url), TAG_TASK: task.name}
        writer = RunWriter.create(store, name, KIND_STUDY, base.model.name, tags=tags, scored=False)
        parent_id, folder = writer.run_id, writer.folder
        (folder / CONFIG_FILE).write_text(base.to_yaml())
        (folder / SPACE_FILE).write_text(space.to_yaml())
        (folder / TASK_FILE).write_text(strict_json(task.to_data()))
        save_folds(folds, folder.path)
        parts = [TASK_FILE, CONFIG_FILE, SPACE_FILE, FOLDS_FILE, STUDY_FILE]
        if split is not None:
            split.to_csv(folder / HOLDOUT_FILE, index=False)
            parts.append(HOLDOUT_FILE)
        info = {
            "study": name,
            "task": task.name,
            "storage": redact(url),
            "train_file": data.name,
            "train_sha256": data.sha256,
            "holdout": holdout,
            "seed": seed,
            "rows": len(data.frame),
            "tuning_rows": len(tuning),
            "holdout_rows": 0 if split is None else int((split["fold"] == 0).sum()),
            "holdout_questions": 0 if split is None else int(split.loc[split["fold"] == 0, "group"].nunique()),
        }
        (folder / STUDY_FILE).write_text(json.dumps(info, indent=1))
        writer.sync(*parts)
        writer.log_params(
            {
                "holdout": holdout,
                "seed": seed,
                "prune": prune,
                "folds.n_splits": base.folds.n_splits,
                "folds.seed": base.folds.seed,
                **{f"space.{k}": s.describe() for k, s in space.params.items()},
            },
        )
        for key, (value, _) in wanted.items():
            study.set_user_attr(key, value)
        study.set_user_attr(ATTR_TRAIN_SHA, data.sha256)
        study.set_user_attr(ATTR_STORE, store.uri)
        study.set_user_attr(ATTR_TRIALS, trials)
        study.set_user_attr(ATTR_PARENT, parent_id)  # last: a joining worker takes its presence as "ready"
        noun = group_noun(task)
        if split is None:
            held = f"no held-out {noun}"
        elif task.groups is None:  # every row its own group: the two counts are one
            held = f"{info['holdout_rows']} rows held out"
        else:
            held = f"{info['holdout_questions']} {noun} ({info['holdout_rows']} rows) held out"
        say(f"study {name}: parent run {parent_id}; {len(tuning)} tuning rows, {held}")
    return StudyContext(
        study=study,
        name=name,
        storage_url=url,
        store=store,
        parent_id=parent_id,
        base=base,
        space=space,
        train=data.frame,
        tuning=tuning_rows(data.frame, split),
        split=split,
        trials=trials,
        seed=seed,
        holdout=holdout,
        prune=prune,
        say=say,
    )


def mark_parent(store: Store, parent_id: str, status: str, message: str) -> None:
    with contextlib.suppress(Exception):  # the original error matters more than this record
        RunWriter(store, parent_id).end(status, message)
