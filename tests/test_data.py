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
    assert "unique questions 2856" in result.output and "question_type_spelling" in result.output


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
