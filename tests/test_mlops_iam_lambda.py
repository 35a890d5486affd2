"""The approval Lambda under its own role, and EventBridge's calls under ``EventsRole``, each
call authorised against the template's statements (the policy evaluation of
``tests/test_mlops_iam.py``: action, resource ARN, ``iam:PassedToService``).

The Lambda is the code the template deploys (its inline ``ZipFile``), handed an approval event
that the template's ``ApprovalRule`` matches, with the environment the template gives it and
a SageMaker client on moto whose every call passes the gate first. Removing a statement the
Lambda needs leaves it without a transform job; removing one of ``EventsRole``'s leaves a
rule's target call denied.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from mlops.cli import TEMPLATE, template_code
from mlops.local.rules import approval_pattern, matches
from tests.test_mlops_iam import ACCOUNT, REGION, decide, render, role_arn, statements, without

moto = pytest.importorskip("moto")
cfn_yaml = pytest.importorskip("cfnlint.decode.cfn_yaml")
GROUP = "informer-models"  # the template's default ModelPackageGroupName
PREFIX = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return cfn_yaml.load(str(TEMPLATE))


def asked(operation: str, params: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """What AWS authorises for the Lambda's SageMaker call: ``[(action, resource, context)]``."""
    if operation == "DescribeModelPackage":
        return [("sagemaker:DescribeModelPackage", params["ModelPackageName"], {})]
    kind, name = {"CreateModel": ("model", "ModelName"), "DescribeModel": ("model", "ModelName"),
                  "CreateTransformJob": ("transform-job", "TransformJobName"),
                  "DescribeTransformJob": ("transform-job", "TransformJobName")}[operation]
    resource = f"{PREFIX}{kind}/{params[name].lower()}"
    calls = [(f"sagemaker:{operation}", resource, {})]
    if params.get("Tags"):
        calls.append(("sagemaker:AddTags", resource, {}))
    if params.get("ExecutionRoleArn"):  # the model's role is passed to SageMaker
        calls.append(("iam:PassRole", params["ExecutionRoleArn"],
                      {"iam:PassedToService": "sagemaker.amazonaws.com"}))
    return calls


class Gate:
    """A SageMaker client whose calls are authorised against ``policy`` first."""

    def __init__(self, policy: list[dict[str, Any]]) -> None:
        self.policy, self.allowed, self.denied = policy, [], []

    def client(self) -> Any:
        client = boto3.client("sagemaker", region_name=REGION)
        client.meta.events.register("before-parameter-build.sagemaker.*", self.check)
        return client

    def check(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        for action, resource, context in asked(model.name, params):
            if decide(self.policy, action, resource, context) != "allowed":
                self.denied.append((action, resource))
                raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": (
                    f"not authorized to perform: {action} on resource: {resource}")}},
                    model.name)
            self.allowed.append((action, resource))


def lambda_policy(template: dict[str, Any]) -> list[dict[str, Any]]:
    """``ApprovalFunctionRole``'s statements but ``Logs`` (the runtime writes the logs)."""
    template = without(template, "ApprovalFunctionRole", "Logs")
    return statements(template, "ApprovalFunctionRole")


def deployed_handler() -> Any:
    module = types.ModuleType("approval_index")
    sys.modules[module.__name__] = module  # as an import would (dataclasses look it up)
    exec(compile(template_code(TEMPLATE.read_text()), "index.py", "exec"),  # noqa: S102
         module.__dict__)
    return module.lambda_handler


def lambda_environ(template: dict[str, Any]) -> dict[str, str]:
    """The Lambda's environment variables as the template sets them (defaults)."""
    variables = template["Resources"]["ApprovalFunction"]["Properties"]["Environment"]["Variables"]
    environ = {}
    for name, node in variables.items():
        if isinstance(node, dict) and "Fn::FindInMap" in node:
            mapping, key, attribute = node["Fn::FindInMap"]
            node = template["Mappings"][mapping][render(key, template)][attribute]
        environ[name] = str(render(node, template))
    return environ


