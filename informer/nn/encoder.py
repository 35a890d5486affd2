"""Encoder: self-attention layers with distilling (Conv1d + BatchNorm + ELU + MaxPool)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from informer.nn.attention import AttentionLayer
from informer.nn.conv import circular_conv3, max_pool_time
from informer.nn.dropout import Dropout, activation_dropout

Attentions = list[torch.Tensor | None]


class FeedForward(nn.Module):
    """Position-wise feed-forward ``[B, L, d_model] -> [B, L, d_ff] -> [B, L, d_model]`` (the
    reference's 1x1 convs), with dropout after the activation and on the output."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, activation: str) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = Dropout(dropout)
        self.activation = activation

    def _inner(self, x: torch.Tensor) -> torch.Tensor:
        p = self.dropout.p if self.training else 0.0
        hidden = activation_dropout(self.linear1(x), p, self.training, self.activation,
                                    scaled=False)
        weight = self.linear2.weight if p == 0.0 else self.linear2.weight * (1.0 / (1.0 - p))
        return F.linear(hidden, weight, self.linear2.bias)  # dropout's scale folded in weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self._inner(x))

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``x + forward(x)`` with the output dropout fused into the sum."""
        return self.dropout.add(x, self._inner(x))


class ConvLayer(nn.Module):
    """Self-attention distilling: ``[B, L, d] -> [B, ceil(L/2), d]``.

    Circular Conv1d(k=3) + BatchNorm1d + ELU + MaxPool1d(3, stride 2, pad 1) over time, computed
    on the time-major layout (same parameters and results as the ``nn`` modules on ``[B, d, L]``).
    """

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.down_conv = nn.Conv1d(c_in, c_in, kernel_size=3, padding=1, padding_mode="circular")
        self.norm = nn.BatchNorm1d(c_in)
        self.activation = nn.ELU()
        self.max_pool = nn.MaxPool1d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, _ = x.shape
        x = circular_conv3(x, self.down_conv.weight, self.down_conv.bias)
        x = self.activation(self.norm(x.reshape(b * length, -1)).view(b, length, -1))
        pool = self.max_pool
        return max_pool_time(x, pool.kernel_size, pool.stride, pool.padding)


class EncoderLayer(nn.Module):
    """Attention + residual + LayerNorm, feed-forward + residual + LayerNorm."""

    def __init__(self, attention: AttentionLayer, d_model: int, d_ff: int | None = None,
                 dropout: float = 0.1, activation: str = "relu") -> None:
        super().__init__()
        self.attention = attention
        self.feed_forward = FeedForward(d_model, d_ff or 4 * d_model, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        new_x, attn = self.attention(x, x, x)
        x = self.norm1(self.dropout.add(x, new_x))
        return self.norm2(self.feed_forward.residual(x)), attn


class Encoder(nn.Module):
    """Attention layers with a distilling ConvLayer between consecutive layers.

    ``[B, L, d] -> [B, ceil(L / 2**len(conv_layers)), d]``.
    """

    def __init__(self, attn_layers: list[EncoderLayer], conv_layers: list[ConvLayer] | None = None,
                 norm_layer: nn.Module | None = None) -> None:
        super().__init__()
        self.attn_layers = nn.ModuleList(attn_layers)
        self.conv_layers = nn.ModuleList(conv_layers) if conv_layers else None
        self.norm = norm_layer

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Attentions]:
        attns: Attentions = []
        convs = list(self.conv_layers) if self.conv_layers is not None else []
        for i, layer in enumerate(self.attn_layers):
            x, attn = layer(x)
            attns.append(attn)
            if i < len(convs):
                x = convs[i](x)
        if self.norm is not None:
            x = self.norm(x)
        return x, attns


class EncoderStack(nn.Module):
    """InformerStack's encoder: encoder i reads the last ``L // 2**inp_lens[i]`` steps; outputs
    are concatenated along time."""

    def __init__(self, encoders: list[Encoder], inp_lens: list[int]) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(encoders)
        self.inp_lens = list(inp_lens)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Attentions]:
        outputs, attns = [], []
        for i_len, encoder in zip(self.inp_lens, self.encoders):
            out, attn = encoder(x[:, -(x.size(1) // 2**i_len):, :])
            outputs.append(out)
            attns.extend(attn)
        return torch.cat(outputs, dim=-2), attns
