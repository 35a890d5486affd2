"""Embedded model registry (SQLite, WAL): SageMaker's model package groups and versions, their
approval states, and an outbox of state-change events.

Every change runs in one ``BEGIN IMMEDIATE`` transaction, so concurrent CLI processes serialise
instead of interleaving. A status change and its event are written together; the event is
marked delivered only after the handler ran, so a crash in between is repaired by
:meth:`Registry.pending_events` on the next command.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

STATUSES = ("PendingManualApproval", "Approved", "Rejected")
ACCOUNT, REGION = "000000000000", "local"

SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
    name TEXT PRIMARY KEY, description TEXT, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS packages (
    arn TEXT PRIMARY KEY, grp TEXT NOT NULL REFERENCES groups(name), version INTEGER NOT NULL,
    status TEXT NOT NULL, model_data_url TEXT NOT NULL, image TEXT, metrics TEXT NOT NULL,
    description TEXT, created TEXT NOT NULL, modified TEXT NOT NULL, UNIQUE (grp, version));
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, package_arn TEXT NOT NULL, body TEXT NOT NULL,
    created TEXT NOT NULL, delivered TEXT);
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY, package_arn TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transform_jobs (
    name TEXT PRIMARY KEY, model_name TEXT NOT NULL, status TEXT NOT NULL, request TEXT NOT NULL,
    created TEXT NOT NULL, finished TEXT, failure TEXT, pid INTEGER, host TEXT, started TEXT);
"""
# columns added after the first release: (table, column, type), added to older databases
ADDED_COLUMNS = (("transform_jobs", "pid", "INTEGER"), ("transform_jobs", "host", "TEXT"),
                 ("transform_jobs", "started", "TEXT"), ("packages", "customer_metadata", "TEXT"))


