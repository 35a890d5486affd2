"""ProbSparse attention against the paper's algorithm spelled out: both decoder selections."""

from __future__ import annotations

import math

import pytest
import torch

from informer.config import InformerConfig
from informer.nn import AttentionLayer, Informer, ProbAttention, probsparse


def reference_probsparse(q, k, v, factor, masked, causal=False):
    """The paper's algorithm, spelled out (eval mode: keys sampled with ``eval_seed``).

    Masked, ``causal=False`` (the reference code): keys sampled from the whole input, the top u
    queries of the whole input attend to keys 0..t, the others output cumsum(V). ``causal``:
    query t samples keys 0..t and is active when it ranks in the top u of queries 0..t.
    """
    b, h, length, d = q.shape
    n_sample = min(factor * math.ceil(math.log(length)), length)  # == n_top when L_Q == L_K
    gen = torch.Generator().manual_seed(ProbAttention.eval_seed)
    index = probsparse.sample_index(length, length, n_sample, masked and causal, q.device, gen)
    sampled = torch.einsum("bhld,bhlsd->bhls", q, k[:, :, index])
    sparsity = sampled.amax(-1) - sampled.sum(-1) / length
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    top = sparsity.topk(n_sample, -1).indices
    if masked:
        scores = scores.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), -1e9)
        if causal:
            higher = sparsity.unsqueeze(-1) > sparsity.unsqueeze(-2)  # [s, t]: M_s > M_t
            rank = (higher & torch.ones(length, length, dtype=torch.bool).triu()).sum(-2)
            active = rank < n_sample
        else:
            active = torch.zeros(b, h, length, dtype=torch.bool).scatter(-1, top, True)
        return torch.where(active.unsqueeze(-1), torch.softmax(scores, -1) @ v, v.cumsum(-2))
    out = (torch.softmax(scores, -1) @ v).gather(-2, top.unsqueeze(-1).expand(b, h, -1, d))
    context = v.mean(-2, keepdim=True).expand(b, h, length, d).clone()
    return context.scatter(-2, top.unsqueeze(-1).expand(b, h, -1, d), out)


@pytest.mark.parametrize(("masked", "causal"), [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize(("length", "d", "factor"),
                         [(40, 8, 3), (40, 8, 2), (300, 4, 1), (600, 2, 1)])
def test_probsparse_matches_reference_on_every_path(masked, causal, length, d, factor):
    # (40, 8, 3): masked, a quarter or more of the queries active: one product for all rows;
    # (300, 4, 1) and (600, 2, 1): sampled keys gathered instead of dense q k^T; masked with
    # fewer active: attention computed for the active ones only
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, length, d, dtype=torch.float64) for _ in range(3))
    out, _ = ProbAttention(masked, factor=factor, causal_selection=causal).eval()(q, k, v)
    expected = reference_probsparse(q, k, v, factor, masked, causal)
    assert torch.allclose(out, expected, atol=1e-10)


def test_global_selection_attends_with_exactly_u_queries_and_causal_with_more():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 336, 4) for _ in range(3))
    v = v + 10.0  # cumsum(V) rows are far from any softmax average of V
    u = 5 * math.ceil(math.log(336))  # 30
    counts = {}
    for causal in (False, True):
        out, _ = ProbAttention(True, factor=5, causal_selection=causal).eval()(q, k, v)
        counts[causal] = (~torch.isclose(out, v.cumsum(-2), atol=1e-4).all(-1)).sum(-1)
    assert torch.all(counts[False] == u)
    assert torch.all(counts[True] > u)


def test_network_passes_decoder_selection_to_its_masked_attention():
    for selection in ("global", "causal"):
        c = InformerConfig(seq_len=16, label_len=8, pred_len=4, d_model=8, n_heads=2,
                           decoder_selection=selection)
        net = Informer(c)
        inner = net.decoder.layers[0].self_attention.inner_attention
        assert (inner.mask_flag, inner.causal_selection) == (True, selection == "causal")
    assert InformerConfig().decoder_selection == "global"  # the reference code's behaviour


def test_causal_ranking_in_blocks_equals_the_quadratic_rank():
    torch.manual_seed(0)
    sparsity = torch.randn(2, 3, 500)
    sparsity[..., 100:110] = sparsity[..., 90:100]  # ties
    higher = sparsity.unsqueeze(-1) > sparsity.unsqueeze(-2)
    rank = (higher & torch.ones(500, 500, dtype=torch.bool).triu()).sum(-2)
    for block in (1, 7, 64, 1000):
        assert torch.equal(probsparse.causal_active(sparsity, 12, block), rank < 12)


def test_masked_probsparse_on_long_inputs_is_causal_and_has_gradients():
    torch.manual_seed(0)
    layer = AttentionLayer(ProbAttention(True, factor=1, causal_selection=True), d_model=8,
                           n_heads=2).eval()
    x = torch.randn(1, 400, 8, requires_grad=True)
    base, _ = layer(x, x, x)
    for t in (3, 150, 398):
        changed = x.detach().clone()
        changed[:, t + 1:] += 3.0
        out, _ = layer(changed, changed, changed)
        assert torch.allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-5), t
    base.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_global_selection_on_long_inputs_has_gradients_for_the_active_queries():
    torch.manual_seed(0)
    layer = AttentionLayer(ProbAttention(True, factor=1), d_model=8, n_heads=2).train()
    x = torch.randn(1, 400, 8, requires_grad=True)
    out, _ = layer(x, x, x)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in layer.parameters())


def test_artifacts_keep_their_decoder_selection(tmp_path):
    """New artifacts record the selection; ones written before the field existed load causal."""
    import json

    from informer.artifact import CONFIG, MANIFEST, load_model, save_artifact
    from informer.data.series import SeriesData
    from informer.data.sources import sha256_file
    from tests.conftest import write_series

    schema = SeriesData.fit(write_series(tmp_path / "s.csv"), features="S", seq_len=16,
                            label_len=8, pred_len=4).schema
    c = InformerConfig(enc_in=1, dec_in=1, c_out=1, seq_len=16, label_len=8, pred_len=4,
                       d_model=8, n_heads=2, d_ff=16)
    artifact = save_artifact(tmp_path / "model", Informer(c).eval(), schema)
    assert load_model(artifact).net.config.decoder_selection == "global"
    config = json.loads((artifact / CONFIG).read_text())
    del config["model"]["decoder_selection"]  # as written by the library before the field
    (artifact / CONFIG).write_text(json.dumps(config))
    manifest = json.loads((artifact / MANIFEST).read_text())
    manifest["files"][CONFIG] = sha256_file(artifact / CONFIG)
    (artifact / MANIFEST).write_text(json.dumps(manifest))
    inner = load_model(artifact).net.decoder.layers[0].self_attention.inner_attention
    assert inner.causal_selection


def test_probsparse_applies_no_attention_dropout_as_documented():
    """``attention_dropout`` is accepted and not applied (as in the reference code)."""
    q, k, v = (torch.randn(2, 2, 24, 8) for _ in range(3))
    outputs = []
    for rate in (0.0, 0.9):
        attention = ProbAttention(False, factor=3, attention_dropout=rate).train()
        torch.manual_seed(5)  # the same key sample in training mode
        outputs.append(attention(q, k, v)[0])
    assert torch.equal(*outputs)
