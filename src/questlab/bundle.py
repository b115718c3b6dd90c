"""A bundle: a run's predictor as a self-contained folder that predicts with nothing else.

A bundle needs no store and no encoder package::

    bundle.json          manifest: bundle format, questlab/python/torch versions, the run, its
                         CV score, the encoders it carries, and the sha256 of every file
    predictor/           the run's predictor folder (:mod:`questlab.predictors`), with task.json
                         (the task it predicts; a 0.9.0 bundle has none: quest):
                           a CV run:    predictor.json, fold_K/ (each fold's saved model)
                           an ensemble: predictor.json, members/member_I/ (each a predictor
                                        folder), ensemble.json, references.npz, postprocess.json
    encoders/N-name/     Hugging Face folders the models load at predict time (copied in)

It holds no absolute path, so it works from any folder, read-only too (a Kaggle dataset). An
MLflow model of a run (:mod:`questlab.mlflow_model`) holds a bundle in its ``bundle/`` folder.
"""

from __future__ import annotations

import json
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from questlab import __version__
from questlab.data import validate_frame
from questlab.errors import BundleError
from questlab.models.pretrained import encoder_key, register_encoder_folder, resolve_encoder
from questlab.predict import check_file_task, predict_frame
from questlab.predictors import Predictor, copy_tree, load_folder, load_predictor, task_of
from questlab.provenance import file_sha256
from questlab.rundir import TAG_MODEL
from questlab.store import Store
from questlab.strictjson import strict_json
from questlab.tasks import Task

BUNDLE_FORMAT = 2  # 1: questlab <= 0.9.0 (pickled TF-IDF state); 2: no pickle anywhere
MANIFEST = "bundle.json"
PREDICTOR_DIR = "predictor"
ENCODERS_DIR = "encoders"
MLFLOW_BUNDLE_DIR = "bundle"  # the bundle's folder inside an MLflow model
# Encoder files a saved model never loads (other frameworks' copies of the same weights).
_ENCODER_SKIP = re.compile(r"(^onnx$|^openvino$|\.onnx$|\.h5$|\.msgpack$|\.ot$|^desktop\.ini$)")


# --- writing -----------------------------------------------------------------------------------
def write_bundle(store: Store, run_id: str, folder: Path, link: bool = False) -> dict[str, Any]:
    """Write the bundle of a finished run into ``folder`` (created); return its manifest.

    ``link`` hard-links files instead of copying where the file system allows (the MLflow model
    inside a local run folder then costs no disk).
    """
    folder.mkdir(parents=True, exist_ok=True)
    predictor = load_predictor(store, run_id, load_models=False)
    predictor.save(folder / PREDICTOR_DIR, link)
    encoder_dirs = {}
    for i, spec in enumerate(sorted(predictor.encoders())):
        name = f"{i}-{re.sub(r'[^A-Za-z0-9._-]+', '_', encoder_key(spec))[-60:]}"
        copy_tree(resolve_encoder(spec), folder / ENCODERS_DIR / name, link, skip=_ENCODER_SKIP)
        encoder_dirs[spec] = f"{ENCODERS_DIR}/{name}"
    record = store.get(run_id)
    meta = store.folder(run_id).read_meta()
    manifest = {
        "bundle_format": BUNDLE_FORMAT,
        "questlab_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "python": platform.python_version(),
        "torch": sys.modules["torch"].__version__ if "torch" in sys.modules else None,
        "run_id": record.run_id,
        "name": record.name,
        "kind": meta.kind,
        "task": task_of(predictor).name,
        "model": record.tags.get(TAG_MODEL, meta.model),
        "cv_score": record.metrics.get("cv_score"),
        "train_file": meta.train_file,
        "train_sha256": meta.train_sha256,
        "encoders": encoder_dirs,
        "files": {p.relative_to(folder).as_posix(): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()},
    }
    (folder / MANIFEST).write_text(strict_json(manifest))
    return manifest


