"""The Informer network in plain ``torch.nn`` (no Lightning, no Hydra)."""

from informer.nn.attention import AttentionLayer, FullAttention, ProbAttention
from informer.nn.decoder import Decoder, DecoderLayer
from informer.nn.embedding import DataEmbedding
from informer.nn.encoder import ConvLayer, Encoder, EncoderLayer, EncoderStack
from informer.nn.model import Informer

__all__ = [
    "AttentionLayer", "ConvLayer", "DataEmbedding", "Decoder", "DecoderLayer", "Encoder",
    "EncoderLayer", "EncoderStack", "FullAttention", "Informer", "ProbAttention",
]
