"""Which process runs a local job, and whether it is still alive.

A local transform job runs inside the ``informer-mlops`` command that started it; its record
names that process (pid, host and the process's start time, so a recycled pid is not mistaken
for it). A job whose process is gone is found by the next command and marked Failed, as
SageMaker marks a job whose instance died.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after "pid (comm)" (state first), or [] off Linux."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return []
    return stat[stat.rfind(")") + 2:].split()


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), else None."""
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else None


@dataclass(frozen=True)
class Owner:
    """The process that runs a job."""

    pid: int
    host: str
    started: str | None = None

    @classmethod
    def current(cls) -> Owner:
        return cls(os.getpid(), socket.gethostname(), _start_time(os.getpid()))

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}"

    def is_local(self) -> bool:
        return self.host == socket.gethostname()

    def is_dead(self) -> bool:
        """True only when this host can tell the process has ended (another host's process,
        or one this user may not signal, counts as alive)."""
        if not self.is_local():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        fields = _stat(self.pid)
        if fields and fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent
            return True
        if self.started is None or len(fields) <= 19:
            return False
        return fields[19] != self.started  # the pid now names another process
