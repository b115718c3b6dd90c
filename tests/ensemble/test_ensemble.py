"""Ensembles and post-processed runs end to end on tiny real runs (a slice of train.csv)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers.paths import REPO
from questlab.cli import app
from questlab.config import parse_config
from questlab.cv import run_cv
from questlab.data import load_test
from questlab.ensemble import EnsembleSpec
from questlab.ensemble_runs import build_ensemble
from questlab.metric import mean_spearman
from questlab.predict import load_predictor
from questlab.recording import load_scores
from questlab.rundir import ENSEMBLE_FILE, read_predictions
from questlab.schema import ID, TARGETS
from questlab.store import Store


def quiet(_msg: str) -> None:
    pass


def recorded_oof_score(run_dir: Path) -> float:
    """Mean Spearman of a run's recorded oof.csv against its oof_truth.csv, matched by qa_id."""
    oof, truth = pd.read_csv(run_dir / "oof.csv"), pd.read_csv(run_dir / "oof_truth.csv")
    both = oof[[ID, *TARGETS]].merge(truth[[ID, *TARGETS]], on=ID, suffixes=("", "_truth"), validate="1:1")
    assert len(both) == len(oof) == len(truth)
    return mean_spearman(both[[f"{t}_truth" for t in TARGETS]].to_numpy(), both[list(TARGETS)].to_numpy())


def _config(name: str, folds: dict, **params: float) -> object:
    return parse_config(
        {
            "name": name,
            "folds": folds,
            "model": {"name": "tfidf", "params": {"max_features": 2000, **params}},
            "bootstrap": 20,
        }
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, quest_dir: Path) -> dict:
    """Three finished TF-IDF runs on 300 train rows: a and b share folds, c has other folds."""
    tmp = tmp_path_factory.mktemp("ens")
    train, test = tmp / "train.csv", tmp / "test.csv"
    pd.read_csv(quest_dir / "train.csv", dtype=str, keep_default_na=False).head(300).to_csv(train, index=False)
    pd.read_csv(quest_dir / "test.csv", dtype=str, keep_default_na=False).head(25).to_csv(test, index=False)
    uri = f"sqlite:///{tmp / 's.db'}"
    store = Store(uri)
    a = run_cv(_config("a", {"n_splits": 3}), train, test, store=store, say=quiet)
    b = run_cv(_config("b", {"from_run": a}, ngram_max=1, alpha=2.0, stats_weight=0.0), train, test, store, say=quiet)
    c = run_cv(_config("c", {"n_splits": 3, "seed": 7}), train, test, store=store, say=quiet)
    return {"store": store, "uri": uri, "a": a, "b": b, "c": c, "test": test}


def test_ensemble_refuses_runs_with_other_folds(world: dict) -> None:
    with pytest.raises(ValueError, match="different folds"):
        build_ensemble(world["store"], [world["a"], world["c"]], EnsembleSpec())
    result = CliRunner().invoke(app, ["ensemble", world["a"], world["c"], "--store", world["uri"]])
    assert result.exit_code == 2
    assert "different folds" in result.output and "Traceback" not in result.output


def test_predict_on_ensemble_equals_weighted_members(world: dict) -> None:
    store = world["store"]
    run_id, _ = build_ensemble(store, [world["a"], world["b"]], EnsembleSpec(weights=[0.7, 0.3]), n_boot=0)
    frame = load_test(world["test"])
    pa = load_predictor(store, world["a"]).predict(frame)
    pb = load_predictor(store, world["b"]).predict(frame)
    np.testing.assert_allclose(load_predictor(store, run_id).predict(frame), 0.7 * pa + 0.3 * pb, atol=1e-12)
    # The recorded OOF is the same weighted mean of the members' OOF (given weights: nothing fitted).
    rec = store.get(run_id)
    oof = pd.read_csv(rec.dir / "oof.csv")
    oa, ob = (pd.read_csv(store.get(r).dir / "oof.csv") for r in (world["a"], world["b"]))
    np.testing.assert_allclose(oof[list(TARGETS)], 0.7 * oa[list(TARGETS)] + 0.3 * ob[list(TARGETS)], atol=1e-12)


