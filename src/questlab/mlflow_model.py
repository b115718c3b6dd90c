"""A run as an MLflow model (pyfunc): ``MLmodel`` and the run's bundle, at ``runs:/RUN_ID/model``.

``mlflow.pyfunc.load_model`` loads it through :func:`_load_pyfunc` into a
:class:`~questlab.bundle.BundleModel`; every finished run is logged as one.
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from questlab import __version__
from questlab.bundle import MANIFEST, MLFLOW_BUNDLE_DIR, PREDICTOR_DIR, BundleModel, write_bundle
from questlab.models.pretrained import cache_root
from questlab.predictors import read_task_file
from questlab.provenance import file_sha256
from questlab.rundir import MLFLOW_MODEL_DIR
from questlab.store import Store
from questlab.tasks import TaskRef, load_task

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


def pyfunc_signature(task: TaskRef = None) -> Any:
    """The model's input and output schema, from the task: its id (optional) and input columns
    (texts and features required) in, the id + its targets out (QUEST: qa_id + 30 ratings)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    task = load_task(task)
    required = set(task.required_inputs)
    inputs = [ColSpec("long", task.id, required=False)]
    inputs += [ColSpec("string", c, required=c in required) for c in task.input_columns]
    outputs = [ColSpec("long", task.id)] + [ColSpec("double", t) for t in task.target_names]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def input_example(task: TaskRef = None) -> dict[str, list[Any]]:
    """One made-up row with every required column of the task filled (the pyfunc input example)."""
    task = load_task(task)
    return {task.id: [0], **{c: [f"some {c}"] for c in task.required_inputs}}


def log_run_model(store: Store, run_id: str) -> None:
    """Record a finished run as an MLflow pyfunc model at ``runs:/RUN_ID/model``.

    Built in the run's folder (hard links to its fold models where possible), then logged
    through MLflow (a no-op for a local store, where that folder is the artifact folder).
    """
    run = store.writer(run_id)
    target, tmp = run / MLFLOW_MODEL_DIR, run / f".{MLFLOW_MODEL_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write_bundle(store, run_id, tmp / MLFLOW_BUNDLE_DIR, link=True)
    write_pyfunc_files(tmp, run_id, task=read_task_file(tmp / MLFLOW_BUNDLE_DIR / PREDICTOR_DIR))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    store.sync(run_id, MLFLOW_MODEL_DIR)


def write_pyfunc_files(folder: Path, run_id: str | None = None, task: TaskRef = None) -> None:
    """``MLmodel``, requirements, Python env and input example of a pyfunc model whose bundle
    (predicting ``task``) is in ``folder/bundle``."""
    import mlflow.pyfunc
    from mlflow.models import Model as MlflowModel
    from mlflow.models.utils import _save_example

    task = load_task(task)
    mlmodel = MlflowModel(artifact_path=MLFLOW_MODEL_DIR, run_id=run_id, signature=pyfunc_signature(task))
    _save_example(mlmodel, pd.DataFrame(input_example(task)), str(folder))
    mlflow.pyfunc.add_to_model(
        mlmodel, loader_module="questlab.mlflow_model", data=MLFLOW_BUNDLE_DIR, python_env="python_env.yaml"
    )
    mlmodel.save(str(folder / "MLmodel"))
    (folder / "requirements.txt").write_text("\n".join([f"questlab=={__version__}", *PREDICT_REQUIREMENTS]) + "\n")
    (folder / "python_env.yaml").write_text(
        f"python: {platform.python_version()}\nbuild_dependencies:\n- pip\ndependencies:\n- -r requirements.txt\n"
    )


def _load_pyfunc(data_path: str) -> BundleModel:
    """MLflow's loader entry point (``loader_module``; models logged by questlab 0.9.0 name
    ``questlab.export``, which forwards here)."""
    return BundleModel(_out_of_mlflow_download(Path(data_path)))


def _out_of_mlflow_download(bundle: Path) -> Path:
    """Where to load ``bundle`` from, leaving no copy in the system temp folder.

    ``mlflow.pyfunc.load_model("runs:/...")`` downloads the model into a new ``tmp*`` folder of the
    system temp folder and never removes it (tens of MB per load). Such a bundle is moved into
    questlab's cache, one copy per bundle content (its manifest's sha256; every file is verified
    on load), and the download is removed. A bundle anywhere else is loaded where it is.
    """
    model_dir = bundle.resolve().parent
    download = model_dir.parent
    temp = Path(tempfile.gettempdir()).resolve()
    if download.parent != temp or not download.name.startswith("tmp") or not (bundle / MANIFEST).is_file():
        return bundle
    dest = cache_root() / "bundles" / file_sha256(bundle / MANIFEST)
    if not (dest / MANIFEST).is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=dest.parent))
        shutil.move(str(bundle), str(staging / "bundle"))
        with contextlib.suppress(OSError):  # another process put the same bundle there first
            (staging / "bundle").rename(dest)
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(download, ignore_errors=True)
    return dest
