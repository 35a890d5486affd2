"""The reference code's trained checkpoints scored by this library's evaluation.

    python benchmarks/reference_checkpoints.py --reference ~/src/Informer2020 [--record]

Each ``checkpoints/<setting>/checkpoint.pth`` that the reference code's ``main_informer.py``
left in the checkout (ETTh1, the setting's name gives the lengths and sizes) is loaded
(``weights_only=True``) into the reference network, its weights are copied into this library's
network, and that network is scored on ETTh1's validation and test splits: every window, in
fp32 and in bf16-mixed, ProbSparse keys sampled as this library samples in eval mode. Beside it
stand the reference code's own test MSE of the same weights (its log, kept in
``docs/runs/reference_code.json``: 32 windows a batch, the last partial batch dropped, keys
sampled afresh for every batch) and its validation MSE at the kept epoch. Equal figures mean
that the evaluation (windows, scaling, sampling, precision) adds nothing to a gap between the
two codes' test MSE: what differs is the trained weights.

``--sampling RUN_DIR ...`` scores this library's finished runs (``informer-train`` run
directories with ``model/``) on the test split with ProbSparse's eval-mode key sample drawn
from other seeds (``--eval-seeds``, default 0-2; 0 is what every evaluation here uses) and with
keys sampled afresh for every batch of 32 as the reference code does (``--fresh`` draws): how
much one fixed sample moves a run's test MSE.

Ends with one ``key=value`` line per checkpoint and split.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, record_section  # noqa: E402
from reference_network import build_reference, copy_weights, reference_class  # noqa: E402
from reproduce_paper import HEADER, RESULTS, load_ledger  # noqa: E402
from training_curves import kept_epoch, spread  # noqa: E402

from informer.config import InformerConfig  # noqa: E402
from informer.data.series import SeriesData  # noqa: E402
from informer.data.sources import resolve_data_file  # noqa: E402
from informer.evaluation import evaluate  # noqa: E402
from informer.nn.model import Informer  # noqa: E402
from informer.nn.probsparse import ProbAttention  # noqa: E402
from informer.schema import DataSchema  # noqa: E402

SETTING = re.compile(r"informer_ETTh1_ft(?P<features>[MS])_sl(?P<seq>\d+)_ll(?P<label>\d+)_"
                     r"pl(?P<pred>\d+)_dm(?P<dm>\d+)_nh(?P<nh>\d+)_el(?P<el>\d+)_dl(?P<dl>\d+)_"
                     r"df(?P<df>\d+)_at(?P<attn>prob|full)_fc(?P<fc>\d+)_ebtimeF_dt(?P<dt>True|"
                     r"False)_mx(?P<mx>True|False)_(?P<des>.+)")
PRECISIONS = ("32-true", "bf16-mixed")


def parse_setting(name: str) -> dict[str, str]:
    """The fields of a reference run's setting name (``informer_ETTh1_ftM_sl96_...``)."""
    match = SETTING.fullmatch(name)
    if not match:
        raise SystemExit(f"error: {name}: expected a reference ETTh1 Informer setting name "
                         "(informer_ETTh1_ft<M|S>_sl<seq>_ll<label>_pl<pred>_..._<des>)")
    return match.groupdict()


@functools.cache
def series_for(features: str, seq: str, label: str, pred: str, data_dir: str) -> SeriesData:
    """ETTh1 with the paper's split and train-rows scaler at a setting's lengths (read once for
    all runs of the same setting)."""
    path = resolve_data_file(data_dir, "ETTh1.csv")
    return SeriesData.fit(path, split="ett_hour", features=features, seq_len=int(seq),
                          label_len=int(label), pred_len=int(pred))


def config_for(fields: dict[str, str], series: SeriesData) -> InformerConfig:
    schema = series.schema
    return InformerConfig(
        enc_in=schema.enc_in, dec_in=schema.enc_in, c_out=schema.c_out,
        seq_len=int(fields["seq"]), label_len=int(fields["label"]), pred_len=int(fields["pred"]),
        d_model=int(fields["dm"]), n_heads=int(fields["nh"]), e_layers=int(fields["el"]),
        d_layers=int(fields["dl"]), d_ff=int(fields["df"]), attn=fields["attn"],
        factor=int(fields["fc"]), distil=fields["dt"] == "True", mix=fields["mx"] == "True",
        dropout=0.05, freq="h")


def load_trained(cls: type, config: InformerConfig, checkpoint: Path) -> Informer:
    """This library's network holding the reference checkpoint's weights."""
    ref = build_reference(cls, config)
    ref.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    ours = Informer(config)
    copy_weights(ours, ref, into_ours=True)
    return ours.eval()


def score(net: Informer, schema: DataSchema, series: SeriesData) -> dict[str, float]:
    """``<split>_<precision>`` -> MSE over every window of the validation and test splits."""
    return {f"{split}_{precision}": evaluate(net, schema, series.dataset(split), 64,
                                             precision)["mse"]
            for split in ("val", "test") for precision in PRECISIONS}


def reference_figures(ledger: dict, name: str) -> tuple[float | None, float | None]:
    """The reference code's own (test MSE, validation MSE at the kept epoch) of run ``name``."""
    run = next((v for k, v in ledger.items() if k.endswith(f"/reference/{name}")), None)
    if run is None:
        return None, None
    curve = run.get("curve") or []
    return run.get("test/mse"), (curve[kept_epoch(curve) - 1][1] if curve else None)