@pytest.fixture
def approved(monkeypatch):
    """moto: the group and an approved version that names its transform input."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with moto.mock_aws():
        sm = boto3.client("sagemaker", region_name=REGION)
        sm.create_model_package_group(ModelPackageGroupName=GROUP)
        package = sm.create_model_package(
            ModelPackageGroupName=GROUP, ModelApprovalStatus="Approved",
            InferenceSpecification={"Containers": [{"Image": "x", "ModelDataUrl": "s3://b/m"}],
                                    "SupportedContentTypes": ["text/csv"],
                                    "SupportedResponseMIMETypes": ["text/csv"]},
            CustomerMetadataProperties={"TransformInput": "s3://b/informer/executions/e/"
                                                          "evaluate/batch-input"})
        event = {"version": "0", "id": "1", "source": "aws.sagemaker",
                 "detail-type": "SageMaker Model Package State Change", "account": ACCOUNT,
                 "region": REGION, "resources": [package["ModelPackageArn"]],
                 "detail": {"ModelPackageGroupName": GROUP, "ModelPackageVersion": 1,
                            "ModelPackageArn": package["ModelPackageArn"],
                            "ModelApprovalStatus": "Approved"}}
        yield sm, event


def test_the_lambda_starts_the_transform_under_its_role(template, approved):
    sm, event = approved
    assert matches(approval_pattern(GROUP), event)  # EventBridge hands it to the Lambda
    gate = Gate(lambda_policy(template))
    result = deployed_handler()(event, client=gate.client(), environ=lambda_environ(template))
    assert result["status"] == "started", result
    assert gate.denied == []
    assert {a for a, _ in gate.allowed} >= {
        "sagemaker:DescribeModelPackage", "sagemaker:CreateModel", "iam:PassRole",
        "sagemaker:CreateTransformJob"}
    job = sm.describe_transform_job(TransformJobName=f"{GROUP}-v1")
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"].endswith(
        "evaluate/batch-input/")
    assert ("iam:PassRole", role_arn("SageMakerRole")) in gate.allowed


@pytest.mark.parametrize("sid", ["ReadPackage", "ModelAndTransform", "PassSageMakerRole"])
def test_a_statement_the_lambda_needs_is_seen(template, approved, sid):
    sm, event = approved
    gate = Gate(lambda_policy(without(template, "ApprovalFunctionRole", sid)))
    try:
        result = deployed_handler()(event, client=gate.client(),
                                    environ=lambda_environ(template))
    except ClientError:
        result = {"status": "raised"}
    assert gate.denied, sid
    assert result["status"] != "started"
    assert sm.list_transform_jobs()["TransformJobSummaries"] == []


def rule_calls(template: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(rule, action, target ARN)`` for each rule target that assumes ``EventsRole``."""
    calls = []
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Events::Rule":
            continue
        for target in resource["Properties"]["Targets"]:
            if target.get("RoleArn") == {"Fn::GetAtt": ["EventsRole", "Arn"]}:
                arn = render(target["Arn"], template)
                calls.append((name, f"{arn.split(':')[2]}:StartPipelineExecution", arn))
    return calls


def test_eventbridge_starts_its_targets_under_the_events_role(template):
    calls = rule_calls(template)
    assert {name for name, _, _ in calls} >= {"NewDataRule", "ScheduleRule"}
    policy = statements(template, "EventsRole")
    for name, action, arn in calls:
        assert decide(policy, action, arn) == "allowed", (name, action, arn)


@pytest.mark.parametrize("sid", ["SageMakerPipeline", "CodePipeline"])
def test_a_statement_the_events_role_lacks_is_seen(template, sid):
    policy = statements(without(template, "EventsRole", sid), "EventsRole")
    assert any(decide(policy, action, arn) != "allowed"
               for _, action, arn in rule_calls(template))
