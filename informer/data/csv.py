"""Read and validate an ETT-style CSV: a ``date`` column plus numeric columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from informer.errors import InformerError
from informer.schema import check_features
from informer.timefeatures import normalize_freq

DATE = "date"


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read ``path`` as text (no type guessing), with one clear error for a missing file."""
    path = Path(path)
    if not path.is_file():
        raise InformerError(f"{path}: file not found")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InformerError(f"{path}: not a readable CSV file ({reason})") from err


def parse_dates(raw: pd.Series, where: str) -> pd.DatetimeIndex:
    """Parse the ``date`` column; timestamps must be unique and increasing.

    Line numbers in errors count the CSV header as line 1.
    """
    if pd.api.types.is_datetime64_any_dtype(raw):
        dates = raw
    else:
        raw = raw.astype(str)
        dates = pd.to_datetime(raw.str.strip(), errors="coerce")
    bad = np.flatnonzero(dates.isna().to_numpy())
    if len(bad):
        i = int(bad[0])
        raise InformerError(
            f"{where}: column 'date' line {i + 2}: cannot parse {raw.iloc[i]!r} as a timestamp "
            f"(expected one consistent format such as 2016-07-01 00:00:00)"
        )
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
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            i = int(bad[0])
            text = str(col.iloc[i]).strip()
            what = "a missing value" if text.lower() in ("", "nan", "na", "null", "none") else (
                f"{text!r}")
            raise InformerError(
                f"{where}: column {name!r} line {i + 2}: expected a finite number, got {what}"
            )
        out[:, j] = values
    return out


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
