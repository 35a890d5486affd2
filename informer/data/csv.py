"""Read and validate an ETT-style CSV: a ``date`` column plus numeric columns."""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from informer.errors import InformerError, first_line
from informer.schema import check_features
from informer.timefeatures import normalize_freq

DATE = "date"


# The model computes in float32: larger magnitudes cannot be represented.
FLOAT32_MAX = float(np.finfo(np.float32).max)
_DELIMITERS = (";", "\t", "|")
_OFFSET = re.compile(r"(?:Z|UTC|GMT|[+-]\d{2}:?\d{2})$", re.IGNORECASE)


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read ``path`` as text (no type guessing), with one clear error for a missing, empty,
    non-UTF-8, wrongly delimited or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise InformerError(f"{path}: file not found")
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InformerError(f"{path}: UTF-16 text; expected a UTF-8 CSV file")
    if not head.strip():
        raise InformerError(f"{path}: empty file; expected a header with 'date' and numeric "
                            f"columns")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
        check_header(header, str(path))  # before pandas, whose error would be less clear
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise _not_utf8(path) from err
    except InformerError:
        raise
    except (ValueError, csv.Error) as err:  # pandas' ParserError and EmptyDataError included
        reason = first_line(err)
        raise InformerError(f"{path}: not a readable CSV file ({reason})") from err


def _not_utf8(path: Path) -> InformerError:
    """Where the first byte that is not UTF-8 is (the decoder's own offset is per chunk)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        return InformerError(f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} on line "
                             f"{line}); expected a UTF-8 CSV file")
    return InformerError(f"{path}: not UTF-8 text; expected a UTF-8 CSV file")


def check_header(header: list[str], where: str) -> None:
    """Comma-separated, unique column names."""
    if len(header) == 1:
        used = [d for d in _DELIMITERS if d in header[0]]
        if used:
            raise InformerError(f"{where}: the header {header[0]!r} is one column; expected "
                                f"comma-separated values, got {used[0]!r}-separated ones")
    seen: set[str] = set()
    duplicates = sorted({name for name in header if name in seen or seen.add(name)})
    if duplicates:
        raise InformerError(f"{where}: duplicate column name(s) {duplicates} in the header; "
                            f"expected unique names")


def _parse_one(value: str) -> pd.Timestamp | None:
    """One timestamp on its own, or ``None``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError):
            return None
    return None if pd.isna(stamp) else stamp


def _date_error(raw: pd.Series, i: int, where: str) -> InformerError:
    """Why line ``i + 2`` did not parse like the first row (line 2)."""
    value, first = str(raw.iloc[i]), str(raw.iloc[0])
    alone, head = _parse_one(value.strip()), _parse_one(first.strip())
    if alone is None or i == 0 or head is None:
        reason = f"cannot parse {value!r} as a timestamp"
    elif (alone.tz is None) != (head.tz is None):
        has = "has" if alone.tz is not None else "has no"
        reason = (f"{value!r} {has} a time zone and line 2 ({first!r}) "
                  f"{'does not' if alone.tz is not None else 'does'}")
    else:
        reason = f"{value!r} is not in the format of line 2 ({first!r})"
    return InformerError(f"{where}: column 'date' line {i + 2}: {reason} (expected one "
                         f"consistent format such as 2016-07-01 00:00:00)")


