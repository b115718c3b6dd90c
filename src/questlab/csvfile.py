"""Reading a task's CSV file (QUEST's by default) as text, safely: encodings, gzip, delimiters, ragged rows.

Every problem is a ``DataError`` naming the file, the line and what to do; ``questlab.data``
validates the columns and values of what this returns. ``read_csv`` reads a whole file;
``iter_csv`` reads it in pieces of a bounded number of rows (any size of file, flat memory).

Parsing is pandas'; the stdlib ``csv`` module walks the records first because pandas (whole or
with ``chunksize``) pads a short row with empty values and renames a repeated header name to
``name.1`` (checked with pandas 2.x): both would pass unseen. ``iter_csv`` hands pandas the exact
text of each piece's records, so its values equal a whole-file read.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Literal

import pandas as pd

from questlab.errors import DataError, UsageError
from questlab.tasks import TaskRef, builtin_task_names, load_task

Kind = Literal["train", "test"]
CHUNK_ROWS = 5_000  # rows per piece of iter_csv: ~10 MB of QUEST text
_HEAD_BYTES = 1 << 16  # what iter_csv looks at before streaming (the same checks as _read_text)


def read_csv(path: str | Path, task: TaskRef = None) -> pd.DataFrame:
    """Read a CSV as strings; I/O, encoding, layout and parse failures become DataErrors.

    A gzip file is unpacked whatever its name; a UTF-8/16/32 byte-order mark is honoured, else the
    text must be UTF-8. The layout is checked with the csv module first (``_check_layout``); the
    task's columns (QUEST's by default) let it recognise a file separated by ';' or tabs.
    """
    path = Path(path)
    text = _read_text(path)
    _check_layout(path, text, task)
    return _parse(path, text)


def _parse(path: Path, text: str) -> pd.DataFrame:
    """Checked CSV text (a header and records) to a frame of strings, header names stripped."""
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        raise DataError(path, f"not a valid CSV file ({str(exc).strip()})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def iter_csv(
    path: str | Path, chunk_rows: int = CHUNK_ROWS, task: TaskRef = None
) -> Iterator[tuple[int, pd.DataFrame]]:
    """``read_csv`` in pieces: frames of at most ``chunk_rows`` rows (strings), each with the 1-based
    number of its first data row, so that memory holds one piece at a time.

    The same checks and the same errors (file, line, row) as ``read_csv``, raised when the reading
    reaches them: a problem in a later piece comes after the earlier pieces were yielded, so in a
    file with several problems the first one in reading order is named. Each piece is parsed by
    pandas from the exact text of its records, so the values equal ``read_csv``'s.
    """
    path = Path(path)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    try:
        head = _head(path)
        encoding = next((enc for bom, enc in _BOMS if head.startswith(bom)), "utf-8")
        if not head.strip() or (encoding == "utf-8" and b"\x00" in head[:4096]):
            # empty, binary or UTF-16 without a mark: the whole-file reader names it
            frame = read_csv(path, task)
            for start in range(0, max(len(frame), 1), chunk_rows):
                yield start + 1, frame.iloc[start : start + chunk_rows].reset_index(drop=True)
            return
        first_line = _first_line(head.decode(encoding, errors="replace"))
        with _unpacked(path) as raw, io.TextIOWrapper(raw, encoding=_CODEC.get(encoding, encoding), newline="") as fh:
            lines = _LineTee(fh)
            records = _checked_records(path, _records_of(lines), first_line, task)
            next(records)  # the header (checked)
            header_text, n_rows, start = lines.take(), 0, 1
            for _ in records:
                n_rows += 1
                if n_rows - start + 1 == chunk_rows:
                    yield start, _parse(path, header_text + lines.take())
                    start = n_rows + 1
            if n_rows >= start or n_rows == 0:  # the rest; a header alone is one empty piece
                yield start, _parse(path, header_text + lines.take())
    except (UnicodeDecodeError, OSError, EOFError, zlib.error):
        _read_text(path)  # reads the whole file again to name the exact place (line, byte offset)
        raise DataError(path, "cannot be read") from None


_CODEC = {"utf-8": "utf-8-sig"}  # a UTF-8 byte-order mark is dropped, as _read_text drops it


def _head(path: Path) -> bytes:
    """The first bytes of the (unpacked) file; a missing file or a folder is named as _read_text names it."""
    if not path.is_file():
        _read_text(path)
    with _unpacked(path) as raw:
        return raw.read(_HEAD_BYTES)


def _unpacked(path: Path) -> io.BufferedIOBase:
    """The file's bytes, gunzipped when the content is gzip (by content, not by name)."""
    with path.open("rb") as fh:
        packed = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if packed else path.open("rb")


