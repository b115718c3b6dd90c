"""Writing a run's ``report.html``: what ``questlab diagnose|report`` and ``ql.report`` share.

The page itself is :func:`questlab.analysis.report.run_report`; this module diagnoses the run,
gathers the findings about it and the optional train inputs, and writes the page into the run
(``report.html``, beside its artifacts) or to a path of the caller's.
"""

from __future__ import annotations

from pathlib import Path

from questlab.analysis.diagnose import Diagnosis, analyse
from questlab.errors import UsageError
from questlab.store import Store

MIN_BOOT = 20  # fewer resamples give no 95% interval worth the name


def check_n_boot(n_boot: int, option: str = "--n-boot") -> None:
    """Refuse fewer than ``MIN_BOOT`` resamples (``option`` is how the caller names the setting)."""
    if n_boot < MIN_BOOT:
        raise UsageError(f"{option} {n_boot}: use at least {MIN_BOOT} resamples for a 95% interval")


def analysed(store: Store, run_id: str, n_boot: int = 200, option: str = "--n-boot") -> Diagnosis:
    """A run's diagnosis, its per-target intervals from ``n_boot`` group resamples (at least 20)."""
    check_n_boot(n_boot, option)
    return analyse(store, run_id, n_boot=n_boot)


def save_report(store: Store, diag: Diagnosis, train: str | Path | None = None, path: str | Path | None = None) -> Path:
    """Write a diagnosed run's report (with per-category and per-host scores given ``train``, the
    run's own train file); into the run as ``report.html``, or to ``path``. Returns where it went."""
    from questlab.analysis import report as rep
    from questlab.analysis.findings import list_findings
    from questlab.analysis.groups import read_inputs

    run_id = diag.run.record.run_id
    inputs = read_inputs(diag.run, train) if train is not None else None
    page = rep.run_report(diag, list_findings(store, run=run_id), inputs)
    return rep.write(page, Path(path)) if path is not None else store.attach(run_id, page, "report.html")


def write_run_report(
    store: Store,
    run_id: str,
    *,
    n_boot: int = 200,
    train: str | Path | None = None,
    path: str | Path | None = None,
    option: str = "--n-boot",
) -> Path:
    """Diagnose run ``run_id`` and write its report (see :func:`save_report`); returns the page's path."""
    return save_report(store, analysed(store, run_id, n_boot, option), train, path)
