"""Reproduce the Informer paper's ETTh1 table (Tables 1 and 2) with the paper-faithful presets,
next to this library's RevIN option, over several seeds.

    python benchmarks/reproduce_paper.py experiment=etth1_M_24,etth1_M_48 seed=2021,1,2 \
        variant=paper,revin [jobs=2] [out=runs/reproduce] [record=true] [-- <train overrides>]

Each (experiment, variant, seed) is one ``informer-train`` run (a Hydra run in
``<out>/<experiment>/<variant>/seed<seed>``; finished runs are reused, so the command can be
stopped and started again); the same sweep as a Hydra multirun is
``informer-train -m experiment=etth1_M_24,etth1_M_48 seed=2021,1,2 model.net.revin=false,true``.
The script prints test MSE/MAE (standardised data, as in the paper) as mean +- std over seeds
beside the paper's figures and, with ``record=true``, writes ``docs/results.md``.
``jobs=2`` runs two trainings at once with one thread each (faster on 2 cores than one run
with two threads). Variants: ``paper`` (the preset as is), ``stack`` (the same preset as
InformerStack, ``model.net.s_layers=[3,2,1]``), ``revin`` (``model.net.revin=true``), ``fp32``
(``trainer.precision=32-true``, to check bf16 training against full precision), ``causal``
(``model.net.decoder_selection=causal``: the decoder's ProbSparse picks its active queries strictly
causally instead of as the reference code), ``filescale`` (``data.scaler_fit=file``: the scaler
fit on the whole file, as the reference code when the paper's tables were produced; metrics are
then on that scale, as the paper's), ``refnet`` (the reference code's network trained by this
library's loop, ``benchmarks/reference_loop.py``; needs ``INFORMER_REFERENCE=<checkout>``),
``nodrop`` (``model.net.dropout=0.0``: with ``refnet+fp32+nodrop`` beside ``fp32+nodrop``, the two
networks' runs of a seed keep in step, up to rounding); ``a+b`` combines them
(``variant=stack+causal``).
Overrides after ``--`` go to every run (``-- trainer.accelerator=gpu`` trains on a GPU);
``section=<name>`` records into its own block of ``docs/results.md``; ``train=false`` reports
the finished runs only.

``record=true`` also keeps each run's figures in ``docs/runs/<section>.json`` (test MSE/MAE,
epochs, minutes, machine, the per-epoch train loss and validation MSE as ``curve``, and a
``source`` note where the run's ``metrics.json`` has one; a few hundred bytes a run, committed
with the table), and the table
is built from those and the finished runs together: a later session, whose ``out`` no longer
holds the earlier runs (checkpoints are not committed), adds seeds to a section instead of
replacing it.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, parse_options, record_section, write_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.md"
LEDGER = ROOT / "docs" / "runs"
KEPT = ("test/mse", "test/mae", "epochs", "seconds", "machine", "curve", "source",
        "test/coverage_80", "test/wql", "test/wql_original", "test/crps",
        "test/skill_seasonal_naive", "test/skill_window_mean", "level_jump")
# Paper Tables 1 (univariate) and 2 (multivariate), ETTh1: horizon -> (MSE, MAE).
PAPER = {
    "M": {24: (0.577, 0.549), 48: (0.685, 0.625), 168: (0.931, 0.752), 336: (1.128, 0.873),
          720: (1.215, 0.896)},
    "S": {24: (0.098, 0.247), 48: (0.158, 0.319), 168: (0.183, 0.346), 336: (0.222, 0.387),
          720: (0.269, 0.435)},
}
VARIANTS = {"paper": [], "stack": ["model.net.s_layers=[3,2,1]"],
            "revin": ["model.net.revin=true"], "fp32": ["trainer.precision=32-true"],
            "causal": ["model.net.decoder_selection=causal"],
            "filescale": ["data.scaler_fit=file"], "nodrop": ["model.net.dropout=0.0"],
            "refnet": [], "quantile": ["model.net.quantiles=[0.1,0.5,0.9]"],
            "point": ["model.net.quantiles=null"]}
# variants trained by another entry than informer-train (same overrides)
ENTRIES = {"refnet": Path(__file__).resolve().parent / "reference_loop.py"}
DEFAULTS = {"experiment": "etth1_M_24,etth1_M_48,etth1_M_168", "seed": "2021,1,2",
            "variant": "paper,revin", "jobs": "1", "out": "runs/reproduce", "record": "false",
            "section": "reproduce_paper", "train": "true"}
HEADER = "# Results: the paper's ETTh1 table\n"


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """``key=value`` options (see :data:`DEFAULTS`) and, after ``--``, extra train overrides."""
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    options = parse_options(argv, DEFAULTS)
    unknown = {part for variant in options["variant"].split(",")
               for part in variant.split("+")} - set(VARIANTS)
    if unknown:
        sys.exit(f"error: variant: expected some of {sorted(VARIANTS)}, got {sorted(unknown)}")
    return options, extra


def published(experiment: str) -> tuple[float, float] | None:
    """The paper's ETTh1 (MSE, MAE) of a preset (``etth1_M_48``), None where it has none."""
    _, features, horizon = experiment.rsplit("_", 2)
    return PAPER.get(features, {}).get(int(horizon))


