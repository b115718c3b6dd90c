"""Runs that leave the machine: self-contained bundles and MLflow pyfunc models.

A bundle is a folder that predicts with nothing else (no store, no encoder package)::

    bundle.json          manifest: bundle format, questlab/python/torch versions, the run, its
                         CV score, the encoders it carries, and the sha256 of every file
    predictor/           predictor.json + the fitted models:
                           a CV run:    fold_K/ (each fold's saved model)
                           an ensemble: members/member_I/ (each a predictor/ of its own),
                                        ensemble.json (weights, averaging), references.npz
                                        (members' sorted OOF, rank averaging), postprocess.json
    encoders/N-name/     Hugging Face folders the models load at predict time (copied in)

It holds no absolute path, so it works from any folder, read-only too (a Kaggle dataset). Every
finished run is also logged as an MLflow model (``runs:/RUN_ID/model``): ``MLmodel`` + a bundle
in ``bundle/``, loaded through :func:`_load_pyfunc`.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from questlab import __version__
from questlab.data import validate_frame
from questlab.errors import BundleError
from questlab.models import get_model_class
from questlab.models.pretrained import encoder_key, register_encoder_folder, resolve_encoder
from questlab.predict import EnsemblePredictor, FoldAverage, Predictor, combiner_from_spec, predict_frame, sorted_oof
from questlab.rundir import MLFLOW_MODEL_DIR, POSTPROCESS_FILE, file_sha256
from questlab.schema import ID, INPUT_COLUMNS, REQUIRED_TEXT, TARGETS
from questlab.store import Store
from questlab.strictjson import strict_json

BUNDLE_FORMAT = 1
MANIFEST = "bundle.json"
PREDICTOR_DIR = "predictor"
ENCODERS_DIR = "encoders"
TREE_FILE = "predictor.json"
PYFUNC_DATA = "bundle"  # the bundle's folder inside an MLflow model
# What predicting from a bundle needs (the pyfunc model's requirements.txt); torch is whatever
# the user has: the exact CPU pin lives in scripts/setup.sh only.
PREDICT_REQUIREMENTS = [
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "torch",
    "transformers",
    "safetensors",
    "pydantic",
    "pyyaml",
]
# Encoder files a saved model never loads (other frameworks' copies of the same weights).
_ENCODER_SKIP = re.compile(r"(^onnx$|^openvino$|\.onnx$|\.h5$|\.msgpack$|\.ot$|^desktop\.ini$)")


# --- writing -----------------------------------------------------------------------------------
def export_run(store: Store, run_id: str, dest: Path) -> Path:
    """Write run ``run_id`` as a bundle in ``dest`` (new or empty); nothing half-written on failure.

    The bundle is built in a temporary folder beside ``dest`` and renamed into place at the end.
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        kind = "a file" if not dest.is_dir() else "a folder that is not empty"
        raise BundleError(f"{dest} is {kind}: export into a new or empty folder (nothing was written)")
    record = store.get(run_id)
    if record.status != "FINISHED":
        raise BundleError(f"run {record.run_id} is {record.status.lower()}: only finished runs can be exported")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        write_bundle(store, record.run_id, tmp)
        if dest.exists():
            dest.rmdir()
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def write_bundle(store: Store, run_id: str, folder: Path, link: bool = False) -> dict[str, Any]:
    """Write the bundle of a finished run into ``folder`` (created); return its manifest.

    ``link`` hard-links files instead of copying where the file system allows (the MLflow model
    inside a local run folder then costs no disk).
    """
    folder.mkdir(parents=True, exist_ok=True)
    encoders: set[str] = set()
    _write_tree(store, run_id, folder / PREDICTOR_DIR, encoders, link)
    encoder_dirs = {}
    for i, spec in enumerate(sorted(encoders)):
        name = f"{i}-{re.sub(r'[^A-Za-z0-9._-]+', '_', encoder_key(spec))[-60:]}"
        _copy_tree(resolve_encoder(spec), folder / ENCODERS_DIR / name, link, skip=_ENCODER_SKIP)
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
        "model": record.tags.get("questlab.model", meta.model),
        "cv_score": record.metrics.get("cv_score"),
        "train_file": meta.train_file,
        "train_sha256": meta.train_sha256,
        "encoders": encoder_dirs,
        "files": {p.relative_to(folder).as_posix(): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()},
    }
    (folder / MANIFEST).write_text(strict_json(manifest))
    return manifest


