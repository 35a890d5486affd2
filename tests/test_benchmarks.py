"""The benchmark scripts' own arithmetic, against figures computed here from the CSV."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import dropout_noise  # noqa: E402
import interval_quality  # noqa: E402
import naive_baselines  # noqa: E402
import random_draws  # noqa: E402
import reference_checkpoints  # noqa: E402
import reference_network  # noqa: E402
import reproduce_paper  # noqa: E402
import scaler_effects  # noqa: E402
import training_curves  # noqa: E402


def test_persistence_and_window_mean_match_a_direct_computation(ett_dir):
    """ETTh1 S 720/168/24: OT standardised with the train rows' statistics (the first 12
    months), test windows from row 11520 - 720 to the end of month 20, every window scored."""
    ot = pd.read_csv(ett_dir / "ETTh1.csv")["OT"].to_numpy()
    train = ot[:8640]
    z = (ot - train.mean()) / train.std()  # population std, as the scaler uses
    test = z[11520 - 720:14400]
    n = len(test) - 720 - 24 + 1
    inputs = np.stack([test[i:i + 720] for i in range(n)])
    future = np.stack([test[i + 720:i + 744] for i in range(n)])
    persistence = ((future - inputs[:, -1:]) ** 2).mean()
    seasonal = ((future - inputs[:, -24:]) ** 2).mean()
    window_mean = np.abs(future - inputs.mean(1, keepdims=True)).mean()

    row = naive_baselines.scores("etth1_S_24")
    assert row["windows"] == n == 2857
    assert row["persistence MSE"] == pytest.approx(persistence, rel=1e-4)
    assert row["window mean MAE"] == pytest.approx(window_mean, rel=1e-4)
    assert row["seasonal naive MSE"] == pytest.approx(seasonal, rel=1e-4)


def test_interval_quality_table_takes_mean_and_spread_over_seeds():
    runs = [{"test/mse": 0.70, "test/coverage_80": 0.80, "test/skill_seasonal_naive": -0.5,
             "seconds": 60.0},
            {"test/mse": 0.72, "test/coverage_80": 0.84, "test/skill_seasonal_naive": -0.7,
             "seconds": 62.0, "level_jump": 0.5}]
    text = interval_quality.table({("quickstart", "preset"): runs,
                                   ("quickstart", "quickstart01"): [{"test/mse": 0.78}]})
    header, rule, first, second = text.splitlines()
    assert header.startswith("| setting | variant | seeds | test MSE | 80% coverage |")
    cells = [c.strip() for c in first.strip("|").split("|")]
    assert cells[:5] == ["quickstart", "preset", "2", "0.710 ± 0.014", "82.0% ± 2.8%"]
    assert cells[7] == "-0.600 ± 0.141" and cells[9] == "0.50" and cells[10] == "61 ± 1"
    assert second.split("|")[4].strip() == "0.780" and second.count("| - ") == 7


def test_multivariate_baselines_score_every_column():
    x, y, season = naive_baselines.split_windows("etth1_M_24")
    assert x.shape == (2857, 48, 7) and y.shape == (2857, 24, 7) and season == 24
    # seasonal naive: each future hour repeats the same hour a day before
    row = naive_baselines.scores("etth1_M_24")
    expected = ((x[:, -24:] - y) ** 2).mean().item()
    assert row["seasonal naive MSE"] == pytest.approx(expected, rel=1e-6)


def test_unknown_option_is_one_error_line():
    with pytest.raises(SystemExit, match="expected one of \\['experiment', 'record'\\]"):
        naive_baselines.main(["recrod=true"])


def test_reproduce_paper_combines_variants_and_tables_each_with_its_seeds():
    assert reproduce_paper.variant_overrides("stack+causal") == [
        "model.net.s_layers=[3,2,1]", "model.net.decoder_selection=causal"]
    assert reproduce_paper.variant_overrides("paper") == []
    with pytest.raises(SystemExit, match="variant: expected some of"):
        reproduce_paper.parse(["variant=paper,stack+global"])
    runs = {("etth1_M_168", "paper"): [{"test/mse": 0.9, "test/mae": 0.7},
                                       {"test/mse": 1.0, "test/mae": 0.8}]}
    lines = reproduce_paper.table(runs, ["paper", "causal"]).splitlines()
    assert len(lines) == 3  # header, rule, one row: variants without runs are left out
    assert lines[2] == ("| etth1_M_168 | paper | 0.931 | 0.752 | 0.950 ± 0.071 | 0.750 ± 0.071 "
                        "| +2.0% | 2 | 0.900 / 1.000 |")



def test_reproduce_paper_adds_new_seeds_to_the_recorded_ones(tmp_path, monkeypatch):
    """A section's table holds the runs recorded before (docs/runs/<section>.json) and the
    finished ones; a run finished again replaces its recorded figures; seeds 2021, 1, 2 first,
    then the others by number (3 before 10)."""
    monkeypatch.setattr(reproduce_paper, "LEDGER", tmp_path)
    assert reproduce_paper.load_ledger("bias") == {}
    before = {"etth1_M_48/paper/seed2021": {"test/mse": 0.854, "test/mae": 0.730},
              "etth1_M_48/paper/seed2": {"test/mse": 9.0, "test/mae": 9.0},
              "etth1_M_24/paper/seed2021": {"test/mse": 0.5, "test/mae": 0.5}}
    reproduce_paper.save_ledger("bias", before)
    assert reproduce_paper.load_ledger("bias") == before
    done = [(("etth1_M_48", "paper", "2"), {"test/mse": 0.7, "test/mae": 0.6, "extra": 1.0}),
            (("etth1_M_48", "paper", "10"), {"test/mse": 0.6, "test/mae": 0.6}),
            (("etth1_M_48", "paper", "3"), {"test/mse": 0.5, "test/mae": 0.5}),
            (("etth1_M_48", "paper", "1"), {"test/mse": 0.8, "test/mae": 0.65})]
    ledger, results, seeds = reproduce_paper.merge(
        reproduce_paper.load_ledger("bias"), done, ["etth1_M_48"], ["paper"])
    assert seeds == ["2021", "1", "2", "3", "10"]
    assert [r["test/mse"] for r in results[("etth1_M_48", "paper")]] == [0.854, 0.8, 0.7, 0.5,
                                                                         0.6]
    assert list(results) == [("etth1_M_48", "paper")]  # M 24 is recorded, but not asked for
    assert ledger["etth1_M_48/paper/seed2"] == {"test/mse": 0.7, "test/mae": 0.6}
    assert ledger["etth1_M_24/paper/seed2021"] == before["etth1_M_24/paper/seed2021"]
    row = reproduce_paper.table(results, ["paper"]).splitlines()[2]
    assert row.endswith("| 5 | 0.854 / 0.800 / 0.700 / 0.500 / 0.600 |")

def test_scaler_effects_rescores_a_run_on_the_whole_files_scale(trained, ett_dir, monkeypatch):
    """Train scale: the run's own test MSE/MAE. File scale: each column's errors over the whole
    CSV's population std, so MSE moves by a factor between the smallest and the largest
    ``(train std / file std)^2`` of ETTh1's columns."""
    import json

    monkeypatch.setenv("INFORMER_DATA_DIR", str(ett_dir))
    row = scaler_effects.errors_on_both_scales(trained / "model")
    metrics = json.loads((trained / "metrics.json").read_text())
    assert row["train mse"] == pytest.approx(metrics["test/mse"], rel=1e-6)
    assert row["train mae"] == pytest.approx(metrics["test/mae"], rel=1e-6)
    values = pd.read_csv(ett_dir / "ETTh1.csv").iloc[:, 1:].to_numpy()
    ratio = (values[:8640].std(0) / values.std(0)) ** 2
    assert ratio.min() < row["file mse"] / row["train mse"] < ratio.max()
    lines = scaler_effects.table({("etth1_M_336", "paper"): [row, row]}).splitlines()
    assert lines[2].startswith("| etth1_M_336 | paper | 1.128 | 0.873 | ")
    assert lines[2].endswith(f"| {row['file mse'] / 1.128 - 1:+.1%} | 2 |")


