"""``questlab collect``: single-fold runs merged into one run equal to the run made in one go.

``tests/test_cv.py`` checks that a collected run's score matches; here the merged OOF and
submission must be identical, and each refusal is one line naming what differs. The seeded test
model (``helpers.seeded_model``) makes a fold's predictions depend on the run's seed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import helpers.seeded_model  # noqa: F401  # registers "seeded_length"
from helpers.runs import N_FOLDS
from helpers.runs import test_slice as slice_of_test
from helpers.runs import train_slice as slice_of_train
from questlab.cli import app
from questlab.collect import collect_runs
from questlab.config import parse_config
from questlab.cv import run_cv
from questlab.errors import UsageError
from questlab.pseudo import PseudoLabels
from questlab.store import RunStopped, Store
from questlab.teacher import pseudo_label


def _config(seed: int = 3, model: str = "seeded_length", params: dict | None = None, name: str = "c") -> object:
    return parse_config(
        {
            "name": name,
            "seed": seed,
            "folds": {"n_splits": N_FOLDS, "seed": 1},
            "model": {"name": model, "params": params or {}},
            "bootstrap": 20,
        }
    )


def _part(store: Store, folds: list[int], config: object | None = None, train: Path | None = None,
          test: Path | None = None) -> str:  # fmt: skip
    return run_cv(config or _config(), train or slice_of_train(), test, store=store, only_folds=folds, say=str)


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Fold 0, folds 1-2 and fold 1 alone (all with the test slice), and the run made in one go."""
    tmp = tmp_path_factory.mktemp("collect")
    store = Store(tmp / "store")
    test = slice_of_test()
    return {
        "store": store,
        "tmp": tmp,
        "f0": _part(store, [0], test=test),
        "f12": _part(store, [1, 2], test=test),
        "f1": _part(store, [1], test=test),
        "whole": run_cv(_config(), slice_of_train(), test, store=store, say=str),
    }


def _refused(parts: dict, run_ids: list[str], test: Path | None = None) -> str:
    store: Store = parts["store"]
    before = len(store.list_runs())
    with pytest.raises(UsageError) as info:
        collect_runs(store, run_ids, slice_of_train(), test or slice_of_test(), say=str)
    assert len(store.list_runs()) == before, "a refused collect left a run behind"
    assert "\n" not in str(info.value)
    return str(info.value)


