"""The teacher's side of pseudo-labels: a CV run's fold models label unlabelled pairs.

What the file holds and how a student run uses it is :mod:`questlab.pseudo`; this module predicts,
so it sits above the CV loop, which needs only the student's side.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd

from questlab.console import Say, stderr
from questlab.csvfile import CHUNK_ROWS
from questlab.errors import UsageError
from questlab.predict import read_test_chunks, writing
from questlab.predictors import FoldAverage, check_task_predictions, run_task
from questlab.provenance import file_sha256
from questlab.pseudo import PseudoMeta, fold_column, folds_sha256, sidecar_path
from questlab.store import Store


def pseudo_label(
    store: Store,
    teacher: str,
    unlabelled: str | Path,
    output: str | Path,
    chunk_rows: int = CHUNK_ROWS,
    say: Say = stderr,
) -> PseudoMeta:
    """Label every row of ``unlabelled`` with each fold model of the CV run ``teacher``; write
    ``output`` (and its ``.json`` sidecar); return the sidecar's content.

    The labels are the teacher's task's targets (the file is read as a test file of that task;
    the sidecar records the task, so a student of another task refuses the file).

    The input is read and written piece by piece (flat memory); the output appears only when
    complete. The teacher must be a finished CV run with all its folds: its fold-k model is the
    one that never saw fold k.
    """
    record = store.get(teacher)
    run = store.folder(record.run_id, models=True)
    meta = run.read_meta()
    if meta.kind != "cv":
        raise UsageError(
            f"run {record.run_id} is an {meta.kind} run: a teacher must be a CV run, whose fold-k model "
            "never saw fold k (give one of its members, or any CV run)"
        )
    if sorted(meta.folds_selected) != sorted(meta.folds_all) or not meta.folds_all:
        raise UsageError(
            f"run {record.run_id} fitted folds {meta.folds_selected} of {meta.folds_all}: a teacher needs "
            f"every fold (collect its single-fold runs, or resume it)"
        )
    folds = sorted(meta.folds_selected)
    task = run_task(run)
    targets = task.target_names
    models = FoldAverage(record.run_id, run.fold_model_dirs(folds), folds, task).models
    output = Path(output)
    say(f"pseudo-labelling {Path(unlabelled).name} with the {len(folds)} fold models of run {record.run_id}")
    rows, digest = 0, hashlib.sha256()
    with writing(output) as fh:
        for chunk in read_test_chunks(unlabelled, chunk_rows, task=task, who=f"teacher run {record.run_id}"):
            per_fold = [check_task_predictions(m.predict(chunk), len(chunk), m.name, task) for m in models]  # as CV
            out = chunk.reset_index(drop=True).copy()
            mean = np.clip(np.mean(per_fold, axis=0), task.lows, task.highs)
            labels = {t: v for t, v in zip(targets, mean.T, strict=True)}
            for k, pred in zip(folds, per_fold, strict=True):
                labels |= {fold_column(k, t): v for t, v in zip(targets, pred.T, strict=True)}
            text = pd.concat([out, pd.DataFrame(labels)], axis=1).to_csv(header=rows == 0, index=False)
            fh.write(text)
            digest.update(text.encode())
            rows += len(chunk)
    pmeta = PseudoMeta(
        teacher_run=record.run_id,
        teacher_name=meta.name,
        teacher_model=meta.model,
        teacher_cv=record.metrics.get("cv_score"),
        teacher_train_file=meta.train_file,
        teacher_train_sha256=meta.train_sha256,
        folds=folds,
        teacher_task=task.name,
        task=task.to_data(),
        folds_sha256=folds_sha256(run.read_folds(), task),
        unlabelled_file=Path(unlabelled).name,
        unlabelled_sha256=file_sha256(Path(unlabelled)),
        rows=rows,
        csv_sha256=digest.hexdigest(),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    sidecar_path(output).write_text(pmeta.model_dump_json(indent=1))
    say(f"wrote {rows} rows to {output} (mean + {len(folds)} per-fold label sets) and {sidecar_path(output).name}")
    return pmeta
