"""The API's actions on data and runs: ``check``, ``ensemble``, ``postprocess``, ``pseudo_label``, ``report``.

Each calls the library function its CLI command calls (``questlab check|ensemble|postprocess|
pseudo-label|report``), returns a typed object instead of printing, and raises questlab's errors
(:class:`~questlab.errors.UsageError`, :class:`~questlab.errors.DataError`, ...) instead of exiting.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from questlab import console
from questlab.api.objects import DataLike, Run, StoreLike, open_in_browser
from questlab.errors import UsageError
from questlab.store import as_store

if TYPE_CHECKING:
    from questlab.data import DataSummary
    from questlab.pseudo import PseudoLabels

RunLike = Run | str


def _run_id(run: RunLike) -> str:
    return run.id if isinstance(run, Run) else str(run)


def _store_of(runs: Sequence[RunLike], store: StoreLike) -> Any:
    """The store of the first ``Run`` given, else the one ``store`` names."""
    given = next((r.store for r in runs if isinstance(r, Run)), None)
    return given if given is not None and store is None else as_store(store)


def check(
    data: DataLike,
    *,
    task: str | Path | Any | None = None,
    kind: Literal["train", "test"] | None = None,
) -> DataSummary:
    """Validate a task's train or test data (a CSV path or a DataFrame) and summarise it, as
    ``questlab check`` does: rows, groups, rows per group, text lengths, target imbalance.

    ``kind``: ``"train"`` or ``"test"`` (default: train where the data holds any of the task's
    targets). ``task``: a built-in task's name, a spec path or a ``Task`` (default quest). A bad
    cell raises :class:`~questlab.errors.DataError` naming its column and row.
    """
    from questlab.data import detect_kind, load, summarize, validate_frame
    from questlab.tasks import load_task

    resolved = load_task(task)
    if isinstance(data, pd.DataFrame):
        kind = kind or ("train" if any(t in data.columns for t in resolved.target_names) else "test")
        frame = validate_frame(data, kind, source=f"{kind} DataFrame", task=resolved)
    else:
        kind = kind or detect_kind(data, resolved)
        frame = load(data, kind, resolved)
    return summarize(frame, kind, resolved)


def ensemble(
    runs: Sequence[RunLike],
    *,
    weights: Literal["auto", "equal"] | Sequence[float] = "auto",
    per_target: bool = False,
    average: Literal["value", "rank"] = "value",
    method: Literal["weights", "stack", "stack+related"] = "weights",
    postprocess: str = "none",
    question_share: bool = False,
    test: DataLike | None = None,
    name: str | None = None,
    n_boot: int = 200,
    store: StoreLike = None,
    quiet: bool = False,
) -> Run:
    """Combine finished runs made on the same folds into a new recorded run (``questlab ensemble``).

    Its OOF and CV come from nested fits; ``run.ensemble_report`` holds the nested and in-sample
    gains with their intervals. ``postprocess``: ``none``, ``auto``, ``distribution``/``thresholds``
    (rank metric) or ``snap``/``shrink`` (error metric). ``test``: the file the runs predicted
    (needed with ``question_share``). Runs of different tasks are refused.
    """
    from questlab.ensemble import EnsembleSpec
    from questlab.ensemble_runs import build_ensemble

    if len(runs) < 2:
        raise UsageError("give at least two runs (for one run use ql.postprocess(run))")
    chosen: str | list[float] = weights if isinstance(weights, str) else [float(w) for w in weights]
    spec = EnsembleSpec(chosen, per_target, average, postprocess, method=method, question_share=question_share)
    st = _store_of(runs, store)
    say = console.quiet if quiet else console.stderr
    new_id, _ = build_ensemble(
        st, [_run_id(r) for r in runs], spec, name=name, n_boot=n_boot, say=say, test=_test_data(test)
    )
    return Run(st.get(new_id), st)


def postprocess(
    run: RunLike,
    method: str | None = None,
    *,
    question_share: bool = False,
    test: DataLike | None = None,
    name: str | None = None,
    n_boot: int = 200,
    store: StoreLike = None,
    quiet: bool = False,
) -> Run:
    """Fit per-target post-processing on a run's OOF; record it as a new run (``questlab postprocess``).

    ``method`` None: ``distribution`` under a rank metric, ``auto`` (clip, then snap or shrink where
    nested CV says it helps) under an error metric. The source run is left as it is.
    """
    from questlab.ensemble_runs import postprocess_run

    st = _store_of([run], store)
    say = console.quiet if quiet else console.stderr
    new_id, _ = postprocess_run(
        st, _run_id(run), method, name=name, n_boot=n_boot, say=say, question_share=question_share,
        test=_test_data(test),
    )  # fmt: skip
    return Run(st.get(new_id), st)


def _test_data(test: DataLike | None) -> Any:
    return Path(test) if isinstance(test, str) else test


def pseudo_label(
    teacher: RunLike,
    unlabelled: str | Path,
    output: str | Path,
    *,
    chunk_rows: int = 5_000,
    store: StoreLike = None,
    quiet: bool = False,
) -> PseudoLabels:
    """Label the test-format CSV ``unlabelled`` with each fold model of the CV run ``teacher``
    (``questlab pseudo-label``); write ``output`` and its ``.json`` sidecar; return them read back.

    The rows are read as the teacher's task's test rows. A student uses the file with
    ``ql.run(..., pseudo=output)`` on the teacher's folds.
    """
    from questlab.csvfile import check_not_an_input, check_output_file
    from questlab.pseudo import PseudoLabels, sidecar_path
    from questlab.teacher import pseudo_label as make

    output, unlabelled = Path(output), Path(unlabelled)
    check_output_file("output", output, "pseudo.csv")  # before any work
    check_not_an_input("output", output, {"unlabelled": unlabelled})
    check_not_an_input(f"output {output}: its sidecar", sidecar_path(output), {"unlabelled": unlabelled})
    st = _store_of([teacher], store)
    say = console.quiet if quiet else console.stderr
    make(st, _run_id(teacher), unlabelled, output, chunk_rows=chunk_rows, say=say)
    return PseudoLabels.read(output)


def report(
    run: RunLike,
    path: str | Path | None = None,
    *,
    open: bool = False,
    n_boot: int = 200,
    train: DataLike | None = None,
    store: StoreLike = None,
) -> Path:
    """Write a run's HTML report (``questlab report``): into the run as ``report.html``, or to
    ``path``; ``open`` shows it in a web browser. Returns the page's path.

    ``train``: the run's own train data (another file is refused), adding scores per value of each
    feature column of the task (QUEST: every category, the weakest hosts; none without features);
    ``n_boot``: group resamples for the per-target intervals (at least 20).
    """
    from questlab.analysis.run_report import write_run_report

    st = _store_of([run], store)
    page = write_run_report(st, _run_id(run), n_boot=n_boot, train=train, path=path, option="n_boot")
    if open:
        open_in_browser(page)
    return page


__all__ = ["check", "ensemble", "postprocess", "pseudo_label", "report"]
