"""A local stand-in for the few SageMaker calls the approval Lambda makes.

``describe_model_package`` reads the registry; ``create_model`` / ``describe_model`` keep
models in the registry database;
``create_transform_job`` runs the local Batch Transform (``informer-transform``, the same
inference handlers as the serving container) synchronously on the object-store copy of the
input prefix, with the job's ``Environment`` set as a container's, and copies the output
files (the serving handlers' report: ``date``, ``model_version``, ``segment``, actual and
predicted values) unchanged to ``forecasts/<group>/v<version>/`` for the dashboard.

A job's record names the process running it (pid, host, start time). ``describe_transform_job``
marks an ``InProgress`` job whose process has died ``Failed`` with the reason, as SageMaker does
when a job's instance dies; the approval Lambda then retries it under a new name.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from informer.files import atomic_write_text
from mlops.config import environment
from mlops.local.process import Owner
from mlops.local.registry import Registry, RegistryError, now
from mlops.local.state import StateDir


class LocalClientError(Exception):
    """Shaped like botocore's ClientError: ``response["Error"]["Code"]`` and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"An error occurred ({code}): {message}")
        self.response = {"Error": {"Code": code, "Message": message}}


def safe_extract(archive: Path, target: Path) -> None:
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.name.startswith("/") or ".." in Path(member.name).parts or \
                    member.issym() or member.islnk():
                raise LocalClientError("ValidationException",
                                       f"{archive}: unsafe member {member.name!r}")
        tar.extractall(target, filter="data")  # members also checked above