def table(rows: list[dict]) -> str:
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    lines = ["| reference run | its test MSE | test MSE here, fp32 | test MSE here, bf16 | "
             "its validation MSE | validation MSE here, fp32 | validation MSE here, bf16 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['des']} | {cell(r['own_test'])} | {cell(r['test_32-true'])} | "
              f"{cell(r['test_bf16-mixed'])} | {cell(r['own_val'])} | {cell(r['val_32-true'])} "
              f"| {cell(r['val_bf16-mixed'])} |" for r in rows]
    gaps = [r["test_32-true"] - r["own_test"] for r in rows if r["own_test"] is not None]
    precision = [r["test_bf16-mixed"] - r["test_32-true"] for r in rows]
    lines += ["", f"Test MSE here minus the reference code's own, same weights: "
              f"{spread(gaps)}, largest {max(gaps, key=abs, default=0.0):+.4f}; bf16 minus fp32 "
              f"here: {spread(precision)}."]
    return "\n".join(lines)


def fresh_samples(net: Informer, schema: DataSchema, dataset, seed: int) -> float:  # noqa: ANN001
    """Test MSE with ProbSparse keys drawn from the global RNG for every batch of 32."""
    def sample_freshly(module: torch.nn.Module, _args: tuple) -> None:
        module.training = True  # ProbAttention's mode only picks its sampler (it has no dropout)

    def back_to_eval(module: torch.nn.Module, _args: tuple, _out: object) -> None:
        module.training = False

    layers = [m for m in net.modules() if isinstance(m, ProbAttention)]
    handles = [hook for layer in layers for hook in (
        layer.register_forward_pre_hook(sample_freshly),
        layer.register_forward_hook(back_to_eval))]
    torch.manual_seed(seed)
    try:
        return evaluate(net, schema, dataset, 32, "auto")["mse"]
    finally:
        for handle in handles:
            handle.remove()


def sampling(runs: list[Path], eval_seeds: list[int], fresh: int, data_dir: str) -> str:
    """One row per run: test MSE under each eval seed and each fresh-sampling draw."""
    from informer.cli.evaluate import load_any, series_of

    lines = ["| run | " + " | ".join([f"eval seed {s}" for s in eval_seeds]
                                     + [f"fresh draw {i + 1}" for i in range(fresh)])
             + " | largest difference |", "| --- |" + " ---: |" * (len(eval_seeds) + fresh + 1)]
    for run in runs:
        loaded, data = load_any(run / "model")
        dataset = series_of(loaded, data, data_dir).dataset("test")
        values = []
        try:
            for seed in eval_seeds:
                ProbAttention.eval_seed = seed
                values.append(evaluate(loaded.net, loaded.schema, dataset, 64, "auto")["mse"])
        finally:
            ProbAttention.eval_seed = 0
        values += [fresh_samples(loaded.net, loaded.schema, dataset, 1000 + i)
                   for i in range(fresh)]
        print(f"{run}: " + " ".join(f"{v:.6f}" for v in values), flush=True)
        lines.append(f"| {run} | " + " | ".join(f"{v:.4f}" for v in values)
                     + f" | {max(values) - min(values):.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, required=True,
                        help="a checkout of zhouhaoyi/Informer2020 that has trained runs")
    parser.add_argument("--data-dir", default="data", help="ETT files (or INFORMER_DATA_DIR)")
    parser.add_argument("--sampling", type=Path, nargs="+", metavar="RUN_DIR",
                        help="instead: our runs' test MSE under other ProbSparse key samples")
    parser.add_argument("--eval-seeds", default="0,1,2")
    parser.add_argument("--fresh", type=int, default=2, help="fresh-sampling draws per run")
    parser.add_argument("--record", action="store_true", help="write docs/results.md")
    args = parser.parse_args()
    if args.sampling:
        seeds = [int(s) for s in args.eval_seeds.split(",")]
        text = sampling(args.sampling, seeds, args.fresh, args.data_dir)
        print(text)
        if args.record:
            body = (f"Produced by `python benchmarks/reference_checkpoints.py --sampling "
                    f"{' '.join(map(str, args.sampling))} --eval-seeds {args.eval_seeds} "
                    f"--fresh {args.fresh} --record` on {machine()} (test MSE). Recorded "
                    f"{time.strftime('%Y-%m-%d')}.\n\n{text}")
            record_section("eval_sampling", body, RESULTS, HEADER)
            print(f"wrote {RESULTS}")
        return
    checkout = args.reference.expanduser()
    cls = reference_class(checkout)
    checkpoints = sorted(checkout.glob("checkpoints/*/checkpoint.pth"))
    if not checkpoints:
        raise SystemExit(f"error: --reference {checkout}: no checkpoints/*/checkpoint.pth "
                         "(run the reference code's main_informer.py there first)")
    ledger = load_ledger("reference_code")
    rows = []
    for checkpoint in checkpoints:
        name = checkpoint.parent.name
        fields = parse_setting(name)
        series = series_for(fields["features"], fields["seq"], fields["label"], fields["pred"],
                            args.data_dir)
        net = load_trained(cls, config_for(fields, series), checkpoint)
        own_test, own_val = reference_figures(ledger, name)
        row = {"des": fields["des"], "own_test": own_test, "own_val": own_val,
               **score(net, series.schema, series)}
        rows.append(row)
        for key in ("test_32-true", "test_bf16-mixed", "val_32-true", "val_bf16-mixed"):
            print(f"{fields['des']}_{key}={row[key]:.6f}", flush=True)
    text = table(rows)
    print(text)
    if args.record:
        body = (f"Produced by `python benchmarks/reference_checkpoints.py --reference <checkout> "
                f"--record` on {machine()}. Recorded {time.strftime('%Y-%m-%d')}.\n\n{text}")
        record_section("reference_checkpoints", body, RESULTS, HEADER)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
