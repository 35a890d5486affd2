"""The drift scenario, end to end on this machine (docs/mlops.md, "Retraining on drift"):

1. train, register and approve a version on ETTh1 up to a cut date (``local run`` + approve);
2. ingest the following rows in steps (``local ingest``): each step scores the forecasts the
   new rows cover, forecasts from the new end, and applies the drift rule;
3. when the rule fires, the pipeline registers a new version; it is approved ``approve_after``
   steps later, and the ingests go on with both versions forecasting;
4. the figure: realized MSE per forecast origin, one line per version, with the MSE each
   version was registered with as a dashed reference line.

``python -m mlops.local.scenario --output docs/drift_scenario.png`` (a few minutes on 2 cores;
``INFORMER_DATA_DIR`` names the ETT folder).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mlops import drift
from mlops.drift_actions import DriftRule
from mlops.local.state import StateDir

# conf/experiment/drift_scenario.yaml: a tiny RevIN model on the ratio split of the truncated file
TOKENS = ["experiment=drift_scenario", "mse_threshold=100", "require_skill=false"]


@dataclass
class Scenario:
    """``data``: the whole ETTh1.csv; the first version trains on the rows up to ``cut``; then
    ``steps`` ingests of ``step_rows`` rows each."""

    data: Path
    cut: str = "2016-10-14 23:00:00"
    step_rows: int = 24
    steps: int = 8
    approve_after: int = 1
    rule: DriftRule = field(default_factory=lambda: DriftRule(window=2, k=2.0))
    tokens: list[str] = field(default_factory=lambda: list(TOKENS))
    group: str = "informer-models"


def split(data: Path, cut: str) -> tuple[str, list[str]]:
    """The header and rows up to ``cut`` as text, and the rows after it (lines)."""
    series = drift.read_series(data.read_text(), str(data))
    end = drift.parse_time(cut, "cut")
    keep = sum(1 for d in series.dates if d <= end)
    return series.head + "".join(series.lines[:keep]), series.lines[keep:]


def run(scenario: Scenario, state: StateDir, work: Path, out: TextIO = sys.stdout
        ) -> list[dict[str, Any]]:
    """Play the scenario in ``state``; returns one record per ingest step: ``step``, ``end``
    (the data's last timestamp), ``fired``, ``registered`` (a new version), ``approved``."""
    from informer.files import atomic_write_text
    from mlops.local.approval import change_status
    from mlops.local.ingest import ingest
    from mlops.local.runner import run_pipeline, settings_from

    head, rest = split(scenario.data, scenario.cut)
    first = atomic_write_text(work / "cut" / scenario.data.name, head)
    settings = settings_from([f"data={first}", f"group={scenario.group}", *scenario.tokens])
    summary = run_pipeline(state, settings, out)
    change_status(state, scenario.group, summary["package"]["ModelPackageVersion"], "Approved")
    records, pending = [], None
    for step in range(scenario.steps):
        rows = rest[step * scenario.step_rows:(step + 1) * scenario.step_rows]
        if not rows:
            break
        chunk = atomic_write_text(work / "steps" / f"step{step + 1:03d}.csv", head.splitlines(
            keepends=True)[0] + "".join(rows))
        result = ingest(state, chunk, settings, scenario.rule, out=out)
        record = {"step": step + 1, "end": rows[-1].split(",", 1)[0],
                  "fired": result["trigger"] is not None, "registered": None, "approved": None,
                  "scored": {v: len(r) for v, r in result["scored"].items()}}
        if result["trigger"] and result["trigger"].get("version"):
            record["registered"] = result["trigger"]["version"]
            pending = (record["registered"], step)
        if pending and step - pending[1] >= scenario.approve_after:
            change_status(state, scenario.group, pending[0], "Approved")
            record["approved"], pending = pending[0], None
        records.append(record)
    return records


def figure(state: StateDir, group: str, output: Path) -> Path:
    """The PNG: realized MSE per origin, one line per version, the evaluation MSE of each as a
    dashed line, and a vertical line at the last origin of each window the rule fired on."""
    from matplotlib.figure import Figure

    from mlops.dashboard_monitoring import monitoring_lines
    from mlops.local.monitoring import scores, tables, triggers
    from mlops.local.registry import Registry

    registry = tables(Registry(state.registry))
    lines = monitoring_lines(scores(registry, group), registry.packages(group))
    fig = Figure(figsize=(10, 4.2), dpi=110)
    ax = fig.add_subplot()
    for i, line in enumerate(lines):
        color = f"C{i}"
        ax.plot(line["origins"], line["mse"], marker="o", markersize=3, color=color,
                label=f"{line['version']} realized MSE")
        if line["evaluation_mse"] is not None:
            ax.axhline(line["evaluation_mse"], color=color, linestyle="--", linewidth=1,
                       label=f"{line['version']} evaluation MSE")
    for fired in triggers(registry, group):
        when = drift.parse_time(fired["window_end"], "window_end")
        ax.axvline(when, color="k", linewidth=0.8, linestyle=":")
        ax.annotate(f" rule fired: v{fired['version']} -> retrained v"
                    f"{fired['registered_version']}", (when, 0.97),
                    xycoords=("data", "axes fraction"), ha="left", va="top", fontsize=8)
    ax.set(title=f"{group}: realized MSE of the served forecasts (scaled)",
           xlabel="forecast origin", ylabel="MSE")
    ax.legend(fontsize=8, loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output)
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlops.local.scenario",
                                     description=__doc__.split("\n\n")[0])
    defaults = Scenario(Path())
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "INFORMER_DATA_DIR", "data")) / "ETTh1.csv")
    parser.add_argument("--cut", default=defaults.cut)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--step-rows", type=int, default=defaults.step_rows)
    parser.add_argument("--state-dir", type=Path, default=Path(".informer-drift-scenario"))
    parser.add_argument("--output", type=Path, default=Path("drift_scenario.png"))
    args = parser.parse_args(argv)
    if args.state_dir.exists():
        raise SystemExit(f"error: --state-dir: {args.state_dir} exists; expected a new folder")
    state = StateDir.resolve(args.state_dir)
    scenario = Scenario(args.data, args.cut, args.step_rows, args.steps)
    log = io.StringIO()
    records = run(scenario, state, state.root / "scenario", log)
    (state.root / "scenario.log").write_text(log.getvalue())
    for record in records:
        marks = [f"rule fired, registered v{record['registered']}"] if record["fired"] else []
        marks += [f"approved v{record['approved']}"] if record["approved"] else []
        print(f"step {record['step']:3d} data to {record['end']}"
              f"{': ' + ', '.join(marks) if marks else ''}")
    print(f"wrote {figure(state, scenario.group, args.output)} "
          f"(log: {state.root / 'scenario.log'})")


if __name__ == "__main__":
    main()