def _write_tree(store: Store, run_id: str, folder: Path, encoders: set[str], link: bool) -> None:
    """The predictor of one run: fold models, or members + the combiner's stored state."""
    run = store.folder(run_id, models=True)
    meta = run.read_meta()
    folder.mkdir(parents=True)
    if meta.kind == "ensemble":
        spec = run.read_ensemble()
        names = [f"member_{i}" for i in range(len(spec["members"]))]
        for name, member in zip(names, spec["members"], strict=True):
            _write_tree(store, member, folder / "members" / name, encoders, link)
        stored = ("members", "average", "weights", "postprocess", "stack", "question_share")
        kept = {k: spec[k] for k in stored if k in spec}
        (folder / "ensemble.json").write_text(strict_json(kept))
        if spec["average"] == "rank":
            np.savez(folder / "references.npz", *[sorted_oof(store.folder(m)) for m in spec["members"]])
        if run.has(POSTPROCESS_FILE):
            shutil.copy(run / POSTPROCESS_FILE, folder / POSTPROCESS_FILE)
        tree = {"kind": "ensemble", "run_id": run_id, "members": names}
    else:
        for k, model_dir in zip(meta.folds_selected, run.fold_model_dirs(meta.folds_selected), strict=True):
            _copy_tree(model_dir, folder / f"fold_{k}", link)
            saved = json.loads((model_dir / "model.json").read_text())
            encoders.update(get_model_class(saved["model"]).pretrained_encoders(saved["params"]))
        tree = {"kind": "folds", "run_id": run_id, "folds": meta.folds_selected}
    (folder / TREE_FILE).write_text(strict_json(tree))


def _copy_tree(src: Path, dst: Path, link: bool, skip: re.Pattern | None = None) -> None:
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


# --- reading -----------------------------------------------------------------------------------
def bundle_root(path: Path) -> Path:
    """The bundle folder of ``path``: a bundle itself, or an MLflow model folder holding one."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: no such folder (give the folder `questlab export` wrote)")
    if (path / MANIFEST).exists():
        return path
    if (path / "MLmodel").exists() and (path / PYFUNC_DATA / MANIFEST).exists():
        return path / PYFUNC_DATA
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
    if verify:
        for rel, digest in manifest.get("files", {}).items():
            file = root / rel
            if not file.is_file():
                raise BundleError(f"{root}: file {rel} is missing; re-export the run or copy the whole folder")
            if file_sha256(file) != digest:
                raise BundleError(
                    f"{root}: file {rel} does not match its sha256 in {MANIFEST} (changed or corrupt); re-export"
                )
    return manifest


def load_bundle(path: Path, verify: bool = True) -> Predictor:
    """Load a bundle's predictor (read-only; the encoders it carries win over installed ones)."""
    root = bundle_root(path)
    manifest = read_manifest(root, verify=verify)
    for spec, rel in manifest.get("encoders", {}).items():
        register_encoder_folder(spec, root / rel)
    return _load_tree(root / PREDICTOR_DIR)


def _load_tree(folder: Path) -> Predictor:
    tree = json.loads((folder / TREE_FILE).read_text())
    if tree["kind"] == "ensemble":
        members = [_load_tree(folder / "members" / name) for name in tree["members"]]
        spec = json.loads((folder / "ensemble.json").read_text())
        refs = None
        if spec["average"] == "rank":
            with np.load(folder / "references.npz") as npz:
                refs = [npz[f"arr_{i}"] for i in range(len(members))]
        return EnsemblePredictor(tree["run_id"], members, combiner_from_spec(spec, refs, folder / POSTPROCESS_FILE))
    return FoldAverage(tree["run_id"], [folder / f"fold_{k}" for k in tree["folds"]])


