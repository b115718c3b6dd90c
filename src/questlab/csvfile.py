"""Reading a QUEST CSV file as text, safely: encodings, gzip, delimiters, ragged rows.

Every problem is a ``DataError`` naming the file, the line and what to do; ``questlab.data``
validates the columns and values of what this returns.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pandas as pd

from questlab.errors import DataError
from questlab.schema import ID, TRAIN_COLUMNS

Kind = Literal["train", "test"]


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV as strings; I/O, encoding, layout and parse failures become DataErrors.

    A gzip file is unpacked whatever its name; a UTF-8/16/32 byte-order mark is honoured, else the
    text must be UTF-8. The layout is checked with the csv module first (``_check_layout``).
    """
    path = Path(path)
    text = _read_text(path)
    _check_layout(path, text)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        raise DataError(path, f"not a valid CSV file ({str(exc).strip()})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


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
        raise DataError(path, "the file is empty", hint="expected a header line with qa_id and the input columns")
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
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # pandas reads long texts: so must we
    reader = csv.reader(io.StringIO(text, newline=""))
    line = 1
    for fields in reader:
        if fields and not (len(fields) == 1 and not fields[0].strip()):
            yield line, fields
        line = reader.line_num + 1


def _check_layout(path: Path, text: str) -> None:
    """Separator, repeated header names, row widths: pandas would mangle a name (``x.1``), pad a short row."""
    records = _records(text)
    try:
        header = [c.strip() for c in next(records, (1, []))[1]]
        first_line = text.lstrip("\ufeff\r\n \t").partition("\n")[0]
        for sep, name in ((";", "';'"), ("\t", "tabs")):
            if ID not in header and len({c.strip(' "') for c in first_line.split(sep)} & set(TRAIN_COLUMNS)) > 1:
                raise DataError(
                    path, f"the columns are separated by {name}, not commas", hint="save it comma-separated"
                )
        for i, name in enumerate(header):
            if name in header[:i]:
                where = f"columns {header.index(name) + 1} and {i + 1}"
                raise DataError(path, f"the header names it twice ({where})", column=name, hint="delete or rename one")
        key = header.index(ID) if ID in header else len(header)
        for row, (line, fields) in enumerate(records, start=1):
            if len(fields) != len(header):
                raise DataError(
                    path, f"line {line} has {len(fields)} fields where the header has {len(header)}", row=row,
                    qa_id=fields[key].strip() or None if key < len(fields) else None,
                    hint="a field is missing or the line was cut short" if len(fields) < len(header)
                    else "a text holding a comma must be quoted (check the quotes on that line)",
                )  # fmt: skip
    except csv.Error as exc:
        raise DataError(path, f"not a valid CSV file ({exc})") from None