class LocalSageMaker:
    """The calls the approval Lambda makes: create/describe model and transform job."""

    def __init__(self, state: StateDir, registry: Registry | None = None) -> None:
        self.state = state
        self.registry = registry or Registry(state.registry)

    # models --------------------------------------------------------------------------------
    def create_model(self, ModelName: str, Containers: list[dict[str, Any]],  # noqa: N803
                     **_: Any) -> dict[str, Any]:
        arn = Containers[0].get("ModelPackageName") if Containers else None
        if not arn:
            raise LocalClientError("ValidationException", "Containers[0].ModelPackageName: "
                                   "expected the model package ARN")
        self._package(arn)
        rows = self.registry.execute("INSERT OR IGNORE INTO models VALUES (?, ?, ?) RETURNING name",
                                     (ModelName, arn, now()))
        if not rows:
            raise LocalClientError("ValidationException",
                                   f"Cannot create already existing model {ModelName!r}")
        return {"ModelArn": f"arn:aws:sagemaker:local:000000000000:model/{ModelName}"}

    def describe_model(self, ModelName: str) -> dict[str, Any]:  # noqa: N803
        rows = self.registry.query("SELECT * FROM models WHERE name = ?", (ModelName,))
        if not rows:
            raise LocalClientError("ValidationException", f"Could not find model {ModelName!r}")
        return {"ModelName": ModelName, "CreationTime": rows[0]["created"],
                "Containers": [{"ModelPackageName": rows[0]["package_arn"]}]}

    def _package(self, arn: str) -> dict[str, Any]:
        group, version = arn.rsplit("/", 2)[-2:]
        return self.registry.package(group, int(version))

    def describe_model_package(self, ModelPackageName: str) -> dict[str, Any]:  # noqa: N803
        try:
            return self._package(ModelPackageName)
        except (RegistryError, ValueError) as err:
            raise LocalClientError("ValidationException", f"Could not find model package "
                                   f"{ModelPackageName!r} ({err})") from err

    # transform jobs ------------------------------------------------------------------------
    def create_transform_job(self, **request: Any) -> dict[str, Any]:
        name = request["TransformJobName"]
        owner = Owner.current()
        rows = self.registry.execute(
            "INSERT OR IGNORE INTO transform_jobs (name, model_name, status, request, created, "
            "pid, host, started) VALUES (?, ?, 'InProgress', ?, ?, ?, ?, ?) RETURNING name",
            (name, request["ModelName"], json.dumps(request), now(), owner.pid, owner.host,
             owner.started))
        if not rows:
            raise LocalClientError("ValidationException",
                                   f"Cannot create already existing transform job {name!r}")
        try:
            self._run(request)
        except Exception as err:  # the job fails like a SageMaker job: status + reason
            self._finish(name, "Failed", str(err).splitlines()[0] if str(err) else repr(err))
        else:
            self._finish(name, "Completed", None)
        return {"TransformJobArn": f"arn:aws:sagemaker:local:000000000000:transform-job/{name}"}

    def _finish(self, name: str, status: str, failure: str | None) -> None:
        self.registry.execute("UPDATE transform_jobs SET status = ?, finished = ?, failure = ? "
                              "WHERE name = ?", (status, now(), failure, name))

    def _reap(self, row: Any) -> None:
        """Mark an ``InProgress`` job whose process died ``Failed`` (once, atomically)."""
        if row["status"] != "InProgress" or row["pid"] is None:
            return
        owner = Owner(row["pid"], row["host"], row["started"])
        if not owner.is_dead():
            return
        reason = (f"the process running the job ({owner.describe()}) ended before it "
                  f"finished; approve the version again or run informer-mlops local status "
                  f"to retry it")
        self.registry.execute("UPDATE transform_jobs SET status = 'Failed', finished = ?, "
                              "failure = ? WHERE name = ? AND status = 'InProgress'",
                              (now(), reason, row["name"]))

    def describe_transform_job(self, TransformJobName: str) -> dict[str, Any]:  # noqa: N803
        query = ("SELECT * FROM transform_jobs WHERE name = ?", (TransformJobName,))
        rows = self.registry.query(*query)
        if not rows:
            raise LocalClientError("ValidationException",
                                   f"Could not find transform job {TransformJobName!r}")
        self._reap(rows[0])
        row = self.registry.query(*query)[0]
        out = {**json.loads(row["request"]), "TransformJobStatus": row["status"],
               "CreationTime": row["created"], "TransformEndTime": row["finished"]}
        if row["pid"] is not None:
            out["LocalProcess"] = {"Pid": row["pid"], "Host": row["host"]}
        if row["failure"]:
            out["FailureReason"] = row["failure"]
        return out

    def transform_jobs(self) -> list[dict[str, Any]]:
        return [self.describe_transform_job(r["name"]) for r in
                self.registry.query("SELECT name FROM transform_jobs ORDER BY created")]

    def _run(self, request: dict[str, Any]) -> None:
        from sagemaker_jobs import transform

        model = self.describe_model(request["ModelName"])
        package = self._package(model["Containers"][0]["ModelPackageName"])
        model_data = self.state.s3_path(
            package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"])
        source = self.state.s3_path(request["TransformInput"]["DataSource"]["S3DataSource"]
                                    ["S3Uri"])
        output = self.state.s3_path(request["TransformOutput"]["S3OutputPath"])
        # the job's Environment reaches the handlers as the container's environment does
        with tempfile.TemporaryDirectory(prefix="informer-local-model-") as tmp, \
                environment(dict(request.get("Environment") or {})):
            safe_extract(model_data, Path(tmp))
            written = transform.run(
                tmp, source, output, request["TransformInput"].get("ContentType"),
                request["TransformOutput"].get("Accept"),
                request["TransformInput"].get("SplitType", "None"),
                request.get("BatchStrategy", "MultiRecord"), request.get("MaxPayloadInMB", 6),
                request["TransformOutput"].get("AssembleWith", "None"))
        target = self.state.forecasts(package["ModelPackageGroupName"],
                                      package["ModelPackageVersion"])
        for out_file in written:  # the job's output files as they are, where the dashboard reads
            mirror = target / out_file.relative_to(output)
            mirror.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(mirror, out_file.read_text())