def variant_overrides(variant: str) -> list[str]:
    """Train overrides of a variant; ``a+b`` combines variants (``stack+causal``)."""
    return [o for part in variant.split("+") for o in VARIANTS[part]]


def run_dir(out: Path, experiment: str, variant: str, seed: str) -> Path:
    return out / experiment / variant / f"seed{seed}"


def load_ledger(section: str) -> dict[str, dict]:
    """The recorded runs of a section: ``experiment/variant/seed<seed>`` -> figures."""
    path = LEDGER / f"{section}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def save_ledger(section: str, ledger: dict[str, dict]) -> None:
    """Write a section's recorded runs (to a temporary file, then renamed)."""
    write_atomic(LEDGER / f"{section}.json", json.dumps(ledger, indent=1, sort_keys=True) + "\n")


def seed_order(seed: str) -> tuple[int, float, str]:
    """Sort key of a seed (or any run name): 2021, 1, 2 first, then the others by number,
    then names that are not numbers."""
    order = DEFAULTS["seed"].split(",")
    return (order.index(seed) if seed in order else len(order),
            int(seed) if seed.isdigit() else float("inf"), seed)


def merge(ledger: dict[str, dict], done: list[tuple[tuple[str, str, str], dict]],
          experiments: list[str], variants: list[str]
          ) -> tuple[dict[str, dict], dict[tuple[str, str], list[dict]], list[str]]:
    """The ledger with this call's runs added (a finished run replaces its recorded figures),
    the runs of the asked experiments and variants grouped per (experiment, variant) with seeds
    in a fixed order (2021, 1, 2, then the others by number), and those seeds."""
    ledger = dict(ledger)
    for plan, metrics in done:
        ledger[str(run_dir(Path(), *plan))] = {k: metrics[k] for k in KEPT if k in metrics}
    keys = [(e, v, s.removeprefix("seed")) for e, v, s in (k.rsplit("/", 2) for k in ledger)]
    keys = sorted((k for k in keys if k[0] in experiments and k[1] in variants),
                  key=lambda k: (experiments.index(k[0]), variants.index(k[1]), seed_order(k[2])))
    results: dict[tuple[str, str], list[dict]] = {}
    for key in keys:
        results.setdefault(key[:2], []).append(ledger[str(run_dir(Path(), *key))])
    return ledger, results, list(dict.fromkeys(s for *_, s in keys))


def entry(variant: str) -> Path | None:
    """The script a variant trains with in place of ``informer-train`` (``ENTRIES``), if any."""
    return next((ENTRIES[v] for v in variant.split("+") if v in ENTRIES), None)


def train(directory: Path, experiment: str, variant: str, seed: str, extra: list[str],
          threads: int | None) -> dict[str, float]:
    """One ``informer-train`` run (skipped when its ``metrics.json`` exists)."""
    metrics = directory / "metrics.json"
    if not metrics.is_file():
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        script = entry(variant)
        command = [sys.executable, *([str(script)] if script else ["-m", "informer.cli.train"]),
                   f"experiment={experiment}", f"seed={seed}", f"hydra.run.dir={directory}",
                   "plot=false",
                   "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
                   *variant_overrides(variant), *extra]
        start = time.perf_counter()
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "train.log", "w") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        if done.returncode:
            raise SystemExit(f"error: {' '.join(command)} failed; see {directory / 'train.log'}")
        result = json.loads(metrics.read_text())
        result["seconds"] = time.perf_counter() - start
        result["machine"] = where(directory)
        metrics.write_text(json.dumps(result, indent=2))
        print(f"{experiment} {variant} seed {seed}: test MSE {result['test/mse']:.4f} "
              f"MAE {result['test/mae']:.4f} ({result['epochs']:.0f} epochs, "
              f"{result['seconds']:.0f} s)", flush=True)
    return json.loads(metrics.read_text())


