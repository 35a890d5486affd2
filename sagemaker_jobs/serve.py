"""``informer-serve``: the SageMaker inference HTTP contract over :mod:`sagemaker_jobs.inference`.

For bring-your-own-container images (started as ``serve``) and local use:
``GET /ping`` (200 once the model is loaded), ``POST /invocations`` (the handlers; bodies over
``SAGEMAKER_MAX_PAYLOAD_IN_MB``, default 6, get 413) and ``GET /execution-parameters`` (Batch
Transform's settings). Port ``SAGEMAKER_BIND_TO_PORT`` (default 8080), model from
``SM_MODEL_DIR`` (default ``/opt/ml/model``) or ``--model-dir``. Standard library only.

Binds ``127.0.0.1`` unless started as ``serve`` (what SageMaker runs in a container), which
binds ``0.0.0.0``; ``--host`` overrides both. Every socket operation and the reading of a
request's body are bounded by ``SAGEMAKER_MODEL_SERVER_TIMEOUT`` seconds (default 60; a slow
body gets 408), and a connection that has not delivered a whole request within twice that is
closed. The model directory is fixed at start-up; requests carry data only, never paths.

Under load: the listen backlog is 1024 connections (the kernel caps it at
``net.core.somaxconn``), so a burst of clients waits to be accepted instead of being reset.
Every connection gets its own thread, which reads the request and answers ``/ping`` at once;
forecasts run on ``INFORMER_SERVE_WORKERS`` worker threads (default 2: torch spreads one
forecast over every core while a second worker parses and writes payloads), with at most
``INFORMER_SERVE_MAX_QUEUE`` forecasts waiting (default 256). A request that finds the queue
full is read to its end and answered ``503`` with ``Retry-After: 1``; no socket is dropped
unanswered. Waiting requests hold at most the queue size times the payload limit in memory.

Why the standard library and not a server package: a request's CPU time goes to the handlers
(CSV or JSON parsing, validation, the forecast: ~9 ms for a quickstart-sized model on one
core), which any server would run the same, not to the HTTP layer; what load needs is a deep
backlog and bounded, queued model work, which a few lines give here. The serving container
then needs nothing beyond torch, numpy and pandas, and the limits above (413, 411, 408, the
slow-client cut-off) stay as tested. ``benchmarks/serve_load.py`` measures it
(docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from informer.errors import InformerError
from sagemaker_jobs import inference

DEFAULT_PORT, DEFAULT_MAX_MB, DEFAULT_TIMEOUT_S = 8080, 6, 60.0
DEFAULT_WORKERS, DEFAULT_MAX_QUEUE, BACKLOG = 2, 256, 1024
LOCAL_HOST, CONTAINER_HOST = "127.0.0.1", "0.0.0.0"
WORKERS_ENV, MAX_QUEUE_ENV = "INFORMER_SERVE_WORKERS", "INFORMER_SERVE_MAX_QUEUE"


def max_payload_bytes(env: dict[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    value = env.get("SAGEMAKER_MAX_PAYLOAD_IN_MB") or DEFAULT_MAX_MB
    try:
        megabytes = float(value)
    except ValueError as err:
        raise SystemExit(f"error: SAGEMAKER_MAX_PAYLOAD_IN_MB: expected a number, got "
                         f"{value!r}") from err
    return int(megabytes * 1024 * 1024)


def request_timeout(env: dict[str, str] | None = None) -> float:
    """Seconds allowed per socket operation and per request body."""
    env = os.environ if env is None else env
    value = env.get("SAGEMAKER_MODEL_SERVER_TIMEOUT") or DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 86400:
        raise SystemExit(f"error: SAGEMAKER_MODEL_SERVER_TIMEOUT: expected seconds in "
                         f"(0, 86400), got {value!r}")
    return seconds


def env_count(name: str, default: int, minimum: int, env: dict[str, str] | None = None) -> int:
    """An integer setting from the environment, ``>= minimum``."""
    env = os.environ if env is None else env
    value = env.get(name) or str(default)
    try:
        count = int(value)
    except ValueError:
        count = minimum - 1
    if count < minimum:
        raise InformerError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return count


class Busy(Exception):  # noqa: N818 - a state, not a failure
    """Every worker is busy and the queue is full."""


class WorkPool:
    """``workers`` threads run forecasts; at most ``max_queue`` more wait for one."""

    def __init__(self, workers: int, max_queue: int) -> None:
        self.workers, self.max_queue = workers, max_queue
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="informer-serve")
        self._lock = threading.Lock()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Calls running or waiting."""
        return self._in_flight

    def submit(self, fn: Any, *args: Any) -> Future:
        """Queue ``fn(*args)``; :class:`Busy` when ``workers + max_queue`` calls are in."""
        with self._lock:
            if self._in_flight >= self.workers + self.max_queue:
                raise Busy
            self._in_flight += 1
        try:
            future = self._executor.submit(fn, *args)
        except BaseException:
            self._finished()
            raise
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _: Future | None = None) -> None:
        with self._lock:
            self._in_flight -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def invoke(model: Any, body: bytes, content_type: str | None, accept: str | None
           ) -> tuple[int, bytes, str]:
    """``(status, body, content type)`` for one request through the four handlers."""
    try:
        data = inference.input_fn(body, content_type)
        prediction = inference.predict_fn(data, model)
        text, kind = inference.output_fn(prediction, accept)
        return 200, text.encode(), kind
    except inference.PayloadError as err:
        return err.status_code, f"error: {err}".encode(), "text/plain"


