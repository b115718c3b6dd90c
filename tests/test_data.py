"""Every bad input is a DataError naming file, column and row; the CLI turns it into exit code 2."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from questlab.cli import app
from questlab.data import DataError, check_pair, load_test, load_train, summarize, validate_frame
from questlab.schema import TARGETS, TEST_COLUMNS, TRAIN_COLUMNS


def write(tmp_path: Path, frame: pd.DataFrame, name: str = "f.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


@pytest.fixture()
def small(raw_train: pd.DataFrame) -> pd.DataFrame:
    return raw_train.head(20).copy()


def test_real_files_load(quest_dir: Path) -> None:
    train = load_train(quest_dir / "train.csv")
    test = load_test(quest_dir / "test.csv")
    assert list(train.columns) == list(TRAIN_COLUMNS) and len(train) == 4828
    assert list(test.columns) == list(TEST_COLUMNS) and len(test) == 476
    assert train[list(TARGETS)].dtypes.eq("float64").all()
    check_pair(train, test, "test.csv")
    s = summarize(train, "train")
    assert s.questions == 2856 and s.targets is not None and len(s.targets) == 30
    # the sample submission's columns are exactly our target order
    sample = pd.read_csv(quest_dir / "sample_submission.csv", nrows=1)
    assert list(sample.columns) == ["qa_id", *TARGETS]


def set_cell(column: str, row: int, value: str):
    """A mutation that sets one cell (1-based data row, as errors report it)."""

    def mutate(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame.iloc[row - 1, frame.columns.get_loc(column)] = value
        return frame

    return mutate


def set_ids(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.iloc[1, 0] = frame.iloc[0, 0]
    return frame


CASES = {
    "missing column": (lambda f: f.drop(columns=["answer"]), "answer", None, "missing"),
    "unknown column": (lambda f: f.assign(extra=1), "extra", None, "unknown column"),
    "duplicate qa_id": (set_ids, "qa_id", 2, "duplicate qa_id"),
    "non-integer qa_id": (set_cell("qa_id", 1, "x"), "qa_id", 1, "not an integer"),
    "empty answer": (set_cell("answer", 5, "  "), "answer", 5, "empty"),
    "missing body": (set_cell("question_body", 1, ""), "question_body", 1, "empty"),
    "missing target": (set_cell("answer_helpful", 3, ""), "answer_helpful", 3, "missing target"),
    "non-numeric target": (set_cell("question_well_written", 1, "high"), "question_well_written", 1, "non-numeric"),
    "target above 1": (set_cell("answer_relevance", 10, "1.5"), "answer_relevance", 10, "outside [0, 1]"),
    "target below 0": (set_cell("answer_plausible", 1, "-0.1"), "answer_plausible", 1, "outside [0, 1]"),
    "some targets missing": (lambda f: f.drop(columns=list(TARGETS[3:5])), TARGETS[3], None, "missing target column"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_train_input_names_file_column_row(case: str, small: pd.DataFrame, tmp_path: Path) -> None:
    mutate, column, row, words = CASES[case]
    path = write(tmp_path, mutate(small))
    with pytest.raises(DataError) as info:
        load_train(path)
    err = info.value
    assert err.file == str(path) and err.column == column and err.row == row
    assert words in str(err)
    assert str(path) in str(err)


def test_whitespace_only_body_is_kept(small: pd.DataFrame, tmp_path: Path) -> None:
    # The real train.csv has two: a question may be all title.
    frame = set_cell("question_body", 1, "\n")(small)
    assert len(load_train(write(tmp_path, frame))) == 20


def test_empty_file_and_not_csv(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_train(empty)
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\x00\x01\x02PK\x03\x04" * 100)
    with pytest.raises(DataError, match="not a CSV"):
        load_train(binary)
    garbled = tmp_path / "garbled.csv"
    garbled.write_text('qa_id,question_title\n1,"unterminated\n')
    with pytest.raises(DataError, match="not a valid CSV"):
        load_test(garbled)
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join(TEST_COLUMNS) + "\n")
    with pytest.raises(DataError, match="no rows"):
        load_test(header_only)
    with pytest.raises(DataError, match="no such file"):
        load_train(tmp_path / "nope.csv")


def test_train_and_test_swapped(quest_dir: Path) -> None:
    with pytest.raises(DataError, match="looks like a test file"):
        load_train(quest_dir / "test.csv")
    with pytest.raises(DataError, match="looks like a train file") as info:
        load_test(quest_dir / "train.csv")
    assert info.value.column == TARGETS[0]


def test_mismatched_train_and_test(raw_train: pd.DataFrame, raw_test: pd.DataFrame, tmp_path: Path) -> None:
    # A test file with a column the train file lacks, and one re-using train qa_ids.
    with pytest.raises(DataError, match="unknown column"):
        load_test(write(tmp_path, raw_test.head(5).assign(score="3")))
    overlap = raw_train.head(5)[list(TEST_COLUMNS)]
    train = load_train(write(tmp_path, raw_train.head(20), "train.csv"))
    test_path = write(tmp_path, overlap, "test.csv")
    with pytest.raises(DataError, match="also appear in the train file") as info:
        check_pair(train, load_test(test_path), test_path)
    assert info.value.column == "qa_id" and info.value.row == 1


def test_cli_check_bad_input_is_one_line_exit_2(small: pd.DataFrame, tmp_path: Path) -> None:
    path = write(tmp_path, CASES["target above 1"][0](small))
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "answer_relevance" in lines[0] and "row 10" in lines[0]
    assert "Traceback" not in result.output


def test_cli_check_prints_summary(quest_dir: Path) -> None:
    result = CliRunner().invoke(app, ["check", str(quest_dir / "train.csv")])
    assert result.exit_code == 0, result.output
    assert (
        "unique groups 2856" in result.output
        and "task 'quest'" in result.output
        and "question_type_spelling" in result.output
    )


def test_pairs_to_predict_may_leave_out_the_optional_inputs(tmp_path: Path, raw_test: pd.DataFrame) -> None:
    from questlab.schema import OPTIONAL_INPUTS

    slim = raw_test.head(20).drop(columns=list(OPTIONAL_INPUTS))
    path = tmp_path / "slim.csv"
    slim.to_csv(path, index=False)
    frame = load_test(path)
    assert list(frame.columns) == list(TEST_COLUMNS)
    assert (frame[list(OPTIONAL_INPUTS)] == "").all().all()
    assert frame["question_title"].tolist() == raw_test.head(20)["question_title"].tolist()
    # a train file still needs every input column
    with pytest.raises(DataError, match="missing input column"):
        validate_frame(pd.read_csv(path).assign(**{t: 0.5 for t in TARGETS}), "train")


def _refusal(frame: pd.DataFrame, kind: str = "train") -> str:
    with pytest.raises(DataError) as info:
        validate_frame(frame, kind, source="f.csv")
    return str(info.value)


def test_frame_refusals_are_the_exact_one_line_messages(small: pd.DataFrame) -> None:
    first = small["qa_id"].iloc[0]
    assert _refusal(small.drop(columns=list(TARGETS[:6]))) == (
        "f.csv, column 'question_asker_intent_understanding': missing target column (and 5 more: "
        "question_body_critical, question_conversational, question_expect_short_answer...). a train file needs "
        "qa_id, question_title, question_body, question_user_name, ... (see: questlab task show quest)"
    )
    assert _refusal(small.drop(columns=["answer", "host"])) == (
        "f.csv, column 'answer': missing input column (and 1 more: host). a train file needs qa_id, "
        "question_title, question_body, question_user_name, ... (see: questlab task show quest)"
    )
    assert _refusal(small[list(TEST_COLUMNS)].drop(columns=["answer"]), "test").endswith(
        "a test file needs qa_id and the 5 required inputs (question_title, question_body, answer, category, host)"
    )
    assert _refusal(small.assign(a=1, b=2)) == (
        "f.csv, column 'a': unknown column (2 unknown: a, b). a train file holds only qa_id, the 10 input "
        "columns and the 30 targets"
    )
    assert _refusal(small[list(TEST_COLUMNS)].assign(a=1), "test").endswith("holds only qa_id, the 10 input columns")
    assert _refusal(small, "test") == (
        "f.csv, column 'question_asker_intent_understanding': carries 30 target columns: this looks like a train "
        "file, where a test file is expected. give an unlabelled file (qa_id and the 10 input columns)"
    )
    assert _refusal(small[list(TEST_COLUMNS)]) == (
        "f.csv: has no target columns: this looks like a test file, where a train file is expected. give the "
        "labelled train.csv (qa_id, 10 inputs, 30 targets)"
    )
    assert _refusal(small.head(0)) == "f.csv: the file has a header but no rows"
    dup = small.copy()
    dup.iloc[3, 0] = first
    assert _refusal(dup) == (
        f"f.csv, column 'qa_id', row 4 (qa_id {first}): duplicate qa_id (first seen at row 1). "
        "each row must have its own qa_id"
    )
    assert _refusal(set_cell("answer", 2, " ")(small)).startswith(
        f"f.csv, column 'answer', row 2 (qa_id {small['qa_id'].iloc[1]}): empty or missing text (1 such rows). "
        "every row needs question_title, question_body, answer, category and host"
    )
    assert _refusal(set_cell("answer_helpful", 3, "lots")(small)) == (
        f"f.csv, column 'answer_helpful', row 3 (qa_id {small['qa_id'].iloc[2]}): non-numeric target value 'lots'"
    )
    assert _refusal(set_cell("answer_helpful", 2, "1.25")(small)).endswith(
        "target value 1.25 outside [0, 1]. task 'quest' rates answer_helpful in [0, 1]"
    )
    assert _refusal(set_cell("answer_helpful", 2, " ")(small)).endswith("missing target value")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1000012", 1000012),
        ("1000012.0", 1000012),
        (" +1000007 ", 1000007),
        ("-3", -3),
        ("9223372036854775807", 2**63 - 1),
    ],
)
def test_whole_number_qa_ids_are_read_exactly(small: pd.DataFrame, text: str, value: int) -> None:
    frame = validate_frame(set_cell("qa_id", 1, text)(small), "train")
    assert frame["qa_id"].iloc[0] == value and frame["qa_id"].dtype == "int64"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1e3", "qa_id '1e3' is not an integer. write each qa_id as a whole number in digits, e.g. 1234"),
        ("12.5", "qa_id '12.5' is not an integer"),
        ("9223372036854775808", "qa_id '9223372036854775808' is outside the 64-bit integer range"),
        ("-9223372036854775809", "qa_id '-9223372036854775809' is outside the 64-bit integer range"),
    ],
)
def test_qa_ids_that_are_not_int64_are_refused(small: pd.DataFrame, text: str, message: str) -> None:
    assert _refusal(set_cell("qa_id", 2, text)(small)).startswith(f"f.csv, column 'qa_id', row 2: {message}")


def test_validate_frame_takes_values_as_their_text() -> None:
    from questlab.data import Dataset

    frame = pd.DataFrame({c: ["x", "y"] for c in TEST_COLUMNS}).assign(qa_id=[5, 6.0])
    frame["question_user_name"] = [None, float("nan")]  # missing optional values: empty text
    clean = validate_frame(frame, "test")
    assert clean["question_user_name"].tolist() == ["", ""] and clean["qa_id"].tolist() == [5, 6]
    with pytest.raises(DataError, match=r"^DataFrame: expected a pandas DataFrame, got list$"):
        validate_frame([1, 2], "test")  # type: ignore[arg-type]
    repeated = pd.concat([frame, frame[["answer"]].rename(columns={"answer": " answer"})], axis=1)
    with pytest.raises(DataError, match=r"^DataFrame, column 'answer': the frame repeats a column$"):
        validate_frame(repeated, "test")
    data = Dataset.read(frame, "test")
    assert data.name == "DataFrame" and len(data.sha256) == 64
    assert Dataset.read(frame.copy(), "test").sha256 == data.sha256  # same content, same identity
    assert Dataset.read(frame.assign(answer=["x", "z"]), "test").sha256 != data.sha256
    assert Dataset.read(data, "test") is data
    with pytest.raises(DataError, match=r"^train DataFrame: has no target columns"):
        Dataset.read(frame, "train")


def test_summarize_counts_questions_levels_and_blank_bodies(small: pd.DataFrame) -> None:
    frame = small.copy()
    frame.loc[1, ["question_title", "question_body", "url"]] = frame.loc[0, ["question_title", "question_body", "url"]]
    frame.loc[2, "question_body"] = "   "
    train = validate_frame(frame, "train")
    s = summarize(train, "train")
    n_questions = len(set(zip(train["url"], strict=True)))
    assert s.kind == "train" and s.rows == 20 and s.questions == n_questions and s.blank_bodies == 1
    per_q = train.groupby("url").size()
    assert s.answers_per_question == {
        "mean": pytest.approx(per_q.mean()),
        "max": float(per_q.max()),
        "share_with_several": pytest.approx((per_q > 1).mean()),
    }
    lengths = train["answer"].str.len()
    assert s.text_lengths.loc["answer"].tolist() == pytest.approx(
        [lengths.mean(), lengths.median(), lengths.quantile(0.9), lengths.max()]
    )
    assert list(s.text_lengths.columns) == ["mean", "p50", "p90", "max"]
    col = train["answer_helpful"]
    row = s.targets.loc["answer_helpful"]
    top = col.round(6).value_counts()
    assert row["distinct"] == col.nunique() and row["majority_value"] == top.index[0]
    assert row["majority_share"] == pytest.approx(top.iloc[0] / 20) and row["mean"] == pytest.approx(col.mean())
    assert summarize(validate_frame(small[list(TEST_COLUMNS)], "test"), "test").targets is None


def test_file_identity_kind_detection_and_the_train_test_overlap_message(small: pd.DataFrame, tmp_path: Path) -> None:
    import hashlib

    from questlab.data import Dataset, detect_kind

    train_path = write(tmp_path, small, "train.csv")
    test_path = write(tmp_path, small[list(TEST_COLUMNS)].iloc[[4, 2]], "test.csv")
    assert detect_kind(train_path) == "train" and detect_kind(test_path) == "test"
    data = Dataset.read(train_path, "train")
    assert data.name == "train.csv" and data.sha256 == hashlib.sha256(train_path.read_bytes()).hexdigest()
    pd.testing.assert_frame_equal(data.frame, load_train(train_path))
    with pytest.raises(DataError) as info:
        check_pair(data.frame, load_test(test_path), test_path)
    qa = small["qa_id"].iloc[2]  # the first shared id in sorted order is the smaller one
    assert min(small["qa_id"].iloc[[4, 2]].astype(int)) == int(qa)
    assert str(info.value) == (
        f"{test_path}, column 'qa_id', row 2 (qa_id {qa}): 2 qa_id(s) also appear in the train file. "
        "test rows must be pairs the model was not trained on"
    )


def test_a_frame_read_as_a_dataset_is_validated_and_named_by_its_kind(small: pd.DataFrame) -> None:
    from questlab.data import Dataset

    pairs = small[list(TEST_COLUMNS)]
    data = Dataset.read(pairs, "test")
    pd.testing.assert_frame_equal(data.frame, validate_frame(pairs, "test"))
    with pytest.raises(DataError, match=r"^test DataFrame: the file has a header but no rows$"):
        Dataset.read(pairs.head(0), "test")
