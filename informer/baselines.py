"""Two forecasts that learn nothing, and a model's skill against them.

- seasonal naive: each future step repeats the value one season before it (the most recent
  such value in the history window); the season comes from the data's frequency (a day of
  hourly or 15-minute rows, a week of days, a year of weeks or months);
- window mean: every future step is the history window's mean.

``skill = 1 - MSE_model / MSE_baseline`` (scaled data, per horizon step and over all steps):
above 0 the model beats the baseline, 0 it ties, below 0 the baseline is better.
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from informer.timefeatures import normalize_freq

BASELINES = ("seasonal_naive", "window_mean")
_DAY = pd.Timedelta(days=1)


def season_length(freq: str) -> int | None:
    """Rows per season at ``freq``: a day of sub-daily rows, 7 days, 5 business days, 52 weeks,
    12 months, 4 quarters; ``None`` for yearly or irregular-length offsets."""
    offset = normalize_freq(freq)
    try:
        step = pd.Timedelta(offset)
    except ValueError:
        step = None
    if step is not None and step < _DAY and _DAY % step == pd.Timedelta(0):
        return int(_DAY / step)
    if step == _DAY:
        return 7
    name = type(offset).__name__
    return {"BusinessDay": 5, "Week": 52, "MonthEnd": 12, "MonthBegin": 12,
            "QuarterEnd": 4, "QuarterBegin": 4}.get(name)


def naive_forecasts(x: torch.Tensor, pred_len: int, season: int | None
                    ) -> dict[str, torch.Tensor]:
    """``{name: [N, pred_len, c]}`` from history ``x [N, seq_len, c]`` (the predicted
    variables). Seasonal naive is left out when the window is shorter than one season."""
    seq_len = x.size(1)
    out = {"window_mean": x.mean(dim=1, keepdim=True).expand(-1, pred_len, -1)}
    if season and seq_len >= season:
        steps = torch.arange(1, pred_len + 1)
        index = seq_len - 1 + steps - season * torch.ceil(steps / season).long()
        out["seasonal_naive"] = x[:, index.to(x.device)]
    return out


def step_sums(pred: torch.Tensor, true: torch.Tensor, x: torch.Tensor,
              season: int | None) -> torch.Tensor:
    """float64 ``[1 + len(BASELINES), pred_len + 1]``: squared-error sums per horizon step of the
    model (row 0) and each baseline (NaN rows where it is undefined); last column: the count of
    values per step. ``pred``/``true [N, pred_len, c]``, ``x [N, seq_len, c]``."""
    pred_len = true.size(1)
    true = true.detach().double()
    baselines = naive_forecasts(x.detach().double(), pred_len, season)
    rows = [(pred.detach().double() - true).square().sum(dim=(0, 2))]
    for name in BASELINES:
        rows.append((baselines[name] - true).square().sum(dim=(0, 2)) if name in baselines
                    else torch.full((pred_len,), math.nan, dtype=torch.float64,
                                    device=true.device))
    sums = torch.stack(rows)
    count = torch.full((len(rows), 1), float(true.size(0) * true.size(2)), dtype=torch.float64,
                       device=true.device)
    return torch.cat([sums, count], dim=1)


def skill_metrics(sums: torch.Tensor) -> dict[str, float]:
    """``skill_<baseline>`` over all steps and ``mse_<baseline>`` from :func:`step_sums`
    (summed over batches); a baseline that is undefined is left out."""
    errors = sums[:, :-1].sum(dim=1)
    count = float(sums[0, -1]) * (sums.size(1) - 1)  # values per step x steps
    out = {}
    for i, name in enumerate(BASELINES, start=1):
        if not math.isfinite(float(errors[i])):  # undefined (window shorter than a season)
            continue
        out[f"mse_{name}"] = float(errors[i]) / max(count, 1.0)
        if errors[i] > 0:
            out[f"skill_{name}"] = 1.0 - float(errors[0]) / float(errors[i])
    return out


def skill_by_step(sums: torch.Tensor) -> dict[str, list[float]]:
    """``{"skill_<baseline>": [per horizon step]}`` from :func:`step_sums`."""
    out = {}
    for i, name in enumerate(BASELINES, start=1):
        if math.isfinite(float(sums[i, :-1].sum())):
            out[f"skill_{name}"] = [1.0 - float(m) / float(b) if b > 0 else math.nan
                                    for m, b in zip(sums[0, :-1], sums[i, :-1])]
    return out
