"""Drift Lambda: an object created under the data prefix -> the served forecasts it covers are
scored -> the drift rule -> ``StartPipelineExecution`` only when the rule fires; and each
approved version forecasts from the new end of the data.

Standard library + boto3; mlops/infra/monitoring.yaml inlines mlops/drift.py,
mlops/drift_actions.py and this file one after the other (``informer-mlops template sync``,
mlops/inline.py; handler ``index.lambda_handler``), so it scores and decides with the local
loop's code. Input: the
EventBridge "Object Created" event of S3 (``detail.bucket.name``, ``detail.object.key``,
``detail.object.etag``); the object is the whole series (the file the pipeline trains on).

S3 layout in ``BUCKET`` (``<group>`` = ``MODEL_PACKAGE_GROUP_NAME``):

- reads ``<forecasts>/<group>/v<n>/*.out`` (the transform jobs' reports; a version with
  forecasts whose package is Approved is scored) and each version's ``evaluation.json`` (its
  ``ModelMetrics.ModelQuality.Statistics.S3Uri``: evaluation MSE and schema);
- writes ``<monitoring>/<group>/scores/v<n>/<report name>.csv`` (rows of
  :data:`mlops.drift.SCORE_FIELDS`, once the data covers the whole report; never rewritten),
  ``<monitoring>/<group>/triggers/v<n>/<window end>.json`` (the figures that fired, written
  with ``If-None-Match: *``, then the execution ARN), and
  ``<forecast input>/<group>/v<n>/<origin>/<name>-o<origin>.csv`` (the next forecast's input).

The rule looks at the serving version (the latest approved) and fires once per window
(:func:`mlops.drift_actions.decide`); the execution gets the object as ``InputDataBucket``,
``InputDataPrefix`` and ``InputDataVersion`` (its ETag), as the new-data rule passed them, and a
``ClientRequestToken`` of group, version and window, so a repeated delivery starts nothing.

Environment: ``BUCKET``, ``MODEL_PACKAGE_GROUP_NAME``, ``PIPELINE_NAME`` (required);
``DATA_PREFIX`` [``data/``], ``FORECAST_PREFIX`` [``forecasts``], ``MONITORING_PREFIX``
[``monitoring``], ``FORECAST_INPUT_PREFIX`` [``forecast-input``], ``DRIFT_WINDOW``,
``DRIFT_K``, ``DRIFT_RULE``, ``DRIFT_MIN_SKILL`` (conf/pipeline's ``drift:`` defaults),
``RETRAIN`` [``drift``; ``off``: score and forecast only].
"""

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

with contextlib.suppress(ImportError):  # inline: mlops/drift*.py precede this file
    from mlops.drift import (
        DriftError,
        Series,
        evaluation_mse,
        read_report,
        read_scores_csv,
        read_series,
        schema_of,
        score,
        scores_csv,
        stamp,
    )
    from mlops.drift_actions import (
        DriftRule,
        decide,
        forecast_input_name,
        latest_rows,
        next_forecast_request,
        plan_next_forecast,
    )


def _client(service: str) -> Any:
    import boto3

    return boto3.client(service)


# replaced by tests (and a local runner) that bring their own clients
CLIENT_FACTORY: Callable[[str], Any] = _client


