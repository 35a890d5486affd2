"""The Informer network (and InformerStack when ``config.s_layers`` is set)."""

from __future__ import annotations

import torch
from torch import nn

from informer.config import InformerConfig
from informer.nn.attention import AttentionLayer, FullAttention, ProbAttention
from informer.nn.decoder import Decoder, DecoderLayer
from informer.nn.embedding import DataEmbedding
from informer.nn.encoder import ConvLayer, Encoder, EncoderLayer, EncoderStack
from informer.nn.revin import RevIN


class Informer(nn.Module):
    """Encoder-decoder with ProbSparse attention and a generative-style decoder.

    ``forward(x_enc [B, seq_len, enc_in], x_mark_enc [B, seq_len, mark_dim],
    x_dec [B, label_len + pred_len, dec_in], x_mark_dec [B, label_len + pred_len, mark_dim])
    -> [B, pred_len, c_out]``, or ``[B, pred_len, c_out, Q]`` with ``config.quantiles`` (plus
    the encoder attentions when ``output_attention``).
    """

    def __init__(self, config: InformerConfig) -> None:
        super().__init__()
        self.config = c = config
        max_len = max(c.seq_len, c.dec_len)
        self.enc_embedding = DataEmbedding(c.enc_in, c.d_model, c.embed, c.mark_dim, c.dropout,
                                           max_len)
        self.dec_embedding = DataEmbedding(c.dec_in, c.d_model, c.embed, c.mark_dim, c.dropout,
                                           max_len)
        if c.is_stack:
            self.encoder: nn.Module = EncoderStack([self._encoder(n) for n in c.s_layers],
                                                   list(range(len(c.s_layers))))
        else:
            self.encoder = self._encoder(c.e_layers)
        self.decoder = Decoder([self._decoder_layer() for _ in range(c.d_layers)],
                               nn.LayerNorm(c.d_model))
        self.projection = nn.Linear(c.d_model, c.c_out * c.n_outputs)
        self.revin = RevIN(c.enc_in) if c.revin else None

    def _attention(self, masked: bool, output_attention: bool = False) -> nn.Module:
        c = self.config
        common = {"attention_dropout": c.dropout, "output_attention": output_attention}
        if c.attn == "full":
            return FullAttention(masked, c.factor, **common)
        return ProbAttention(masked, c.factor, causal_selection=c.decoder_selection == "causal",
                             **common)

    def _encoder(self, n_layers: int) -> Encoder:
        c = self.config
        layers = [
            EncoderLayer(AttentionLayer(self._attention(False, c.output_attention), c.d_model,
                                        c.n_heads, mix=False),
                         c.d_model, c.d_ff, c.dropout, c.activation)
            for _ in range(n_layers)
        ]
        convs = [ConvLayer(c.d_model) for _ in range(n_layers - 1)] if c.distil else None
        return Encoder(layers, convs, nn.LayerNorm(c.d_model))

    def _decoder_layer(self) -> DecoderLayer:
        c = self.config
        self_attn = AttentionLayer(self._attention(True), c.d_model, c.n_heads, mix=c.mix)
        cross = AttentionLayer(FullAttention(False, c.factor, attention_dropout=c.dropout),
                               c.d_model, c.n_heads, mix=False)
        return DecoderLayer(self_attn, cross, c.d_model, c.d_ff, c.dropout, c.activation)

    def decoder_input(self, x_enc: torch.Tensor) -> torch.Tensor:
        """Start tokens (last ``label_len`` encoder steps) + ``pred_len`` zeros (ones if padding=1).

        ``[B, seq_len, dec_in] -> [B, label_len + pred_len, dec_in]``.
        """
        c = self.config
        start = x_enc[:, x_enc.size(1) - c.label_len:, :]
        fill = torch.full((x_enc.size(0), c.pred_len, x_enc.size(2)), float(c.padding),
                          dtype=x_enc.dtype, device=x_enc.device)
        return torch.cat([start, fill], dim=1)

    def forward(self, x_enc: torch.Tensor, x_mark_enc: torch.Tensor, x_dec: torch.Tensor,
                x_mark_dec: torch.Tensor):
        if self.revin is not None:  # start tokens share the window's statistics; fill stays
            x_enc, stats = self.revin.normalize(x_enc)
            label = self.config.label_len
            x_dec = torch.cat([self.revin.scale(x_dec[:, :label, :], stats),
                               x_dec[:, label:, :]], dim=1)
        enc_out, attns = self.encoder(self.enc_embedding(x_enc, x_mark_enc))
        # only the forecast positions leave the decoder (the last layer skips the others after
        # its self-attention; the outputs are the same)
        dec_out = self.decoder(self.dec_embedding(x_dec, x_mark_dec), enc_out,
                               keep_last=self.config.pred_len)
        out = self.projection(dec_out)
        if self.config.quantiles:
            out = out.unflatten(-1, (self.config.c_out, self.config.n_outputs))
        if self.revin is not None:
            out = self.revin.denormalize(out, stats)
        return (out, attns) if self.config.output_attention else out

    def predict_outputs(self, x_enc: torch.Tensor, x_mark_enc: torch.Tensor,
                        x_mark_dec: torch.Tensor) -> torch.Tensor:
        """The raw outputs from the history alone (decoder input built here):
        ``[B, pred_len, c_out]``, or ``[B, pred_len, c_out, Q]`` for a quantile network."""
        out = self(x_enc, x_mark_enc, self.decoder_input(x_enc), x_mark_dec)
        return out[0] if self.config.output_attention else out

    def predict(self, x_enc: torch.Tensor, x_mark_enc: torch.Tensor,
                x_mark_dec: torch.Tensor) -> torch.Tensor:
        """Point forecast ``[B, pred_len, c_out]`` (a quantile network's level nearest 0.5)."""
        out = self.predict_outputs(x_enc, x_mark_enc, x_mark_dec)
        return point_of(out, self.config)

    def predict_quantiles(self, x_enc: torch.Tensor, x_mark_enc: torch.Tensor,
                          x_mark_dec: torch.Tensor) -> torch.Tensor:
        """Quantiles ``[B, pred_len, c_out, Q]``, sorted along Q (no crossing levels), with
        the calibration applied when the network has one."""
        if not self.config.quantiles:
            raise ValueError("predict_quantiles: the network has no quantiles; set "
                             "model.net.quantiles")
        return quantiles_of(self.predict_outputs(x_enc, x_mark_enc, x_mark_dec), self.config)


def quantiles_of(outputs: torch.Tensor, config: InformerConfig,
                 calibrated: bool = True) -> torch.Tensor:
    """Sorted quantiles ``[..., Q]`` of raw outputs; with ``calibrated`` and a calibration,
    each central interval's bounds moved out by its offsets (``[intervals, c_out]``)."""
    levels = outputs.sort(dim=-1).values
    if not calibrated or not config.calibration:
        return levels
    offsets = torch.tensor(config.calibration, dtype=levels.dtype, device=levels.device)
    n = levels.size(-1)
    shift = torch.zeros(offsets.size(1), n, dtype=levels.dtype, device=levels.device)
    for k in range(offsets.size(0)):
        shift[:, k] -= offsets[k]
        shift[:, n - 1 - k] += offsets[k]
    return (levels + shift).sort(dim=-1).values


def point_of(outputs: torch.Tensor, config: InformerConfig) -> torch.Tensor:
    """The point forecast ``[B, pred_len, c_out]`` of raw outputs (sorted quantiles' level
    nearest 0.5 for a quantile network)."""
    if not config.quantiles:
        return outputs
    return outputs.sort(dim=-1).values[..., config.point_index]
