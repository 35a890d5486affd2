"""``informer-mlops``: the SageMaker Pipeline and the infrastructure template from the shell.

``pipeline definition|upsert|start|describe`` take Hydra overrides of ``conf/pipeline``
(``pipeline.bucket=my-bucket`` or ``bucket=my-bucket``); ``template check|sync`` keep the
template's inline Lambda code equal to its sources (:data:`mlops.inline.INLINE`:
``mlops/lambda_function.py``, and the drift function's of mlops/infra/monitoring.yaml). A new
command group (``local``, ``dashboard``) is one more :data:`COMMAND_GROUPS` entry whose
subcommands are made with :func:`command` and handlers taking ``(args, cfg)``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from informer.errors import InformerError
from mlops.config import command, environment, load_config
from mlops.inline import INLINE, LAMBDA_SOURCE, ROOT, TEMPLATE  # noqa: F401 - re-exported
from mlops.session import (  # noqa: F401 - re-exported
    OFFLINE_ENV,
    OFFLINE_ROLE,
    TELEMETRY_OFF,
    build,
    create_bucket,
    offline_aws,
)


def cmd_definition(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    import boto3

    offline = args.offline or (not args.online and boto3.Session().get_credentials() is None)
    with offline_aws(cfg["region"]) if offline else nullcontext():
        if offline and cfg.get("bucket"):
            create_bucket(cfg["bucket"], cfg["region"])
        definition = build(cfg).definition()
        if offline:  # the uploads it names, where `informer-mlops local run definition=` reads
            from mlops.local.build import keep_objects
            from mlops.local.state import StateDir

            state, declared = StateDir.resolve(), json.loads(definition)["Parameters"]
            kept = keep_objects(state, next(p["DefaultValue"] for p in declared
                                            if p["Name"] == "InputDataBucket"))
            print(f"offline: the {kept} objects the definition names are in "
                  f"{state.object_store}", file=sys.stderr)
    print(json.dumps(json.loads(definition), indent=2))


def cmd_upsert(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    role = args.role_arn or cfg.get("role_arn")
    if not role:
        raise InformerError("role_arn: upsert needs the SageMaker execution role; pass --role-arn "
                        "ARN, pipeline.role_arn=ARN or set SAGEMAKER_ROLE_ARN")
    response = build(cfg, role).upsert(role_arn=role, description=cfg.get("description"))
    print(json.dumps({"PipelineArn": response.get("PipelineArn")}, indent=2))


def describe_latest(client: Any, pipeline_name: str) -> dict[str, Any]:
    """The latest execution with its parameters and (where the API answers) its steps."""
    summaries = client.list_pipeline_executions(
        PipelineName=pipeline_name, SortBy="CreationTime", SortOrder="Descending",
        MaxResults=1).get("PipelineExecutionSummaries", [])
    if not summaries:
        return {"PipelineName": pipeline_name, "LatestExecution": None}
    arn = summaries[0]["PipelineExecutionArn"]
    execution = client.describe_pipeline_execution(PipelineExecutionArn=arn)
    execution.pop("ResponseMetadata", None)
    for key, call, field in (
            ("Parameters", client.list_pipeline_parameters_for_execution, "PipelineParameters"),
            ("Steps", client.list_pipeline_execution_steps, "PipelineExecutionSteps")):
        try:
            execution[key] = call(PipelineExecutionArn=arn).get(field, [])
        except Exception as err:  # noqa: BLE001 - extra information only
            execution[key] = f"unavailable ({type(err).__name__})"
    return {"PipelineName": pipeline_name, "LatestExecution": execution}


def cmd_describe(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    import boto3

    client = boto3.client("sagemaker", region_name=cfg["region"])
    print(json.dumps(describe_latest(client, cfg["pipeline_name"]), indent=2, default=str))


def _add_pipeline(sub: Any) -> None:
    p = command(sub, "definition", "print the pipeline definition JSON", cmd_definition)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true",
                      help="moto and fake credentials (default when no credentials are found)")
    mode.add_argument("--online", action="store_true", help="use the AWS account")
    p = command(sub, "upsert", "create or update the pipeline", cmd_upsert)
    p.add_argument("--role-arn", help="SageMaker execution role (default: pipeline.role_arn)")
    from mlops.start import cmd_start

    p = command(sub, "start", "start an execution", cmd_start)
    p.add_argument("--input", help="input data s3://bucket/prefix")
    p.add_argument("-p", "--parameter", action="append", metavar="NAME=VALUE",
                   help="pipeline parameter override (repeatable)")
    command(sub, "describe", "show the latest execution", cmd_describe)


def _zipfile(text: str, resource: str | None = None) -> tuple[re.Match, int]:
    """The first ``ZipFile: |`` block (of ``resource`` when given) and its indentation."""
    start = re.search(rf"^  {resource}:\n", text, re.M) if resource else None
    if resource and not start:
        raise InformerError(f"{TEMPLATE}: no resource {resource}")
    match = re.compile(r"^( *)ZipFile: \|\n((?:(?:\1  [^\n]*)?\n)*)", re.M).search(
        text, start.end() if start else 0)
    if not match:
        raise InformerError(f"{TEMPLATE}: no 'ZipFile: |' block")
    return match, len(match.group(1)) + 2


def template_code(text: str, resource: str | None = None) -> str:
    """The code in the template's (first, or ``resource``'s) ``ZipFile: |`` block."""
    match, indent = _zipfile(text, resource)
    body = match.group(2).rstrip("\n") + "\n"
    return "".join(line[indent:] + "\n" if line.strip() else "\n"
                   for line in body.splitlines())


def sync_template(template: Path = TEMPLATE, source: Path | str = LAMBDA_SOURCE,
                  resource: str | None = None) -> bool:
    """Copy ``source`` (a file, or the code itself) into the template's (first, or
    ``resource``'s) ZipFile block; ``True`` when it changed."""
    text = template.read_text()
    wanted = source.read_text() if isinstance(source, Path) else source
    if template_code(text, resource) == wanted:
        return False
    match, indent = _zipfile(text, resource)
    tail = match.group(2)[len(match.group(2).rstrip("\n")) + 1:]
    body = "".join(" " * indent + line + "\n" if line.strip() else "\n"
                   for line in wanted.splitlines())
    template.write_text(text[:match.start(2)] + body + tail + text[match.end(2):])
    return True


