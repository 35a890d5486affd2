"""PNG plots of forecasts and backtests (matplotlib figures without pyplot: no backend is
chosen or changed, so importing it leaves a notebook's inline plots alone). One figure per file."""

from __future__ import annotations

from pathlib import Path

import matplotlib.dates as mdates
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from informer.columns import quantile_columns
from informer.data.csv import DATE

MAX_PANELS = 8


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)
    return path


def _date_axis(ax: Axes) -> None:
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(alpha=0.3)


def _band(ax: Axes, frame: pd.DataFrame, dates: pd.Series, var: str) -> None:
    """Shade the outermost quantile interval of ``var``, if the frame has one."""
    levels = quantile_columns(frame.columns, var)
    if len(levels) >= 2:
        (low, lo), (high, hi) = levels[0], levels[-1]
        ax.fill_between(dates, frame[lo].astype(float), frame[hi].astype(float),
                        color="tab:orange", alpha=0.25, lw=0,
                        label=f"p{low:g}-p{high:g} interval")


def plot_forecast(history: pd.DataFrame, forecast: pd.DataFrame, path: str | Path,
                  history_steps: int | None = None) -> Path:
    """Recent history and the forecast (with its outermost quantile interval as a band), one
    panel per predicted variable."""
    levels = {c for v in forecast.columns for _, c in quantile_columns(forecast.columns, v)}
    variables = [c for c in forecast.columns if c != DATE and c not in levels][:MAX_PANELS]
    tail = history.tail(history_steps or 4 * len(forecast))
    fig = Figure(figsize=(10, 2.4 * len(variables)))
    axes = fig.subplots(len(variables), 1, sharex=True, squeeze=False)
    hist_dates = pd.to_datetime(tail[DATE])
    for ax, var in zip(axes[:, 0], variables):
        ax.plot(hist_dates, tail[var].astype(float), color="tab:blue", label="history")
        _band(ax, forecast, forecast[DATE], var)
        ax.plot(forecast[DATE], forecast[var], color="tab:orange", label="forecast")
        ax.axvline(hist_dates.iloc[-1], color="grey", ls="--", lw=0.8)
        ax.set_ylabel(var)
        _date_axis(ax)
    axes[0, 0].legend(loc="upper left")
    axes[0, 0].set_title(f"Forecast of the next {len(forecast)} steps")
    return _save(fig, path)


def plot_backtest_origins(frame: pd.DataFrame, path: str | Path, variable: str,
                          n_origins: int = 4) -> Path:
    """Actual vs predicted ``variable`` for ``n_origins`` origins spread over the backtest."""
    origins = frame["origin"].drop_duplicates()
    pick = origins.iloc[[round(i * (len(origins) - 1) / max(n_origins - 1, 1))
                         for i in range(min(n_origins, len(origins)))]]
    fig = Figure(figsize=(10, 2.4 * len(pick)))
    axes = fig.subplots(len(pick), 1, squeeze=False)
    for ax, origin in zip(axes[:, 0], pick):
        rows = frame[frame["origin"] == origin]
        ax.plot(rows[DATE], rows[f"{variable}_actual"], color="tab:blue", label="actual")
        _band(ax, rows, rows[DATE], variable)
        ax.plot(rows[DATE], rows[variable], color="tab:orange", label="predicted")
        ax.set_title(f"origin {pd.Timestamp(origin):%Y-%m-%d %H:%M}", fontsize=9)
        ax.set_ylabel(variable)
        _date_axis(ax)
    axes[0, 0].legend(loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


def plot_error_by_step(by_step: pd.DataFrame, path: str | Path) -> Path:
    """MSE and MAE (original units) against the horizon step."""
    fig = Figure(figsize=(8, 3.5))
    ax = fig.subplots()
    for name in ("mse_original", "mae_original"):
        ax.plot(by_step["step"], by_step[name], marker="o", ms=3, label=name)
    ax.set_xlabel("horizon step")
    ax.set_ylabel("error (original units)")
    ax.set_title("Error by horizon step")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_backtest(frame: pd.DataFrame, by_step: pd.DataFrame, out_dir: str | Path, variable: str,
                  n_origins: int = 4, prefix: str = "backtest") -> list[Path]:
    """Both backtest figures into ``out_dir``."""
    out_dir = Path(out_dir)
    return [plot_backtest_origins(frame, out_dir / f"{prefix}_origins.png", variable, n_origins),
            plot_error_by_step(by_step, out_dir / f"{prefix}_error_by_step.png")]
