"""``informer-mlops local run|approve|reject|status`` and ``informer-mlops dashboard``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from informer.errors import InformerError
from informer.files import check_writable
from mlops.local.registry import RegistryError
from mlops.local.runner import RUN_KEYS, settings_from
from mlops.local.state import ENV_STATE_DIR, StateDir


def _state(args: argparse.Namespace) -> StateDir:
    return StateDir.resolve(args.state_dir)


def _recover(state: StateDir, quiet: bool = False) -> list[dict[str, Any]]:
    """Deliver the events an interrupted command left behind (every local command does); a
    note per event on stderr unless ``quiet``."""
    from mlops.local.approval import deliver_pending
    from mlops.local.registry import Registry

    results = deliver_pending(state, Registry(state.registry))
    for result in results if not quiet else ():
        print(f"re-delivered a pending event: {_outcome(result)}", file=sys.stderr)
    return results


def _outcome(result: dict[str, Any]) -> str:
    """One line for a Lambda result: the version, what it did and the transform job."""
    what = f"{result.get('group')} v{result.get('version')}: {result['status']}"
    if result.get("transform_job_name"):
        what += f" (transform job {result['transform_job_name']})"
    return what + (f" ({result['reason']})" if result.get("reason") else "")


def cmd_run(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from mlops.local.runner import run_pipeline

    state = _state(args)
    _recover(state)
    summary = run_pipeline(state, settings_from(args.tokens))
    package = summary["package"]
    group, version = package["ModelPackageGroupName"], package["ModelPackageVersion"]
    print(f"registered {group} v{version} as {package['ModelApprovalStatus']}")
    print(f"model: {_shown(state.model(group, version))}")
    print(f"metrics: {_shown(state.logs / summary['execution'] / 'summary.json')}")
    if package["ModelApprovalStatus"] != "Approved":
        print(f"next: informer-mlops local approve {group} --version {version}")


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _status_change(args: argparse.Namespace, status: str) -> None:
    from mlops.local.approval import change_status
    from mlops.local.client import LocalSageMaker

    state = _state(args)
    package, results = change_status(state, args.group, args.version, status)
    version = package["ModelPackageVersion"]
    print(f"{args.group} v{version}: {package['ModelApprovalStatus']}")
    client = LocalSageMaker(state)
    failed = []
    for result in results:
        name = result.get("transform_job_name")
        if not name:
            continue
        job = client.describe_transform_job(name)
        line = f"transform job {name}: {job['TransformJobStatus']}"
        if job.get("FailureReason"):
            line += f" ({job['FailureReason']})"
            failed.append(line)
        print(line)
    if status == "Approved":
        if state.model(args.group, version).is_dir():
            print(f"model: {_shown(state.model(args.group, version))}")
        folder = state.forecasts(args.group, version)
        if folder.is_dir():
            print(f"forecasts: {_shown(folder)}")
    if failed:
        print(f"error: {failed[-1]} (log: {_shown(state.lambda_log)})", file=sys.stderr)
        sys.exit(1)


def cmd_approve(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    _status_change(args, "Approved")


def cmd_reject(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    _status_change(args, "Rejected")


def status_report(state: StateDir) -> dict[str, Any]:
    from mlops.local.client import LocalSageMaker
    from mlops.local.registry import Registry

    registry = Registry(state.registry)
    return {"state_dir": str(state.root), "packages": registry.packages(),
            "transform_jobs": LocalSageMaker(state, registry).transform_jobs(),
            "undelivered_events": len(registry.pending_events())}


def cmd_status(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    state = _state(args)
    redelivered = _recover(state, quiet=args.json)  # --json: stdout holds the JSON only
    report = status_report(state)
    if args.json:
        print(json.dumps({**report, "redelivered": redelivered}, indent=2, default=str))
        return
    print(f"state directory: {report['state_dir']}")
    print(f"{'group':24s} {'version':>7s}  {'status':22s} {'test mse':>9s}  created")
    for p in report["packages"]:
        mse = ((p["ModelMetrics"].get("regression_metrics") or {}).get("mse") or {}).get("value")
        print(f"{p['ModelPackageGroupName']:24s} {p['ModelPackageVersion']:>7d}  "
              f"{p['ModelApprovalStatus']:22s} {mse if mse is None else f'{mse:9.4f}':>9}  "
              f"{p['CreationTime']}")
    for job in report["transform_jobs"]:
        print(f"transform job {job['TransformJobName']}: {job['TransformJobStatus']} -> "
              f"{job['TransformOutput']['S3OutputPath']}")


def cmd_dashboard(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from mlops.dashboard import build

    values = {}
    for token in args.tokens:
        key, sep, value = token.partition("=")
        if not sep or key not in ("source", "output"):
            raise InformerError(f"{token!r}: expected source=<dir or s3://...> or output=<html>")
        values[key] = value
    source = values.get("source") or str(_state(args).root)
    output = Path(values.get("output", "dashboard.html"))
    check_source(source)
    check_writable(output, "output")
    print(f"wrote {build(source, output)}")


def check_source(source: str) -> None:
    """A local source must be a state directory (``registry.db`` or ``forecasts/``)."""

    if source.startswith("s3://"):
        return
    root = Path(source).expanduser()
    if not root.is_dir():
        raise InformerError(f"source: {source} is not a directory; expected a state directory "
                        f"(informer-mlops local run makes one) or s3://bucket/prefix")
    if not (root / "registry.db").is_file() and not (root / "forecasts").is_dir():
        raise InformerError(f"source: {source} has no registry.db or forecasts/; expected a state "
                        f"directory (informer-mlops local run makes one) or s3://bucket/prefix")


def cmd_manifest(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from informer.files import atomic_write_json
    from mlops.dashboard import quicksight_manifest

    values = dict(token.partition("=")[::2] for token in args.tokens)
    unknown = sorted(set(values) - {"prefix", "output"})
    if unknown or "prefix" not in values:
        raise InformerError("expected prefix=s3://<bucket>/forecasts/<group>/ [output=<json>]")
    manifest = quicksight_manifest(values["prefix"])
    if "output" in values:
        print(f"wrote {atomic_write_json(values['output'], manifest)}")
    else:
        print(json.dumps(manifest, indent=2))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", help=f"state directory (default: ${ENV_STATE_DIR} or "
                                       "./.informer-mlops)")


def add_local(sub: Any) -> None:
    from mlops.config import command

    p = command(sub, "run", "run preprocess -> train -> evaluate -> check -> register locally",
                cmd_run, config=False)
    p.add_argument("tokens", nargs="*", metavar="key=value",
                   help=f"{', '.join(RUN_KEYS)}; anything else is a training override")
    _common(p)
    for name, handler in (("approve", cmd_approve), ("reject", cmd_reject)):
        p = command(sub, name, f"{name} a registered version and deliver the event", handler,
                    config=False)
        p.add_argument("group")
        p.add_argument("--version", type=int, help="default: the latest version")
        _common(p)
    p = command(sub, "status", "groups, versions, statuses, metrics, transform jobs",
                cmd_status, config=False)
    p.add_argument("--json", action="store_true")
    _common(p)
    from mlops.local.ingest import add_ingest

    add_ingest(sub)


def add_dashboard(sub: Any) -> None:
    from mlops.config import command

    p = command(sub, "build", "write the HTML dashboard", cmd_dashboard, config=False)
    p.add_argument("tokens", nargs="*", metavar="key=value", help="source=..., output=...")
    _common(p)
    p = command(sub, "manifest", "write the QuickSight S3 manifest for a forecast prefix",
                cmd_manifest, config=False)
    p.add_argument("tokens", nargs="*", metavar="key=value", help="prefix=s3://..., output=...")


USER_ERRORS = (InformerError, RegistryError)
__all__ = ["add_dashboard", "add_local", "USER_ERRORS", "sys"]
