"""``informer-serve``: the SageMaker inference HTTP contract over :mod:`sagemaker_jobs.inference`.

For bring-your-own-container images (started as ``serve``) and local use:
``GET /ping`` (200 once the model is loaded), ``POST /invocations`` (the handlers; bodies over
``SAGEMAKER_MAX_PAYLOAD_IN_MB``, default 6, get 413) and ``GET /execution-parameters`` (Batch
Transform's settings). Port ``SAGEMAKER_BIND_TO_PORT`` (default 8080), model from
``SM_MODEL_DIR`` (default ``/opt/ml/model``) or ``--model-dir``. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from informer.errors import InformerError
from sagemaker_jobs import inference

DEFAULT_PORT, DEFAULT_MAX_MB = 8080, 6


def max_payload_bytes(env: dict[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    value = env.get("SAGEMAKER_MAX_PAYLOAD_IN_MB") or DEFAULT_MAX_MB
    try:
        megabytes = float(value)
    except ValueError as err:
        raise SystemExit(f"error: SAGEMAKER_MAX_PAYLOAD_IN_MB: expected a number, got "
                         f"{value!r}") from err
    return int(megabytes * 1024 * 1024)


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

    def _send(self, status: int, body: bytes = b"", kind: str = "text/plain",
              close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _drain(self, length: int, bound: int = 64 << 20) -> None:
        """Read a refused body (up to ``bound``) so the client gets the answer, not a reset."""
        left = min(length, bound)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)

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
            self._send(411, b"error: Content-Length: required", close=True)
            return
        if int(length) > self.server.max_bytes:
            self._drain(int(length))
            limit = self.server.max_bytes / (1024 * 1024)
            self._send(413, f"error: payload of {int(length)} bytes exceeds "
                            f"SAGEMAKER_MAX_PAYLOAD_IN_MB ({limit:g} MB)".encode(), close=True)
            return
        body = self.rfile.read(int(length))
        try:
            status, payload, kind = invoke(self.server.model, body,
                                           self.headers.get("Content-Type"),
                                           self.headers.get("Accept"))
        except Exception as err:  # noqa: BLE001 - a failed request must not stop the server
            traceback.print_exc(file=sys.stderr)
            status, payload, kind = 500, f"error: {type(err).__name__}: {err}".encode(), \
                "text/plain"
        self._send(status, payload, kind)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: Any, max_bytes: int,
                 verbose: bool = True) -> None:
        super().__init__(address, Handler)
        self.model, self.max_bytes, self.verbose = model, max_bytes, verbose


def make_server(model_dir: str, host: str = "0.0.0.0", port: int | None = None,
                verbose: bool = True) -> Server:
    """Load the model, then bind (``port=0`` picks a free one)."""
    model = inference.model_fn(model_dir)
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", DEFAULT_PORT)) if port is None else port
    return Server((host, port), model, max_payload_bytes(), verbose)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="informer-serve", description=__doc__.split("\n\n")[1])
    parser.add_argument("command", nargs="?", choices=["serve"], help="accepted, as SageMaker "
                        "starts containers with 'serve'")
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, help="default: SAGEMAKER_BIND_TO_PORT or 8080")
    args = parser.parse_args(argv)
    try:
        server = make_server(args.model_dir, args.host, args.port)
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
