"""Recipes end to end on a slice of train.csv: members on shared folds, reuse, resume, the ensemble run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import questlab as ql
import questlab.cv
from helpers.runs import test_slice as quest_test_slice
from helpers.runs import train_slice
from questlab.cli import app
from questlab.errors import ConfigError, EncoderNotFoundError, UsageError
from questlab.recipes import builtin_names, load_recipe, run_recipe
from questlab.recipes.runner import TAG_MEMBER_KEY
from questlab.schema import TARGETS
from questlab.store import Store


def quiet(_msg: str) -> None:
    pass


def _recipe(tmp_path: Path, alpha_b: float = 2.0, **extra: object) -> Path:
    """Two tiny TF-IDF members (the second's folds are forced onto the first's), question share, pp."""
    spec = {
        "name": "tiny",
        "members": [
            {"config": {"name": "a", "folds": {"n_splits": 3, "seed": 1},
                        "model": {"name": "tfidf", "params": {"max_features": 2000}}, "bootstrap": 20}},
            {"config": "b.yaml", "set": {"model.params.alpha": alpha_b}},
        ],
        "ensemble": {"method": "weights", "per_target": True, "average": "rank"},
        "question_share": True,
        "postprocess": "distribution",
        "bootstrap": 20,
        **extra,
    }  # fmt: skip
    # b's own folds differ (seed 9): the recipe must put it on a's folds anyway
    member_b = {"name": "b", "folds": {"n_splits": 3, "seed": 9}, "bootstrap": 20,
                "model": {"name": "tfidf", "params": {"max_features": 2000, "ngram_max": 1}}}  # fmt: skip
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(member_b))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def fits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count fold fits (members run in-process: parallel_folds is 1)."""
    calls: list[int] = []
    real = questlab.cv._fit_fold

    def counting(model, data, k, *args, **kwargs):
        calls.append(k)
        return real(model, data, k, *args, **kwargs)

    monkeypatch.setattr(questlab.cv, "_fit_fold", counting)
    return calls


def test_recipe_records_members_on_shared_folds_and_an_ensemble_then_reuses_them(
    tmp_path: Path, store: Store, fits: list[int]
) -> None:
    recipe = _recipe(tmp_path)
    sub = tmp_path / "out" / "submission.csv"
    said: list[str] = []
    first = run_recipe(recipe, train_slice(), quest_test_slice(), store=store, submission=sub, say=said.append)
    assert [m.action for m in first.members] == ["fitted", "fitted"] and len(fits) == 6
    a, b = (store.folder(m.run_id) for m in first.members)
    assert a.read_folds().equals(b.read_folds())  # b's own fold seed was overridden
    assert b.config_dict()["folds"]["from_run"] == first.members[0].run_id
    assert b.config_dict()["model"]["params"]["alpha"] == 2.0
    ens = store.get(first.ensemble_id)
    assert ens.kind == "ensemble" and ens.status == "FINISHED" and ens.tags["questlab.recipe"] == "tiny"
    assert ens.tags["questlab.members"] == ",".join(m.run_id for m in first.members)
    assert ens.metrics["cv_score"] == pytest.approx(first.report["nested_score"])
    assert "postprocess_nested_gain" in first.report
    # every test question of the slice has one answer: the share could not change the submission
    assert "question_share_nested_gain" not in first.report and any("share left out" in m for m in said)
    written = pd.read_csv(sub)
    assert len(written) == 50 and list(written.columns[1:]) == list(TARGETS)
    pd.testing.assert_frame_equal(written, store.folder(first.ensemble_id).read_submission(), check_dtype=False)

    fits.clear()
    again = run_recipe(recipe, train_slice(), quest_test_slice(), store=store, say=quiet)
    assert fits == [] and [m.action for m in again.members] == ["reused", "reused"]
    assert [m.run_id for m in again.members] == [m.run_id for m in first.members]