# --- MLflow pyfunc -----------------------------------------------------------------------------
def pyfunc_signature() -> Any:
    """The model's input and output schema: the QUEST input columns in, qa_id + 30 ratings out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = [ColSpec("long", ID, required=False)]
    inputs += [ColSpec("string", c, required=c in REQUIRED_TEXT) for c in INPUT_COLUMNS]
    outputs = [ColSpec("long", ID)] + [ColSpec("double", t) for t in TARGETS]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def log_run_model(store: Store, run_id: str) -> None:
    """Record a finished run as an MLflow pyfunc model at ``runs:/RUN_ID/model``.

    Built in the run's folder (hard links to its fold models where possible), then logged
    through MLflow (a no-op for a local store, where that folder is the artifact folder).
    """
    run = store.writer(run_id)
    target, tmp = run / MLFLOW_MODEL_DIR, run / f".{MLFLOW_MODEL_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write_bundle(store, run_id, tmp / PYFUNC_DATA, link=True)
    write_pyfunc_files(tmp, run_id)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    store.sync(run_id, MLFLOW_MODEL_DIR)


def write_pyfunc_files(folder: Path, run_id: str | None = None) -> None:
    """``MLmodel``, requirements and Python env of a pyfunc model whose bundle is in ``folder/bundle``."""
    import mlflow.pyfunc
    from mlflow.models import Model as MlflowModel

    mlmodel = MlflowModel(artifact_path=MLFLOW_MODEL_DIR, run_id=run_id, signature=pyfunc_signature())
    mlflow.pyfunc.add_to_model(mlmodel, loader_module="questlab.export", data=PYFUNC_DATA, python_env="python_env.yaml")
    mlmodel.save(str(folder / "MLmodel"))
    (folder / "requirements.txt").write_text("\n".join([f"questlab=={__version__}", *PREDICT_REQUIREMENTS]) + "\n")
    (folder / "python_env.yaml").write_text(
        f"python: {platform.python_version()}\nbuild_dependencies:\n- pip\ndependencies:\n- -r requirements.txt\n"
    )


class BundleModel:
    """A loaded bundle as a model: a frame of pairs in, qa_id + 30 ratings out (submission order).

    What ``questlab.load_bundle`` returns and what ``mlflow.pyfunc.load_model`` wraps. Input is
    validated like a test file; ``qa_id`` and the optional columns (user names and pages, url)
    may be left out.
    """

    def __init__(self, root: Path, verify: bool = True) -> None:
        self.root = bundle_root(root)
        self.manifest = read_manifest(self.root, verify=verify)
        self.predictor = load_bundle(self.root, verify=False)  # verified just above
        self.run_id: str = self.manifest["run_id"]

    def __repr__(self) -> str:
        score = self.manifest.get("cv_score")
        cv = f", cv={score:.4f}" if isinstance(score, float) else ""
        m = self.manifest
        return f"BundleModel({self.run_id[:8]}, {m.get('name')!r}, model={m.get('model')!r}{cv})"

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input).copy()
        for column in INPUT_COLUMNS:  # optional columns (user names, pages, url) may be left out
            if column not in frame.columns and column not in REQUIRED_TEXT:
                frame[column] = ""
        if ID not in frame.columns:
            frame.insert(0, ID, np.arange(len(frame)))
        frame = validate_frame(frame, "test", source="model input")
        return predict_frame(self.predictor, frame)


def _load_pyfunc(data_path: str) -> BundleModel:
    """MLflow's loader entry point (``loader_module: questlab.export``)."""
    return BundleModel(Path(data_path))