# --- reading -----------------------------------------------------------------------------------
def bundle_root(path: Path) -> Path:
    """The bundle folder of ``path``: a bundle itself, or an MLflow model folder holding one."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: no such folder (give the folder `questlab export` wrote)")
    if (path / MANIFEST).exists():
        return path
    if (path / "MLmodel").exists() and (path / MLFLOW_BUNDLE_DIR / MANIFEST).exists():
        return path / MLFLOW_BUNDLE_DIR
    raise BundleError(f"{path} is not a questlab bundle (no {MANIFEST}): make one with `questlab export RUN DIR`")


def read_manifest(path: Path, verify: bool = True) -> dict[str, Any]:
    """The bundle's manifest, after checking its format and (``verify``) every file's sha256."""
    root = bundle_root(path)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{root / MANIFEST}: not valid JSON ({exc}); re-export the run") from None
    version = manifest.get("bundle_format")
    if not isinstance(version, int):
        raise BundleError(f"{root / MANIFEST}: no bundle_format; re-export the run")
    if version > BUNDLE_FORMAT:
        raise BundleError(
            f"{root} is bundle format {version}, written by questlab {manifest.get('questlab_version', '?')}; "
            f"this questlab ({__version__}) reads formats up to {BUNDLE_FORMAT}: upgrade questlab"
        )
    files = manifest.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(d, str) for d in files.values()):
        raise BundleError(f"{root / MANIFEST}: files is not a mapping of paths to sha256; re-export the run")
    for rel in [*files, *manifest.get("encoders", {}).values()]:
        inside(root, root / rel, f"{MANIFEST} names {rel!r}")
    for path in root.rglob("*"):  # a link anywhere in the bundle may point out of it
        inside(root, path, f"{path.relative_to(root)}")
    if verify:
        for rel, digest in files.items():
            file = root / rel
            if not file.is_file():
                raise BundleError(f"{root}: file {rel} is missing; re-export the run or copy the whole folder")
            if file_sha256(file) != digest:
                raise BundleError(
                    f"{root}: file {rel} does not match its sha256 in {MANIFEST} (changed or corrupt); re-export"
                )
    return manifest


def inside(root: Path, path: Path, what: str) -> Path:
    """``path`` resolved (links followed); a BundleError unless it stays inside ``root``."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise BundleError(f"{root}: {what} leads outside the bundle (to {resolved}): refused; re-export the run")
    return resolved


def load_bundle(path: Path, verify: bool = True) -> Predictor:
    """Load a bundle's predictor (read-only; the encoders it carries win over installed ones)."""
    root = bundle_root(path)
    manifest = read_manifest(root, verify=verify)
    for spec, rel in manifest.get("encoders", {}).items():
        register_encoder_folder(spec, root / rel)
    return load_folder(root / PREDICTOR_DIR, root=root)


class BundleModel:
    """A loaded bundle as a model: a frame of rows in, the id + the task's targets out (submission
    order; QUEST: qa_id + 30 ratings).

    What ``questlab.load_bundle`` returns and what ``mlflow.pyfunc.load_model`` wraps. Input is
    validated like a test file of the bundle's task; the id and the optional columns (QUEST: user
    names and pages, url) may be left out.
    """

    def __init__(self, root: Path, verify: bool = True) -> None:
        self.root = bundle_root(root)
        self.manifest = read_manifest(self.root, verify=verify)
        self.predictor = load_bundle(self.root, verify=False)  # verified just above
        self.run_id: str = self.manifest["run_id"]

    @property
    def task(self) -> Task:
        """The task the bundle predicts."""
        return task_of(self.predictor)

    def __repr__(self) -> str:
        score = self.manifest.get("cv_score")
        cv = f", cv={score:.4f}" if isinstance(score, float) else ""
        m = self.manifest
        return f"BundleModel({self.run_id[:8]}, {m.get('name')!r}, model={m.get('model')!r}{cv})"

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        task = self.task
        frame = pd.DataFrame(model_input).copy()
        check_file_task(frame.columns, task, "model input")
        for column in task.input_columns:  # optional columns (QUEST: user names, pages, url) may be left out
            if column not in frame.columns and column not in task.required_inputs:
                frame[column] = ""
        if task.id not in frame.columns:
            frame.insert(0, task.id, np.arange(len(frame)))
        frame = validate_frame(frame, "test", source="model input", task=task)
        return predict_frame(self.predictor, frame)
