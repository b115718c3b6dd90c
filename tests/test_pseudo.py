"""Pseudo-labels: student fold k sees teacher fold k's labels only; pseudo rows are never scored.

The proof uses two fakes (tests/helpers/pseudo_fakes.py): a teacher whose every label is a marker
of the valid rows its fold model was kept from, and a student that records each label it trains on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import helpers.pseudo_fakes  # noqa: F401  (registers fold_marker, label_recorder)
from helpers.paths import QUEST_DIR, require_quest
from helpers.pseudo_fakes import MARKER_SCALE
from helpers.runs import test_slice as unlabelled_slice
from helpers.runs import train_slice
from helpers.tiny_encoder import cache_dir, tiny_encoder  # noqa: F401  (fixtures)
from questlab.config import parse_config
from questlab.cv import run_cv
from questlab.data import load_test, load_train
from questlab.errors import DataError, UsageError
from questlab.pseudo import PseudoLabels, fold_column, sidecar_path
from questlab.schema import ID, TARGETS, TRAIN_COLUMNS
from questlab.teacher import pseudo_label

N_FOLDS = 3


def quiet(_: str) -> None:
    pass


def config(model: str, folds: dict | None = None, **params) -> object:
    return parse_config(
        {
            "name": model,
            "folds": folds or {"n_splits": N_FOLDS, "seed": 1},
            "model": {"name": model, "params": params},
            "bootstrap": 10,
            "log_model": False,
        }
    )


@pytest.fixture()
def teacher(store) -> str:
    return run_cv(config("fold_marker"), train_slice(), unlabelled_slice(), store=store, say=quiet)


def fit_logs(store, run_id: str) -> dict[int, dict]:
    return {k: log["info"] for k, log in store.folder(run_id).read_fit_logs().items()}


def test_student_fold_k_trains_only_on_teacher_fold_k_labels(store, teacher: str, tmp_path: Path) -> None:
    out = tmp_path / "pseudo.csv"
    meta = pseudo_label(store, teacher, unlabelled_slice(), out, chunk_rows=17, say=quiet)
    assert meta.folds == [0, 1, 2] and meta.rows == 50 and meta.teacher_run == teacher
    pseudo = PseudoLabels.read(out)
    student = run_cv(
        config("label_recorder", {"from_run": teacher}), train_slice(), unlabelled_slice(), store=store,
        say=quiet, pseudo=pseudo,
    )  # fmt: skip

    folds = store.folder(student).read_folds()
    assert folds.equals(store.folder(teacher).read_folds())
    pseudo_ids = {str(i) for i in load_test(unlabelled_slice())[ID]}
    markers = {}
    for k, info in fit_logs(store, student).items():
        valid_ids = set(folds.loc[folds["fold"] == k, ID])
        assert set(info["valid_ids"]) == valid_ids
        markers[k] = min(valid_ids) / MARKER_SCALE  # what teacher fold k (kept from these rows) predicts
        got = {i: v for i, v in info["train_labels"].items() if i in pseudo_ids}
        assert set(got) == pseudo_ids  # every pseudo row, in every fold
        np.testing.assert_allclose(
            list(got.values()), markers[k], rtol=1e-12, err_msg=f"fold {k}: another fold's labels"
        )
        assert not valid_ids & {int(i) for i in info["train_labels"]}  # no valid row among its train rows
        assert {str(i) for i in info["marked_pseudo"]} == pseudo_ids  # marked: held out by no model
    assert len(set(markers.values())) == N_FOLDS  # the markers tell the teacher folds apart

    run = store.folder(student)
    oof_ids = set(run.read_oof()[ID])
    assert oof_ids == set(load_train(train_slice())[ID]) and not oof_ids & {int(i) for i in pseudo_ids}
    assert set(run.read_truth()[ID]) == oof_ids
    recorded = run.read_meta().model_extra["pseudo"]
    assert recorded["teacher_run"] == teacher and recorded["sha256"] == pseudo.sha256
    assert recorded["rows_used"] == 50 and recorded["rows_dropped"] == 0


def test_parallel_embedding_folds_find_the_pseudo_rows_vectors_ready(
    store,
    teacher: str,
    tmp_path: Path,
    tiny_encoder,  # noqa: F811
    cache_dir,  # noqa: F811
) -> None:
    """``Model.prepare`` is given the pseudo rows too: no fold worker runs the encoder on them."""
    out = tmp_path / "pseudo.csv"
    pseudo_label(store, teacher, unlabelled_slice(), out, say=quiet)
    params = {"encoder": str(tiny_encoder), "max_tokens": 32, "progress": False, "host_min_count": 2}
    params |= {"max_epochs": 2, "patience": 1, "n_seeds": 1, "hidden": 8, "early_stopping": "holdout"}
    cfg = parse_config({"name": "emb-student", "folds": {"from_run": teacher}, "parallel_folds": 2, "bootstrap": 0,
                        "log_model": False, "model": {"name": "embedding", "params": params}})  # fmt: skip
    student = run_cv(cfg, train_slice(), store=store, say=quiet, pseudo=PseudoLabels.read(out))  # no test file
    logs = fit_logs(store, student)
    assert sorted(logs) == list(range(N_FOLDS))
    for k, info in logs.items():
        assert sum(c["misses"] for c in info["embedding_cache"]) == 0, (k, info["embedding_cache"])


def test_the_file_holds_each_fold_models_labels_and_their_mean(store, teacher: str, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    pseudo_label(store, teacher, unlabelled_slice(), out, say=quiet)
    frame = pd.read_csv(out)
    folds = store.folder(teacher).read_folds()
    for k in range(N_FOLDS):
        expected = folds.loc[folds["fold"] == k, ID].min() / MARKER_SCALE
        np.testing.assert_allclose(frame[[fold_column(k, t) for t in TARGETS]].to_numpy(), expected)
    per_fold = np.stack([frame[[fold_column(k, t) for t in TARGETS]].to_numpy() for k in range(N_FOLDS)])
    np.testing.assert_allclose(frame[list(TARGETS)].to_numpy(), per_fold.mean(0))
    # the pairs are written back as validated: the same as the unlabelled file's
    pd.testing.assert_frame_equal(PseudoLabels.read(out).frame, load_test(unlabelled_slice()))


def test_other_folds_are_refused(store, teacher: str, tmp_path: Path) -> None:
    out = tmp_path / "pseudo.csv"
    pseudo_label(store, teacher, unlabelled_slice(), out, say=quiet)
    with pytest.raises(UsageError, match=f"folds.from_run={teacher}"):
        run_cv(config("label_recorder", {"n_splits": N_FOLDS, "seed": 2}), train_slice(), store=store,
               say=quiet, pseudo=PseudoLabels.read(out))  # fmt: skip
    # the same folds made afresh (same seed, same rows) have the same hash: accepted
    run_cv(config("label_recorder"), train_slice(), store=store, say=quiet, pseudo=PseudoLabels.read(out))


def test_pseudo_rows_whose_question_is_in_train_are_dropped(store, teacher: str, tmp_path: Path) -> None:
    train = load_train(train_slice())
    unlabelled = pd.concat(
        [load_test(unlabelled_slice()), train.head(7)[list(TRAIN_COLUMNS[:11])].assign(qa_id=lambda f: f[ID] + 900_000)]
    )
    path = tmp_path / "unlabelled.csv"
    unlabelled.to_csv(path, index=False)
    pseudo_label(store, teacher, path, tmp_path / "p.csv", say=quiet)
    said: list[str] = []
    student = run_cv(config("label_recorder", {"from_run": teacher}), train_slice(), store=store,
                     say=said.append, pseudo=PseudoLabels.read(tmp_path / "p.csv"))  # fmt: skip
    assert any("7 dropped" in line for line in said), said
    moved = {str(i + 900_000) for i in train.head(7)[ID]}
    kept = {str(i) for i in load_test(unlabelled_slice())[ID]}
    for info in fit_logs(store, student).values():
        assert not moved & set(info["train_labels"]) and kept <= set(info["train_labels"])
    assert store.folder(student).read_meta().model_extra["pseudo"]["rows_dropped"] == 7


def test_a_changed_or_bare_file_is_refused(store, teacher: str, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    pseudo_label(store, teacher, unlabelled_slice(), out, say=quiet)
    text = out.read_text()
    out.write_text(text.replace(",0.", ",0.9", 1))
    with pytest.raises(DataError, match="changed since questlab pseudo-label wrote it"):
        PseudoLabels.read(out)
    sidecar_path(out).unlink()
    with pytest.raises(DataError, match="not a questlab pseudo-label file"):
        PseudoLabels.read(out)


def test_a_teacher_must_be_a_complete_cv_run(store, tmp_path: Path) -> None:
    partial = run_cv(config("fold_marker"), train_slice(), store=store, only_folds=[1], say=quiet)
    with pytest.raises(UsageError, match="a teacher needs every fold"):
        pseudo_label(store, partial, unlabelled_slice(), tmp_path / "p.csv", say=quiet)
    assert not (tmp_path / "p.csv").exists()


def test_resume_needs_the_same_pseudo_labels(store, teacher: str, tmp_path: Path) -> None:
    from questlab.pseudo import attach_pseudo
    from questlab.rundir import RunMeta

    pseudo_label(store, teacher, unlabelled_slice(), tmp_path / "p.csv", say=quiet)
    pseudo = PseudoLabels.read(tmp_path / "p.csv")
    meta = RunMeta(run_id="r1", pseudo={"file": "p.csv", "sha256": pseudo.sha256})
    folds = store.folder(teacher).read_folds()
    train = load_train(train_slice())
    assert attach_pseudo(pseudo, train, folds, meta, quiet) is not None
    with pytest.raises(UsageError, match=r"was started with --pseudo p\.csv"):
        attach_pseudo(None, train, folds, meta, quiet)
    with pytest.raises(UsageError, match="was started with no --pseudo"):
        attach_pseudo(pseudo, train, folds, RunMeta(run_id="r2"), quiet)


def test_a_killed_pseudo_run_resumes_with_its_pseudo_labels_only(store, teacher: str, tmp_path: Path) -> None:
    from questlab.store import RunStopped

    def stop(k: int, score: float, scores: list[float]) -> None:
        raise RunStopped("test")

    pseudo_label(store, teacher, unlabelled_slice(), tmp_path / "p.csv", say=quiet)
    load_test(unlabelled_slice()).head(30).to_csv(tmp_path / "u30.csv", index=False)
    pseudo_label(store, teacher, tmp_path / "u30.csv", tmp_path / "other.csv", say=quiet)
    pseudo, other = PseudoLabels.read(tmp_path / "p.csv"), PseudoLabels.read(tmp_path / "other.csv")
    student = config("label_recorder", {"from_run": teacher})
    with pytest.raises(RunStopped):
        run_cv(student, train_slice(), store=store, say=quiet, pseudo=pseudo, on_fold=stop)
    killed = next(r.run_id for r in store.list_runs() if r.status == "KILLED")
    started = f"run {killed} was started with --pseudo p.csv (sha256 {pseudo.sha256[:12]}...): resume it with the same"
    for given in (other, None):
        with pytest.raises(UsageError) as info:
            run_cv(None, train_slice(), store=store, resume=killed, say=quiet, pseudo=given)
        assert str(info.value) == started
        assert store.get(killed).status == "KILLED" and store.folder(killed).done_folds() == [0]
    assert run_cv(None, train_slice(), store=store, resume=killed, say=quiet, pseudo=pseudo) == killed
    whole = run_cv(student, train_slice(), store=store, say=quiet, pseudo=pseudo)
    assert store.get(killed).status == "FINISHED" and store.folder(killed).done_folds() == [0, 1, 2]
    record = store.folder(killed).read_meta().model_extra["pseudo"]
    assert record == store.folder(whole).read_meta().model_extra["pseudo"] and record["sha256"] == pseudo.sha256
    for k, info in fit_logs(store, killed).items():  # the refitted folds trained on the pseudo rows too
        assert {str(i) for i in load_test(unlabelled_slice())[ID]} <= set(info["train_labels"]), k
    assert store.get(killed).tags["questlab.pseudo_sha256"] == pseudo.sha256


def test_cli_and_api(store, teacher: str, tmp_path: Path) -> None:
    import questlab as ql
    from questlab.cli import app

    (tmp_path / "c.yaml").write_text(
        f"name: s\nbootstrap: 10\nlog_model: false\nfolds: {{from_run: {teacher}}}\nmodel: {{name: label_recorder}}\n"
    )
    out = tmp_path / "sub" / "p.csv"
    res = CliRunner().invoke(app, ["pseudo-label", teacher[:8], "--unlabelled", str(unlabelled_slice()), "-o", str(out),
                                   "--store", str(store.root)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert out.exists() and sidecar_path(out).exists()
    res = CliRunner().invoke(app, ["run", str(tmp_path / "c.yaml"), "--train", str(train_slice()), "--pseudo",
                                   str(out), "--store", str(store.root)])  # fmt: skip
    assert res.exit_code == 0, res.output
    student = res.stdout.strip().splitlines()[-1]
    assert store.get(student).tags["questlab.pseudo_teacher"] == teacher
    run = ql.run(tmp_path / "c.yaml", train=train_slice(), store=store, pseudo=out, quiet=True)
    assert run.record.tags["questlab.pseudo_sha256"] == PseudoLabels.read(out).sha256
    res = CliRunner().invoke(app, ["pseudo-label", teacher, "--unlabelled", str(unlabelled_slice()), "-o",
                                   str(tmp_path), "--store", str(store.root)])  # fmt: skip
    assert res.exit_code == 2 and "is a folder" in res.output


@pytest.mark.slow
def test_real_teacher_labels_equal_its_fold_models_test_predictions(store, tmp_path: Path) -> None:
    """TF-IDF teacher on the real train.csv (5 grouped folds); pseudo-labels of the real test.csv."""
    quest = require_quest()
    cfg = parse_config({"name": "teacher", "model": {"name": "tfidf", "params": {"max_features": 20000}},
                        "bootstrap": 20, "log_model": False, "parallel_folds": 1})  # fmt: skip
    teacher = run_cv(cfg, quest / "train.csv", quest / "test.csv", store=store, say=quiet)
    out = tmp_path / "pseudo.csv"
    pseudo_label(store, teacher, QUEST_DIR / "test.csv", out, chunk_rows=100, say=quiet)
    frame = pd.read_csv(out)
    run = store.folder(teacher)
    for k, recorded in run.read_fold_test_predictions().items():  # what each fold model predicted in the run
        assert recorded[ID].tolist() == frame[ID].tolist()
        np.testing.assert_allclose(frame[[fold_column(k, t) for t in TARGETS]].to_numpy(),
                                   recorded[list(TARGETS)].to_numpy(), atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(frame[list(TARGETS)].to_numpy(), run.read_submission()[list(TARGETS)].to_numpy())
    said: list[str] = []
    student_cfg = cfg.model_copy(
        update={"name": "student", "folds": cfg.folds.model_copy(update={"from_run": teacher})}
    )
    student = run_cv(student_cfg, quest / "train.csv", store=store, say=said.append, pseudo=PseudoLabels.read(out))
    used = store.folder(student).read_meta().model_extra["pseudo"]
    assert used["rows_used"] + used["rows_dropped"] == 476
    assert set(store.folder(student).read_oof()[ID]) == set(load_train(quest / "train.csv")[ID])
    scores = json.loads((store.folder(student) / "scores.json").read_text())
    assert 0.2 < scores["score"] < 0.5  # a working TF-IDF student, not a broken one