def where(directory: Path) -> str:
    """The device and precision a finished run trained with (from its saved config)."""
    trainer = yaml.safe_load((directory / "config.yaml").read_text()).get("trainer", {})
    gpu = trainer.get("accelerator") in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if gpu else machine(threads=False)
    return f"{device}, {trainer.get('precision')}"


def curve(directory: Path) -> list[list[float]]:
    """Per-epoch ``[train loss, validation MSE]`` of a finished run from its CSV log; [] without
    one, or when the log does not start at the first epoch (a run resumed after its log of the
    earlier epochs was lost: its curve would be shifted)."""
    path = directory / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    epochs: dict[int, dict[str, float]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("epoch"):
                figures = epochs.setdefault(int(float(row["epoch"])), {})
                figures.update({k: float(row[k]) for k in ("train/loss_epoch", "val/mse")
                                if row.get(k)})
    complete = sorted(n for n, e in epochs.items() if len(e) == 2)
    if complete != list(range(len(complete))):
        return []
    return [[round(epochs[n]["train/loss_epoch"], 4), round(epochs[n]["val/mse"], 4)]
            for n in complete]


def record_results(script: str, section: str, argv: list[str], detail: str, text: str) -> None:
    """Write ``text`` to the ``section`` block of docs/results.md under the command that made it."""
    command = f"python benchmarks/{script} {' '.join(argv)}".strip()
    record_section(section, f"Produced by `{command}` ({detail}). Recorded "
                   f"{time.strftime('%Y-%m-%d')}.\n\n{text}", RESULTS, HEADER)
    print(f"wrote {RESULTS}")


def summarise(values: list[float]) -> str:
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def table(results: dict[tuple[str, str], list[dict[str, float]]], variants: list[str]) -> str:
    """Markdown table: one row per (experiment, variant) that has runs (mean ± std over seeds)."""
    lines = ["| setting | variant | published MSE | published MAE | MSE | MAE | vs published MSE "
             "| seeds | MSE per seed |", "|" + " --- |" * 9]
    for experiment in dict.fromkeys(e for e, _ in results):
        paper = published(experiment)
        figures = [f"{paper[0]:.3f}", f"{paper[1]:.3f}"] if paper else ["-", "-"]
        for variant in variants:
            runs = results.get((experiment, variant), [])
            if not runs:
                continue
            mse = [r["test/mse"] for r in runs]
            change = f"{statistics.mean(mse) / paper[0] - 1:+.1%}" if paper else "-"
            row = [experiment, variant, *figures, summarise(mse),
                   summarise([r["test/mae"] for r in runs]), change, str(len(runs)),
                   " / ".join(f"{m:.3f}" for m in mse)]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    options, extra = parse(argv)
    out = Path(options["out"])
    experiments = options["experiment"].split(",")
    seeds, variants = options["seed"].split(","), options["variant"].split(",")
    jobs = int(options["jobs"])
    plan = [(e, v, s) for e in experiments for v in variants for s in seeds]
    if options["train"].lower() == "false":  # report the finished runs only
        plan = [p for p in plan if (run_dir(out, *p) / "metrics.json").is_file()]
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        done = list(pool.map(lambda p: (p, train(run_dir(out, *p), *p, extra, threads)), plan))
    done = [(p, {**m, "machine": m.get("machine") or where(run_dir(out, *p)),
                 "curve": curve(run_dir(out, *p))}) for p, m in done]
    ledger, results, seeds = merge(load_ledger(options["section"]), done, experiments,
                                   variants)
    text = table(results, variants)
    print(text)
    if options["record"].lower() == "true":
        command = "python benchmarks/reproduce_paper.py " + " ".join(
            a for a in argv if a != "train=false")
        runs = [m for group in results.values() for m in group]
        minutes = sum(m.get("seconds", 0.0) for m in runs) / 60
        machines = "; ".join(sorted({m["machine"] for m in runs if m.get("machine")}))
        section = (f"Produced by `{command}` with the runs recorded before it in "
                   f"`docs/runs/{options['section']}.json` (test split, every window, "
                   f"standardised data as in the paper; mean ± sample std over seeds "
                   f"{', '.join(seeds)}; {minutes:.0f} min of training in all).\n\nTrained on: "
                   f"{machines}. Recorded {time.strftime('%Y-%m-%d')}.\n\n{text}")
        save_ledger(options["section"], ledger)
        record_section(options["section"], section, RESULTS, HEADER)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main(sys.argv[1:])
