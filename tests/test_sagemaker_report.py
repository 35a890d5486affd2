"""The serving handlers' report (``INFORMER_OUTPUT=report``): what Batch Transform writes for
QuickSight and the dashboard, on AWS and locally alike: a backtest over the input's latest rows
with the actual values, then the forecast, each row naming the model version."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from informer.errors import InformerError
from informer.forecast import Forecaster
from mlops import lambda_function
from sagemaker_jobs import inference, transform
from tests.test_sagemaker_serving import ETT, WINDOWS, packaged_model

LEVELS = [0.1, 0.5, 0.9]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A quantile model as a training job leaves it (untrained tiny network + code/)."""
    return packaged_model(tmp_path_factory.mktemp("report"), quantiles=LEVELS)


@pytest.fixture
def report_env(monkeypatch):
    monkeypatch.setenv(inference.OUTPUT_ENV, "report")
    monkeypatch.setenv(inference.VERSION_ENV, "v3")


def call(model, body: str, content_type: str, accept: str) -> str:
    return inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type),
                                                    model), accept)[0]


def test_report_backtests_the_latest_rows_then_forecasts(model_dir, report_env):
    model = inference.model_fn(str(model_dir))
    history = ETT.iloc[:WINDOWS["seq_len"] + 3 * 24 + 5]  # 3 whole horizons after seq_len
    body = call(model, history.to_csv(index=False), "text/csv", "text/csv")
    table = pd.read_csv(io.StringIO(body))
    columns = ["date", "model_version", "segment"]
    for var in model.schema.predicted:
        columns += [f"{var}_actual", var, *(f"{var}_p{q}" for q in (10, 50, 90))]
    assert list(table.columns) == columns
    assert (table["model_version"] == "v3").all()
    backtest, future = table[table["segment"] == "backtest"], table[table["segment"] == "forecast"]
    assert len(backtest) == 3 * 24 and len(future) == 24
    # one prediction per timestamp: the history's last 72 rows, with their own values
    assert backtest["date"].tolist() == pd.to_datetime(history["date"].iloc[-72:]).dt.strftime(
        inference.DATE_FORMAT).tolist()
    assert backtest["OT_actual"].tolist() == history["OT"].iloc[-72:].tolist()
    assert future["OT_actual"].isna().all()
    expected = Forecaster.forecast(model, history)
    assert future["OT"].tolist() == pytest.approx(expected["OT"].tolist(), rel=1e-12)
    assert future["OT_p90"].tolist() == pytest.approx(expected["OT_p90"].tolist(), rel=1e-12)
    # the first backtest window is the forecast from the history that ends before it
    first = Forecaster.forecast(model, history.iloc[:-72])
    assert backtest["OT"].iloc[:24].tolist() == pytest.approx(first["OT"].tolist(), rel=1e-5)
    assert (backtest["OT_p10"] <= backtest["OT_p90"]).all()


def test_report_as_json_lines_has_nulls_for_unknown_actuals(model_dir, report_env):
    model = inference.model_fn(str(model_dir))
    records = [json.dumps({"id": i, "history": ETT.iloc[s:s + 48 + 24].assign(
        date=lambda f: f["date"].astype(str)).to_dict(orient="records")})
        for i, s in enumerate((0, 100))]
    body = call(model, "\n".join(records), "application/jsonlines", "application/jsonlines")
    lines = [json.loads(line) for line in body.split("\n")]
    assert [line["id"] for line in lines] == [0, 1]
    forecast = lines[1]["forecast"]
    assert forecast["segment"] == ["backtest"] * 24 + ["forecast"] * 24
    assert forecast["OT_actual"][:24] == ETT["OT"].iloc[100 + 48:100 + 72].tolist()
    assert forecast["OT_actual"][24:] == [None] * 24 and forecast["model_version"][0] == "v3"


def test_short_history_gets_the_forecast_only(model_dir, report_env):
    model = inference.model_fn(str(model_dir))
    table = pd.read_csv(io.StringIO(call(model, ETT.iloc[:60].to_csv(index=False), "text/csv",
                                         "text/csv")))
    assert table["segment"].tolist() == ["forecast"] * 24 and table["OT_actual"].isna().all()


def test_forecast_is_the_default_and_a_bad_output_setting_is_refused(model_dir, monkeypatch):
    model = inference.model_fn(str(model_dir))
    table = pd.read_csv(io.StringIO(call(model, ETT.iloc[:120].to_csv(index=False), "text/csv",
                                         "text/csv")))
    assert "segment" not in table.columns and len(table) == 24
    monkeypatch.setenv(inference.OUTPUT_ENV, "everything")
    with pytest.raises(InformerError, match=r"^INFORMER_OUTPUT: expected one of \['forecast', "
                                            r"'report'\], got 'everything'$"):
        inference.model_fn(str(model_dir))


def test_the_lambda_asks_every_transform_job_for_the_report(model_dir, tmp_path, monkeypatch):
    """The Lambda's job Environment names the handlers' settings, and run through the local
    Batch Transform it gives the report."""
    settings = lambda_function.Settings.from_env({"SAGEMAKER_ROLE_ARN": "r", "BUCKET": "b"})
    package = lambda_function.PackageEvent("g", 4, "arn:aws:sagemaker:r:1:model-package/g/4",
                                           "Approved")
    request = lambda_function.transform_request(settings, package, "g-v4", "s3://b/in/")
    assert request["Environment"] == {inference.OUTPUT_ENV: "report",
                                      inference.VERSION_ENV: "v4"}
    for name, value in request["Environment"].items():
        monkeypatch.setenv(name, value)
    (tmp_path / "in").mkdir()
    ETT.iloc[:48 + 48].to_csv(tmp_path / "in" / "ETTh1.csv", index=False)
    [out] = transform.run(str(model_dir), tmp_path / "in", tmp_path / "out", "text/csv",
                          "text/csv", "None", "SingleRecord", 6, "None")
    table = pd.read_csv(out)
    assert out.name == "ETTh1.csv.out" and set(table["model_version"]) == {"v4"}
    assert table["segment"].value_counts().to_dict() == {"backtest": 48, "forecast": 24}
