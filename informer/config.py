"""Typed, validated configuration of the Informer network, with derived fields."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from informer.errors import InformerError
from informer.timefeatures import mark_dim

ATTENTIONS = ("prob", "full")
EMBEDDINGS = ("timeF", "fixed", "learned")
ACTIVATIONS = ("gelu", "relu")
SELECTIONS = ("global", "causal")


def _fail(name: str, expected: str, value: Any) -> None:
    raise InformerError(f"model.net.{name}: expected {expected}, got {value!r}")


@dataclass
class InformerConfig:
    """Hyper-parameters of :class:`informer.nn.Informer` (paper defaults).

    ``s_layers`` (e.g. ``[3, 2, 1]``) turns the model into InformerStack: one encoder per entry
    with that many layers, fed the last L, L/2, L/4 ... input steps; ``e_layers`` is then unused.
    ``revin`` adds reversible instance normalisation around the network (not in the paper).
    ``quantiles`` (e.g. ``[0.1, 0.5, 0.9]``, strictly increasing in (0, 1)) makes the network
    output those quantiles of each forecast value, trained with the pinball loss; the point
    forecast is then the quantile nearest 0.5. ``None``: one point forecast (the paper).
    ``calibration`` (set after training, not by hand): per central interval and output
    variable, how far split-conformal calibration on the validation split moves the interval's
    bounds outwards (scaled units; :mod:`informer.calibration`).
    ``decoder_selection`` picks the active queries of the decoder's masked ProbSparse
    self-attention: ``global`` as the paper's reference code (top ``u`` of the whole decoder
    input; which outputs attend may depend on the placeholders after them, which hold no data),
    ``causal`` strictly causal (query t is active when in the top ``u`` of queries ``0..t``).
    """

    enc_in: int = 7
    dec_in: int = 7
    c_out: int = 7
    seq_len: int = 96
    label_len: int = 48
    pred_len: int = 24
    factor: int = 5
    d_model: int = 512
    n_heads: int = 8
    e_layers: int = 2
    s_layers: list[int] | None = None
    d_layers: int = 1
    d_ff: int = 2048
    dropout: float = 0.05
    attn: str = "prob"
    embed: str = "timeF"
    freq: str = "h"
    activation: str = "gelu"
    output_attention: bool = False
    distil: bool = True
    mix: bool = True
    padding: int = 0
    revin: bool = False
    decoder_selection: str = "global"
    quantiles: list[float] | None = None
    calibration: list[list[float]] | None = None

    def __post_init__(self) -> None:
        if self.s_layers is not None:
            self.s_layers = [int(n) for n in self.s_layers]
        for name in ("enc_in", "dec_in", "c_out", "seq_len", "pred_len", "factor", "d_model",
                     "n_heads", "e_layers", "d_layers", "d_ff"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                _fail(name, "a positive integer", value)
        if not isinstance(self.label_len, int) or self.label_len < 0:
            _fail("label_len", "an integer >= 0", self.label_len)
        if self.label_len > self.seq_len:
            raise InformerError(
                f"model.net.label_len: expected label_len <= seq_len ({self.seq_len}), "
                f"got {self.label_len}"
            )
        if self.s_layers is not None:
            if not self.s_layers or any(n < 1 for n in self.s_layers):
                _fail("s_layers", "a non-empty list of positive integers", self.s_layers)
            if self.seq_len // 2 ** (len(self.s_layers) - 1) < 1:
                _fail("s_layers", f"at most {self.seq_len.bit_length()} stacked encoders",
                      self.s_layers)
        if self.d_model % self.n_heads:
            raise InformerError(
                f"model.net.d_model: expected a multiple of n_heads ({self.n_heads}), "
                f"got {self.d_model}"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or \
                not 0.0 <= float(self.dropout) < 1.0:
            _fail("dropout", "a probability in [0, 1)", self.dropout)
        if self.attn not in ATTENTIONS:
            _fail("attn", f"one of {list(ATTENTIONS)}", self.attn)
        if self.embed not in EMBEDDINGS:
            _fail("embed", f"one of {list(EMBEDDINGS)}", self.embed)
        if self.activation not in ACTIVATIONS:
            _fail("activation", f"one of {list(ACTIVATIONS)}", self.activation)
        if self.decoder_selection not in SELECTIONS:
            _fail("decoder_selection", f"one of {list(SELECTIONS)}", self.decoder_selection)
        if not isinstance(self.revin, bool):
            _fail("revin", "true or false", self.revin)
        if self.revin and (self.dec_in != self.enc_in or self.c_out > self.enc_in):
            raise InformerError(
                f"model.net.revin: expected dec_in == enc_in and c_out <= enc_in (outputs are the "
                f"last input channels), got enc_in={self.enc_in}, dec_in={self.dec_in}, "
                f"c_out={self.c_out}")
        if self.quantiles is not None:
            self.quantiles = [float(q) for q in self.quantiles]
            qs = self.quantiles
            if not qs or any(not 0.0 < q < 1.0 for q in qs) or \
                    any(a >= b for a, b in zip(qs, qs[1:])):
                _fail("quantiles", "a non-empty, strictly increasing list of levels in (0, 1)",
                      qs)
        if self.calibration is not None:
            self.calibration = [[float(v) for v in row] for row in self.calibration]
            shape = (len(self.quantiles or []) // 2, self.c_out)
            if (len(self.calibration), *{len(r) for r in self.calibration}) != shape:
                _fail("calibration", f"{shape[0]} rows of {shape[1]} offsets (intervals x "
                      f"outputs)", self.calibration)
        if self.padding not in (0, 1):
            _fail("padding", "0 (zeros) or 1 (ones)", self.padding)
        self.mark_dim  # validates freq  # noqa: B018

    # derived fields -------------------------------------------------------------------------
    @property
    def is_stack(self) -> bool:
        return self.s_layers is not None

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def dec_len(self) -> int:
        """Decoder input length: ``label_len`` start tokens + ``pred_len`` placeholders."""
        return self.label_len + self.pred_len

    @property
    def n_outputs(self) -> int:
        """Values per forecast step and variable: the quantiles, or one point forecast."""
        return len(self.quantiles) if self.quantiles else 1

    @property
    def point_index(self) -> int:
        """Index of the point forecast among the outputs (the quantile nearest 0.5)."""
        if not self.quantiles:
            return 0
        return min(range(len(self.quantiles)), key=lambda i: abs(self.quantiles[i] - 0.5))

    @property
    def mark_dim(self) -> int:
        """Number of calendar columns the temporal embedding expects."""
        return mark_dim(self.freq, self.embed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> InformerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InformerError(
                f"model.net: unknown field(s) {unknown}; expected some of {sorted(known)}"
            )
        return cls(**values)
