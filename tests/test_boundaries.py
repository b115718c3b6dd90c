"""Bad input at the CLI: one ``error:`` line naming file, column, line/row and the fix; exit 2; nothing written.

Each case builds its bad input in ``tmp_path`` from a 60-row slice of the real train.csv, runs one
command in ``tmp_path`` (so a default store or output would land there too) and checks that the
folder holds exactly what it held before: no output file, no store, no submission folder.
"""

from __future__ import annotations

import csv
import gzip
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers.paths import require_quest
from helpers.refusals import refused
from questlab.cli import app
from questlab.data import DataError, load_train
from questlab.schema import TRAIN_COLUMNS

CONFIG = "name: boundary\nbootstrap: 0\nfolds:\n  n_splits: 2\nmodel:\n  name: mean\n"


@pytest.fixture(scope="module")
def slice60() -> pd.DataFrame:
    """The first 60 rows of the real train.csv, as the text the file holds."""
    return pd.read_csv(require_quest() / "train.csv", dtype=str, keep_default_na=False).head(60)


def write(tmp: Path, frame: pd.DataFrame, name: str = "f.csv", **to_csv) -> Path:
    path = tmp / name
    frame.to_csv(path, index=False, **to_csv)
    return path


def cell(column: str, row: int, value: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """A mutation setting one cell (1-based data row, as errors report it)."""

    def mutate(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame.iloc[row - 1, frame.columns.get_loc(column)] = value
        return frame

    return mutate


def rewrite_row(row: int, change: Callable[[list[str]], list[str]]) -> Callable[[Path, pd.DataFrame], Path]:
    """A file whose data row ``row`` (1-based) has its fields changed by ``change`` (cut short, extended)."""

    def build(tmp: Path, frame: pd.DataFrame) -> Path:
        records = list(csv.reader(write(tmp, frame).open(newline="")))
        records[row] = change(records[row])
        with (tmp / "f.csv").open("w", newline="") as fh:
            csv.writer(fh).writerows(records)
        return tmp / "f.csv"

    return build


def csv_file(build: Callable[[Path, pd.DataFrame], Path], *rest: str) -> Callable[[Path, pd.DataFrame], list[str]]:
    """``questlab check FILE`` (and ``rest``), FILE made by ``build``."""
    return lambda tmp, frame: ["check", str(build(tmp, frame)), *rest]


def mutated(mutate: Callable[[pd.DataFrame], pd.DataFrame], **to_csv) -> Callable[[Path, pd.DataFrame], Path]:
    return lambda tmp, frame: write(tmp, mutate(frame), **to_csv)


def duplicated_header(tmp: Path, frame: pd.DataFrame) -> Path:
    path = write(tmp, frame.assign(extra=frame["answer_relevance"]))
    path.write_text(path.read_text().replace(",extra\n", ",answer_relevance\n", 1))
    return path


def latin1(tmp: Path, frame: pd.DataFrame) -> Path:
    return write(tmp, cell("question_title", 3, "Un café")(frame), encoding="latin-1", errors="replace")


def utf16_without_bom(tmp: Path, frame: pd.DataFrame) -> Path:
    path = tmp / "f.csv"
    path.write_bytes(frame.to_csv(index=False).encode("utf-16-le"))
    return path


def damaged_gzip(tmp: Path, frame: pd.DataFrame) -> Path:
    path = tmp / "f.csv.gz"
    path.write_bytes(gzip.compress(frame.to_csv(index=False).encode())[:500])
    return path


def run_with(config: str | bytes | None = CONFIG, *rest: str, train=None) -> Callable[[Path, pd.DataFrame], list[str]]:
    """``questlab run CONFIG --train F --store tmp/store ...``; a str/bytes config is written to config.yaml."""

    def argv(tmp: Path, frame: pd.DataFrame) -> list[str]:
        cfg = tmp / "config.yaml"
        if isinstance(config, bytes):
            cfg.write_bytes(config)
        elif isinstance(config, str):
            cfg.write_text(config)
        else:
            cfg.mkdir()  # a folder where the config file should be
        data = train(tmp, frame) if train else write(tmp, frame, "train.csv")
        return ["run", str(cfg), "--train", str(data), "--store", str(tmp / "store"), *rest]

    return argv


def unlabelled_file(tmp: Path, frame: pd.DataFrame) -> Path:
    """A valid test file (input columns only) with qa_ids the train slice does not use."""
    test = frame[list(TRAIN_COLUMNS[:11])].head(5).copy()
    test["qa_id"] = [str(900_000 + i) for i in range(5)]
    return write(tmp, test, "test.csv")


def submission_into(where: str) -> Callable[[Path, pd.DataFrame], list[str]]:
    def argv(tmp: Path, frame: pd.DataFrame) -> list[str]:
        (tmp / "config.yaml").write_text(CONFIG)
        (tmp / "a_file").write_text("not a folder")
        (tmp / "a_folder").mkdir()
        train, test = write(tmp, frame, "train.csv"), unlabelled_file(tmp, frame)
        return ["run", str(tmp / "config.yaml"), "--train", str(train), "--test", str(test),
                "--submission", str(tmp / where), "--store", str(tmp / "store")]  # fmt: skip

    return argv


def foreign_sqlite(tmp: Path, frame: pd.DataFrame) -> list[str]:
    with sqlite3.connect(tmp / "other.db") as con:
        con.execute("CREATE TABLE notes (text)")
    return ["runs", "--store", str(tmp / "other.db")]


def runs_store_is_a_file(tmp: Path, frame: pd.DataFrame) -> list[str]:
    (tmp / "notes.txt").write_text("not a database\n")
    return ["runs", "--store", str(tmp / "notes.txt")]


def predict_output(where: str) -> Callable[[Path, pd.DataFrame], list[str]]:
    def argv(tmp: Path, frame: pd.DataFrame) -> list[str]:
        (tmp / "a_file").write_text("not a folder")
        (tmp / "a_folder").mkdir()
        return ["predict", "0123abcd", "--input", str(unlabelled_file(tmp, frame)), "--output", str(tmp / where),
                "--store", str(tmp / "store")]  # fmt: skip

    return argv


# name: (argv builder, words the one error line must hold)
CASES = {
    # 1. silent corruption: ids must be integers that fit int64, written in digits
    "qa_id 1e30": (
        csv_file(mutated(cell("qa_id", 4, "1e30"))),
        ["f.csv", "'qa_id'", "row 4", "'1e30'", "whole number"],
    ),
    "qa_id over int64": (
        csv_file(mutated(cell("qa_id", 4, "9223372036854775808"))),
        ["f.csv", "'qa_id'", "row 4", "64-bit integer range"],
    ),
    "qa_id 3.5": (csv_file(mutated(cell("qa_id", 2, "3.5"))), ["f.csv", "'qa_id'", "row 2", "not an integer"]),
    "qa_id 1e30 in a run": (
        run_with(train=mutated(cell("qa_id", 7, "1e30"))),
        ["f.csv", "'qa_id'", "row 7", "'1e30'"],
    ),
    # 2. what used to be tracebacks
    "config is a folder": (run_with(None), ["config.yaml", "is a folder", "YAML file itself"]),
    "predict --output is a folder (kept)": (predict_output("a_folder"), ["--output", "a_folder", "is a folder"]),
    "predict --output under a file": (predict_output("a_file/out.csv"), ["--output", "a_file", "not a folder"]),
    "runs --store is a text file": (runs_store_is_a_file, ["notes.txt", "no questlab store"]),
    "runs --store is a foreign SQLite db": (foreign_sqlite, ["other.db", "MLflow"]),
    "serve --port 99999": (lambda tmp, frame: ["serve", "--port", "99999"], ["--port", "65535"]),
    # 3. messages that name the real place and the fix
    "latin-1 file": (
        csv_file(latin1),
        [
            "f.csv",
            "'question_title'",
            "row 3",
            "not UTF-8",
            "byte 0xe9",
            "line ",
            "byte offset",
            "re-save the file as UTF-8",
        ],
    ),
    "UTF-16 without a byte-order mark": (csv_file(utf16_without_bom), ["f.csv", "UTF-16", "re-save it as UTF-8"]),
    "damaged gzip": (csv_file(damaged_gzip), ["f.csv.gz", "damaged gzip"]),
    "';'-separated": (
        csv_file(mutated(lambda f: f, sep=";")),
        ["f.csv", "separated by ';'", "save it comma-separated"],
    ),
    "tab-separated": (csv_file(mutated(lambda f: f, sep="\t")), ["f.csv", "separated by tabs", "comma-separated"]),
    "header names a column twice": (
        csv_file(duplicated_header),
        ["f.csv", "column 'answer_relevance'", "twice", "columns 36 and 42"],
    ),
    "short row": (
        csv_file(rewrite_row(5, lambda r: r[:5])),
        ["f.csv", "row 5", "has 5 fields where the header has 41", "line "],
    ),
    "long row": (csv_file(rewrite_row(2, lambda r: [*r, "x"])), ["f.csv", "row 2", "42 fields", "quoted"]),
    "malformed YAML": (
        run_with("name: x\nmodel:\n  name: mean\n  params: {a: 1\n"),
        ["config.yaml", "line 5, column 1"],
    ),
    "config not UTF-8": (run_with(b"name: caf\xe9\nmodel:\n  name: mean\n"), ["config.yaml", "not a UTF-8", "line 1"]),
    "CSV is a folder": (lambda tmp, frame: ["check", str(tmp)], ["is a folder"]),
    # 4. outputs checked before any work
    "--submission under a file": (submission_into("a_file/sub.csv"), ["--submission", "a_file", "not a folder"]),
    "--submission is a folder": (submission_into("a_folder"), ["--submission", "a_folder", "is a folder"]),
    "--fold out of range": (run_with(CONFIG, "--fold", "7"), ["--fold 7", "0..1"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_error_line_exit_2_nothing_written(
    case: str, slice60: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build, words = CASES[case]
    monkeypatch.chdir(tmp_path)  # a default ./questlab-store would be caught by the snapshot
    monkeypatch.delenv("QUESTLAB_STORE", raising=False)
    argv = build(tmp_path, slice60)
    refused(tmp_path, argv, *words)


def test_latin1_error_names_the_real_byte_offset_and_line(slice60: pd.DataFrame, tmp_path: Path) -> None:
    path = latin1(tmp_path, slice60)
    data = path.read_bytes()
    at = data.index("Un caf\xe9".encode("latin-1")) + len("Un caf")
    with pytest.raises(DataError) as info:
        load_train(path)
    line = data.count(b"\n", 0, at) + 1
    assert f"line {line}, byte offset {at}" in str(info.value)
    assert info.value.column == "question_title" and info.value.row == 3


@pytest.mark.parametrize(
    "how",
    [
        {"encoding": "utf-8-sig"},
        {"encoding": "utf-16"},  # with its byte-order mark, as Excel's "Unicode text" writes it
        {"compression": "gzip"},  # read by content, whatever the name says
    ],
)
def test_bom_and_gzip_files_read_like_the_plain_file(how: dict, slice60: pd.DataFrame, tmp_path: Path) -> None:
    plain = load_train(write(tmp_path, slice60, "plain.csv"))
    pd.testing.assert_frame_equal(load_train(write(tmp_path, slice60, "other.csv", **how)), plain)


def test_qa_id_written_as_a_float_is_still_read_as_that_integer(slice60: pd.DataFrame, tmp_path: Path) -> None:
    # Kept behaviour: pandas writes an id column that held a gap as floats ("12.0").
    frame = load_train(write(tmp_path, cell("qa_id", 4, "123456789012.0")(slice60)))
    assert frame["qa_id"].iloc[3] == 123456789012 and frame["qa_id"].dtype == "int64"


def test_run_creates_the_submission_folder_up_front(slice60: pd.DataFrame, tmp_path: Path) -> None:
    # The choice for --submission into a missing folder: create it (as predict --output does),
    # but only once every input has been checked, and before the CV, not after it.
    (tmp_path / "config.yaml").write_text(CONFIG)
    train, test = write(tmp_path, slice60, "train.csv"), unlabelled_file(tmp_path, slice60)
    submission = tmp_path / "new" / "deeper" / "submission.csv"
    argv = ["run", str(tmp_path / "config.yaml"), "--train", str(train), "--test", str(test),
            "--submission", str(submission), "--store", str(tmp_path / "store")]  # fmt: skip
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(submission)) == 5


def test_version_and_predictions_on_stdout(tmp_path: Path) -> None:
    from io import StringIO

    from helpers.runs import test_slice, tiny_run
    from questlab import __version__
    from questlab.store import Store

    assert CliRunner().invoke(app, ["--version"]).output.strip() == f"questlab {__version__}"
    store = Store(tmp_path / "store")
    run_id = tiny_run(store, "tfidf", {"max_features": 2000})
    res = CliRunner().invoke(
        app, ["predict", run_id, "--input", str(test_slice()), "--output", "-", "--store", str(store.root)]
    )
    assert res.exit_code == 0, res.output
    out = pd.read_csv(StringIO(res.stdout))
    assert len(out) == len(pd.read_csv(test_slice())) and out.shape[1] == 31
    assert not (tmp_path / "-").exists()
