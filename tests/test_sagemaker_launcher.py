"""``informer-sagemaker train`` with SageMaker SDK v3, offline: moto (``mock_aws``), telemetry
off, ``SAGEMAKER_VALIDATE_ROLE=false``. Skipped without the ``aws`` extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sagemaker.train", reason="needs the aws extra (sagemaker==3.27.*)")
moto = pytest.importorskip("moto")

import boto3  # noqa: E402

from sagemaker_jobs import launcher, source  # noqa: E402
from sagemaker_jobs.hyperparameters import parse_cli, to_overrides  # noqa: E402
from sagemaker_jobs.metrics import METRIC_DEFINITIONS  # noqa: E402

# The SDK imports its own deprecated module (sagemaker.train.configs) internally.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
TOKENS = ["experiment=etth1_M_24", "trainer.max_epochs=3", "model.net.d_model=256",
          "+trainer.gradient_clip_val=1.0", "instance_type=ml.g5.xlarge", "spot=true",
          f"role={ROLE}", "data=s3://my-data/ett/"]


@pytest.fixture
def telemetry_off(tmp_path, monkeypatch):
    """SDK telemetry off through its config file; any telemetry request fails the test."""
    config = tmp_path / "sagemaker-config.yaml"
    config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n"
                      "      TelemetryOptOut: true\n")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "SAGEMAKER_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    from sagemaker.core.telemetry import telemetry_logging

    telemetry: list[str] = []
    monkeypatch.setattr(telemetry_logging, "_requests_helper",
                        lambda url, timeout: telemetry.append(url))
    yield
    assert telemetry == [], "telemetry must stay off in tests"


@pytest.fixture
def aws(telemetry_off, monkeypatch):
    """Fake credentials, no role validation, moto for every AWS call."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    with moto.mock_aws():
        yield


def buckets() -> dict[str, list[str]]:
    s3 = boto3.client("s3")
    return {b["Name"]: [o["Key"] for o in s3.list_objects_v2(Bucket=b["Name"])
                        .get("Contents", [])] for b in s3.list_buckets()["Buckets"]}


def test_dry_run_prints_the_request_and_sends_nothing(aws, capsys):
    launcher.main(["train", *TOKENS, "bucket=my-bucket", "--dry-run"])
    request = json.loads(capsys.readouterr().out)
    spec = request["AlgorithmSpecification"]
    assert spec["TrainingImage"] == \
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.6.0-gpu-py312"
    assert spec["MetricDefinitions"] == METRIC_DEFINITIONS
    assert request["HyperParameters"] == {
        "experiment": "etth1_M_24", "trainer__max_epochs": "3", "model__net__d_model": "256",
        "add__trainer__gradient_clip_val": "1.0"}
    assert request["ResourceConfig"] == {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1,
                                         "VolumeSizeInGB": 30}
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400,
                                            "MaxWaitTimeInSeconds": 172800}
    assert request["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    assert request["CheckpointConfig"]["S3Uri"].startswith("s3://my-bucket/informer/")
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                for c in request["InputDataConfig"]}
    assert channels["training"] == "s3://my-data/ett/"
    assert set(channels) == {"training", "code", "sm_drivers"}
    assert request["RoleArn"] == ROLE
    assert buckets() == {}  # nothing uploaded, no bucket created
    assert boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []


