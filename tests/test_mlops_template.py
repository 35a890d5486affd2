"""The CloudFormation template: cfn-lint clean, least privilege, the EventBridge patterns, the
inline Lambda code and the CodeBuild buildspec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.cli import LAMBDA_SOURCE, TEMPLATE, sync_template, template_code

cfn_yaml = pytest.importorskip("cfnlint.decode.cfn_yaml")
BUILDSPEC = Path(TEMPLATE).parents[1] / "buildspec.yml"
# Actions AWS offers no resource-level permission for, and those SDK v3's role validation
# simulates with no resource and no context (granted on "*", unconditioned: test_mlops_iam.py).
UNSCOPED_OK = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData",
               "ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission",
               "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission",
               "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeDhcpOptions",
               "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return cfn_yaml.load(str(TEMPLATE))


def resolve(node: Any, refs: dict[str, Any], conditions: dict[str, bool]) -> Any:
    """``Ref`` and ``Fn::If`` resolved with ``refs`` and ``conditions``."""
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            return refs[node["Ref"]]
        if set(node) == {"Fn::If"}:
            name, yes, no = node["Fn::If"]
            return resolve(yes if conditions[name] else no, refs, conditions)
        return {k: resolve(v, refs, conditions) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, refs, conditions) for v in node]
    return node


def defaults(template) -> dict[str, Any]:
    return {k: v.get("Default") for k, v in template["Parameters"].items()}


def pattern(template, rule: str, **refs) -> Any:
    from moto.events.models import EventPattern

    raw = template["Resources"][rule]["Properties"]["EventPattern"]
    resolved = resolve(raw, {**defaults(template), **refs}, {"CreateBucket": True})
    return EventPattern.load(json.dumps(resolved))


def package_event(group="informer-models", status="Approved", source="aws.sagemaker",
                  detail_type="SageMaker Model Package State Change") -> dict:
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{group}/3"
    return {"version": "0", "id": "e1", "detail-type": detail_type, "source": source,
            "account": "123456789012", "time": "2026-11-25T12:00:00Z", "region": "us-east-1",
            "resources": [arn],
            "detail": {"ModelPackageGroupName": group, "ModelPackageVersion": 3,
                       "ModelPackageArn": arn, "ModelApprovalStatus": status,
                       "ModelPackageStatus": "Completed"}}


def test_cfn_lint_passes():
    from cfnlint.api import lint_file

    matches = lint_file(Path(TEMPLATE))
    assert not matches, "\n".join(str(m) for m in matches)


def test_deployable_without_an_s3_upload():
    """``aws cloudformation deploy`` sends a template body of at most 51,200 bytes."""
    assert len(Path(TEMPLATE).read_bytes()) <= 51200


def test_approval_rule_pattern_is_the_documented_one(template):
    raw = template["Resources"]["ApprovalRule"]["Properties"]["EventPattern"]
    assert raw == {"source": ["aws.sagemaker"],
                   "detail-type": ["SageMaker Model Package State Change"],
                   "detail": {"ModelPackageGroupName": [{"Ref": "ModelPackageGroupName"}],
                              "ModelApprovalStatus": ["Approved"]}}


def test_approval_rule_matches_approved_events_of_the_group_only(template):
    rule = pattern(template, "ApprovalRule")
    assert rule.matches_event(package_event())
    assert not rule.matches_event(package_event(status="Rejected"))
    assert not rule.matches_event(package_event(status="PendingManualApproval"))
    assert not rule.matches_event(package_event(group="other-models"))
    assert not rule.matches_event(package_event(source="aws.s3"))
    assert not rule.matches_event(package_event(detail_type="SageMaker Training Job State "
                                                            "Change"))


def test_approval_rule_targets_the_function_with_an_invoke_permission(template):
    r = template["Resources"]
    assert r["ApprovalRule"]["Properties"]["Targets"][0]["Arn"] == \
        {"Fn::GetAtt": ["ApprovalFunction", "Arn"]}
    permission = r["ApprovalRulePermission"]["Properties"]
    assert permission["Principal"] == "events.amazonaws.com"
    assert permission["SourceArn"] == {"Fn::GetAtt": ["ApprovalRule", "Arn"]}


def test_new_data_rule_starts_the_pipeline_with_the_object(template):
    rule = pattern(template, "NewDataRule", ArtifactBucket="informer-bucket")

    def created(bucket, key):
        return {"version": "0", "id": "e2", "detail-type": "Object Created",
                "source": "aws.s3", "account": "123456789012", "time": "2026-11-25T12:00:00Z",
                "region": "us-east-1", "resources": [f"arn:aws:s3:::{bucket}"],
                "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": 10}}}

    assert rule.matches_event(created("informer-bucket", "data/ETTh1.csv"))
    assert not rule.matches_event(created("informer-bucket", "forecasts/x.csv"))
    assert not rule.matches_event(created("other-bucket", "data/ETTh1.csv"))
    target = template["Resources"]["NewDataRule"]["Properties"]["Targets"][0]
    assert ":pipeline/${PipelineName}" in target["Arn"]["Fn::Sub"]
    assert target["SageMakerPipelineParameters"]["PipelineParameterList"] == [
        {"Name": "InputDataBucket", "Value": "$.detail.bucket.name"},
        {"Name": "InputDataPrefix", "Value": "$.detail.object.key"},
        # the object's content: a re-uploaded object with new data misses the cache
        {"Name": "InputDataVersion", "Value": "$.detail.object.etag"}]
    bucket = template["Resources"]["ArtifactBucket"]["Properties"]
    assert bucket["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}}


def test_rules_pass_only_parameters_the_pipeline_declares(template):
    pytest.importorskip("sagemaker")
    from mlops.config import load_config
    from mlops.pipeline import make_parameters

    cfg = load_config([])
    declared = set(make_parameters(cfg["parameters"], "b", cfg["data_prefix"]))
    for rule in ("NewDataRule", "ScheduleRule"):
        target = template["Resources"][rule]["Properties"]["Targets"][0]
        names = [p["Name"] for p in target["SageMakerPipelineParameters"][
            "PipelineParameterList"]]
        assert "InputDataVersion" in names and set(names) <= declared, rule


def test_no_account_is_hard_coded_and_the_images_are_pullable_in_every_region(template):
    """The SageMaker role pulls AWS's PyTorch images, whose account differs by region."""
    import fnmatch
    import re

    pytest.importorskip("sagemaker")
    from mlops.pipeline import image_uri

    assert not re.search(r"\b\d{12}\b", Path(TEMPLATE).read_text().split("ZipFile:")[0])
    policy = template["Resources"]["SageMakerRole"]["Properties"]["Policies"][0]
    (images,) = [s for s in policy["PolicyDocument"]["Statement"]
                 if s.get("Sid") == "DeepLearningImages"]
    for region in ("us-east-1", "eu-west-1", "ap-east-1", "me-south-1", "af-south-1"):
        patterns = [r["Fn::Sub"].replace("${AWS::Partition}", "aws").replace(
            "${AWS::Region}", region) for r in images["Resource"]]
        for scope, instance in (("training", "ml.m5.xlarge"), ("training", "ml.g5.xlarge"),
                                ("inference", "ml.m5.xlarge")):
            uri = image_uri(None, region, "2.6.0", instance, scope)
            account, repository = uri.split(".")[0], uri.split("/", 1)[1].split(":")[0]
            arn = f"arn:aws:ecr:{region}:{account}:repository/{repository}"
            assert any(fnmatch.fnmatchcase(arn, p) for p in patterns), arn


