"""Security checks: weights-only loading and no pickle anywhere in the source tree, and the
HTTP server's limits (request size, time per request, no file paths from requests, loopback
unless inside the container). The template's IAM checks live in tests/test_mlops_template.py
(``test_no_policy_grants_wildcard_actions``, ``test_pass_role_is_scoped_to_the_sagemaker_role``).
"""

from __future__ import annotations

import ast
import http.client
import json
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from sagemaker_jobs import serve
from tests.conftest import REPO
from tests.test_forecast import constant_artifact, history

SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "outputs", "data", "build", "dist"}


def python_files() -> list[Path]:
    return sorted(p for p in REPO.rglob("*.py")
                  if not SKIP_DIRS & set(p.relative_to(REPO).parts[:-1])
                  and not any(part.startswith(".") for part in p.relative_to(REPO).parts))


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def keyword(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value
    return None


# the source tree ------------------------------------------------------------------------------
def test_the_scan_sees_the_code_base():
    names = {str(p.relative_to(REPO)) for p in python_files()}
    assert {"informer/artifact.py", "sagemaker_jobs/serve.py", "mlops/lambda_function.py",
            "informer/cli/evaluate.py", "tests/test_train.py"} <= names


def test_every_torch_load_is_weights_only():
    found, unsafe = [], []
    for path in python_files():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):  # ``from torch import load`` would hide a call from the scan
            if isinstance(node, ast.ImportFrom) and node.module in ("torch",
                                                                   "torch.serialization"):
                assert "load" not in {a.name for a in node.names}, f"{path}:{node.lineno}"
        for node, name in calls(tree):
            if name in ("torch.load", "torch.serialization.load"):
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                found.append(where)
                flag = keyword(node, "weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    unsafe.append(where)
    assert found, "no torch.load found: the scan is broken"
    assert unsafe == [], f"torch.load without weights_only=True: {unsafe}"


PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve",
                  "marshal", "pickletools"}


def test_nothing_unpickles_user_data():
    """No pickle module, no pickle-based readers (pandas/numpy), no unsafe YAML loader."""
    problems = []
    for path in python_files():
        tree = ast.parse(path.read_text(), str(path))
        where = str(path.relative_to(REPO))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                problems += [f"{where}:{node.lineno} import {a.name}" for a in node.names
                             if a.name.split(".")[0] in PICKLE_MODULES]
            elif isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.split(".")[0] in PICKLE_MODULES:
                problems.append(f"{where}:{node.lineno} from {node.module}")
        for node, name in calls(tree):
            last = name.rsplit(".", 1)[-1]
            if last in ("read_pickle", "to_pickle", "Unpickler"):
                problems.append(f"{where}:{node.lineno} {name}")
            allow = keyword(node, "allow_pickle")
            if allow is not None and not (isinstance(allow, ast.Constant) and not allow.value):
                problems.append(f"{where}:{node.lineno} {name}(allow_pickle=...)")
            if name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load"):
                loader = keyword(node, "Loader")
                if loader is None or "Safe" not in ast.unparse(loader):
                    problems.append(f"{where}:{node.lineno} {name} without SafeLoader")
    assert problems == []


def test_a_pickled_object_in_the_weights_never_runs(tmp_path):
    """Even with a rewritten manifest (the sha256 check passes), a weights file that would call
    a function when unpickled is refused by the weights-only loader, and the call never runs
    (the matrix row ``artifact_pickled_object`` checks the CLI message)."""
    from informer.artifact import load_model
    from informer.errors import InformerError
    from tests.test_reliability_matrix import _pickled_object

    model, _ = constant_artifact(tmp_path / "model")
    _pickled_object(model)
    with pytest.raises(InformerError, match="weights.pt: not a loadable tensor state dict"):
        load_model(model)
    assert not (tmp_path / "pwned").exists()


def test_resumed_checkpoints_load_weights_only(tmp_path, monkeypatch):
    from informer.checkpointing import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "last.ckpt")
    seen = {}
    real = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    io.load_checkpoint(tmp_path / "last.ckpt")  # what Lightning calls on resume
    assert seen.get("weights_only") is True


# the HTTP server ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return constant_artifact(tmp_path_factory.mktemp("security") / "model")[0]


