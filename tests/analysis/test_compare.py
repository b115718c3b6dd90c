"""compare: paired intervals that only call a winner when it holds; unpaired runs refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers.runs import tiny_run
from questlab.analysis.compare import A_BETTER, B_BETTER, UNCLEAR, compare_runs, verdict
from questlab.metric import bootstrap_scores, bootstrap_target_scores
from questlab.schema import TARGETS
from questlab.store import Store


def test_verdict_only_when_the_interval_excludes_zero():
    assert verdict(0.01, 0.05) == B_BETTER
    assert verdict(-0.05, -0.01) == A_BETTER
    assert verdict(-0.01, 0.05) == UNCLEAR


def test_paired_bootstrap_shares_resamples():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, (200, len(TARGETS))) / 4
    pa = y + rng.normal(0, 0.5, y.shape)
    pb = pa + rng.normal(0, 0.2, y.shape)  # a close variant of A, as two runs of one family are
    groups = np.arange(200) // 2
    a, b, a_again = bootstrap_target_scores(y, [pa, pb, pa], groups, n_boot=40, seed=3)
    assert a.shape == (40, len(TARGETS))
    np.testing.assert_array_equal(a, a_again)  # same resamples for every prediction
    np.testing.assert_allclose(a.mean(axis=1), bootstrap_scores(y, pa, groups, n_boot=40, seed=3))
    # Pairing cancels the resampling noise both share: the paired difference varies far less
    # than the difference of two independent bootstraps.
    (b_other,) = bootstrap_target_scores(y, [pb], groups, n_boot=40, seed=4)
    assert np.std((b - a).mean(axis=1)) < 0.5 * np.std((b_other - a).mean(axis=1))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Store, dict[str, str]]:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('cmp')}/s.db")
    ids = {
        "good": tiny_run(store, "noisy_oracle", {"noise": 0.3}, name="good"),
        "bad": tiny_run(store, "noisy_oracle", {"noise": 1.5}, name="bad"),
        "good_again": tiny_run(store, "noisy_oracle", {"noise": 0.3}, name="good-again"),
        "partial": tiny_run(store, "noisy_oracle", only_folds=[0], name="partial"),
    }
    return store, ids


def test_better_run_is_called_better_overall_per_target_and_per_fold(runs):
    store, ids = runs
    cmp = compare_runs(store, ids["bad"], ids["good"], n_boot=200)
    assert cmp.n_rows == 300
    assert cmp.overall["verdict"] == B_BETTER and cmp.overall["low"] > 0
    assert cmp.overall["delta"] == pytest.approx(cmp.overall["b"] - cmp.overall["a"])
    assert (cmp.per_target["verdict"] == B_BETTER).sum() >= 20
    assert list(cmp.per_fold.index) == [0, 1, 2] and (cmp.per_fold["verdict"] == B_BETTER).all()
    assert ("model.params.noise", 1.5, 0.3) in cmp.config_diff
    reverse = compare_runs(store, ids["good"], ids["bad"], n_boot=200)
    assert reverse.overall["verdict"] == A_BETTER


def test_identical_runs_differ_by_nothing(runs):
    store, ids = runs
    cmp = compare_runs(store, ids["good"], ids["good_again"], n_boot=50)
    assert cmp.overall["delta"] == 0 and cmp.overall["low"] == 0 == cmp.overall["high"]
    assert set(cmp.per_target["verdict"]) == {UNCLEAR}
    assert [k for k, _, _ in cmp.config_diff] == ["name"]


def test_runs_on_different_rows_are_refused(runs):
    store, ids = runs
    with pytest.raises(ValueError, match="different rows"):
        compare_runs(store, ids["good"], ids["partial"])


def test_cli_compare(runs):
    from questlab.cli import app

    store, ids = runs
    ok = CliRunner().invoke(app, ["compare", ids["bad"], ids["good"], "--n-boot", "50", "--json", "--store", store.uri])
    assert ok.exit_code == 0, ok.output
    out = json.loads(ok.stdout)
    assert out["overall"]["verdict"] == B_BETTER and len(out["per_target"]) == 30
    assert out["report"].endswith(f"compare-{ids['bad'][:8]}.html")
    refused = CliRunner().invoke(app, ["compare", ids["good"], ids["partial"], "--store", store.uri])
    assert refused.exit_code == 2 and "different rows" in refused.output
