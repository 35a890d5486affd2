"""Forecast error metrics (MAE, MSE, RMSE, MAPE, MSPE) accumulated as float64 sums.

Sums make the result independent of batch size and exact across a whole split (and across
processes: every entry is a plain sum), in the scaled space (the paper's convention) and in
original units.

Percentage errors divide by the true value, so values near zero make them meaningless (one
true value of 0.001 can dominate a whole split). In the scaled space they are kept as the paper
computes them, over every value. In original units, pass ``floor`` (:func:`percentage_floor`:
a tenth of each variable's standard deviation): MAPE and MSPE then average only over the true
values with ``|y| >= floor``, and are NaN when there is none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

METRICS = ("mae", "mse", "rmse", "mape", "mspe")
N_SUMS = 6  # |e|, e^2, |e/y|, (e/y)^2 (over the safe values), count, count of safe values
SAFE_FRACTION = 0.1  # a true value is a safe denominator from this fraction of its std on


def percentage_floor(std: Sequence[float], device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-variable smallest ``|y|`` counted in MAPE/MSPE: ``SAFE_FRACTION * std``."""
    return SAFE_FRACTION * torch.tensor(list(std), dtype=torch.float64, device=device).abs()


def error_sums(pred: torch.Tensor, true: torch.Tensor,
               floor: torch.Tensor | float | None = None) -> torch.Tensor:
    """float64 ``[6]``: sums of |e|, e^2, |e/y|, (e/y)^2, the element count and the count of
    elements whose ``|y| >= floor`` (the percentage errors' sums cover those only; ``floor``
    broadcasts over the last, variable, dimension; ``None``: every element), e = pred - true."""
    pred, true = pred.detach().double(), true.detach().double()
    err = pred - true
    if floor is None:
        safe = torch.ones_like(true, dtype=torch.bool)
    else:
        floor = torch.as_tensor(floor, dtype=torch.float64, device=true.device)
        safe = true.abs() >= floor
    rel = torch.where(safe, err / torch.where(safe, true, torch.ones_like(true)),
                      torch.zeros_like(true))
    count = float(err.numel())
    return torch.stack([err.abs().sum(), err.square().sum(), rel.abs().sum(),
                        rel.square().sum(),
                        torch.tensor(count, dtype=torch.float64, device=err.device),
                        safe.sum().to(torch.float64)])


def metrics_from_sums(sums: torch.Tensor, suffix: str = "") -> dict[str, float]:
    """``{"mae": .., "mse": .., "rmse": .., "mape": .., "mspe": ..}`` from :func:`error_sums`."""
    abs_err, sq_err, abs_rel, sq_rel, count, safe = (float(v) for v in sums)
    count = max(count, 1.0)
    mse = sq_err / count
    values = {"mae": abs_err / count, "mse": mse, "rmse": math.sqrt(mse),
              "mape": abs_rel / safe if safe else math.nan,
              "mspe": sq_rel / safe if safe else math.nan}
    return {f"{k}{suffix}": v for k, v in values.items()}
