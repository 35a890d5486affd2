"""SageMaker PyTorch serving handlers: ``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``.

Copied to ``code/inference.py`` in ``model.tar.gz``. Imports torch, numpy, pandas and the
serving part of ``informer`` only (no Lightning, no Hydra), no S3 calls, no side effects.

Requests (``Content-Type``):

- ``text/csv``: one history, header ``date,<columns>`` and at least ``seq_len`` rows;
- ``application/jsonlines``: one JSON object per line, ``{"id": ..., "history": ...}`` where
  ``history`` is a list of row objects (``{"date": ..., "OT": ...}``) or an object of columns
  (``{"date": [...], "OT": [...]}``); one output line per input line, in order (Batch
  Transform with ``SplitType=Line``, ``BatchStrategy=MultiRecord``, ``AssembleWith=Line``);
- ``application/json``: one such object, a list of them or ``{"instances": [...]}``.

Responses (``Accept``): ``text/csv`` (``date,<predicted columns>``, plus a leading ``id`` column
when the request held records), ``application/jsonlines`` (``{"id", "forecast": {"date": [...],
"<column>": [...]}}`` per line) or ``application/json`` (``{"predictions": [...]}``); by default
the request's own format. Dates are ISO 8601, values in original units. Bodies never end with a
newline (Batch Transform's ``AssembleWith=Line`` adds one per response). Bad payloads raise
:class:`PayloadError` (HTTP 400, 415 or 406).

Output (``INFORMER_OUTPUT`` in the container's environment; the approval Lambda sets it on
every transform job): ``forecast`` (default) answers the forecast alone; ``report`` answers,
per history, a backtest over its latest rows followed by the forecast, one row per timestamp:
``date``, ``model_version`` (``INFORMER_MODEL_VERSION``, when set), ``segment`` (``backtest``
or ``forecast``) and per predicted variable ``<var>_actual`` (the history's value; empty in the
future), ``<var>`` and its quantile columns ``<var>_p<level>``. The backtest forecasts the
history's last ``floor((rows - seq_len) / pred_len)`` horizons from origins ``pred_len`` apart,
so each of its timestamps has one prediction. This is the file QuickSight and the dashboard
read, from the AWS transform and the local one alike.

Precision: ``INFORMER_PRECISION`` in the container's environment (``32-true`` by default,
``bf16-mixed`` or ``auto``). Full precision keeps every answer independent of which other
records share the request; bf16 is ~3x faster on AMX CPUs but its kernels round differently
for different batch shapes (differences around 1e-3 of a standard deviation).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from informer.columns import quantile_columns
from informer.data.csv import check_header
from informer.errors import InformerError, first_line
from informer.forecast import Forecaster
from informer.precision import resolve_precision

CSV, JSONLINES, JSON = "text/csv", "application/jsonlines", "application/json"
_ALIASES = {"text/csv": CSV, "application/csv": CSV, "application/jsonlines": JSONLINES,
            "application/x-jsonlines": JSONLINES, "application/jsonl": JSONLINES,
            "application/x-ndjson": JSONLINES, "application/json": JSON}
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"

try:  # inside the SageMaker inference toolkit its errors set the HTTP status
    from sagemaker_inference.errors import GenericInferenceToolkitError as _ToolkitError
except ImportError:  # pragma: no cover - outside the AWS containers
    class _ToolkitError(Exception):  # noqa: N818
        """Stand-in with the toolkit's ``status_code``/``message``/``phrase`` fields."""


