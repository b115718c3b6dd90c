"""Ensembles of recorded runs (and post-processing, which is an ensemble of one), measured honestly.

An ensemble is a :class:`Combiner` fitted on the members' out-of-fold predictions:

1. each member's predictions, as values or (``average="rank"``) as their quantile in that
   member's stored OOF predictions (so a batch of one row gets the same rank it would get in a
   batch of thousands: ranks never come from the batch being predicted);
2. a weighted mean per target (weights non-negative, summing to 1; one set for all targets or one
   per target; found on OOF by a grid on the simplex, or given);
3. optionally the per-target post-processing of :mod:`questlab.ensemble.postprocess`.

Honesty: whatever is *fitted* (weights, post-processing) is fitted once per outer fold ``k`` on
the other folds' OOF rows and applied to fold ``k``'s rows. The pooled result is the ensemble
run's ``oof.csv``, so its recorded CV score, and every command that reads it, sees only
predictions made without their own labels. The same fit on all OOF rows (what the test
predictions use) gives the naive *in-sample* score, reported beside it and never called the gain.

The ensemble run folder holds what a CV run holds (see :mod:`questlab.rundir`) plus
``ensemble.json`` (members, averaging, weights, the nested and in-sample figures) and
``postprocess.json`` (the fitted maps). It holds no fold models: its predictor
(:mod:`questlab.predict`) loads the members' stored fold models, nothing is refitted.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from questlab import __version__
from questlab.cv import record_outputs
from questlab.ensemble.postprocess import MIN_GAIN, PostProcessor, check_method, fit_postprocessor
from questlab.errors import UsageError
from questlab.folds import FOLDS_FILE
from questlab.metric import CVScore, bootstrap_paired, mean_spearman
from questlab.rundir import (
    ENSEMBLE_FILE,
    META_FILE,
    OOF_FILE,
    POSTPROCESS_FILE,
    TRUTH_FILE,
    RunMeta,
    git_commit,
    predictions_frame,
)
from questlab.schema import ID, TARGETS
from questlab.store import TAG_COMPLETE, TAG_KIND, TAG_MODEL, RunRecord, Store

AVERAGES = ("value", "rank")
WEIGHT_MODES = ("auto", "equal")  # or an explicit list of numbers, one per member
MAX_GRID = 1000  # simplex points tried when searching weights

Say = Callable[[str], None]


@dataclass
class Member:
    """A finished run as an ensemble member: its OOF predictions and what must match."""

    record: RunRecord
    meta: RunMeta
    folds: pd.DataFrame  # qa_id, group, fold sorted by qa_id
    oof: pd.DataFrame  # qa_id, group, fold, 30 targets sorted by qa_id
    truth: pd.DataFrame  # qa_id, 30 targets sorted by qa_id
    submission: pd.DataFrame | None
    folds_path: Path  # the member's folds.csv (copied into the ensemble run)


def load_member(store: Store, run_id: str) -> Member:
    """Load a finished, complete run (CV or ensemble) to combine."""
    record = store.get(run_id)
    if record.status != "FINISHED" or record.tags.get(TAG_COMPLETE) != "true":
        raise UsageError(
            f"run {record.run_id} is {record.status.lower()} and "
            f"{'complete' if record.tags.get(TAG_COMPLETE) == 'true' else 'partial'}: "
            "only finished runs over all folds can be combined (use collect for --fold runs)"
        )
    run = record.folder
    missing = [f for f in (META_FILE, FOLDS_FILE, OOF_FILE, TRUTH_FILE) if not run.has(f)]
    if missing:
        raise UsageError(f"run {record.run_id} has no {', '.join(missing)}: it cannot be combined")
    return Member(
        record=record,
        meta=run.read_meta(),
        folds=run.read_folds().sort_values(ID, ignore_index=True),
        oof=run.read_oof().sort_values(ID, ignore_index=True),
        truth=run.read_truth().sort_values(ID, ignore_index=True),
        submission=run.read_submission(),
        folds_path=run / FOLDS_FILE,
    )


def check_members(members: list[Member]) -> None:
    """Refuse members that were not trained on the same file with the same folds."""
    if not members:
        raise UsageError("give at least one run")
    first = members[0]
    ids = [m.record.run_id for m in members]
    if len(set(ids)) != len(ids):
        raise UsageError("a run is given twice")
    for m in members[1:]:
        who = f"run {m.record.run_id} and run {first.record.run_id}"
        if m.meta.train_sha256 != first.meta.train_sha256:
            raise UsageError(f"{who} were trained on different train files: they cannot be combined")
        if not m.folds[[ID, "fold"]].equals(first.folds[[ID, "fold"]]):
            raise UsageError(
                f"{who} used different folds, so an OOF blend would mix models that saw each other's "
                f"validation rows: re-run one with `folds: {{from_run: {first.record.run_id}}}`"
            )
        if not m.oof[ID].equals(first.oof[ID]):
            raise UsageError(f"{who} have out-of-fold predictions for different rows")


# --- the combiner ---------------------------------------------------------------------------
def to_quantiles(pred: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each prediction's mid-quantile among the stored reference predictions of its column.

    ``reference`` is (n_ref, 30), each column sorted. Ties count half, so on the reference itself
    this is (rank - 0.5) / n_ref.
    """
    out = np.empty_like(pred, dtype=np.float64)
    for t in range(pred.shape[1]):
        ref = reference[:, t]
        out[:, t] = (np.searchsorted(ref, pred[:, t], "left") + np.searchsorted(ref, pred[:, t], "right")) / (
            2.0 * len(ref)
        )
    return out


