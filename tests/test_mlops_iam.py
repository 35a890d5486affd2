"""Break 1: ``informer-mlops pipeline upsert`` as CodeBuild runs it, under the template's
BuildRole, with SDK v3 role validation on, against a moto server whose every request from the
build's credentials passes an IAM gate built from the template.

moto's own IAM enforcement (``INITIAL_NO_AUTH_ACTION_COUNT``) checks actions only (the resource
of a non-S3 call is always ``*`` and conditions see no request context), so it would refuse
every statement of a least-privilege template; and moto does not implement
``iam:SimulatePrincipalPolicy``. The gate in front of the server does both from the template's
own policies: each request of the BuildRole's credentials is authorised against the BuildRole's
statements with its real resource ARN (and ``iam:PassRole`` with ``iam:PassedToService``), and
``SimulatePrincipalPolicy`` is answered from the SageMaker role's statements as AWS's policy
simulator does (no resource given: ``*``; no context: conditions fail). A permission that the
template lacks makes the upsert fail or leaves a denied call, and the tests see both.
"""

from __future__ import annotations

import copy
import fnmatch
import io
import json
import threading
import urllib.parse
import urllib.request
from typing import Any

import pytest

from mlops.cli import TELEMETRY_OFF, TEMPLATE, main
from mlops.config import environment

pytest.importorskip("sagemaker", reason="needs the SageMaker SDK (the [aws] extra)")
cfn_yaml = pytest.importorskip("cfnlint.decode.cfn_yaml")
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:Running within a PipelineSession:UserWarning")]

ACCOUNT, REGION = "123456789012", "us-east-1"
BUCKET = f"informer-{ACCOUNT}-{REGION}"
ROLES = {"SageMakerRole": "informer-SageMakerRole", "BuildRole": "informer-BuildRole"}
# boto3's Bucket.creation_date lists every bucket of the account and takes AccessDenied for
# "unknown" (the SDK then checks the bucket itself): the template does not grant it
TOLERATED = {("s3:ListAllMyBuckets", "*")}


