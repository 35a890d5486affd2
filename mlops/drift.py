"""Scores of served forecasts once their actual values arrive, and the drift rule that starts
retraining. Standard library only: the drift Lambda's inline code in mlops/infra/monitoring.yaml
is this file, mlops/drift_actions.py and mlops/drift_function.py joined (mlops/inline.py), and
the local loop (``informer-mlops local ingest``) imports it, so both backends decide alike.

Inputs (text, as stored):

- the data: CSV ``date,<columns>``, one row per timestamp, dates increasing;
- a forecast report, the serving handlers' ``INFORMER_OUTPUT=report`` output: CSV
  ``[id,]date,model_version,segment,<var>_actual,<var>,<var>_p<level>...`` or JSON Lines
  ``{"id", "forecast": {column: [values]}}``. Rows with ``segment == "forecast"`` are the served
  forecast; its origin is the last history timestamp (the last ``backtest`` row);
- the version's evaluation (``evaluation.json``): ``regression_metrics.mse.value`` and
  ``schema`` (predicted variables, their train-split ``mean``/``std``, ``seq_len``,
  ``pred_len``, ``season``), written by sagemaker_jobs/evaluate.py.

A forecast is scored once the data holds an actual value for every one of its timestamps; until
then it is not scored. Its rows (:data:`SCORE_FIELDS`): ``step`` 0 for the whole horizon, then
one per horizon step; ``mse``/``mae`` scaled by the version's train-split statistics (the
evaluation's units), ``*_original`` in the data's units; ``coverage`` of the outermost central
interval (nominal ``coverage_nominal``) where the report has quantile columns; the naive
baselines of :mod:`informer.baselines` (seasonal naive: the most recent value one season
before; window mean: the mean of the ``seq_len`` rows up to the origin) and the skill
``1 - MSE / MSE_baseline`` against each.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

BASELINES = ("seasonal_naive", "window_mean")
SCORE_FIELDS = ("version", "origin", "step", "values", "mse", "mae", "mse_original",
                "mae_original", "mse_seasonal_naive", "mse_window_mean", "skill_seasonal_naive",
                "skill_window_mean", "coverage", "coverage_nominal")


class DriftError(ValueError):
    """Unreadable input: one line naming the file or field and what was expected."""


def parse_time(text: str, where: str) -> datetime:
    """A timestamp as a naive datetime (an offset is converted to UTC)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as err:
        raise DriftError(f"{where}: date {text!r} is not a timestamp; expected ISO 8601 "
                         f"(2016-07-01 00:00:00)") from err
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value


def stamp(moment: datetime) -> str:
    """``20161105230000``: a timestamp in names (jobs, files, objects)."""
    return moment.strftime("%Y%m%d%H%M%S")


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


@dataclass
class Series:
    """The data: ``header`` (``date`` first; ``head``: its line as stored), ``dates``
    increasing, ``rows`` the raw fields of each row, ``lines`` each row's text as stored,
    ``index`` date -> row position."""

    head: str
    header: list[str]
    dates: list[datetime]
    rows: list[list[str]]
    lines: list[str]
    index: dict[datetime, int]

    def value(self, row: int, column: str) -> float:
        return _number(self.rows[row][self.header.index(column)])


def read_series(text: str, where: str) -> Series:
    """The data CSV; :class:`DriftError` naming ``where`` and the row when it is unreadable."""
    lines = [line for line in text.splitlines(keepends=True) if line.strip()]
    if not lines:
        raise DriftError(f"{where}: empty; expected a CSV with a header date,<columns>")
    header = next(csv.reader([lines[0]]))
    if not header or header[0].strip() != "date":
        raise DriftError(f"{where}: header {header[:3]}...: expected date as the first column")
    head = lines[0] if lines[0].endswith("\n") else lines[0] + "\n"
    series = Series(head, [h.strip() for h in header], [], [], [], {})
    for number, (line, row) in enumerate(zip(lines[1:], csv.reader(lines[1:])), start=2):
        if len(row) != len(header):
            raise DriftError(f"{where}: line {number}: {len(row)} fields; expected "
                             f"{len(header)} ({','.join(series.header)})")
        moment = parse_time(row[0], f"{where}: line {number}")
        if series.dates and moment <= series.dates[-1]:
            raise DriftError(f"{where}: line {number}: date {row[0]} is not after "
                             f"{series.dates[-1]}; expected increasing dates")
        series.index[moment] = len(series.dates)
        series.dates.append(moment)
        series.rows.append(row)
        series.lines.append(line if line.endswith("\n") else line + "\n")
    return series


