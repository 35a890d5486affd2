"""The drift function of mlops/infra/monitoring.yaml: the template (cfn-lint, size, least
privilege, its rule, its inline code = the sources) and the code that template deploys, run
under moto with every AWS call authorised against the function role's own statements.

The IAM gate: a botocore ``before-parameter-build`` hook on the function's clients maps each
call to the action, resource ARN and request context AWS authorises (``s3:prefix`` for a
listing, ``sagemaker:AddTags`` for tags on a create) and refuses it with AccessDenied unless a
statement of ``DriftFunctionRole`` (rendered for one account) allows it; a call it does not
model fails the test.
"""

from __future__ import annotations

import fnmatch
import json
import math
import sys
import types
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlops.cli import template_code
from mlops.config import load_config
from mlops.inline import MONITORING_TEMPLATE, TEMPLATE, compact, drift_source

cfn_yaml = pytest.importorskip("cfnlint.decode.cfn_yaml")
boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")

ACCOUNT, REGION = "123456789012", "us-east-1"
BUCKET, GROUP, PIPELINE = f"informer-{ACCOUNT}-{REGION}", "informer-models", "informer-pipeline"
ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return cfn_yaml.load(str(MONITORING_TEMPLATE))


def render(node: Any, template: dict[str, Any]) -> Any:
    """``Ref``, ``Fn::Sub`` and ``Fn::GetAtt`` with the defaults and one account."""
    refs = {k: v.get("Default") for k, v in template["Parameters"].items()}
    refs |= {"BucketName": BUCKET, "AWS::AccountId": ACCOUNT, "AWS::Region": REGION,
             "AWS::Partition": "aws"}
    if isinstance(node, list):
        return [render(v, template) for v in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        return str(refs[node["Ref"]])
    if set(node) == {"Fn::GetAtt"}:
        name = node["Fn::GetAtt"][0]
        group = render(template["Resources"][name]["Properties"]["LogGroupName"], template)
        return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:*"
    if set(node) == {"Fn::Sub"}:
        text = node["Fn::Sub"]
        for key, value in refs.items():
            text = text.replace("${" + key + "}", str(value))
        assert "${" not in text, text
        return text
    return {k: render(v, template) for k, v in node.items()}


def role_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    policies = template["Resources"]["DriftFunctionRole"]["Properties"]["Policies"]
    return [s for p in render(policies, template) for s in p["PolicyDocument"]["Statement"]]


def _listed(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def allowed(statements: list[dict[str, Any]], action: str, resource: str,
            context: dict[str, str]) -> bool:
    for s in statements:
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _listed(s["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in _listed(s["Resource"])):
            continue
        conditions = s.get("Condition", {})
        assert set(conditions) <= {"StringLike"}, conditions
        if all(key in context and any(fnmatch.fnmatchcase(context[key], p) for p in
                                      _listed(patterns))
               for key, patterns in conditions.get("StringLike", {}).items()):
            return True
    return False


def asked(service: str, operation: str, params: dict[str, Any]) -> list[tuple[str, str, dict]]:
    """What AWS authorises for the call: ``[(action, resource ARN, context)]``."""
    if service == "s3":
        bucket = f"arn:aws:s3:::{params['Bucket']}"
        if operation == "ListObjectsV2":
            return [("s3:ListBucket", bucket, {"s3:prefix": params.get("Prefix", "")})]
        assert operation in ("GetObject", "PutObject"), operation
        return [(f"s3:{operation}", f"{bucket}/{params['Key']}", {})]
    assert service == "sagemaker", service
    if operation == "DescribeModelPackage":
        return [("sagemaker:DescribeModelPackage", params["ModelPackageName"], {})]
    if operation in ("DescribeTransformJob", "CreateTransformJob"):
        resource = f"{ARN}transform-job/{params['TransformJobName'].lower()}"
        tags = [("sagemaker:AddTags", resource, {})] if params.get("Tags") else []
        return [(f"sagemaker:{operation}", resource, {}), *tags]
    assert operation == "StartPipelineExecution", operation
    return [("sagemaker:StartPipelineExecution", f"{ARN}pipeline/{params['PipelineName']}", {})]


class Gate:
    """Clients whose every call is authorised against ``statements``."""

    def __init__(self, statements: list[dict[str, Any]]) -> None:
        self.statements = statements
        self.allowed: list[tuple[str, str]] = []
        self.denied: list[tuple[str, str]] = []

    def client(self, service: str) -> Any:
        client = boto3.client(service, region_name=REGION)
        client.meta.events.register(f"before-parameter-build.{service}.*", self.check)
        return client

    def check(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        from botocore.exceptions import ClientError

        service = model.service_model.endpoint_prefix.replace("api.sagemaker", "sagemaker")
        for action, resource, context in asked(service, model.name, params):
            if not allowed(self.statements, action, resource, context):
                self.denied.append((action, resource))
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": (
                    f"not authorized to perform: {action} on resource: {resource}")}},
                    model.name)
            self.allowed.append((action, resource))


def deployed_module() -> types.ModuleType:
    """The code the template deploys, imported as the Lambda runtime imports ``index.py``."""
    module = types.ModuleType("drift_index")
    sys.modules[module.__name__] = module  # as an import would (dataclasses look it up)
    code = template_code(MONITORING_TEMPLATE.read_text(), "DriftFunction")
    exec(compile(code, "index.py", "exec"), module.__dict__)  # noqa: S102 - the tested code
    return module


# the template ------------------------------------------------------------------------------------
def test_cfn_lint_passes_and_the_template_deploys_without_an_upload():
    from cfnlint.api import lint_file

    matches = lint_file(Path(MONITORING_TEMPLATE))
    assert not matches, "\n".join(str(m) for m in matches)
    assert len(Path(MONITORING_TEMPLATE).read_bytes()) <= 51200


def test_the_inline_code_is_the_sources_compacted(template):
    code = template["Resources"]["DriftFunction"]["Properties"]["Code"]["ZipFile"]
    assert code == drift_source(), "run: informer-mlops template sync"
    assert template["Resources"]["DriftFunction"]["Properties"]["Handler"] == \
        "index.lambda_handler"
    assert '"""' not in code and "\n#" not in code.split("\n", 1)[1]


def test_compact_keeps_the_code_and_drops_docstrings_and_comments():
    source = ('"""Module."""\n\nimport os  # why\n\n\nclass E(ValueError):\n    """Only."""\n\n\n'
              'def f(x):\n    """Doc\n    more."""\n    # note\n    return "#" + x  # end\n')
    assert compact(source) == ('import os\nclass E(ValueError):\n    pass\ndef f(x):\n'
                               '    return "#" + x\n')


def test_the_role_is_least_privilege(template):
    statements = role_statements(template)
    assert {s["Sid"] for s in statements} >= {"ReadPackage", "NextForecast", "StartPipeline"}
    for s in statements:
        for action in _listed(s["Action"]):
            assert "*" not in action and action != "iam:PassRole", s
        assert "*" not in _listed(s["Resource"]), s
    pipeline = [s for s in statements if "sagemaker:StartPipelineExecution" in
                _listed(s["Action"])]
    assert [s["Resource"] for s in pipeline] == [f"{ARN}pipeline/{PIPELINE}"]


def test_the_rule_sends_new_data_objects_to_the_function(template):
    from moto.events.models import EventPattern

    rule = template["Resources"]["DriftRule"]["Properties"]
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["DriftFunction", "Arn"]}
    matcher = EventPattern.load(json.dumps(render(rule["EventPattern"], template)))
    for bucket, key, expected in ((BUCKET, "data/ETTh1.csv", True),
                                  (BUCKET, "forecasts/x.csv.out", False),
                                  ("other", "data/ETTh1.csv", False)):
        assert matcher.matches_event(object_created(bucket, key)) is expected


