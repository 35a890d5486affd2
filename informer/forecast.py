"""Forecasts past the data and rolling-origin backtests from a model artifact alone.

Imports torch, numpy and pandas only, so it runs inside a SageMaker inference container.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from informer import baselines
from informer.artifact import LoadedModel, load_model
from informer.columns import quantile_column
from informer.data.csv import DATE, validate_frame
from informer.data.splits import split_borders
from informer.data.windows import WindowDataset
from informer.errors import InformerError
from informer.nn.model import point_of, quantiles_of
from informer.precision import uses_bf16
from informer.schema import DataSchema
from informer.scores import Scorer
from informer.timefeatures import future_dates, time_features


@dataclass
class Backtest:
    """``frame``: one row per (origin, step): ``origin``, ``date``, ``step`` (1..pred_len), the
    prediction per variable, its quantiles ``<var>_p<level>`` (quantile models) and
    ``<var>_actual`` (NaN where unknown). ``by_step``: MSE/MAE per horizon step, scaled and
    original units, and the skill against the naive baselines. ``metrics``: the same over all
    steps, plus interval coverage, weighted quantile loss and CRPS (quantile models), and
    ``level_jump`` (:func:`level_jump`); skill and interval figures cover the origins whose
    whole future is in the data."""

    frame: pd.DataFrame
    by_step: pd.DataFrame
    metrics: dict[str, float]


class Forecaster:
    """Turns history DataFrames (``date`` + the artifact's columns) into forecasts in original
    units with real future timestamps."""

    def __init__(self, loaded: LoadedModel, batch_size: int = 64, precision: str = "auto",
                 split: dict | None = None) -> None:
        self.loaded = loaded
        self.net = loaded.net.eval()
        self.batch_size = batch_size
        self.bf16 = uses_bf16(precision, next(self.net.parameters()).device.type)
        run_data = (loaded.info.get("run") or {}).get("data") or {}
        self.split = split or {k: run_data[k] for k in ("split", "train_ratio", "test_ratio")
                               if k in run_data}

    @classmethod
    def from_artifact(cls, path: str | Path, **kwargs) -> Forecaster:
        return cls(load_model(path), **kwargs)

    @property
    def schema(self) -> DataSchema:
        return self.loaded.schema

    # input ---------------------------------------------------------------------------------
    def validate(self, df: pd.DataFrame, where: str = "input", min_rows: int | None = None
                 ) -> tuple[pd.DatetimeIndex, np.ndarray]:
        """``(dates, values [rows, len(schema.columns)])`` after the schema checks."""
        s = self.schema
        if not isinstance(df, pd.DataFrame):
            raise InformerError(f"{where}: expected a table with a 'date' column, got "
                                f"{type(df).__name__}")
        if DATE not in df.columns:
            raise InformerError(f"{where}: no 'date' column; expected 'date' and the model's "
                                f"columns {s.columns}, got {[str(c) for c in df.columns]}")
        present = [c for c in df.columns if c != DATE]
        missing = [c for c in s.columns if c not in present]
        if missing:
            raise InformerError(f"{where}: missing column(s) {missing}; the model expects "
                                f"{s.columns}")
        allowed = set(s.input_columns or s.columns)
        extra = [c for c in present if c not in allowed]
        if extra:
            raise InformerError(f"{where}: unexpected column(s) {extra}; the model expects "
                                f"{s.columns}")
        need = s.seq_len if min_rows is None else min_rows
        if len(df) < need:
            raise InformerError(f"{where}: {len(df)} rows; expected at least seq_len = "
                                f"{s.seq_len} rows of history")
        dates, values = validate_frame(df, s.columns, where, s.freq)
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = s.scale(values).astype(np.float32)
        bad = np.argwhere(~np.isfinite(scaled))
        if len(bad):  # representable, but not once standardised with the training statistics
            i, j = (int(k) for k in bad[0])
            raise InformerError(
                f"{where}: column {s.columns[j]!r} line {i + 2}: {values[i, j]:.4g} is out of "
                f"range for this model (expected values near its training data: mean "
                f"{s.mean[j]:.4g}, std {s.std[j]:.4g})")
        return dates, values

    # inference -----------------------------------------------------------------------------
    @torch.inference_mode()
    def _predict(self, dataset: WindowDataset, starts: Sequence[int]) -> np.ndarray:
        """Scaled raw outputs ``[len(starts), pred_len, c_out]`` (``[..., Q]`` with quantiles,
        as the network gives them: unsorted, uncalibrated; float32)."""
        device = next(self.net.parameters()).device
        out = []
        for i in range(0, len(starts), self.batch_size):
            batch = dataset.__getitems__(list(starts[i:i + self.batch_size]))
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
                pred = self.net.predict_outputs(batch["x"], batch["x_mark"], batch["y_mark"])
            out.append(pred.float().cpu().numpy())
        c = self.net.config
        shape = (0, c.pred_len, c.c_out) + ((c.n_outputs,) if c.quantiles else ())
        return np.concatenate(out) if out else np.zeros(shape, np.float32)

    def _columns(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """Original-unit columns of scaled raw outputs ``[N, steps, c_out(, Q)]``: the point
        forecast per variable, then its quantiles (sorted, calibrated where the model is); each
        ``[N, steps]``."""
        s, c = self.schema, self.net.config
        outputs = torch.from_numpy(raw)
        point = s.unscale(point_of(outputs, c).numpy())
        if not c.quantiles:
            return {v: point[..., j] for j, v in enumerate(s.predicted)}
        levels = s.unscale(np.moveaxis(quantiles_of(outputs, c).numpy(), -1, 0))  # [Q, N, ...]
        out = {}
        for j, v in enumerate(s.predicted):
            out[v] = point[..., j]
            out |= {quantile_column(v, q): levels[k, ..., j] for k, q in enumerate(c.quantiles)}
        return out

    def _extended(self, dates: pd.DatetimeIndex, values: np.ndarray
                  ) -> tuple[pd.DatetimeIndex, WindowDataset]:
        """The series plus ``pred_len`` future rows (NaN values) as one window dataset."""
        s = self.schema
        future = future_dates(dates[-1], s.freq, s.pred_len)
        all_dates = dates.append(future)
        scaled = np.concatenate([s.scale(values), np.full((s.pred_len, len(s.columns)), np.nan)])
        marks = time_features(all_dates, s.freq, s.embed)
        return all_dates, WindowDataset(scaled.astype(np.float32), marks, s.seq_len,
                                        s.label_len, s.pred_len)

    def forecast(self, df: pd.DataFrame) -> pd.DataFrame:
        """The next ``pred_len`` steps after the last row: ``date`` + one column per predicted
        variable, in original units."""
        return self.forecast_many([df])[0]

    def forecast_many(self, histories: Sequence[pd.DataFrame], where: str = "input",
                      labels: Sequence[str] | None = None) -> list[pd.DataFrame]:
        """:meth:`forecast` for several histories, predicted in batches. Errors name
        ``where`` (one history), ``labels[n]`` when given, else ``<where> record <n>``."""
        s = self.schema
        items = []
        names = []
        for n, df in enumerate(histories):
            if len(histories) == 1:
                label = where
            else:
                label = labels[n] if labels is not None else f"{where} record {n + 1}"
            names.append(label)
            dates, values = self.validate(df, label)
            dates, values = dates[-s.seq_len:], values[-s.seq_len:]
            all_dates, dataset = self._extended(dates, values)
            items.append((all_dates[-s.pred_len:], dataset.__getitems__([0])))
        if not items:
            return []
        batch = {k: torch.cat([b[k] for _, b in items]) for k in items[0][1]}
        dataset = _Stacked(batch)
        columns = self._columns(self._predict(dataset, range(len(items))))
        finite = np.all([np.isfinite(v).all(axis=1) for v in columns.values()], axis=0)
        broken = np.flatnonzero(~finite)
        if len(broken):  # never answer NaN/inf as a forecast
            raise InformerError(f"{names[int(broken[0])]}: the forecast is not finite; expected "
                                f"a history on the scale of the model's training data")
        return [pd.DataFrame({DATE: dates, **{c: v[i] for c, v in columns.items()}})
                for i, (dates, _) in enumerate(items)]

    def default_origins(self, n_rows: int) -> tuple[int, int]:
        """First and last window start of the test split (all complete windows if unknown)."""
        s = self.schema
        last = n_rows - s.seq_len - s.pred_len
        if self.split:
            try:
                start, end = split_borders(n_rows, s.seq_len, **self.split)["test"]
                return start, end - s.seq_len - s.pred_len
            except InformerError:
                pass
        return 0, last

    def backtest(self, df: pd.DataFrame, start: str | pd.Timestamp | None = None,
                 end: str | pd.Timestamp | None = None, stride: int = 1) -> Backtest:
        """Rolling-origin forecasts for origins (last history timestamps) in ``[start, end]``,
        every ``stride`` rows. Without ``start`` and ``end``: the test split's windows; with
        either, the other bound defaults to the first/last origin with a full history (future
        steps past the data get predictions with NaN actuals)."""
        s = self.schema
        if stride < 1:
            raise InformerError(f"stride: expected a positive integer, got {stride}")
        dates, values = self.validate(df)
        origin_dates = dates[s.seq_len - 1:]
        if start is None and end is None:
            first, last = self.default_origins(len(dates))
        else:  # any origin with a full history, up to the last row
            first, last = 0, len(origin_dates) - 1
        if start is not None:
            first = int(origin_dates.searchsorted(pd.Timestamp(start)))
        if end is not None:
            last = int(origin_dates.searchsorted(pd.Timestamp(end), side="right")) - 1
        starts = list(range(max(first, 0), last + 1, stride))
        if not starts:
            raise InformerError(f"start/end: no forecast origin between {start} and {end}; "
                                f"origins run from {origin_dates[0]} to {origin_dates[-1]}")
        all_dates, dataset = self._extended(dates, values)
        raw = self._predict(dataset, starts)
        idx = np.asarray(starts)[:, None] + s.seq_len + np.arange(s.pred_len)
        cols = [s.columns.index(c) for c in s.predicted]
        true_scaled = dataset.values.numpy().astype(np.float64)[idx][..., cols]
        padded = np.concatenate([values, np.full((s.pred_len, len(s.columns)), np.nan)])
        actual = padded[idx][..., cols]  # exact original values for the output frame
        pred_scaled = point_of(torch.from_numpy(raw), self.net.config).numpy()
        result = _assemble(s, all_dates, idx, pred_scaled.astype(np.float64), true_scaled, actual)
        result.metrics["level_jump"] = level_jump(s.unscale(pred_scaled[:, 0]),
                                                  values[idx[:, 0] - 1][:, cols],
                                                  values[idx[0, 0] - s.seq_len:][:, cols])
        for name, column in self._columns(raw).items():  # quantile columns after the point
            if name not in s.predicted:
                result.frame.insert(result.frame.columns.get_loc(name.rsplit("_p", 1)[0] +
                                                                 "_actual"), name, column.ravel())
        complete = [k for k, start in enumerate(starts) if start + s.seq_len + s.pred_len <=
                    len(values)]
        if complete:
            scorer = Scorer(self.net.config, s)
            sums = scorer.batch(torch.from_numpy(raw[complete]),
                                dataset.__getitems__([starts[k] for k in complete]))
            result.metrics |= {k: v for k, v in scorer.metrics(sums).items()
                               if k.startswith(("coverage_", "wql", "crps", "skill_", "mse_"))
                               and not k.startswith(("mse_original",))}
            for name, values_by_step in baselines.skill_by_step(sums["steps"]).items():
                result.by_step[name] = values_by_step
        return result


def level_jump(first: np.ndarray, last: np.ndarray, span: np.ndarray) -> float:
    """Mean ``|y_hat(t+1) - y(t)|`` over origins and variables, each variable's jump divided by
    its standard deviation over ``span`` (the rows the backtest covers): how far the first
    forecast step lands from the last observation. ``first``/``last``: ``[origins, vars]``."""
    std = np.nanstd(span, axis=0)
    std = np.where(std > 0, std, 1.0)
    return float(np.nanmean(np.abs(first - last) / std))


class _Stacked(WindowDataset):
    """Pre-built windows (one per history) served by index."""

    def __init__(self, batch: dict[str, torch.Tensor]) -> None:  # noqa: D107
        self.batch = batch

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return {k: v[index] for k, v in self.batch.items()}


def _assemble(s: DataSchema, dates: pd.DatetimeIndex, idx: np.ndarray, pred: np.ndarray,
              true: np.ndarray, actual: np.ndarray) -> Backtest:
    """Long frame and per-step metrics from scaled ``pred``/``true`` ``[origins, steps, vars]``
    (float32-scaled targets, as in training and ``informer-eval``) and the original ``actual``."""
    n, steps = idx.shape
    pred_o, true_o = s.unscale(pred), s.unscale(true)
    frame = pd.DataFrame({"origin": np.repeat(dates[idx[:, 0] - 1], steps),
                          DATE: dates[idx.ravel()],
                          "step": np.tile(np.arange(1, steps + 1), n)})
    for j, c in enumerate(s.predicted):
        frame[c] = pred_o[..., j].ravel()
        frame[f"{c}_actual"] = actual[..., j].ravel()
    rows, totals = [], {}
    for space, (p, t) in {"": (pred, true), "_original": (pred_o, true_o)}.items():
        err = p - t
        known = np.isfinite(err)
        sq, ab = np.where(known, err**2, 0.0), np.where(known, np.abs(err), 0.0)
        count = known.sum(axis=(0, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            rows.append(pd.DataFrame({f"mse{space}": sq.sum(axis=(0, 2)) / count,
                                      f"mae{space}": ab.sum(axis=(0, 2)) / count}))
        total = max(int(count.sum()), 1)
        totals |= {f"mse{space}": float(sq.sum() / total), f"mae{space}": float(ab.sum() / total)}
    by_step = pd.concat(rows, axis=1)
    by_step.insert(0, "step", np.arange(1, steps + 1))
    totals["windows"] = float(n)
    return Backtest(frame=frame, by_step=by_step, metrics=totals)
