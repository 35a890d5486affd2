"""Shapes, attention equations, causality and distilling of the Informer network."""

from __future__ import annotations

import itertools

import pytest
import torch

from informer.config import InformerConfig
from informer.errors import InformerError
from informer.nn import AttentionLayer, ConvLayer, FullAttention, Informer, ProbAttention
from informer.nn.embedding import DataEmbedding


def inputs(c: InformerConfig, batch: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c.seq_len, c.enc_in, generator=g)
    if c.embed == "timeF":
        xm = torch.rand(batch, c.seq_len, c.mark_dim, generator=g) - 0.5
        ym = torch.rand(batch, c.dec_len, c.mark_dim, generator=g) - 0.5
    else:
        xm = torch.randint(0, 4, (batch, c.seq_len, c.mark_dim), generator=g)
        ym = torch.randint(0, 4, (batch, c.dec_len, c.mark_dim), generator=g)
    return x, xm, ym


VARIANTS = list(itertools.product(["prob", "full"], [True, False], [None, [3, 2, 1]],
                                  ["timeF", "fixed", "learned"], [True, False]))


@pytest.mark.parametrize(("attn", "distil", "s_layers", "embed", "mix"), VARIANTS)
def test_forward_shape_every_variant(attn, distil, s_layers, embed, mix):
    c = InformerConfig(enc_in=5, dec_in=5, c_out=3, seq_len=40, label_len=16, pred_len=8,
                       d_model=16, n_heads=2, d_ff=32, attn=attn, distil=distil,
                       s_layers=s_layers, embed=embed, mix=mix, freq="15min")
    net = Informer(c)
    x, xm, ym = inputs(c)
    out = net(x, xm, net.decoder_input(x), ym)
    assert out.shape == (3, 8, 3)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_output_attention_returns_encoder_maps():
    c = InformerConfig(seq_len=32, label_len=8, pred_len=4, d_model=16, n_heads=2, d_ff=32,
                       output_attention=True, e_layers=2)
    net = Informer(c).eval()
    x, xm, ym = inputs(c)
    out, attns = net(x, xm, net.decoder_input(x), ym)
    assert out.shape == (3, 4, 7)
    # distilling halves the second layer's input: 32 -> 16
    assert [a.shape for a in attns] == [(3, 2, 32, 32), (3, 2, 16, 16)]
    assert torch.allclose(attns[0].sum(-1), torch.ones(3, 2, 32))


def test_decoder_input_start_tokens_then_padding():
    for padding in (0, 1):
        c = InformerConfig(seq_len=10, label_len=4, pred_len=3, d_model=8, n_heads=2,
                           padding=padding)
        x = torch.randn(2, 10, 7)
        dec = Informer(c).decoder_input(x)
        assert dec.shape == (2, 7, 7)
        assert torch.equal(dec[:, :4], x[:, -4:])
        assert torch.all(dec[:, 4:] == padding)


@pytest.mark.parametrize("length", [7, 8, 96, 97])
def test_distilling_halves_length(length):
    out = ConvLayer(16)(torch.randn(2, length, 16))
    assert out.shape == (2, (length + 1) // 2, 16)


def test_stack_concatenates_encoders_over_l_l2_l4():
    c = InformerConfig(seq_len=32, label_len=8, pred_len=4, d_model=16, n_heads=2, d_ff=32,
                       s_layers=[3, 2, 1])
    net = Informer(c)
    x, xm, _ = inputs(c)
    enc, _ = net.encoder(net.enc_embedding(x, xm))
    # L=32 through 2 distils -> 8; L/2=16 through 1 -> 8; L/4=8 through 0 -> 8
    assert enc.shape == (3, 24, 16)


@pytest.mark.parametrize("masked", [False, True])
def test_probsparse_equals_full_when_all_queries_active(masked):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 20, 8) for _ in range(3))
    # factor 10: u = 10 * ceil(ln 20) = 30 >= 20 queries, every key sampled
    prob, _ = ProbAttention(masked, factor=10, output_attention=False)(q, k, v)
    full, _ = FullAttention(masked, attention_dropout=0.0).eval()(q, k, v)
    assert torch.allclose(prob, full, atol=1e-5)


def test_probsparse_lazy_queries_get_mean_of_values():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 1, 50, 4) for _ in range(3))
    attention = ProbAttention(False, factor=1).eval()  # u = ceil(ln 50) = 4 active queries
    out, _ = attention(q, k, v)
    mean = v.mean(-2)
    lazy = torch.isclose(out, mean.unsqueeze(-2).expand_as(out), atol=1e-6).all(-1)
    assert int(lazy.sum()) == 50 - 4


