"""Fit logs holding several learning curves (MLP seeds, transformer stages): each judged on its own."""

from __future__ import annotations

from questlab.analysis.checks.fitting import check_fitting
from questlab.analysis.curves import split_curves
from questlab.models.base import FitLog


def codes(verdicts) -> list[str]:
    return [v.code for v in verdicts]


def seeds_log(per_seed: list[dict[str, list[float]]], best_epochs: list[int] | None = None) -> FitLog:
    """An embedding-head style log: ``group``/``seed`` tags, epochs counted from 0 in each seed."""
    log = FitLog()
    for k, series in enumerate(per_seed):
        for i in range(len(series["valid_score"])):
            log.log_epoch(group=0, seed=k, epoch=i, **{name: v[i] for name, v in series.items()})
    if best_epochs is not None:
        log.info["best_epochs"] = best_epochs
    return log


def stages_log(per_stage: list[dict[str, list[float]]], keep_best: bool = False) -> FitLog:
    """A dual transformer style log: ``stage`` tags, epochs counted from 1 in each stage."""
    log = FitLog()
    for s, series in enumerate(per_stage):
        for i in range(len(series["valid_score"])):
            log.log_epoch(stage=s, epoch=i + 1, **{name: v[i] for name, v in series.items()})
        if keep_best:
            best = max(range(len(series["valid_score"])), key=series["valid_score"].__getitem__)
            log.info[f"stage{s}_best_epoch"] = best + 1
    return log


RISING = {"train_loss": [0.5, 0.4, 0.3], "valid_score": [0.20, 0.30, 0.40]}


def test_split_on_tags_and_on_epoch_going_back():
    log = seeds_log([RISING, RISING, RISING])
    curves = split_curves(log.epochs)
    assert [len(c.epochs) for c in curves] == [3, 3, 3]
    assert [c.label for c in curves] == ["group 0 seed 0", "group 0 seed 1", "group 0 seed 2"]
    # An old log without tags: split where the epoch number goes back down.
    old = [{"epoch": e, "valid_score": 0.1 * e} for e in (1, 2, 3, 1, 2)]
    assert [[e["epoch"] for e in c.epochs] for c in split_curves(old)] == [[1, 2, 3], [1, 2]]
    assert split_curves([]) == []


def test_each_seed_still_rising_is_under_trained_not_fine():
    # Joined, the three seeds look like a curve that peaked at its 3rd epoch and fell back.
    (v,) = check_fitting({0: seeds_log([RISING, RISING, RISING])})
    assert v.code == "fit.under"
    assert len(v.evidence["curves"]) == 3 and "0.300 -> 0.400" in v.message


def test_two_stages_are_two_curves_not_one_over_fit():
    stage0 = {"train_loss": [0.5, 0.4, 0.3], "valid_score": [0.30, 0.35, 0.36]}
    stage1 = {"train_loss": [0.25, 0.20], "valid_score": [0.33, 0.34]}
    verdicts = check_fitting({0: stages_log([stage0, stage1]), 1: stages_log([stage0, stage1])})
    assert codes(verdicts) == ["fit.under"]  # both stages still rose at their last epoch
    assert {c["curve"] for c in verdicts[0].evidence["curves"]} == {"stage 0", "stage 1"}


def test_fall_after_a_restored_best_epoch_is_info_not_over_fitting():
    peaked = {"train_loss": [0.5, 0.4, 0.3, 0.2], "valid_score": [0.30, 0.36, 0.33, 0.31]}
    (v,) = check_fitting({0: seeds_log([peaked, peaked], best_epochs=[1, 1])})
    assert (v.severity, v.code) == ("info", "fit.early_stopped")
    assert "kept epoch 1" in v.message
    # Without a record of the kept epoch, the same curves are over-fitting.
    (w,) = check_fitting({0: seeds_log([peaked, peaked])})
    assert (w.severity, w.code) == ("warning", "fit.over")
    # A transformer stage that kept the last epoch (select_best_epoch off) is over-fit.
    stage = {"train_loss": [0.5, 0.4, 0.3], "valid_score": [0.30, 0.36, 0.32]}
    log = stages_log([stage])
    log.info["stage0_best_epoch"] = 3
    assert codes(check_fitting({0: log})) == ["fit.over"]
    assert codes(check_fitting({0: stages_log([stage], keep_best=True)})) == ["fit.early_stopped"]


def test_single_entry_curves_are_flat():
    log = FitLog(info={"head_note": "ridge"})
    for g in range(2):
        log.log_epoch(group=g, epoch=0, train_loss=0.1, valid_score=0.3)
    assert codes(check_fitting({0: log})) == ["fit.no_epochs"]