class Handler(BaseHTTPRequestHandler):
    """One request; the model and the limit live on the server object."""

    server: Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.timeout = self.server.request_timeout  # every recv/send on the socket
        super().setup()

    def handle_one_request(self) -> None:
        """One request within ``2 x request_timeout``; after that the connection is shut down,
        so neither a slow-drip client nor an idle keep-alive connection holds a thread."""
        self._done, self._expired = threading.Event(), threading.Event()
        timer = threading.Timer(2 * self.server.request_timeout, self._expire)
        timer.daemon = True
        timer.start()
        try:
            super().handle_one_request()
        finally:
            timer.cancel()

    def _expire(self) -> None:
        if not self._done.is_set():
            self._expired.set()
            with contextlib.suppress(OSError):  # already closed
                self.connection.shutdown(socket.SHUT_RDWR)

    def parse_request(self) -> bool:
        """A request cut off by :meth:`_expire` is not answered (its headers end early)."""
        parsed = super().parse_request()
        if self._expired.is_set():
            self.close_connection = True
            return False
        return parsed

    def _read_body(self, length: int) -> bytes | None:
        """The body, or ``None`` when it does not arrive within ``request_timeout``."""
        deadline = time.monotonic() + self.server.request_timeout
        chunks, left = [], length
        try:
            while left > 0:
                if time.monotonic() > deadline:
                    return None
                chunk = self.rfile.read1(min(left, 1 << 16))
                if not chunk:
                    return None
                chunks.append(chunk)
                left -= len(chunk)
        except (TimeoutError, OSError):
            return None
        return b"".join(chunks)

    def _send(self, status: int, body: bytes = b"", kind: str = "text/plain",
              close: bool = False, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _drain(self, length: int) -> None:
        """Read a refused body so the client gets the answer, not a reset: only up to four
        times the limit (larger declared bodies are answered at once and the connection
        closed) and only within ``request_timeout``."""
        if length > 4 * self.server.max_bytes:
            return
        self._read_body(length)

    def _drain_chunked(self) -> None:
        """Read a refused chunked body to its last chunk (same bounds as :meth:`_drain`), so
        the client that sent it without Content-Length gets the 411, not a reset."""
        deadline = time.monotonic() + self.server.request_timeout
        left = 4 * self.server.max_bytes
        try:
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0], 16)  # ValueError: junk
                left -= size
                if size == 0:
                    break
                if left < 0 or size < 0 or time.monotonic() > deadline or \
                        self._read_body(size + 2) is None:  # chunk data and its CRLF
                    return
            for _ in range(64):  # trailer lines up to the blank line that ends the body
                if time.monotonic() > deadline or self.rfile.readline(1024).strip() == b"":
                    return
        except (ValueError, TimeoutError, OSError):
            return

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/ping":
            self._send(200, b"")
        elif self.path == "/execution-parameters":
            params = {"MaxConcurrentTransforms": 1, "BatchStrategy": "MultiRecord",
                      "MaxPayloadInMB": max(1, self.server.max_bytes // (1024 * 1024))}
            self._send(200, json.dumps(params).encode(), "application/json")
        else:
            self._send(404, b"error: not found; expected GET /ping or POST /invocations")

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/invocations":
            self._send(404, b"error: not found; expected POST /invocations", close=True)
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self._drain_chunked()
            self._send(411, b"error: Content-Length: required", close=True)
            return
        if int(length) > self.server.max_bytes:
            self._drain(int(length))
            limit = self.server.max_bytes / (1024 * 1024)
            self._send(413, f"error: payload of {int(length)} bytes exceeds "
                            f"SAGEMAKER_MAX_PAYLOAD_IN_MB ({limit:.4g} MB)".encode(), close=True)
            return
        body = self._read_body(int(length))
        if body is None:
            self._send(408, f"error: request body not received within "
                            f"SAGEMAKER_MODEL_SERVER_TIMEOUT ({self.server.request_timeout:g} s)"
                            .encode(), close=True)
            return
        self._done.set()  # the request is in: computing the answer is not cut short
        try:
            future = self.server.pool.submit(invoke, self.server.model, body,
                                             self.headers.get("Content-Type"),
                                             self.headers.get("Accept"))
        except Busy:
            pool = self.server.pool
            self._send(503, f"error: busy: {pool.workers} forecast(s) running and "
                            f"{pool.max_queue} waiting ({MAX_QUEUE_ENV}); retry later".encode(),
                       headers={"Retry-After": "1"})
            return
        try:
            status, payload, kind = future.result()
        except Exception as err:  # noqa: BLE001 - a failed request must not stop the server
            traceback.print_exc(file=sys.stderr)  # details stay in the server's log
            status, payload, kind = 500, f"error: internal error ({type(err).__name__}); see " \
                "the server log".encode(), "text/plain"
        self._send(status, payload, kind)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)


class Server(ThreadingHTTPServer):
    """One thread per connection, forecasts on :attr:`pool`, a listen backlog of 1024."""

    daemon_threads = True
    request_queue_size = BACKLOG  # listen(): socketserver's default of 5 resets bursts

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (reset, broken pipe, timeout) is not a server error."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def __init__(self, address: tuple[str, int], model: Any, max_bytes: int,
                 verbose: bool = True, request_timeout: float = DEFAULT_TIMEOUT_S,
                 workers: int = DEFAULT_WORKERS, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        super().__init__(address, Handler)
        self.model, self.max_bytes, self.verbose = model, max_bytes, verbose
        self.request_timeout = request_timeout
        self.pool = WorkPool(workers, max_queue)

    def server_close(self) -> None:
        super().server_close()
        self.pool.close()


def make_server(model_dir: str, host: str = LOCAL_HOST, port: int | None = None,
                verbose: bool = True) -> Server:
    """Load the model, then bind (``port=0`` picks a free one)."""
    workers = env_count(WORKERS_ENV, DEFAULT_WORKERS, 1)
    max_queue = env_count(MAX_QUEUE_ENV, DEFAULT_MAX_QUEUE, 0)
    model = inference.model_fn(model_dir)
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", DEFAULT_PORT)) if port is None else port
    return Server((host, port), model, max_payload_bytes(), verbose, request_timeout(),
                  workers, max_queue)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="informer-serve", description=__doc__.split("\n\n")[1],
        epilog="environment: SAGEMAKER_BIND_TO_PORT, SAGEMAKER_MAX_PAYLOAD_IN_MB, "
        f"SAGEMAKER_MODEL_SERVER_TIMEOUT, {WORKERS_ENV} (default {DEFAULT_WORKERS}), "
        f"{MAX_QUEUE_ENV} (default {DEFAULT_MAX_QUEUE}), INFORMER_PRECISION")
    parser.add_argument("command", nargs="?", choices=["serve"], help="accepted, as SageMaker "
                        "starts containers with 'serve'")
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument("--host", help=f"default: {LOCAL_HOST}, or {CONTAINER_HOST} when "
                        "started as 'serve' inside the container")
    parser.add_argument("--port", type=int, help="default: SAGEMAKER_BIND_TO_PORT or 8080")
    args = parser.parse_args(argv)
    host = args.host or (CONTAINER_HOST if args.command == "serve" else LOCAL_HOST)
    try:
        server = make_server(args.model_dir, host, args.port)
    except InformerError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    host, port = server.server_address[:2]
    print(f"informer-serve: model {args.model_dir} on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