@dataclass
class Forecast:
    """One served forecast: ``values[var]`` and ``quantiles[var] = [(level %, values)]`` over
    ``dates`` (``pred_len`` timestamps after ``origin``)."""

    version: str
    origin: datetime
    dates: list[datetime]
    values: dict[str, list[float]]
    quantiles: dict[str, list[tuple[float, list[float]]]]


def _tables(text: str, where: str) -> list[list[dict[str, Any]]]:
    """The report's rows, one list per history (``id``)."""
    if text.lstrip().startswith("{"):  # JSON Lines: {"id", "forecast": {column: [...]}}
        tables = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                columns = json.loads(line)["forecast"]
                size = len(columns["date"])
                tables.append([{k: v[i] for k, v in columns.items()} for i in range(size)])
            except (ValueError, KeyError, TypeError, IndexError) as err:
                raise DriftError(f"{where}: line {number}: expected a JSON object with "
                                 f"forecast.date and the report's columns") from err
        return tables
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        groups.setdefault(row.get("id") or "", []).append(row)
    return list(groups.values())


def read_report(text: str, where: str, version: str | None = None) -> list[Forecast]:
    """The served forecasts of a report (one per history); ``version`` when its rows name
    none. :class:`DriftError` when it has no ``date`` column or no forecast segment."""
    out = []
    for table in _tables(text, where):
        if not table or "date" not in table[0]:
            raise DriftError(f"{where}: no date column; expected the serving handlers' report")
        columns = list(table[0])
        variables = [c for c in columns if f"{c}_actual" in columns]
        segment = "segment" in table[0]
        served = [r for r in table if not segment or r["segment"] == "forecast"]
        past = [parse_time(str(r["date"]), where) for r in table
                if segment and r["segment"] == "backtest"]
        if not served or not variables:
            raise DriftError(f"{where}: no forecast rows with <var> and <var>_actual columns; "
                             f"expected the report (INFORMER_OUTPUT=report)")
        dates = [parse_time(str(r["date"]), where) for r in served]
        origin = max(past) if past else dates[0] - (dates[1] - dates[0]) if len(dates) > 1 \
            else dates[0]
        quantiles = {}
        for var in variables:
            found = []
            for column in columns:
                head, sep, level = column.rpartition("_p")
                if sep and head == var and _number(level) == _number(level):
                    found.append((float(level), [_number(r[column]) for r in served]))
            quantiles[var] = sorted(found)
        out.append(Forecast(str(served[0].get("model_version") or version or ""), origin,
                            dates, {v: [_number(r[v]) for r in served] for v in variables},
                            quantiles))
    return out


@dataclass(frozen=True)
class Schema:
    """What scoring needs from the version's evaluation: the predicted ``variables`` with their
    train-split ``mean``/``std``, ``seq_len``, ``pred_len``, ``season`` (rows; None: none),
    ``input_rows`` (the rows of a transform input: ``seq_len + 7 x pred_len``)."""

    variables: list[str]
    mean: list[float]
    std: list[float]
    seq_len: int
    pred_len: int
    season: int | None = None
    input_rows: int = 0


def schema_of(evaluation: Mapping[str, Any], where: str) -> Schema:
    """``evaluation["schema"]``; :class:`DriftError` naming the field when it is missing."""
    block = evaluation.get("schema")
    try:
        seq_len, pred_len = int(block["seq_len"]), int(block["pred_len"])
        return Schema(list(block["variables"]), [float(v) for v in block["mean"]],
                      [float(v) for v in block["std"]], seq_len, pred_len, block.get("season"),
                      int(block.get("transform_input_rows") or seq_len + 7 * pred_len))
    except (TypeError, KeyError, ValueError) as err:
        raise DriftError(f"{where}: schema: expected variables, mean, std, seq_len and pred_len "
                         f"(evaluation.json of a version registered by this release)") from err


def evaluation_mse(evaluation: Mapping[str, Any]) -> float | None:
    """``regression_metrics.mse.value``: the scaled test MSE the version was registered with."""
    value = ((evaluation.get("regression_metrics") or {}).get("mse") or {}).get("value")
    return float(value) if isinstance(value, (int, float)) else None


