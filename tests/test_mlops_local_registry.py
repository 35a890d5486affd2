"""The embedded model registry: versions, states, outbox events, concurrency, restarts."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys

import pytest

from mlops.local.registry import Registry, RegistryError


def test_register_versions_and_states(tmp_path):
    registry = Registry(tmp_path / "registry.db")
    first = registry.register("g", "s3://b/v1/model.tar.gz", {"mse": 0.5})
    second = registry.register("g", "s3://b/v2/model.tar.gz", {"mse": 0.4})
    assert (first["ModelPackageVersion"], second["ModelPackageVersion"]) == (1, 2)
    assert first["ModelApprovalStatus"] == "PendingManualApproval"
    assert first["ModelPackageArn"].endswith(":model-package/g/1")
    assert first["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == \
        "s3://b/v1/model.tar.gz"
    assert registry.package("g")["ModelPackageVersion"] == 2
    package, event_id = registry.set_status("g", 1, "Approved", lambda p: {"detail": p})
    assert package["ModelApprovalStatus"] == "Approved" and event_id == 1
    assert registry.pending_events()[0][1]["detail"]["ModelApprovalStatus"] == "Approved"
    # the same status again changes nothing and queues nothing
    assert registry.set_status("g", 1, "Approved", lambda p: {"detail": p})[1] is None
    registry.mark_delivered(event_id)
    assert registry.pending_events() == []
    with pytest.raises(RegistryError, match="no model package version 9 of group 'g'"):
        registry.set_status("g", 9, "Approved")
    with pytest.raises(RegistryError, match="status: expected one of"):
        registry.set_status("g", 1, "Maybe")


def test_state_survives_a_restart(tmp_path):
    Registry(tmp_path / "r.db").register("g", "s3://b/m.tar.gz", {"mse": 1.0})
    again = Registry(tmp_path / "r.db")
    assert [p["ModelPackageVersion"] for p in again.packages()] == [1]
    assert again.package("g")["ModelMetrics"] == {"mse": 1.0}


def _flip(path: str, status: str, rounds: int, queue) -> None:
    registry = Registry(path)
    changes = 0
    for _ in range(rounds):
        changes += registry.set_status("g", 1, status, lambda p: {"status":
                                                                  p["ModelApprovalStatus"]})[1] \
            is not None
        registry.register("g", "s3://b/x.tar.gz", {})
    queue.put(changes)


def test_concurrent_writers_leave_a_consistent_registry(tmp_path):
    path = str(tmp_path / "r.db")
    Registry(path).register("g", "s3://b/m.tar.gz", {})
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_flip, args=(path, s, 25, queue))
             for s in ("Approved", "Rejected")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    changes = queue.get(timeout=5) + queue.get(timeout=5)
    registry = Registry(path)
    versions = [p["ModelPackageVersion"] for p in registry.packages("g")]
    assert versions == list(range(1, 52))  # no duplicate or skipped version numbers
    events = registry.pending_events()
    assert len(events) == changes  # exactly one event per real status change
    statuses = [e["status"] for _, e in events]
    assert all(a != b for a, b in zip(statuses, statuses[1:]))  # changes alternate
    assert registry.package("g", 1)["ModelApprovalStatus"] == statuses[-1]


def _cli(state, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "INFORMER_MLOPS_HOME": str(state)}
    return subprocess.run([sys.executable, "-m", "mlops.cli", "local", *args], env=env,
                          cwd=state.parent, capture_output=True, text=True, timeout=120)


def test_status_json_is_json_only_and_logs_stay_off_stdout(tmp_path):
    """``local status --json`` re-delivers a pending event (one that the approval rule does not
    match, so no Lambda runs) and prints the report only; ``local reject`` prints its
    result."""
    from mlops.local.approval import state_change_event

    state = tmp_path / "state"
    registry = Registry(state / "registry.db")
    registry.register("g", "s3://informer-mlops/informer/models/x/model.tar.gz", {})
    registry.register("g", "s3://informer-mlops/informer/models/y/model.tar.gz", {})
    registry.set_status("g", 1, "Rejected", make_event=state_change_event)  # left pending
    status = _cli(state, "status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert [r["status"] for r in report["redelivered"]] == ["ignored"]
    # the template's approval rule matches Approved only: EventBridge invokes no Lambda
    assert report["redelivered"][0]["reason"] == (
        "the template's ApprovalRule does not match the event (ModelApprovalStatus Rejected)")
    assert report["undelivered_events"] == 0
    assert not (state / "logs" / "lambda.log").exists()
    reject = _cli(state, "reject", "g", "--version", "2")
    assert reject.returncode == 0, reject.stderr
    assert reject.stdout == "g v2: Rejected\n"