def test_the_rule_settings_default_to_the_pipeline_config_and_the_main_stack_defers(template):
    parameters = template["Parameters"]
    drift = load_config([])["drift"]
    assert float(parameters["DriftWindow"]["Default"]) == drift["window"]
    assert float(parameters["DriftK"]["Default"]) == drift["k"]
    assert parameters["DriftRuleType"]["Default"] == drift["rule"]
    assert float(parameters["DriftMinSkill"]["Default"]) == drift["min_skill"]
    main = cfn_yaml.load(str(TEMPLATE))
    assert main["Parameters"]["RetrainOn"]["Default"] == "drift"
    assert main["Resources"]["NewDataRule"]["Condition"] == "RetrainOnEveryObject"
    assert main["Conditions"]["RetrainOnEveryObject"] == {
        "Fn::Equals": [{"Ref": "RetrainOn"}, "every-object"]}


# the function under moto -------------------------------------------------------------------------
def object_created(bucket: str, key: str, etag: str = "e1") -> dict[str, Any]:
    return {"version": "0", "id": "e", "detail-type": "Object Created", "source": "aws.s3",
            "account": ACCOUNT, "time": "2026-11-25T12:00:00Z", "region": REGION,
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {"bucket": {"name": bucket}, "object": {"key": key, "etag": etag}}}