def simplex_grid(n_members: int, max_points: int = MAX_GRID) -> np.ndarray:
    """Weight vectors (non-negative, summing to 1) on the finest grid step 1/s (s <= 10) that fits."""
    for steps in range(10, 0, -1):
        points = [c for c in itertools.product(range(steps + 1), repeat=n_members) if sum(c) == steps]
        if len(points) <= max_points:
            return np.array(points, dtype=np.float64) / steps
    return np.eye(n_members)


def _spearman_columns(rank_true_centred: np.ndarray, pred: np.ndarray) -> np.ndarray:
    rp = rankdata(pred, axis=0)
    rp -= rp.mean(axis=0)
    denom = np.sqrt((rank_true_centred**2).sum(axis=0) * (rp**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (rank_true_centred * rp).sum(axis=0) / np.where(denom > 0, denom, 1), 0.0)


def fit_weights(x: np.ndarray, truth: np.ndarray, per_target: bool) -> np.ndarray:
    """Grid-search weights on these rows: (30, n_members), rows summing to 1.

    ``x`` is (n_members, n_rows, 30). Global weights maximise the mean Spearman; per-target ones
    each column's Spearman.
    """
    grid = simplex_grid(x.shape[0])
    rt = rankdata(truth, axis=0)
    rt -= rt.mean(axis=0)
    scores = np.array([_spearman_columns(rt, np.einsum("m,mnt->nt", w, x)) for w in grid])  # (grid, 30)
    if per_target:
        return grid[scores.argmax(axis=0)]
    return np.tile(grid[scores.mean(axis=1).argmax()], (x.shape[2], 1))


@dataclass
class Combiner:
    """Everything needed to turn member predictions into ensemble predictions."""

    weights: np.ndarray  # (30, n_members)
    average: str = "value"
    references: list[np.ndarray] | None = None  # per member, sorted OOF predictions (rank averaging)
    postprocessor: PostProcessor | None = None

    def blend(self, member_preds: np.ndarray) -> np.ndarray:
        """(n_members, n, 30) member predictions -> (n, 30) weighted mean (before post-processing)."""
        x = member_preds
        if self.average == "rank":
            x = np.stack([to_quantiles(p, ref) for p, ref in zip(member_preds, self.references, strict=True)])
        return np.einsum("tm,mnt->nt", self.weights, x)

    def apply(self, member_preds: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Blend, post-process (if fitted), clip to [0, 1]; also return the constant-column notes."""
        pred = self.blend(member_preds)
        notes: list[str] = []
        if self.postprocessor is not None:
            pred, notes = self.postprocessor.apply(pred)
        return np.clip(pred, 0.0, 1.0), notes


@dataclass
class EnsembleSpec:
    """What the user asked for."""

    weights: str | list[float] = "auto"  # "auto", "equal" or one number per member
    per_target: bool = False
    average: str = "value"
    postprocess: str = "none"  # "none" or a questlab.ensemble.postprocess method choice
    min_gain: float = MIN_GAIN  # inner-CV gain a target's map must show to be kept
    seed: int = 0

    def check(self, n_members: int) -> None:
        if self.average not in AVERAGES:
            raise UsageError(f"unknown averaging {self.average!r}; choose one of {', '.join(AVERAGES)}")
        if self.postprocess != "none":
            check_method(self.postprocess)
        if isinstance(self.weights, str):
            if self.weights not in WEIGHT_MODES:
                raise UsageError(
                    f"unknown weights {self.weights!r}; give one of {', '.join(WEIGHT_MODES)} "
                    "or numbers such as 0.7,0.3"
                )
        else:
            if len(self.weights) != n_members:
                raise UsageError(f"{len(self.weights)} weights given for {n_members} runs")
            if min(self.weights) < 0 or sum(self.weights) <= 0:
                raise UsageError("weights must be non-negative with a positive sum")


def fit_combiner(
    member_preds: np.ndarray,
    truth: np.ndarray,
    groups: np.ndarray,
    spec: EnsembleSpec,
    references: list[np.ndarray] | None,
) -> Combiner:
    """Fit weights, then post-processing on the blend, using only these rows."""
    n_members, _, n_targets = member_preds.shape
    combiner = Combiner(np.full((n_targets, n_members), 1.0 / n_members), spec.average, references)
    if isinstance(spec.weights, list):
        w = np.asarray(spec.weights, dtype=np.float64)
        combiner.weights = np.tile(w / w.sum(), (n_targets, 1))
    elif spec.weights == "auto" and n_members > 1:
        x = (
            member_preds
            if spec.average == "value"
            else np.stack([to_quantiles(p, r) for p, r in zip(member_preds, references, strict=True)])
        )
        combiner.weights = fit_weights(x, truth, spec.per_target)
    if spec.postprocess != "none":
        combiner.postprocessor = fit_postprocessor(
            combiner.blend(member_preds), truth, groups, spec.postprocess, min_gain=spec.min_gain, seed=spec.seed
        )
    return combiner


@dataclass
class NestedResult:
    """The nested (honest) and in-sample predictions of a combiner fit on OOF rows."""

    nested: np.ndarray  # fold k's rows combined by a combiner fitted without fold k
    nested_blend: np.ndarray  # the same before post-processing
    in_sample: np.ndarray  # every row combined by the combiner fitted on all rows
    final: Combiner  # fitted on all rows: what test predictions use
    notes: list[str] = field(default_factory=list)


def nested_fit(
    member_preds: np.ndarray,
    truth: np.ndarray,
    folds: np.ndarray,
    groups: np.ndarray,
    spec: EnsembleSpec,
    references: list[np.ndarray] | None,
) -> NestedResult:
    """Fit once per outer fold without that fold (nested) and once on everything (in-sample)."""
    nested, nested_blend = np.empty_like(truth), np.empty_like(truth)
    notes: list[str] = []
    for k in np.unique(folds):
        fit_rows, held = folds != k, folds == k
        c = fit_combiner(member_preds[:, fit_rows], truth[fit_rows], groups[fit_rows], spec, references)
        nested_blend[held] = c.blend(member_preds[:, held])
        nested[held], fold_notes = c.apply(member_preds[:, held])
        notes += [f"fold {k}: {n}" for n in fold_notes]
    final = fit_combiner(member_preds, truth, groups, spec, references)
    in_sample, final_notes = final.apply(member_preds)
    if final.postprocessor is not None:
        notes += final.postprocessor.notes
    return NestedResult(nested, nested_blend, in_sample, final, notes + final_notes)


def gain_summary(
    truth: np.ndarray, base: np.ndarray, other: np.ndarray, groups: np.ndarray, n_boot: int, seed: int = 0
) -> dict[str, float]:
    """Score difference ``other - base`` with a paired question-bootstrap 95% interval."""
    out = {"gain": mean_spearman(truth, other) - mean_spearman(truth, base)}
    if n_boot:
        diffs = bootstrap_paired(truth, base, other, groups, n_boot=n_boot, seed=seed)
        out |= {"ci_low": float(np.percentile(diffs, 2.5)), "ci_high": float(np.percentile(diffs, 97.5))}
    return out


def _member_matrix(members: list[Member]) -> np.ndarray:
    return np.stack([m.oof[list(TARGETS)].to_numpy(dtype=np.float64) for m in members])


def _references(members: list[Member], average: str) -> list[np.ndarray] | None:
    if average != "rank":
        return None
    return [np.sort(m.oof[list(TARGETS)].to_numpy(dtype=np.float64), axis=0) for m in members]


def build_ensemble(
    store: Store,
    run_ids: list[str],
    spec: EnsembleSpec,
    name: str | None = None,
    n_boot: int = 200,
    say: Say = lambda _msg: None,
) -> tuple[str, dict]:
    """Combine finished runs into a new recorded run (kind "ensemble"); return its id and report.

    The report holds the members' scores, the nested score with and without post-processing,
    the in-sample score, and gains over the best member (nested and in-sample, with paired
    bootstrap intervals). Only the nested figures are honest.
    """
    members = [load_member(store, r) for r in run_ids]
    check_members(members)
    spec.check(len(members))
    first = members[0]
    truth = first.truth[list(TARGETS)].to_numpy(dtype=np.float64)
    folds, groups = first.oof["fold"].to_numpy(), first.oof["group"].to_numpy()
    x = _member_matrix(members)
    refs = _references(members, spec.average)
    say(f"fitting on {len(truth)} OOF rows, nested over {len(np.unique(folds))} folds")
    res = nested_fit(x, truth, folds, groups, spec, refs)

    member_scores = [mean_spearman(truth, xi) for xi in x]
    best = int(np.argmax(member_scores))
    base = x[best]  # gains are measured against the best member alone (for one member: the run itself)
    report = {
        "members": {m.record.run_id: s for m, s in zip(members, member_scores, strict=True)},
        "best_member": members[best].record.run_id,
        "nested_score": mean_spearman(truth, res.nested),
        "nested_score_before_postprocess": mean_spearman(truth, res.nested_blend),
        "in_sample_score": mean_spearman(truth, res.in_sample),
        "nested_gain": gain_summary(truth, base, res.nested, groups, n_boot, spec.seed),
        "in_sample_gain": gain_summary(truth, base, res.in_sample, groups, n_boot, spec.seed),
        "notes": res.notes,
    }
    if spec.postprocess != "none":
        report["postprocess_nested_gain"] = gain_summary(truth, res.nested_blend, res.nested, groups, n_boot)
        report["postprocess_chosen"] = res.final.postprocessor.chosen()
    submission = _submission(members, res.final)  # before the run exists: a refusal leaves no run
    run_id, cv = _record(store, members, spec, res, report, submission, name, n_boot)
    say(f"ensemble run {run_id}: nested CV {cv.score:.4f} (95% CI {cv.ci_low:.4f}..{cv.ci_high:.4f})")
    return run_id, report


def _record(
    store: Store,
    members: list[Member],
    spec: EnsembleSpec,
    res: NestedResult,
    report: dict,
    submission: pd.DataFrame | None,
    name: str | None,
    n_boot: int,
) -> tuple[str, CVScore]:
    """Create the ensemble run and write its folder like a CV run's, plus ensemble/postprocess JSON."""
    first = members[0]
    folds, groups = first.oof["fold"].to_numpy(), first.oof["group"].to_numpy()
    name = name or ("postprocess" if len(members) == 1 else "ensemble")
    run_id = store.create_run(
        name,
        tags={
            TAG_KIND: "ensemble",
            TAG_MODEL: "ensemble(" + "+".join(m.record.tags.get(TAG_MODEL, "?") for m in members) + ")",
            TAG_COMPLETE: "false",
            "questlab.members": ",".join(m.record.run_id for m in members),
            "questlab.git_commit": git_commit(),
            "questlab.version": __version__,
        },
    )
    with store.recording(run_id):
        run = store.writer(run_id)
        shutil.copy(first.folds_path, run / FOLDS_FILE)
        spec_d = {
            "members": [m.record.run_id for m in members],
            "average": spec.average,
            "weights_mode": spec.weights if isinstance(spec.weights, str) else "given",
            "per_target": spec.per_target,
            "weights": {t: w.tolist() for t, w in zip(TARGETS, res.final.weights, strict=True)},
            "postprocess": spec.postprocess,
            "seed": spec.seed,
            "report": report,
        }
        run.write_ensemble(spec_d)
        if res.final.postprocessor is not None:
            res.final.postprocessor.save(run / POSTPROCESS_FILE)
        all_folds = sorted(int(k) for k in np.unique(folds))
        run.write_meta(
            RunMeta(
                run_id=run_id,
                kind="ensemble",
                name=name,
                model="ensemble",
                members=spec_d["members"],
                train_file=first.meta.train_file,
                train_sha256=first.meta.train_sha256,
                test_file=first.meta.test_file,
                test_sha256=first.meta.test_sha256,
                git_commit=git_commit(),
                folds_all=all_folds,
                folds_selected=all_folds,
            )
        )
        store.sync(run_id, FOLDS_FILE, ENSEMBLE_FILE, POSTPROCESS_FILE, META_FILE)
        store.log_params(run_id, {k: v for k, v in spec_d.items() if k not in ("weights", "report")})
        oof = predictions_frame(first.oof[ID], res.nested)
        oof.insert(1, "group", groups)
        oof.insert(2, "fold", folds)
        cv = record_outputs(store, run_id, run, oof, first.truth, submission, n_boot, all_folds, complete=True)
        store.log_metrics(
            run_id,
            {
                "in_sample_score": report["in_sample_score"],
                "nested_gain": report["nested_gain"]["gain"],
                "in_sample_gain": report["in_sample_gain"]["gain"],
            },
        )
        from questlab.export import log_run_model

        log_run_model(store, run_id)
    return run_id, cv


def _submission(members: list[Member], combiner: Combiner) -> pd.DataFrame | None:
    """Test predictions from the members' own test predictions (mean of their fold models)."""
    subs = [m.submission for m in members]
    if any(s is None for s in subs):
        return None
    if any(not s[ID].equals(subs[0][ID]) for s in subs[1:]):
        raise UsageError("the members predicted different test rows: re-run them with the same --test file")
    pred, _ = combiner.apply(np.stack([s[list(TARGETS)].to_numpy(dtype=np.float64) for s in subs]))
    return predictions_frame(subs[0][ID], pred)


def postprocess_run(
    store: Store,
    run_id: str,
    method: str = "distribution",
    name: str | None = None,
    n_boot: int = 200,
    say: Say = lambda _msg: None,
) -> tuple[str, dict]:
    """Post-process one run: a new ensemble run with that run as its only member (weight 1).

    Keeping the source run untouched and recording the mapping as a run of its own means
    ``predict``, ``diagnose`` and ``compare`` work on the post-processed version unchanged, and
    its oof.csv holds the nested (honest) mapped predictions.
    """
    spec = EnsembleSpec(weights="equal", postprocess=method)
    name = name or f"{store.get(run_id).name}+pp-{method}"
    return build_ensemble(store, [run_id], spec, name=name, n_boot=n_boot, say=say)
