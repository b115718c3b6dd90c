"""Ensemble refusals beyond mismatched folds: each a one-line UsageError, and no run left behind.

Members are tiny runs on the 300-row slice (``helpers.runs``); the seeded test model fits in
milliseconds, so the cost is the recording.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import helpers.seeded_model  # noqa: F401  # registers "seeded_length"
from helpers.runs import N_FOLDS, qa_id_in_fold, tiny_run
from helpers.runs import test_slice as slice_of_test
from helpers.runs import train_slice as slice_of_train
from questlab.cli import app
from questlab.config import parse_config
from questlab.cv import run_cv
from questlab.ensemble import EnsembleSpec
from questlab.ensemble_runs import build_ensemble, postprocess_run
from questlab.errors import UsageError
from questlab.store import Store


def _run_on(store: Store, train: Path, test: Path | None, name: str) -> str:
    cfg = parse_config(
        {"name": name, "folds": {"n_splits": N_FOLDS, "seed": 1}, "model": {"name": "seeded_length"}, "bootstrap": 0}
    )
    return run_cv(cfg, train, test, store=store, say=str)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Finished runs a and b (same data, same folds) and the runs each refusal is about."""
    tmp = tmp_path_factory.mktemp("refusals")
    store = Store(tmp / "store")
    other_train, other_test = tmp / "train_299.csv", tmp / "test_40.csv"
    pd.read_csv(slice_of_train()).head(299).to_csv(other_train, index=False)
    pd.read_csv(slice_of_test()).head(40).to_csv(other_test, index=False)
    runs = {
        "a": tiny_run(store, "seeded_length", name="a"),
        "b": tiny_run(store, "seeded_length", name="b"),
        "partial": tiny_run(store, "seeded_length", name="partial", only_folds=[0]),
        "other_train": _run_on(store, other_train, slice_of_test(), "other-train"),
        "other_test": _run_on(store, slice_of_train(), other_test, "other-test"),
    }
    with pytest.raises(RuntimeError, match="simulated"):
        tiny_run(store, "noisy_oracle", {"fail_if_valid_has": qa_id_in_fold(1)}, name="failed")
    runs["failed"] = next(r.run_id for r in store.list_runs() if r.name == "failed")
    return {"store": store, **runs}


def _refused(world: dict, run_ids: list[str], spec: EnsembleSpec | None = None) -> str:
    """The refusal's message; checks it is one line and that no ensemble run was created."""
    store: Store = world["store"]
    before = len(store.list_runs())
    with pytest.raises(UsageError) as info:
        build_ensemble(store, run_ids, spec or EnsembleSpec(), n_boot=0)
    assert len(store.list_runs()) == before, "a refused ensemble left a run behind"
    message = str(info.value)
    assert "\n" not in message
    return message


def test_members_trained_on_another_train_file_are_refused(world: dict) -> None:
    message = _refused(world, [world["a"], world["other_train"]])
    assert message == (
        f"run {world['other_train']} and run {world['a']} were trained on different train files: "
        "they cannot be combined"
    )


def test_a_run_given_twice_is_refused(world: dict) -> None:
    assert _refused(world, [world["a"], world["b"], world["a"]]) == "a run is given twice"
    # a prefix of the same id is the same run
    assert _refused(world, [world["a"], world["a"][:8]]) == "a run is given twice"


@pytest.mark.parametrize(("member", "state"), [("partial", "finished and partial"), ("failed", "failed and partial")])
def test_partial_or_failed_members_are_refused(world: dict, member: str, state: str) -> None:
    message = _refused(world, [world["a"], world[member]])
    assert message.startswith(f"run {world[member]} is {state}: only finished runs over all folds can be combined")
    assert "use collect" in message


def test_members_that_predicted_other_test_rows_are_refused(world: dict) -> None:
    message = _refused(world, [world["a"], world["other_test"]])
    assert message == "the members predicted different test rows: re-run them with the same --test file"


@pytest.mark.parametrize("weights", [[1.0], [0.5, 0.3, 0.2]])
def test_a_wrong_number_of_weights_is_refused(world: dict, weights: list[float]) -> None:
    message = _refused(world, [world["a"], world["b"]], EnsembleSpec(weights=weights))
    assert message == f"{len(weights)} weights given for 2 runs"


def test_negative_or_zero_weights_and_unknown_modes_are_refused(world: dict) -> None:
    pair = [world["a"], world["b"]]
    assert (
        _refused(world, pair, EnsembleSpec(weights=[1.0, -0.5])) == "weights must be non-negative with a positive sum"
    )
    assert _refused(world, pair, EnsembleSpec(weights=[0.0, 0.0])) == "weights must be non-negative with a positive sum"
    assert _refused(world, pair, EnsembleSpec(weights="best")).startswith("unknown weights 'best'; give one of auto")
    assert (
        _refused(world, pair, EnsembleSpec(average="median")) == "unknown averaging 'median'; choose one of value, rank"
    )


def test_postprocessing_a_partial_run_is_refused(world: dict) -> None:
    with pytest.raises(UsageError, match=rf"^run {world['partial']} is finished and partial"):
        postprocess_run(world["store"], world["partial"], n_boot=0)


def test_cli_refusals_are_one_line_exit_2(world: dict) -> None:
    store = str(world["store"].root)
    cases = [
        ([world["a"], world["a"]], "a run is given twice"),
        ([world["a"], world["other_train"]], "were trained on different train files"),
        ([world["a"], world["failed"]], "is failed and partial"),
    ]
    for ids, expected in cases:
        res = CliRunner().invoke(app, ["ensemble", *ids, "--store", store])
        assert res.exit_code == 2 and expected in res.output and "Traceback" not in res.output, res.output
