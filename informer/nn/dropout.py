"""Dropout that draws only the dropped positions, never a per-element mask.

``nn.Dropout`` on CPU draws one Bernoulli sample per element and then multiplies by a mask the
size of the input; at the paper's dropout rate (0.05) that dominates a training step. Here the
gaps between dropped elements are drawn from a geometric distribution (inverted float32
uniforms from torch's seeded generator), which is the same i.i.d. Bernoulli(p) process over the
flat tensor (up to the 2^-24 resolution of the uniforms), with about ``p * n`` random draws
instead of ``n``. The kept elements are
scaled by ``1 / (1 - p)`` in the compute precision (no rounded bf16 scale), the dropped ones are
zeroed with one ``index_fill_``; backward reuses the saved positions. Fused variants apply the
dropout inside a residual sum and after an activation without extra passes.

Other devices use the stock fused kernels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import FunctionCtx


def _gaps(count: int, p: float, device: torch.device | None) -> torch.Tensor:
    """``count`` i.i.d. geometric(p) gaps ``[count]`` (int64, >= 1) by inversion of uniforms
    (2-3x cheaper than ``Tensor.geometric_`` on CPU)."""
    uniform = torch.rand(count, device=device)
    gaps = torch.log1p(-uniform).mul_(1.0 / math.log1p(-p)).floor_().add_(1.0)
    return gaps.to(torch.int64)


def drop_indices(n: int, p: float, device: torch.device | None = None) -> torch.Tensor:
    """Sorted flat indices ``[k]`` (int64) of the elements dropped from ``n``, each with
    probability ``p`` independently (``k ~ Binomial(n, p)``)."""
    if n == 0 or p <= 0.0:
        return torch.empty(0, dtype=torch.int64, device=device)
    expected = n * p
    chunk = int(expected + 6.0 * math.sqrt(expected) + 16)
    # position of the j-th drop (1-based) = sum of j geometric(p) gaps
    ends = _gaps(chunk, p, device).cumsum_(0)
    while int(ends[-1]) < n:  # rarely more than one round
        ends = torch.cat([ends, _gaps(chunk, p, device).cumsum_(0).add_(ends[-1])])
    count = int(torch.searchsorted(ends, n, right=True))
    return ends[:count].sub_(1)


def _scaled(x: torch.Tensor, scale: float, index: torch.Tensor) -> torch.Tensor:
    """Contiguous ``x * scale`` with the flat positions ``index`` set to zero."""
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    torch.mul(x, scale, out=out)
    out.view(-1).index_fill_(0, index, 0.0)
    return out


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, p: float) -> torch.Tensor:
        index = drop_indices(x.numel(), p, x.device)
        ctx.save_for_backward(index)
        ctx.scale = 1.0 / (1.0 - p)
        return _scaled(x, ctx.scale, index)

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (index,) = ctx.saved_tensors
        return _scaled(grad, ctx.scale, index), None


class _DropoutAdd(torch.autograd.Function):
    """``x + dropout(y)`` in one pass: ``x + y / (1 - p)``, then dropped positions take ``x``."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, y: torch.Tensor, p: float) -> torch.Tensor:
        index = drop_indices(y.numel(), p, y.device)
        ctx.save_for_backward(index)
        ctx.scale = 1.0 / (1.0 - p)
        ctx.y_dtype = y.dtype
        dtype = torch.promote_types(x.dtype, y.dtype)
        out = torch.empty(x.shape, dtype=dtype, device=x.device)
        torch.add(x, y, alpha=ctx.scale, out=out)
        flat_x = x.reshape(-1)
        out.view(-1).index_copy_(0, index, flat_x.index_select(0, index).to(dtype))
        return out

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        (index,) = ctx.saved_tensors
        return grad, _scaled(grad, ctx.scale, index).to(ctx.y_dtype), None


class _ActivationDropout(torch.autograd.Function):
    """``dropout(activation(h))`` (GELU or ReLU); ``scaled=False`` leaves out the ``1 / (1 - p)``
    factor for the caller to fold into the next layer's weight (then no dense pass at all)."""

    @staticmethod
    def forward(ctx: FunctionCtx, h: torch.Tensor, p: float, gelu: bool, scaled: bool
                ) -> torch.Tensor:
        out = (F.gelu(h) if gelu else F.relu(h)).contiguous()
        index = drop_indices(out.numel(), p, out.device)
        ctx.scale = 1.0 / (1.0 - p) if scaled else 1.0
        if scaled:
            out.mul_(ctx.scale)
        out.view(-1).index_fill_(0, index, 0.0)
        ctx.save_for_backward(h, index)
        ctx.gelu = gelu
        return out

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        h, index = ctx.saved_tensors
        if ctx.gelu:
            grad_h = torch.ops.aten.gelu_backward(grad, h)
        else:
            grad_h = torch.ops.aten.threshold_backward(grad, h, 0)
        if ctx.scale != 1.0:
            grad_h.mul_(ctx.scale)
        grad_h = grad_h.contiguous()
        grad_h.view(-1).index_fill_(0, index, 0.0)
        return grad_h, None, None, None


def _fast(x: torch.Tensor, p: float) -> bool:
    """Sparse-position dropout: CPU, eager (under ``torch.compile`` the stock dropout fuses)."""
    return x.device.type == "cpu" and 0.0 < p < 1.0 and not torch.compiler.is_compiling()


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``x`` with elements zeroed with probability ``p`` and the rest scaled by ``1 / (1 - p)``."""
    if not training or p == 0.0:
        return x
    if not _fast(x, p):
        return F.dropout(x, p, training=True)
    return _Dropout.apply(x, p)


def dropout_add(x: torch.Tensor, y: torch.Tensor, p: float, training: bool = True
                ) -> torch.Tensor:
    """Residual ``x + dropout(y)`` for same-shape ``x``, ``y`` (e.g. ``[B, L, d_model]``)."""
    if not training or p == 0.0:
        return x + y
    if not _fast(y, p) or x.shape != y.shape:
        return x + dropout(y, p, training)
    return _DropoutAdd.apply(x, y, p)


def activation_dropout(h: torch.Tensor, p: float, training: bool = True,
                       activation: str = "gelu", scaled: bool = True) -> torch.Tensor:
    """``dropout(gelu(h))`` (or ReLU), e.g. on the feed-forward hidden ``[B, L, d_ff]``.

    ``scaled=False`` returns the kept elements unscaled: the caller multiplies by ``1 / (1 - p)``
    later (e.g. folded into the next linear layer's weight, a tensor of ``d_ff * d_model``
    elements instead of ``B * L * d_ff``).
    """
    act = F.gelu if activation == "gelu" else F.relu
    if not training or p == 0.0:
        return act(h)
    if not _fast(h, p):
        out = dropout(act(h), p, training)
        return out if scaled else out * (1.0 - p)
    return _ActivationDropout.apply(h, p, activation == "gelu", scaled)


class Dropout(nn.Dropout):
    """Drop-in ``nn.Dropout`` using :func:`dropout` (same ``p``, same state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x + self(y)`` fused (see :func:`dropout_add`)."""
        return dropout_add(x, y, self.p, self.training)
