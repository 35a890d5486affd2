"""``informer-mlops local ingest <csv>``: new rows of the series arrive.

1. The rows are appended to the stored data (``s3/<bucket>/<data prefix><name>``, the file the
   pipeline trains on): rows already stored with the same values change nothing; a stored
   timestamp with another value, a missing timestamp before the end, a gap or other columns is
   a one-line error naming the file, timestamp and column, and nothing is written. The file is
   replaced atomically (temp file + rename), under a lock.
2. Every approved version's stored reports that the data now covers are scored
   (:mod:`mlops.drift`, table ``drift_scores``, :mod:`mlops.local.monitoring`).
3. Every approved version forecasts from the new end of the data (the approval's transform
   request on the latest rows).
4. The drift rule (:mod:`mlops.drift_actions`) looks at the serving version (the latest
   approved); when it fires, the firing is recorded with its figures (``drift_triggers``) and
   the pipeline runs on the data (:func:`mlops.local.runner.run_pipeline`). A window fires
   once, so a second arrival of the same data starts nothing.

Tokens: ``drift.window|k|rule|min_skill=...`` (defaults: ``drift:`` in conf/pipeline), and the
settings of the execution it may start, as ``informer-mlops local run`` takes them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import math
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from informer.errors import InformerError
from mlops import drift, drift_actions
from mlops.local import monitoring
from mlops.local.registry import Registry
from mlops.local.state import StateDir


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


def merge(stored: drift.Series, text: str, where: str) -> list[str]:
    """The lines of ``text``'s rows that are new (in the stored column order and date style);
    :class:`InformerError` for a row that conflicts with the stored data."""
    try:
        new = drift.read_series(text, where)
    except drift.DriftError as err:
        raise InformerError(str(err)) from err
    if sorted(new.header) != sorted(stored.header):
        raise InformerError(f"{where}: columns {','.join(new.header)}; expected those of the "
                            f"stored data: {','.join(stored.header)}")
    step = stored.dates[-1] - stored.dates[-2] if len(stored.dates) > 1 else None
    style = "T" if "T" in stored.rows[-1][0] else " "
    last, lines = stored.dates[-1], []
    for i, moment in enumerate(new.dates):
        if moment in stored.index:
            j = stored.index[moment]
            for column in stored.header[1:]:
                if not _same(stored.value(j, column), new.value(i, column)):
                    raise InformerError(
                        f"{where}: {moment}: {column} is {new.rows[i][new.header.index(column)]}"
                        f", the stored data has {stored.rows[j][stored.header.index(column)]}; "
                        f"expected the stored value for a stored timestamp (nothing written)")
            continue
        if moment <= stored.dates[-1]:
            raise InformerError(f"{where}: {moment}: not in the stored data, which ends at "
                                f"{stored.dates[-1]}; expected only rows after it (nothing "
                                f"written)")
        if step is not None and moment != last + step:
            raise InformerError(f"{where}: {moment}: expected {last + step} next (rows every "
                                f"{step}, no gaps; nothing written)")
        fields = {c: new.rows[i][new.header.index(c)] for c in new.header}
        fields["date"] = moment.isoformat(style)
        lines.append(",".join(fields[c] for c in stored.header) + "\n")
        last = moment
    return lines


def stored_file(state: StateDir, data_prefix: str, name: str | None) -> Path:
    """The stored data file to append to: ``name``, or the only CSV under the data prefix."""
    folder = state.s3_path(state.s3_uri(data_prefix))
    found = sorted(p.name for p in folder.glob("*.csv")) if folder.is_dir() else []
    if name is None and len(found) == 1:
        name = found[0]
    if name is None or name not in found:
        wanted = f"{name}: not stored" if name else f"{len(found)} stored data files"
        raise InformerError(f"into: {wanted} under {state.s3_uri(data_prefix)} ({found}); "
                            f"expected one (informer-mlops local run stores its data there; "
                            f"--into names one)")
    return folder / name


@contextlib.contextmanager
def locked(state: StateDir) -> Iterator[None]:
    """One ingest at a time per state directory."""
    with open(state.root / ".ingest.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ingest(state: StateDir, csv: Path, settings: Any, rule: drift_actions.DriftRule,
           into: str | None = None, out: TextIO | None = None) -> dict[str, Any]:
    """Append, score, forecast, decide (see the module docstring); ``settings``: the
    :class:`~mlops.local.runner.RunSettings` of an execution the rule starts. Returns
    ``{added, data, scored: {version: rows}, forecasts: {version: job}, decision, trigger}``."""
    from informer.files import atomic_write_text
    from mlops.local.approval import deliver_pending

    out = out or sys.stdout
    if not csv.is_file():
        raise InformerError(f"csv: {csv} not found; expected a CSV of new rows (date,<columns>)")
    registry = monitoring.tables(Registry(state.registry))
    deliver_pending(state, registry)
    with locked(state):
        target = stored_file(state, settings.data_prefix, into)
        text = target.read_text()
        lines = merge(drift.read_series(text, str(target)), csv.read_text(), str(csv))
        if lines:
            text = (text if text.endswith("\n") else text + "\n") + "".join(lines)
            atomic_write_text(target, text)
        series = drift.read_series(text, str(target))
    where = state.s3_uri(settings.data_prefix + target.name)
    out.write(f"{where}: {len(lines)} new rows" + (
        f" ({series.dates[-len(lines)]} .. {series.dates[-1]})" if lines else "") +
        f", {len(series.dates)} in all\n")
    summary: dict[str, Any] = {"added": len(lines), "data": target, "scored": {},
                               "forecasts": {}, "decision": None, "trigger": None}
    versions = monitoring.approved(registry, settings.group)
    if not versions:
        out.write(f"{settings.group}: no approved version; nothing scored\n")
        return summary
    for package in versions:
        version = package["ModelPackageVersion"]
        rows = monitoring.score_version(state, registry, package, series)
        summary["scored"][version] = rows
        for row in rows:
            out.write(f"{settings.group} v{version}: scored the forecast from {row['origin']}: "
                      f"mse {row['mse']:.4g}, mse_original {row['mse_original']:.4g}\n")
        job = monitoring.next_forecast(state, registry, package, series, target.name)
        summary["forecasts"][version] = job
        if job["new"] or job["status"] != "Completed":
            reason = f" ({job['reason']})" if job.get("reason") else ""
            out.write(f"{settings.group} v{version}: forecast from {series.dates[-1]}: transform "
                      f"job {job['job']}: {job['status']}{reason}\n")
    summary["decision"], summary["trigger"] = decide_and_retrain(
        state, registry, versions[-1], series, settings, rule, target, out)
    return summary


def decide_and_retrain(state: StateDir, registry: Registry, package: dict[str, Any],
                       series: drift.Series, settings: Any, rule: drift_actions.DriftRule,
                       data: Path, out: TextIO) -> tuple[drift_actions.Decision, Any]:
    """The rule on the serving version; when it fires (and that window has not fired), the
    pipeline runs on a snapshot of the data and the firing records its outcome."""
    from mlops.local.runner import run_pipeline

    group, version = package["ModelPackageGroupName"], package["ModelPackageVersion"]
    decision = drift_actions.decide(
        monitoring.scores(registry, group, version),
        drift.evaluation_mse(monitoring.evaluation(state, package)), rule,
        monitoring.fired_through(registry, group, version))
    out.write(f"drift {group} v{version}: {'fired' if decision.fire else 'no'}: "
              f"{decision.reason}\n")
    if not decision.fire or not monitoring.claim_trigger(registry, group, version, decision,
                                                         series.dates[-1]):
        return decision, None
    end = decision.figures["origins"][1]
    work = state.root / "work" / f"drift-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        snapshot = Path(shutil.copyfile(data, work / data.name))
        summary = run_pipeline(state, dataclasses.replace(settings, data=snapshot), out)
    except InformerError as err:
        monitoring.finish_trigger(registry, group, version, end, "failed", error=str(err))
        out.write(f"drift {group} v{version}: the execution failed: {err}\n")
        return decision, {"status": "failed", "error": str(err)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    new = summary["package"]
    monitoring.finish_trigger(registry, group, version, end, "registered", summary["execution"],
                              new["ModelPackageVersion"])
    out.write(f"registered {group} v{new['ModelPackageVersion']} as "
              f"{new['ModelApprovalStatus']} (execution {summary['execution']})\n")
    if new["ModelApprovalStatus"] != "Approved":
        out.write(f"next: informer-mlops local approve {group} --version "
                  f"{new['ModelPackageVersion']}\n")
    return decision, {"status": "registered", "execution": summary["execution"],
                      "version": new["ModelPackageVersion"]}


def split_tokens(tokens: list[str]) -> tuple[drift_actions.DriftRule, list[str]]:
    """``drift.*=`` tokens over conf/pipeline's ``drift:`` block, and the other tokens."""
    from mlops.config import load_config

    values = dict(load_config([]).get("drift") or {})
    rest = []
    for token in tokens:
        key, sep, value = token.partition("=")
        if sep and key.startswith("drift."):
            values[key[len("drift."):]] = value
        else:
            rest.append(token)
    try:
        return drift_actions.DriftRule.from_mapping(values), rest
    except drift.DriftError as err:
        raise InformerError(str(err)) from err


def cmd_ingest(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from mlops.local.runner import settings_from

    rule, rest = split_tokens(args.tokens)
    state = StateDir.resolve(args.state_dir)
    summary = ingest(state, Path(args.csv), settings_from(rest), rule, args.into)
    if (summary["trigger"] or {}).get("status") == "failed":
        sys.exit(1)


def add_ingest(sub: Any) -> None:
    """The ``local ingest`` subcommand."""
    from mlops.config import command
    from mlops.local.state import ENV_STATE_DIR

    p = command(sub, "ingest", "append new rows, score the served forecasts, forecast from the "
                "new end, retrain when the drift rule fires", cmd_ingest, config=False)
    p.add_argument("csv", help="new rows: date,<the stored data's columns>")
    p.add_argument("tokens", nargs="*", metavar="key=value",
                   help="drift.window|k|rule|min_skill; the execution's settings as for run")
    p.add_argument("--into", help="stored data file to append to (default: the only one)")
    p.add_argument("--state-dir", help=f"state directory (default: ${ENV_STATE_DIR} or "
                                       "./.informer-mlops)")
