"""Data and folds read from a task: the synthetic task, an ELL slice, and QUEST unchanged."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from helpers.synthetic_task import make_frame, write_spec
from questlab.cli import app
from questlab.cli.tasks import draft_spec
from questlab.data import DataError, detect_kind, load_test, load_train, summarize, validate_frame
from questlab.folds import load_folds, make_folds, save_folds
from questlab.tasks import load_task
from questlab.tasks.grouping import stratify_labels

ELL = Path(__file__).resolve().parents[2] / "shared" / "ell" / "train.csv"


@pytest.fixture()
def reviews(tmp_path: Path):
    return load_task(write_spec(tmp_path))


@pytest.fixture(scope="module")
def ell_slice() -> pd.DataFrame:
    if not ELL.exists():
        pytest.skip("no ELL data beside the repository")
    return pd.read_csv(ELL, nrows=120, dtype=str, keep_default_na=False)


def _write(tmp_path: Path, frame: pd.DataFrame, name: str = "f.csv") -> Path:
    path = tmp_path / name
    frame.astype(str).to_csv(path, index=False)
    return path


def _set(frame: pd.DataFrame, column: str, row: int, value: str) -> pd.DataFrame:
    frame = frame.astype(str)
    frame.iloc[row - 1, frame.columns.get_loc(column)] = value
    return frame


def test_synthetic_train_and_test_files_load(reviews, tmp_path: Path) -> None:
    path = _write(tmp_path, make_frame(30))
    frame = load_train(path, reviews)
    assert list(frame.columns) == list(reviews.train_columns) and frame["review_id"].iloc[0] == "r0-0"
    assert frame[list(reviews.target_names)].dtypes.eq("float64").all() and detect_kind(path, reviews) == "train"
    # a file to predict may leave out the optional and the group-only columns: empty cells
    slim = make_frame(10, seed=1, with_targets=False).drop(columns=["author", "product"])
    test = load_test(_write(tmp_path, slim, "test.csv"), reviews)
    assert list(test.columns) == list(reviews.test_columns) and (test["author"] == "").all()
    s = summarize(frame, "train", reviews)
    assert s.questions == 10 and list(s.text_lengths.index) == ["review", "reply"] and len(s.targets) == 3


def test_check_prints_each_target_distinct_count_as_an_integer(reviews, tmp_path: Path) -> None:
    path = _write(tmp_path, make_frame(30))
    result = CliRunner().invoke(app, ["check", str(path), "--task", str(tmp_path / "reviews.yaml")])
    assert result.exit_code == 0, result.output
    counts = summarize(load_train(path, reviews), "train", reviews).targets["distinct"]
    for target in reviews.target_names:
        (line,) = [ln for ln in result.output.splitlines() if re.match(rf"\W*{target}\W", ln)]
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        assert cells[:2] == [target, str(counts[target])], line  # 9, not 9.0 (the summary row mixes floats)


SYNTHETIC_BAD = {
    "off its levels": ("clear", 4, "3.25", "target value 3.25 is not one of its levels (1, 1.5, ..., 5)"),
    "above its range": ("helpful", 7, "10.5", "target value 10.5 outside [0, 10]"),
    "below its range": ("polite", 2, "0", "target value 0 outside [1, 5]"),
    "not finite": ("helpful", 3, "inf", "outside [0, 10]"),
    "non-numeric": ("polite", 5, "high", "non-numeric target value 'high'"),
    "empty group cell": ("product", 9, " ", "empty group value"),
    "empty text": ("review", 6, "", "empty or missing text"),
    "empty id": ("review_id", 2, " ", "empty review_id"),
}


@pytest.mark.parametrize("case", sorted(SYNTHETIC_BAD))
def test_synthetic_bad_values_name_file_column_row(case: str, reviews, tmp_path: Path) -> None:
    column, row, value, words = SYNTHETIC_BAD[case]
    path = _write(tmp_path, _set(make_frame(12), column, row, value))
    with pytest.raises(DataError) as info:
        load_train(path, reviews)
    err = info.value
    assert (err.file, err.column, err.row) == (str(path), column, row)
    assert words in str(err) and str(path) in str(err) and "\n" not in str(err)
    if column != "review_id":
        assert f"(review_id r0-{row - 1})" in str(err)


def test_errors_found_while_reading_in_pieces_label_the_row_with_the_task_id(reviews, tmp_path: Path) -> None:
    from questlab.predict import read_test_chunks

    frame = make_frame(6, with_targets=False)
    ragged = _write(tmp_path, frame)
    with ragged.open("a", encoding="utf-8") as f:
        f.write("r9-9,cut short\n")
    with pytest.raises(DataError, match=r"row 7 \(review_id r9-9\)"):
        load_test(ragged, reviews)
    # a piece's error (an empty text in the second piece) and an id seen in an earlier piece
    empty = _set(frame, "review", 5, "")
    with pytest.raises(DataError, match=r"row 5 \(review_id r0-4\): empty or missing text"):
        list(read_test_chunks(_write(tmp_path, empty, "empty.csv"), chunk_rows=3, task=reviews))
    twice = pd.concat([frame, frame.head(1)])
    with pytest.raises(DataError, match=r"row 7 \(review_id r0-0\): duplicate review_id"):
        list(read_test_chunks(_write(tmp_path, twice, "twice.csv"), chunk_rows=3, task=reviews))


def test_a_group_cell_may_be_empty_in_a_file_to_predict(reviews) -> None:
    frame = _set(make_frame(6, with_targets=False), "product", 2, "")
    assert validate_frame(frame, "test", task=reviews)["product"].iloc[1] == ""


def test_ell_slice_checks(ell_slice: pd.DataFrame, tmp_path: Path) -> None:
    ell = load_task("ell")
    frame = load_train(_write(tmp_path, ell_slice), "ell")
    assert list(frame.columns) == list(ell.train_columns) and not pd.api.types.is_integer_dtype(frame["text_id"])
    for column, row, value, words in [
        ("cohesion", 4, "3.2", "target value 3.2 is not one of its levels (1, 1.5, ..., 5)"),
        ("grammar", 11, "5.5", "target value 5.5 outside [1, 5]"),
        ("conventions", 1, "0.999", "outside [1, 5]"),
    ]:
        path = _write(tmp_path, _set(ell_slice, column, row, value), f"{column}.csv")
        with pytest.raises(DataError) as info:
            load_train(path, ell)
        err = info.value
        assert (err.file, err.column, err.row) == (str(path), column, row) and words in str(err)
        assert f"(text_id {ell_slice['text_id'].iloc[row - 1]})" in str(err)
    assert validate_frame(_set(ell_slice, "syntax", 3, "3.0000001"), "train", task=ell)["syntax"].iloc[2] == 3.0000001


def test_ids_that_are_mostly_names_stay_text(ell_slice: pd.DataFrame) -> None:
    frame = ell_slice.head(5).copy()
    frame.loc[0, "text_id"] = "0012345"  # an all-digit hex name keeps its leading zeros
    assert validate_frame(frame, "train", task="ell")["text_id"].iloc[0] == "0012345"


def test_a_file_of_another_task_is_named(ell_slice: pd.DataFrame, tmp_path: Path) -> None:
    path = _write(tmp_path, ell_slice.head(5))
    for loader in (load_train, load_test):
        with pytest.raises(DataError, match="these columns look like task 'ell': pass --task ell") as info:
            loader(path)
        assert info.value.column == "qa_id" and "not a 'quest' file" in str(info.value)
    result = CliRunner().invoke(app, ["check", str(path), "--task", "ell"])
    assert result.exit_code == 0 and "valid train file of task 'ell'" in " ".join(result.output.split())


def test_folds_without_groups_are_stratified_deterministic_and_balanced(ell_slice: pd.DataFrame) -> None:
    frame = validate_frame(ell_slice, "train", task="ell")
    folds = make_folds(frame, n_splits=5, seed=42, task="ell")
    assert list(folds.columns) == ["text_id", "group", "fold"]
    assert folds["group"].tolist() == list(range(len(frame)))  # every row its own group
    pd.testing.assert_frame_equal(folds, make_folds(frame, n_splits=5, seed=42, task="ell"))
    assert not folds["fold"].equals(make_folds(frame, n_splits=5, seed=7, task="ell")["fold"])
    sizes = folds["fold"].value_counts()
    assert sorted(sizes.index) == [0, 1, 2, 3, 4] and sizes.max() - sizes.min() <= 1
    # stratified on the binned mean score: each bin spreads evenly over the folds
    bins = stratify_labels(load_task("ell"), frame)
    per_bin = pd.crosstab(bins, folds["fold"].to_numpy())
    assert len(per_bin) == 5 and (per_bin.max(axis=1) - per_bin.min(axis=1)).max() <= 1


def test_synthetic_grouped_folds_never_split_a_product(reviews, tmp_path: Path) -> None:
    frame = validate_frame(make_frame(120), "train", task=reviews)
    folds = make_folds(frame, n_splits=5, seed=3, task=reviews)
    assert list(folds.columns) == ["review_id", "group", "fold"]
    assert (frame.assign(fold=folds["fold"]).groupby("product")["fold"].nunique() == 1).all()
    assert folds["group"].nunique() == 40 and folds["fold"].nunique() == 5
    with pytest.raises(ValueError, match=r"^only 2 distinct groups: cannot make 5 grouped folds$"):
        make_folds(frame.head(6), task=reviews)
    # saved and loaded back by the task's id (text ids stay text)
    back = load_folds(save_folds(folds, tmp_path), frame, task=reviews)
    pd.testing.assert_frame_equal(back[["review_id", "group", "fold"]], folds)


def _old_quest_folds(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """questlab 0.9.0's algorithm, written out: groups by hash(title + body) or url, then StratifiedGroupKFold."""
    from sklearn.model_selection import StratifiedGroupKFold

    def norm(text: str) -> str:
        return re.sub(r"\s+", " ", text).strip().lower()

    parent: dict[str, str] = {}

    def find(k: str) -> str:
        parent.setdefault(k, k)
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    rows = []
    for url, title, body in zip(frame["url"], frame["question_title"], frame["question_body"], strict=True):
        keys = ["t:" + hashlib.sha1(f"{norm(title)}\n{norm(body)}".encode()).hexdigest()]
        keys += ["u:" + norm(str(url))] if str(url).strip() else []
        rows.append(keys)
        root = find(keys[0])
        for k in keys[1:]:
            other = find(k)
            if other != root:
                parent[max(root, other)] = min(root, other)
                root = min(root, other)
    roots = [find(keys[0]) for keys in rows]
    index = {r: i for i, r in enumerate(sorted(set(roots)))}
    groups = np.array([index[r] for r in roots])
    fold = np.full(len(frame), -1)
    splitter = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    for k, (_, valid) in enumerate(splitter.split(np.zeros(len(frame)), frame["category"], groups)):
        fold[valid] = k
    return fold


