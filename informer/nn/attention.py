"""Full attention and the multi-head attention layer with ``mix`` (ProbSparse: probsparse.py).

Inner attentions take and return per-head tensors ``[batch, heads, length, d_head]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from informer.nn.attend import attend, attention_weights, causal_mask
from informer.nn.dropout import Dropout
from informer.nn.probsparse import ProbAttention

__all__ = ["AttentionLayer", "FullAttention", "ProbAttention", "causal_mask"]


class FullAttention(nn.Module):
    """Canonical scaled dot-product attention, optionally causal (``mask_flag``)."""

    def __init__(self, mask_flag: bool = True, factor: int = 5, scale: float | None = None,
                 attention_dropout: float = 0.1, output_attention: bool = False) -> None:
        super().__init__()
        self.mask_flag = mask_flag
        self.scale = scale
        self.output_attention = output_attention
        self.dropout = Dropout(attention_dropout)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        scale = self.scale or 1.0 / math.sqrt(q.size(-1))
        p = self.dropout.p if self.training else 0.0
        if not self.output_attention:
            return attend(q, k, v, scale, causal=self.mask_flag, dropout_p=p), None
        attn = attention_weights(q, k, scale, causal=self.mask_flag)  # [B, H, L_Q, L_K]
        return self.dropout(attn) @ v, attn


class AttentionLayer(nn.Module):
    """Multi-head projections around an inner attention: ``[B, L, d_model] -> [B, L, d_model]``.

    ``mix=True`` reproduces the paper's decoder trick: the per-head output ``[B, H, L, d]`` is
    read back as ``[B, L, H*d]`` without transposing, which mixes positions across heads.
    """

    def __init__(self, attention: nn.Module, d_model: int, n_heads: int,
                 d_keys: int | None = None, d_values: int | None = None, mix: bool = False
                 ) -> None:
        super().__init__()
        d_keys = d_keys or d_model // n_heads
        d_values = d_values or d_model // n_heads
        self.inner_attention = attention
        self.query_projection = nn.Linear(d_model, d_keys * n_heads)
        self.key_projection = nn.Linear(d_model, d_keys * n_heads)
        self.value_projection = nn.Linear(d_model, d_values * n_heads)
        self.out_projection = nn.Linear(d_values * n_heads, d_model)
        self.n_heads = n_heads
        self.mix = mix

    def _heads(self, x: torch.Tensor, projections: list[nn.Linear]) -> list[torch.Tensor]:
        """Per-head ``[B, H, L, d]`` contiguous projections of ``x [B, L, d_model]``; several
        projections of the same input share one product and one layout copy."""
        b, length, _ = x.shape
        if len(projections) == 1 or len({p.out_features for p in projections}) > 1:
            return [p(x).view(b, length, self.n_heads, -1).transpose(1, 2).contiguous()
                    for p in projections]
        weight = torch.cat([p.weight for p in projections])
        bias = torch.cat([p.bias for p in projections])
        fused = F.linear(x, weight, bias).view(b, length, len(projections), self.n_heads, -1)
        return list(fused.permute(2, 0, 3, 1, 4).contiguous().unbind(0))

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, l_q, _ = queries.shape
        qp, kp, vp = self.query_projection, self.key_projection, self.value_projection
        if queries is keys and keys is values:  # self-attention
            q, k, v = self._heads(queries, [qp, kp, vp])
        elif keys is values:  # cross-attention
            (q,), (k, v) = self._heads(queries, [qp]), self._heads(keys, [kp, vp])
        else:
            (q,), (k,), (v,) = (self._heads(x, [p]) for x, p in
                                ((queries, qp), (keys, kp), (values, vp)))
        out, attn = self.inner_attention(q, k, v)  # [B, H, L_Q, d_v]
        out = out.reshape(b, l_q, -1) if self.mix else out.transpose(1, 2).reshape(b, l_q, -1)
        return self.out_projection(out), attn