class _LineTee:
    """The lines of a text stream, kept until taken: the exact text of the records read so far."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self._taken: list[str] = []

    def __iter__(self) -> _LineTee:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._taken.append(line)
        return line

    def take(self) -> str:
        text = "".join(self._taken)
        self._taken.clear()
        return text


# UTF-16/32 byte-order marks, UTF-32 first (its LE mark starts with UTF-16's). A UTF-8 one is dropped after decoding.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))  # fmt: skip


def _read_text(path: Path) -> str:
    """The file's text: gzip unpacked, a byte-order mark honoured, otherwise strict UTF-8."""
    if not path.exists():
        raise DataError(path, "no such file")
    if path.is_dir():
        raise DataError(path, "is a folder, not a CSV file")
    packed = False
    try:
        data = path.read_bytes()
        packed = data[:2] == b"\x1f\x8b"  # by content, not by name (pandas goes by a .gz suffix)
        data = gzip.decompress(data) if packed else data
    except (OSError, EOFError, zlib.error) as exc:
        what = "a damaged gzip file" if packed else "cannot be read"
        raise DataError(path, f"{what} ({getattr(exc, 'strerror', None) or exc})") from None
    if not data.strip():
        raise DataError(path, "the file is empty", hint="expected a header line with the id and the input columns")
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), "utf-8")
    if encoding == "utf-8" and b"\x00" in data[:4096]:
        if max(data[:4096:2].count(0), data[1:4096:2].count(0)) > min(len(data), 4096) // 4:  # every other byte
            raise DataError(path, "UTF-16 text without a byte-order mark", hint="re-save it as UTF-8")
        raise DataError(path, "not a CSV file (binary content)")
    try:
        return data.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise _decode_error(path, data, exc, encoding, packed) from None


def _decode_error(path: Path, data: bytes, exc: UnicodeDecodeError, encoding: str, packed: bool) -> DataError:
    """Where the first undecodable byte is: line and byte offset, and the row and column it falls in."""
    at, line = exc.start, data.count(b"\n", 0, exc.start) + 1
    where = f"line {line}, byte offset {at}" + (" of the unpacked data" if packed else "")
    if encoding != "utf-8":
        return DataError(path, f"not valid {encoding.upper()} text ({exc.reason} at {where})", hint="save it as UTF-8")
    # The prefix is valid UTF-8; a sentinel marks which record and field the bad byte falls in.
    records = [fields for _, fields in _records(data[:at].decode("utf-8").lstrip("\ufeff") + "\x01")]
    header, row = [c.strip() for c in records[0]], len(records) - 1
    return DataError(
        path,
        f"not UTF-8: byte 0x{data[at]:02x} at {where} ({exc.reason})" + ("" if row else " in the header"),
        column=header[len(records[-1]) - 1] if row and len(records[-1]) <= len(header) else None,
        row=row or None,
        hint="re-save the file as UTF-8 (it may be latin-1 or cp1252: iconv -f cp1252 -t utf-8 IN > OUT)",
    )


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """Each CSV record with the file line it starts on; blank lines skipped, as pandas skips them."""
    return _records_of(io.StringIO(text, newline=""))


