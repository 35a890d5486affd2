"""Quantile forecasts: the pinball loss and interval quality (coverage, weighted quantile loss,
CRPS) accumulated as float64 sums, so that results are exact over a whole split and can be
summed across batches and processes.

``levels`` are the network's quantile levels (``config.quantiles``, increasing); the central
intervals are the pairs ``(levels[i], levels[-1 - i])``: ``[0.1, 0.5, 0.9]`` gives one 80%
interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pinball(outputs: torch.Tensor, true: torch.Tensor, levels: Sequence[float]) -> torch.Tensor:
    """Pinball loss per element and level ``[..., Q]`` of ``outputs [..., Q]`` against
    ``true [...]``: ``max(q (y - y_q), (q - 1) (y - y_q))``."""
    q = torch.as_tensor(levels, dtype=outputs.dtype, device=outputs.device)
    diff = true.unsqueeze(-1) - outputs
    return torch.maximum(q * diff, (q - 1) * diff)


def pinball_loss(outputs: torch.Tensor, true: torch.Tensor,
                 levels: Sequence[float]) -> torch.Tensor:
    """The training loss: mean pinball loss over every element and level."""
    return pinball(outputs.float(), true.float(), levels).mean()


def intervals(levels: Sequence[float]) -> list[tuple[int, int, float]]:
    """``(lower index, upper index, nominal coverage)`` of each central interval."""
    n = len(levels)
    return [(i, n - 1 - i, levels[n - 1 - i] - levels[i]) for i in range(n // 2)]


def n_sums(levels: Sequence[float]) -> int:
    """Length of :func:`quantile_sums`: one pinball sum per level, one hit count per interval,
    ``sum |y|`` and the element count."""
    return len(levels) + len(levels) // 2 + 2


def quantile_sums(outputs: torch.Tensor, true: torch.Tensor,
                  levels: Sequence[float]) -> torch.Tensor:
    """float64 ``[n_sums]`` of sorted quantiles ``outputs [..., Q]`` against ``true [...]``."""
    outputs, true = outputs.detach().double(), true.detach().double()
    loss = pinball(outputs, true, levels).flatten(0, -2).sum(0)
    hits = [((outputs[..., lo] <= true) & (true <= outputs[..., hi])).sum().double()
            for lo, hi, _ in intervals(levels)]
    extra = torch.stack([*hits, true.abs().sum(),
                         torch.tensor(float(true.numel()), dtype=torch.float64,
                                      device=true.device)])
    return torch.cat([loss, extra])


def interval_metrics(sums: torch.Tensor, levels: Sequence[float],
                     suffix: str = "") -> dict[str, float]:
    """From :func:`quantile_sums`: ``coverage_<nominal %>`` per central interval (the share of
    values inside it), ``wql`` (weighted quantile loss: mean over levels of
    ``2 sum(pinball) / sum |y|``) and ``crps`` (its quantile approximation: mean over levels of
    ``2 mean(pinball)``)."""
    q = len(levels)
    values = [float(v) for v in sums]
    loss, hits = values[:q], values[q:q + q // 2]
    total_abs, count = values[-2], max(values[-1], 1.0)
    out = {f"coverage_{round(nominal * 100)}": hit / count
           for hit, (_, _, nominal) in zip(hits, intervals(levels))}
    out["wql"] = sum(2 * s for s in loss) / q / total_abs if total_abs > 0 else float("nan")
    out["crps"] = sum(2 * s for s in loss) / q / count
    return {f"{k}{suffix}": v for k, v in out.items()}
