"""Shapes, attention equations, causality and distilling of the Informer network."""

from __future__ import annotations

import itertools

import pytest
import torch

from informer.config import InformerConfig
from informer.errors import InformerError
from informer.nn import (
    AttentionLayer,
    ConvLayer,
    FullAttention,
    Informer,
    ProbAttention,
    attend,
    chunked,
    probsparse,
)
from informer.nn.conv import circular_conv3, max_pool_time
from informer.nn.dropout import activation_dropout, drop_indices, dropout, dropout_add
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
    inner = (ProbAttention(True, factor=2, causal_selection=True) if kind == "prob"
             else FullAttention(True, 5, None, 0.0))
    layer = AttentionLayer(inner, d_model=16, n_heads=2, mix=False).eval()
    x = torch.randn(2, 30, 16)
    base, _ = layer(x, x, x)
    for t in (0, 5, 17, 28):
        changed = x.clone()
        changed[:, t + 1:] = torch.randn_like(changed[:, t + 1:]) * 5
        out, _ = layer(changed, changed, changed)
        assert torch.allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-6), t
        assert not torch.allclose(out[:, t + 1:], base[:, t + 1:])


@pytest.mark.parametrize("causal", [False, True])
def test_masked_probsparse_lazy_queries_get_cumsum(causal):
    torch.manual_seed(1)
    q, k, v = (torch.randn(1, 1, 40, 4) for _ in range(3))
    out, _ = ProbAttention(True, factor=1, causal_selection=causal).eval()(q, k, v)
    cumsum = v.cumsum(-2)
    lazy = torch.isclose(out, cumsum, atol=1e-5).all(-1)
    assert 0 < int(lazy.sum()) < 40
    if not causal:  # the reference code's selection: exactly u = ceil(ln 40) = 4 active
        assert int(lazy.sum()) == 40 - 4


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
                                   conv.weight, conv.bias).transpose(1, 2)
    assert conv.bias is not None and conv.bias.shape == (8,)  # the reference code's conv has one
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
    ("label_len", 200, "model.net.label_len: expected label_len <= seq_len (96), got 200"),
    ("d_model", 100, "model.net.d_model: expected a multiple of n_heads (8), got 100"),
    ("attn", "sparse", "model.net.attn: expected one of ['prob', 'full'], got 'sparse'"),
    ("embed", "x", "model.net.embed: expected one of ['timeF', 'fixed', 'learned'], got 'x'"),
    ("pred_len", 0, "model.net.pred_len: expected a positive integer, got 0"),
    ("freq", "fortnight", "data.freq: expected a pandas offset alias"),
    ("padding", 2, "model.net.padding: expected 0 (zeros) or 1 (ones), got 2"),
    ("decoder_selection", "top", "model.net.decoder_selection: expected one of ['global', "
     "'causal'], got 'top'"),
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


# --- fast dropout -------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.05, 0.3, 0.9])
def test_dropout_keep_rate_and_scale(p):
    torch.manual_seed(0)
    x = torch.rand(1_000_000) + 0.5
    y = dropout(x, p)
    kept = y != 0
    n = x.numel()
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * (p * (1 - p) / n) ** 0.5
    assert torch.allclose(y[kept], x[kept] / (1 - p))
    # no structure: the drop rate is the same on both halves and at even / odd positions
    for part in (kept[: n // 2], kept[n // 2:], kept[0::2], kept[1::2]):
        assert abs(part.float().mean().item() - (1 - p)) < 5 * (p * (1 - p) / part.numel()) ** 0.5


def test_drop_indices_sorted_unique_in_range():
    torch.manual_seed(0)
    for n, p in [(1, 0.5), (10, 0.99), (12345, 0.05), (100_000, 0.5)]:
        index = drop_indices(n, p)
        assert index.dtype == torch.int64
        assert bool((index[1:] > index[:-1]).all())
        assert index.numel() == 0 or (index[0] >= 0 and index[-1] < n)
    assert drop_indices(0, 0.5).numel() == 0


def test_dropout_seeded_and_backward_uses_the_same_mask():
    x = torch.randn(4, 50, 32, requires_grad=True)
    torch.manual_seed(3)
    a = dropout(x, 0.2)
    torch.manual_seed(3)
    b = dropout(x, 0.2)
    assert torch.equal(a, b)
    a.sum().backward()
    assert torch.equal(x.grad, (a != 0).float() / 0.8)
    assert dropout(x, 0.2, training=False) is x
    bf = torch.randn(64, 64).bfloat16()
    out = dropout(bf, 0.05)
    kept = out != 0
    assert out.dtype == torch.bfloat16  # kept values are the bf16 rounding of x / (1 - p)
    assert torch.equal(out[kept], (bf.float() / 0.95).bfloat16()[kept])


def test_fused_dropouts_equal_their_unfused_forms():
    x = torch.randn(3, 40, 16, requires_grad=True)
    y = torch.randn(3, 40, 16, requires_grad=True)
    torch.manual_seed(5)
    fused = dropout_add(x, y, 0.3)
    fused.backward(torch.arange(fused.numel(), dtype=torch.float32).view_as(fused))
    grads = x.grad.clone(), y.grad.clone()
    x.grad = y.grad = None
    torch.manual_seed(5)
    plain = x + dropout(y, 0.3)
    plain.backward(torch.arange(plain.numel(), dtype=torch.float32).view_as(plain))
    assert torch.allclose(fused, plain, atol=1e-6)
    assert torch.allclose(grads[0], x.grad) and torch.allclose(grads[1], y.grad)
    for activation, fn in (("gelu", torch.nn.functional.gelu), ("relu", torch.relu)):
        h = torch.randn(3, 40, 64, requires_grad=True)
        torch.manual_seed(6)
        fused = activation_dropout(h, 0.2, activation=activation)
        (g_fused,) = torch.autograd.grad(fused.square().sum(), h)
        torch.manual_seed(6)
        plain = dropout(fn(h), 0.2)
        (g_plain,) = torch.autograd.grad(plain.square().sum(), h)
        assert torch.allclose(fused, plain, atol=1e-6)
        assert torch.allclose(g_fused, g_plain, atol=1e-5)


def test_full_attention_with_dropout_matches_its_definition():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 12, 8) for _ in range(3))
    for masked in (False, True):
        attention = FullAttention(masked, attention_dropout=0.25).train()
        torch.manual_seed(1)
        out, _ = attention(q, k, v)
        scores = q @ k.transpose(-2, -1) / 8**0.5
        if masked:
            scores = scores.masked_fill(torch.ones(12, 12, dtype=torch.bool).triu(1), -1e9)
        torch.manual_seed(1)
        expected = dropout(torch.softmax(scores, -1), 0.25) @ v
        assert torch.allclose(out, expected, atol=1e-5)