def _records_of(lines: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # pandas reads long texts: so must we
    reader = csv.reader(lines)
    line = 1
    for fields in reader:
        if fields and not (len(fields) == 1 and not fields[0].strip()):
            yield line, fields
        line = reader.line_num + 1


def _check_layout(path: Path, text: str, task: TaskRef = None) -> None:
    """Separator, repeated header names, row widths: pandas would mangle a name (``x.1``), pad a short row."""
    for _ in _checked_records(path, _records(text), _first_line(text), task):
        pass


def _first_line(text: str) -> str:
    return text.lstrip("\ufeff\r\n \t").partition("\n")[0]


def _known_columns(task: TaskRef) -> tuple[str, set[str]]:
    """The task's id column, and the columns of the task and of every built-in task (to spot a wrong separator)."""
    resolved = load_task(task)
    known = set(resolved.train_columns)
    for name in builtin_task_names():
        known |= set(load_task(name).train_columns)
    return resolved.id, known


def _checked_records(
    path: Path, records: Iterator[tuple[int, list[str]]], first_line: str, task: TaskRef = None
) -> Iterator[list[str]]:
    """The header, then each data record, each checked as it is reached (``_check_layout``'s rules)."""
    ID, known = _known_columns(task)  # the id column's name, as schema.ID was
    try:
        header = [c.strip() for c in next(records, (1, []))[1]]
        for sep, name in ((";", "';'"), ("\t", "tabs")):
            if ID not in header and len({c.strip(' "') for c in first_line.split(sep)} & known) > 1:
                raise DataError(
                    path, f"the columns are separated by {name}, not commas", hint="save it comma-separated"
                )
        for i, name in enumerate(header):
            if name in header[:i]:
                where = f"columns {header.index(name) + 1} and {i + 1}"
                raise DataError(path, f"the header names it twice ({where})", column=name, hint="delete or rename one")
        yield header
        key = header.index(ID) if ID in header else len(header)
        for row, (line, fields) in enumerate(records, start=1):
            if len(fields) != len(header):
                raise DataError(
                    path, f"line {line} has {len(fields)} fields where the header has {len(header)}", row=row,
                    qa_id=fields[key].strip() or None if key < len(fields) else None,
                    hint="a field is missing or the line was cut short" if len(fields) < len(header)
                    else "a text holding a comma must be quoted (check the quotes on that line)",
                    id_name=ID,
                )  # fmt: skip
            yield fields
    except csv.Error as exc:
        raise DataError(path, f"not a valid CSV file ({exc})") from None


def check_output_file(option: str, path: Path, example: str = "submission.csv") -> None:
    """Refuse, before any work, an output that cannot be written as a file (a folder, or under a
    file, or where nothing may be created). Missing parent folders are fine: writers create them."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder: give a file name such as {path / example}")
    ancestor = next(p for p in path.absolute().parents if p.exists())  # "/" always exists
    if not ancestor.is_dir():
        raise UsageError(f"{option} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK):
        raise UsageError(f"{option} {path}: cannot create files in {ancestor} (permission denied)")


def check_not_an_input(option: str, path: str | Path, inputs: Mapping[str, object]) -> None:
    """Refuse, before any work, an output that is one of the command's input files: writing it
    would destroy the input. ``inputs`` maps each input's option (``--train``) to its path; ``None``
    and what is not a path (a DataFrame) are skipped. The same file is found through a symlink or a
    hard link too (the same device and inode), and a path not created yet by its resolved form.
    """
    for name, given in inputs.items():
        if isinstance(given, str | os.PathLike) and _same_file(Path(path), Path(given)):
            shown = "" if str(given) == str(path) else f" ({given})"
            raise UsageError(
                f"{option} {path} is the {name} file{shown}: it would be overwritten; write the output elsewhere"
            )


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same (st_dev, st_ino), or the same resolved path."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)  # symlinks followed; hard links share the inode
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # an unreadable path or a symlink loop: not provably the same
        return False