def test_eval_sampling_reproduces_the_recorded_test_mse_and_restores_eval_mode(trained, ett_dir):
    """Eval seed 0 is the sample every evaluation uses: the run's own test MSE comes back; a
    fresh-sampling draw scores in eval mode too and leaves every layer in eval mode."""
    import json

    from informer.nn.probsparse import ProbAttention

    table = reference_checkpoints.sampling([trained], [0, 1], 1, str(ett_dir))
    row = table.splitlines()[2].strip("| ").split(" | ")
    seed0, seed1, fresh, largest = (float(v) for v in row[1:])
    metrics = json.loads((trained / "metrics.json").read_text())
    assert seed0 == pytest.approx(metrics["test/mse"], abs=1e-4)
    assert largest == pytest.approx(max(seed0, seed1, fresh) - min(seed0, seed1, fresh),
                                    abs=2e-4)
    assert ProbAttention.eval_seed == 0

    from informer.cli.evaluate import load_any, series_of
    from informer.evaluation import evaluate

    loaded, data = load_any(trained / "model")
    dataset = series_of(loaded, data, str(ett_dir)).dataset("test")
    draws = [reference_checkpoints.fresh_samples(loaded.net, loaded.schema, dataset, seed)
             for seed in (1000, 1000, 1001)]
    assert draws[0] == pytest.approx(fresh, abs=1e-4) and draws[0] == draws[1]  # same seed
    assert draws[2] != draws[0]  # another draw of keys, another score
    fixed = evaluate(loaded.net, loaded.schema, dataset, 32, "auto")["mse"]
    assert fixed == pytest.approx(seed0, abs=1e-4) and fixed not in draws
    assert not any(m.training for m in loaded.net.modules())