# --- chunked attention, time-major conv, fused projections ---------------------------------------

def explicit_attention(q, k, v, scale, causal=False, limit=None):
    scores = q @ k.transpose(-2, -1) * scale
    if causal:
        scores = scores.masked_fill(torch.ones(q.size(-2), k.size(-2), dtype=torch.bool).triu(1),
                                    float("-inf"))
    if limit is not None:
        scores = scores.masked_fill(torch.arange(k.size(-2)) > limit.unsqueeze(-1), float("-inf"))
    return torch.softmax(scores, -1) @ v


@pytest.mark.parametrize("block", [2**21, 100, 7])
@pytest.mark.parametrize("mask", ["none", "causal", "limit"])
def test_chunked_attention_equals_softmax_attention(monkeypatch, block, mask):
    monkeypatch.setattr(chunked, "BLOCK_SCORES", block)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 30, 8, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(2, 3, 20, 8, dtype=torch.float64, generator=g, requires_grad=True)
    v = torch.randn(2, 3, 20, 5, dtype=torch.float64, generator=g, requires_grad=True)
    limit = torch.randint(0, 20, (2, 3, 30), generator=g) if mask == "limit" else None
    out = chunked.chunked_attention(q, k, v, 0.3, causal=mask == "causal", limit=limit)
    expected = explicit_attention(q, k, v, 0.3, mask == "causal", limit)
    assert torch.allclose(out, expected, atol=1e-12)
    grad = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), grad),
                    torch.autograd.grad(expected, (q, k, v), grad)):
        assert torch.allclose(a, b, atol=1e-12)


def test_chunked_attention_dropout_gradients_and_rate(monkeypatch):
    monkeypatch.setattr(chunked, "BLOCK_SCORES", 40)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, n, 4, dtype=torch.float64, generator=g, requires_grad=True)
               for n in (9, 7, 7))

    def seeded(q, k, v):
        torch.manual_seed(3)
        return chunked.chunked_attention(q, k, v, 0.5, dropout_p=0.25)

    assert torch.autograd.gradcheck(seeded, (q, k, v))
    # with v = identity rows the output is the dropped, rescaled attention matrix itself
    torch.manual_seed(0)
    eye = torch.eye(500, dtype=torch.float64).expand(1, 1, 500, 500)
    weights = chunked.chunked_attention(torch.zeros(1, 1, 400, 4, dtype=torch.float64),
                                        torch.zeros(1, 1, 500, 4, dtype=torch.float64), eye, 1.0,
                                        dropout_p=0.2)
    kept = weights != 0
    assert abs(kept.double().mean().item() - 0.8) < 0.005
    assert torch.allclose(weights[kept], torch.full_like(weights[kept], 1 / 500 / 0.8))


