"""The local loop's monitoring state, in the registry database: the scores of served forecasts
(``drift_scores``) and the executions the drift rule started (``drift_triggers``); and the
approved versions' next forecast, run through the local SageMaker client as the approval
Lambda runs its transform.

``drift_scores``: one row per (group, version, origin, step) with :data:`mlops.drift.SCORE_FIELDS`
(``values`` stored as ``n_values``), ``source`` (the report file) and ``scored`` (when).
``drift_triggers``: one row per (group, version, window_end): the decision's ``reason`` and
``figures`` (JSON), ``data_end`` (the last row of the data it saw), ``status`` (``started``,
``registered``, ``failed``), ``execution``, ``registered_version``, ``error``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from mlops import drift, drift_actions
from mlops.local.client import LocalClientError, LocalSageMaker
from mlops.local.registry import Registry, now
from mlops.local.state import StateDir

SCHEMA = """
CREATE TABLE IF NOT EXISTS drift_scores (
    grp TEXT NOT NULL, version INTEGER NOT NULL, origin TEXT NOT NULL, step INTEGER NOT NULL,
    n_values INTEGER NOT NULL, mse REAL, mae REAL, mse_original REAL, mae_original REAL,
    mse_seasonal_naive REAL, mse_window_mean REAL, skill_seasonal_naive REAL,
    skill_window_mean REAL, coverage REAL, coverage_nominal REAL, source TEXT, scored TEXT,
    PRIMARY KEY (grp, version, origin, step));
CREATE TABLE IF NOT EXISTS drift_triggers (
    grp TEXT NOT NULL, version INTEGER NOT NULL, window_end TEXT NOT NULL, data_end TEXT,
    reason TEXT, figures TEXT, status TEXT NOT NULL, execution TEXT,
    registered_version INTEGER, error TEXT, created TEXT NOT NULL, finished TEXT,
    PRIMARY KEY (grp, version, window_end));
"""
METRICS = [f for f in drift.SCORE_FIELDS if f not in ("version", "origin", "step", "values")]
FORECAST_INPUT = "forecast-input"


def tables(registry: Registry) -> Registry:
    """``registry`` with the monitoring tables (created on first use)."""
    with registry.transaction() as db:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
    return registry


def approved(registry: Registry, group: str) -> list[dict[str, Any]]:
    """The group's approved versions, oldest first (the last one serves)."""
    return [p for p in registry.packages(group) if p["ModelApprovalStatus"] == "Approved"]


def evaluation(state: StateDir, package: dict[str, Any]) -> dict[str, Any]:
    """The version's evaluation report: its registry metrics, else the ``evaluation.json``
    its ``ModelQuality`` names in the object store."""
    metrics = package.get("ModelMetrics") or {}
    if "schema" in metrics or "regression_metrics" in metrics:
        return metrics
    uri = ((metrics.get("ModelQuality") or {}).get("Statistics") or {}).get("S3Uri", "")
    path = state.s3_path(uri) if uri.startswith("s3://") else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else metrics


def version_schema(state: StateDir, package: dict[str, Any]) -> drift.Schema:
    """The schema the version's evaluation recorded, else (a version registered before it did)
    its artifact's ``config.json``."""
    metrics = evaluation(state, package)
    where = f"{package['ModelPackageGroupName']} v{package['ModelPackageVersion']}"
    if "schema" in metrics:
        return drift.schema_of(metrics, f"{where} evaluation")
    from informer.baselines import season_length

    config = state.model(package["ModelPackageGroupName"], package["ModelPackageVersion"]) / \
        "config.json"
    data = json.loads(config.read_text())["data"]
    predicted = data["columns"] if data["features"] == "M" else [data["target"]]
    index = [data["columns"].index(c) for c in predicted]
    return drift.Schema(predicted, [data["mean"][i] for i in index],
                        [data["std"][i] for i in index], data["seq_len"], data["pred_len"],
                        season_length(data["freq"]), data["seq_len"] + 7 * data["pred_len"])


def score_version(state: StateDir, registry: Registry, package: dict[str, Any],
                  series: drift.Series) -> list[dict[str, Any]]:
    """Score the version's stored reports that the data now covers and that are not scored
    yet; returns their step-0 rows."""
    group, version = package["ModelPackageGroupName"], package["ModelPackageVersion"]
    schema = version_schema(state, package)
    done = {r["origin"] for r in registry.query(
        "SELECT origin FROM drift_scores WHERE grp = ? AND version = ? AND step = 0",
        (group, version))}
    new = []
    for path in sorted(state.forecasts(group, version).glob("*.out")):
        for forecast in drift.read_report(path.read_text(), str(path), f"v{version}"):
            if forecast.origin.isoformat() in done:
                continue
            rows = drift.score(forecast, series, schema)
            if rows is None:
                continue  # no actual values for some of its timestamps yet
            stamp = now()
            with registry.transaction() as db:
                for row in rows:
                    db.execute(
                        f"INSERT OR IGNORE INTO drift_scores (grp, version, origin, step, "
                        f"n_values, {', '.join(METRICS)}, source, scored) VALUES "
                        f"({', '.join('?' * (7 + len(METRICS)))})",
                        (group, version, row["origin"], row["step"], row["values"],
                         *(row[m] for m in METRICS), path.name, stamp))
            done.add(forecast.origin.isoformat())
            new.append(rows[0])
    return sorted(new, key=lambda r: r["origin"])