def test_probsparse_eval_is_deterministic_and_batch_independent():
    torch.manual_seed(0)
    q, k, v = (torch.randn(6, 2, 60, 8) for _ in range(3))
    attention = ProbAttention(False, factor=2).eval()
    full_batch, _ = attention(q, k, v)
    first_two, _ = attention(q[:2], k[:2], v[:2])
    assert torch.equal(full_batch[:2], first_two)


@pytest.mark.parametrize("kind", ["prob", "full"])
def test_masked_attention_layer_is_causal(kind):
    torch.manual_seed(0)
    inner = ProbAttention(True, factor=2) if kind == "prob" else FullAttention(True, 5, None, 0.0)
    layer = AttentionLayer(inner, d_model=16, n_heads=2, mix=False).eval()
    x = torch.randn(2, 30, 16)
    base, _ = layer(x, x, x)
    for t in (0, 5, 17, 28):
        changed = x.clone()
        changed[:, t + 1:] = torch.randn_like(changed[:, t + 1:]) * 5
        out, _ = layer(changed, changed, changed)
        assert torch.allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-6), t
        assert not torch.allclose(out[:, t + 1:], base[:, t + 1:])


def test_masked_probsparse_lazy_queries_get_cumsum():
    torch.manual_seed(1)
    q, k, v = (torch.randn(1, 1, 40, 4) for _ in range(3))
    out, _ = ProbAttention(True, factor=1).eval()(q, k, v)
    cumsum = v.cumsum(-2)
    lazy = torch.isclose(out, cumsum, atol=1e-5).all(-1)
    assert 0 < int(lazy.sum()) < 40


def test_mix_reads_heads_as_positions():
    torch.manual_seed(0)
    layer = AttentionLayer(FullAttention(False, attention_dropout=0.0), 8, 2, mix=True).eval()
    x = torch.randn(1, 4, 8)
    out, _ = layer(x, x, x)
    q = layer.query_projection(x).view(1, 4, 2, 4).transpose(1, 2)
    k = layer.key_projection(x).view(1, 4, 2, 4).transpose(1, 2)
    v = layer.value_projection(x).view(1, 4, 2, 4).transpose(1, 2)
    heads = torch.softmax(q @ k.transpose(-2, -1) / 2.0, -1) @ v  # [1, H, L, d]
    assert torch.allclose(out, layer.out_projection(heads.reshape(1, 4, 8)), atol=1e-6)


def test_embedding_sums_value_position_time():
    emb = DataEmbedding(3, 8, "timeF", 4, dropout=0.0).eval()
    x, xm = torch.randn(2, 5, 3), torch.rand(2, 5, 4)
    expected = emb.value_embedding(x) + emb.position_embedding.pe[:, :5] + \
        emb.temporal_embedding(xm)
    assert torch.allclose(emb(x, xm), expected)
    # circular padding: the first step sees the last one
    conv = emb.value_embedding.token_conv
    y = torch.nn.functional.conv1d(torch.cat([x[:, -1:], x, x[:, :1]], 1).transpose(1, 2),
                                   conv.weight).transpose(1, 2)
    assert torch.allclose(emb.value_embedding(x), y, atol=1e-6)


def test_seeded_training_steps_are_bit_identical():
    def run():
        torch.manual_seed(7)
        c = InformerConfig(seq_len=24, label_len=12, pred_len=6, d_model=16, n_heads=2,
                           d_ff=32, factor=2)
        net = Informer(c)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        x, xm, ym = inputs(c, seed=1)
        losses = []
        for _ in range(3):
            loss = net.predict(x, xm, ym).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses, net.eval().predict(x, xm, ym)

    (l1, p1), (l2, p2) = run(), run()
    assert l1 == l2
    assert torch.equal(p1, p2)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("label_len", 200, "model.label_len: expected label_len <= seq_len (96), got 200"),
    ("d_model", 100, "model.d_model: expected a multiple of n_heads (8), got 100"),
    ("attn", "sparse", "model.attn: expected one of ['prob', 'full'], got 'sparse'"),
    ("embed", "x", "model.embed: expected one of ['timeF', 'fixed', 'learned'], got 'x'"),
    ("pred_len", 0, "model.pred_len: expected a positive integer, got 0"),
    ("freq", "fortnight", "data.freq: expected a pandas offset alias"),
    ("padding", 2, "model.padding: expected 0 (zeros) or 1 (ones), got 2"),
])
def test_config_validation(field, value, message):
    with pytest.raises(InformerError, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)").replace("]", r"\]")):
        InformerConfig(**{field: value})


def test_config_derived_fields():
    c = InformerConfig(freq="15min", embed="timeF", d_model=64, n_heads=4, s_layers=[3, 2])
    assert (c.mark_dim, c.d_head, c.dec_len, c.is_stack) == (5, 16, 72, True)
    assert InformerConfig(freq="h", embed="fixed").mark_dim == 4
    assert InformerConfig.from_dict(c.to_dict()) == c