def test_a_member_killed_midway_is_resumed_not_restarted(
    tmp_path: Path, store: Store, fits: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = _recipe(tmp_path)
    real = questlab.cv._fit_fold  # the counting wrapper

    def dies_in_b_fold_1(model, data, k, fold_dir, *args, **kwargs):
        if len(fits) == 4:  # a's three folds and b's fold 0 are done: Ctrl-C in b's fold 1
            raise KeyboardInterrupt
        return real(model, data, k, fold_dir, *args, **kwargs)

    monkeypatch.setattr(questlab.cv, "_fit_fold", dies_in_b_fold_1)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, train_slice(), quest_test_slice(), store=store, say=quiet)
    killed = [r for r in store.list_runs() if r.name == "b"]
    assert len(killed) == 1 and killed[0].status == "KILLED"
    monkeypatch.setattr(questlab.cv, "_fit_fold", real)
    fits.clear()
    out = run_recipe(recipe, train_slice(), quest_test_slice(), store=store, say=quiet)
    assert [m.action for m in out.members] == ["reused", "resumed"]
    assert out.members[1].run_id == killed[0].run_id and sorted(fits) == [1, 2]  # fold 0 was kept


def test_a_changed_member_is_fitted_again_and_the_others_reused(tmp_path: Path, store: Store, fits: list[int]) -> None:
    first = run_recipe(_recipe(tmp_path), train_slice(), quest_test_slice(), store=store, say=quiet)
    fits.clear()
    changed = run_recipe(_recipe(tmp_path, alpha_b=5.0), train_slice(), quest_test_slice(), store=store, say=quiet)
    assert [m.action for m in changed.members] == ["reused", "fitted"] and len(fits) == 3
    assert changed.members[1].run_id != first.members[1].run_id
    assert changed.members[1].key != first.members[1].key


def test_members_recorded_by_an_earlier_version_are_reused(tmp_path: Path, store: Store, fits: list[int]) -> None:
    first = run_recipe(_recipe(tmp_path), train_slice(), quest_test_slice(), store=store, say=quiet)
    for m in first.members:  # as an earlier questlab left them: its own key, no `stats_weight` param yet
        folder = store.folder(m.run_id)
        config = folder.read_meta().config
        del config["model"]["params"]["stats_weight"]  # added since, with a default that fits as before
        folder.update_meta(config=config)
        store.set_tags(m.run_id, {TAG_MEMBER_KEY: "0" * 64})
    fits.clear()
    said: list[str] = []
    again = run_recipe(_recipe(tmp_path), train_slice(), quest_test_slice(), store=store, say=said.append)
    assert fits == [] and [m.action for m in again.members] == ["reused", "reused"]
    assert [m.run_id for m in again.members] == [m.run_id for m in first.members]
    assert sum("same config with today's defaults" in line for line in said) == 2

    b = store.folder(first.members[1].run_id)  # a recorded value other than today's: another member
    config = b.read_meta().config
    config["model"]["params"]["alpha"] = 7.0
    b.update_meta(config=config)
    out = run_recipe(_recipe(tmp_path), train_slice(), quest_test_slice(), store=store, say=quiet)
    assert [m.action for m in out.members] == ["reused", "fitted"] and len(fits) == 3


def test_without_test_data_the_question_share_is_measured(tmp_path: Path, store: Store) -> None:
    out = run_recipe(_recipe(tmp_path), train_slice(), None, store=store, say=quiet)
    assert "question_share_nested_gain" in out.report and out.submission is None
    assert set(out.report["question_share_chosen"]) <= {t for t in TARGETS if t.startswith("question_")}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ensemble": {"method": "blend"}}, "ensemble.method"),
        ({"postprocess": "magic"}, "postprocess"),
        ({"members": []}, "members"),
        ({"memebers": []}, "memebers: unknown recipe key"),
    ],
)
def test_a_bad_recipe_is_one_line_naming_file_and_field(tmp_path: Path, change: dict, field: str) -> None:
    path = _recipe(tmp_path)
    data = yaml.safe_load(path.read_text()) | change
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert str(path) in str(err.value) and field in str(err.value) and "\n" not in str(err.value)
    result = CliRunner().invoke(app, ["recipe", str(path), "--train", str(train_slice())])
    assert result.exit_code == 2 and field in result.output and "Traceback" not in result.output


def test_a_bad_member_config_names_the_recipe_and_member(tmp_path: Path) -> None:
    path = _recipe(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["members"][0]["config"]["model"]["params"]["apha"] = 3
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"tiny\.yaml, members\.0\.config: model.*apha"):
        load_recipe(path).member_configs(cuda=False)


