"""The approval Lambda against moto's SageMaker: one model and one transform job per approved
version, nothing for anything else, clear errors for malformed events."""

from __future__ import annotations

import copy
import json

import boto3
import pytest
from moto import mock_aws

from mlops import lambda_function as fn

REGION = "us-east-1"
GROUP = "informer-models"
ROLE = "arn:aws:iam::123456789012:role/informer-sagemaker"
ENV = {"SAGEMAKER_ROLE_ARN": ROLE, "BUCKET": "informer-bucket",
       "MODEL_PACKAGE_GROUP_NAME": GROUP}
# where the pipeline's EvaluateModel wrote the version's transform input
BATCH_INPUT = "s3://informer-bucket/informer/executions/e1/evaluate/batch-input"
SPEC = {"Containers": [{"Image": "123.dkr.ecr.us-east-1.amazonaws.com/pytorch:2.6",
                        "ModelDataUrl": "s3://informer-bucket/model.tar.gz"}],
        "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]}


@pytest.fixture
def sm(monkeypatch):
    """moto's SageMaker with one registered model package version."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("sagemaker", region_name=REGION)
        client.create_model_package_group(ModelPackageGroupName=GROUP)
        client.create_model_package(
            ModelPackageGroupName=GROUP, ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification=SPEC,
            CustomerMetadataProperties={fn.TRANSFORM_INPUT_PROPERTY: BATCH_INPUT})
        yield client


def package_arn(client) -> str:
    return client.list_model_packages(ModelPackageGroupName=GROUP)[
        "ModelPackageSummaryList"][0]["ModelPackageArn"]


def event(arn: str, status: str = "Approved", group: str = GROUP, version=1) -> dict:
    """An EventBridge "SageMaker Model Package State Change" event."""
    return {
        "version": "0", "id": "1b2c", "detail-type": "SageMaker Model Package State Change",
        "source": "aws.sagemaker", "account": "123456789012", "time": "2026-11-25T12:00:00Z",
        "region": REGION, "resources": [arn],
        "detail": {"ModelPackageGroupName": group, "ModelPackageVersion": version,
                   "ModelPackageArn": arn, "ModelPackageStatus": "Completed",
                   "ModelApprovalStatus": status, "CreationTime": 1764072000000,
                   "InferenceSpecification": {"Containers": [{"Image": "img"}],
                                              "SupportedContentTypes": ["text/csv"]}}}


def transform_jobs(client) -> list[str]:
    return [j["TransformJobName"] for j in client.list_transform_jobs()["TransformJobSummaries"]]


def models(client) -> list[str]:
    return [m["ModelName"] for m in client.list_models()["Models"]]


class Counting:
    """A client that counts the create calls it passes on."""

    def __init__(self, client) -> None:
        self.client, self.creates = client, []

    def __getattr__(self, name):
        attr = getattr(self.client, name)
        if name.startswith("create_"):
            def call(**kwargs):
                self.creates.append(name)
                return attr(**kwargs)
            return call
        return attr


def test_approved_creates_one_model_and_one_transform_job(sm, capsys):
    arn = package_arn(sm)
    result = fn.lambda_handler(event(arn), None, client=sm, environ=ENV)
    assert result["status"] == "started"
    assert models(sm) == ["informer-models-v1"] and transform_jobs(sm) == ["informer-models-v1"]
    model = sm.describe_model(ModelName="informer-models-v1")
    assert model["Containers"] == [{"ModelPackageName": arn}]
    assert model["ExecutionRoleArn"] == ROLE
    job = sm.describe_transform_job(TransformJobName="informer-models-v1")
    assert job["ModelName"] == "informer-models-v1"
    assert job["BatchStrategy"] == "SingleRecord" and job["MaxPayloadInMB"] == 6
    assert job["TransformInput"] == {  # the version's own input, from its package
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                        "S3Uri": BATCH_INPUT + "/"}},
        "ContentType": "text/csv", "SplitType": "None"}
    assert job["TransformOutput"] == {
        "S3OutputPath": "s3://informer-bucket/forecasts/informer-models/v1/",
        "Accept": "text/csv", "AssembleWith": "None"}
    assert job["TransformResources"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}
    # the handlers' report (backtest with actuals, then forecast) naming the version
    assert job["Environment"] == {"INFORMER_OUTPUT": "report", "INFORMER_MODEL_VERSION": "v1"}
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["message"] for line in lines] == ["model created", "transform job created",
                                                   "started"]
    assert all(line["level"] == "INFO" and line["version"] == 1 for line in lines[-1:])


def test_environment_settings_reach_the_job(sm):
    env = {**ENV, "CONTENT_TYPE": "application/jsonlines", "SPLIT_TYPE": "Line",
           "BATCH_STRATEGY": "MultiRecord", "ASSEMBLE_WITH": "Line", "MAX_PAYLOAD_MB": "20",
           "ACCEPT": "application/jsonlines", "TRANSFORM_INSTANCE_TYPE": "ml.c5.2xlarge",
           "TRANSFORM_INSTANCE_COUNT": "2", "TRANSFORM_INPUT_PREFIX": "in/latest",
           "FORECAST_PREFIX": "out/forecasts/", "MAX_CONCURRENT_TRANSFORMS": "4"}
    fn.lambda_handler(event(package_arn(sm), version=7), None, client=sm, environ=env)
    job = sm.describe_transform_job(TransformJobName="informer-models-v7")
    assert job["TransformInput"]["SplitType"] == "Line"
    assert job["TransformInput"]["ContentType"] == "application/jsonlines"
    # the package's own input wins over the configured prefix
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == BATCH_INPUT + "/"
    assert job["BatchStrategy"] == "MultiRecord" and job["MaxPayloadInMB"] == 20
    assert job["MaxConcurrentTransforms"] == 4
    assert job["TransformOutput"] == {
        "S3OutputPath": "s3://informer-bucket/out/forecasts/informer-models/v7/",
        "Accept": "application/jsonlines", "AssembleWith": "Line"}
    assert job["TransformResources"] == {"InstanceType": "ml.c5.2xlarge", "InstanceCount": 2}


def test_a_package_without_transform_input_uses_the_prefix_or_starts_nothing(sm, capsys):
    """Only a version registered outside the pipeline lacks TransformInput: the configured
    prefix serves it; without one the result names the field and nothing is created."""
    sm.create_model_package(ModelPackageGroupName=GROUP, InferenceSpecification=SPEC,
                            ModelApprovalStatus="PendingManualApproval")
    arn = next(p["ModelPackageArn"] for p in sm.list_model_packages(
        ModelPackageGroupName=GROUP)["ModelPackageSummaryList"] if p["ModelPackageArn"].endswith(
        "/2"))
    counting = Counting(sm)
    result = fn.lambda_handler(event(arn, version=2), None, client=counting, environ=ENV)
    assert result["status"] == "failed"
    assert result["reason"].startswith("TRANSFORM_INPUT_PREFIX: not set; expected the S3 prefix")
    assert counting.creates == [] and transform_jobs(sm) == [] and models(sm) == []
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["level"] == "ERROR"
    env = {**ENV, "TRANSFORM_INPUT_PREFIX": "in/latest"}
    assert fn.lambda_handler(event(arn, version=2), None, client=sm, environ=env)[
        "status"] == "started"
    job = sm.describe_transform_job(TransformJobName="informer-models-v2")
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == \
        "s3://informer-bucket/in/latest/"


def test_duplicate_event_starts_no_second_job(sm):
    arn = package_arn(sm)
    counting = Counting(sm)
    first = fn.lambda_handler(event(arn), None, client=counting, environ=ENV)
    created = sm.describe_transform_job(TransformJobName="informer-models-v1")["CreationTime"]
    second = fn.lambda_handler(event(arn), None, client=counting, environ=ENV)
    assert (first["status"], second["status"]) == ("started", "already_started")
    assert counting.creates == ["create_model", "create_transform_job"]
    assert transform_jobs(sm) == ["informer-models-v1"] and models(sm) == ["informer-models-v1"]
    assert sm.describe_transform_job(TransformJobName="informer-models-v1")[
        "CreationTime"] == created


def test_concurrent_delivery_already_exists_is_done(sm):
    """The job appears between the check and the create (another delivery won the race)."""
    arn = package_arn(sm)

    class Racing(Counting):
        def __getattr__(self, name):
            if name == "create_transform_job":
                def lose(**kwargs):
                    self.client.create_transform_job(**kwargs)  # the other delivery
                    raise RuntimeError("ValidationException: job already exists")
                return lose
            return super().__getattr__(name)

    result = fn.lambda_handler(event(arn), None, client=Racing(sm), environ=ENV)
    assert result["status"] == "already_started"
    assert transform_jobs(sm) == ["informer-models-v1"]


def test_a_failing_create_is_reported(sm):
    class Broken(Counting):
        def __getattr__(self, name):
            if name == "create_transform_job":
                def fail(**kwargs):
                    raise RuntimeError("AccessDenied")
                return fail
            return super().__getattr__(name)

    with pytest.raises(RuntimeError, match="AccessDenied"):
        fn.lambda_handler(event(package_arn(sm)), None, client=Broken(sm), environ=ENV)


@pytest.mark.parametrize("status", ["Rejected", "PendingManualApproval"])
def test_not_approved_does_nothing(sm, capsys, status):
    counting = Counting(sm)
    result = fn.lambda_handler(event(package_arn(sm), status), None, client=counting,
                               environ=ENV)
    assert result["status"] == "ignored" and status in result["reason"]
    assert counting.creates == [] and transform_jobs(sm) == [] and models(sm) == []
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line["message"] == "ignored" and status in line["reason"]


def test_other_group_does_nothing(sm):
    counting = Counting(sm)
    result = fn.lambda_handler(event(package_arn(sm), group="someone-elses-models"), None,
                               client=counting, environ=ENV)
    assert result["status"] == "ignored" and "someone-elses-models" in result["reason"]
    assert counting.creates == [] and transform_jobs(sm) == []


def test_ignored_events_need_no_client(monkeypatch):
    def no_client():
        raise AssertionError("no AWS client for an ignored event")

    monkeypatch.setattr(fn, "CLIENT_FACTORY", no_client)
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/informer-models/1"
    assert fn.lambda_handler(event(arn, "Rejected"), None, environ=ENV)["status"] == "ignored"


def test_client_factory_is_used_when_no_client_is_passed(sm, monkeypatch):
    counting = Counting(sm)
    monkeypatch.setattr(fn, "CLIENT_FACTORY", lambda: counting)
    fn.lambda_handler(event(package_arn(sm)), None, environ=ENV)
    assert counting.creates == ["create_model", "create_transform_job"]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda e: e.clear(), "expected source 'aws.sagemaker'"),
    (lambda e: e.update({"detail-type": "EC2 Instance State-change Notification"}),
     "detail-type"),
    (lambda e: e.pop("detail"), "event.detail: expected an object"),
    (lambda e: e["detail"].pop("ModelPackageArn"), "missing ModelPackageArn"),
    (lambda e: e["detail"].update(ModelPackageVersion="latest"),
     "ModelPackageVersion: expected a positive integer"),
    (lambda e: e["detail"].update(ModelPackageArn="not-an-arn"),
     "ModelPackageArn: expected a model package ARN"),
])
def test_malformed_event_is_a_clear_error(sm, capsys, mutate, message):
    bad = copy.deepcopy(event(package_arn(sm)))
    mutate(bad)
    counting = Counting(sm)
    with pytest.raises(fn.MalformedEvent, match=message):
        fn.lambda_handler(bad, None, client=counting, environ=ENV)
    assert counting.creates == []
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["level"] == "ERROR"


def test_not_a_json_object():
    with pytest.raises(fn.MalformedEvent, match="expected a JSON object, got list"):
        fn.lambda_handler([], None, environ=ENV)


@pytest.mark.parametrize(("env", "message"), [
    ({}, "SAGEMAKER_ROLE_ARN, BUCKET: required"),
    ({**ENV, "SPLIT_TYPE": "Lines"}, "SPLIT_TYPE: expected one of"),
    ({**ENV, "MAX_PAYLOAD_MB": "500"}, r"MAX_PAYLOAD_MB: expected an integer in \[0, 100\]"),
])
def test_bad_configuration(env, message):
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/informer-models/1"
    with pytest.raises(fn.ConfigError, match=message):
        fn.lambda_handler(event(arn), None, client=object(), environ=env)


def test_resource_names_are_valid_and_distinct():
    pattern = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
    long_a, long_b = "a" * 63, "a" * 62 + "b"
    names = {fn.resource_name(g, v) for g, v in
             [(GROUP, 1), (GROUP, 12345), (long_a, 1), (long_b, 1), ("my_models.x", 3)]}
    assert len(names) == 5
    assert fn.resource_name(GROUP, 3) == "informer-models-v3"
    import re
    assert all(re.match(pattern, n) for n in names)


def test_lambda_module_uses_the_standard_library_and_boto3_only():
    import ast
    import sys
    from pathlib import Path

    tree = ast.parse(Path(fn.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.module}
    assert imported - set(sys.stdlib_module_names) == {"boto3"}


@pytest.mark.parametrize("ended", ["Failed", "Stopped"])
def test_a_failed_or_stopped_job_is_retried_under_a_new_name(sm, capsys, ended):
    """SageMaker job names are unique for ever: a job that ended Failed or Stopped is started
    again as ``<name>-r2`` (same model, same output); a later delivery starts nothing more."""
    arn = package_arn(sm)

    class EndedFirst(Counting):
        def __getattr__(self, name):
            attr = super().__getattr__(name)
            if name != "describe_transform_job":
                return attr

            def describe(**kwargs):
                job = attr(**kwargs)
                if kwargs["TransformJobName"] == "informer-models-v1":
                    return {**job, "TransformJobStatus": ended, "FailureReason": "instance died"}
                return job
            return describe

    client = EndedFirst(sm)
    first = fn.lambda_handler(event(arn), None, client=client, environ=ENV)
    assert first["transform_job_name"] == "informer-models-v1"
    retry = fn.lambda_handler(event(arn), None, client=client, environ=ENV)
    assert (retry["status"], retry["transform_job_name"]) == ("started", "informer-models-v1-r2")
    assert retry["model_name"] == "informer-models-v1" and retry["model"] == "exists"
    assert transform_jobs(sm) == ["informer-models-v1", "informer-models-v1-r2"]
    job = sm.describe_transform_job(TransformJobName="informer-models-v1-r2")
    assert job["ModelName"] == "informer-models-v1"
    assert job["TransformOutput"]["S3OutputPath"] == \
        "s3://informer-bucket/forecasts/informer-models/v1/"
    later = fn.lambda_handler(event(arn), None, client=client, environ=ENV)
    assert (later["status"], later["transform_job_name"]) == ("already_started",
                                                             "informer-models-v1-r2")
    assert client.creates == ["create_model", "create_transform_job", "create_transform_job"]
    retried = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any(line["message"].startswith("transform job ended without output; retrying") and
               line["job_status"] == ended for line in retried)


def test_retry_names_stay_valid_and_distinct():
    long = "g" * 80
    names = {fn.resource_name(group, version, attempt) for group in ("informer-models", long)
             for version in (1, 12) for attempt in (1, 2, 10)}
    assert len(names) == 12
    assert all(len(n) <= fn.NAME_LIMIT and n[0].isalnum() for n in names)
    assert fn.resource_name("informer-models", 1, 2) == "informer-models-v1-r2"