def series(hours: int, level: float = 10.0, shift_from: int | None = None) -> str:
    """Hourly ``date,OT`` from 2016-07-01: ``level`` plus a daily wave, 10 lower from
    ``shift_from`` on."""
    rows = ["date,OT"]
    for h in range(hours):
        value = level + math.sin(h / 24 * 2 * math.pi)
        value -= 10 if shift_from is not None and h >= shift_from else 0
        rows.append(f"{datetime(2016, 7, 1) + timedelta(hours=h):%Y-%m-%d %H:%M:%S},{value}")
    return "\n".join(rows) + "\n"


def report(text: str, origin_row: int, version: str = "v1") -> str:
    """A served forecast from row ``origin_row`` (0-based) of ``text``: the truth of a series
    without the shift, 24 steps, after one day of backtest."""
    lines = ["date,model_version,segment,OT_actual,OT"]
    for h in range(origin_row - 23, origin_row + 25):
        when = datetime(2016, 7, 1) + timedelta(hours=h)
        truth = 10.0 + math.sin(h / 24 * 2 * math.pi)
        served = h > origin_row
        lines.append(f"{when:%Y-%m-%dT%H:%M:%S},{version},"
                     f"{'forecast' if served else 'backtest'},{'' if served else truth},{truth}")
    return "\n".join(lines) + "\n"


EVALUATION = {"regression_metrics": {"mse": {"value": 0.5}},
              "schema": {"variables": ["OT"], "mean": [10.0], "std": [1.0], "seq_len": 48,
                         "pred_len": 24, "season": 24, "transform_input_rows": 48 + 24}}
ENVIRON = {"BUCKET": BUCKET, "MODEL_PACKAGE_GROUP_NAME": GROUP, "PIPELINE_NAME": PIPELINE,
           "DRIFT_WINDOW": "1", "DRIFT_K": "2"}


