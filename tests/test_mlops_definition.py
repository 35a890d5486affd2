"""How the local backend reads a pipeline definition: parameters, expressions, conditions,
step order, the fields it refuses, and the approval rule read from the template."""

from __future__ import annotations

import json

import pytest

from mlops.local.definition import (
    Context,
    DefinitionError,
    condition,
    load_definition,
    ordered,
    parameters,
    resolve,
)
from mlops.local.fields import check_definition
from mlops.local.rules import approval_pattern, matches

DEFINITION = {"Parameters": [
    {"Name": "Bucket", "Type": "String", "DefaultValue": "b"},
    {"Name": "Threshold", "Type": "Float", "DefaultValue": 1.0},
    {"Name": "Count", "Type": "Integer", "DefaultValue": 1},
    {"Name": "Strict", "Type": "Boolean", "DefaultValue": True}], "Steps": []}
REPORT = {"regression_metrics": {"mse": {"value": 0.4}}, "by_step": [0.1, 0.2]}


def context() -> Context:
    ctx = Context(parameters(DEFINITION, {"Threshold": "0.5", "Strict": "false"}),
                  {"PipelineExecutionId": "e1"}, read_property_file=lambda step, name: REPORT)
    ctx.properties = {"Prep": {"ProcessingOutputConfig": {"Outputs": [
        {"OutputName": "dataset", "S3Output": {"S3Uri": "s3://b/x/dataset"}}]}},
        "Eval": {}}
    return ctx


def test_parameters_take_overrides_cast_to_their_type():
    values = parameters(DEFINITION, {"Threshold": "0.5", "Strict": "false"})
    assert values == {"Bucket": "b", "Threshold": 0.5, "Count": 1, "Strict": False}
    with pytest.raises(DefinitionError, match=r"^Parameters.Nope: the definition declares no "
                                              r"such parameter"):
        parameters(DEFINITION, {"Nope": 1})
    with pytest.raises(DefinitionError, match=r"^Parameters.Count: expected int, got 'x'"):
        parameters(DEFINITION, {"Count": "x"})


def test_expressions_resolve_as_sagemaker_does():
    ctx = context()
    join = {"Std:Join": {"On": "/", "Values": ["s3:/", {"Get": "Parameters.Bucket"},
                                              {"Get": "Execution.PipelineExecutionId"}]}}
    assert resolve({"Uri": join, "Flag": {"Get": "Parameters.Strict"}}, ctx, "A") == {
        "Uri": "s3://b/e1", "Flag": False}
    output = {"Get": "Steps.Prep.ProcessingOutputConfig.Outputs['dataset'].S3Output.S3Uri"}
    assert resolve(output, ctx, "A") == "s3://b/x/dataset"
    get = {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Eval.PropertyFiles.Report"},
                           "Path": "by_step[1]"}}
    assert resolve(get, ctx, "A") == 0.2
    with pytest.raises(DefinitionError, match=r"^A: Get 'Steps.Later.X': step 'Later' has not "
                                              r"run$"):
        resolve({"Get": "Steps.Later.X"}, ctx, "A")


def test_conditions():
    ctx = context()
    mse = {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Eval.PropertyFiles.Report"},
                           "Path": "regression_metrics.mse.value"}}
    below = {"Type": "LessThanOrEqualTo", "LeftValue": mse,
             "RightValue": {"Get": "Parameters.Threshold"}}
    assert condition(below, ctx, "C") is True
    assert condition({"Type": "Not", "Condition": below}, ctx, "C") is False
    assert condition({"Type": "Or", "Conditions": [
        {"Type": "Equals", "LeftValue": {"Get": "Parameters.Strict"}, "RightValue": True},
        {"Type": "In", "QueryValue": 2, "Values": [1, 2]}]}, ctx, "C") is True
    with pytest.raises(DefinitionError, match=r"^C.Type: the local backend evaluates"):
        condition({"Type": "Matches"}, ctx, "C")


def test_steps_run_after_what_they_read_and_cycles_are_refused():
    a = {"Name": "A", "Arguments": {"X": {"Get": "Steps.B.Y"}}}
    b = {"Name": "B", "Arguments": {}}
    c = {"Name": "C", "DependsOn": ["A"]}
    assert [s["Name"] for s in ordered([c, a, b])] == ["B", "A", "C"]
    with pytest.raises(DefinitionError, match=r"^Steps: the steps depend on each other in a "
                                              r"cycle$"):
        ordered([a, {"Name": "B", "Arguments": {"X": {"Get": "Steps.A.Y"}}}])


def test_unknown_step_types_and_fields_are_refused_by_name(tmp_path):
    for steps, message in (
            ([{"Name": "T", "Type": "Transform", "Arguments": {}}],
             "Steps[T].Type: the local backend runs"),
            ([{"Name": "P", "Type": "Processing", "RetryPolicies": []}],
             "Steps[P].RetryPolicies: the local backend cannot honour this field"),
            ([{"Name": "P", "Type": "Processing", "Arguments": {"NetworkConfig": {}}}],
             "Steps[P].Arguments.NetworkConfig: the local backend cannot honour this field")):
        with pytest.raises(DefinitionError) as err:
            check_definition({**DEFINITION, "Steps": steps})
        assert str(err.value).startswith(message)
    path = tmp_path / "d.json"
    path.write_text("{not json")
    with pytest.raises(DefinitionError, match=r"^definition: .*d.json is not JSON"):
        load_definition(path)
    path.write_text(json.dumps({"Version": "2020-12-01"}))
    with pytest.raises(DefinitionError, match=r"has no Steps list"):
        load_definition(path)


def test_the_approval_rule_is_the_templates():
    pattern = approval_pattern("g")
    assert pattern == {"source": ["aws.sagemaker"],
                       "detail-type": ["SageMaker Model Package State Change"],
                       "detail": {"ModelPackageGroupName": ["g"],
                                  "ModelApprovalStatus": ["Approved"]}}
    event = {"source": "aws.sagemaker", "detail-type": "SageMaker Model Package State Change",
             "detail": {"ModelPackageGroupName": "g", "ModelApprovalStatus": "Approved"}}
    assert matches(pattern, event)
    assert not matches(pattern, {**event, "detail": {**event["detail"],
                                                     "ModelApprovalStatus": "Rejected"}})
    assert not matches(approval_pattern("other"), event)


@pytest.mark.parametrize("bucket", ["b", "My_Bucket", "-edge", "a..b", "192.168.1.1"])
def test_a_bucket_name_s3_refuses_is_one_line_before_anything_is_built(bucket, capsys):
    from mlops.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["pipeline", "definition", "--offline", f"bucket={bucket}"])
    assert exit_.value.code == 2
    assert capsys.readouterr() == ("", f"error: bucket={bucket}: expected an S3 bucket name: "
                                   "3-63 characters, lowercase letters, digits, dots and "
                                   "hyphens, starting and ending with a letter or digit\n")


def test_a_valid_bucket_name_passes():
    from mlops.config import load_config

    assert load_config(["bucket=informer-artifacts.eu-1"])["bucket"] == "informer-artifacts.eu-1"
