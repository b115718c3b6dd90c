"""report.html: self-contained, holds the verdicts, findings and plots, and renders in a real Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from helpers.paths import require_chromium
from helpers.runs import qa_id_in_fold, tiny_run
from questlab.analysis import report
from questlab.analysis.compare import compare_runs
from questlab.analysis.diagnose import analyse
from questlab.analysis.findings import add_finding, list_findings
from questlab.store import Store

IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def store_runs(tmp_path_factory) -> tuple[Store, dict[str, str]]:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('report')}/s.db")
    ids = {
        "mean": tiny_run(store, "mean"),
        "epochs": tiny_run(store, "noisy_oracle", {"epochs": 3, "token_budget": 60}),
    }
    with pytest.raises(RuntimeError, match="out of memory \\(simulated\\)"):
        tiny_run(store, "noisy_oracle", {"fail_if_valid_has": qa_id_in_fold(0)})
    ids["failed"] = store.list_runs()[0].run_id
    return store, ids


def external_refs(text: str) -> list[str]:
    """Every src/href that would need the network (anything but an inline data: URI)."""
    return [m for m in re.findall(r'(?:src|href)="([^"]*)"', text) if not m.startswith("data:")] + re.findall(
        r"url\(", text
    )


def test_run_report_holds_verdicts_findings_and_every_plot(store_runs):
    store, ids = store_runs
    add_finding(store, "answers are cut at 60 tokens", [ids["epochs"]], ["truncation"])
    diag = analyse(store, ids["epochs"], n_boot=30)
    text = report.run_report(diag, list_findings(store, run=ids["epochs"]))
    alts = [alt for alt, data in IMG.findall(text) if len(data) > 1000]
    assert alts == [
        "per-target scores",
        "per-fold scores",
        "prediction distributions",
        "learning curves",
        "truncation histograms",
    ]
    assert "fit.under" in text and "answers are cut at 60 tokens" in text
    assert "Imbalance next to score" in text
    assert external_refs(text) == []


def test_report_of_a_model_without_epochs_or_budget_says_so(store_runs):
    store, ids = store_runs
    text = report.run_report(analyse(store, ids["mean"], n_boot=30), [])
    assert "recorded no epochs" in text and "No token budget recorded" in text
    assert "all 30 targets in every fold" in text


def test_report_of_a_failed_run(store_runs):
    store, ids = store_runs
    text = report.run_report(analyse(store, ids["failed"], n_boot=30), [])
    assert "run.failed" in text and "No usable out-of-fold predictions" in text
    assert IMG.findall(text) == []  # fold 0 crashed: no scores, no epochs, nothing to plot


def test_compare_report(store_runs):
    store, ids = store_runs
    text = report.compare_report(compare_runs(store, ids["mean"], ids["epochs"], n_boot=30), [])
    assert [alt for alt, _ in IMG.findall(text)] == ["per-target deltas", "per-fold deltas"]
    assert "model.params.epochs" in text and "B better" in text
    assert external_refs(text) == []


@pytest.fixture(scope="module")
def chromium() -> str:
    """Module-scoped, and first in the test's arguments, so a missing chromium fails before any run is built."""
    return require_chromium()


def test_report_renders_in_headless_chromium(chromium, store_runs, tmp_path):
    from questlab.cli import app

    store, ids = store_runs
    result = CliRunner().invoke(app, ["diagnose", ids["epochs"], "--n-boot", "30", "--store", store.uri])
    assert result.exit_code == 0, result.output
    page = store.get(ids["epochs"]).dir / "report.html"
    assert "report.html" in {a.path for a in store.client.list_artifacts(ids["epochs"])}
    # A probe script, added to a copy, records after load whether each image decoded.
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.read_text().replace(
            "</body>",
            '<script>window.addEventListener("load", () => { document.body.dataset.imgs ='
            ' [...document.images].map(i => i.complete + ":" + i.naturalWidth).join(","); });</script></body>',
        )
    )
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    found = re.search(r'data-imgs="([^"]*)"', dom)
    assert found, "the page did not finish loading in chromium"
    states = found.group(1).split(",")
    assert len(states) == 5 and all(s.startswith("true:") and int(s.split(":")[1]) > 100 for s in states), states
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=1200,3000", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