@pytest.fixture
def server(model_dir, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_MAX_PAYLOAD_IN_MB", "0.01")  # 10 485 bytes
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_TIMEOUT", "1")
    httpd = serve.make_server(str(model_dir), port=0, verbose=False)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def raw(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(data)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:
        pass
    sock.close()
    return data


def test_server_binds_loopback_unless_started_as_serve(model_dir, monkeypatch):
    bound = []

    class Stopped:
        server_address = ("x", 1)

        def serve_forever(self):
            raise KeyboardInterrupt

        def server_close(self):
            pass

    def fake(model, host, port):
        bound.append(host)
        return Stopped()

    monkeypatch.setattr(serve, "make_server", fake)
    serve.main(["--model-dir", str(model_dir)])             # informer-serve on a laptop
    serve.main(["serve", "--model-dir", str(model_dir)])    # SageMaker runs `<image> serve`
    serve.main(["--host", "0.0.0.0", "--model-dir", str(model_dir)])  # explicit wins
    serve.main(["serve", "--host", "127.0.0.1", "--model-dir", str(model_dir)])
    assert bound == ["127.0.0.1", "0.0.0.0", "0.0.0.0", "127.0.0.1"]


def test_make_server_defaults_to_loopback(server):
    assert server.server_address[0] == "127.0.0.1"


def test_declared_oversize_body_is_refused_without_reading_it(server):
    """A client declaring 10 GB gets 413 at once; the server reads nothing of it."""
    port = server.server_address[1]
    start = time.monotonic()
    sock = raw(port, b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                     b"Content-Length: 10000000000\r\n\r\n")
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.0 413") or answer.startswith(b"HTTP/1.1 413"), answer
    assert b"error: payload of 10000000000 bytes exceeds SAGEMAKER_MAX_PAYLOAD_IN_MB" in answer
    assert time.monotonic() - start < 0.9  # before the 1 s timeout: nothing was awaited
    body = history(400, "h", ("a", "b", "OT")).to_csv(index=False).encode()  # ~25 kB
    assert request(port, "POST", "/invocations", body, {"Content-Type": "text/csv"})[0] == 413


def test_slow_body_gets_408_and_does_not_block_other_requests(server):
    port = server.server_address[1]
    start = time.monotonic()
    sock = raw(port, b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                     b"Content-Length: 1000\r\n\r\ndate,a,b")
    assert request(port, "GET", "/ping")[0] == 200  # served while the slow one waits
    answer = read_all(sock)
    elapsed = time.monotonic() - start
    assert b" 408 " in answer.split(b"\r\n")[0], answer
    assert answer.endswith(b"error: request body not received within "
                           b"SAGEMAKER_MODEL_SERVER_TIMEOUT (1 s)")
    assert 0.9 < elapsed < 5


@pytest.mark.parametrize("data", [b"", b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-Drip: "],
                         ids=["idle_connection", "headers_never_finish"])
def test_stalled_connections_are_closed(server, data):
    """A connection that never completes a request is closed within 2 x the timeout."""
    port = server.server_address[1]
    start = time.monotonic()
    leftover = read_all(raw(port, data))
    assert time.monotonic() - start < 5
    assert b"200" not in leftover


def test_dripping_headers_are_cut_off(server):
    """A client sending a header byte every 0.3 s never hits the per-read timeout; the whole
    request is still cut off at 2 x the timeout."""
    sock = raw(server.server_address[1], b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-Drip: ")
    sock.settimeout(0.3)
    start = time.monotonic()
    closed = False
    while not closed and time.monotonic() - start < 8:
        try:
            sock.sendall(b"a")
            closed = sock.recv(1) == b""
        except TimeoutError:
            continue
        except OSError:
            closed = True
    sock.close()
    assert closed and 1.5 < time.monotonic() - start < 4


def test_requests_carry_data_never_paths(server, model_dir):
    port = server.server_address[1]
    for method, path in [("GET", "/../../etc/passwd"), ("GET", "/ping/../../etc/passwd"),
                         ("GET", "//etc/passwd"), ("POST", "/invocations/../../etc/passwd"),
                         ("POST", "/invocations?model_dir=/etc"), ("GET", "/etc/passwd")]:
        status, body = request(port, method, path, b"x" if method == "POST" else None,
                               {"Content-Type": "text/csv"})
        assert status == 404 and b"root:" not in body, (method, path)
    for payload, kind in [(b"/etc/passwd", "text/csv"),
                          (json.dumps({"history": "/etc/passwd"}).encode(),
                           "application/jsonlines"),
                          (json.dumps({"history": {"date": ["/etc/passwd"]}, "model_dir": "/",
                                       "file": "/etc/passwd"}).encode(), "application/json")]:
        status, body = request(port, "POST", "/invocations", payload, {"Content-Type": kind})
        assert status == 400 and b"root:" not in body, body
    assert server.model.loaded.schema.columns == ["a", "b", "OT"]  # the same model still


def test_serving_code_opens_files_only_at_start_up():
    """``serve.py`` and ``inference.py`` touch the file system only in ``model_fn`` (the model
    directory given at start-up) and in argument parsing, never in request handling."""
    touching = {"open", "Path", "load_model", "torch.load", "os.open", "read_text", "read_bytes",
                "write_text", "write_bytes", "unlink", "rmtree", "mkdir", "iterdir", "glob"}
    allowed = {"model_fn", "make_server", "main"}
    for name in ("serve.py", "inference.py"):
        tree = ast.parse((REPO / "sagemaker_jobs" / name).read_text())
        for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            for _node, called in calls(func):
                if called in touching or called.rsplit(".", 1)[-1] in touching:
                    assert func.name in allowed, f"{name}: {func.name} calls {called}"


def test_internal_errors_do_not_leak_details(server, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret /opt/ml/model/weights.pt detail")

    monkeypatch.setattr(serve, "invoke", broken)
    status, body = request(server.server_address[1], "POST", "/invocations", b"x",
                           {"Content-Type": "text/csv"})
    assert status == 500
    assert body == b"error: internal error (RuntimeError); see the server log"
