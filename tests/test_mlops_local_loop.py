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
def definition(tmp_path_factory):
    """A pipeline definition as `pipeline definition` prints it (a tiny training job, the
    local state's bucket), its uploads kept in the state's object store."""
    state = tmp_path_factory.mktemp("loop") / "state"
    proc = mlops_cli("pipeline", "definition", "--offline", "bucket=informer-mlops",
                     "model_package_group=etth1", "+training.hyperparameters.debug=tiny",
                     "parameters.mse_threshold=10", "parameters.require_skill=false",
                     state=state)
    path = state.parent / "d.json"
    path.write_text(proc.stdout)
    return state, path


@pytest.fixture(scope="module")
def registered(definition):
    """One local execution of the saved definition, registered as PendingManualApproval."""
    state, path = definition
    proc = mlops_cli("local", "run", f"definition={path}", state=state)
    for step in ("PreprocessData", "TrainModel", "EvaluateModel", "CheckMse", "CheckSkill",
                 "RegisterModel"):
        assert f"{step} ... ok" in proc.stdout, step
    assert re.search(r"^    epoch 1: val_loss=\S+ train_loss=\S+$", proc.stdout, re.M)
    return state


def test_run_registers_a_pending_version_with_its_artifact(registered):
    package = Registry(registered / "registry.db").package("etth1", 1)
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    uri = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert uri.startswith("s3://informer-mlops/informer/models/") and uri.endswith(".tar.gz")
    assert StateDir(registered).s3_path(uri).is_file()
    assert package["ModelMetrics"]["regression_metrics"]["mse"]["value"] > 0
    assert package["ModelMetrics"]["windows"] == 2857
    execution = next((registered / "logs").glob("2*"))
    assert {p.name for p in execution.glob("*.log")} == {"PreprocessData.log", "TrainModel.log",
                                                          "EvaluateModel.log"}
    assert json.loads((execution / "definition.json").read_text())["Steps"][0]["Name"] == \
        "PreprocessData"
    assert (registered / "s3" / "informer-mlops" / "data" / "ETTh1.csv").is_file()


def test_approve_runs_one_transform_and_writes_forecasts(registered):
    proc = mlops_cli("local", "approve", "etth1", state=registered)
    assert "etth1 v1: Approved" in proc.stdout
    # the Lambda's JSON log lines go to logs/lambda.log (CloudWatch's role), never to stdout
    logged = [json.loads(line) for line in (registered / "logs" / "lambda.log").read_text()
              .splitlines()]
    assert logged and not any(line.startswith("{") for line in proc.stdout.splitlines())
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


def test_failed_condition_registers_nothing(tmp_path):
    """A run built from the settings (not a saved definition) that fails its MSE condition,
    then, in the same state, its skill condition: the second run reuses the first one's
    cached jobs (their arguments are the same) and ends in the fail step naming the skill."""
    state = tmp_path / "state"
    proc = mlops_cli("local", "run", *TINY, "mse_threshold=0.001", state=state, check=False)
    assert proc.returncode == 2
    assert "CheckMse ... ok (0.0 s) - false: next MseAboveThreshold" in proc.stdout
    assert "MseAboveThreshold ... failed" in proc.stdout
    assert re.match(r"error: MseAboveThreshold: Test MSE \S+ is above the threshold 0.001 "
                    r"\(MseThreshold\); the model was not registered\.$",
                    proc.stderr.strip().splitlines()[-1])
    # a model that a naive forecast beats (a few steps of a tiny network) is never registered
    proc = mlops_cli("local", "run", *TINY, "mse_threshold=10", state=state, check=False)
    assert proc.returncode == 2
    for step in ("PreprocessData", "TrainModel", "EvaluateModel"):
        assert re.search(rf"{step} ... ok \(\S+ s\) - cached \(execution ", proc.stdout), step
    assert "SkillBelowBaseline ... failed" in proc.stdout
    assert re.match(r"error: SkillBelowBaseline: Skill -\d\.\d+ against the better naive "
                    r"baseline \(1 - MSE / MSE_baseline\) is not above 0",
                    proc.stderr.strip().splitlines()[-1])
    assert Registry(state / "registry.db").packages() == []


def _broken(definition, tmp_path, edit) -> str:
    """The saved definition with one field changed by ``edit(steps)``, as a file."""
    state, path = definition
    data = json.loads(path.read_text())
    edit({s["Name"]: s for s in data["Steps"]})
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    return f"definition={broken}"


def _last_error(proc) -> str:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    return line


def test_a_field_the_local_backend_cannot_honour_is_refused_before_any_step(
        definition, tmp_path):
    state, _ = definition
    arg = _broken(definition, tmp_path, lambda steps: steps["TrainModel"]["Arguments"].update(
        VpcConfig={"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}))
    proc = mlops_cli("local", "run", arg, state=state, check=False)
    assert _last_error(proc) == (
        "error: Steps[TrainModel].Arguments.VpcConfig: the local backend cannot honour this "
        "field (it honours ['AlgorithmSpecification', 'CheckpointConfig', "
        "'EnableManagedSpotTraining', 'Environment', 'HyperParameters', 'InputDataConfig', "
        "'OutputDataConfig', 'ResourceConfig', 'RoleArn', 'StoppingCondition'])")
    assert "PreprocessData" not in proc.stdout


def _condition(steps: dict) -> dict:
    return steps["CheckMse"]["Arguments"]["Conditions"][0]


def test_a_broken_jsonget_path_fails_the_condition_step(definition, registered, tmp_path):
    """The jobs before it are cached from the fixture's execution (same arguments)."""
    state, _ = definition
    arg = _broken(definition, tmp_path, lambda steps: _condition(steps)["LeftValue"][
        "Std:JsonGet"].update(Path="regression_metrics.mse.valu"))
    proc = mlops_cli("local", "run", arg, state=state, check=False)
    assert "TrainModel ... ok" in proc.stdout and "cached" in proc.stdout
    assert "CheckMse ... failed" in proc.stdout
    assert _last_error(proc) == (
        "error: CheckMse: Steps[CheckMse].Arguments.Conditions[0].LeftValue: property file "
        "EvaluationReport of EvaluateModel (Std:JsonGet.Path 'regression_metrics.mse.valu') "
        "has no 'valu'")


def test_an_output_that_does_not_exist_fails_the_step_that_reads_it(definition, registered,
                                                                     tmp_path):
    state, _ = definition

    def edit(steps):
        channel = steps["TrainModel"]["Arguments"]["InputDataConfig"][0]
        channel["DataSource"]["S3DataSource"]["S3Uri"]["Get"] = \
            "Steps.PreprocessData.ProcessingOutputConfig.Outputs['datasets'].S3Output.S3Uri"

    proc = mlops_cli("local", "run", _broken(definition, tmp_path, edit), state=state,
                     check=False)
    assert "PreprocessData ... ok" in proc.stdout and "TrainModel ... failed" in proc.stdout
    assert _last_error(proc) == (
        "error: TrainModel: Steps[TrainModel].Arguments.InputDataConfig[0].DataSource."
        "S3DataSource.S3Uri: Get \"Steps.PreprocessData.ProcessingOutputConfig.Outputs"
        "['datasets'].S3Output.S3Uri\": the properties of step PreprocessData has no 'datasets'")