def naive_forecasts(history: list[float], pred_len: int, season: int | None
                    ) -> dict[str, list[float]]:
    """``{baseline: [pred_len values]}`` from one variable's history window (oldest first), as
    :func:`informer.baselines.naive_forecasts`; seasonal naive only when the window holds a
    season."""
    out = {"window_mean": [sum(history) / len(history)] * pred_len}
    if season and len(history) >= season:
        out["seasonal_naive"] = [history[len(history) - 1 + h - season * math.ceil(h / season)]
                                 for h in range(1, pred_len + 1)]
    return out


def _row(version: str, origin: datetime, step: int, sums: dict[str, float]) -> dict[str, Any]:
    n = sums["values"]
    row: dict[str, Any] = {"version": version, "origin": origin.isoformat(), "step": step,
                           "values": int(n)}
    for name in ("mse", "mae", "mse_original", "mae_original"):
        row[name] = sums[name] / n
    for name in BASELINES:
        base = sums.get(f"mse_{name}")
        row[f"mse_{name}"] = None if base is None else base / n
        row[f"skill_{name}"] = 1 - sums["mse"] / base if base else None
    hits = sums.get("hits")
    row["coverage"] = None if hits is None else hits / n
    row["coverage_nominal"] = sums.get("nominal")
    return row


def score(forecast: Forecast, series: Series, schema: Schema) -> list[dict[str, Any]] | None:
    """The rows of :data:`SCORE_FIELDS` (step 0, then 1..pred_len), or None while an actual
    value of the forecast is missing from ``series`` (not scored yet)."""
    rows = [series.index.get(d) for d in forecast.dates]
    variables = [v for v in schema.variables if v in forecast.values]
    if None in rows or not variables:
        return None
    actual = {v: [series.value(r, v) for r in rows] for v in variables}
    if any(math.isnan(a) for v in variables for a in actual[v]):
        return None
    at = series.index.get(forecast.origin)
    baselines: dict[str, dict[str, list[float]]] = {}
    if at is not None and at + 1 >= schema.seq_len:
        for v in variables:
            history = [series.value(r, v) for r in range(at + 1 - schema.seq_len, at + 1)]
            baselines[v] = naive_forecasts(history, len(rows), schema.season)
    names = [b for b in BASELINES if baselines and all(b in baselines[v] for v in variables)]
    steps = []
    for h in range(len(rows)):
        sums: dict[str, float] = dict.fromkeys(("values", "mse", "mae", "mse_original",
                                               "mae_original", *(f"mse_{b}" for b in names)), 0.0)
        for v in variables:
            std = schema.std[schema.variables.index(v)]
            a, error = actual[v][h], forecast.values[v][h] - actual[v][h]
            sums["values"] += 1
            sums["mse_original"] += error ** 2
            sums["mae_original"] += abs(error)
            sums["mse"] += (error / std) ** 2
            sums["mae"] += abs(error) / std
            for b in names:
                sums[f"mse_{b}"] += ((baselines[v][b][h] - a) / std) ** 2
            levels = forecast.quantiles.get(v) or []
            if len(levels) >= 2 and levels[0][0] + levels[-1][0] == 100:
                inside = levels[0][1][h] <= a <= levels[-1][1][h]
                sums["hits"] = sums.get("hits", 0.0) + inside
                sums["nominal"] = (levels[-1][0] - levels[0][0]) / 100
        steps.append(sums)
    total = {k: sum(s[k] for s in steps) for k in steps[0] if k != "nominal"}
    if "nominal" in steps[0]:
        total["nominal"] = steps[0]["nominal"]
    return [_row(forecast.version, forecast.origin, step, sums)
            for step, sums in enumerate([total, *steps])]


def scores_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """Score rows as CSV text (header :data:`SCORE_FIELDS`, empty where undefined)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=SCORE_FIELDS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return out.getvalue()


def read_scores_csv(text: str) -> list[dict[str, Any]]:
    """The rows :func:`scores_csv` wrote (numbers as numbers, empty fields as None)."""
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        parsed: dict[str, Any] = {}
        for key, value in row.items():
            if key in ("version", "origin"):
                parsed[key] = value
            elif key in ("step", "values"):
                parsed[key] = int(value)
            else:
                parsed[key] = None if value in ("", None) else float(value)
        rows.append(parsed)
    return rows
