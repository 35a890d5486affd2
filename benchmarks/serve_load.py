"""Load on ``informer-serve``: N concurrent clients (default 200) of real ``POST /invocations``
requests; p50/p99 latency, throughput and the count of each outcome (200, 503, resets, ...).

    python benchmarks/serve_load.py [--clients 200] [--requests 5] [--model <dir>]
        [--workers N] [--max-queue default,16] [--record]

The server runs as its own process (``python -m sagemaker_jobs.serve``, what ``informer-serve``
runs) on a free loopback port. Without ``--model`` it serves a seeded, untrained network of the
quickstart's size (d_model 64, ETTh1 48/48/24, 7 variables): the timings do not depend on the
weights. Every client opens a new connection per request and sends one ETTh1 history as CSV;
all clients start together. ``--workers``/``--max-queue`` set ``INFORMER_SERVE_WORKERS`` and
``INFORMER_SERVE_MAX_QUEUE`` for the server (a list of queue sizes runs once per size, a fresh
server each). Exit status 1 when any request ended without an HTTP answer (reset, refused,
timed out).
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, machine, record_section  # noqa: E402

from informer.artifact import save_artifact  # noqa: E402
from informer.config import InformerConfig  # noqa: E402
from informer.data.series import SeriesData  # noqa: E402
from informer.data.sources import ENV_DATA_DIR, resolve_data_file  # noqa: E402
from informer.nn import Informer  # noqa: E402
from sagemaker_jobs.serve import DEFAULT_MAX_QUEUE, DEFAULT_WORKERS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WINDOWS = {"seq_len": 48, "label_len": 48, "pred_len": 24}


def small_artifact(csv: Path, directory: Path) -> Path:
    """A seeded quickstart-sized network on ETTh1's schema."""
    torch.manual_seed(0)
    schema = SeriesData.fit(csv, split="ett_hour", **WINDOWS).schema
    config = InformerConfig(enc_in=7, dec_in=7, c_out=7, d_model=64, n_heads=4, d_ff=256,
                            factor=3, **WINDOWS)
    return save_artifact(directory, Informer(config).eval(), schema,
                         run_config={"data": {"split": "ett_hour"}})