class PayloadError(InformerError, _ToolkitError):
    """A request the model cannot serve; ``status_code`` is the HTTP status to answer."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        Exception.__init__(self, message)
        self.status_code, self.message, self.phrase = status_code, message, message

    def __str__(self) -> str:
        return self.message


@dataclass
class Request:
    kind: str  # content type of the request
    ids: list[Any]
    histories: list[pd.DataFrame]
    labels: list[str] | None = None  # where each history came from: "line 3", "record 2"


@dataclass
class Prediction:
    kind: str
    ids: list[Any]
    forecasts: list[pd.DataFrame]


def media_type(value: str | None, default: str | None = None, what: str = "content type"
               ) -> str:
    """The canonical media type of a Content-Type/Accept header (parameters dropped)."""
    if not value or value.strip() in ("*/*", ""):
        if default:
            return default
        raise PayloadError(f"{what}: missing; expected one of {sorted(set(_ALIASES.values()))}",
                           415)
    for part in value.split(","):  # Accept may list several types
        base = part.split(";")[0].strip().lower()
        if base in _ALIASES:
            return _ALIASES[base]
        if base == "*/*" and default:
            return default
    status = 406 if what == "accept" else 415
    raise PayloadError(f"{what}: {value!r} is not supported; expected one of "
                       f"{sorted(set(_ALIASES.values()))}", status)


PRECISION_ENV = "INFORMER_PRECISION"
OUTPUT_ENV, VERSION_ENV = "INFORMER_OUTPUT", "INFORMER_MODEL_VERSION"
OUTPUTS = ("forecast", "report")


def output_mode() -> str:
    """``INFORMER_OUTPUT``: ``forecast`` (default) or ``report``."""
    mode = os.environ.get(OUTPUT_ENV) or "forecast"
    if mode not in OUTPUTS:
        raise InformerError(f"{OUTPUT_ENV}: expected one of {list(OUTPUTS)}, got {mode!r}")
    return mode


def model_fn(model_dir: str) -> Forecaster:
    """The verified artifact in ``model_dir`` (on the GPU when there is one)."""
    import torch

    from informer.artifact import load_model

    output_mode()  # a bad setting fails the container at start, not at the first request
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = resolve_precision(os.environ.get(PRECISION_ENV, "32-true"), device,
                                  field=PRECISION_ENV)
    return Forecaster(load_model(model_dir, map_location=device), precision=precision)


def _text(body: bytes | bytearray | str) -> str:
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise PayloadError(f"body: not UTF-8 text ({err.reason} at byte {err.start})") \
                from err
    if not body.strip():
        raise PayloadError("body: empty; expected a history with a header and rows")
    return body


def _history(record: Any, where: str, default_id: int) -> tuple[Any, pd.DataFrame]:
    """``(id, frame)`` from one JSON record; the id defaults to the record's position."""
    if not isinstance(record, dict) or "history" not in record:
        raise PayloadError(f"{where}: expected an object with 'history' (and optionally 'id'), "
                           f"got {type(record).__name__}"
                           + (f" with keys {sorted(record)}" if isinstance(record, dict) else ""))
    record_id = record.get("id", default_id)
    if record_id is not None and not isinstance(record_id, (str, int, float)):
        raise PayloadError(f"{where}: id: expected a string or a number, got "
                           f"{type(record_id).__name__}")
    history = record["history"]
    try:
        if isinstance(history, list) and all(isinstance(r, dict) for r in history):
            frame = pd.DataFrame.from_records(history)
        elif isinstance(history, dict) and all(isinstance(v, list) for v in history.values()):
            frame = pd.DataFrame(history)
        else:
            raise ValueError("expected a list of row objects or an object of column lists")
    except (ValueError, TypeError) as err:
        raise PayloadError(f"{where}: history: {first_line(err)}") from err
    if "date" in frame.columns:
        frame["date"] = frame["date"].astype(str)
    return record_id, frame


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        at = f"line {err.lineno} column {err.colno}" if where == "body" else \
            f"column {err.colno}"
        raise PayloadError(f"{where}: not valid JSON ({err.msg} at {at})") from err
    except RecursionError as err:
        raise PayloadError(f"{where}: JSON nested too deeply; expected records of rows or "
                           f"columns") from err