def test_reference_setting_names_give_the_run_settings():
    name = ("informer_ETTh1_ftM_sl96_ll48_pl48_dm512_nh8_el2_dl1_df2048_atprob_fc5_ebtimeF_"
            "dtTrue_mxTrue_Run3_0")
    fields = reference_checkpoints.parse_setting(name)
    assert (fields["features"], fields["seq"], fields["label"], fields["pred"]) == \
        ("M", "96", "48", "48")
    assert (fields["attn"], fields["dt"], fields["mx"], fields["des"]) == \
        ("prob", "True", "True", "Run3_0")
    with pytest.raises(SystemExit) as exc:
        reference_checkpoints.parse_setting("informer_ETTm1_ftM_sl96")
    assert str(exc.value).startswith("error: informer_ETTm1_ftM_sl96: expected a reference "
                                     "ETTh1 Informer setting name")


def test_reference_comparison_names_a_directory_that_is_not_the_reference_code(tmp_path):
    with pytest.raises(SystemExit) as exc:
        reference_network.reference_class(tmp_path)
    assert str(exc.value) == (f"error: --reference {tmp_path}: expected a checkout of "
                              "zhouhaoyi/Informer2020 (no models/model.py there)")


def test_reproduce_paper_keeps_the_per_epoch_train_loss_and_validation_mse(trained, tmp_path):
    """``curve``: one ``[train loss, validation MSE]`` per epoch, read from the run's CSV log."""
    import json

    metrics = json.loads((trained / "metrics.json").read_text())
    assert reproduce_paper.curve(trained) == [[round(metrics["train/loss_epoch"], 4),
                                               round(metrics["val/mse"], 4)]]
    assert reproduce_paper.curve(tmp_path) == []