def test_schedule_is_optional(template):
    rule = template["Resources"]["ScheduleRule"]
    assert rule["Condition"] == "HasSchedule"
    assert template["Parameters"]["RetrainSchedule"]["Default"] == ""


def test_codepipeline_builds_with_the_buildspec(template):
    r = template["Resources"]
    stages = r["CodePipeline"]["Properties"]["Stages"]
    assert [s["Name"] for s in stages] == ["Source", "Build"]
    assert stages[0]["Actions"][0]["ActionTypeId"]["Provider"] == "CodeCommit"
    assert stages[1]["Actions"][0]["ActionTypeId"]["Provider"] == "CodeBuild"
    assert r["BuildProject"]["Properties"]["Source"]["BuildSpec"] == "mlops/buildspec.yml"
    variables = {v["Name"] for v in
                 r["BuildProject"]["Properties"]["Environment"]["EnvironmentVariables"]}
    spec = yaml.safe_load(BUILDSPEC.read_text())
    commands = " ".join(c for phase in spec["phases"].values() for c in phase["commands"])
    for name in ("SAGEMAKER_ROLE_ARN", "ARTIFACT_BUCKET", "PIPELINE_NAME",
                 "MODEL_PACKAGE_GROUP_NAME"):
        assert name in variables
    assert "pip install" in commands and ".[aws]" in commands
    assert commands.index("pipeline upsert") < commands.index("pipeline start")


