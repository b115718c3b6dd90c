"""An output is never one of the command's inputs, and a refused command leaves nothing behind.

Each CLI case runs in ``tmp_path`` (a default ./questlab-store would land there) with inputs cut
from the real train.csv and test.csv, and checks: exit 2, one ``error:`` line naming the output and
the input, every file as it was (the input not overwritten), no store created. The same file is
refused whatever its name: the very path, a symlink to it, a hard link to it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

import questlab as ql
from helpers.paths import require_quest
from helpers.refusals import refused, snapshot
from questlab.errors import ConfigError, DataError, UsageError
from questlab.recipes import load_recipe, run_recipe
from questlab.schema import TRAIN_COLUMNS
from questlab.store import Store, liveness

CONFIG = {"name": "guarded", "bootstrap": 0, "folds": {"n_splits": 2, "seed": 1},
          "model": {"name": "tfidf", "params": {"max_features": 300}}}  # fmt: skip
SPACE = {"params": {"model.params.alpha": {"float": [0.5, 5.0]}}}


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path`` as the working folder, holding train.csv (40 rows), test.csv (5 rows), config.yaml."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QUESTLAB_STORE", raising=False)
    quest = require_quest()
    pd.read_csv(quest / "train.csv", dtype=str, keep_default_na=False).head(40).to_csv("train.csv", index=False)
    test = pd.read_csv(quest / "test.csv", dtype=str, keep_default_na=False).head(5)
    test[list(TRAIN_COLUMNS[:11])].to_csv("test.csv", index=False)
    Path("config.yaml").write_text(yaml.safe_dump(CONFIG))
    Path("space.yaml").write_text(yaml.safe_dump(SPACE))
    return tmp_path


def symlink(target: str, name: str) -> str:
    os.symlink(target, name)
    return name


def hardlink(target: str, name: str) -> str:
    os.link(target, name)
    return name


# name: (argv in the working folder, words of the error line)
CASES: dict[str, tuple[Callable[[], list[str]], list[str]]] = {
    "run --submission is --train": (
        lambda: ["run", "config.yaml", "--train", "train.csv", "--test", "test.csv", "--submission", "train.csv"],
        ["--submission train.csv is the --train file", "would be overwritten", "elsewhere"],
    ),
    "run --submission is --test through a symlink": (
        lambda: [
            "run",
            "config.yaml",
            "--train",
            "train.csv",
            "--test",
            "test.csv",
            "--submission",
            symlink("test.csv", "sub.csv"),
        ],
        ["--submission sub.csv is the --test file (test.csv)"],
    ),
    "run --submission is --train through a hard link": (
        lambda: [
            "run",
            "config.yaml",
            "--train",
            "train.csv",
            "--test",
            "test.csv",
            "--submission",
            hardlink("train.csv", "sub.csv"),
        ],
        ["--submission sub.csv is the --train file (train.csv)"],
    ),
    "run --submission is the CONFIG, by another path": (
        lambda: [
            "run",
            "config.yaml",
            "--train",
            "train.csv",
            "--test",
            "test.csv",
            "--submission",
            "./sub/../config.yaml",
        ],
        ["--submission", "is the CONFIG file (config.yaml)"],
    ),
    "predict --output is --input": (
        lambda: ["predict", "0123abcd", "--input", "test.csv", "--output", "test.csv"],
        ["--output test.csv is the --input file"],
    ),
    "predict --output is --input through a symlink": (
        lambda: ["predict", "0123abcd", "--input", symlink("test.csv", "in.csv"), "--output", "test.csv"],
        ["--output test.csv is the --input file (in.csv)"],
    ),
    "pseudo-label -o is --unlabelled": (
        lambda: ["pseudo-label", "0123abcd", "--unlabelled", "test.csv", "-o", "test.csv"],
        ["--output test.csv is the --unlabelled file"],
    ),
    "pseudo-label's sidecar is --unlabelled": (
        lambda: ["pseudo-label", "0123abcd", "--unlabelled", hardlink("test.csv", "p.csv.json"), "-o", "p.csv"],
        ["--output p.csv: its sidecar p.csv.json is the --unlabelled file"],
    ),
    "tune --best-config is --train": (
        lambda: ["tune", "config.yaml", "--space", "space.yaml", "--train", "train.csv", "--best-config", "train.csv"],
        ["--best-config train.csv is the --train file"],
    ),
    "tune --best-config is the --space": (
        lambda: [
            "tune",
            "config.yaml",
            "--space",
            "space.yaml",
            "--train",
            "train.csv",
            "--best-config",
            symlink("space.yaml", "best.yaml"),
        ],
        ["--best-config best.yaml is the --space file (space.yaml)"],
    ),
    "tune's default best config is the CONFIG": (
        lambda: ["tune", hardlink("config.yaml", "guarded-best.yaml"), "--space", "space.yaml", "--train", "train.csv"],
        ["the best config (default --best-config) guarded-best.yaml is the CONFIG file"],
    ),
    "recipe --submission is --train": (
        lambda: ["recipe", "recipe.yaml", "--train", "train.csv", "--test", "test.csv", "--submission", "train.csv"],
        ["--submission train.csv is the --train file"],
    ),
    "recipe --submission is the recipe file": (
        lambda: [
            "recipe",
            "recipe.yaml",
            "--train",
            "train.csv",
            "--test",
            "test.csv",
            "--submission",
            "recipe.yaml",
        ],
        ["--submission recipe.yaml is the recipe file"],
    ),
    "recipe --submission is a member's config file": (
        lambda: [
            "recipe",
            "recipe.yaml",
            "--train",
            "train.csv",
            "--test",
            "test.csv",
            "--submission",
            hardlink("config.yaml", "out.csv"),
        ],
        ["--submission out.csv is the members.1.config file"],
    ),
}


def _recipe_file(members: list[dict]) -> None:
    Path("recipe.yaml").write_text(yaml.safe_dump({"name": "guarded", "bootstrap": 0, "members": members}))


TWO_MEMBERS = [
    {"config": {**CONFIG, "name": "a", "model": {"name": "tfidf", "params": {"max_features": 500}}}},
    {"config": "config.yaml"},
]


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_output_that_is_an_input_is_refused_before_any_work(case: str, here: Path) -> None:
    build, words = CASES[case]
    _recipe_file(TWO_MEMBERS)
    refused(here, build(), *words)


def test_the_python_api_refuses_it_too(here: Path) -> None:
    _recipe_file(TWO_MEMBERS)
    before = snapshot(here)
    with pytest.raises(UsageError, match=r"--submission test.csv is the --test file"):
        ql.recipe("recipe.yaml", "train.csv", "test.csv", submission="test.csv", quiet=True)
    with pytest.raises(UsageError, match=r"--submission .*recipe.yaml is the recipe file"):
        run_recipe(here / "recipe.yaml", "train.csv", "test.csv", submission=here / "recipe.yaml", say=print)
    assert snapshot(here) == before


# --- item 13: a recipe listing one config twice ------------------------------------------------
@pytest.mark.parametrize(
    "second",
    [
        {"config": "config.yaml"},  # the very same file
        {"config": {**CONFIG, "name": "renamed", "folds": {"n_splits": 5}}},  # names and folds aside
        {"config": {**CONFIG, "model": {"name": "tfidf"}}, "set": {"model.params.max_features": 300}},
    ],
)
def test_a_recipe_listing_a_config_twice_is_refused_when_loaded(second: dict, here: Path) -> None:
    _recipe_file([{"config": "config.yaml"}, second])
    with pytest.raises(ConfigError, match=r"recipe.yaml: members.0 and members.1 resolve to the same config"):
        load_recipe("recipe.yaml").member_configs(cuda=False)
    refused(here, ["recipe", "recipe.yaml", "--train", "train.csv"], "members.0 and members.1", "same config")


def test_members_that_differ_in_what_they_fit_are_not_the_same(here: Path) -> None:
    _recipe_file([{"config": "config.yaml"}, {"config": "config.yaml", "set": {"bootstrap": 10}}])
    assert len(load_recipe("recipe.yaml").member_configs(cuda=False)) == 2


def test_device_specific_members_are_compared_on_the_device_used(here: Path) -> None:
    _recipe_file([{"config": "config.yaml", "device": "cpu"}, {"config": "config.yaml", "device": "cuda"}])
    assert len(load_recipe("recipe.yaml").member_configs(cuda=False)) == 1


# --- a refused recipe or --storage creates no store --------------------------------------------
TWICE = [{"config": "config.yaml"}, {"config": "config.yaml"}]
TUNE = ["tune", "config.yaml", "--space", "space.yaml", "--train", "train.csv"]


@pytest.mark.parametrize(
    ("members", "argv", "words"),
    [
        (TWO_MEMBERS, ["recipe", "recipe.yaml", "--train", "nosuch.csv"], ["nosuch.csv", "no such file"]),
        (TWO_MEMBERS, ["recipe", "recipe.yaml", "--train", "test.csv"], ["test.csv"]),  # a test file: no targets
        (TWICE, ["recipe", "recipe.yaml", "--train", "train.csv", "--store", "given"], ["same config"]),
        (TWO_MEMBERS, [*TUNE, "--storage", "nosuchdb://x/y"], ["nosuchdb", "Optuna cannot open it"]),
        (TWO_MEMBERS, [*TUNE, "--storage", "nosuchdb://x/y", "--store", "given"], ["Optuna cannot open it"]),
        (TWO_MEMBERS, [*TUNE, "--storage", "sqlite:///no/such/folder/o.db"], ["Optuna cannot open it", "no folder"]),
        (
            TWO_MEMBERS,
            ["tune", "--join", "--study", "s", "--train", "train.csv", "--storage", "nosuchdb://x/y"],
            ["Optuna cannot open it"],
        ),
    ],
)
def test_a_refused_recipe_or_storage_creates_no_store(
    members: list[dict], argv: list[str], words: list[str], here: Path
) -> None:
    _recipe_file(members)
    refused(here, argv, *words)
    assert not (here / "questlab-store").exists() and not (here / "given").exists()


def test_a_storage_in_the_stores_own_database_is_refused(here: Path) -> None:
    """Optuna would add its 13 tables to MLflow's database."""
    import sqlite3

    _recipe_file(TWO_MEMBERS)
    Store(here / "given")
    db = here / "given" / "mlflow.db"
    before = {r[0] for r in sqlite3.connect(db).execute("select name from sqlite_master where type='table'")}
    refused(here, [*TUNE, "--store", "given", "--storage", f"sqlite:///{db}"], "the MLflow store's own database")
    after = {r[0] for r in sqlite3.connect(db).execute("select name from sqlite_master where type='table'")}
    assert after == before


def test_the_python_api_recipe_creates_no_store_for_bad_input(here: Path) -> None:
    _recipe_file(TWO_MEMBERS)
    with pytest.raises(DataError, match="no such file"):
        ql.recipe("recipe.yaml", "nosuch.csv", store=here / "given", quiet=True)
    assert not (here / "given").exists()


# --- exporting a dead run --------------------------------------------------------------------------
def test_exporting_a_dead_run_says_it_is_dead_and_how_to_resume(here: Path) -> None:
    store = Store(here / "store")
    stale = f"{time.time() - 10 * liveness.STALE_S:.0f}"
    run_id = store.create_run(
        "dead", tags={liveness.TAG_HOST: "elsewhere", liveness.TAG_PID: "1", liveness.TAG_HEARTBEAT: stale}
    )
    line = refused(
        here,
        ["export", run_id, "bundle", "--store", "store"],
        f"run {run_id} is dead",
        "not running",
        f"questlab run --resume {run_id} --train",
    )
    assert "is running" not in line
