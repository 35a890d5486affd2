"""The SageMaker Pipeline definition, built offline (moto, fake credentials), and the
``informer-mlops pipeline`` commands against moto. moto runs no step: these test wiring and
arguments."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tarfile

import pytest

from mlops.cli import create_bucket, main, offline_aws
from mlops.config import load_config

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("sagemaker") is None,
                       reason="needs the SageMaker SDK (the [aws] extra)"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Running within a PipelineSession:UserWarning"),
]
REGION, BUCKET = "us-east-1", "informer-test-bucket"
ROLE = "arn:aws:iam::123456789012:role/informer-sagemaker"


@pytest.fixture(scope="module")
def built():
    """The definition and the uploaded code, from one offline build."""
    import boto3

    from mlops.cli import build

    cfg = load_config([f"bucket={BUCKET}", "region=us-east-1"])
    with offline_aws(REGION):
        create_bucket(BUCKET, REGION)
        definition = json.loads(build(cfg, ROLE).definition())
        s3 = boto3.client("s3", region_name=REGION)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
        objects = {k: s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys
                   if k.endswith(("runproc.sh", "sourcedir.tar.gz"))}
    return definition, keys, objects


def steps(definition) -> dict[str, dict]:
    """Every step by name, nested condition branches included."""
    found = {}
    pending = list(definition["Steps"])
    while pending:
        step = pending.pop(0)
        found[step["Name"]] = step
        if step["Type"] == "Condition":
            for branch in ("IfSteps", "ElseSteps"):
                pending += step["Arguments"][branch]
    return found


def references(node) -> set[str]:
    """Steps a definition node reads from (``Steps.<name>...``)."""
    return set(re.findall(r"\bSteps\.([A-Za-z0-9]+)", json.dumps(node)))


def test_steps_and_types(built):
    definition, _, _ = built
    assert [s["Name"] for s in definition["Steps"]] == [
        "PreprocessData", "TrainModel", "EvaluateModel", "CheckMse"]
    assert {n: s["Type"] for n, s in steps(definition).items()} == {
        "PreprocessData": "Processing", "TrainModel": "Training", "EvaluateModel": "Processing",
        "CheckMse": "Condition", "MseAboveThreshold": "Fail", "CheckSkill": "Condition",
        "RegisterModel": "RegisterModel", "SkillBelowBaseline": "Fail"}
    check_mse = steps(definition)["CheckMse"]["Arguments"]
    assert [s["Name"] for s in check_mse["IfSteps"]] == ["CheckSkill"]
    assert [s["Name"] for s in check_mse["ElseSteps"]] == ["MseAboveThreshold"]


def test_dependencies(built):
    s = steps(built[0])
    assert references(s["PreprocessData"]) == set()
    assert references(s["TrainModel"]) == {"PreprocessData"}
    assert references(s["EvaluateModel"]) == {"PreprocessData", "TrainModel"}
    assert references(s["CheckMse"]["Arguments"]["Conditions"]) == {"EvaluateModel"}
    assert references(s["RegisterModel"]) == {"TrainModel", "EvaluateModel"}
    assert references(s["MseAboveThreshold"]) == {"EvaluateModel"}
    assert references(s["CheckSkill"]["Arguments"]["Conditions"]) == {"EvaluateModel"}
    assert references(s["SkillBelowBaseline"]) == {"EvaluateModel"}


def test_skill_condition_reads_the_report_and_can_be_switched_off(built):
    s = steps(built[0])
    (either,) = s["CheckSkill"]["Arguments"]["Conditions"]
    assert either["Type"] == "Or"
    off, above = either["Conditions"]
    assert off == {"Type": "Equals", "LeftValue": {"Get": "Parameters.RequireSkill"},
                   "RightValue": False}
    assert above["Type"] == "GreaterThan" and above["RightValue"] == 0.0
    skill = above["LeftValue"]["Std:JsonGet"]
    assert skill["Path"] == "skill.value"
    assert skill["PropertyFile"] == {"Get": "Steps.EvaluateModel.PropertyFiles.EvaluationReport"}
    message = json.dumps(s["SkillBelowBaseline"]["Arguments"]["ErrorMessage"])
    assert "Skill" in message and "naive baseline" in message


def test_parameters_and_defaults(built):
    params = {p["Name"]: (p["Type"], p["DefaultValue"]) for p in built[0]["Parameters"]}
    assert params == {
        "InputDataBucket": ("String", BUCKET), "InputDataPrefix": ("String", "data/"),
        "InputDataVersion": ("String", "unversioned"),
        "Experiment": ("String", "etth1_M_24"),
        "ProcessingInstanceType": ("String", "ml.m5.xlarge"),
        "ProcessingInstanceCount": ("Integer", 1),
        "TrainingInstanceType": ("String", "ml.m5.2xlarge"),
        "TrainingInstanceCount": ("Integer", 1), "MseThreshold": ("Float", 1.0),
        "RequireSkill": ("Boolean", True),
        "ModelApprovalStatus": ("String", "PendingManualApproval")}


def test_preprocess_reads_the_input_parameters(built):
    args = steps(built[0])["PreprocessData"]["Arguments"]
    raw = next(i for i in args["ProcessingInputs"] if i["InputName"] == "raw")["S3Input"]
    assert raw["S3Uri"] == {"Std:Join": {"On": "/", "Values": [
        "s3:/", {"Get": "Parameters.InputDataBucket"}, {"Get": "Parameters.InputDataPrefix"}]}}
    assert raw["LocalPath"] == "/opt/ml/processing/input"
    # the input's content identity is an argument: PreprocessData's cache key changes with it
    assert args["AppSpecification"]["ContainerArguments"] == [
        "--experiment", {"Get": "Parameters.Experiment"},
        "--input-version", {"Get": "Parameters.InputDataVersion"}]
    assert args["ProcessingResources"]["ClusterConfig"]["InstanceType"] == {
        "Get": "Parameters.ProcessingInstanceType"}


def test_training_job(built):
    from sagemaker_jobs.metrics import METRIC_DEFINITIONS

    args = steps(built[0])["TrainModel"]["Arguments"]
    assert args["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert args["HyperParameters"] == {"experiment": {"Get": "Parameters.Experiment"}}
    channel = next(c for c in args["InputDataConfig"] if c["ChannelName"] == "training")
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == {
        "Get": "Steps.PreprocessData.ProcessingOutputConfig.Outputs['dataset'].S3Output.S3Uri"}
    assert args["ResourceConfig"]["InstanceType"] == {"Get": "Parameters.TrainingInstanceType"}
    assert args["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    assert "EnableManagedSpotTraining" not in args
    assert "MaxWaitTimeInSeconds" not in args["StoppingCondition"]
    assert args["AlgorithmSpecification"]["TrainingImage"].endswith("pytorch-training:"
                                                                   "2.6.0-cpu-py312")


def test_evaluation_and_condition(built):
    s = steps(built[0])
    evaluate = s["EvaluateModel"]
    assert evaluate["PropertyFiles"] == [{"PropertyFileName": "EvaluationReport",
                                          "OutputName": "evaluation",
                                          "FilePath": "evaluation.json"}]
    local = {i["InputName"]: i["S3Input"]["LocalPath"]
             for i in evaluate["Arguments"]["ProcessingInputs"]}
    assert local["model"] == "/opt/ml/processing/model"
    assert local["test"] == "/opt/ml/processing/test"
    [condition] = s["CheckMse"]["Arguments"]["Conditions"]
    assert condition == {
        "Type": "LessThanOrEqualTo",
        "LeftValue": {"Std:JsonGet": {
            "PropertyFile": {"Get": "Steps.EvaluateModel.PropertyFiles.EvaluationReport"},
            "Path": "regression_metrics.mse.value"}},
        "RightValue": {"Get": "Parameters.MseThreshold"}}
    message = s["MseAboveThreshold"]["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    assert condition["LeftValue"] in message and {"Get": "Parameters.MseThreshold"} in message


def test_register_step(built):
    args = steps(built[0])["RegisterModel"]["Arguments"]
    assert args["ModelPackageGroupName"] == "informer-models"
    assert args["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    spec = args["InferenceSpecification"]
    assert spec["SupportedContentTypes"] == ["text/csv", "application/jsonlines"]
    assert spec["SupportedResponseMIMETypes"] == ["text/csv", "application/jsonlines"]
    assert spec["SupportedTransformInstanceTypes"] == ["ml.m5.xlarge"]
    [container] = spec["Containers"]
    assert container["ModelDataUrl"] == {"Get": "Steps.TrainModel.ModelArtifacts.S3ModelArtifacts"}
    assert container["Image"].endswith("pytorch-inference:2.6.0-cpu-py312")
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["INFORMER_PRECISION"] == "32-true"
    statistics = args["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["ContentType"] == "application/json"
    assert statistics["S3Uri"]["Std:Join"]["Values"][-1] == "evaluation.json"


def test_each_version_names_the_transform_input_a_step_wrote(built):
    """EvaluateModel writes the version's Batch Transform input (batch-input output, under the
    execution's prefix); RegisterModel records that prefix in the package, where the approval
    Lambda reads it."""
    from mlops.lambda_function import TRANSFORM_INPUT_PROPERTY

    s = steps(built[0])
    outputs = {o["OutputName"]: o["S3Output"] for o in
               s["EvaluateModel"]["Arguments"]["ProcessingOutputConfig"]["Outputs"]}
    assert set(outputs) == {"evaluation", "batch-input"}
    batch = outputs["batch-input"]
    assert batch["LocalPath"] == "/opt/ml/processing/batch-input"
    assert batch["S3UploadMode"] == "EndOfJob"
    assert batch["S3Uri"] == {"Std:Join": {"On": "/", "Values": [
        "s3:/", BUCKET, "informer", "executions", {"Get": "Execution.PipelineExecutionId"},
        "evaluate", "batch-input"]}}
    metadata = s["RegisterModel"]["Arguments"]["CustomerMetadataProperties"]
    assert metadata == {TRANSFORM_INPUT_PROPERTY: {
        "Get": "Steps.EvaluateModel.ProcessingOutputConfig.Outputs['batch-input'].S3Output.S3Uri"}}


def test_caching_is_on_by_default(built):
    for name in ("PreprocessData", "TrainModel", "EvaluateModel"):
        assert steps(built[0])[name]["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}


def test_processing_runs_the_sagemaker_jobs_scripts(built):
    """FrameworkProcessor runs ``python3 <basename>`` from the bundle root: the root shims
    must run the package modules, whose files are in the bundle."""
    _, keys, objects = built
    runprocs = [v.decode() for k, v in objects.items() if k.endswith("runproc.sh")]
    assert sorted(line.strip() for text in runprocs for line in text.splitlines()
                  if line.strip().startswith("python3 ") and "install_requirements" not in line
                  ) == ['python3 evaluate.py "$@"', 'python3 preprocess.py "$@"']
    bundle = next(v for k, v in objects.items() if "informer-preprocess" in k and
                  k.endswith("sourcedir.tar.gz"))
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        names = set(tar.getnames())
        shim = tar.extractfile("preprocess.py").read().decode()
        requirements = tar.extractfile("requirements.txt").read().decode()
    # pinned; torch to the images' version, so pip never replaces the image's torch
    assert "torch==2.6.0" in requirements.splitlines()[-1]
    assert re.search(r"^lightning==\d", requirements, re.M)
    assert {"preprocess.py", "evaluate.py", "requirements.txt", "sagemaker_jobs/preprocess.py",
            "sagemaker_jobs/evaluate.py", "informer/__init__.py"} <= names
    assert 'run_module("sagemaker_jobs.preprocess", run_name="__main__"' in shim
    assert any(k.endswith("input/code/sagemaker_jobs/train.py") for k in keys)


def test_processing_shim_runs_preprocess_from_the_bundle_root(tmp_path, ett_dir):
    """As in the container: ``python3 preprocess.py ...`` in the extracted bundle."""
    from mlops.pipeline import stage_pipeline_source

    code = stage_pipeline_source(tmp_path / "code")
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "ETTh1.csv").symlink_to(ett_dir / "ETTh1.csv")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "preprocess.py", "--experiment", "etth1_M_24",
         "--input-dir", str(tmp_path / "input"), "--output-dir", str(tmp_path / "out"),
         "--message-file", str(tmp_path / "message")],
        cwd=code, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out" / "dataset" / "ETTh1.csv").is_file()
    assert json.loads((tmp_path / "out" / "profile" / "profile.json").read_text())[
        "rows"] == 17420


def test_definition_command_spot_and_cache_settings(capsys):
    main(["pipeline", "definition", "--offline", f"bucket={BUCKET}", "training.spot=true",
          "cache.enabled=false", "parameters.mse_threshold=0.5", "pipeline_name=other"])
    definition = json.loads(capsys.readouterr().out)
    train = steps(definition)["TrainModel"]
    assert train["Arguments"]["EnableManagedSpotTraining"] is True
    assert train["Arguments"]["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400,
                                                       "MaxWaitTimeInSeconds": 172800}
    assert train["CacheConfig"] == {"Enabled": False}
    threshold = next(p for p in definition["Parameters"] if p["Name"] == "MseThreshold")
    assert threshold["DefaultValue"] == 0.5


def test_bad_override_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["pipeline", "definition", "--offline", "no_such_key=1"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_bad_base_job_prefix_is_refused():
    from mlops.pipeline import get_pipeline

    with offline_aws(REGION), pytest.raises(ValueError, match="base_job_prefix"):
        get_pipeline(REGION, ROLE, BUCKET, "p", "g", "jobs/informer")


def test_upsert_needs_a_role(capsys, monkeypatch):
    monkeypatch.delenv("SAGEMAKER_ROLE_ARN", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["pipeline", "upsert", f"bucket={BUCKET}"])
    assert exit_info.value.code == 2
    assert "role_arn: upsert needs the SageMaker execution role" in capsys.readouterr().err


def test_upsert_start_describe_against_moto(capsys):
    import boto3

    with offline_aws(REGION):
        create_bucket(BUCKET, REGION)
        main(["pipeline", "upsert", "--role-arn", ROLE, f"bucket={BUCKET}"])
        arn = json.loads(capsys.readouterr().out)["PipelineArn"]
        assert arn.endswith(":pipeline/informer-pipeline")
        client = boto3.client("sagemaker", region_name=REGION)
        described = client.describe_pipeline(PipelineName="informer-pipeline")
        assert described["RoleArn"] == ROLE
        assert [s["Name"] for s in json.loads(described["PipelineDefinition"])["Steps"]] == [
            "PreprocessData", "TrainModel", "EvaluateModel", "CheckMse"]

        s3 = boto3.client("s3", region_name=REGION)
        create_bucket("new-data", REGION)

        def start_on(content: bytes) -> dict:
            s3.put_object(Bucket="new-data", Key="data/ETTh1.csv", Body=content)
            main(["pipeline", "start", "--input", "s3://new-data/data/ETTh1.csv",
                  "-p", "MseThreshold=0.5", "-p", "Experiment=etth1_S_24"])
            return json.loads(capsys.readouterr().out)

        first, same, changed = start_on(b"a"), start_on(b"a"), start_on(b"b")
        # the content's identity: PreprocessData's cache key changes when the data does
        versions = [s["Parameters"].pop("InputDataVersion") for s in (first, same, changed)]
        assert versions[0] == versions[1] != versions[2] and len(versions[0]) == 32
        started = changed
        assert started["Parameters"] == {"InputDataBucket": "new-data",
                                         "InputDataPrefix": "data/ETTh1.csv",
                                         "MseThreshold": "0.5", "Experiment": "etth1_S_24"}
        started["Parameters"]["InputDataVersion"] = versions[2]
        sent = client.list_pipeline_parameters_for_execution(
            PipelineExecutionArn=started["PipelineExecutionArn"])["PipelineParameters"]
        assert {p["Name"]: p["Value"] for p in sent} == started["Parameters"]

        main(["pipeline", "describe"])
        latest = json.loads(capsys.readouterr().out)["LatestExecution"]
        # three starts within a second: moto orders equal creation times either way
        assert latest["PipelineExecutionArn"] in {
            s["PipelineExecutionArn"] for s in (first, same, changed)}
        assert {p["Name"]: p["Value"] for p in latest["Parameters"]}["MseThreshold"] == "0.5"

        with pytest.raises(SystemExit) as exit_info:
            main(["pipeline", "start", "-p", "Treshold=0.5"])
        assert exit_info.value.code == 2
        assert "parameter Treshold: not a parameter of the pipeline" in \
            capsys.readouterr().err

        # the images were chosen for CPU instances: a GPU override is refused by name
        with pytest.raises(SystemExit) as exit_info:
            main(["pipeline", "start", "-p", "TrainingInstanceType=ml.g5.2xlarge"])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.startswith(
            "error: parameter TrainingInstanceType: 'ml.g5.2xlarge' is a GPU instance but the "
            "definition's training image is the CPU one")
        executions = client.list_pipeline_executions(PipelineName="informer-pipeline")
        assert len(executions["PipelineExecutionSummaries"]) == 3  # nothing started


def test_describe_without_executions(capsys):
    import boto3

    with offline_aws(REGION):
        boto3.client("sagemaker", region_name=REGION).create_pipeline(
            PipelineName="empty", RoleArn=ROLE, PipelineDefinition=json.dumps(
                {"Version": "2020-12-01", "Steps": []}))
        main(["pipeline", "describe", "pipeline_name=empty"])
    assert json.loads(capsys.readouterr().out) == {"PipelineName": "empty",
                                                   "LatestExecution": None}