def test_attention_paths_agree(monkeypatch):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 50, 8) for _ in range(3))
    for masked in (False, True):
        small = FullAttention(masked, attention_dropout=0.0).eval()(q, k, v)[0]
        monkeypatch.setattr(attend, "EXPLICIT_MAX_SCORES", 0)
        large = FullAttention(masked, attention_dropout=0.0).eval()(q, k, v)[0]
        monkeypatch.undo()
        assert torch.allclose(small, large, atol=1e-5)
    for masked in (False, True):  # ProbSparse with the chunked path for its active queries
        small = ProbAttention(masked, factor=1).eval()(q, k, v)[0]
        monkeypatch.setattr(attend, "EXPLICIT_MAX_SCORES", 0)
        large = ProbAttention(masked, factor=1).eval()(q, k, v)[0]
        monkeypatch.undo()
        assert torch.allclose(small, large, atol=1e-5)


def test_sampled_scores_paths_agree(monkeypatch):
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 70, 8), torch.randn(2, 3, 90, 8)
    index = torch.randint(90, (70, 6))
    direct = torch.einsum("bhld,bhlsd->bhls", q, k[:, :, index])
    assert torch.allclose(probsparse.sampled_scores(q, k, index), direct, atol=1e-5)
    monkeypatch.setattr(probsparse, "SCORE_BLOCK", 500)  # dense, in (head, query) blocks
    assert torch.allclose(probsparse.sampled_scores(q, k, index), direct, atol=1e-5)
    monkeypatch.setattr(probsparse, "DENSE_SCORE_RATIO", {torch.float32: 0})  # gather keys
    monkeypatch.setattr(probsparse, "SCORE_BLOCK", 0)
    assert torch.allclose(probsparse.sampled_scores(q, k, index), direct, atol=1e-5)


@pytest.mark.parametrize("c_in", [3, 70])
def test_time_major_conv_and_pool_equal_torch_modules(c_in):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(c_in, 16, 3, padding=1, padding_mode="circular").double()
    x = torch.randn(2, 11, c_in, dtype=torch.float64)
    expected = conv(x.transpose(1, 2)).transpose(1, 2)
    assert torch.allclose(circular_conv3(x, conv.weight, conv.bias), expected, atol=1e-12)
    pool = torch.nn.MaxPool1d(3, 2, 1)
    assert torch.equal(max_pool_time(x), pool(x.transpose(1, 2)).transpose(1, 2))


def test_distilling_layer_equals_its_definition():
    torch.manual_seed(0)
    layer = ConvLayer(16).train()
    x = torch.randn(3, 13, 16)
    expected = layer.max_pool(layer.activation(layer.norm(layer.down_conv(x.transpose(1, 2)))))
    assert torch.allclose(layer(x), expected.transpose(1, 2), atol=1e-5)


def test_feed_forward_equals_its_definition_under_a_seed():
    from informer.nn.encoder import FeedForward

    torch.manual_seed(0)
    ff = FeedForward(8, 32, dropout=0.3, activation="gelu").train()
    x = torch.randn(4, 10, 8)
    torch.manual_seed(1)
    out = ff(x)
    torch.manual_seed(1)
    hidden = dropout(torch.nn.functional.gelu(ff.linear1(x)), 0.3)
    assert torch.allclose(out, dropout(ff.linear2(hidden), 0.3), atol=1e-5)


def test_fused_projections_and_decoder_slice_change_nothing():
    torch.manual_seed(0)
    layer = AttentionLayer(FullAttention(False, attention_dropout=0.0), 16, 2).eval()
    x, y = torch.randn(2, 9, 16), torch.randn(2, 5, 16)
    for queries, keys in ((x, x), (y, x)):
        out, _ = layer(queries, keys, keys)
        heads = [p(t).view(2, -1, 2, 8).transpose(1, 2) for p, t in
                 ((layer.query_projection, queries), (layer.key_projection, keys),
                  (layer.value_projection, keys))]
        expected = torch.softmax(heads[0] @ heads[1].transpose(-2, -1) / 8**0.5, -1) @ heads[2]
        expected = layer.out_projection(expected.transpose(1, 2).reshape(2, -1, 16))
        assert torch.allclose(out, expected, atol=1e-5)
    c = InformerConfig(seq_len=24, label_len=12, pred_len=6, d_model=16, n_heads=2, d_ff=32,
                       d_layers=2)
    net = Informer(c).eval()
    x, xm, ym = inputs(c)
    enc, _ = net.encoder(net.enc_embedding(x, xm))
    dec = net.dec_embedding(net.decoder_input(x), ym)
    assert torch.allclose(net.decoder(dec, enc, keep_last=6), net.decoder(dec, enc)[:, -6:],
                          atol=1e-6)


def test_bf16_autocast_keeps_a_bf16_residual_stream_close_to_fp32():
    torch.manual_seed(0)
    c = InformerConfig(seq_len=32, label_len=16, pred_len=8, d_model=32, n_heads=4, d_ff=64)
    net = Informer(c).eval()
    x, xm, ym = inputs(c)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net.enc_embedding(x, xm).dtype == torch.bfloat16
        low = net.predict(x, xm, ym).float()
    high = net.predict(x, xm, ym)
    assert (low - high).norm() / high.norm() < 0.05