def cmd_template(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    for template, resource, source in INLINE:
        if args.action == "sync":
            changed = sync_template(template, source(), resource)
            print("updated" if changed else "up to date", template)
        elif template_code(template.read_text(), resource) != source():
            raise InformerError(f"{template}: the inline code of {resource} differs from its "
                                f"source (mlops.inline.INLINE); run informer-mlops template "
                                f"sync")
        else:
            print("in sync", template)


def _add_template(sub: Any) -> None:
    for action in ("check", "sync"):
        command(sub, action, f"{action} the inline Lambda code of the template", cmd_template,
                config=False).set_defaults(action=action)


def _add_local(sub: Any) -> None:
    from mlops.local.cli import add_local

    add_local(sub)


def _add_dashboard(sub: Any) -> None:
    from mlops.local.cli import add_dashboard

    add_dashboard(sub)


COMMAND_GROUPS: list[tuple[str, str, Callable[[Any], None]]] = [
    ("pipeline", "the SageMaker Pipeline", _add_pipeline),
    ("template", "the CloudFormation template", _add_template),
    ("local", "the whole loop on this machine, no AWS", _add_local),
    ("dashboard", "the HTML forecast dashboard (dashboard [source=...] output=...)",
     _add_dashboard),
]


DESCRIPTION = ("The MLOps loop of informer-mlops: the SageMaker Pipeline and its CloudFormation "
               "template, the same loop on this machine without AWS (local), and the forecast "
               "dashboard.")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="informer-mlops", description=DESCRIPTION)
    groups = top.add_subparsers(dest="group", required=True)
    for name, text, add in COMMAND_GROUPS:
        add(groups.add_parser(name, help=text).add_subparsers(dest="command", required=True))
    return top


def main(argv: Sequence[str] | None = None) -> None:
    from informer.cli.common import quiet_console

    quiet_console()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["dashboard"] and argv[1:2] not in (["build"], ["manifest"], ["-h"],
                                                       ["--help"]):
        argv.insert(1, "build")  # `informer-mlops dashboard source=... output=...`
    args = parser().parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        cfg = load_config(args.overrides) if args.config else {}
        region = os.environ.get("AWS_DEFAULT_REGION") or cfg.get("region")
        with environment({"AWS_DEFAULT_REGION": region} if region else {}):
            args.handler(args, cfg)  # the SDK needs a region when it is imported
    except ValueError as err:  # InformerError and the SDK's own argument errors
        print(f"error: {str(err).strip().splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
    except (BotoCoreError, ClientError) as err:
        print(f"error: AWS: {str(err).strip().splitlines()[0]}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
