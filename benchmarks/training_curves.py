"""Training curves of this library's runs next to the reference code's, and whether the two
groups' test MSE differ.

    python benchmarks/training_curves.py experiment=etth1_M_48 variant=paper,fp32 \
        section=reproduce_paper_bias2 [reference=<log>,<log>] [record=true]

Our runs come from ``docs/runs/<section>.json`` (``benchmarks/reproduce_paper.py`` keeps each
run's per-epoch train loss and validation MSE there as ``curve``, with its test MSE). Reference
runs are the reference code's (zhouhaoyi/Informer2020) printed output, one log per run: the
``start training : <setting>`` line names the run, each ``Epoch: N, Steps: S | Train Loss: a
Vali Loss: b Test Loss: c`` line gives an epoch, and the final ``mse:<x>, mae:<y>`` line the
test of the kept checkpoint. Early stopping keeps the first epoch with the lowest validation
loss, on both sides; a run stopped before its final test counts the kept epoch's test loss.
Parsed logs are kept in ``docs/runs/reference_code.json`` (logs are not committed), so a later
call adds runs to the recorded ones.

The script prints, per epoch, mean ± std of train loss and validation MSE for each group, then
each group's kept epochs, validation and test MSE, and permutation tests of the difference
in mean test MSE: each group against the reference code's runs, then this library's network
(its groups pooled) against the reference network (the reference code's runs pooled with
those of ``variant=refnet``, the reference network trained by this library's loop). The tests
are two-sided (the share of relabellings of the pooled runs whose difference is at least as
large; exact up to a million relabellings, sampled past that) and come with the runs a side
that a test would need to find a difference that large 80% of the time. ``record=true``
writes the ``training_curves`` block of ``docs/results.md``.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_options  # noqa: E402
from reproduce_paper import (  # noqa: E402
    entry,
    load_ledger,
    published,
    record_results,
    save_ledger,
    seed_order,
    summarise,
)

REFERENCE = "reference"
EXACT_LIMIT = 1_000_000  # relabellings counted one by one; past this, SAMPLED at random
SAMPLED = 200_000
DEFAULTS = {"experiment": "etth1_M_48", "variant": "paper,fp32",
            "section": "reproduce_paper_bias2", "reference": "", "record": "false"}
SETTING = re.compile(r"start training : (informer\w*?_(\w+?)_ft(\w)_sl\d+_ll\d+_pl(\d+)_\w*)>")
EPOCH = re.compile(r"Epoch: (\d+), Steps: \d+ \| Train Loss: ([\d.]+) Vali Loss: ([\d.]+) "
                   r"Test Loss: ([\d.]+)")
FINAL = re.compile(r"^mse:([\d.eE+-]+), mae:([\d.eE+-]+)", re.M)


def parse_reference_log(path: Path) -> tuple[str, dict]:
    """``<experiment>/reference/<setting>`` and its figures from one reference-code log:
    ``curve`` ([train loss, validation MSE] per epoch), ``test_curve`` and ``test/mse``."""
    try:
        text = path.read_text()
    except OSError as error:
        sys.exit(f"error: reference log {path}: {error.strerror}")
    setting, epochs = SETTING.search(text), EPOCH.findall(text)
    if not setting or not epochs:
        sys.exit(f"error: reference log {path}: expected the reference code's 'start training'"
                 " and 'Epoch: N, Steps: S | Train Loss ...' lines")
    name, data, features, horizon = setting.groups()
    curve = [[float(a), float(b)] for _, a, b, _ in epochs]
    tests = [float(c) for *_, c in epochs]
    final = FINAL.search(text)
    kept = kept_epoch(curve)
    figures = {"curve": curve, "test_curve": tests, "kept": kept,
               "test/mse": float(final.group(1)) if final else tests[kept - 1],
               "finished": bool(final)}
    return f"{data.lower()}_{features}_{horizon}/{REFERENCE}/{name}", figures


def kept_epoch(curve: list[list[float]]) -> int:
    """The epoch (from 1) early stopping keeps: the first with the lowest validation MSE."""
    vals = [v for _, v in curve]
    return vals.index(min(vals)) + 1


def groups(ledger: dict[str, dict], experiment: str, variants: list[str]) -> dict[str, list]:
    """Runs of ``experiment`` per group (our variants, then the reference code's runs)."""
    found: dict[str, list[dict]] = {}
    for key in sorted(ledger, key=lambda k: seed_order(k.rsplit("/", 1)[-1].removeprefix("seed"))):
        exp, group, _ = key.rsplit("/", 2)
        if exp == experiment and group in (*variants, REFERENCE):
            found.setdefault(group, []).append(ledger[key])
    return {g: found[g] for g in (*variants, REFERENCE) if g in found}


def spread(values: list[float]) -> str:
    """``mean ± std (runs)``, or ``-`` without values."""
    return f"{summarise(values)} ({len(values)})" if values else "-"


def exact(a: list[float], b: list[float]) -> bool:
    """Whether ``permutation_p`` counts every relabelling (else it samples ``SAMPLED``)."""
    return math.comb(len(a) + len(b), len(a)) <= EXACT_LIMIT


def permutation_p(a: list[float], b: list[float]) -> float:
    """Two-sided permutation p-value of ``mean(a) - mean(b)``: the share of relabellings of
    the pooled runs whose difference is at least as large; all of them while there are at most
    ``EXACT_LIMIT``, else ``SAMPLED`` drawn at random (seed 0)."""
    pooled, k = a + b, len(a)
    observed = abs(statistics.mean(a) - statistics.mean(b)) - 1e-12
    total = sum(pooled)
    if exact(a, b):
        labellings = itertools.combinations(range(len(pooled)), k)
    else:
        draw = random.Random(0)
        labellings = (draw.sample(range(len(pooled)), k) for _ in range(SAMPLED))
    hits = count = 0
    for chosen in labellings:
        picked = sum(pooled[i] for i in chosen)
        hits += abs(picked / k - (total - picked) / len(b)) >= observed
        count += 1
    return hits / count


def runs_for_power(a: list[float], b: list[float], power: float = 0.8,
                   alpha: float = 0.05) -> int | None:
    """Runs a side for a two-sided test at level ``alpha`` to find a difference of
    ``mean(a) - mean(b)`` with probability ``power``, at the two groups' pooled sample std:
    ``n = 2 (z[1 - alpha/2] + z[power])^2 std^2 / difference^2 + z[1 - alpha/2]^2 / 4`` (the
    normal approximation with Guenther's correction for the t-test), and never fewer than the
    permutation test needs to reach ``alpha`` at all (2 / C(2n, n) <= alpha); ``None`` without
    a difference or without a spread to pool."""
    difference = statistics.mean(a) - statistics.mean(b)
    freedom = len(a) + len(b) - 2
    if not difference or freedom < 1:
        return None
    pooled = sum((len(g) - 1) * statistics.variance(g) for g in (a, b) if len(g) > 1) / freedom
    z = statistics.NormalDist().inv_cdf
    needed = 2 * (z(1 - alpha / 2) + z(power)) ** 2 * pooled / difference ** 2
    fewest = next(n for n in itertools.count(1) if 2 / math.comb(2 * n, n) <= alpha)
    return max(math.ceil(needed + z(1 - alpha / 2) ** 2 / 4), fewest)


def curve_table(found: dict[str, list[dict]]) -> str:
    """Per epoch: train loss and validation MSE, mean ± std (runs) for each group."""
    names = [g if g != REFERENCE else "reference code" for g in found]
    lines = ["| epoch | " + " | ".join(f"{n}: train loss | {n}: validation MSE" for n in names)
             + " |", "| ---: |" + " ---: | ---: |" * len(names)]
    longest = max(len(r.get("curve") or []) for runs in found.values() for r in runs)
    for epoch in range(longest):
        cells = []
        for runs in found.values():
            points = [r["curve"][epoch] for r in runs if len(r.get("curve") or []) > epoch]
            cells += [spread([p[0] for p in points]), spread([p[1] for p in points])]
        lines.append(f"| {epoch + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(found: dict[str, list[dict]], published: float | None) -> str:
    """Per group: kept epochs, validation MSE at the kept epoch, test MSE, per-run test MSE."""
    lines = ["| group | runs | kept epoch (runs) | validation MSE, kept epoch | test MSE "
             "| vs published | test MSE per run |", "| --- |" + " ---: |" * 5 + " --- |"]
    for group, runs in found.items():
        curves = [r["curve"] for r in runs if r.get("curve")]
        kept = [kept_epoch(c) for c in curves]
        epochs = ", ".join(f"{e}: {kept.count(e)}" for e in sorted(set(kept))) or "-"
        tests = [r["test/mse"] for r in runs]
        change = f"{statistics.mean(tests) / published - 1:+.1%}" if published else "-"
        lines.append(f"| {group if group != REFERENCE else 'reference code'} | {len(runs)} | "
                     f"{epochs} | {spread([c[k - 1][1] for c, k in zip(curves, kept)])} | "
                     f"{spread(tests)} | {change} | "
                     + " / ".join(f"{t:.3f}" for t in tests) + " |")
    return "\n".join(lines)


def reference_table(runs: dict[str, dict]) -> str:
    """One row per reference run (``setting -> figures``, named by the setting's last two
    fields, its ``--des`` and run index): validation and test MSE per epoch, kept epoch, test
    MSE."""
    lines = ["| reference run | validation MSE per epoch | test MSE per epoch | kept epoch "
             "| test MSE |", "| --- | --- | --- | ---: | ---: |"]
    for setting, run in sorted(runs.items()):
        final = f"{run['test/mse']:.3f}" + ("" if run["finished"] else " (kept epoch's)")
        name = "_".join(setting.rsplit("_", 2)[-2:])
        lines.append(f"| {name} | " + " / ".join(f"{v:.3f}" for _, v in run["curve"]) + " | "
                     + " / ".join(f"{v:.3f}" for v in run["test_curve"])
                     + f" | {run['kept']} | {final} |")
    return "\n".join(lines)


def comparisons(found: dict[str, list[dict]]) -> str:
    """Each group against the reference code's runs; then this library's network (its groups
    pooled) against the reference network (the reference code's runs with the groups that
    train its network in this library's loop: variants with an ``entry`` such as ``refnet``)."""
    if REFERENCE not in found:
        return "No reference runs: nothing to compare."
    tests = {g: [r["test/mse"] for r in runs] for g, runs in found.items()}
    ref = tests.pop(REFERENCE)
    pairs = [(group, "the reference code", values, ref) for group, values in tests.items()]
    reference_net = [g for g in tests if entry(g)]
    ours = [t for g, values in tests.items() if g not in reference_net for t in values]
    if len(tests) > 1 and ours:
        network = ref + [t for g in reference_net for t in tests[g]]
        against = ("the reference network (the reference code and "
                   + ", ".join(reference_net) + ")" if reference_net else "the reference code")
        pairs.append(("all of ours", against, ours, network))
    lines = []
    for group, name, a, b in pairs:
        difference = statistics.mean(a) - statistics.mean(b)
        kind = "exact" if exact(a, b) else f"sampled ({SAMPLED} relabellings)"
        needed = runs_for_power(a, b)
        power = (f"; {needed} runs a side would find a difference this large 80% of the time "
                 "(two-sided 5% test, pooled std)" if needed else "")
        lines.append(f"- {group} against {name}: mean test MSE {difference:+.3f} "
                     f"({len(a)} against {len(b)} runs), {kind} permutation p = "
                     f"{permutation_p(a, b):.2f}{power}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    options = parse_options(argv, DEFAULTS)
    experiment, variants = options["experiment"], options["variant"].split(",")
    reference = load_ledger("reference_code")
    for log in filter(None, options["reference"].split(",")):
        key, figures = parse_reference_log(Path(log))
        reference[key] = figures
    found = groups({**load_ledger(options["section"]), **reference}, experiment, variants)
    if not found:
        sys.exit(f"error: experiment={experiment}: no runs in docs/runs/{options['section']}"
                 ".json or docs/runs/reference_code.json")
    paper = published(experiment)
    prefix = f"{experiment}/{REFERENCE}/"
    runs = {k.removeprefix(prefix): v for k, v in reference.items() if k.startswith(prefix)}
    text = "\n\n".join([curve_table(found), summary_table(found, paper[0] if paper else None),
                        reference_table(runs), comparisons(found)])
    print(text)
    if options["record"].lower() == "true":
        save_ledger("reference_code", reference)
        record_results("training_curves.py", "training_curves", argv,
                       f"our runs from `docs/runs/{options['section']}.json`, the reference "
                       "code's from `docs/runs/reference_code.json`; mean ± sample std (runs)",
                       text)


if __name__ == "__main__":
    main(sys.argv[1:])
