"""The whole loop on one machine: run -> registry -> approve -> Lambda -> local transform ->
forecast CSV -> dashboard, with duplicates, rejections, concurrency, crashes and restarts."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from mlops.local.approval import change_status, deliver_pending, state_change_event
from mlops.local.registry import Registry
from mlops.local.state import StateDir
from tests.conftest import ETT_DIR

TINY = ["experiment=etth1_M_24", "debug=tiny"]


def mlops_cli(*args: str, state, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "INFORMER_DATA_DIR": str(ETT_DIR), "INFORMER_MLOPS_HOME": str(state)}
    proc = subprocess.run([sys.executable, "-m", "mlops.cli", *args], env=env,
                          capture_output=True, text=True, timeout=900, cwd=state.parent)
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """One local pipeline run with a tiny model, registered as PendingManualApproval."""
    state = tmp_path_factory.mktemp("loop") / "state"
    proc = mlops_cli("local", "run", *TINY, "mse_threshold=10", "require_skill=false",
                     "group=etth1", state=state)
    for step in ("PreprocessData", "TrainModel", "EvaluateModel", "CheckMse", "CheckSkill",
                 "RegisterModel"):
        assert f"{step} ... ok" in proc.stdout, step
    return state


def test_run_registers_a_pending_version_with_its_artifact(registered):
    package = Registry(registered / "registry.db").package("etth1", 1)
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    uri = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert uri.startswith("s3://informer-mlops/informer/models/") and uri.endswith(".tar.gz")
    assert StateDir(registered).s3_path(uri).is_file()
    assert package["ModelMetrics"]["regression_metrics"]["mse"]["value"] > 0
    assert package["ModelMetrics"]["windows"] == 2857
    execution = next((registered / "logs").iterdir())
    assert {p.name for p in execution.glob("*.log")} == {"preprocess.log", "train.log",
                                                          "evaluate.log"}
    assert (registered / "s3" / "informer-mlops" / "data" / "ETTh1.csv").is_file()


def test_approve_runs_one_transform_and_writes_forecasts(registered):
    proc = mlops_cli("local", "approve", "etth1", state=registered)
    assert "etth1 v1: Approved" in proc.stdout
    folder = registered / "forecasts" / "etth1" / "v1"
    # the transform job's own output, byte for byte: the local side joins nothing itself
    job_output = registered / "s3" / "informer-mlops" / "forecasts" / "etth1" / "v1"
    assert sorted(p.name for p in job_output.iterdir()) == ["ETTh1.csv.out"]
    assert (folder / "ETTh1.csv.out").read_bytes() == (job_output / "ETTh1.csv.out").read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["ETTh1.csv.out", "backtest_by_step.csv"]
    forecast = pd.read_csv(folder / "ETTh1.csv.out")
    assert list(forecast.columns[:5]) == ["date", "model_version", "segment", "HUFL_actual",
                                          "HUFL"]
    assert set(forecast["model_version"]) == {"v1"}
    future = forecast[forecast["segment"] == "forecast"]
    assert len(future) == 24 and future["OT_actual"].isna().all()
    assert future["date"].iloc[0] == "2018-06-26T20:00:00"  # the hour after the last row
    backtest = forecast[forecast["segment"] == "backtest"]  # the last 7 horizons of the data
    assert len(backtest) == 7 * 24 and backtest["OT_actual"].notna().all()
    assert backtest["date"].iloc[-1] == "2018-06-26T19:00:00"
    mlops_cli("local", "approve", "etth1", "--version", "1", state=registered)  # duplicate
    report = json.loads(mlops_cli("local", "status", "--json", state=registered).stdout)
    jobs = report["transform_jobs"]
    assert [(j["TransformJobName"], j["TransformJobStatus"]) for j in jobs] == [
        ("etth1-v1", "Completed")]
    # the transform read what the run's EvaluateModel step wrote for this version, as on AWS
    (package,) = report["packages"]
    source = package["CustomerMetadataProperties"]["TransformInput"]
    execution = next((registered / "logs").glob("2*")).name
    assert source == f"s3://informer-mlops/informer/executions/{execution}/evaluate/batch-input"
    assert jobs[0]["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == source + "/"
    assert [p.name for p in StateDir(registered).s3_path(source).iterdir()] == ["ETTh1.csv"]
    assert not (registered / "s3" / "informer-mlops" / "batch-input").exists()
    assert jobs[0]["TransformOutput"]["S3OutputPath"] == "s3://informer-mlops/forecasts/etth1/v1/"
    html = registered / "dash.html"
    mlops_cli("dashboard", f"output={html}", state=registered)
    assert "etth1 v1: OT" in html.read_text()


def test_reject_starts_nothing(registered):
    registry = Registry(registered / "registry.db")
    registry.register("other", "s3://informer-mlops/informer/models/x/model.tar.gz", {})
    package, results = change_status(StateDir(registered), "other", None, "Rejected")
    assert package["ModelApprovalStatus"] == "Rejected"
    assert [r["status"] for r in results] == ["ignored"]
    assert not (registered / "forecasts" / "other").exists()
    assert registry.query("SELECT COUNT(*) FROM transform_jobs WHERE name LIKE 'other%'")[0][0] == 0


def _approve(state: str, queue) -> None:
    try:
        change_status(StateDir.resolve(state), "etth1", 1, "Approved")
        queue.put("ok")
    except Exception as err:  # noqa: BLE001 - reported to the parent test
        queue.put(repr(err))


def test_crash_before_delivery_and_concurrent_approvals(registered):
    state = StateDir(registered)
    registry = Registry(state.registry)
    change_status(state, "etth1", 1, "Rejected")
    # a crash after the status change, before the handler ran: the event stays queued
    registry.set_status("etth1", 1, "Approved", make_event=state_change_event)
    assert len(registry.pending_events()) == 1
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_approve, args=(str(registered), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert sorted(queue.get(timeout=5) for _ in procs) == ["ok", "ok"]
    assert registry.pending_events() == []
    assert registry.package("etth1", 1)["ModelApprovalStatus"] == "Approved"
    jobs = registry.query("SELECT name FROM transform_jobs WHERE name LIKE 'etth1%'")
    assert [j["name"] for j in jobs] == ["etth1-v1"]  # still exactly one transform job
    assert deliver_pending(state, Registry(state.registry)) == []  # a restart finds it all done


@pytest.mark.parametrize(("setting", "step", "reason"), [
    ("mse_threshold=0.001", "CheckMse", "test MSE .* is above the threshold 0.001"),
    # a model that a naive forecast beats (a few steps of a tiny network) is never registered
    ("mse_threshold=10", "CheckSkill", r"skill -\d\.\d+ against the better naive baseline "
                                       r"\((seasonal_naive|window_mean); 1 - MSE / MSE_baseline\) "
                                       r"is not above 0"),
])
def test_failed_condition_registers_nothing(tmp_path, setting, step, reason):
    state = tmp_path / "state"
    proc = mlops_cli("local", "run", *TINY, setting, state=state, check=False)
    assert proc.returncode == 2
    assert f"{step} ... failed" in proc.stdout
    assert re.match(f"error: {step}: {reason}", proc.stderr.strip().splitlines()[-1])
    assert Registry(state / "registry.db").packages() == []