# the template's policies, rendered for one account --------------------------------------------
def role_arn(logical: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{ROLES[logical]}"


def render(node: Any, template: dict[str, Any]) -> Any:
    """``Ref``, ``Fn::Sub``, ``Fn::GetAtt`` and ``Fn::If`` of the template with its defaults,
    a created bucket and the roles above."""
    refs = {k: v.get("Default") for k, v in template["Parameters"].items()}
    refs |= {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws",
             "ArtifactBucket": BUCKET, **ROLES, "BuildLogGroup": "/aws/codebuild/informer-pipeline",
             "CodePipeline": "informer-cicd"}

    def attribute(name: str, attr: str) -> str:
        if name in ROLES:
            return role_arn(name)
        if name.endswith("LogGroup"):
            return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{refs[name]}:*"
        return f"arn:aws:{name.lower()}:{REGION}:{ACCOUNT}:{name}"

    def sub(text: str, extra: dict[str, Any]) -> str:
        def value(key: str) -> str:
            if key in extra:
                return str(extra[key])
            if "." in key:
                return attribute(*key.split(".", 1))
            return str(refs[key])
        out, rest = "", text
        while "${" in rest:
            head, _, tail = rest.partition("${")
            key, _, rest = tail.partition("}")
            out += head + value(key)
        return out + rest

    if isinstance(node, list):
        return [render(v, template) for v in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        return refs[node["Ref"]]
    if set(node) == {"Fn::GetAtt"}:
        return attribute(*node["Fn::GetAtt"])
    if set(node) == {"Fn::If"}:
        name, yes, no = node["Fn::If"]
        return render(yes if name == "CreateBucket" else no, template)
    if set(node) == {"Fn::Sub"}:
        spec = node["Fn::Sub"]
        if isinstance(spec, str):
            return sub(spec, {})
        return sub(spec[0], render(spec[1], template))
    return {k: render(v, template) for k, v in node.items()}


def statements(template: dict[str, Any], logical: str) -> list[dict[str, Any]]:
    """Every statement of the role: its inline policies and the RolePolicy resources on it."""
    resources = template["Resources"]
    docs = [p["PolicyDocument"] for p in resources[logical]["Properties"].get("Policies", [])]
    docs += [r["Properties"]["PolicyDocument"] for r in resources.values()
             if r["Type"] == "AWS::IAM::RolePolicy" and r["Properties"]["RoleName"] == {
                 "Ref": logical}]
    return [s for doc in render(docs, template) for s in doc["Statement"]]


# policy evaluation (allow/deny, wildcards, StringEquals/StringLike conditions) ----------------
def _listed(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def _matches(patterns: Any, value: str, fold: bool = False) -> bool:
    if fold:
        return any(fnmatch.fnmatchcase(value.lower(), p.lower()) for p in _listed(patterns))
    return any(fnmatch.fnmatchcase(value, p) for p in _listed(patterns))


def _condition_holds(condition: dict[str, Any], context: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        if operator not in ("StringEquals", "StringLike"):
            raise AssertionError(f"condition operator {operator} is not modelled by this gate")
        for key, expected in tests.items():
            if key not in context:
                return False
            if operator == "StringEquals" and context[key] not in _listed(expected):
                return False
            if operator == "StringLike" and not _matches(expected, context[key]):
                return False
    return True


def decide(policy: list[dict[str, Any]], action: str, resource: str,
           context: dict[str, str] | None = None) -> str:
    """``allowed``, ``implicitDeny`` or ``explicitDeny``, as the policy simulator says."""
    decision = "implicitDeny"
    for statement in policy:
        if not _matches(statement["Action"], action, fold=True) or \
                not _matches(statement["Resource"], resource) or \
                not _condition_holds(statement.get("Condition", {}), context or {}):
            continue
        if statement["Effect"] == "Deny":
            return "explicitDeny"
        decision = "allowed"
    return decision


# what a request asks for ----------------------------------------------------------------------
def _s3(method: str, path: str, query: dict[str, list[str]]) -> list[tuple[str, str, dict]]:
    bucket, _, key = urllib.parse.unquote(path).lstrip("/").partition("/")
    if not bucket:
        return [("s3:ListAllMyBuckets", "*", {})]
    if not key:
        action = {"PUT": "s3:CreateBucket"}.get(method) or (
            "s3:GetBucketLocation" if "location" in query else "s3:ListBucket")
        return [(action, f"arn:aws:s3:::{bucket}", {})]
    if method == "DELETE" and "uploadId" in query:
        action = "s3:AbortMultipartUpload"
    else:
        action = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "DELETE": "s3:DeleteObject"
                  }.get(method, "s3:PutObject")
    return [(action, f"arn:aws:s3:::{bucket}/{key}", {})]


def _sagemaker(target: str, body: dict[str, Any]) -> list[tuple[str, str, dict]]:
    action = "sagemaker:" + target.split(".", 1)[1]
    prefix = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:"
    resource = body.get("ResourceArn") or body.get("PipelineExecutionArn") or (
        prefix + "pipeline/" + body["PipelineName"].lower() if "PipelineName" in body else "*")
    asked = [(action, resource, {})]
    if body.get("RoleArn"):  # the pipeline's role is passed to SageMaker
        asked.append(("iam:PassRole", body["RoleArn"],
                      {"iam:PassedToService": "sagemaker.amazonaws.com"}))
    if body.get("Tags") and action != "sagemaker:AddTags":
        asked.append(("sagemaker:AddTags", resource, {}))
    return asked


def requested(environ: dict[str, Any], body: bytes) -> tuple[str, list[tuple[str, str, dict]]]:
    """``(service, [(action, resource ARN, request context), ...])`` of one request."""
    scope = environ.get("HTTP_AUTHORIZATION", "").split("Credential=")[1].split(",")[0]
    service = scope.split("/")[3]
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if service == "s3":
        return service, _s3(environ["REQUEST_METHOD"], environ["PATH_INFO"], query)
    if service == "sagemaker":
        return service, _sagemaker(environ["HTTP_X_AMZ_TARGET"], json.loads(body or b"{}"))
    form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
    action = f"{service}:{form['Action']}"
    resource = form.get("PolicySourceArn") or (
        f"arn:aws:iam::{ACCOUNT}:role/{form['RoleName']}" if "RoleName" in form else "*")
    return service, [(action, resource, {})]


# the gate in front of moto's server -----------------------------------------------------------
class Gate:
    """WSGI middleware: authorises the build's requests, answers SimulatePrincipalPolicy."""

    def __init__(self, app: Any, callers: dict[str, list], roles: dict[str, list]) -> None:
        self.app, self.callers, self.roles = app, callers, roles
        self.allowed: list[tuple[str, str]] = []
        self.denied: list[tuple[str, str]] = []
        self.simulated: list[tuple[str, str, str]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("wsgi.input_terminated"):  # chunked: werkzeug dechunks to the end
            body = environ["wsgi.input"].read()
        else:
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        key = environ.get("HTTP_AUTHORIZATION", "").partition("Credential=")[2].split("/")[0]
        if key not in self.callers:  # the test's own set-up calls
            return self.app(environ, start_response)
        service, asked = requested(environ, body)
        for action, resource, context in asked:
            if action == "sts:GetCallerIdentity":
                continue  # always allowed on AWS
            if decide(self.callers[key], action, resource, context) != "allowed":
                self.denied.append((action, resource))
                return _denied(service, action, resource, start_response)
            self.allowed.append((action, resource))
        if asked[0][0] == "iam:SimulatePrincipalPolicy":
            return self.simulate(body, start_response)
        return self.app(environ, start_response)

    def simulate(self, body: bytes, start_response: Any) -> list[bytes]:
        form = urllib.parse.parse_qs(body.decode())
        role = form["PolicySourceArn"][0]
        policy = self.roles[role]
        names = [k for k in form if k.startswith("ActionNames.member.")]
        actions = [form[k][0] for k in sorted(names, key=lambda k: int(k.rsplit(".", 1)[1]))]
        resources = [form[k][0] for k in form if k.startswith("ResourceArns.member.")] or ["*"]
        members = ""
        for action in actions:
            decisions = [decide(policy, action, r) for r in resources]
            decision = next((d for d in decisions if d != "allowed"), "allowed")
            self.simulated.append((role, action, decision))
            members += (f"<member><EvalActionName>{action}</EvalActionName><EvalResourceName>"
                        f"{resources[0]}</EvalResourceName><EvalDecision>{decision}"
                        f"</EvalDecision></member>")
        xml = ('<SimulatePrincipalPolicyResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
               f"<SimulatePrincipalPolicyResult><IsTruncated>false</IsTruncated><EvaluationResults>"
               f"{members}</EvaluationResults></SimulatePrincipalPolicyResult><ResponseMetadata>"
               "<RequestId>gate</RequestId></ResponseMetadata></SimulatePrincipalPolicyResponse>")
        start_response("200 OK", [("Content-Type", "text/xml")])
        return [xml.encode()]


def _denied(service: str, action: str, resource: str, start_response: Any) -> list[bytes]:
    message = f"not authorized to perform: {action} on resource: {resource}"
    if service == "sagemaker":
        start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.1"),
                                           ("x-amzn-ErrorType", "AccessDeniedException")])
        return [json.dumps({"__type": "AccessDeniedException", "message": message}).encode()]
    start_response("403 Forbidden", [("Content-Type", "text/xml")])
    if service == "s3":
        return [f"<Error><Code>AccessDenied</Code><Message>{message}</Message></Error>".encode()]
    return [(f"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>"
             f"{message}</Message></Error><RequestId>gate</RequestId></ErrorResponse>").encode()]


# the build -------------------------------------------------------------------------------------
def buildspec_commands() -> list[list[str]]:
    """The build phase of ``mlops/buildspec.yml`` as ``informer-mlops`` argument lists, with
    its environment variables expanded (``PIPELINE_OVERRIDES`` at its default)."""
    import os
    import shlex

    import yaml

    spec = yaml.safe_load((TEMPLATE.parents[1] / "buildspec.yml").read_text())
    with environment({k: str(v) for k, v in spec["env"]["variables"].items()}):
        commands = [shlex.split(os.path.expandvars(c)) for c in spec["phases"]["build"]["commands"]]
    assert all(c[0] == "informer-mlops" for c in commands)
    return [c[1:] for c in commands]


def codebuild(template: dict[str, Any], tmp_path) -> tuple[Gate, BaseException | None]:
    """Deploy the template's two roles and bucket into a moto server behind the gate, then run
    the buildspec's commands (upsert, start, describe) with the BuildRole's credentials, the
    environment CodeBuild gets from the template, and role validation on."""
    import boto3
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    roles = {role_arn(n): statements(template, n) for n in ROLES}
    gate = Gate(DomainDispatcherApplication(create_backend_app), {}, roles)
    server = make_server("127.0.0.1", 0, gate, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
    config = tmp_path / "sagemaker-config.yaml"
    config.write_text(TELEMETRY_OFF)
    admin = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
             "AWS_ENDPOINT_URL": endpoint,
             "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config)}
    try:
        with environment(admin, remove=("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                                        "SAGEMAKER_VALIDATE_ROLE")):
            setup = boto3.Session()  # the test's own admin session
            iam, sts = setup.client("iam"), setup.client("sts")
            for logical, name in ROLES.items():
                props = render(template["Resources"][logical]["Properties"], template)
                iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(
                    props["AssumeRolePolicyDocument"]))
                iam.put_role_policy(RoleName=name, PolicyName="template", PolicyDocument=json.dumps(
                    {"Version": "2012-10-17", "Statement": statements(template, logical)}))
            setup.client("s3").create_bucket(Bucket=BUCKET)
            setup.client("s3").put_object(Bucket=BUCKET, Key="data/ETTh1.csv", Body=b"date,OT\n")
            creds = sts.assume_role(RoleArn=role_arn("BuildRole"),
                                    RoleSessionName="codebuild")["Credentials"]
            gate.callers[creds["AccessKeyId"]] = roles[role_arn("BuildRole")]
            build = {"AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
                     "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
                     "AWS_SESSION_TOKEN": creds["SessionToken"],
                     # what CodeBuild sets from the template
                     "SAGEMAKER_ROLE_ARN": role_arn("SageMakerRole"), "ARTIFACT_BUCKET": BUCKET,
                     "PIPELINE_NAME": "informer-pipeline",
                     "MODEL_PACKAGE_GROUP_NAME": "informer-models", "DATA_PREFIX": "data/"}
            error = None
            boto3.DEFAULT_SESSION = None  # a fresh process: credentials from the environment
            with environment(build):
                for command in buildspec_commands():
                    try:
                        main(command)
                    except (SystemExit, Exception) as err:  # noqa: BLE001 - for the test
                        error = err
                        break
            if error is None:
                described = setup.client("sagemaker").describe_pipeline(
                    PipelineName="informer-pipeline")
                assert described["RoleArn"] == role_arn("SageMakerRole")
    finally:
        boto3.DEFAULT_SESSION = None
        server.shutdown()
    return gate, error


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return cfn_yaml.load(str(TEMPLATE))


def test_upsert_under_the_build_role_with_role_validation(template, tmp_path, capsys):
    gate, error = codebuild(template, tmp_path)
    assert error is None, f"{error!r}: {capsys.readouterr().err[-1500:]}"
    assert set(gate.denied) <= TOLERATED
    called = {action for action, _ in gate.allowed}
    assert {"sagemaker:CreatePipeline", "iam:PassRole", "iam:SimulatePrincipalPolicy",
            "s3:PutObject", "sagemaker:StartPipelineExecution",
            "sagemaker:DescribePipelineExecution"} <= called
    # start lists the data prefix for InputDataVersion (the BuildRole's Bucket statement)
    assert ("s3:ListBucket", f"arn:aws:s3:::{BUCKET}") in gate.allowed
    # the SDK validated the SageMaker role: every simulated action allowed by the template
    assert gate.simulated and all(d == "allowed" for _, _, d in gate.simulated)
    simulated = {a for _, a, _ in gate.simulated}
    assert {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData",
            "ec2:CreateNetworkInterface", "ec2:DescribeVpcs"} <= simulated
    assert '"PipelineArn": "arn:aws:sagemaker:us-east-1:123456789012:pipeline/informer-pipeline"' \
        in capsys.readouterr().out


def without(template: dict[str, Any], logical: str, sid: str) -> dict[str, Any]:
    changed = copy.deepcopy(template)
    for policy in changed["Resources"][logical]["Properties"]["Policies"]:
        kept = [s for s in policy["PolicyDocument"]["Statement"] if s.get("Sid") != sid]
        assert len(kept) < len(policy["PolicyDocument"]["Statement"]), (logical, sid)
        policy["PolicyDocument"]["Statement"] = kept
    return changed


@pytest.mark.parametrize(("logical", "sid"), [
    ("SageMakerRole", "Metrics"), ("SageMakerRole", "JobNetworking"),
    ("BuildRole", "Pipeline"), ("BuildRole", "PassSageMakerRole"), ("BuildRole", "CheckRole"),
])
def test_a_permission_the_template_lacks_is_seen(template, tmp_path, logical, sid):
    gate, error = codebuild(without(template, logical, sid), tmp_path)
    denied = [d for _, _, d in gate.simulated if d != "allowed"]
    assert error is not None or set(gate.denied) - TOLERATED or denied, (logical, sid)


def test_the_gate_decides_as_the_policy_simulator():
    policy = [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"},
              {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
               "Condition": {"StringLike": {"cloudwatch:namespace": "aws/sagemaker/*"}}},
              {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/secret"}]
    assert decide(policy, "s3:getobject", "arn:aws:s3:::b/k") == "allowed"
    assert decide(policy, "s3:GetObject", "*") == "implicitDeny"  # no resource: "*"
    assert decide(policy, "s3:GetObject", "arn:aws:s3:::b/secret") == "explicitDeny"
    assert decide(policy, "cloudwatch:PutMetricData", "*") == "implicitDeny"  # no context
    assert decide(policy, "cloudwatch:PutMetricData", "*",
                  {"cloudwatch:namespace": "aws/sagemaker/jobs"}) == "allowed"