def log(message: str, level: str = "INFO", **fields: Any) -> None:
    """One JSON object per line on stdout (CloudWatch Logs keeps each as one event)."""
    record = {"level": level, "logger": "informer.drift", "message": message, **fields}
    sys.stdout.write(json.dumps(record, default=str, sort_keys=True) + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class Settings:
    bucket: str
    group: str
    pipeline: str
    rule: "DriftRule"
    data_prefix: str = "data/"
    forecasts: str = "forecasts"
    monitoring: str = "monitoring"
    inputs: str = "forecast-input"
    retrain: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        missing = [n for n in ("BUCKET", "MODEL_PACKAGE_GROUP_NAME", "PIPELINE_NAME")
                   if not env.get(n)]
        if missing:
            raise DriftError(f"{', '.join(missing)}: required environment variable not set")
        rule = DriftRule.from_mapping({k: env[f"DRIFT_{k.upper()}"] for k in (
            "window", "k", "rule", "min_skill") if env.get(f"DRIFT_{k.upper()}")}, "DRIFT")
        retrain = env.get("RETRAIN") or "drift"
        if retrain not in ("drift", "off"):
            raise DriftError(f"RETRAIN: expected drift or off, got {retrain!r}")
        return cls(env["BUCKET"], env["MODEL_PACKAGE_GROUP_NAME"], env["PIPELINE_NAME"], rule,
                   env.get("DATA_PREFIX") or "data/",
                   (env.get("FORECAST_PREFIX") or "forecasts").strip("/"),
                   (env.get("MONITORING_PREFIX") or "monitoring").strip("/"),
                   (env.get("FORECAST_INPUT_PREFIX") or "forecast-input").strip("/"),
                   retrain == "drift")


class Store:
    """The bucket's objects as text."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    def text(self, key: str) -> str:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode("utf-8")

    def put(self, key: str, text: str, only_new: bool = False) -> bool:
        """False when ``only_new`` and the object exists (``If-None-Match: *``)."""
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=text.encode("utf-8"),
                               **({"IfNoneMatch": "*"} if only_new else {}))
        except Exception as err:
            if only_new and _code(err) in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def keys(self, prefix: str, folders: bool = False) -> list[str]:
        """Object keys under ``prefix`` (with ``folders``: its sub-prefixes instead)."""
        found, kwargs = [], {"Bucket": self.bucket, "Prefix": prefix}
        if folders:
            kwargs["Delimiter"] = "/"
        while True:
            page = self.s3.list_objects_v2(**kwargs)
            found += [p["Prefix"] for p in page.get("CommonPrefixes", [])] if folders else \
                [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return found
            kwargs["ContinuationToken"] = page["NextContinuationToken"]


def _code(err: Exception) -> str:
    return (getattr(err, "response", None) or {}).get("Error", {}).get("Code", "")


def _describe(call: Callable[..., Any], **kwargs: Any) -> dict[str, Any] | None:
    """A description, or None when the call says the resource does not exist."""
    try:
        return call(**kwargs)
    except Exception as err:
        text = str(err).lower()
        if _code(err) == "ResourceNotFound" or "could not find" in text or "not found" in text:
            return None
        raise


@dataclass
class Version:
    number: int
    arn: str
    evaluation: dict[str, Any]


def approved_versions(sm: Any, store: Store, settings: Settings, arn_prefix: str
                      ) -> list[Version]:
    """The versions with forecasts whose package is Approved, oldest first, with their
    evaluation.json."""
    found = []
    for folder in store.keys(f"{settings.forecasts}/{settings.group}/", folders=True):
        name = folder.rstrip("/").rsplit("/", 1)[-1]
        if not (name.startswith("v") and name[1:].isdigit()):
            continue
        arn = f"{arn_prefix}model-package/{settings.group}/{int(name[1:])}"
        package = sm.describe_model_package(ModelPackageName=arn)
        if package.get("ModelApprovalStatus") != "Approved":
            continue
        uri = (((package.get("ModelMetrics") or {}).get("ModelQuality") or {})
               .get("Statistics") or {}).get("S3Uri", "")
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if bucket != settings.bucket or not key:
            log("skipped: no evaluation.json in the bucket", level="WARNING", arn=arn, uri=uri)
            continue
        evaluation = json.loads(store.text(key))
        if "schema" not in evaluation:  # registered before evaluation.json recorded it
            log("skipped: evaluation.json has no schema", level="WARNING", arn=arn, uri=uri)
            continue
        found.append(Version(int(name[1:]), arn, evaluation))
    return sorted(found, key=lambda v: v.number)


def score_version(store: Store, settings: Settings, version: Version, series: "Series"
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(new step-0 rows, every step-0 row)`` of the version; reports the data covers and
    that have no score object yet are scored."""
    root = f"{settings.monitoring}/{settings.group}/scores/v{version.number}/"
    existing = set(store.keys(root))
    schema = schema_of(version.evaluation, f"v{version.number} evaluation.json")
    new = []
    for key in store.keys(f"{settings.forecasts}/{settings.group}/v{version.number}/"):
        target = root + key.rsplit("/", 1)[-1] + ".csv"
        if not key.endswith(".out") or target in existing:
            continue
        rows: list[dict[str, Any]] | None = []
        for forecast in read_report(store.text(key), f"s3://{store.bucket}/{key}",
                                    f"v{version.number}"):
            scored = score(forecast, series, schema)
            rows = None if scored is None or rows is None else rows + scored
        if rows and store.put(target, scores_csv(rows), only_new=True):
            existing.add(target)
            new += [r for r in rows if r["step"] == 0]
            log("scored", key=key, scores=target, origins=[r["origin"] for r in rows
                                                           if r["step"] == 0])
    every = [r for key in sorted(existing) for r in read_scores_csv(store.text(key))
             if r["step"] == 0]
    return new, every


def fired_through(store: Store, settings: Settings, version: int) -> datetime | None:
    root = f"{settings.monitoring}/{settings.group}/triggers/v{version}/"
    ends = [k[len(root):].removesuffix(".json") for k in store.keys(root)]
    return max((datetime.strptime(e, "%Y%m%d%H%M%S") for e in ends), default=None)


def start_execution(sm: Any, store: Store, settings: Settings, version: int, decision: Any,
                    data: Mapping[str, str]) -> dict[str, Any]:
    """Record the firing (once per window) and start the pipeline on the new object."""
    end = decision.figures["origins"][1]
    key = (f"{settings.monitoring}/{settings.group}/triggers/v{version}/"
           f"{stamp(datetime.fromisoformat(end))}.json")
    record = {"group": settings.group, "version": version, "data": data, **asdict(decision)}
    if not store.put(key, json.dumps(record, default=str, indent=2), only_new=True):
        return {"status": "already_started", "trigger": key}
    token = hashlib.sha256(f"{settings.group}/{version}/{end}".encode()).hexdigest()[:64]
    response = sm.start_pipeline_execution(
        PipelineName=settings.pipeline, ClientRequestToken=token,
        PipelineExecutionDescription=f"drift of v{version}: {decision.reason}"[:3072],
        PipelineParameters=[{"Name": "InputDataBucket", "Value": data["bucket"]},
                            {"Name": "InputDataPrefix", "Value": data["key"]},
                            {"Name": "InputDataVersion", "Value": data["etag"]}])
    arn = response["PipelineExecutionArn"]
    store.put(key, json.dumps({**record, "execution": arn}, default=str, indent=2))
    return {"status": "started", "trigger": key, "execution": arn}


def next_forecast(sm: Any, store: Store, settings: Settings, version: Version, series: "Series",
                  data_key: str) -> dict[str, Any]:
    """The version's forecast from the data's last row (one transform job per origin)."""
    origin = series.dates[-1]
    plan = plan_next_forecast(
        lambda name: _describe(sm.describe_transform_job, TransformJobName=name),
        settings.group, version.number, origin)
    name = plan["job"]
    if plan["action"] == "exists":
        return {"job": name, "status": "exists"}
    if plan["action"] == "skip":
        return {"job": name, "status": "skipped", "reason": plan["reason"]}
    rows = schema_of(version.evaluation, f"v{version.number} evaluation.json").input_rows
    folder = f"{settings.inputs}/{settings.group}/v{version.number}/{stamp(origin)}/"
    store.put(folder + forecast_input_name(data_key.rsplit("/", 1)[-1], origin),
              latest_rows(series, rows))
    sm.create_transform_job(**next_forecast_request(
        plan["approval"], name, f"s3://{store.bucket}/{folder}"))
    return {"job": name, "status": "created"}


def lambda_handler(event: Any, context: Any = None, *, environ: Mapping[str, str] | None = None
                   ) -> dict[str, Any]:
    """Handle one "Object Created" event (see the module docstring)."""
    settings = Settings.from_env(environ)
    try:
        detail = event["detail"]
        data = {"bucket": detail["bucket"]["name"], "key": detail["object"]["key"],
                "etag": str(detail["object"].get("etag") or "unknown")}
        region, account = event["region"], event["account"]
    except (KeyError, TypeError) as err:
        raise DriftError(f"event: expected an S3 Object Created event with detail.bucket.name, "
                         f"detail.object.key, region and account (missing {err})") from err
    if data["bucket"] != settings.bucket or not data["key"].startswith(settings.data_prefix):
        log("ignored", **data)
        return {"status": "ignored", **data}
    arn = getattr(context, "invoked_function_arn", "") or ""
    partition = arn.split(":")[1] if arn.count(":") > 2 else "aws"
    sm, store = CLIENT_FACTORY("sagemaker"), Store(CLIENT_FACTORY("s3"), settings.bucket)
    series = read_series(store.text(data["key"]), f"s3://{data['bucket']}/{data['key']}")
    versions = approved_versions(sm, store, settings, f"arn:{partition}:sagemaker:{region}:"
                                                      f"{account}:")
    result: dict[str, Any] = {"status": "scored", "data": data, "scored": {}, "forecasts": {},
                              "decision": None, "execution": None}
    every: dict[int, list[dict[str, Any]]] = {}
    for version in versions:
        new, every[version.number] = score_version(store, settings, version, series)
        result["scored"][f"v{version.number}"] = [r["origin"] for r in new]
        result["forecasts"][f"v{version.number}"] = next_forecast(
            sm, store, settings, version, series, data["key"])
    if not versions:
        log("no approved version with forecasts", group=settings.group)
        return {**result, "status": "no_approved_version"}
    serving = versions[-1]
    decision = decide(every[serving.number], evaluation_mse(serving.evaluation), settings.rule,
                      fired_through(store, settings, serving.number))
    result["decision"] = asdict(decision)
    log("decided", version=serving.number, fire=decision.fire, reason=decision.reason)
    if decision.fire and settings.retrain:
        result["execution"] = start_execution(sm, store, settings, serving.number, decision, data)
        log("retraining", version=serving.number, **result["execution"])
    return result
