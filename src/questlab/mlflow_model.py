"""A run as an MLflow model (pyfunc): ``MLmodel`` and the run's bundle, at ``runs:/RUN_ID/model``.

``mlflow.pyfunc.load_model`` loads it through :func:`_load_pyfunc` into a
:class:`~questlab.bundle.BundleModel`; every finished run is logged as one.
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import Any

from questlab import __version__
from questlab.bundle import MLFLOW_BUNDLE_DIR, BundleModel, write_bundle
from questlab.rundir import MLFLOW_MODEL_DIR
from questlab.schema import ID, INPUT_COLUMNS, REQUIRED_TEXT, TARGETS
from questlab.store import Store

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
    write_bundle(store, run_id, tmp / MLFLOW_BUNDLE_DIR, link=True)
    write_pyfunc_files(tmp, run_id)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    store.sync(run_id, MLFLOW_MODEL_DIR)


def write_pyfunc_files(folder: Path, run_id: str | None = None) -> None:
    """``MLmodel``, requirements and Python env of a pyfunc model whose bundle is in ``folder/bundle``."""
    import mlflow.pyfunc
    from mlflow.models import Model as MlflowModel

    mlmodel = MlflowModel(artifact_path=MLFLOW_MODEL_DIR, run_id=run_id, signature=pyfunc_signature())
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
    return BundleModel(Path(data_path))
