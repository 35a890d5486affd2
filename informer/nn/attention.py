"""Full and ProbSparse self-attention, and the multi-head attention layer with ``mix``.

Inner attentions take and return per-head tensors ``[batch, heads, length, d_head]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from informer.nn.dropout import Dropout


def causal_mask(l_q: int, l_k: int, device: torch.device) -> torch.Tensor:
    """Boolean ``[l_q, l_k]``, True where query i may NOT see key j (j > i)."""
    return torch.ones(l_q, l_k, dtype=torch.bool, device=device).triu(1)


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
        if not self.output_attention:
            p = self.dropout.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=self.mask_flag,
                                                 scale=scale)
            return out, None
        scores = (q @ k.transpose(-2, -1)) * scale
        if self.mask_flag:
            scores = scores.masked_fill(causal_mask(q.size(-2), k.size(-2), q.device), -math.inf)
        attn = torch.softmax(scores, dim=-1)
        return self.dropout(attn) @ v, attn


class ProbAttention(nn.Module):
    """ProbSparse self-attention (Informer, sec. 3.1).

    ``factor * ceil(ln L_K)`` keys are sampled per query to score each query's sparsity
    ``M = max_j(q k_j) - sum_j(q k_j) / L_K``; the top ``factor * ceil(ln L_Q)`` queries attend to
    all keys, the lazy ones output ``mean(V)``. With ``mask_flag`` (decoder self-attention) the
    layer is causal: query t samples keys from ``[0, t]``, is active when its score ranks in the
    top ``u`` among queries ``0..t``, and lazy queries output ``cumsum(V)``; so outputs at t never
    depend on inputs after t. Training samples keys with torch's global RNG (reproducible under
    a seed); in eval mode a generator seeded with ``eval_seed`` makes every forecast
    deterministic and independent of batch composition.
    """

    eval_seed = 0

    def __init__(self, mask_flag: bool = True, factor: int = 5, scale: float | None = None,
                 attention_dropout: float = 0.1, output_attention: bool = False) -> None:
        super().__init__()
        self.mask_flag = mask_flag
        self.factor = factor
        self.scale = scale
        self.output_attention = output_attention

    def _sample_counts(self, l_q: int, l_k: int) -> tuple[int, int]:
        n_sample = min(self.factor * math.ceil(math.log(l_k)), l_k) if l_k > 1 else l_k
        n_top = min(self.factor * math.ceil(math.log(l_q)), l_q) if l_q > 1 else l_q
        return max(n_sample, 1), max(n_top, 1)

    def _sampled_scores(self, q: torch.Tensor, k: torch.Tensor, n_sample: int
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores of each query against its sampled keys ``[B, H, L_Q, n_sample]``.

        Also returns the full ``q k^T`` when computing it was cheaper than gathering keys.
        """
        l_q, l_k, d = q.size(-2), k.size(-2), q.size(-1)
        gen = None
        if not self.training:
            gen = torch.Generator(device=q.device).manual_seed(self.eval_seed)
        if self.mask_flag:  # query t samples uniformly from keys 0..t
            span = torch.arange(1, l_q + 1, device=q.device, dtype=torch.float32).unsqueeze(1)
            index = (torch.rand(l_q, n_sample, device=q.device, generator=gen) * span).long()
        else:
            index = torch.randint(l_k, (l_q, n_sample), device=q.device, generator=gen)
        if l_k <= n_sample * d:  # one matmul + gather beats gathering [L_Q, n_sample, d] keys
            scores = q @ k.transpose(-2, -1)
            return scores.gather(-1, index.expand(*scores.shape[:2], l_q, n_sample)), scores
        k_sample = k[:, :, index]  # [B, H, L_Q, n_sample, d]
        return (q.unsqueeze(-2) @ k_sample.transpose(-2, -1)).squeeze(-2), None

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, h, l_q, d = q.shape
        l_k = k.size(-2)
        if self.mask_flag and l_q != l_k:
            raise ValueError(f"masked ProbAttention needs L_Q == L_K, got {l_q} and {l_k}")
        scale = self.scale or 1.0 / math.sqrt(d)
        n_sample, n_top = self._sample_counts(l_q, l_k)
        sampled, scores = self._sampled_scores(q, k, n_sample)
        sparsity = sampled.amax(-1) - sampled.sum(-1) / l_k  # [B, H, L_Q]
        if self.mask_flag:
            return self._causal_context(q, k, v, sparsity, n_top, scale)
        top = sparsity.topk(n_top, dim=-1, sorted=False).indices  # [B, H, u]
        if scores is not None:
            top_scores = scores.gather(-2, top.unsqueeze(-1).expand(b, h, n_top, l_k))
        else:
            q_top = q.gather(-2, top.unsqueeze(-1).expand(b, h, n_top, d))
            top_scores = q_top @ k.transpose(-2, -1)
        attn = torch.softmax(top_scores * scale, dim=-1)  # [B, H, u, L_K]
        context = v.mean(-2, keepdim=True).expand(b, h, l_q, v.size(-1))
        context = context.scatter(-2, top.unsqueeze(-1).expand(b, h, n_top, v.size(-1)), attn @ v)
        if not self.output_attention:
            return context, None
        full = torch.full((b, h, l_q, l_k), 1.0 / l_k, dtype=attn.dtype, device=attn.device)
        return context, full.scatter(-2, top.unsqueeze(-1).expand(b, h, n_top, l_k), attn)

    def _causal_context(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        sparsity: torch.Tensor, n_top: int, scale: float
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
        length = q.size(-2)
        # rank of query t among queries 0..t (number of earlier-or-equal queries scoring higher)
        higher = sparsity.unsqueeze(-1) > sparsity.unsqueeze(-2)  # [B, H, s, t]: M_s > M_t
        earlier = torch.ones(length, length, dtype=torch.bool, device=q.device).triu()  # s <= t
        active = ((higher & earlier).sum(-2) < n_top).unsqueeze(-1)  # [B, H, L, 1]
        scores = (q @ k.transpose(-2, -1)) * scale
        scores = scores.masked_fill(causal_mask(length, length, q.device), -math.inf)
        attn = torch.softmax(scores, dim=-1)
        context = torch.where(active, attn @ v, v.cumsum(-2))
        if not self.output_attention:
            return context, None
        return context, torch.where(active, attn, torch.zeros_like(attn))


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

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, l_q, _ = queries.shape
        l_k, h = keys.size(1), self.n_heads
        q = self.query_projection(queries).view(b, l_q, h, -1).transpose(1, 2)
        k = self.key_projection(keys).view(b, l_k, h, -1).transpose(1, 2)
        v = self.value_projection(values).view(b, l_k, h, -1).transpose(1, 2)
        out, attn = self.inner_attention(q, k, v)  # [B, H, L_Q, d_v]
        out = out.reshape(b, l_q, -1) if self.mix else out.transpose(1, 2).reshape(b, l_q, -1)
        return self.out_projection(out), attn