def test_quest_folds_are_unchanged_on_the_real_data(raw_train: pd.DataFrame) -> None:
    # 2000 real rows (the whole file takes ~4 s; checked once by hand for seeds 42 and 7: identical)
    frame = raw_train.head(2000)  # the columns grouping and folds read, as the validated frame holds them
    folds = make_folds(frame, seed=42)
    assert list(folds.columns) == ["qa_id", "group", "fold"]
    np.testing.assert_array_equal(folds["fold"].to_numpy(), _old_quest_folds(frame, 42))


def _round_trip(frame: pd.DataFrame, name: str, tmp_path: Path) -> pd.DataFrame:
    text = draft_spec(frame.astype(str), name, "data.csv")
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(text, encoding="utf-8")
    task = load_task(spec)
    assert task.name == name and yaml.safe_load(text)["name"] == name
    return validate_frame(frame, "train", task=task), task


def test_task_init_round_trip_on_the_synthetic_frame(tmp_path: Path) -> None:
    frame = make_frame(120)
    clean, task = _round_trip(frame, "drafted", tmp_path)
    assert task.id == "review_id" and task.text_names == ("review", "reply") and task.features == ["shop"]
    assert set(task.optional) == {"author", "product"} and task.metric == "mcrmse" and task.groups is None
    kinds = {t.name: (t.kind, t.low, t.high, t.levels and len(t.levels)) for t in task.targets}
    assert kinds == {
        "helpful": ("continuous", 0, 10, None),
        "polite": ("ordinal", 1, 5, 5),
        "clear": ("ordinal", 1, 5, 9),
    }
    assert len(clean) == 120