def input_fn(body: bytes | bytearray | str, content_type: str | None) -> Request:
    """Parse a request body into histories (no validation against the model yet)."""
    kind = media_type(content_type)
    text = _text(body)
    if kind == CSV:
        try:
            check_header(next(csv.reader(io.StringIO(text)), []), "body")
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except (ValueError, csv.Error) as err:  # pandas' ParserError, EmptyDataError
            if isinstance(err, InformerError):
                raise PayloadError(str(err)) from err
            raise PayloadError(f"body: not a readable CSV ({first_line(err)})") from err
        return Request(kind, [None], [frame], ["body"])
    if kind == JSONLINES:
        # split on "\n" only: str.splitlines() would also split inside JSON strings that hold
        # U+2028, U+0085 or other characters Python counts as line breaks
        records = [(n, _json(line, f"line {n}"))
                   for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    else:
        payload = _json(text, "body")
        if isinstance(payload, dict) and "instances" in payload:
            payload = payload["instances"]
        payload = payload if isinstance(payload, list) else [payload]
        records = list(enumerate(payload, 1))
    label = "line" if kind == JSONLINES else "record"
    parsed = [_history(record, f"{label} {n}", i) for i, (n, record) in enumerate(records, 1)]
    if not parsed:
        raise PayloadError("body: no records; expected at least one history")
    return Request(kind, [i for i, _ in parsed], [f for _, f in parsed],
                   [f"{label} {n}" for n, _ in records])


def report(model: Forecaster, history: pd.DataFrame, future: pd.DataFrame, where: str
           ) -> pd.DataFrame:
    """The backtest over ``history``'s latest rows, then ``future`` (its forecast), with the
    actual values (see the module docstring)."""
    s = model.schema
    dates, _ = model.validate(history, where)
    windows = (len(dates) - s.seq_len) // s.pred_len
    parts = []
    if windows:
        backtest = model.backtest(history, start=dates[-1 - windows * s.pred_len],
                                  end=dates[-1 - s.pred_len], stride=s.pred_len).frame
        backtest = backtest.drop(columns=["origin", "step"]).assign(segment="backtest")
        for var in s.predicted:  # the history's own values, not their float32 copies
            backtest[f"{var}_actual"] = pd.to_numeric(
                history[var].iloc[-windows * s.pred_len:], errors="coerce").to_numpy()
        parts.append(backtest)
    parts.append(future.assign(segment="forecast"))
    frame = pd.concat(parts, ignore_index=True)
    version = os.environ.get(VERSION_ENV)
    if version:
        frame["model_version"] = version
    columns = ["date", *(["model_version"] if version else []), "segment"]
    for var in s.predicted:
        columns += [f"{var}_actual", var, *(c for _, c in quantile_columns(frame.columns, var))]
    return frame.reindex(columns=columns)


def predict_fn(data: Request, model: Forecaster) -> Prediction:
    """Forecast every history of the request in one batched pass (and, with
    ``INFORMER_OUTPUT=report``, backtest each one's latest rows)."""
    where = "body" if data.kind == CSV else "input"
    try:
        forecasts = model.forecast_many(data.histories, where=where, labels=data.labels)
        if output_mode() == "report":
            labels = data.labels or [where] * len(forecasts)
            forecasts = [report(model, h, f, label if len(forecasts) > 1 else where)
                         for h, f, label in zip(data.histories, forecasts, labels)]
    except PayloadError:
        raise
    except InformerError as err:
        raise PayloadError(str(err)) from err
    return Prediction(data.kind, data.ids, forecasts)


def _columns(frame: pd.DataFrame) -> dict[str, list]:
    """JSON columns: ISO dates, numbers (``null`` where unknown), labels as strings."""
    out: dict[str, list] = {"date": frame["date"].dt.strftime(DATE_FORMAT).tolist()}
    for c in frame.columns.drop("date"):
        if pd.api.types.is_numeric_dtype(frame[c]):
            values = frame[c].astype(float)
            out[c] = [None if pd.isna(v) else v for v in values.tolist()]
        else:
            out[c] = frame[c].astype(str).tolist()
    return out


def output_fn(prediction: Prediction, accept: str | None) -> tuple[str, str]:
    """``(body, content type)`` in the requested format."""
    kind = media_type(accept, default=prediction.kind, what="accept")
    if kind == CSV:
        frames = []
        for i, frame in zip(prediction.ids, prediction.forecasts):
            if prediction.kind != CSV:
                frame = frame.copy()
                frame.insert(0, "id", i)
            frames.append(frame)
        table = pd.concat(frames, ignore_index=True)
        return table.to_csv(index=False, date_format=DATE_FORMAT).rstrip("\n"), CSV
    records = [{"id": i, "forecast": _columns(f)}
               for i, f in zip(prediction.ids, prediction.forecasts)]
    if kind == JSONLINES:
        return "\n".join(json.dumps(r) for r in records), JSONLINES
    return json.dumps({"predictions": records}), JSON