@pytest.fixture
def account(monkeypatch):
    """moto: the bucket, an approved v1 with its evaluation, its approval transform job and
    its first served forecast (origin: row 199), and the pipeline."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with moto.mock_aws():
        s3, sm = boto3.client("s3", region_name=REGION), boto3.client("sagemaker",
                                                                       region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        evaluation = "informer/executions/x/evaluate/evaluation/evaluation.json"
        s3.put_object(Bucket=BUCKET, Key=evaluation, Body=json.dumps(EVALUATION).encode())
        sm.create_model_package_group(ModelPackageGroupName=GROUP)
        package = sm.create_model_package(
            ModelPackageGroupName=GROUP, ModelApprovalStatus="Approved",
            InferenceSpecification={"Containers": [{"Image": "x", "ModelDataUrl": "s3://b/m"}],
                                    "SupportedContentTypes": ["text/csv"],
                                    "SupportedResponseMIMETypes": ["text/csv"]},
            ModelMetrics={"ModelQuality": {"Statistics": {
                "ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/{evaluation}"}}})
        sm.create_model(ModelName=f"{GROUP}-v1", ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:"
                        f"role/r", Containers=[{"ModelPackageName": package["ModelPackageArn"]}])
        sm.create_transform_job(
            TransformJobName=f"{GROUP}-v1", ModelName=f"{GROUP}-v1",
            BatchStrategy="SingleRecord", MaxPayloadInMB=6,
            TransformInput={"DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/in/"}},
                "ContentType": "text/csv", "SplitType": "None"},
            TransformOutput={"S3OutputPath": f"s3://{BUCKET}/forecasts/{GROUP}/v1/",
                             "Accept": "text/csv", "AssembleWith": "None"},
            TransformResources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
            Environment={"INFORMER_OUTPUT": "report", "INFORMER_MODEL_VERSION": "v1"})
        s3.put_object(Bucket=BUCKET, Key=f"forecasts/{GROUP}/v1/ETTh1.csv.out",
                      Body=report(series(200), 199).encode())
        sm.create_pipeline(PipelineName=PIPELINE, RoleArn=f"arn:aws:iam::{ACCOUNT}:role/r",
                           PipelineDefinition=json.dumps({"Version": "2020-12-01",
                                                          "Parameters": [], "Steps": []}))
        yield s3, sm


def deliver(module, gate: Gate, s3, text: str, etag: str) -> dict[str, Any]:
    s3.put_object(Bucket=BUCKET, Key="data/ETTh1.csv", Body=text.encode())
    module.CLIENT_FACTORY = gate.client
    return module.lambda_handler(object_created(BUCKET, "data/ETTh1.csv", etag),
                                 environ=ENVIRON)


def executions(sm) -> list[dict[str, Any]]:
    return sm.list_pipeline_executions(PipelineName=PIPELINE)["PipelineExecutionSummaries"]


def test_scores_decides_and_starts_the_pipeline_once_under_its_role(template, account, capsys,
                                                                   tmp_path):
    s3, sm = account
    module, gate = deployed_module(), Gate(role_statements(template))
    # the data up to the forecast's origin: nothing to score yet, the next forecast starts
    first = deliver(module, gate, s3, series(200), "e1")
    assert first["scored"] == {"v1": []} and not first["decision"]["fire"]
    assert first["forecasts"]["v1"] == {"job": f"{GROUP}-v1-o20160709070000",
                                        "status": "created"}
    job = sm.describe_transform_job(TransformJobName=f"{GROUP}-v1-o20160709070000")
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == \
        f"s3://{BUCKET}/forecast-input/{GROUP}/v1/20160709070000/"
    assert job["Environment"] == {"INFORMER_OUTPUT": "report", "INFORMER_MODEL_VERSION": "v1"}
    body = s3.get_object(Bucket=BUCKET, Key=f"forecast-input/{GROUP}/v1/20160709070000/"
                         "ETTh1-o20160709070000.csv")["Body"].read().decode()
    assert body.splitlines()[0] == "date,OT" and len(body.splitlines()) == 1 + 72
    assert executions(sm) == []
    # a day later, with a level shift the forecast missed: scored, the rule fires
    second = deliver(module, gate, s3, series(224, shift_from=200), "e2")
    assert second["scored"] == {"v1": ["2016-07-09T07:00:00"]}
    assert second["decision"]["fire"] and second["decision"]["figures"]["ratio"] > 2
    assert second["execution"]["status"] == "started"
    [started] = executions(sm)
    parameters = sm.list_pipeline_parameters_for_execution(
        PipelineExecutionArn=started["PipelineExecutionArn"])["PipelineParameters"]
    assert {p["Name"]: p["Value"] for p in parameters} == {
        "InputDataBucket": BUCKET, "InputDataPrefix": "data/ETTh1.csv", "InputDataVersion": "e2"}
    scores = s3.get_object(Bucket=BUCKET, Key=f"monitoring/{GROUP}/scores/v1/"
                           "ETTh1.csv.out.csv")["Body"].read().decode()
    assert scores.splitlines()[0].startswith("version,origin,step,values,mse")
    assert len(scores.splitlines()) == 1 + 25
    trigger = json.loads(s3.get_object(Bucket=BUCKET, Key=f"monitoring/{GROUP}/triggers/v1/"
                                       "20160709070000.json")["Body"].read())
    assert trigger["execution"] == started["PipelineExecutionArn"]
    assert trigger["figures"]["realized_mse"] == pytest.approx(100, rel=0.05)
    # the same data again (a repeated delivery): no new score, no second execution
    third = deliver(module, gate, s3, series(224, shift_from=200), "e2")
    assert third["scored"] == {"v1": []} and third["execution"] is None
    assert len(executions(sm)) == 1
    assert gate.denied == []
    actions = {a for a, _ in gate.allowed}
    assert {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "sagemaker:DescribeModelPackage",
            "sagemaker:DescribeTransformJob", "sagemaker:CreateTransformJob",
            "sagemaker:StartPipelineExecution"} <= actions
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {line["logger"] for line in lines} == {"informer.drift"}
    # the dashboard of the bucket plots the scores
    from mlops.dashboard import collect_s3

    data = collect_s3(f"s3://{BUCKET}/", tmp_path)
    assert [(r["group"], r["version"], r["origin"]) for r in data.scores] == [
        (GROUP, "v1", "2016-07-09T07:00:00")]


@pytest.mark.parametrize("sid", ["StartPipeline", "WriteScoresAndInputs", "NextForecast",
                                 "ReadPackage", "ListForecastsAndScores"])
def test_a_permission_the_role_lacks_is_seen(template, account, sid):
    s3, _ = account
    statements = [s for s in role_statements(template) if s["Sid"] != sid]
    module, gate = deployed_module(), Gate(statements)
    with pytest.raises(Exception, match="AccessDenied"):
        deliver(module, gate, s3, series(200), "e1")
        deliver(module, gate, s3, series(224, shift_from=200), "e2")
    assert gate.denied


def test_other_objects_are_ignored_and_settings_are_checked(account):
    module = deployed_module()
    result = module.lambda_handler(object_created(BUCKET, "forecasts/x.csv.out"),
                                   environ=ENVIRON)
    assert result["status"] == "ignored"
    with pytest.raises(ValueError, match=r"^PIPELINE_NAME: required environment variable"):
        module.lambda_handler(object_created(BUCKET, "data/x.csv"),
                              environ={"BUCKET": BUCKET, "MODEL_PACKAGE_GROUP_NAME": GROUP})
    with pytest.raises(ValueError, match=r"^DRIFT\.rule: expected one of"):
        module.lambda_handler(object_created(BUCKET, "data/x.csv"),
                              environ={**ENVIRON, "DRIFT_RULE": "x"})


def test_retrain_off_scores_and_decides_but_starts_nothing(template, account):
    s3, sm = account
    module, gate = deployed_module(), Gate(role_statements(template))
    module.CLIENT_FACTORY = gate.client
    s3.put_object(Bucket=BUCKET, Key="data/ETTh1.csv",
                  Body=series(224, shift_from=200).encode())
    result = module.lambda_handler(object_created(BUCKET, "data/ETTh1.csv"),
                                   environ={**ENVIRON, "RETRAIN": "off"})
    assert result["decision"]["fire"] and result["execution"] is None
    assert executions(sm) == [] and gate.denied == []


def test_a_version_whose_evaluation_has_no_schema_is_skipped(template, account, capsys):
    s3, _ = account
    key = "informer/executions/x/evaluate/evaluation/evaluation.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(
        {"regression_metrics": {"mse": {"value": 0.5}}}).encode())
    module, gate = deployed_module(), Gate(role_statements(template))
    result = deliver(module, gate, s3, series(224), "e1")
    assert result["status"] == "no_approved_version"
    assert "skipped: evaluation.json has no schema" in capsys.readouterr().out
