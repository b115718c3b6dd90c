"""Streaming: files read in pieces give the frames, errors and predictions of a whole-file read."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pandas as pd
import pytest

from helpers.paths import require_quest
from questlab.csvfile import iter_csv, read_csv
from questlab.data import load_test
from questlab.errors import DataError
from questlab.predict import predict_file, read_test_chunks, stream_predictions


@pytest.fixture(scope="module")
def pairs() -> pd.DataFrame:
    """The first 40 rows of the real test.csv, as text."""
    return pd.read_csv(require_quest() / "test.csv", dtype=str, keep_default_na=False).head(40)


def write(tmp: Path, frame: pd.DataFrame, name: str = "f.csv", **to_csv) -> Path:
    frame.to_csv(tmp / name, index=False, **to_csv)
    return tmp / name


@pytest.mark.parametrize("how", [{}, {"encoding": "utf-8-sig"}, {"encoding": "utf-16"}, {"compression": "gzip"}])
@pytest.mark.parametrize("chunk_rows", [1, 7, 40, 1000])
def test_pieces_add_up_to_the_whole_file(how: dict, chunk_rows: int, pairs: pd.DataFrame, tmp_path: Path) -> None:
    path = write(tmp_path, pairs, **how)
    pieces = list(iter_csv(path, chunk_rows))
    assert [start for start, _ in pieces] == list(range(1, 41, chunk_rows))
    assert all(len(p) <= chunk_rows for _, p in pieces)
    whole = pd.concat([p for _, p in pieces], ignore_index=True)
    pd.testing.assert_frame_equal(whole, read_csv(path))
    chunks = list(read_test_chunks(path, chunk_rows))
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), load_test(path))


def with_cell(frame: pd.DataFrame, column: str, row: int, value: str) -> pd.DataFrame:
    frame = frame.copy()
    frame.iloc[row - 1, frame.columns.get_loc(column)] = value
    return frame


def set_cell(column: str, row: int, value: str, **to_csv):
    return lambda tmp, frame: write(tmp, with_cell(frame, column, row, value), **to_csv)


def cut_row(row: int):
    def build(tmp: Path, frame: pd.DataFrame) -> Path:
        records = list(csv.reader(write(tmp, frame).open(newline="")))
        records[row] = records[row][:4]
        with (tmp / "f.csv").open("w", newline="") as fh:
            csv.writer(fh).writerows(records)
        return tmp / "f.csv"

    return build


def latin1_at(row: int):
    """UTF-8 text but for one title: the 'é' of row ``row`` saved as latin-1 (one byte, 0xe9)."""

    def build(tmp: Path, frame: pd.DataFrame) -> Path:
        path = write(tmp, with_cell(frame, "question_title", row, "Un café"))
        path.write_bytes(path.read_bytes().replace("Un café".encode(), "Un café".encode("latin-1")))
        return path

    return build


def damaged_gzip(tmp: Path, frame: pd.DataFrame) -> Path:
    (tmp / "f.csv.gz").write_bytes(gzip.compress(frame.to_csv(index=False).encode())[:-300])
    return tmp / "f.csv.gz"


BAD = {
    "empty answer in a later piece": set_cell("answer", 33, " "),
    "qa_id 1e30 in a later piece": set_cell("qa_id", 27, "1e30"),
    "duplicate inside a later piece": set_cell("qa_id", 34, "__row32__"),
    "duplicate across pieces": set_cell("qa_id", 35, "__row3__"),
    "short row in a later piece": cut_row(29),
    "latin-1 byte in a later piece": latin1_at(31),
    "damaged gzip": damaged_gzip,
    "header only": lambda tmp, frame: write(tmp, frame.head(0)),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_errors_are_the_whole_file_errors(case: str, pairs: pd.DataFrame, tmp_path: Path) -> None:
    frame = pairs.copy()
    path = BAD[case](tmp_path, frame)
    text = path.read_bytes()
    for marker, row in ((b"__row32__", 32), (b"__row3__", 3)):  # a qa_id repeating an earlier row's
        text = text.replace(marker, frame["qa_id"].iloc[row - 1].encode())
    path.write_bytes(text)
    with pytest.raises(DataError) as whole:
        load_test(path)
    with pytest.raises(DataError) as streamed:
        for _ in read_test_chunks(path, chunk_rows=10):
            pass
    assert str(streamed.value) == str(whole.value)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory):
    from helpers.runs import tiny_run
    from questlab.predict import load_predictor
    from questlab.store import Store

    store = Store(tmp_path_factory.mktemp("store"))
    return load_predictor(store, tiny_run(store, "tfidf", {"max_features": 2000}))


def test_streamed_predictions_equal_the_whole_file_ones(predictor, pairs: pd.DataFrame, tmp_path: Path) -> None:
    path = write(tmp_path, pairs)
    expected = predict_file(predictor, path, tmp_path / "whole.csv", chunk_rows=10**6)
    for chunk_rows in (1, 9, 40):
        rows = stream_predictions(predictor, path, tmp_path / f"s{chunk_rows}.csv", chunk_rows=chunk_rows)
        assert rows == 40
        assert (tmp_path / f"s{chunk_rows}.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert (tmp_path / "whole.csv").read_text() == expected.to_csv(index=False)


def test_a_bad_row_in_a_later_piece_leaves_no_output(predictor, pairs: pd.DataFrame, tmp_path: Path) -> None:
    path = set_cell("question_title", 38, "")(tmp_path, pairs)
    out = tmp_path / "out" / "p.csv"
    with pytest.raises(DataError, match="row 38"):
        stream_predictions(predictor, path, out, chunk_rows=10)
    assert not out.exists() and list(out.parent.iterdir()) == []  # no partial file, no temporary left