def matrix_units() -> str:
    """``", Intel AMX"`` or ``", AVX512-BF16"`` when /proc/cpuinfo lists them, else ``""``."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return ""
    return ", Intel AMX" if "amx_tile" in flags else \
        ", AVX512-BF16" if "avx512_bf16" in flags else ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model: Path, port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``informer-serve`` in its own process (its access log to ``log``, a file: a pipe
    nobody reads would block the server once full), returned once ``/ping`` answers 200."""
    cmd = [sys.executable, "-m", "sagemaker_jobs.serve", "--model-dir", str(model),
           "--port", str(port)]
    with log.open("w") as stderr:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=stderr)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            last = log.read_text().strip().splitlines()[-1:] or ["no output"]
            sys.exit(f"error: informer-serve exited with {proc.returncode}: {last[0]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("error: informer-serve did not answer /ping within 120 s")


def outcome(err: BaseException) -> str:
    """A name for a request that got no HTTP answer."""
    if isinstance(err, ConnectionResetError | BrokenPipeError | http.client.RemoteDisconnected):
        return "reset"
    if isinstance(err, ConnectionRefusedError):
        return "refused"
    if isinstance(err, TimeoutError | socket.timeout):
        return "timeout"
    return type(err).__name__


def client(port: int, body: bytes, requests: int, timeout: float, start: threading.Barrier,
           results: list[tuple[str, float]]) -> None:
    """``requests`` POSTs, each on a new connection; ``(outcome, seconds)`` appended."""
    start.wait()
    for _ in range(requests):
        began = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("POST", "/invocations", body=body,
                         headers={"Content-Type": "text/csv", "Accept": "text/csv"})
            response = conn.getresponse()
            response.read()
            status = str(response.status)
        except Exception as err:  # noqa: BLE001 - every failure is counted, none stops the run
            status = outcome(err)
        finally:
            conn.close()
        results.append((status, time.perf_counter() - began))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def run_load(port: int, body: bytes, clients: int, requests: int, timeout: float
             ) -> tuple[Counter, list[float], float]:
    """``(outcome counts, latencies of the requests answered 200, wall seconds)``."""
    results: list[tuple[str, float]] = []
    barrier = threading.Barrier(clients + 1)
    threads = [threading.Thread(target=client, daemon=True,
                                args=(port, body, requests, timeout, barrier, results))
               for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    counts = Counter(status for status, _ in results)
    latencies = [seconds for status, seconds in results if status == "200"]
    return counts, latencies, wall


def report(counts: Counter, latencies: list[float], wall: float) -> dict[str, float]:
    answered = sum(n for status, n in counts.items() if status.isdigit())
    figures = {"p50_ms": 1e3 * percentile(latencies, 0.5),
               "p99_ms": 1e3 * percentile(latencies, 0.99),
               "answered_per_s": answered / wall if wall else 0.0,
               "ok_per_s": len(latencies) / wall if wall else 0.0, "wall_s": wall}
    print(f"outcomes: {dict(sorted(counts.items()))}")
    print(f"answers 200: latency p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} "
          f"ms, {figures['ok_per_s']:.1f}/s; all HTTP answers {figures['answered_per_s']:.1f}/s; "
          f"{wall:.1f} s", flush=True)
    return figures


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=5, help="per client, default 5")
    parser.add_argument("--model", help="model directory (default: untrained, quickstart-sized)")
    parser.add_argument("--workers", help="INFORMER_SERVE_WORKERS for the server")
    parser.add_argument("--max-queue", default="default",
                        help="INFORMER_SERVE_MAX_QUEUE for the server; a comma-separated list "
                        "runs once per value ('default': the server's own)")
    parser.add_argument("--timeout", type=float, default=120.0, help="client socket timeout, s")
    parser.add_argument("--record", action="store_true", help="write docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.requests < 1:
        sys.exit("error: --clients and --requests: expected integers >= 1")
    if args.model and not Path(args.model).is_dir():
        sys.exit(f"error: --model: {args.model}: not a directory")
    args.queues = args.max_queue.split(",")
    if not all(q == "default" or q.isdigit() for q in args.queues):
        sys.exit(f"error: --max-queue: expected integers >= 0 or 'default', got "
                 f"{args.max_queue!r}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    csv = resolve_data_file(os.environ.get(ENV_DATA_DIR, "data"), "ETTh1.csv")
    body = pd.read_csv(csv, nrows=500).tail(WINDOWS["seq_len"] + 12).to_csv(index=False).encode()
    load, rows = load_average(), []
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else small_artifact(csv, Path(tmp) / "model")
        for queue in args.queues:
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            for name, value in (("INFORMER_SERVE_WORKERS", args.workers),
                                ("INFORMER_SERVE_MAX_QUEUE", queue)):
                if value not in (None, "default"):
                    env[name] = value
            port = free_port()
            print(f"INFORMER_SERVE_MAX_QUEUE={queue}:", flush=True)
            server = start_server(model, port, env, Path(tmp) / "serve.log")
            try:
                run_load(port, body, min(args.clients, 8), 1, args.timeout)  # warm-up
                counts, latencies, wall = run_load(port, body, args.clients, args.requests,
                                                   args.timeout)
            finally:
                server.terminate()
                server.wait(30)
            rows.append((queue, counts, report(counts, latencies, wall)))
    if args.record:
        record(args, rows, load)
    failed = any(not status.isdigit() for _, counts, _ in rows for status in counts)
    sys.exit(1 if failed else 0)


def record(args: argparse.Namespace, rows: list[tuple[str, Counter, dict[str, float]]],
           load: float) -> None:
    command = "python benchmarks/serve_load.py " + " ".join(sys.argv[1:])
    workers = f"`INFORMER_SERVE_WORKERS={args.workers}`" if args.workers else \
        f"its default {DEFAULT_WORKERS} workers"
    lines = [
        "## Serving under load (`benchmarks/serve_load.py`)", "",
        f"{args.clients} concurrent clients, {args.requests} `POST /invocations` each (a new "
        f"connection per request, one ETTh1 history of {WINDOWS['seq_len'] + 12} rows as CSV, "
        f"answer as CSV), against `informer-serve` in its own process with {workers}; model: "
        f"{'`' + args.model + '`' if args.model else 'untrained, seeded, quickstart-sized'}, "
        "precision `32-true` (the serving default). Latency (of the answers 200) is from "
        "connect to the last byte of the answer; throughput is answers 200 per second of the "
        "whole run.", "",
        f"Machine: {machine(threads=False)}{matrix_units()}. Measured "
        f"{time.strftime('%Y-%m-%d')} (1-minute load average {load:.2f} at the start), command "
        f"`{command.strip()}`.", "",
        "| `INFORMER_SERVE_MAX_QUEUE` | requests | 200 | 503 | resets, refused, timeouts | "
        "p50 (ms) | p99 (ms) | answers 200/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for queue, counts, figures in rows:
        no_answer = sum(n for status, n in counts.items() if not status.isdigit())
        label = f"default ({DEFAULT_MAX_QUEUE})" if queue == "default" else queue
        lines.append(f"| {label} | {sum(counts.values())} | {counts.get('200', 0)} | "
                     f"{counts.get('503', 0)} | {no_answer} | {figures['p50_ms']:.0f} | "
                     f"{figures['p99_ms']:.0f} | {figures['ok_per_s']:.1f} |")
    record_section("serve_load", "\n".join(lines))


if __name__ == "__main__":
    main()
