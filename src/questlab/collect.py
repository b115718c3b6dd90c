"""Merging single-fold runs (``questlab run --fold k`` on several machines) into one run.

The runs must share the model config, the seed, the folds, the data and the pseudo-labels (the
files checked by sha256); their fold folders are copied into a new run, which is then scored and
recorded like any CV run (the pseudo-label record and tags included).
"""

from __future__ import annotations

from pathlib import Path

from questlab import __version__
from questlab.config import parse_config
from questlab.console import Say, stderr
from questlab.data import Data, Dataset
from questlab.errors import UsageError
from questlab.folds import FOLDS_FILE
from questlab.provenance import file_sha256, git_commit
from questlab.pseudo import describe_pseudo, pseudo_tags, recorded_pseudo
from questlab.recording import RunWriter, direction_note, flatten, score_label
from questlab.rundir import TAG_COLLECTED_FROM, read_task
from questlab.store import Store


def collect_runs(
    store: Store,
    run_ids: list[str],
    train: Data,
    test: Data | None = None,
    name: str | None = None,
    say: Say = stderr,
) -> str:
    """Merge single-fold runs (``run --fold k``) made with the same config and folds into one run.

    ``train`` (and ``test``) must be the data the runs were made from (checked by sha256).
    """
    records = [store.get(r) for r in run_ids]
    sources = [store.folder(r.run_id, models=True) for r in records]
    metas = [f.read_meta() for f in sources]
    base = metas[0]
    task = read_task(sources[0])
    for r, f, m in zip(records[1:], sources[1:], metas[1:], strict=True):
        other = read_task(f)
        if other.fingerprint != task.fingerprint:
            raise UsageError(
                f"run {r.run_id} was made under task {other.name!r}, run {records[0].run_id} under task "
                f"{task.name!r}: cannot collect"
            )
        if (m.config or {}).get("model") != (base.config or {}).get("model"):
            raise UsageError(f"run {r.run_id} has another model config than {records[0].run_id}: cannot collect")
        if m.seed != base.seed:  # each fold is seeded from it: the merged run's recorded seed must be true
            raise UsageError(
                f"run {r.run_id} was made with seed {m.seed}, run {records[0].run_id} with seed {base.seed}"
            )
        if m.train_sha256 != base.train_sha256:
            raise UsageError(f"run {r.run_id} was trained on another train file than {records[0].run_id}")
        if recorded_pseudo(m) != recorded_pseudo(base):  # fold k must train on the pseudo rows the others did
            mine, theirs = recorded_pseudo(m), recorded_pseudo(base)
            raise UsageError(
                f"run {r.run_id} was trained with {describe_pseudo(mine, theirs)}, "
                f"run {records[0].run_id} with {describe_pseudo(theirs, mine)}: cannot collect"
            )
        if file_sha256(f / FOLDS_FILE) != file_sha256(sources[0] / FOLDS_FILE):
            raise UsageError(f"run {r.run_id} used other folds than {records[0].run_id}: cannot collect")
        if m.test_sha256 != base.test_sha256:  # else the submission averages other pairs row by row
            raise UsageError(
                f"run {r.run_id} predicted another test file than {records[0].run_id} "
                f"({m.test_file or 'no --test'} vs {base.test_file or 'no --test'}): re-run it with the same --test"
            )
    train_data = Dataset.read(train, "train", task=task)
    test_data = Dataset.read(test, "test", task=task) if test is not None else None
    base.check_same_data("train", train_data)
    base.check_same_data("test", test_data)
    taken: dict[int, Path] = {}
    for r, f, m in zip(records, sources, metas, strict=True):
        for k in m.folds_selected:
            if k in taken:
                raise UsageError(f"fold {k} is in more than one of the runs given")
            if not f.fold_is_done(k):
                raise UsageError(f"run {r.run_id}: fold {k} is not finished")
            taken[k] = f.fold_dir(k)
    config = parse_config(base.config)
    writer = RunWriter.create(
        store,
        name or f"{config.name}-collected",
        "cv",
        config.model.name,
        tags={
            **pseudo_tags(recorded_pseudo(base)),  # as the parts' own: the one-go run's
            TAG_COLLECTED_FROM: ",".join(r.run_id for r in records),
        },
    )
    with writer.recording():
        selected = sorted(taken)
        meta = base.model_copy(
            update={
                "run_id": writer.run_id,
                "folds_selected": selected,
                "collected_from": [r.run_id for r in records],
                "git_commit": git_commit(),
                "questlab_version": __version__,
            }
        )
        for k in selected:
            writer.adopt_fold(k, taken[k])
        writer.start(
            meta,
            folds=sources[0] / FOLDS_FILE,
            params=flatten(config.model_dump(mode="json")),
            config_yaml=config.to_yaml(),
            task=task,
        )
        cv = writer.finish_folds(train_data.frame, config.bootstrap, selected, meta.folds_all)
        if selected == meta.folds_all and config.log_model:
            writer.log_model(say)
        label = f"{score_label(task)} {cv.score:.4f}{direction_note(task)}"
        say(f"collected folds {selected} into run {writer.run_id}: CV {label}")
    return writer.run_id