def test_task_init_round_trip_on_an_ell_slice_and_the_cli(ell_slice: pd.DataFrame, tmp_path: Path) -> None:
    _, task = _round_trip(ell_slice, "essays", tmp_path)
    assert task.id == "text_id" and task.text_names == ("full_text",)
    assert all(t.levels == load_task("ell").targets[0].levels for t in task.targets)
    one = ell_slice[["text_id", "full_text", "grammar"]]
    result = CliRunner().invoke(app, ["task", "init", str(_write(tmp_path, one, "one.csv")), "--name", "g"])
    assert result.exit_code == 0 and "metric: rmse" in result.output
    assert load_task(yaml.safe_load(result.output)).n_targets == 1
    bad = CliRunner().invoke(app, ["task", "init", str(_write(tmp_path, one[["text_id", "grammar"]], "x.csv"))])
    assert bad.exit_code == 2 and "no column of long text" in bad.output
    assert len(bad.output.strip().splitlines()) == 1


def test_checks_read_the_task_targets_ranges_and_levels(reviews) -> None:
    from questlab.analysis.checks.folds import constant_predictions
    from questlab.analysis.checks.health import check_prediction_values
    from questlab.analysis.checks.targets import imbalance_table

    frame = validate_frame(make_frame(60), "train", task=reviews)
    names = list(reviews.target_names)
    y_true = frame[names].to_numpy()
    y_true[:, 2] += 1e-9  # float noise on an ordinal target: still its levels
    y_pred = y_true + np.random.default_rng(0).normal(0, 0.1, y_true.shape)
    table = imbalance_table(y_true, y_pred, reviews)
    assert list(table.index) == names
    assert table.loc["clear", "distinct"] == len(np.unique(frame["clear"]))
    folds = np.arange(60) % 3
    assert list(constant_predictions(y_pred, folds, reviews).columns) == names
    oof = pd.DataFrame(y_pred, columns=names).assign(fold=folds)
    test = pd.DataFrame({"helpful": [5.0, 11.0], "polite": [1.0, 5.0], "clear": [0.5, 3.0]})
    (verdict,) = check_prediction_values(oof, {"test.csv": test}, reviews)
    assert verdict.code == "test.range" and "2 outside their targets' ranges" in verdict.message
    (ok,) = check_prediction_values(oof, {"test.csv": test.clip(1, 5)}, reviews)
    assert ok.severity == "ok" and "test predictions in their targets' ranges" in ok.message
