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

    def forward(self, x: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.self_attention(x, x, x)[0]))
        x = self.norm2(x + self.dropout(self.cross_attention(x, cross, cross)[0]))
        return self.norm3(x + self.feed_forward(x))


class Decoder(nn.Module):
    """Stack of decoder layers: ``[B, L_dec, d], [B, L_enc, d] -> [B, L_dec, d]``."""

    def __init__(self, layers: list[DecoderLayer], norm_layer: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = norm_layer

    def forward(self, x: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, cross)
        return self.norm(x) if self.norm is not None else x