def test_reproduce_paper_keeps_no_curve_for_a_log_that_misses_its_first_epochs(tmp_path):
    """A run resumed after its CSV log was lost logs from epoch 1 on: its curve would be
    shifted by an epoch, so none is kept (the ledger keeps the run's ``source`` note)."""
    (tmp_path / "csv").mkdir()
    rows = ["epoch,step,train/loss_epoch,val/mse", "1,99,0.30,0.85", "2,149,0.23,0.87"]
    (tmp_path / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")
    assert reproduce_paper.curve(tmp_path) == []
    (tmp_path / "csv" / "metrics.csv").write_text("\n".join([*rows, "0,49,0.45,0.84"]) + "\n")
    assert reproduce_paper.curve(tmp_path) == [[0.45, 0.84], [0.3, 0.85], [0.23, 0.87]]
    ledger, _, _ = reproduce_paper.merge(
        {}, [(("etth1_M_48", "paper", "17"), {"test/mse": 0.78, "source": "resumed", "x": 1})],
        ["etth1_M_48"], ["paper"])
    assert ledger == {"etth1_M_48/paper/seed17": {"test/mse": 0.78, "source": "resumed"}}


REFERENCE_LOG = """Use CPU
>>>>>>>start training : informer_ETTh1_ftM_sl96_ll48_pl48_dm512_nh8_el2_dl1_df2048_atprob_fc5\
_ebtimeF_dtTrue_mxTrue_Run3_0>>>>>>>>>>>>>>>>>>>>>>>>>>
train 8497
\titers: 100, epoch: 1 | loss: 0.4000000
Epoch: 1, Steps: 265 | Train Loss: 0.4500000 Vali Loss: 0.8500000 Test Loss: 0.7000000
Validation loss decreased (inf --> 0.850000).  Saving model ...
Epoch: 2, Steps: 265 | Train Loss: 0.2900000 Vali Loss: 0.8100000 Test Loss: 0.6600000
Epoch: 3, Steps: 265 | Train Loss: 0.2200000 Vali Loss: 0.8100000 Test Loss: 0.6900000
Epoch: 4, Steps: 265 | Train Loss: 0.2000000 Vali Loss: 0.8800000 Test Loss: 0.7100000
""".replace("\\\n", "")


def test_training_curves_reads_the_reference_codes_log(tmp_path):
    """Run name and horizon from the setting line; the kept epoch is the first with the lowest
    validation loss; the final ``mse:`` line is the test MSE, else the kept epoch's test loss."""
    log = tmp_path / "run3.log"
    log.write_text(REFERENCE_LOG)
    key, run = training_curves.parse_reference_log(log)
    assert key == ("etth1_M_48/reference/informer_ETTh1_ftM_sl96_ll48_pl48_dm512_nh8_el2_dl1"
                   "_df2048_atprob_fc5_ebtimeF_dtTrue_mxTrue_Run3_0")
    assert run["curve"] == [[0.45, 0.85], [0.29, 0.81], [0.22, 0.81], [0.2, 0.88]]
    assert (run["kept"], run["test/mse"], run["finished"]) == (2, 0.66, False)
    log.write_text(REFERENCE_LOG + "test shape: (88, 32, 48, 7)\nmse:0.6612, mae:0.6\n")
    assert training_curves.parse_reference_log(log)[1]["test/mse"] == 0.6612
    log.write_text("Use CPU\n")
    with pytest.raises(SystemExit, match=f"error: reference log {log}: expected"):
        training_curves.parse_reference_log(log)


def test_training_curves_power_and_sampled_permutation_test(monkeypatch):
    """Runs a side = 2 (z[0.975] + z[0.8])^2 std^2 / difference^2 + z[0.975]^2 / 4 at the
    pooled sample std (here std^2 = 0.02, difference 0.2: 7.85 + 0.96, so 9), and at least the
    4 a side that a permutation test needs to reach p <= 0.05 (2 / C(8, 4)); past the exact
    limit the p-value comes from random relabellings and lands near the exact one."""
    assert training_curves.runs_for_power([0.7, 0.9], [0.6]) == 9
    assert training_curves.runs_for_power([0.7, 0.72], [0.2, 0.22]) == 4
    assert training_curves.runs_for_power([0.5, 0.5], [0.5]) is None
    assert training_curves.runs_for_power([0.7], [0.6]) is None
    a, b = [0.85, 0.78, 0.87, 0.69, 0.61, 0.83, 0.77], [0.65, 0.72, 0.74, 0.66]
    exact = training_curves.permutation_p(a, b)
    monkeypatch.setattr(training_curves, "EXACT_LIMIT", 0)
    monkeypatch.setattr(training_curves, "SAMPLED", 20_000)
    assert not training_curves.exact(a, b)
    assert training_curves.permutation_p(a, b) == pytest.approx(exact, abs=0.01)
    assert "sampled (20000 relabellings) permutation p" in training_curves.comparisons(
        {"paper": [{"test/mse": t} for t in a], "reference": [{"test/mse": t} for t in b]})


def test_training_curves_tables_and_permutation_test():
    """Exact permutation test: [1, 2, 3] against [4, 5, 6] is the most extreme of the 20
    relabellings on either side (p = 2/20); the tables hold per-epoch means and kept epochs."""
    assert training_curves.permutation_p([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.1)
    assert training_curves.permutation_p([1.0, 2.0], [1.0, 2.0]) == 1.0
    found = {"paper": [{"curve": [[0.4, 0.8], [0.3, 0.7]], "test/mse": 0.7},
                       {"curve": [[0.6, 0.9], [0.5, 1.0]], "test/mse": 0.9}],
             "reference": [{"curve": [[0.5, 0.9]], "test/mse": 0.6}]}
    curves = training_curves.curve_table(found).splitlines()
    assert curves[2] == "| 1 | 0.500 ± 0.141 (2) | 0.850 ± 0.071 (2) | 0.500 ± 0.000 (1) " \
                        "| 0.900 ± 0.000 (1) |"
    assert curves[3].endswith("| - | - |")
    summary = training_curves.summary_table(found, 0.8).splitlines()
    assert summary[2] == ("| paper | 2 | 1: 1, 2: 1 | 0.800 ± 0.141 (2) | 0.800 ± 0.141 (2) "
                          "| +0.0% | 0.700 / 0.900 |")
    assert "mean test MSE +0.200 (2 against 1 runs), exact permutation p = 0.67; 9 runs a side" \
        in training_curves.comparisons(found)
    runs = {"informer_ETTh1_ftM_x_Run3_0": {"curve": [[0.5, 0.9], [0.3, 0.8]], "kept": 2,
                                             "test_curve": [0.6, 0.7], "test/mse": 0.7,
                                             "finished": False}}
    assert training_curves.reference_table(runs).splitlines()[2] == \
        "| Run3_0 | 0.900 / 0.800 | 0.600 / 0.700 | 2 | 0.700 (kept epoch's) |"


def _tiny_arms(dropouts: dict[str, float], stock: set[str]) -> tuple[dict, object, dict]:
    """Tiny networks with one set of weights, one per arm (its dropout rate; ``stock``: with
    PyTorch's dropout), and one batch of random windows."""
    import contextlib

    import torch

    from informer.config import InformerConfig
    from informer.nn.model import Informer

    base = dict(enc_in=2, dec_in=2, c_out=2, seq_len=16, label_len=8, pred_len=8, d_model=16,
                n_heads=2, d_ff=32, e_layers=1, d_layers=1, attn="full")
    torch.manual_seed(0)
    weights = Informer(InformerConfig(**base)).state_dict()
    arms = {}
    for name, p in dropouts.items():
        net = Informer(InformerConfig(**base, dropout=p))
        net.load_state_dict(weights)
        net.train()
        context = dropout_noise.stock_dropout if name in stock else contextlib.nullcontext
        arms[name] = (net.predict, list(net.parameters()), False, context)
    g = torch.Generator().manual_seed(1)
    batch = {"x": torch.randn(16, 16, 2, generator=g), "x_mark": torch.rand(16, 16, 4, generator=g),
             "y": torch.randn(16, 16, 2, generator=g), "y_mark": torch.rand(16, 16, 4, generator=g)}
    return arms, InformerConfig(**base), batch


def test_dropout_noise_finds_a_changed_rate_and_not_the_sparse_dropout():
    arms, config, batch = _tiny_arms({"stock": 0.1, "sparse": 0.1, "control": 0.2}, {"stock"})
    figures = dropout_noise.compare(arms, config, batch, draws=60)
    # the sparse dropout gives PyTorch's dropout's mean gradient and noise; twice the rate
    # gives neither (z: squared distance of the mean gradients over its sampling noise)
    assert 0.7 < figures["sparse"]["z"] < 1.5
    assert 0.8 < figures["sparse"]["noise"] / figures["stock"]["noise"] < 1.25
    assert figures["control"]["z"] > 3.0
    assert figures["control"]["noise"] / figures["stock"]["noise"] > 1.5
    assert "z" not in figures["stock"]
    rows = dropout_noise.table(figures)
    assert rows[2].startswith("| stock |") and rows[2].endswith("| 1.000 | - |")


def test_dropout_noise_moments_and_stock_dropout_restored():
    import torch

    import informer.nn.dropout as module

    g = torch.Generator().manual_seed(0)
    draws = torch.randn(50, 7, generator=g, dtype=torch.float64) * 2 + 1
    moments = dropout_noise.Moments(7)
    for row in draws:
        moments.add(float(row[0]), row)
    assert moments.noise() == pytest.approx(float(torch.cov(draws.T).trace()), rel=1e-9)
    mean, se = moments.loss_mean_se()
    assert mean == pytest.approx(float(draws[:, 0].mean()))
    assert se == pytest.approx(float(draws[:, 0].std() / 50 ** 0.5))
    fast = module._fast
    x = torch.ones(1000)
    with pytest.raises(RuntimeError), dropout_noise.stock_dropout():
        torch.manual_seed(3)
        stock = module.dropout(x, 0.3)
        torch.manual_seed(3)
        assert torch.equal(stock, torch.nn.functional.dropout(x, 0.3))
        raise RuntimeError
    assert module._fast is fast


def test_dropout_noise_refuses_bad_arguments_with_one_line(tmp_path, monkeypatch):
    wrong = tmp_path / ("informer_ETTh1_ftM_sl96_ll48_pl24_dm512_nh8_el2_dl1_df2048_atprob_fc5_"
                        "ebtimeF_dtTrue_mxTrue_Exp_0")
    wrong.mkdir()
    (wrong / "checkpoint.pth").write_bytes(b"")
    cases = {("--draws", "1"): "error: --draws 1: expected at least 2",
             ("--checkpoint", str(tmp_path / "none.pth")):
                 f"error: --checkpoint {tmp_path / 'none.pth'}: no such file",
             ("--checkpoint", str(wrong / "checkpoint.pth")):
                 f"error: --checkpoint {wrong / 'checkpoint.pth'}: expected a run of ETTh1 M "
                 "96/48/48 at the paper's sizes (the setting in its directory's name)"}
    for args, message in cases.items():
        monkeypatch.setattr(sys, "argv", ["dropout_noise.py", "--reference", str(tmp_path),
                                          *args])
        with pytest.raises(SystemExit) as exc:
            dropout_noise.main()
        assert str(exc.value) == message


FAKE_REFERENCE = '''
"""Stands in for the reference code's models/model.py: its constructor's names, this library's
network inside; checks the decoder input it is fed and leaves a mark that it was built."""
from pathlib import Path

import torch

from informer.config import InformerConfig
from informer.nn.model import Informer as Ours


class Informer(torch.nn.Module):
    def __init__(self, enc_in, dec_in, c_out, seq_len, label_len, out_len, factor=5,
                 d_model=512, n_heads=8, e_layers=3, d_layers=2, d_ff=512, dropout=0.0,
                 attn="prob", embed="fixed", freq="h", activation="gelu",
                 output_attention=False, distil=True, mix=True, device=None):
        super().__init__()
        self.label_len, self.out_len = label_len, out_len
        self.net = Ours(InformerConfig(
            enc_in=enc_in, dec_in=dec_in, c_out=c_out, seq_len=seq_len, label_len=label_len,
            pred_len=out_len, factor=factor, d_model=d_model, n_heads=n_heads,
            e_layers=e_layers, d_layers=d_layers, d_ff=d_ff, dropout=dropout, attn=attn,
            embed=embed, freq=freq, activation=activation, distil=distil, mix=mix))
        Path(__file__).with_name("built").write_text(f"{d_model} {label_len} {out_len}")

    def forward(self, x_enc, x_mark_enc, x_dec, x_mark_dec):
        assert torch.equal(x_dec[:, :self.label_len], x_enc[:, -self.label_len:])
        assert x_dec.size(1) == self.label_len + self.out_len
        assert not x_dec[:, self.label_len:].any()
        return self.net(x_enc, x_mark_enc, x_dec, x_mark_dec)
'''


def test_refnet_variant_trains_the_reference_network_in_this_loop(tmp_path, ett_dir):
    import json
    import os
    import subprocess

    from tests.conftest import TINY

    checkout = tmp_path / "Informer2020"
    (checkout / "models").mkdir(parents=True)
    (checkout / "models" / "model.py").write_text(FAKE_REFERENCE)
    out = tmp_path / "runs"
    env = {**os.environ, "INFORMER_DATA_DIR": str(ett_dir), "INFORMER_REFERENCE": str(checkout)}
    script = Path(reproduce_paper.__file__)
    done = subprocess.run([sys.executable, str(script), "experiment=etth1_M_48", "seed=1",
                           "variant=refnet", f"out={out}", "--", *TINY,
                           "trainer.limit_test_batches=2"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    run = out / "etth1_M_48" / "refnet" / "seed1"
    assert (checkout / "models" / "built").read_text() == "16 48 48"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/mse"] > 0 and metrics["epochs"] == 1
    assert not (run / "model").exists()  # the artifact format holds this library's network
    assert "| etth1_M_48 | refnet | 0.685 | 0.625 |" in done.stdout
    # and without the checkout's path: one line
    env.pop("INFORMER_REFERENCE")
    script = Path(reproduce_paper.__file__).with_name("reference_loop.py")
    fail = subprocess.run([sys.executable, str(script), "experiment=etth1_M_48"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert fail.returncode == 1
    assert fail.stderr.strip() == ("error: INFORMER_REFERENCE is not set: expected the path of "
                                   "a checkout of zhouhaoyi/Informer2020")


def test_training_curves_pools_refnet_with_the_reference_network():
    """``variant=refnet`` trains the reference network: it is compared with the reference code
    on its own, and pooled with it (not with this library's groups) in the network test."""
    found = {"paper": [{"test/mse": 0.8}, {"test/mse": 0.9}],
             "fp32": [{"test/mse": 1.0}],
             "refnet": [{"test/mse": 0.5}],
             "reference": [{"test/mse": 0.6}, {"test/mse": 0.7}]}
    lines = training_curves.comparisons(found).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "- paper against the reference code", "- fp32 against the reference code",
        "- refnet against the reference code",
        "- all of ours against the reference network (the reference code and refnet)"]
    # ours 0.8, 0.9, 1.0 (mean 0.9) against 0.6, 0.7, 0.5 (mean 0.6); exact over C(6, 3) = 20
    assert "mean test MSE +0.300 (3 against 3 runs), exact permutation p = 0.10" in lines[-1]
    without = {g: runs for g, runs in found.items() if g != "refnet"}
    assert training_curves.comparisons(without).splitlines()[-1].startswith(
        "- all of ours against the reference code: mean test MSE +0.250 (3 against 2 runs)")


def test_random_draws_lists_the_global_generator_calls_in_order_and_pairs_them():
    import torch

    from informer.config import InformerConfig
    from informer.nn.model import Informer

    net = Informer(InformerConfig(enc_in=2, dec_in=2, c_out=2, seq_len=16, label_len=8,
                                  pred_len=8, d_model=16, n_heads=2, d_ff=32, e_layers=1,
                                  d_layers=1)).train()
    g = torch.Generator().manual_seed(0)
    batch = {"x": torch.randn(4, 16, 2, generator=g), "x_mark": torch.rand(4, 16, 4, generator=g),
             "y_mark": torch.rand(4, 16, 4, generator=g)}
    with dropout_noise.stock_dropout():
        stock = random_draws.draws(net.predict, batch)
    # embedding, ProbSparse keys (5 * ceil(ln 16) of 16 per query), residual, feed-forward
    # hidden, residual; the decoder's cross attention and after it only its last pred_len rows
    d, r = "dropout", "randint"
    assert stock == [(d, (4, 16, 16)), (r, (16, 15)), (d, (4, 16, 16)), (d, (4, 16, 32)),
                     (d, (4, 16, 16)), (d, (4, 16, 16)), (r, (16, 15)), (d, (4, 16, 16)),
                     (d, (4, 2, 8, 16)), (d, (4, 8, 16)), (d, (4, 8, 32)), (d, (4, 8, 16))]
    sparse = random_draws.draws(net.predict, batch)  # uniforms for the gaps between drops
    assert [c for c, _ in sparse] == ["rand" if c == d else c for c, _ in stock]
    assert random_draws.draws(net.eval().predict, batch) == []  # own generator in eval mode
    reference = [stock[0], (d, (4, 32, 16)), (d, (4, 2, 16, 16)), (r, (16, 15))]
    rows, counts = random_draws.table(reference, stock[:3] + [stock[8]])
    assert rows[3] == "| 1 | `dropout` [4, 32, 16] | `randint` [16, 15] | another call |"
    assert counts == {"calls_reference": 4, "calls_ours": 4, "pairs_same": 1,
                      "pairs_another_call": 2, "pairs_fewer_elements": 1}
    assert random_draws.verdict((d, (4, 32, 16)), (d, (4, 16, 32))) == \
        "same elements, other layout"
    assert random_draws.verdict(None, stock[0]) == "only one side draws"


def test_reference_network_in_this_loop_draws_our_eval_keys_and_leaves_the_generator_alone():
    """The reference's ProbSparse samples from torch's global generator in eval mode too; in this
    loop it draws this library's eval-mode key sample and validation leaves the generator where
    it was, so the next epoch's batches are drawn alike."""
    import reference_loop
    import torch

    from informer.config import InformerConfig
    from informer.nn.probsparse import ProbAttention as Ours

    class ProbAttention(torch.nn.Module):  # draws as the reference's does: global generator
        def forward(self, shape):
            return torch.rand(shape)

    class Drawing(torch.nn.Module):  # the reference network's constructor and forward
        def __init__(self, enc_in, dec_in, c_out, seq_len, label_len, out_len, **kwargs):
            super().__init__()
            self.out_len, self.c_out = out_len, c_out
            self.attention = ProbAttention()

        def forward(self, x_enc, x_mark_enc, x_dec, x_mark_dec):
            return self.attention((x_enc.size(0), self.out_len, self.c_out))

    config = InformerConfig(enc_in=2, dec_in=2, c_out=2, seq_len=8, label_len=4, pred_len=4,
                            d_model=8, n_heads=2, d_ff=8)
    net = reference_loop.ReferenceNetwork(Drawing, config)
    x, marks = torch.zeros(3, 8, 2), torch.zeros(3, 8, 4)
    ours = torch.rand(3, 4, 2, generator=torch.Generator().manual_seed(Ours.eval_seed))
    torch.manual_seed(5)
    assert torch.equal(net.eval().predict(x, marks, marks), ours)
    assert torch.equal(net.predict(x, marks, marks), ours)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(3))  # the generator is where the seed put it
    torch.manual_seed(5)
    first = net.train().predict(x, marks, marks)
    assert not torch.equal(first, ours)
    assert not torch.equal(net.predict(x, marks, marks), first)  # training draws move on
