"""Reversible instance normalisation (RevIN, Kim et al., ICLR 2022).

Each input window is normalised by its own per-channel mean and standard deviation (then a
learnable per-channel affine map); the network's output is mapped back with the same
statistics, so level and scale shifts between train and test periods do not have to be learned.
"""

from __future__ import annotations

import torch
from torch import nn


class RevIN(nn.Module):
    """``normalize(x [B, L, C]) -> ([B, L, C], stats)``; ``denormalize(y [B, H, c_out], stats)``.

    The output channels are the last ``c_out`` input channels (all of them for ``M``, the
    target for ``S`` and ``MS``, which the data layer puts last).
    """

    def __init__(self, channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Statistics over time, per window and channel (``[B, 1, C]`` each), in float32."""
        xf = x.float()
        mean = xf.mean(dim=1, keepdim=True).detach()
        std = torch.sqrt(xf.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        return self.scale(x, (mean, std)), (mean, std)

    def scale(self, x: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Normalise ``x [B, L, C]`` with statistics from :meth:`normalize`."""
        mean, std = stats
        out = (x.float() - mean) / std
        if self.weight is not None:
            out = out * self.weight + self.bias
        return out.to(x.dtype)

    def denormalize(self, y: torch.Tensor,
                    stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Map ``y [B, H, c_out]`` (or ``[B, H, c_out, Q]``, quantiles) back to the input scale
        of the last ``c_out`` channels."""
        extra = y.dim() - 3  # trailing quantile axis
        c_out = y.size(2)
        mean, std = (s[..., -c_out:].reshape(*s.shape[:2], c_out, *[1] * extra) for s in stats)
        out = y.float()
        if self.weight is not None:
            weight, bias = (p[-c_out:].reshape(c_out, *[1] * extra)
                            for p in (self.weight, self.bias))
            out = (out - bias) / (weight + self.eps * self.eps)
        return (out * std + mean).to(y.dtype)
