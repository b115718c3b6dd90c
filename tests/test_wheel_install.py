"""The front door: questlab's wheel, installed in a fresh venv, runs its shipped configs and tasks.

A ``pip install questlab`` user has no checkout: the run configs (``questlab run tfidf``), the task
specs (``--task ell``) and the recipes must ship inside the wheel. A fresh venv sees this venv's
packages (all but questlab, through a ``.pth`` file, so nothing is downloaded), installs the wheel
offline, and runs from an empty folder with a throwaway HOME.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from helpers.paths import require_ell, require_quest
from helpers.wheels import LEAKY, build_wheel, kaggle_venv, ok, run


@pytest.mark.slow
def test_the_installed_wheel_runs_shipped_configs_on_quest_and_ell(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(LEAKY)}
    env |= {"HOME": str(home), "QUESTLAB_CACHE": str(home / "cache"), "PIP_CONFIG_FILE": os.devnull}
    env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    wheels = build_wheel(tmp_path, env)
    python = kaggle_venv(tmp_path / "fresh", env, missing={"questlab"})
    ok(run([python, "-m", "pip", "install", "--no-index", "--find-links", wheels, "questlab"], env))
    questlab = python.parent / "questlab"

    work = tmp_path / "empty"
    work.mkdir()
    quest = work / "quest.csv"
    pd.read_csv(require_quest() / "train.csv", keep_default_na=False).iloc[:200].to_csv(quest, index=False)
    ell = work / "ell.csv"
    pd.read_csv(require_ell() / "train.csv", keep_default_na=False).iloc[:200].to_csv(ell, index=False)

    assert "ell" in ok(run([questlab, "task", "list"], env, work)).stdout
    quiet = ["--set", "bootstrap=20", "--set", "log_model=false", "--store", work / "store"]
    q = ok(run([questlab, "run", "tfidf", "--train", quest, *quiet], env, work))
    assert "mean Spearman" in q.stderr and len(q.stdout.strip().splitlines()[-1]) == 32  # the run id
    e = ok(run([questlab, "run", "tfidf", "--task", "ell", "--train", ell, *quiet], env, work))
    assert "mcrmse" in e.stderr
    listing = ok(run([questlab, "runs", "--store", work / "store"], env, work)).stdout
    assert "quest" in listing and "ell" in listing
    where = ok(run([python, "-c", "import questlab; print(questlab.__file__)"], env)).stdout.strip()
    assert Path(where).is_relative_to(python.parents[1]), where  # the wheel's copy, not the checkout