class RegistryError(ValueError):
    """A registry request names something that does not exist or is not allowed."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def package_arn(group: str, version: int) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/{version}"


class Registry:
    """Model package groups and versions in ``path`` (created on first use)."""

    def __init__(self, path: str | Path, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self._init_schema()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _init_schema(self) -> None:
        db = self._connect()
        try:
            db.executescript(SCHEMA)
            for table, column, kind in ADDED_COLUMNS:
                have = {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    try:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                    except sqlite3.OperationalError as err:  # another process added it first
                        if "duplicate column" not in str(err):
                            raise
        finally:
            db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One serialised write transaction (retries while another process holds the lock)."""
        db = self._connect()
        try:
            for attempt in range(200):
                try:
                    db.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as err:
                    if "locked" not in str(err) or attempt == 199:
                        raise
                    time.sleep(0.05)
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        finally:
            db.close()

    # packages ------------------------------------------------------------------------------
    def register(self, group: str, model_data_url: str, metrics: dict[str, Any],
                 status: str = "PendingManualApproval", image: str | None = None,
                 description: str | None = None,
                 customer_metadata: dict[str, str] | None = None) -> dict[str, Any]:
        """Add the next version of ``group`` (the group is created on first use);
        ``customer_metadata``: its ``CustomerMetadataProperties``."""
        check_status(status)
        stamp = now()
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO groups VALUES (?, ?, ?)", (group, None, stamp))
            version = db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM packages "
                                 "WHERE grp = ?", (group,)).fetchone()[0]
            arn = package_arn(group, version)
            db.execute("INSERT INTO packages (arn, grp, version, status, model_data_url, image, "
                       "metrics, description, created, modified, customer_metadata) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (arn, group, version, status, model_data_url, image,
                        json.dumps(metrics, sort_keys=True), description, stamp, stamp,
                        json.dumps(customer_metadata or {}, sort_keys=True)))
        return self.package(group, version)

    def package(self, group: str, version: int | None = None) -> dict[str, Any]:
        """One version (the latest when ``version`` is None) as SageMaker-like fields."""
        db = self._connect()
        try:
            if version is None:
                row = db.execute("SELECT * FROM packages WHERE grp = ? ORDER BY version DESC "
                                 "LIMIT 1", (group,)).fetchone()
            else:
                row = db.execute("SELECT * FROM packages WHERE grp = ? AND version = ?",
                                 (group, version)).fetchone()
        finally:
            db.close()
        if row is None:
            what = f"version {version} of " if version is not None else ""
            raise RegistryError(f"no model package {what}group {group!r}")
        return describe(row)

    def packages(self, group: str | None = None) -> list[dict[str, Any]]:
        db = self._connect()
        try:
            rows = db.execute("SELECT * FROM packages WHERE ? IS NULL OR grp = ? "
                              "ORDER BY grp, version", (group, group)).fetchall()
        finally:
            db.close()
        return [describe(r) for r in rows]

    def set_status(self, group: str, version: int | None, status: str,
                   make_event: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                   ) -> tuple[dict[str, Any], int | None]:
        """Change a version's approval status and queue ``make_event(package)`` in the same
        transaction. Returns the package and the event id (None when the status was already
        ``status``: nothing changes and no event is queued)."""
        check_status(status)
        current = self.package(group, version)
        arn = current["ModelPackageArn"]
        with self.transaction() as db:
            row = db.execute("SELECT status FROM packages WHERE arn = ?", (arn,)).fetchone()
            if row["status"] == status:
                return describe(db.execute("SELECT * FROM packages WHERE arn = ?",
                                           (arn,)).fetchone()), None
            stamp = now()
            db.execute("UPDATE packages SET status = ?, modified = ? WHERE arn = ?",
                       (status, stamp, arn))
            package = describe(db.execute("SELECT * FROM packages WHERE arn = ?",
                                          (arn,)).fetchone())
            event_id = None
            if make_event is not None:
                event_id = db.execute(
                    "INSERT INTO events (package_arn, body, created) VALUES (?, ?, ?)",
                    (arn, json.dumps(make_event(package)), stamp)).lastrowid
        return package, event_id

    # events --------------------------------------------------------------------------------
    def pending_events(self) -> list[tuple[int, dict[str, Any]]]:
        """Undelivered events as ``(id, event)``, oldest first."""
        return [(r["id"], json.loads(r["body"])) for r in
                self.query("SELECT id, body FROM events WHERE delivered IS NULL ORDER BY id")]

    def queue_event(self, arn: str, event: dict[str, Any]) -> int:
        """Queue ``event`` for the package ``arn`` again (a retry of its handler)."""
        with self.transaction() as db:
            return db.execute("INSERT INTO events (package_arn, body, created) VALUES (?, ?, ?)",
                              (arn, json.dumps(event), now())).lastrowid

    def mark_delivered(self, event_id: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE events SET delivered = ? WHERE id = ?", (now(), event_id))

    # models and transform jobs (the local SageMaker client's state) ------------------------
    def execute(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self.transaction() as db:
            return db.execute(sql, params).fetchall()

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        db = self._connect()
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()


def check_status(status: str) -> None:
    if status not in STATUSES:
        raise RegistryError(f"status: expected one of {list(STATUSES)}, got {status!r}")


def describe(row: sqlite3.Row) -> dict[str, Any]:
    """A registry row in DescribeModelPackage's field names."""
    return {
        "ModelPackageGroupName": row["grp"], "ModelPackageVersion": row["version"],
        "ModelPackageArn": row["arn"], "ModelApprovalStatus": row["status"],
        "ModelPackageStatus": "Completed", "ModelPackageDescription": row["description"],
        "InferenceSpecification": {
            "Containers": [{"Image": row["image"] or "local", "ModelDataUrl":
                            row["model_data_url"]}],
            "SupportedContentTypes": ["text/csv", "application/jsonlines"],
            "SupportedResponseMIMETypes": ["text/csv", "application/jsonlines"]},
        "ModelMetrics": json.loads(row["metrics"]),
        "CustomerMetadataProperties": json.loads(row["customer_metadata"] or "{}"),
        "CreationTime": row["created"], "LastModifiedTime": row["modified"],
    }
