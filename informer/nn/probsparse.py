"""ProbSparse self-attention (Informer, sec. 3.1) without ``[L_Q, L_K]``-sized training state.

Tensors are per head: ``q [batch, heads, L_Q, d]``, ``k``/``v [batch, heads, L_K, d]``.

Cost at length L (u = factor * ceil(ln L) sampled keys per query and active queries):

- sparsity scores, no gradient: ``L_Q * u`` sampled products, computed either by gathering the
  sampled keys (O(L log L) work, memory-bound) or, when cheaper, as dense ``q k^T`` row blocks
  followed by a gather (O(L^2 d) multiply-adds at matmul speed, O(L) memory);
- active queries: ``u`` (unmasked, or masked with global selection) or about
  ``u (1 + ln(L / u))`` (masked, causal selection) rows of attention, O(L log L) work and
  memory, with gradients;
- lazy queries: ``mean(V)`` or ``cumsum(V)``, O(L).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from informer.nn import attend as _attend
from informer.nn.attend import attend, attention_weights
from informer.nn.chunked import blocks_of

# Dense q k^T (at matmul speed) beats gathering the sampled keys until L_K exceeds
# n_sample * d * ratio (measured crossover on CPU at d = 64: L_K ~ 6000 in float32, beyond
# 6144 in bf16); above it the gather keeps the sampling step O(L log L).
DENSE_SCORE_RATIO = {torch.float32: 2, torch.bfloat16: 4, torch.float16: 4}
# Elements of one block of dense scores (bounds the memory of the sampling step).
SCORE_BLOCK = 2**21
# Query block of the causal "is t in the top u of queries 0..t" ranking.
RANK_BLOCK = 256


def sample_index(l_q: int, l_k: int, n_sample: int, causal: bool, device: torch.device,
                 generator: torch.Generator | None) -> torch.Tensor:
    """Sampled key positions ``[L_Q, n_sample]``; causal: query t samples from keys 0..t."""
    if causal:
        span = torch.arange(1, l_q + 1, device=device, dtype=torch.float32).unsqueeze(1)
        return (torch.rand(l_q, n_sample, device=device, generator=generator) * span).long()
    return torch.randint(l_k, (l_q, n_sample), device=device, generator=generator)


@torch.no_grad()
def sampled_scores(q: torch.Tensor, k: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``q_i . k_index[i, j]`` as ``[B, H, L_Q, n_sample]`` float32 (no gradient)."""
    b, h, l_q, d = q.shape
    l_k, n_sample = k.size(-2), index.size(-1)
    if l_k > n_sample * d * DENSE_SCORE_RATIO.get(q.dtype, 2):  # gather sampled keys in blocks
        rows = max(1, SCORE_BLOCK // (b * h * n_sample * d))
        blocks = [(k[:, :, index[i:i + rows]] @ q[:, :, i:i + rows].unsqueeze(-1)).squeeze(-1)
                  for i in range(0, l_q, rows)]  # [B, H, rows, n_sample]
        return torch.cat(blocks, dim=-2).float()
    if b * h * l_q * l_k <= 4 * SCORE_BLOCK:  # one product
        scores = q @ k.transpose(-2, -1)
        return scores.gather(-1, index.expand(b, h, l_q, n_sample)).float()
    # dense q k^T in cache-sized (head, query) blocks (large batched products of few rows and
    # blocks over 32 MiB, which the allocator maps fresh each time, are both slow on CPU)
    q3, k3 = q.reshape(b * h, l_q, d), k.reshape(b * h, l_k, d)
    out = torch.empty(b * h, l_q, n_sample, dtype=torch.float32, device=q.device)
    for heads, rows in blocks_of(b * h, l_q, l_k, SCORE_BLOCK):
        scores = torch.bmm(q3[heads, rows], k3[heads].transpose(1, 2))  # [heads, rows, L_K]
        idx = index[rows].expand(scores.size(0), -1, -1)
        out[heads, rows] = scores.gather(-1, idx)
    return out.view(b, h, l_q, n_sample)


def _count(mask: torch.Tensor) -> torch.Tensor:
    """True entries along the last dim (int32; a bool ``sum`` first copies to int64)."""
    return mask.view(torch.uint8).sum(-1, dtype=torch.int32)


@torch.no_grad()
def causal_active(sparsity: torch.Tensor, n_top: int, block: int = RANK_BLOCK) -> torch.Tensor:
    """``[B, H, L]`` bool: query t ranks in the top ``n_top`` of queries ``0..t`` by sparsity.

    Rank of t = number of earlier queries s < t with ``M_s > M_t``. Queries are ranked in blocks
    against the block itself and the top ``n_top`` scores before it (enough to decide
    ``rank < n_top``), so memory is O(L * block) instead of O(L^2).
    """
    b, h, length = sparsity.shape
    prefix = sparsity.new_empty(b, h, 0)  # the top n_top scores before the block
    active = []
    for start in range(0, length, block):
        cur = sparsity[..., start:start + block]  # [B, H, c]
        c = cur.size(-1)
        before = _count(prefix.unsqueeze(-2) > cur.unsqueeze(-1))  # [B, H, c]
        earlier = torch.ones(c, c, dtype=torch.bool, device=cur.device).tril(-1)  # s < t
        within = _count((cur.unsqueeze(-2) > cur.unsqueeze(-1)) & earlier)  # [t, s]
        active.append(before + within < n_top)
        prefix = torch.cat([prefix, cur], -1)
        if prefix.size(-1) > n_top:
            prefix = prefix.topk(n_top, dim=-1, sorted=False).values
    return torch.cat(active, -1)


class ProbAttention(nn.Module):
    """ProbSparse self-attention (Informer, sec. 3.1).

    ``factor * ceil(ln L_K)`` keys are sampled per query to score each query's sparsity
    ``M = max_j(q k_j) - sum_j(q k_j) / L_K``; the top ``factor * ceil(ln L_Q)`` queries attend to
    all keys, the lazy ones output ``mean(V)``. With ``mask_flag`` (decoder self-attention) the
    active queries attend to keys ``0..t`` and lazy queries output ``cumsum(V)``; the active ones
    are picked as in the paper's reference code (``causal_selection=False``: keys sampled from
    the whole input, the top ``u`` queries of the whole input, so the choice of which outputs
    attend may depend on inputs after t) or strictly causally (``causal_selection=True``: query
    t samples keys from ``[0, t]`` and is active when its score ranks in the top ``u`` among
    queries ``0..t``; outputs at t never depend on inputs after t). Training samples keys with
    torch's global RNG (reproducible under a seed); in eval mode a generator seeded with
    ``eval_seed`` makes every forecast deterministic and independent of batch composition. The
    query selection carries no gradient (as in the paper: only the selected queries' attention
    is differentiated).

    ``attention_dropout`` is accepted for the same signature as :class:`FullAttention` and is
    not applied: the reference code's ProbAttention builds its dropout and never calls it, and
    the paper's results were trained that way. ``model.net.dropout`` therefore reaches the
    embeddings, feed-forward layers and full attention, not the ProbSparse attention weights.
    """

    eval_seed = 0

    def __init__(self, mask_flag: bool = True, factor: int = 5, scale: float | None = None,
                 attention_dropout: float = 0.1, output_attention: bool = False,
                 causal_selection: bool = False) -> None:
        super().__init__()
        self.mask_flag = mask_flag
        self.causal_selection = causal_selection
        self.factor = factor
        self.scale = scale
        self.output_attention = output_attention

    def _sample_counts(self, l_q: int, l_k: int) -> tuple[int, int]:
        n_sample = min(self.factor * math.ceil(math.log(l_k)), l_k) if l_k > 1 else l_k
        n_top = min(self.factor * math.ceil(math.log(l_q)), l_q) if l_q > 1 else l_q
        return max(n_sample, 1), max(n_top, 1)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, h, l_q, d = q.shape
        l_k = k.size(-2)
        if self.mask_flag and l_q != l_k:
            raise ValueError(f"masked ProbAttention needs L_Q == L_K, got {l_q} and {l_k}")
        scale = self.scale or 1.0 / math.sqrt(d)
        n_sample, n_top = self._sample_counts(l_q, l_k)
        gen = None
        if not self.training:
            gen = torch.Generator(device=q.device).manual_seed(self.eval_seed)
        causal = self.mask_flag and self.causal_selection
        index = sample_index(l_q, l_k, n_sample, causal, q.device, gen)
        sampled = sampled_scores(q, k, index)
        sparsity = sampled.amax(-1) - sampled.sum(-1) / l_k  # [B, H, L_Q]
        if causal:
            return self._masked_context(q, k, v, causal_active(sparsity, n_top), scale)
        top = sparsity.topk(n_top, dim=-1, sorted=False).indices  # [B, H, u]
        if self.mask_flag:
            active = torch.zeros_like(sparsity, dtype=torch.bool).scatter_(-1, top, True)
            return self._masked_context(q, k, v, active, scale)
        q_top = q.gather(-2, top.unsqueeze(-1).expand(b, h, n_top, d))
        rows = top.unsqueeze(-1).expand(b, h, n_top, v.size(-1))
        context = v.mean(-2, keepdim=True).expand(b, h, l_q, v.size(-1))
        if not self.output_attention:
            return context.scatter(-2, rows, attend(q_top, k, v, scale)), None
        attn = attention_weights(q_top, k, scale)  # [B, H, u, L_K]
        full = torch.full((b, h, l_q, l_k), 1.0 / l_k, dtype=attn.dtype, device=attn.device)
        return (context.scatter(-2, rows, attn @ v),
                full.scatter(-2, top.unsqueeze(-1).expand(b, h, n_top, l_k), attn))

    def _masked_context(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        active: torch.Tensor, scale: float
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Active queries (``active [B, H, L]`` bool) attend to keys ``0..t``; others cumsum(V)."""
        b, h, length, d_v = *q.shape[:3], v.size(-1)
        active = active.unsqueeze(-1)  # [B, H, L, 1]
        if self.output_attention:
            attn = attention_weights(q, k, scale, causal=True)
            context = torch.where(active, attn @ v, v.cumsum(-2))
            return context, torch.where(active, attn, torch.zeros_like(attn))
        counts = active.sum(-2)  # [B, H, 1]
        n_act = length if torch.compiler.is_compiling() else int(counts.max())
        if 4 * n_act > length and b * h * length * length <= _attend.EXPLICIT_MAX_SCORES:
            # one product: a lazy query's weights are 1 on keys 0..t, i.e. cumsum(V) (at these
            # sizes faster than gathering the active rows while a quarter of them are active)
            weights = attention_weights(q, k, scale, causal=True)  # [B, H, L, L]
            lower = torch.ones(length, length, dtype=weights.dtype, device=q.device).tril()
            return torch.where(active, weights, lower) @ v, None
        lazy = v.cumsum(-2)
        if 2 * n_act > length:  # most queries active: one causal attention for all
            return torch.where(active, attend(q, k, v, scale, causal=True), lazy), None
        # active queries first, in time order; the padding slots (inactive) keep cumsum(V)
        order = torch.argsort((~active[..., 0]).to(torch.uint8), dim=-1, stable=True)
        order = order[..., :n_act]  # [B, H, n_act]
        q_act = q.gather(-2, order.unsqueeze(-1).expand(*order.shape, q.size(-1)))
        out = attend(q_act, k, v, scale, limit=order)  # query t sees keys 0..t
        rows = order.unsqueeze(-1).expand(*order.shape, d_v)
        valid = (torch.arange(n_act, device=q.device) < counts).unsqueeze(-1)
        out = torch.where(valid, out, lazy.gather(-2, rows))
        return lazy.scatter(-2, rows, out), None
