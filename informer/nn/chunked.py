"""Memory-light softmax attention with dropout: query blocks, scores recomputed in backward.

``softmax(q k^T * scale)`` with attention dropout ``p`` and optional per-query key limits,
computed over blocks of queries small enough to stay in cache. Nothing of size ``L_Q * L_K`` is
kept for backward (only the dropped positions, about ``p * L_Q * L_K`` indices): the backward
pass recomputes each block's weights, as flash attention does. On CPU this is also faster than
the plain form on long inputs, whose score tensors (hundreds of MB) are mapped fresh by the
allocator at every allocation, one page fault per 4 KiB. Exact math: the same values as
``dropout(softmax(scores)) @ v``.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import FunctionCtx

from informer.nn.dropout import drop_indices

# Score elements per query block (bf16: 4 MiB).
BLOCK_SCORES = 2**21


def blocks_of(bh: int, l_q: int, l_k: int, size: int = 0) -> list[tuple[slice, slice]]:
    """(batch-head slice, query slice) blocks of about ``size`` (default ``BLOCK_SCORES``)
    scores, taking whole query ranges first so each key/value gradient is accumulated over
    few blocks (and batched products have many rows: few-row ones are slow on CPU)."""
    size = size or BLOCK_SCORES
    rows = max(1, min(l_q, size // l_k))
    heads = max(1, size // (rows * l_k))
    return [(slice(h0, h0 + heads), slice(r0, r0 + rows))
            for h0 in range(0, bh, heads) for r0 in range(0, l_q, rows)]


def _block_weights(q: torch.Tensor, k: torch.Tensor, scale: float, heads: slice, rows: slice,
                   limit: torch.Tensor | None) -> torch.Tensor:
    """``softmax(q k^T * scale)`` ``[heads, rows, L_K]`` of one block; key j is hidden from
    query i when ``j > limit[.., i]``."""
    scores = torch.bmm(q[heads, rows], k[heads].transpose(1, 2)).mul_(scale)
    if limit is not None:
        lim = limit[heads if limit.size(0) > 1 else slice(None), rows]  # [heads or 1, rows]
        hidden = torch.arange(k.size(1), device=q.device) > lim.unsqueeze(-1)
        scores.masked_fill_(hidden, -math.inf)
    return torch.softmax(scores, dim=-1)


class _ChunkedAttention(torch.autograd.Function):
    """``q [BH, L_Q, d]``, ``k [BH, L_K, d]``, ``v [BH, L_K, d_v]`` (contiguous, one dtype),
    ``limit [BH or 1, L_Q]`` or None -> ``[BH, L_Q, d_v]``."""

    @staticmethod
    def forward(ctx: FunctionCtx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                scale: float, p: float, limit: torch.Tensor | None) -> torch.Tensor:
        bh, l_q, _ = q.shape
        blocks = blocks_of(bh, l_q, k.size(1))
        keep = 1.0 / (1.0 - p)
        out = torch.empty(bh, l_q, v.size(-1), dtype=v.dtype, device=v.device)
        dropped = []
        for heads, rows in blocks:
            weights = _block_weights(q, k, scale, heads, rows, limit)
            if p > 0.0:
                index = drop_indices(weights.numel(), p, weights.device)
                weights.view(-1).index_fill_(0, index, 0.0)
                dropped.append(index.to(torch.int32))  # kept for backward: half the memory
            out[heads, rows] = torch.bmm(weights, v[heads])
        if p > 0.0:
            out.mul_(keep)
        ctx.save_for_backward(q, k, v, out, *([] if limit is None else [limit]))
        ctx.dropped, ctx.blocks, ctx.scale, ctx.keep, ctx.p = dropped, blocks, scale, keep, p
        return out

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor):  # noqa: ANN205
        q, k, v, out, *rest = ctx.saved_tensors
        limit = rest[0] if rest else None
        scale, p = ctx.scale, ctx.p
        grad = grad.contiguous()
        acc = torch.promote_types(q.dtype, torch.float32)  # accumulate in float32 at least
        # softmax backward: dS = P * (dP - rowsum(dP * P)), and rowsum(dP * P) = rowsum(dO * O)
        delta = (grad.to(acc) * out.to(acc)).sum(-1, keepdim=True)  # [BH, L_Q, 1]
        grad_scaled = grad * ctx.keep if p > 0.0 else grad
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dk_acc = dv_acc = None
        for i, (heads, rows) in enumerate(ctx.blocks):
            g_blk = grad_scaled[heads, rows]
            weights = _block_weights(q, k, scale, heads, rows, limit)  # P
            d_weights = torch.bmm(g_blk, v[heads].transpose(1, 2))  # dP = dO v^T / (1 - p)
            if p > 0.0:  # dropped weights: no gradient through them, and none of P in dv
                index = ctx.dropped[i].long()
                flat_w, flat_d = weights.view(-1), d_weights.view(-1)
                kept_values = flat_w.index_select(0, index)
                flat_w.index_fill_(0, index, 0.0)
                flat_d.index_fill_(0, index, 0.0)
                dv_blk = torch.bmm(weights.transpose(1, 2), g_blk)
                flat_w.index_copy_(0, index, kept_values)
            else:
                dv_blk = torch.bmm(weights.transpose(1, 2), g_blk)
            d_scores = d_weights.sub_(delta[heads, rows].to(d_weights.dtype)).mul_(weights)  # dS
            dq[heads, rows] = torch.bmm(d_scores, k[heads])
            dk_blk = torch.bmm(d_scores.transpose(1, 2), q[heads, rows])
            first = rows.start == 0
            dk_acc = dk_blk.to(acc) if first else dk_acc.add_(dk_blk)
            dv_acc = dv_blk.to(acc) if first else dv_acc.add_(dv_blk)
            if rows.stop >= q.size(1):  # last query block of these heads
                dk[heads], dv[heads] = dk_acc, dv_acc
        return dq.mul_(scale), dk.mul_(scale), dv, None, None, None


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                      dropout_p: float = 0.0, causal: bool = False,
                      limit: torch.Tensor | None = None) -> torch.Tensor:
    """``dropout(softmax(q k^T * scale)) v`` -> ``[B, H, L_Q, d_v]``.

    ``q [B, H, L_Q, d]``, ``k``/``v [B, H, L_K, d]``; ``causal`` hides keys j > i, ``limit``
    (int64 ``[B, H, L_Q]``) hides keys j > limit[b, h, i]. Dropout (``dropout_p``, on the
    attention weights, scaled by ``1 / (1 - p)``) uses torch's global generator.
    """
    b, h, l_q, d = q.shape
    l_k = k.size(-2)
    if causal:
        limit = torch.arange(l_q, device=q.device).expand(1, l_q)
    elif limit is not None:
        limit = limit.reshape(b * h, l_q)
    q3 = q.reshape(b * h, l_q, d)
    k3, v3 = k.reshape(b * h, l_k, d), v.reshape(b * h, l_k, v.size(-1))
    dtype = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    if torch.is_autocast_enabled(q.device.type):
        dtype = torch.get_autocast_dtype(q.device.type)
    q3, k3, v3 = (t.to(dtype).contiguous() for t in (q3, k3, v3))
    with torch.autocast(q.device.type, enabled=False):
        out = _ChunkedAttention.apply(q3, k3, v3, scale, dropout_p, limit)
    return out.view(b, h, l_q, -1)
