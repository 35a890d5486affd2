"""Calendar features for the temporal embedding, and pandas frequency handling.

``timeF`` features are floats in [-0.5, 0.5], finest first (minute/59, hour/23, day of
week/6, (day of month-1)/30, (day of year-1)/365, each minus 0.5); frequencies coarser
than a feature drop it. ``fixed``/``learned`` embeddings take integer columns
``[month, day, weekday, hour]`` plus ``minute // 15`` for sub-hourly data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from informer.errors import InformerError

# The reference code's one-letter aliases; pandas >= 2.2 spells several of them differently.
_ALIASES = {"t": "min", "s": "s", "h": "h", "d": "D", "b": "B", "w": "W", "m": "MS",
            "q": "QS", "a": "YS", "y": "YS"}

_O = pd.offsets
# Resolution ranks: 0 second, 1 minute, 2 hour, 3 day, 4 week, 5 month/quarter, 6 year.
_RANKS: list[tuple[tuple[type, ...], int]] = [
    ((_O.Second, _O.Milli, _O.Micro, _O.Nano), 0),
    ((_O.Minute,), 1),
    ((_O.Hour, _O.BusinessHour), 2),
    ((_O.Day, _O.BusinessDay, _O.CustomBusinessDay), 3),
    ((_O.Week, _O.SemiMonthBegin, _O.SemiMonthEnd), 4),
    ((_O.MonthBegin, _O.MonthEnd, _O.BusinessMonthBegin, _O.BusinessMonthEnd,
      _O.QuarterBegin, _O.QuarterEnd, _O.BQuarterBegin, _O.BQuarterEnd), 5),
    ((_O.YearBegin, _O.YearEnd, _O.BYearBegin, _O.BYearEnd), 6),
]


def normalize_freq(freq: str) -> pd.DateOffset:
    """Parse a pandas offset alias (``h``, ``15min``, ``t``, ``d``, ``b``, ``w``...)."""
    alias = _ALIASES.get(str(freq).strip().lower(), str(freq).strip())
    try:
        return to_offset(alias)
    except (ValueError, TypeError) as err:
        raise InformerError(
            f"data.freq: expected a pandas offset alias such as 'h', '15min', 'd', 'w', "
            f"got {freq!r}"
        ) from err


def freq_rank(freq: str) -> int:
    """Coarseness of ``freq``: 0 seconds, 1 minutes, 2 hours, 3 days, 4 weeks, 5 months, 6 years."""
    offset = normalize_freq(freq)
    for classes, rank in _RANKS:
        if isinstance(offset, classes):
            return rank
    raise InformerError(f"data.freq: unsupported frequency {freq!r}")


_TIMEF = {
    "second": lambda i: i.second / 59.0,
    "minute": lambda i: i.minute / 59.0,
    "hour": lambda i: i.hour / 23.0,
    "dayofweek": lambda i: i.day_of_week / 6.0,
    "dayofmonth": lambda i: (i.day - 1) / 30.0,
    "dayofyear": lambda i: (i.day_of_year - 1) / 365.0,
    "weekofyear": lambda i: (i.isocalendar().week.to_numpy() - 1) / 52.0,
    "monthofyear": lambda i: (i.month - 1) / 11.0,
}
_INTEGER = {
    "month": lambda i: i.month,
    "day": lambda i: i.day,
    "weekday": lambda i: i.day_of_week,
    "hour": lambda i: i.hour,
    "minute": lambda i: i.minute // 15,
}

_TIMEF_BY_RANK = {
    0: ["second", "minute", "hour", "dayofweek", "dayofmonth", "dayofyear"],
    1: ["minute", "hour", "dayofweek", "dayofmonth", "dayofyear"],
    2: ["hour", "dayofweek", "dayofmonth", "dayofyear"],
    3: ["dayofweek", "dayofmonth", "dayofyear"],
    4: ["dayofmonth", "weekofyear"],
    5: ["monthofyear"],
    6: ["monthofyear"],
}


def timef_names(freq: str) -> list[str]:
    return list(_TIMEF_BY_RANK[freq_rank(freq)])


def integer_names(freq: str) -> list[str]:
    return ["month", "day", "weekday", "hour"] + (["minute"] if freq_rank(freq) <= 1 else [])


def mark_dim(freq: str, embed: str) -> int:
    """Number of calendar columns for ``embed`` ('timeF' or 'fixed'/'learned') at ``freq``."""
    return len(timef_names(freq) if embed == "timeF" else integer_names(freq))


def time_features(dates: pd.DatetimeIndex | pd.Series, freq: str, embed: str) -> np.ndarray:
    """Calendar features ``[len(dates), mark_dim]``: float32 for timeF, int64 otherwise."""
    index = pd.DatetimeIndex(dates)
    if embed == "timeF":
        cols = [np.asarray(_TIMEF[n](index), dtype=np.float64) - 0.5 for n in timef_names(freq)]
        return np.stack(cols, axis=1).astype(np.float32)
    cols = [np.asarray(_INTEGER[n](index), dtype=np.int64) for n in integer_names(freq)]
    return np.stack(cols, axis=1)


def future_dates(last: pd.Timestamp, freq: str, periods: int) -> pd.DatetimeIndex:
    """The ``periods`` timestamps after ``last`` at ``freq``."""
    offset = normalize_freq(freq)
    return pd.date_range(start=pd.Timestamp(last) + offset, periods=periods, freq=offset)