def scores(registry: Registry, group: str | None = None, version: int | None = None,
           step: int = 0) -> list[dict[str, Any]]:
    """Score rows (``group``, ``version`` and :data:`mlops.drift.SCORE_FIELDS`; ``version`` as
    ``v<n>``, ``number`` the integer) of one step, by group, version and origin."""
    rows = registry.query(
        "SELECT * FROM drift_scores WHERE step = ? AND (? IS NULL OR grp = ?) AND "
        "(? IS NULL OR version = ?) ORDER BY grp, version, origin",
        (step, group, group, version, version))
    return [{"group": r["grp"], "version": f"v{r['version']}", "number": r["version"],
             "origin": r["origin"], "step": r["step"], "values": r["n_values"],
             **{m: r[m] for m in METRICS}} for r in rows]


def fired_through(registry: Registry, group: str, version: int) -> datetime | None:
    """The last origin of the latest window the rule fired on for the version."""
    rows = registry.query("SELECT MAX(window_end) AS end FROM drift_triggers WHERE grp = ? AND "
                          "version = ?", (group, version))
    return drift.parse_time(rows[0]["end"], "window_end") if rows and rows[0]["end"] else None


def claim_trigger(registry: Registry, group: str, version: int,
                  decision: drift_actions.Decision, data_end: datetime) -> bool:
    """Record the firing (status ``started``); False when that window already fired (a second
    arrival of the same data, or a concurrent command): start nothing then."""
    rows = registry.execute(
        "INSERT OR IGNORE INTO drift_triggers (grp, version, window_end, data_end, reason, "
        "figures, status, created) VALUES (?, ?, ?, ?, ?, ?, 'started', ?) RETURNING grp",
        (group, version, decision.figures["origins"][1], data_end.isoformat(), decision.reason,
         json.dumps(decision.figures, default=str), now()))
    return bool(rows)


def finish_trigger(registry: Registry, group: str, version: int, window_end: str, status: str,
                   execution: str | None = None, registered: int | None = None,
                   error: str | None = None) -> None:
    registry.execute("UPDATE drift_triggers SET status = ?, execution = ?, registered_version "
                     "= ?, error = ?, finished = ? WHERE grp = ? AND version = ? AND "
                     "window_end = ?", (status, execution, registered, error, now(), group,
                                        version, window_end))


def triggers(registry: Registry, group: str | None = None) -> list[dict[str, Any]]:
    rows = registry.query("SELECT * FROM drift_triggers WHERE ? IS NULL OR grp = ? ORDER BY "
                          "created", (group, group))
    return [{**dict(r), "figures": json.loads(r["figures"] or "{}")} for r in rows]


def next_forecast(state: StateDir, registry: Registry, package: dict[str, Any],
                  series: drift.Series, data_name: str) -> dict[str, Any]:
    """The version's forecast from the data's last row: the approval's transform request with
    the latest rows as input (``forecast-input/<group>/v<n>/<stamp>/``); one job per version
    and origin, so a second call starts nothing, and a Failed or Stopped one is started again
    as ``-r<n>`` (:func:`mlops.drift_actions.plan_next_forecast`). Returns
    ``{job, status[, reason]}``."""
    group, version = package["ModelPackageGroupName"], package["ModelPackageVersion"]
    origin = series.dates[-1]
    client = LocalSageMaker(state, registry)

    def describe(name: str) -> dict[str, Any] | None:
        try:
            return client.describe_transform_job(name)
        except LocalClientError:
            return None

    plan = drift_actions.plan_next_forecast(describe, group, version, origin)
    name = plan["job"]
    if plan["action"] == "exists":
        found = plan["found"]
        return {"job": name, "status": found["TransformJobStatus"], "new": False,
                "reason": found.get("FailureReason")}
    if plan["action"] == "skip":
        return {"job": name, "status": "skipped", "new": False, "reason": plan["reason"]}
    rows = version_schema(state, package).input_rows
    key = f"{FORECAST_INPUT}/{group}/v{version}/{drift.stamp(origin)}/"
    target = state.s3_path(state.s3_uri(key + drift_actions.forecast_input_name(data_name,
                                                                               origin)))
    write_text(target, drift_actions.latest_rows(series, rows))
    client.create_transform_job(**drift_actions.next_forecast_request(
        plan["approval"], name, state.s3_uri(key)))
    job = client.describe_transform_job(name)
    return {"job": name, "status": job["TransformJobStatus"], "new": True,
            "reason": job.get("FailureReason")}


def write_text(path: Path, text: str) -> Path:
    from informer.files import atomic_write_text

    return atomic_write_text(path, text)
