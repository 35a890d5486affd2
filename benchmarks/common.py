"""Helpers shared by the benchmark scripts: machine description and docs/benchmarks.md sections."""

from __future__ import annotations

import os
import platform
import re
import resource
import sys
import time
from pathlib import Path

import torch

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = ("# Benchmarks\n\nFigures recorded by the scripts in `benchmarks/` "
          "(never asserted in tests).\n")


def peak_rss_gib() -> float:
    """Peak resident set size of this process, GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def load_average() -> float:
    """1-minute load average (0.0 where unavailable)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def _cpu_times() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]  # total, idle + iowait


def wait_quiet(max_s: float, idle: float = 0.9, window_s: float = 3.0, windows: int = 2) -> bool:
    """Wait (up to ``max_s`` seconds) until the CPUs have been at least ``idle`` idle for
    ``windows`` consecutive ``window_s`` windows; False if they never were (or no /proc)."""
    deadline, quiet = time.monotonic() + max_s, 0
    try:
        while time.monotonic() < deadline:
            total0, idle0 = _cpu_times()
            time.sleep(window_s)
            total1, idle1 = _cpu_times()
            quiet = quiet + 1 if (idle1 - idle0) >= idle * max(1, total1 - total0) else 0
            if quiet >= windows:
                return True
    except (OSError, ValueError, IndexError):
        pass
    return False


def machine(threads: bool = True) -> str:
    """CPU model, cores, torch and Python versions (and this process's torch threads)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    used = f"{torch.get_num_threads()} threads, " if threads else ""
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {used}"
            f"Python {platform.python_version()}")


def record_section(name: str, body: str, path: Path = DOCS, header: str = HEADER) -> None:
    """Replace (or append) the ``name`` section of ``path`` (docs/benchmarks.md), keeping the
    hand-written text around it; written to a temporary file, then renamed."""
    text = path.read_text() if path.exists() else header
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else \
        text.rstrip() + "\n\n" + block + "\n"
    write_atomic(path, text)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def parse_options(argv: list[str], defaults: dict[str, str]) -> dict[str, str]:
    """``key=value`` arguments over ``defaults``; anything else exits with one error line."""
    options = dict(defaults)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in defaults:
            sys.exit(f"error: expected one of {sorted(defaults)} as key=value, got {arg!r}")
        options[key] = value
    return options