def _to_datetime(text: pd.Series, where: str) -> pd.Series:
    """Parse with pandas' format inference; offsets that differ (e.g. across a DST change)
    compare as UTC instants, but every timestamp must then carry one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pd.to_datetime(text, errors="coerce")
        except (ValueError, TypeError, OverflowError):  # mixed UTC offsets
            naive = np.flatnonzero(~text.str.contains(_OFFSET).to_numpy(dtype=bool))
            if len(naive):
                i = int(naive[0])
                first = int(np.flatnonzero(text.str.contains(_OFFSET).to_numpy(dtype=bool))[0])
                raise InformerError(
                    f"{where}: column 'date' line {i + 2}: {text.iloc[i]!r} has no time zone "
                    f"and line {first + 2} ({text.iloc[first]!r}) does (expected one "
                    f"consistent format such as 2016-07-01 00:00:00)") from None
            try:
                return pd.to_datetime(text, errors="coerce", utc=True)
            except (ValueError, TypeError, OverflowError) as err:
                raise InformerError(f"{where}: column 'date': cannot parse the timestamps "
                                    f"({str(err).splitlines()[0]}); expected one consistent "
                                    f"format such as 2016-07-01 00:00:00") from err


def parse_dates(raw: pd.Series, where: str) -> pd.DatetimeIndex:
    """Parse the ``date`` column; timestamps must be unique and increasing.

    Line numbers in errors count the CSV header as line 1.
    """
    if pd.api.types.is_datetime64_any_dtype(raw):
        dates = raw
    else:
        raw = raw.astype(str)
        dates = _to_datetime(raw.str.strip(), where)
    bad = np.flatnonzero(dates.isna().to_numpy())
    if len(bad):
        raise _date_error(raw, int(bad[0]), where)
    index = pd.DatetimeIndex(dates)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    steps = np.diff(index.asi8)
    if len(steps) and (steps <= 0).any():
        i = int(np.flatnonzero(steps <= 0)[0]) + 1
        kind = "duplicate timestamp" if steps[i - 1] == 0 else "timestamps out of order:"
        raise InformerError(
            f"{where}: column 'date' line {i + 2}: {kind} {index[i]} after {index[i - 1]} "
            f"(expected strictly increasing timestamps)"
        )
    return index


def check_regular(dates: pd.DatetimeIndex, freq: str, where: str) -> None:
    """Every step must be exactly one ``freq`` (no gaps, no irregular stamps)."""
    if len(dates) < 2:
        return
    offset = normalize_freq(freq)
    expected = dates[:-1] + offset
    wrong = np.flatnonzero(expected != dates[1:])
    if len(wrong):
        i = int(wrong[0]) + 1
        raise InformerError(
            f"{where}: column 'date' line {i + 2}: expected {expected[i - 1]} one step "
            f"({freq!r}) after {dates[i - 1]}, got {dates[i]}"
        )


def parse_numbers(frame: pd.DataFrame, where: str) -> np.ndarray:
    """Numeric ``[rows, columns]`` float64 array; non-numbers, NaN and inf are errors."""
    out = np.empty(frame.shape, dtype=np.float64)
    for j, name in enumerate(frame.columns):
        col = frame[name]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            col = col.astype(str).str.strip()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                numbers = pd.to_numeric(col, errors="coerce")
            except (ValueError, TypeError, OverflowError):  # e.g. objects from a JSON payload
                numbers = pd.Series([_number(v) for v in col], dtype=np.float64)
            values = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.flatnonzero(~(np.abs(values) <= FLOAT32_MAX))
        if len(bad):
            i = int(bad[0])
            text = str(col.iloc[i]).strip()
            if np.isfinite(values[i]):
                raise InformerError(
                    f"{where}: column {name!r} line {i + 2}: expected a finite number within "
                    f"float32 range (|x| <= {FLOAT32_MAX:.4g}), got {text[:40]!r}")
            what = "a missing value" if text.lower() in ("", "nan", "na", "null", "none") else (
                f"{text[:40]!r}")
            raise InformerError(
                f"{where}: column {name!r} line {i + 2}: expected a finite number, got {what}"
            )
        out[:, j] = values
    return out


def _number(value) -> float:
    try:
        return float(value)
    except (ValueError, TypeError, OverflowError):
        return float("nan")


def select_columns(header: list[str], target: str, features: str, where: str) -> list[str]:
    """Model input columns in order: the others, then ``target`` (``[target]`` alone for S)."""
    check_features(features)
    if DATE not in header:
        raise InformerError(
            f"{where}: no 'date' column; expected a header with 'date' and numeric columns, "
            f"got {header}"
        )
    others = [c for c in header if c != DATE]
    if target not in others:
        raise InformerError(f"data.target: {target!r} is not a column of {where}; "
                            f"expected one of {others}")
    if features == "S":
        return [target]
    return [c for c in others if c != target] + [target]


def validate_frame(frame: pd.DataFrame, columns: list[str], where: str,
                   freq: str | None = None) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """``(dates, values [rows, len(columns)])`` of a frame with a ``date`` column."""
    if DATE not in frame.columns:
        raise InformerError(f"{where}: no 'date' column; expected a header with 'date' and "
                            f"numeric columns, got {list(frame.columns)}")
    if frame.empty:
        raise InformerError(f"{where}: no data rows; expected a header and at least one row")
    dates = parse_dates(frame[DATE], where)
    if freq is not None:
        check_regular(dates, freq, where)
    return dates, parse_numbers(frame[columns], where)


def load_series(path: str | Path, target: str = "OT", features: str = "M",
                freq: str | None = None
                ) -> tuple[pd.DatetimeIndex, np.ndarray, list[str], list[str]]:
    """Validated ``(dates, values [rows, columns], columns, all value columns)``; the target
    column comes last in ``columns``."""
    frame = read_csv(path)
    columns = select_columns(list(frame.columns), target, features, str(path))
    dates, values = validate_frame(frame, columns, str(path), freq)
    return dates, values, columns, [c for c in frame.columns if c != DATE]
