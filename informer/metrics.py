"""Forecast error metrics (MAE, MSE, RMSE, MAPE, MSPE) accumulated as float64 sums.

Sums make the result independent of batch size and exact across a whole split, in the scaled
space (the paper's convention) and in original units.
"""

from __future__ import annotations

import math

import torch

METRICS = ("mae", "mse", "rmse", "mape", "mspe")
N_SUMS = 5  # |e|, e^2, |e/y|, (e/y)^2, count


def error_sums(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """float64 ``[5]``: sums of |e|, e^2, |e/y|, (e/y)^2 and the element count, e = pred - true."""
    pred, true = pred.detach().double(), true.detach().double()
    err = pred - true
    rel = err / true
    return torch.stack([err.abs().sum(), err.square().sum(), rel.abs().sum(),
                        rel.square().sum(), torch.tensor(float(err.numel()), dtype=torch.float64,
                                                         device=err.device)])


def metrics_from_sums(sums: torch.Tensor, suffix: str = "") -> dict[str, float]:
    """``{"mae": .., "mse": .., "rmse": .., "mape": .., "mspe": ..}`` from :func:`error_sums`."""
    abs_err, sq_err, abs_rel, sq_rel, count = (float(v) for v in sums)
    count = max(count, 1.0)
    mse = sq_err / count
    values = {"mae": abs_err / count, "mse": mse, "rmse": math.sqrt(mse),
              "mape": abs_rel / count, "mspe": sq_rel / count}
    return {f"{k}{suffix}": v for k, v in values.items()}
