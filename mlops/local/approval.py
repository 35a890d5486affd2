"""Approve or reject a registered version and deliver the resulting "SageMaker Model Package
State Change" event to the same Lambda handler AWS runs, with the local SageMaker client, when
the template's approval rule matches it (:mod:`mlops.local.rules`), as EventBridge would.

The status change and its event are stored in one registry transaction; an event is marked
delivered only after the handler returned, and every command first re-delivers what a crash
left undelivered (the handler's idempotency keeps that to one transform job). Approving an
approved version again re-sends its event, which retries a transform job that failed.
The handler's log lines (JSON, one per step) are appended to ``logs/lambda.log``, never to
stdout, which carries the commands' results only.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from mlops import lambda_function
from mlops.local.client import LocalSageMaker
from mlops.local.registry import ACCOUNT, REGION, Registry, now
from mlops.local.rules import APPROVAL_RULE, approval_pattern, matches
from mlops.local.state import StateDir

LOCAL_ROLE = f"arn:aws:iam::{ACCOUNT}:role/informer-local"


def state_change_event(package: dict[str, Any]) -> dict[str, Any]:
    """The EventBridge event for ``package`` (DescribeModelPackage fields)."""
    detail = {k: package[k] for k in (
        "ModelPackageGroupName", "ModelPackageVersion", "ModelPackageArn", "CreationTime",
        "InferenceSpecification", "ModelPackageStatus", "ModelApprovalStatus",
        "LastModifiedTime")}
    detail["ModelMetrics"] = package.get("ModelMetrics") or {}
    detail["MetadataProperties"] = {"GeneratedBy": "informer-mlops local run"}
    return {"version": "0", "id": str(uuid.uuid4()), "source": lambda_function.SOURCE,
            "detail-type": lambda_function.DETAIL_TYPE, "account": ACCOUNT, "time": now(),
            "region": REGION, "resources": [package["ModelPackageArn"]], "detail": detail}


def lambda_environment(state: StateDir, group: str) -> dict[str, str]:
    """The Lambda's settings for the local loop, as the template sets them: no input prefix
    (each version's package names its own transform input)."""
    return {"SAGEMAKER_ROLE_ARN": LOCAL_ROLE, "BUCKET": state.bucket,
            "MODEL_PACKAGE_GROUP_NAME": group, "FORECAST_PREFIX": "forecasts",
            "CONTENT_TYPE": "text/csv", "ACCEPT": "text/csv", "SPLIT_TYPE": "None",
            "BATCH_STRATEGY": "SingleRecord", "TRANSFORM_INSTANCE_TYPE": "local"}


def deliver_pending(state: StateDir, registry: Registry) -> list[dict[str, Any]]:
    """Run the handler for every undelivered event, oldest first."""
    results = []
    client = LocalSageMaker(state, registry)
    for event_id, event in registry.pending_events():
        group = event["detail"]["ModelPackageGroupName"]
        if not matches(approval_pattern(group), event):  # EventBridge invokes nothing
            results.append({"status": "ignored", "group": group,
                            "version": event["detail"].get("ModelPackageVersion"),
                            "reason": f"the template's {APPROVAL_RULE} does not match the event "
                                      f"(ModelApprovalStatus "
                                      f"{event['detail'].get('ModelApprovalStatus')})"})
            registry.mark_delivered(event_id)
            continue
        state.lambda_log.parent.mkdir(parents=True, exist_ok=True)
        with open(state.lambda_log, "a", encoding="utf-8") as log, \
                contextlib.redirect_stdout(log):
            results.append(lambda_function.lambda_handler(
                event, client=client, environ=lambda_environment(state, group)))
        registry.mark_delivered(event_id)
    return results


def change_status(state: StateDir, group: str, version: int | None, status: str
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Set the status (queuing the event atomically), then deliver the outstanding events."""
    registry = Registry(state.registry)
    deliver_pending(state, registry)  # first repair what an earlier crash left behind
    package, event_id = registry.set_status(group, version, status,
                                            make_event=state_change_event)
    if event_id is None and status == lambda_function.APPROVED:
        # approved again: re-send the event, so a failed transform job is retried
        registry.queue_event(package["ModelPackageArn"], state_change_event(package))
    return package, deliver_pending(state, registry)
