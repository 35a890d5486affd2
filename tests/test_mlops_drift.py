"""mlops/drift.py and mlops/drift_actions.py: served forecasts scored against the actual values
that arrived, with the library's own formulas (baselines, skill, coverage), and the drift rule."""

from __future__ import annotations

import ast
import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from informer import baselines
from informer.columns import quantile_column
from mlops import drift, drift_actions, lambda_function
from mlops.drift import DriftError, Schema, read_report, read_series, score
from mlops.drift_actions import DriftRule, decide
from tests.conftest import ETT_DIR

VARIABLES = ["HUFL", "OT"]
SEQ, PRED, SEASON = 48, 24, 24


@pytest.fixture(scope="module")
def ett() -> pd.DataFrame:
    return pd.read_csv(ETT_DIR / "ETTh1.csv").iloc[:600]


def data_text(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


def schema_for(frame: pd.DataFrame) -> Schema:
    train = frame.iloc[:300]
    return Schema(VARIABLES, [float(train[v].mean()) for v in VARIABLES],
                  [float(train[v].std()) for v in VARIABLES], SEQ, PRED, SEASON)


def report_text(frame: pd.DataFrame, origin: int, predictions: dict[str, np.ndarray],
                version: str = "v1", quantiles: dict[str, tuple] | None = None,
                backtest: int = PRED) -> str:
    """A report as the serving handlers write it: ``backtest`` rows up to ``origin`` (a row
    position of ``frame``), then the forecast of the ``PRED`` rows after it."""
    dates = pd.to_datetime(frame["date"])
    rows = []
    for i in range(origin - backtest + 1, origin + 1 + PRED):
        served = i > origin
        row = {"date": dates.iloc[i].strftime("%Y-%m-%dT%H:%M:%S"), "model_version": version,
               "segment": "forecast" if served else "backtest"}
        for v in VARIABLES:
            row[f"{v}_actual"] = "" if served else frame[v].iloc[i]
            row[v] = predictions[v][i - origin - 1] if served else frame[v].iloc[i] + 0.5
            for level, values in (quantiles or {}).get(v, ()):
                row[quantile_column(v, level)] = values[i - origin - 1] if served else ""
        rows.append(row)
    return pd.DataFrame(rows).to_csv(index=False)


def test_the_module_imports_the_standard_library_only():
    for module in (drift, drift_actions):
        tree = ast.parse(Path(module.__file__).read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                 for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and n.module}
        assert names <= {"__future__", "csv", "io", "json", "math", "collections", "dataclasses",
                         "datetime", "typing", "contextlib", "hashlib", "re", "mlops"}, names


@pytest.mark.parametrize(("pred_len", "season"), [(24, 24), (60, 24), (7, 5), (24, None)])
def test_naive_forecasts_are_the_librarys(pred_len, season):
    history = torch.randn(1, 48, 1, dtype=torch.float64)
    expected = baselines.naive_forecasts(history, pred_len, season)
    ours = drift.naive_forecasts(history[0, :, 0].tolist(), pred_len, season)
    assert set(ours) == set(expected)
    for name, values in ours.items():
        assert values == pytest.approx(expected[name][0, :, 0].tolist(), rel=1e-12)


def test_scores_agree_with_the_librarys_sums(ett):
    """Per horizon step: the model's and each baseline's squared errors in scaled units are
    informer.baselines.step_sums' (the evaluation's skill), MAE and original units by hand."""
    schema = schema_for(ett)
    origin, rng = 400, np.random.default_rng(0)
    truth = {v: ett[v].to_numpy()[origin + 1:origin + 1 + PRED] for v in VARIABLES}
    predictions = {v: truth[v] + rng.normal(0, 1.5, PRED) for v in VARIABLES}
    [forecast] = read_report(report_text(ett, origin, predictions), "r.csv.out")
    assert forecast.origin == pd.Timestamp(ett["date"].iloc[origin]).to_pydatetime()
    rows = score(forecast, read_series(data_text(ett), "ETTh1.csv"), schema)
    assert [r["step"] for r in rows] == list(range(PRED + 1))
    mean, std = np.array(schema.mean), np.array(schema.std)

    def scaled(values):  # [pred_len or seq_len, c] -> [1, ..., c]
        return torch.tensor((np.stack(values, -1) - mean) / std)[None]

    history = [ett[v].to_numpy()[origin + 1 - SEQ:origin + 1] for v in VARIABLES]
    sums = baselines.step_sums(scaled([predictions[v] for v in VARIABLES]),
                               scaled([truth[v] for v in VARIABLES]), scaled(history), SEASON)
    for h, row in enumerate(rows[1:]):
        assert row["values"] == 2
        assert row["mse"] * 2 == pytest.approx(float(sums[0, h]), rel=1e-9)
        assert row["mse_seasonal_naive"] * 2 == pytest.approx(float(sums[1, h]), rel=1e-9)
        assert row["mse_window_mean"] * 2 == pytest.approx(float(sums[2, h]), rel=1e-9)
    skills = baselines.skill_metrics(sums)
    whole = rows[0]
    assert whole["values"] == 2 * PRED
    assert whole["skill_seasonal_naive"] == pytest.approx(skills["skill_seasonal_naive"])
    assert whole["mse_window_mean"] == pytest.approx(skills["mse_window_mean"])
    errors = np.stack([predictions[v] - truth[v] for v in VARIABLES], -1)
    assert whole["mse_original"] == pytest.approx(float((errors ** 2).mean()))
    assert whole["mae"] == pytest.approx(float((np.abs(errors) / std).mean()))
    assert whole["coverage"] is None  # a point model


def test_coverage_of_the_outermost_interval(ett):
    schema, origin = schema_for(ett), 400
    truth = {v: ett[v].to_numpy()[origin + 1:origin + 1 + PRED] for v in VARIABLES}
    inside = np.arange(PRED) % 4 != 0  # 18 of 24 steps inside the interval
    quantiles = {v: ((0.1, truth[v] - np.where(inside, 1, -1)), (0.5, truth[v]),
                     (0.9, truth[v] + np.where(inside, 1, -1))) for v in VARIABLES}
    text = report_text(ett, origin, truth, quantiles=quantiles)
    assert "OT_p10" in text.splitlines()[0]
    [forecast] = read_report(text, "r.csv.out")
    rows = score(forecast, read_series(data_text(ett), "d.csv"), schema)
    assert rows[0]["coverage"] == pytest.approx(18 / 24)
    assert rows[0]["coverage_nominal"] == pytest.approx(0.8)
    assert rows[0]["mse"] == 0 and rows[1]["coverage"] == 0 and rows[2]["coverage"] == 1


def test_a_forecast_is_scored_only_when_actuals_cover_it(ett):
    schema, origin = schema_for(ett), 400
    predictions = {v: ett[v].to_numpy()[origin + 1:origin + 1 + PRED] for v in VARIABLES}
    [forecast] = read_report(report_text(ett, origin, predictions), "r.csv.out")
    for end in (origin + 1, origin + PRED):  # none, and all but the last of its timestamps
        assert score(forecast, read_series(data_text(ett.iloc[:end]), "d"), schema) is None
    covered = read_series(data_text(ett.iloc[:origin + 1 + PRED]), "d")
    assert score(forecast, covered, schema)[0]["mse"] == 0


def test_json_lines_reports_and_reports_without_backtest(ett):
    origin = 400
    predictions = {v: ett[v].to_numpy()[origin + 1:origin + 1 + PRED] for v in VARIABLES}
    table = pd.read_csv(pd.io.common.StringIO(report_text(ett, origin, predictions,
                                                          backtest=0)))
    line = json.dumps({"id": 7, "forecast": table.where(table.notna(), None).to_dict("list")})
    [forecast] = read_report(line + "\n", "r.jsonl.out")
    assert forecast.origin == pd.Timestamp(ett["date"].iloc[origin]).to_pydatetime()
    assert forecast.version == "v1" and forecast.dates[0] - forecast.origin == timedelta(hours=1)


def test_unreadable_inputs_name_the_file_and_what_was_expected():
    with pytest.raises(DriftError, match=r"^d\.csv: line 3: date 2016-01-01 00:00:00 is not "
                                         r"after 2016-01-01 01:00:00; expected increasing"):
        read_series("date,OT\n2016-01-01 01:00:00,1\n2016-01-01 00:00:00,2\n", "d.csv")
    with pytest.raises(DriftError, match=r"^d\.csv: line 2: date 'x' is not a timestamp"):
        read_series("date,OT\nx,1\n", "d.csv")
    with pytest.raises(DriftError, match=r"^r\.out: no forecast rows"):
        read_report("date,OT\n2016-01-01,1\n", "r.out")
    with pytest.raises(DriftError, match=r"^evaluation\.json: schema: expected variables"):
        drift.schema_of({"regression_metrics": {}}, "evaluation.json")


def rows_of(mses: list[float], start: datetime = datetime(2016, 11, 1, 23)) -> list[dict]:
    return [{"version": "v1", "origin": (start + timedelta(days=i)).isoformat(), "step": 0,
             "values": 168, "mse": m, "mse_seasonal_naive": 1.0, "mse_window_mean": 2.0}
            for i, m in enumerate(mses)]


def test_the_rule_fires_over_a_full_window_above_k_times_the_evaluation_mse():
    rule = DriftRule(window=3, k=2.0)
    assert not decide(rows_of([5.0, 5.0]), 1.0, rule).fire  # 2 of 3 origins scored
    quiet = decide(rows_of([1.0, 1.0, 1.5, 2.0]), 1.0, rule)
    assert not quiet.fire and quiet.figures["realized_mse"] == pytest.approx(1.5)
    fired = decide(rows_of([1.0, 2.0, 2.5, 2.6]), 1.0, rule)
    assert fired.fire and fired.figures["ratio"] == pytest.approx(7.1 / 3)
    assert fired.reason.startswith("realized MSE 2.367 > 2 x evaluation MSE 1 over the 3 "
                                   "origins 2016-11-02T23:00:00 .. 2016-11-04T23:00:00")
    assert fired.figures["best_baseline"] == "seasonal_naive"
    assert fired.figures["skill"] == pytest.approx(1 - 7.1 / 3)


def test_once_fired_the_rule_waits_for_a_window_of_new_origins():
    rule, rows = DriftRule(window=2, k=2.0), rows_of([3.0] * 6)
    through = datetime.fromisoformat(rows[1]["origin"])
    assert decide(rows[:2], 1.0, rule).fire
    assert not decide(rows[:3], 1.0, rule, fired_through=through).fire  # overlaps
    assert decide(rows[:4], 1.0, rule, fired_through=through).fire


def test_the_skill_rule_and_its_settings():
    rows = rows_of([1.5, 1.5])
    assert not decide(rows, 1.0, DriftRule(window=2, rule="mse")).fire
    skill = decide(rows, 1.0, DriftRule(window=2, rule="skill"))
    assert skill.fire and "skill -0.500 against seasonal_naive < 0" in skill.reason
    assert DriftRule.from_mapping({"window": "4", "k": "3", "rule": "mse_or_skill"}) == \
        DriftRule(4, 3.0, "mse_or_skill", 0.0)
    for values, message in (({"window": 0}, r"^drift\.window: expected an integer >= 1"),
                            ({"k": -1}, r"^drift\.k: expected a positive number, got -1$"),
                            ({"rule": "x"}, r"^drift\.rule: expected one of \['mse'")):
        with pytest.raises(DriftError, match=message):
            DriftRule.from_mapping(values)


def test_the_rule_defaults_are_the_pipeline_config():
    from mlops.config import load_config

    assert DriftRule.from_mapping(load_config([])["drift"]) == DriftRule()


@pytest.mark.parametrize("group", ["informer-models", "etth1", "Group_with.odd chars",
                                   "g" * 60])
def test_job_names_are_the_approval_lambdas(group):
    for attempt in (1, 2, 10):
        assert drift_actions.approval_job_name(group, 12, attempt) == \
            lambda_function.resource_name(group, 12, attempt)
    name = drift_actions.forecast_job_name(group, 3, datetime(2016, 11, 5, 23))
    assert len(name) <= 63 and name.endswith("-v3-o20161105230000")
    retry = drift_actions.forecast_job_name(group, 3, datetime(2016, 11, 5, 23), 2)
    assert len(retry) <= 63 and retry.endswith("-v3-o20161105230000-r2")
    assert drift_actions.MAX_ATTEMPTS == lambda_function.MAX_ATTEMPTS
    assert drift_actions.RETRYABLE == lambda_function.RETRYABLE


ORIGIN = datetime(2016, 11, 5, 23)


@pytest.mark.parametrize(("jobs", "expected"), [
    # no forecast job yet: the first attempt, repeating the approval's latest job
    ({"g-v3": "Failed", "g-v3-r2": "Completed"},
     {"action": "create", "job": "g-v3-o20161105230000", "approval": "g-v3-r2"}),
    # a failed or stopped attempt is started again under the next name
    ({"g-v3": "Completed", "g-v3-o20161105230000": "Failed",
      "g-v3-o20161105230000-r2": "Stopped"},
     {"action": "create", "job": "g-v3-o20161105230000-r3", "approval": "g-v3"}),
    # one that runs or completed is left alone
    ({"g-v3": "Completed", "g-v3-o20161105230000": "Failed",
      "g-v3-o20161105230000-r2": "InProgress"},
     {"action": "exists", "job": "g-v3-o20161105230000-r2"}),
    ({}, {"action": "skip", "job": "g-v3-o20161105230000",
          "reason": "the version has no approval transform job to repeat"}),
    ({"g-v3": "Completed", **{drift_actions.forecast_job_name("g", 3, ORIGIN, a): "Failed"
                              for a in range(1, drift_actions.MAX_ATTEMPTS + 1)}},
     {"action": "skip", "job": "g-v3-o20161105230000-r10",
      "reason": "10 attempts ended Failed or Stopped; not retrying again"}),
])
def test_the_next_forecast_retries_a_failed_job_on_both_backends(jobs, expected):
    described = {name: {"TransformJobName": name, "TransformJobStatus": status}
                 for name, status in jobs.items()}
    plan = drift_actions.plan_next_forecast(described.get, "g", 3, ORIGIN)
    if "approval" in plan:
        plan["approval"] = plan["approval"]["TransformJobName"]
    if "found" in plan:
        assert plan.pop("found") is described[plan["job"]]
    assert plan == expected
    assert drift_actions.forecast_input_name("ETTh1.csv", datetime(2016, 11, 5, 23)) == \
        "ETTh1-o20161105230000.csv"


def test_the_next_forecast_repeats_the_approval_request_from_the_new_input():
    settings = lambda_function.Settings.from_env({"SAGEMAKER_ROLE_ARN": "r", "BUCKET": "b"})
    package = lambda_function.PackageEvent("g", 2, "arn:aws:sagemaker:r:1:model-package/g/2",
                                           "Approved")
    approval = lambda_function.transform_request(settings, package, "g-v2", "s3://b/in/")
    request = drift_actions.next_forecast_request(
        {**approval, "TransformJobStatus": "Completed"}, "g-v2-o1", "s3://b/next/")
    assert request["TransformJobName"] == "g-v2-o1" and request["ModelName"] == "g-v2"
    assert request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://b/next/"
    assert request["TransformOutput"] == approval["TransformOutput"]
    assert request["Environment"] == approval["Environment"]
    assert "TransformJobStatus" not in request
    assert approval["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://b/in/"
    series = read_series("date,OT\n2016-01-01 00:00:00,1\n2016-01-01 01:00:00,2\n", "d")
    assert drift_actions.latest_rows(series, 1) == "date,OT\n2016-01-01 01:00:00,2\n"


def test_scores_round_trip_through_csv():
    rows = rows_of([1.25, math.pi])
    back = drift.read_scores_csv(drift.scores_csv(rows))
    assert back[1]["mse"] == math.pi and back[0]["coverage"] is None
    assert back[0]["origin"] == rows[0]["origin"] and back[0]["values"] == 168


def test_the_evaluation_records_the_schema_scoring_reads():
    from informer.schema import DataSchema
    from sagemaker_jobs.evaluate import schema_report

    schema = DataSchema(["HUFL", "OT"], "OT", "MS", "h", "timeF", 48, 24, 24, [1.0, 2.0],
                        [3.0, 4.0])
    block = json.loads(json.dumps(schema_report(schema, 7)))
    read = drift.schema_of({"schema": block}, "evaluation.json")
    assert read == Schema(["OT"], [2.0], [4.0], 48, 24, 24, 48 + 7 * 24)
    assert read.season == baselines.season_length("h")
