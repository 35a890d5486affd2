"""Softmax attention over per-head tensors ``[batch, heads, length, d_head]``.

Small score matrices (the usual Informer settings, e.g. ``[32, 8, 72, 72]``) are computed
explicitly: on CPU that beats ``scaled_dot_product_attention``, whose flash kernel has a slow
backward pass at these sizes and no dropout. Large ones go through
:func:`~informer.nn.chunked.chunked_attention` (query blocks, recomputed in backward), which keeps
memory linear in length; other devices use ``scaled_dot_product_attention``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from informer.nn.chunked import chunked_attention
from informer.nn.dropout import dropout

# Score matrices up to this many elements are computed explicitly (measured crossover on CPU).
EXPLICIT_MAX_SCORES = 2**22


def causal_mask(l_q: int, l_k: int, device: torch.device) -> torch.Tensor:
    """Boolean ``[l_q, l_k]``, True where query i may NOT see key j (j > i)."""
    return torch.ones(l_q, l_k, dtype=torch.bool, device=device).triu(1)


def _hidden(limit: torch.Tensor, l_k: int) -> torch.Tensor:
    """Boolean ``[..., L_Q, L_K]``: True where key j > ``limit[..., i]``."""
    return torch.arange(l_k, device=limit.device) > limit.unsqueeze(-1)


def attention_weights(q: torch.Tensor, k: torch.Tensor, scale: float, causal: bool = False,
                      limit: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax(q k^T * scale)`` ``[B, H, L_Q, L_K]``; ``causal`` hides keys j > i, ``limit``
    (int ``[B, H, L_Q]``) hides keys j > ``limit[b, h, i]``."""
    scores = (q @ k.transpose(-2, -1)).mul_(scale)
    if causal:
        scores.masked_fill_(causal_mask(q.size(-2), k.size(-2), q.device), -math.inf)
    if limit is not None:
        scores.masked_fill_(_hidden(limit, k.size(-2)), -math.inf)
    return torch.softmax(scores, dim=-1)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
           causal: bool = False, limit: torch.Tensor | None = None, dropout_p: float = 0.0
           ) -> torch.Tensor:
    """``dropout(softmax(q k^T * scale)) v`` ``[B, H, L_Q, d_v]`` (masks as in
    :func:`attention_weights`; dropout on the weights, only where ``dropout_p > 0``)."""
    if q.device.type != "cpu":
        mask = None if limit is None else ~_hidden(limit, k.size(-2))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                              is_causal=causal, scale=scale)
    if q.size(0) * q.size(1) * q.size(-2) * k.size(-2) > EXPLICIT_MAX_SCORES:
        return chunked_attention(q, k, v, scale, dropout_p, causal, limit)
    weights = attention_weights(q, k, scale, causal, limit)
    return (dropout(weights, dropout_p) if dropout_p > 0.0 else weights) @ v
