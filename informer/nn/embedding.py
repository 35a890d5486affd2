"""Input embeddings: value (Conv1d), sinusoidal position and calendar (temporal) embeddings."""

from __future__ import annotations

import math

import torch
from torch import nn

from informer.nn.conv import circular_conv3
from informer.nn.dropout import Dropout


def sinusoid_table(length: int, d_model: int) -> torch.Tensor:
    """Sinusoidal table ``[length, d_model]``: sin on even, cos on odd channels."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model)
    )
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)[:, : d_model // 2]
    return table


class PositionalEmbedding(nn.Module):
    """Fixed sinusoidal position code: ``[batch, L, *] -> [1, L, d_model]``."""

    def __init__(self, d_model: int, max_len: int = 5000) -> None:
        super().__init__()
        self.register_buffer("pe", sinusoid_table(max_len, d_model).unsqueeze(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pe[:, : x.size(1)]


class TokenEmbedding(nn.Module):
    """Value embedding: circular Conv1d(kernel 3) over time, ``[B, L, c_in] -> [B, L, d]``.

    With a bias, as the reference code: its default init ``U(-1/sqrt(3 c_in), 1/sqrt(3 c_in))``
    is the largest constant offset of the embedding in univariate runs (``c_in = 1``).
    """

    def __init__(self, c_in: int, d_model: int) -> None:
        super().__init__()
        self.token_conv = nn.Conv1d(c_in, d_model, kernel_size=3, padding=1,
                                    padding_mode="circular")
        nn.init.kaiming_normal_(self.token_conv.weight, mode="fan_in", nonlinearity="leaky_relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return circular_conv3(x, self.token_conv.weight, self.token_conv.bias)


class FixedEmbedding(nn.Module):
    """Frozen sinusoidal lookup table for an integer calendar field."""

    def __init__(self, size: int, d_model: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(size, d_model)
        self.emb.weight = nn.Parameter(sinusoid_table(size, d_model), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.emb(x).detach()


# Integer calendar columns in the order the data produces them, with their vocabulary sizes.
CALENDAR_SIZES = (("month", 13), ("day", 32), ("weekday", 7), ("hour", 24), ("minute", 4))


class TemporalEmbedding(nn.Module):
    """Sum of per-field embeddings of integer marks ``[B, L, n_fields] -> [B, L, d]``.

    ``kind='fixed'`` uses frozen sinusoidal tables, ``kind='learned'`` trainable nn.Embedding.
    """

    def __init__(self, d_model: int, n_fields: int, kind: str = "fixed") -> None:
        super().__init__()
        make = FixedEmbedding if kind == "fixed" else nn.Embedding
        self.fields = nn.ModuleList(make(size, d_model) for _, size in CALENDAR_SIZES[:n_fields])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.long()
        return sum(embed(x[..., i]) for i, embed in enumerate(self.fields))


class TimeFeatureEmbedding(nn.Module):
    """``timeF``: linear map of the float calendar features ``[B, L, n] -> [B, L, d]``."""

    def __init__(self, d_model: int, n_features: int) -> None:
        super().__init__()
        self.embed = nn.Linear(n_features, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)


class DataEmbedding(nn.Module):
    """value + position + temporal embedding, then dropout: ``[B, L, c_in] -> [B, L, d_model]``."""

    def __init__(self, c_in: int, d_model: int, embed: str, mark_dim: int,
                 dropout: float = 0.1, max_len: int = 5000) -> None:
        super().__init__()
        self.value_embedding = TokenEmbedding(c_in, d_model)
        self.position_embedding = PositionalEmbedding(d_model, max_len=max_len)
        if embed == "timeF":
            self.temporal_embedding: nn.Module = TimeFeatureEmbedding(d_model, mark_dim)
        else:
            self.temporal_embedding = TemporalEmbedding(d_model, mark_dim, kind=embed)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor) -> torch.Tensor:
        position = self.position_embedding(x)
        device = x.device.type
        if torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16:
            # keep the residual stream in bf16 under bf16 autocast (the float32 table would
            # promote every residual sum and LayerNorm to float32, with a cast at every linear)
            position = position.to(torch.bfloat16)
        x = self.value_embedding(x) + position + self.temporal_embedding(x_mark)
        return self.dropout(x)
