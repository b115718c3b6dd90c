"""The run report's figures and tables: one line per learning curve, zoomed fold scores, clipped
truncation histograms, timings, weakest hosts and categories; rendered in a headless Chromium."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Polygon, Rectangle
from typer.testing import CliRunner

from helpers.paths import require_chromium
from helpers.runs import tiny_run, train_slice
from questlab.analysis import figures, report
from questlab.analysis.diagnose import analyse
from questlab.analysis.groups import MIN_ROWS, group_scores, read_inputs
from questlab.metric import spearman_per_target
from questlab.models.base import FitLog
from questlab.store import Store

IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def seeded_log(n_seeds: int, n_epochs: int) -> FitLog:
    log = FitLog()
    for seed in range(n_seeds):
        for e in range(n_epochs):
            log.log_epoch(group=0, seed=seed, epoch=e, train_loss=0.5 - 0.01 * e, valid_score=0.3 + 0.01 * e)
    return log


def test_learning_curves_draw_each_seed_as_its_own_line():
    fig = figures.plot_learning_curves({0: seeded_log(3, 4), 1: seeded_log(3, 4)})
    loss_ax, score_ax = fig.axes[:2]
    assert len(score_ax.lines) == 6  # 2 folds x 3 seeds, valid only (no train score logged)
    assert len(loss_ax.lines) == 6
    for line in score_ax.lines + loss_ax.lines:
        x = np.asarray(line.get_xdata())
        assert list(x) == [0, 1, 2, 3]  # no diagonal back to epoch 0
    assert sorted(t.get_text() for t in fig.legends[0].get_texts()) == ["fold 0", "fold 1"]


def fold_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random((300, 30))
    pred = y + rng.normal(0, 0.35, y.shape)
    return y, pred, np.repeat([0, 1, 2], 100)


def test_fold_scores_zoom_to_the_data_and_show_mean_and_interval():
    y, pred, folds = fold_data()
    fig = figures.plot_fold_scores(y, pred, folds, cv=(0.62, 0.60, 0.64))
    (ax,) = fig.axes
    low, high = ax.get_ylim()
    assert low > 0.4 and high - low < 0.2  # zoomed: a bar from 0 would hide a spread of 0.01
    assert any(isinstance(p, Polygon | Rectangle) and p.get_label().startswith("95% CI") for p in ax.patches)
    assert any(line.get_label() == "CV mean 0.620" for line in ax.lines)
    labels = [t.get_text() for t in ax.texts]
    assert len(labels) == 3 and all(re.fullmatch(r"0\.\d{3}", t) for t in labels)


def test_truncation_is_clipped_to_a_few_budgets_with_an_overflow_bin():
    log = FitLog()
    n = np.concatenate([np.arange(10, 600, 3), [2000, 7500]])
    log.record_truncation("answer", n, np.minimum(n, 256))
    log.record_truncation("question_title", np.arange(5, 30), np.arange(5, 30))  # nothing cut
    s = log.truncation["answer"]
    assert s["budget"] == 256 and s["overflow_from"] == 1024 and sum(s["tokens_hist"]) == len(n)
    assert s["tokens_hist"][-1] == 2  # the two long texts share the overflow bin
    fig = figures.plot_truncation({0: log})
    ax_answer, ax_title = fig.axes[:2]
    assert ax_answer.get_xlim()[1] < 4 * 256 * 1.1
    titles = [ax.get_title() for ax in fig.axes]
    assert not any("-0%" in t for t in titles)
    assert "1024 tokens or more" in titles[0] and "budget" not in " ".join(
        t.get_text() for leg in [ax_title.get_legend()] if leg for t in leg.get_texts()
    )


def test_truncation_of_an_old_log_merges_the_long_tail():
    # Before the budget was recorded: 20 bins over the full range, the budget squashed in the first.
    n = np.concatenate([np.arange(10, 600, 3), [7500]])
    counts, edges = np.histogram(n, bins=20)
    old = {"tokens_hist": counts.tolist(), "tokens_hist_edges": edges.tolist(), "share_cut": 0.5}
    old |= {"mean_kept": 200.0, "mean_lost_share_when_cut": 0.4}
    got, got_edges, overflow = figures._clipped_hist(old)
    assert got.sum() == counts.sum() and got_edges[-1] <= 4 * 200 + np.diff(edges)[0] + 1
    assert overflow is not None and overflow <= 4 * 200


@pytest.fixture(scope="module")
def run_ctx(tmp_path_factory) -> tuple[Store, str]:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('figures')}/s.db")
    return store, tiny_run(store, "noisy_oracle", {"epochs": 3, "token_budget": 60})


def test_group_scores_keep_only_big_groups_and_match_a_direct_computation(run_ctx):
    store, rid = run_ctx
    diag = analyse(store, rid, n_boot=30)
    inputs = read_inputs(diag.run, train_slice())
    table = group_scores(diag.run, inputs, "category")
    counts = diag.run.oof[["qa_id"]].merge(inputs, on="qa_id")["category"].value_counts()
    assert set(table.index) == set(counts[counts >= MIN_ROWS].index) and len(table) >= 2
    assert list(table["spearman"]) == sorted(table["spearman"])  # weakest first
    cat = table.index[0]
    rows = diag.run.oof["qa_id"].map(inputs.set_index("qa_id")["category"]).to_numpy() == cat
    y_true, y_pred = diag.run.scored()
    rho, _ = spearman_per_target(y_true[rows], y_pred[rows])
    assert table.loc[cat, "rows"] == rows.sum()
    assert table.loc[cat, "spearman"] == pytest.approx(np.nanmean(rho))
    assert table.loc[cat, "targets_defined"] == np.isfinite(rho).sum()


def test_run_report_tables(run_ctx):
    store, rid = run_ctx
    diag = analyse(store, rid, n_boot=30)
    text = report.run_report(diag, [], read_inputs(diag.run, train_slice()))
    assert "<tr><th></th><th></th></tr>" not in text  # no empty header row
    assert "AUC rare vs common: for each target" in text
    timings = text[text.index("<h2>Timings</h2>") :]
    assert all(f"<tr><td>{k}</td>" in timings for k in (0, 1, 2)) and "Run total" in timings
    hosts = text[text.index("weakest hosts") :]
    assert f"fewer than {MIN_ROWS} rows left out" in hosts and "<th>host</th>" in hosts
    without = report.run_report(diag, [])
    assert "--train train.csv" in without


def test_diagnose_refuses_another_train_file(run_ctx, tmp_path):
    from questlab.cli import app

    store, rid = run_ctx
    other = tmp_path / "other.csv"
    frame = pd.read_csv(train_slice())
    frame.loc[0, "answer_helpful"] = 0.5 if frame.loc[0, "answer_helpful"] != 0.5 else 1.0
    frame.to_csv(other, index=False)
    args = ["diagnose", rid, "--n-boot", "30", "--store", store.uri, "--train"]
    bad = CliRunner().invoke(app, [*args, str(other)])
    assert bad.exit_code == 2 and "not the train data of run" in bad.output
    ok = CliRunner().invoke(app, [*args, str(train_slice())])
    assert ok.exit_code == 0, ok.output
    assert "weakest hosts" in (store.get(rid).dir / "report.html").read_text()


def test_report_with_several_curves_per_fold_renders_in_chromium(run_ctx, tmp_path):
    chromium = require_chromium()
    store, rid = run_ctx
    diag = analyse(store, rid, n_boot=30)
    for log in diag.run.fit_logs.values():
        log.epochs = seeded_log(3, 4).epochs
    page = tmp_path / "report.html"
    text = report.run_report(diag, [], read_inputs(diag.run, train_slice()))
    page.write_text(
        text.replace(
            "</body>",
            '<script>window.addEventListener("load", () => { document.body.dataset.imgs ='
            ' [...document.images].map(i => i.complete + ":" + i.naturalWidth).join(","); });</script></body>',
        )
    )
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    dom = subprocess.run(
        [chromium, *flags, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    found = re.search(r'data-imgs="([^"]*)"', dom)
    assert found, "the page did not finish loading in chromium"
    states = found.group(1).split(",")
    assert len(states) == len(IMG.findall(text)) == 5
    assert all(s.startswith("true:") and int(s.split(":")[1]) > 100 for s in states), states
    assert "weakest hosts" in dom and "Timings" in dom