def test_dry_run_with_a_bucket_and_a_role_arn_makes_no_aws_call(telemetry_off, monkeypatch,
                                                                capsys):
    """No credentials, no moto, role validation on: still no call leaves the process."""
    import botocore.client

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SAGEMAKER_VALIDATE_ROLE"):
        monkeypatch.delenv(name, raising=False)
    calls: list[str] = []
    original = botocore.client.BaseClient._make_api_call

    def spy(self, operation, params):
        calls.append(operation)
        return original(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", spy)
    launcher.main(["train", *TOKENS, "bucket=b", "region=eu-west-1", "--dry-run"])
    request = json.loads(capsys.readouterr().out)
    assert request["AlgorithmSpecification"]["TrainingImage"].startswith(
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.6.0")
    assert set(calls) <= {"SimulatePrincipalPolicy"}  # answered by the dry-run hook
    assert "SAGEMAKER_VALIDATE_ROLE" not in os.environ


def test_launch_under_moto_uploads_the_staged_library_and_creates_the_job(aws, capsys):
    launcher.main(["train", *TOKENS, "instance_count=2", "framework_version=2.5.1"])
    job = json.loads(capsys.readouterr().out)
    described = boto3.client("sagemaker").describe_training_job(
        TrainingJobName=job["TrainingJobName"])
    assert described["HyperParameters"]["trainer__max_epochs"] == "3"
    assert described["AlgorithmSpecification"]["TrainingImage"].endswith(
        "pytorch-training:2.5.1-gpu-py311")
    assert described["ResourceConfig"]["InstanceCount"] == 2
    keys = [k for keys in buckets().values() for k in keys]
    code = [k.split("/input/code/", 1)[1] for k in keys if "/input/code/" in k]
    assert {"sagemaker_jobs/train.py", "informer/cli/train.py", "requirements.txt"} <= set(code)
    assert any(k.endswith("conf/train.yaml") for k in code)
    drivers = [k for k in keys if "/input/sm_drivers/" in k]
    assert any(k.endswith("distributed_drivers/torchrun_driver.py") for k in drivers)


def test_requirements_leave_torch_numpy_and_pandas_to_the_image():
    lines = [x for x in source.requirements().splitlines() if not x.startswith("#")]
    assert {line.split("==")[0] for line in lines} >= {"lightning", "hydra-core", "omegaconf"}
    assert not [x for x in lines if x.split("==")[0] in ("torch", "numpy", "pandas")]


def test_requirements_are_pinned_and_keep_the_images_torch():
    """Every job requirement is pinned to the version the definition was built with, and
    torch to the image's own version: pip finds it satisfied by the image's build and fails on
    a conflict instead of replacing it."""
    from importlib import metadata

    from packaging.requirements import Requirement

    reqs = [Requirement(x.split("#")[0]) for x in source.requirements("2.6.0").splitlines()
            if x and not x.startswith("#")]
    for req in reqs:
        assert [s.operator for s in req.specifier] == ["=="], req
    pinned = {r.name: r for r in reqs}
    assert pinned["lightning"].specifier.contains(metadata.version("lightning"))
    assert pinned["torch"].specifier.contains("2.6.0+cpu")  # the CPU image's torch
    assert not pinned["torch"].specifier.contains("2.7.0")
    assert "numpy" not in pinned and "pandas" not in pinned


@pytest.mark.parametrize("tokens, message", [
    (["experiment=etth1_M_99"], "--experiment: unknown experiment 'etth1_M_99'"),
    (["trainer.max_epoch=3"], "trainer has no key 'max_epoch'"),
    (["spot=maybe"], "spot: expected true or false, got 'maybe'"),
    (["framework_version=2.7.0"], "framework_version: expected one of ['2.5.1', '2.6.0']"),
    (["data=/local/dir"], "data: expected an s3:// URI"),
    (["data.target=it's"], "data.target: the value contains a single quote"),
    (["max_run=3600", "max_wait=60"], "max_wait: expected >= max_run (3600), got 60"),
])
def test_bad_settings_and_overrides_fail_before_any_aws_call(tokens, message, capsys):
    with pytest.raises(SystemExit) as info:
        launcher.main(["train", *tokens, "--dry-run"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_hyperparameters_survive_the_sdk_container_driver(aws, tmp_path, capsys):
    """SDK v3's own environment.py writes them into a shell file sourced under ``set -e`` and
    its driver turns them into arguments: the entry point must get the original overrides."""
    launcher.main(["train", *TOKENS, "bucket=b", "--dry-run"])
    hyperparameters = json.loads(capsys.readouterr().out)["HyperParameters"]
    import sagemaker.train

    drivers = Path(sagemaker.train.__file__).parent / "container_drivers"
    script = f"""
import json, os, sys
sys.path.insert(0, {str(drivers)!r})
sys.path.insert(0, {str(drivers / "scripts")!r})
os.environ["TRAINING_JOB_NAME"] = "job"
import environment
from common.utils import hyperparameters_to_cli_args
resource = {{"current_host": "algo-1", "current_instance_type": "ml.g5.xlarge",
            "hosts": ["algo-1"], "network_interface_name": "eth0"}}
hps = json.loads(sys.argv[1])
environment.set_env(resource, {{"training": {{}}}}, hps, output_file=sys.argv[2])
args = hyperparameters_to_cli_args(environment.deserialize_hyperparameters(hps))
print("ARGS " + json.dumps(args))
"""

    def container(hps: dict) -> subprocess.CompletedProcess:
        env_file = tmp_path / "sm_training.env"
        made = subprocess.run([sys.executable, "-c", script, json.dumps(hps), str(env_file)],
                              capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr[-2000:]
        sourced = subprocess.run(["bash", "-c", f"set -e; trap 'exit 9' ERR; source {env_file}"
                                  f"; echo \"$SM_HPS\""], capture_output=True, text=True,
                                 timeout=30, env={"PATH": os.environ["PATH"]})
        sourced.args = json.loads(made.stdout.split("ARGS ", 1)[1])  # type: ignore
        return sourced

    sourced = container(hyperparameters)
    assert sourced.returncode == 0, sourced.stderr
    assert json.loads(sourced.stdout) == {k: json.loads(v) if v[0].isdigit() else v
                                          for k, v in hyperparameters.items()}
    assert sourced.args[:2] == ["--experiment", "etth1_M_24"]
    _, pairs = parse_cli(sourced.args)
    assert to_overrides(pairs) == ["experiment=etth1_M_24", "trainer.max_epochs=3",
                                   "model.net.d_model=256", "+trainer.gradient_clip_val=1.0"]
    # the spelling the issue shows would stop the container before the entry point
    assert container({"trainer.max_epochs": "3"}).returncode == 9
