"""Decoder: masked self-attention + cross-attention over the encoder output."""

from __future__ import annotations

import torch
from torch import nn

from informer.nn.attention import AttentionLayer
from informer.nn.dropout import Dropout
from informer.nn.encoder import FeedForward


class DecoderLayer(nn.Module):
    """Self-attention, cross-attention and feed-forward, each with residual + LayerNorm."""

    def __init__(self, self_attention: AttentionLayer, cross_attention: AttentionLayer,
                 d_model: int, d_ff: int | None = None, dropout: float = 0.1,
                 activation: str = "relu") -> None:
        super().__init__()
        self.self_attention = self_attention
        self.cross_attention = cross_attention
        self.feed_forward = FeedForward(d_model, d_ff or 4 * d_model, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, cross: torch.Tensor, keep_last: int | None = None
                ) -> torch.Tensor:
        """``[B, L_dec, d], [B, L_enc, d] -> [B, L_dec, d]``, or only the last ``keep_last``
        positions ``[B, keep_last, d]`` (everything after self-attention is position-wise)."""
        x = self.norm1(self.dropout.add(x, self.self_attention(x, x, x)[0]))
        if keep_last is not None:
            x = x[:, x.size(1) - keep_last:]
        x = self.norm2(self.dropout.add(x, self.cross_attention(x, cross, cross)[0]))
        return self.norm3(self.feed_forward.residual(x))


class Decoder(nn.Module):
    """Stack of decoder layers: ``[B, L_dec, d], [B, L_enc, d] -> [B, L_dec, d]``.

    ``keep_last`` returns only the last positions ``[B, keep_last, d]``: the last layer then
    computes cross-attention, feed-forward and norms for those positions only.
    """

    def __init__(self, layers: list[DecoderLayer], norm_layer: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = norm_layer

    def forward(self, x: torch.Tensor, cross: torch.Tensor, keep_last: int | None = None
                ) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x, cross, keep_last if i == len(self.layers) - 1 else None)
        if keep_last is not None and not self.layers:
            x = x[:, x.size(1) - keep_last:]
        return self.norm(x) if self.norm is not None else x
