"""Time-major convolution and pooling helpers for ``[batch, length, channels]`` tensors.

The network keeps activations as ``[B, L, C]``; ``nn.Conv1d`` and ``nn.MaxPool1d`` want
``[B, C, L]``, which costs a transpose copy on each side (and a padded copy for circular
padding). These helpers compute the same results as matrix products and a channels-last pool.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Below this many input channels the (3x larger) unfolded input is cheaper than the output taps.
UNFOLD_MAX_CHANNELS = 64


def circular_conv3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """``Conv1d(kernel_size=3, padding=1, padding_mode='circular')`` on time-major input.

    ``x [B, L, C_in]``, ``weight [C_out, C_in, 3]`` (as ``nn.Conv1d.weight``) ``-> [B, L, C_out]``:
    ``y_t = W_0 x_{t-1} + W_1 x_t + W_2 x_{t+1} + b`` with circular time indices.
    """
    b, length, c_in = x.shape
    c_out = weight.size(0)
    if c_in < UNFOLD_MAX_CHANNELS:  # unfold the (small) input: one product with K = 3 C_in
        padded = torch.cat([x[:, -1:], x, x[:, :1]], dim=1)  # [B, L + 2, C_in]
        windows = padded.unfold(1, 3, 1).reshape(b, length, c_in * 3)  # [B, L, C_in * 3]
        return F.linear(windows, weight.reshape(c_out, c_in * 3), bias)
    # one product for all taps, then add the taps shifted in time: [B, L, 3, C_out]
    taps = F.linear(x, weight.permute(2, 0, 1).reshape(3 * c_out, c_in)).view(b, length, 3, c_out)
    before, now, after = taps.unbind(2)  # unbind: one stacked gradient, not three zero-filled
    out = now + before.roll(1, dims=1) + after.roll(-1, dims=1)
    return out if bias is None else out + bias.to(out.dtype)  # bf16 stays bf16 under autocast


def max_pool_time(x: torch.Tensor, kernel_size: int = 3, stride: int = 2, padding: int = 1
                  ) -> torch.Tensor:
    """``MaxPool1d`` over time of ``x [B, L, C]`` -> ``[B, L_out, C]`` (no transposed copies:
    a ``[B, C, 1, L]`` channels-last view has exactly the memory layout of ``x``)."""
    pooled = F.max_pool2d(x.transpose(1, 2).unsqueeze(2), (1, kernel_size), (1, stride),
                          (0, padding))
    return pooled.squeeze(2).transpose(1, 2)