def test_collected_parts_equal_the_run_made_in_one_go(parts: dict) -> None:
    store: Store = parts["store"]
    merged = collect_runs(store, [parts["f12"], parts["f0"]], slice_of_train(), slice_of_test(), say=str)
    record = store.get(merged)
    assert record.status == "FINISHED" and record.tags["questlab.complete"] == "true"
    got, want = store.folder(merged), store.folder(parts["whole"])
    for name in ("oof.csv", "oof_truth.csv", "submission.csv", "per_target.csv", "folds.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(got / name), pd.read_csv(want / name), obj=name)
    assert got.read_meta().collected_from == [parts["f12"], parts["f0"]]


def test_collecting_some_folds_only_makes_a_partial_run(parts: dict) -> None:
    # Documented behaviour: what is given is merged and recorded as partial (collect the rest later).
    store: Store = parts["store"]
    merged = collect_runs(store, [parts["f0"], parts["f1"]], slice_of_train(), slice_of_test(), say=str)
    assert store.get(merged).tags["questlab.complete"] == "false"
    assert store.folder(merged).read_meta().folds_selected == [0, 1]
    assert set(pd.read_csv(store.folder(merged) / "oof.csv")["fold"]) == {0, 1}


def test_a_fold_in_two_runs_is_refused(parts: dict) -> None:
    assert _refused(parts, [parts["f0"], parts["f12"], parts["f1"]]) == "fold 1 is in more than one of the runs given"


def test_runs_of_another_model_config_are_refused(parts: dict) -> None:
    other = _part(parts["store"], [1, 2], _config(model="tfidf", params={"max_features": 500}), test=slice_of_test())
    assert _refused(parts, [parts["f0"], other]) == (
        f"run {other} has another model config than {parts['f0']}: cannot collect"
    )


def test_runs_made_with_another_seed_are_refused(parts: dict) -> None:
    other = _part(parts["store"], [1, 2], _config(seed=4), test=slice_of_test())
    assert _refused(parts, [parts["f0"], other]) == f"run {other} was made with seed 4, run {parts['f0']} with seed 3"


def test_runs_on_another_train_file_are_refused(parts: dict) -> None:
    other_train = parts["tmp"] / "train_299.csv"
    pd.read_csv(slice_of_train()).head(299).to_csv(other_train, index=False)
    other = _part(parts["store"], [1, 2], train=other_train, test=slice_of_test())
    assert _refused(parts, [parts["f0"], other]) == (
        f"run {other} was trained on another train file than {parts['f0']}"
    )
    assert _refused(parts, [other, parts["f0"]]).startswith(f"run {parts['f0']} was trained on another train file")


def test_runs_with_other_folds_are_refused(parts: dict) -> None:
    cfg = parse_config({"name": "c", "seed": 3, "folds": {"n_splits": N_FOLDS, "seed": 2},
                        "model": {"name": "seeded_length"}})  # fmt: skip
    other = _part(parts["store"], [1, 2], cfg, test=slice_of_test())
    assert _refused(parts, [parts["f0"], other]) == f"run {other} used other folds than {parts['f0']}: cannot collect"


def test_runs_that_predicted_another_test_file_are_refused(parts: dict) -> None:
    # Same number of rows, other pairs: averaging their test predictions row by row would be silent nonsense.
    other_test = parts["tmp"] / "test_other.csv"
    pd.read_csv(Path(slice_of_test())).iloc[::-1].to_csv(other_test, index=False)
    other = _part(parts["store"], [1, 2], test=other_test)
    assert _refused(parts, [parts["f0"], other]).startswith(f"run {other} predicted another test file than")
    no_test = _part(parts["store"], [1, 2])
    assert _refused(parts, [parts["f0"], no_test]).startswith(f"run {no_test} predicted another test file than")
    # and the test file given must be the runs' own
    assert _refused(parts, [parts["f0"], parts["f12"]], test=other_test).startswith("the test data given")


def test_an_unfinished_fold_is_refused(parts: dict) -> None:
    def stop(k: int, score: float, scores: list[float]) -> None:
        raise RunStopped("test")

    store: Store = parts["store"]
    with pytest.raises(RunStopped):
        run_cv(_config(), slice_of_train(), slice_of_test(), store=store, only_folds=[1, 2], on_fold=stop, say=str)
    stopped = next(r.run_id for r in store.list_runs() if r.status == "KILLED")
    assert _refused(parts, [parts["f0"], stopped]) == f"run {stopped}: fold 2 is not finished"


def test_cli_collect_prints_the_new_run_and_refuses_in_one_line(parts: dict) -> None:
    store = str(parts["store"].root)
    train, test = str(slice_of_train()), str(slice_of_test())
    res = CliRunner().invoke(app, ["collect", parts["f0"], parts["f12"], "--train", train, "--test", test,
                                   "--store", store])  # fmt: skip
    assert res.exit_code == 0, res.output
    new = res.stdout.strip().splitlines()[-1]
    assert parts["store"].get(new).tags["questlab.complete"] == "true"
    bad = CliRunner().invoke(app, ["collect", parts["f0"], parts["f0"], "--train", train, "--test", test,
                                   "--store", store])  # fmt: skip
    assert bad.exit_code == 2 and "fold 0 is in more than one of the runs given" in bad.output
    assert "Traceback" not in bad.output


# --- pseudo-labelled parts (questlab run --fold k --pseudo FILE) -----------------------------------
def _pseudo_file(parts: dict, name: str, rows: int) -> PseudoLabels:
    """Pseudo-labels from the one-go run (a complete CV run on the parts' folds) for ``rows`` test pairs."""
    unlabelled = parts["tmp"] / f"unlabelled_{rows}.csv"
    pd.read_csv(slice_of_test()).head(rows).to_csv(unlabelled, index=False)
    pseudo_label(parts["store"], parts["whole"], unlabelled, parts["tmp"] / name, say=str)
    return PseudoLabels.read(parts["tmp"] / name)


def _pseudo_part(parts: dict, folds: list[int] | None, pseudo: PseudoLabels) -> str:
    return run_cv(_config(), slice_of_train(), slice_of_test(), store=parts["store"], only_folds=folds, say=str,
                  pseudo=pseudo)  # fmt: skip


@pytest.fixture(scope="module")
def pseudo_parts(parts: dict) -> dict:
    """Fold 0 and folds 1-2 trained with pseudo.csv, folds 1-2 with other.csv, and the pseudo run made in one go."""
    pseudo, other = _pseudo_file(parts, "pseudo.csv", 50), _pseudo_file(parts, "other.csv", 30)
    return {
        "pseudo": pseudo,
        "f0": _pseudo_part(parts, [0], pseudo),
        "f12": _pseudo_part(parts, [1, 2], pseudo),
        "f12_other": _pseudo_part(parts, [1, 2], other),
        "whole": _pseudo_part(parts, None, pseudo),
    }


def _pseudo_tags(store: Store, run_id: str) -> dict[str, str]:
    return {k: v for k, v in store.get(run_id).tags.items() if k.startswith("questlab.pseudo")}


def test_collected_pseudo_parts_carry_the_pseudo_record_of_the_run_made_in_one_go(
    parts: dict, pseudo_parts: dict
) -> None:
    store: Store = parts["store"]
    merged = collect_runs(store, [pseudo_parts["f12"], pseudo_parts["f0"]], slice_of_train(), slice_of_test(),
                          say=str)  # fmt: skip
    got, want = store.folder(merged), store.folder(pseudo_parts["whole"])
    for name in ("oof.csv", "oof_truth.csv", "submission.csv", "per_target.csv", "folds.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(got / name), pd.read_csv(want / name), obj=name)
    # the pseudo rows changed the model: this is not the run without them
    assert not pd.read_csv(got / "oof.csv").equals(pd.read_csv(store.folder(parts["whole"]) / "oof.csv"))
    record = got.read_meta().model_extra["pseudo"]
    assert record == want.read_meta().model_extra["pseudo"]
    assert record["sha256"] == pseudo_parts["pseudo"].sha256 and record["teacher_run"] == parts["whole"]
    tags = _pseudo_tags(store, merged)
    assert tags == _pseudo_tags(store, pseudo_parts["whole"]) == pseudo_parts["pseudo"].tags()


def test_parts_trained_on_other_pseudo_labels_are_refused(parts: dict, pseudo_parts: dict) -> None:
    p0, other = pseudo_parts["f0"], pseudo_parts["f12_other"]
    mine = f"--pseudo pseudo.csv (sha256 {pseudo_parts['pseudo'].sha256[:12]}...)"
    theirs = f"--pseudo other.csv (sha256 {PseudoLabels.read(parts['tmp'] / 'other.csv').sha256[:12]}...)"
    assert (
        _refused(parts, [p0, other]) == f"run {other} was trained with {theirs}, run {p0} with {mine}: cannot collect"
    )
    # some with, some without pseudo-labels, in either order
    plain = parts["f12"]
    assert (
        _refused(parts, [p0, plain])
        == f"run {plain} was trained with no --pseudo, run {p0} with {mine}: cannot collect"
    )
    assert (
        _refused(parts, [plain, p0])
        == f"run {p0} was trained with {mine}, run {plain} with no --pseudo: cannot collect"
    )
    # the same file, but another record of it (e.g. run.json edited): named, not silently taken from the first
    edited = _pseudo_part(parts, [1, 2], pseudo_parts["pseudo"])
    meta = parts["store"].folder(edited).read_meta()
    parts["store"].folder(edited).update_meta(pseudo={**meta.model_extra["pseudo"], "rows_dropped": 3})
    assert _refused(parts, [p0, edited]) == (
        f"run {edited} was trained with {mine} with rows_dropped 3, run {p0} with {mine} with rows_dropped 0: "
        "cannot collect"
    )