def statements(template) -> list[tuple[str, dict]]:
    """Every IAM policy statement of the template, with its resource name."""
    found = []
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
        if "PolicyDocument" in props:
            docs.append(props["PolicyDocument"])
        for doc in docs:
            found += [(name, s) for s in doc["Statement"]]
    return found


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_no_policy_grants_wildcard_actions(template):
    found = statements(template)
    assert len(found) > 10
    for name, statement in found:
        assert "NotAction" not in statement, name
        for action in as_list(statement["Action"]):
            assert isinstance(action, str) and "*" not in action, (name, action)


def test_wildcard_resources_only_where_aws_has_no_resource_level(template):
    for name, statement in statements(template):
        if "*" in as_list(statement["Resource"]):
            assert set(as_list(statement["Action"])) <= UNSCOPED_OK, (name, statement)


def test_pass_role_is_scoped_to_the_sagemaker_role(template):
    passing = [(n, s) for n, s in statements(template) if "iam:PassRole" in
               as_list(s["Action"])]
    assert {n for n, _ in passing} == {"SageMakerRolePassSelf", "ApprovalFunctionRole",
                                       "BuildRole"}
    for name, statement in passing:
        assert as_list(statement["Action"]) == ["iam:PassRole"], name
        assert statement["Resource"] == {"Fn::GetAtt": ["SageMakerRole", "Arn"]}, name
        assert statement["Condition"] == {
            "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}, name


def test_the_checker_catches_a_wildcard(template):
    bad = json.loads(json.dumps(template))
    bad["Resources"]["BuildRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"].append({"Effect": "Allow", "Action": "*", "Resource": "*"})
    with pytest.raises(AssertionError):
        test_no_policy_grants_wildcard_actions(bad)


def test_inline_lambda_code_is_lambda_function_py(template):
    code = template["Resources"]["ApprovalFunction"]["Properties"]["Code"]["ZipFile"]
    assert code == Path(LAMBDA_SOURCE).read_text(), "run: informer-mlops template sync"
    function = template["Resources"]["ApprovalFunction"]["Properties"]
    assert function["Handler"] == "index.lambda_handler"
    env = function["Environment"]["Variables"]
    for name in ("SAGEMAKER_ROLE_ARN", "BUCKET", "MODEL_PACKAGE_GROUP_NAME", "CONTENT_TYPE",
                 "SPLIT_TYPE", "BATCH_STRATEGY", "MAX_PAYLOAD_MB", "ASSEMBLE_WITH",
                 "TRANSFORM_INSTANCE_TYPE", "TRANSFORM_INPUT_PREFIX", "FORECAST_PREFIX"):
        assert name in env


def test_sync_rewrites_only_the_code_block(tmp_path):
    text = Path(TEMPLATE).read_text()
    copy = tmp_path / "template.yaml"
    copy.write_text(text)
    source = tmp_path / "lambda_function.py"
    source.write_text('"""New."""\n\n\ndef lambda_handler(event, context):\n    return 1\n')
    assert sync_template(copy, source) is True
    assert sync_template(copy, source) is False
    assert template_code(copy.read_text()) == source.read_text()
    old_code = "".join("          " + x if x.strip() else x
                       for x in Path(LAMBDA_SOURCE).read_text().splitlines(keepends=True))
    new_code = "".join("          " + x if x.strip() else x
                       for x in source.read_text().splitlines(keepends=True))
    assert copy.read_text() == text.replace(old_code, new_code)
    assert cfn_yaml.load(str(copy))["Resources"]["ApprovalFunction"]["Properties"]["Code"][
        "ZipFile"] == source.read_text()