def test_rank_ensemble_with_postprocessing_is_a_full_run_and_predicts_like_its_submission(world: dict) -> None:
    store = world["store"]
    spec = EnsembleSpec(weights="auto", per_target=True, average="rank", postprocess="auto", min_gain=-1.0)
    run_id, report = build_ensemble(store, [world["a"], world["b"]], spec, n_boot=20)
    rec = store.get(run_id)
    assert rec.kind == "ensemble" and rec.status == "FINISHED" and rec.tags["questlab.complete"] == "true"
    for f in ("run.json", "folds.csv", "oof.csv", "oof_truth.csv", "scores.json", "per_target.csv", "submission.csv"):
        assert (rec.dir / f).exists(), f
    assert (rec.dir / "postprocess.json").exists()
    weights = json.loads((rec.dir / ENSEMBLE_FILE).read_text())["weights"]
    assert all(abs(sum(w) - 1) < 1e-9 and min(w) >= 0 for w in weights.values())
    # The recorded CV score is the nested one, not the in-sample one: recomputed here from the
    # recorded OOF files, and the gain from the members' own recorded scores.
    nested = recorded_oof_score(rec.dir)
    assert load_scores(rec.dir).score == pytest.approx(nested) and rec.metrics["cv_score"] == pytest.approx(nested)
    assert report["nested_score"] == pytest.approx(nested)
    best_member = max(load_scores(store.get(r).dir).score for r in (world["a"], world["b"]))
    assert report["nested_gain"]["gain"] == pytest.approx(nested - best_member)
    assert report["in_sample_score"] != pytest.approx(nested)  # in-sample weights score otherwise
    # The per-fold view: the recorded folds' scores averaged, and the gain over the best member's.
    fold_mean = load_scores(rec.dir).per_fold["score"].mean()
    assert report["nested_fold_mean"]["score"] == pytest.approx(fold_mean)
    best_fold_mean = max(load_scores(store.get(r).dir).per_fold["score"].mean() for r in (world["a"], world["b"]))
    assert report["nested_fold_mean"]["gain"] == pytest.approx(fold_mean - best_fold_mean)
    assert rec.metrics["cv_fold_mean"] == pytest.approx(fold_mean)  # on the tracking server too
    assert rec.metrics["nested_fold_mean_gain"] == pytest.approx(fold_mean - best_fold_mean)
    mapped, mixed = report["postprocess_mapped_folds"], report["postprocess_mixed"]
    assert mapped and mixed == {t: ks for t, ks in mapped.items() if len(ks) < 3}
    # Stored fold models + stored weights + stored maps reproduce the submission.
    frame = load_test(world["test"])
    predictor = load_predictor(store, run_id)
    full = predictor.predict(frame)
    submission = read_predictions(rec.dir / "submission.csv")
    np.testing.assert_allclose(full, submission[list(TARGETS)].to_numpy(), atol=1e-12)
    # A batch of one row gets what it gets in the full batch (ranks come from the members' stored
    # OOF, not from the batch), except in columns the full batch had to leave unmapped.
    guarded = [TARGETS.index(n.split(":")[0]) for n in predictor.notes]
    kept = [t for t in range(len(TARGETS)) if t not in guarded]
    one = predictor.predict(frame.iloc[[3]].reset_index(drop=True))
    np.testing.assert_allclose(one[0, kept], full[3, kept], atol=1e-12)
    # No column comes out constant unless every member's predictions already were.
    members = [load_predictor(store, r).predict(frame) for r in (world["a"], world["b"])]
    varied = np.max([np.ptp(p, axis=0) for p in members], axis=0) > 0
    assert varied.sum() >= 20 and (np.ptp(full, axis=0)[varied] > 0).all()


def test_cli_postprocess_then_predict(world: dict, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["postprocess", world["a"], "--method", "distribution", "--bootstrap", "20", "--store", world["uri"]]
    )
    assert result.exit_code == 0, result.output
    new_id = result.output.strip().splitlines()[-1]
    assert "nested score" in result.output and "in-sample" in result.output
    out = tmp_path / "sub.csv"
    result = runner.invoke(
        app, ["predict", new_id, "--input", str(world["test"]), "--output", str(out), "--store", world["uri"]]
    )
    assert result.exit_code == 0, result.output
    pred = pd.read_csv(out)
    values = pred[list(TARGETS)].to_numpy()
    assert len(pred) == 25 and values.min() >= 0 and values.max() <= 1
    bad = runner.invoke(app, ["postprocess", world["a"], "--method", "magic", "--store", world["uri"]])
    assert bad.exit_code == 2 and "distribution" in bad.output


@pytest.mark.slow
def test_postprocess_on_full_tfidf_run_reports_nested_below_in_sample(store: Store, quest_dir: Path) -> None:
    from questlab.config import load_config
    from questlab.ensemble_runs import postprocess_run

    config = load_config(REPO / "configs" / "tfidf.yaml")
    config.bootstrap = 0
    run_id = run_cv(config, quest_dir / "train.csv", store=store, say=quiet)
    for method in ("distribution", "thresholds"):
        new_id, report = postprocess_run(store, run_id, method, n_boot=50)
        assert report["nested_gain"]["gain"] < report["in_sample_gain"]["gain"]
        # The nested gain is what the recorded runs score apart, recomputed from their OOF files.
        nested = recorded_oof_score(store.get(new_id).dir)
        assert store.get(new_id).metrics["cv_score"] == pytest.approx(nested)
        assert report["nested_gain"]["gain"] == pytest.approx(nested - recorded_oof_score(store.get(run_id).dir))


def test_every_interval_in_the_report_follows_the_spec_seed(world: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The post-processing and question-share gains are bootstrapped with the ensemble's seed,
    like the overall gain (they used the default seed 0 whatever the spec said)."""
    from questlab import ensemble_runs as build

    seeds: list[int] = []
    real = build.gain_summary

    def recording(truth, base, other, groups, n_boot, seed=0, metric=None):  # gain_summary's signature
        seeds.append(seed)
        return real(truth, base, other, groups, n_boot, seed, metric)

    monkeypatch.setattr(build, "gain_summary", recording)
    spec = EnsembleSpec(weights=[0.5, 0.5], postprocess="distribution", question_share=True, seed=7)
    _, report = build_ensemble(world["store"], [world["a"], world["b"]], spec, n_boot=10, test=world["test"])
    assert {"postprocess_nested_gain", "question_share_nested_gain"} <= set(report)
    assert len(seeds) == 4 and set(seeds) == {7}