def test_a_submission_without_test_data_is_refused_before_any_work(tmp_path: Path, store: Store) -> None:
    with pytest.raises(UsageError, match="--submission needs --test"):
        run_recipe(_recipe(tmp_path), train_slice(), None, store=store, submission=tmp_path / "s.csv", say=quiet)
    assert store.list_runs() == []


def test_a_missing_encoder_is_refused_before_any_member_is_fitted(tmp_path: Path, store: Store) -> None:
    recipe = _recipe(tmp_path)
    spec = yaml.safe_load(recipe.read_text())
    spec["members"].append({"config": {"name": "emb", "model": {"name": "embedding",
                            "params": {"encoder": str(tmp_path / "no-such-encoder")}}}})  # fmt: skip
    recipe.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(EncoderNotFoundError, match=r"^recipe tiny, member emb: encoder '.*no-such-encoder' is not a"):
        run_recipe(recipe, train_slice(), None, store=store, say=quiet)
    assert store.list_runs() == []  # the TF-IDF members before it were not fitted


def test_builtin_recipes_ship_with_the_package_and_pick_the_device() -> None:
    assert {"fast", "fast-minilm", "best"} <= set(builtin_names())
    fast = load_recipe("fast")
    assert [c.model.name for c in fast.member_configs(cuda=False)] == ["embedding", "embedding", "tfidf"]
    minilm = load_recipe("fast-minilm").member_configs(cuda=False)
    assert [c.name for c in minilm] == ["fast-embedding", "fast-tfidf"]  # fast's own members: reused
    best = load_recipe("best")
    cpu = [c.name for c in best.member_configs(cuda=False)]
    gpu = [c.name for c in best.member_configs(cuda=True)]
    assert "best-transformer-minilm-cpu" in cpu and "best-transformer-mpnet-gpu" not in cpu
    assert "best-transformer-mpnet-gpu" in gpu and "best-transformer-minilm-cpu" not in gpu
    assert cpu[:2] == gpu[:2] == ["best-embedding", "best-embedding-mpnet"]  # frozen vectors on either device
    with pytest.raises(ConfigError, match="built-in name"):
        load_recipe("fastest")


def test_cli_and_python_api(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    uri = f"sqlite:///{tmp_path / 'cli' / 'mlflow.db'}"
    sub = tmp_path / "sub.csv"
    args = ["recipe", str(recipe), "--train", str(train_slice()), "--test", str(quest_test_slice())]
    result = CliRunner().invoke(app, [*args, "--submission", str(sub), "--store", uri])
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip().splitlines()[-1]
    assert "fitted" in result.output and "nested CV" in result.output and sub.exists()
    run = ql.recipe(recipe, train_slice(), quest_test_slice(), store=uri, quiet=True)  # reuses both members
    assert run.kind == "ensemble" and run.id != run_id
    assert run.record.tags["questlab.members"] == Store(uri).get(run_id).tags["questlab.members"]
    # the report from code: pooled and fold-mean nested scores, as the CLI printed them
    report = run.ensemble_report
    assert report["nested_score"] == pytest.approx(run.cv)
    assert report["nested_fold_mean"]["score"] == pytest.approx(run.fold_scores.mean())
    assert f"mean of the outer folds' scores {report['nested_fold_mean']['score']:.4f}" in result.output
    assert ql.load_run(report["best_member"], store=uri).ensemble_report is None  # a CV run has none


@pytest.mark.slow
def test_recipe_on_real_data_with_tfidf_members(tmp_path: Path, store: Store, quest_dir: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "real",
                "members": [
                    {"config": {"name": "t1", "model": {"name": "tfidf"}, "bootstrap": 0, "parallel_folds": 2}},
                    {"config": {"name": "t2", "model": {"name": "tfidf", "params": {"ngram_max": 1, "alpha": 3}},
                                "bootstrap": 0, "parallel_folds": 2}},
                ],
                "question_share": True,
                "bootstrap": 50,
            }
        )
    )  # fmt: skip
    out = run_recipe(recipe, quest_dir / "train.csv", quest_dir / "test.csv", store=store, say=quiet)
    best = max(m.cv for m in out.members)
    assert out.report["nested_score"] > best  # rank weights + question share + distribution matching help TF-IDF
    assert len(store.folder(out.ensemble_id).read_submission()) == 476
