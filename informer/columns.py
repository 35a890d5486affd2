"""Names of a quantile forecast's columns: ``<var>_p<level in %>`` (``OT_p10``, ``OT_p2.5``).

Imports nothing heavy, so the dashboard and the plots read the same names the forecaster
writes.
"""

from __future__ import annotations

from collections.abc import Iterable


def quantile_column(var: str, level: float) -> str:
    """``OT_p10`` for the 0.1 quantile of ``OT`` (``OT_p2.5`` for 0.025)."""
    return f"{var}_p{level * 100:g}"


def quantile_columns(columns: Iterable[object], var: str) -> list[tuple[float, str]]:
    """``(level in %, column)`` of ``var``'s quantile columns among ``columns``, by level."""
    found = []
    for column in columns:
        head, sep, level = str(column).rpartition("_p")
        if sep and head == var:
            try:
                found.append((float(level), str(column)))
            except ValueError:
                continue
    return sorted(found)
