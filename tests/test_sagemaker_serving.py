"""Serving handlers (CSV, JSON Lines, JSON), the HTTP server and the local Batch Transform."""

from __future__ import annotations

import ast
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from http.client import HTTPConnection
from pathlib import Path

import pandas as pd
import pytest
import torch

from informer.artifact import save_artifact
from informer.config import InformerConfig
from informer.data.series import SeriesData
from informer.errors import InformerError
from informer.forecast import Forecaster
from informer.nn.model import Informer
from sagemaker_jobs import inference, serve, transform
from sagemaker_jobs.package import package_model
from tests.conftest import ETT_DIR

WINDOWS = {"seq_len": 48, "label_len": 48, "pred_len": 24}
ETT = pd.read_csv(ETT_DIR / "ETTh1.csv", nrows=400)


def packaged_model(tmp: Path, **net) -> Path:
    """A model directory as a training job leaves it (untrained tiny network + code/); ``net``
    adds InformerConfig fields (``quantiles=[...]``)."""
    series = SeriesData.fit(ETT_DIR / "ETTh1.csv", split="ett_hour", **WINDOWS)
    torch.manual_seed(0)
    model = Informer(InformerConfig(enc_in=7, dec_in=7, c_out=7, d_model=16, n_heads=2,
                                    d_ff=32, factor=3, **WINDOWS, **net))
    return package_model(save_artifact(tmp / "artifact", model.eval(), series.schema),
                         tmp / "model")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return packaged_model(tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="module")
def model(model_dir):
    return inference.model_fn(str(model_dir))


def history(start: int, rows: int = 60) -> pd.DataFrame:
    return ETT.iloc[start:start + rows].reset_index(drop=True)


def call(model, body, content_type, accept=None):
    return inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type),
                                                    model), accept)


# handlers -------------------------------------------------------------------------------------
def test_csv_round_trip_gives_future_timestamps_in_original_units(model):
    frame = history(100)
    body, kind = call(model, frame.to_csv(index=False).encode(), "text/csv; charset=utf-8",
                      "text/csv")
    assert kind == "text/csv" and not body.endswith("\n")
    result = pd.read_csv(io.StringIO(body), parse_dates=["date"])
    assert list(result.columns) == ["date", *model.schema.predicted]
    last = pd.Timestamp(frame["date"].iloc[-1])
    assert list(result["date"]) == list(pd.date_range(last + pd.Timedelta("1h"), periods=24,
                                                      freq="h"))
    expected = Forecaster.forecast(model, frame)
    for column in model.schema.predicted:
        assert result[column].tolist() == pytest.approx(expected[column].tolist(), rel=1e-12)
    assert abs(result["OT"].mean() - frame["OT"].mean()) < 30  # units, not standardised


def test_jsonlines_one_output_line_per_input_line_in_order(model):
    rows = history(0, 60).assign(date=lambda f: f["date"].astype(str))
    columns_form = {k: v.tolist() for k, v in history(200).items()}
    lines = [json.dumps({"id": "a", "history": rows.to_dict(orient="records")}),
             json.dumps({"id": 7, "history": columns_form}),
             json.dumps({"history": history(300, 48).to_dict(orient="records")})]
    body, kind = call(model, "\n".join(lines) + "\n", "application/jsonlines")
    assert kind == "application/jsonlines"
    out = [json.loads(line) for line in body.split("\n")]
    assert [o["id"] for o in out] == ["a", 7, 3]  # a missing id is the record's position
    for record, start, rows_ in zip(out, (0, 200, 300), (60, 60, 48)):
        expected = Forecaster.forecast(model, history(start, rows_))
        assert record["forecast"]["date"][0] == \
            expected["date"].iloc[0].strftime("%Y-%m-%dT%H:%M:%S")
        assert record["forecast"]["OT"] == pytest.approx(expected["OT"].tolist(), rel=1e-12)
    as_csv, kind = call(model, "\n".join(lines), "application/jsonlines", "text/csv")
    table = pd.read_csv(io.StringIO(as_csv))
    assert kind == "text/csv" and table["id"].astype(str).tolist() == \
        ["a"] * 24 + ["7"] * 24 + ["3"] * 24


def test_json_instances_and_single_objects(model):
    one = {"id": "x", "history": history(10).to_dict(orient="list")}
    body, kind = call(model, json.dumps({"instances": [one, one]}), "application/json")
    predictions = json.loads(body)["predictions"]
    assert kind == "application/json" and [p["id"] for p in predictions] == ["x", "x"]
    assert predictions[0] == predictions[1]
    body, _ = call(model, json.dumps(one), "application/json", "application/jsonlines")
    assert json.loads(body) == predictions[0]


def test_precision_comes_from_the_environment(model_dir, monkeypatch):
    assert inference.model_fn(str(model_dir)).bf16 is False  # batch-independent by default
    monkeypatch.setenv("INFORMER_PRECISION", "bf16-mixed")
    fast = inference.model_fn(str(model_dir))
    assert fast.bf16 is True
    frame = history(100)
    exact = Forecaster(fast.loaded, precision="32-true").forecast(frame)
    approx = fast.forecast(frame)
    scale = frame["OT"].std()
    assert abs(approx["OT"] - exact["OT"]).max() < 0.05 * scale
    monkeypatch.setenv("INFORMER_PRECISION", "fp8")
    with pytest.raises(InformerError, match=r"^INFORMER_PRECISION: expected one of .*'fp8'$"):
        inference.model_fn(str(model_dir))


HEADER = "date,HUFL,HULL,MUFL,MULL,LUFL,LULL,OT"


@pytest.mark.parametrize("body, content_type, accept, status, message", [
    (b"", "text/csv", None, 400, "body: empty"),
    (b"a,b\n1,2", "application/x-parquet", None, 415, "content type: 'application/x-parquet' "
                                                       "is not supported"),
    (None, "text/csv", "image/png", 406, "accept: 'image/png' is not supported"),
    (b'{"history": []}\n{"id": 2,', "application/jsonlines", None, 400,
     "line 2: not valid JSON"),
    (b'{"id": 1, "rows": []}', "application/jsonlines", None, 400,
     "line 1: expected an object with 'history'"),
    (b"\xff\xfe", "text/csv", None, 400, "body: not UTF-8 text"),
    (HEADER.replace(",OT", "") + "\n2016-07-01 00:00:00,1,2,3,4,5,6\n", "text/csv", None, 400,
     "body: missing column(s) ['OT']"),
    ("short", "text/csv", None, 400, "body: 10 rows; expected at least seq_len = 48 rows"),
    ("nan", "text/csv", None, 400, "column 'OT' line 7: expected a finite number"),
])
def test_bad_payloads_are_4xx_with_one_clear_line(model, body, content_type, accept, status,
                                                  message):
    if body is None:
        body = history(0).to_csv(index=False)
    elif body == "short":
        body = history(0, 10).to_csv(index=False)
    elif body == "nan":
        frame = history(0).astype({"OT": object})
        frame.loc[5, "OT"] = "n/a"
        body = frame.to_csv(index=False)
    with pytest.raises(inference.PayloadError) as info:
        call(model, body, content_type, accept)
    assert info.value.status_code == status
    assert message in str(info.value) and "\n" not in str(info.value)


# HTTP server ------------------------------------------------------------------------------------
@pytest.fixture
def server(model_dir, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_MAX_PAYLOAD_IN_MB", "0.05")
    httpd = serve.make_server(str(model_dir), "127.0.0.1", 0, verbose=False)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def http(url: str, data: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type"), err.read()


def test_server_ping_invocations_and_payload_limit(server):
    assert http(f"{server}/ping")[0] == 200
    status, kind, body = http(f"{server}/invocations", history(0).to_csv(index=False).encode(),
                              {"Content-Type": "text/csv", "Accept": "application/jsonlines"})
    assert (status, kind) == (200, "application/jsonlines")
    assert len(json.loads(body)["forecast"]["OT"]) == 24
    status, _, body = http(f"{server}/invocations", b"date,OT\n", {"Content-Type": "text/csv"})
    assert status == 400 and body.startswith(b"error: body: missing column(s)")
    big = ETT.to_csv(index=False).encode() * 2  # ~60 kB > 0.05 MB
    status, _, body = http(f"{server}/invocations", big, {"Content-Type": "text/csv"})
    assert status == 413 and b"SAGEMAKER_MAX_PAYLOAD_IN_MB" in body
    status, kind, body = http(f"{server}/execution-parameters")
    assert status == 200 and json.loads(body)["BatchStrategy"] == "MultiRecord"
    assert http(f"{server}/other")[0] == 404


def test_chunked_body_without_content_length_is_read_before_the_411(server):
    """The refusal waits for the body's last chunk, so the client reads a 411, not a reset."""
    import socket

    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\ndate,\r\n")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):  # nothing answered while the body is incomplete
            sock.recv(1024)
        sock.settimeout(10)
        sock.sendall(b"3\r\nOT\n\r\n0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 411") or answer.startswith(b"HTTP/1.1 411")
    assert answer.endswith(b"error: Content-Length: required")


def test_server_port_comes_from_sagemaker_bind_to_port(model_dir, monkeypatch):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("SAGEMAKER_BIND_TO_PORT", str(port))
    httpd = serve.make_server(str(model_dir), "127.0.0.1", verbose=False)
    try:
        assert httpd.server_address[1] == port
    finally:
        httpd.server_close()


# load: backlog, worker pool, back-pressure ------------------------------------------------------
def _post(port: int, body: bytes, timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    """One POST /invocations on a new connection; raises on a reset or refused connection."""
    conn = HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": "text/csv"})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _concurrently(n: int, call) -> list:
    """``call()`` from ``n`` threads started together: results, or the exceptions raised."""
    barrier, results = threading.Barrier(n), [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call()
        except Exception as err:  # noqa: BLE001 - collected and asserted on
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return results


def test_200_concurrent_invocations_are_all_answered(server):
    """200 clients at once, each on its own connection: every one gets its forecast, none is
    reset or refused (the listen backlog was socketserver's 5)."""
    port = int(server.rsplit(":", 1)[1])
    body = history(0).to_csv(index=False).encode()
    results = _concurrently(200, lambda: _post(port, body))
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} of 200 failed, e.g. {errors[0]!r}"
    assert [r[0] for r in results] == [200] * 200
    assert len({r[2] for r in results}) == 1  # the same history, the same forecast


def somaxconn(default: int = 4096) -> int:
    """The kernel's cap on a listen backlog (128 before Linux 5.4)."""
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return default


def test_a_burst_of_connections_waits_in_the_backlog(model_dir, monkeypatch):
    """200 connections opened before the server accepts any: the kernel holds them all (a
    backlog of 5 let about 6 complete), and each is answered once the server runs."""
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_TIMEOUT", "30")
    burst = min(200, somaxconn())
    httpd = serve.make_server(str(model_dir), "127.0.0.1", 0, verbose=False)
    port = httpd.server_address[1]
    socks, serving = [], threading.Thread(target=httpd.serve_forever, daemon=True)
    try:
        for _ in range(burst):  # a connection the backlog cannot hold times out here
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        for sock in socks:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        serving.start()
        deadline = time.monotonic() + 30
        for sock in socks:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            assert sock.recv(1024).startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        for sock in socks:
            sock.close()
        if serving.is_alive():
            httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def gated(model_dir, monkeypatch):
    """A server with one worker and a queue of one whose forecasts wait for ``gate``."""
    monkeypatch.setenv("INFORMER_SERVE_WORKERS", "1")
    monkeypatch.setenv("INFORMER_SERVE_MAX_QUEUE", "1")
    gate, real = threading.Event(), serve.invoke

    def held(*args):
        assert gate.wait(60)
        return real(*args)

    monkeypatch.setattr(serve, "invoke", held)
    httpd = serve.make_server(str(model_dir), "127.0.0.1", 0, verbose=False)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd, gate
    gate.set()
    httpd.shutdown()
    httpd.server_close()


def test_a_full_queue_answers_503_and_ping_still_answers(gated):
    """Worker busy, queue full: the next request is read to its end and answered 503 with
    Retry-After (never a dropped socket); /ping answers; the held requests then complete."""
    httpd, gate = gated
    port = httpd.server_address[1]
    body = history(0).to_csv(index=False).encode()
    held = []
    for expected in (1, 2):  # one running, one waiting
        held.append(threading.Thread(target=lambda: held.append(_post(port, body)),
                                     daemon=True))
        held[-1].start()
        deadline = time.monotonic() + 30
        while httpd.pool.in_flight < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert httpd.pool.in_flight == expected
    big = ETT.to_csv(index=False).encode()[:45_000]  # read whole before the answer
    status, headers, answer = _post(port, big)
    assert status == 503 and headers["Retry-After"] == "1"
    assert answer == (b"error: busy: 1 forecast(s) running and 1 waiting "
                      b"(INFORMER_SERVE_MAX_QUEUE); retry later")
    assert http(f"http://127.0.0.1:{port}/ping")[0] == 200
    gate.set()
    for thread in held[:2]:
        thread.join(60)
    assert [r[0] for r in held[2:]] == [200, 200]
    assert _post(port, body)[0] == 200 and httpd.pool.in_flight == 0


def test_the_load_benchmark_counts_every_request(model_dir, capsys, monkeypatch):
    """``benchmarks/serve_load.py`` against a real ``informer-serve`` process."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    monkeypatch.setenv("INFORMER_DATA_DIR", str(ETT_DIR))
    import serve_load

    assert serve_load.percentile([0.3, 0.1, 0.2, 0.4], 0.5) in (0.2, 0.3)
    assert serve_load.percentile([float(i) for i in range(100)], 0.99) == 98.0
    with pytest.raises(SystemExit) as info:
        serve_load.main(["--clients", "12", "--requests", "2", "--model", str(model_dir),
                         "--max-queue", "default,0", "--workers", "1"])
    assert info.value.code == 0  # nothing reset, refused or timed out
    out = capsys.readouterr().out
    assert "outcomes: {'200': 24}" in out  # queue 256: every request answered
    second = out.split("INFORMER_SERVE_MAX_QUEUE=0:")[1]
    counts = ast.literal_eval(second.split("outcomes: ")[1].splitlines()[0])
    assert sum(counts.values()) == 24 and counts["200"] >= 1 and set(counts) <= {"200", "503"}


@pytest.mark.parametrize("name, value, minimum", [
    ("INFORMER_SERVE_MAX_QUEUE", "many", 0), ("INFORMER_SERVE_MAX_QUEUE", "-1", 0),
    ("INFORMER_SERVE_WORKERS", "0", 1)])
def test_bad_pool_settings_are_one_error_line(model_dir, monkeypatch, capsys, name, value,
                                              minimum):
    monkeypatch.setenv(name, value)
    monkeypatch.setattr(serve.Server, "serve_forever",
                        lambda self: pytest.fail(f"serving despite {name}={value}"))
    with pytest.raises(SystemExit) as info:
        serve.main(["--model-dir", str(model_dir), "--port", "0"])
    assert info.value.code == 2
    assert capsys.readouterr().err == \
        f"error: {name}: expected an integer >= {minimum}, got {value!r}\n"


# local Batch Transform --------------------------------------------------------------------------
def write_jsonl(path: Path, n: int) -> list[str]:
    ids = [f"s{i:02d}" for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": i, "history": history(5 * k).to_dict("list")},
                                       default=str) + "\n" for k, i in enumerate(ids)))
    return ids


def test_transform_line_multirecord_keeps_order_and_count(model_dir, tmp_path):
    ids = write_jsonl(tmp_path / "in" / "batch.jsonl", 12)
    data = (tmp_path / "in" / "batch.jsonl").read_bytes()
    max_bytes = len(data) // 4  # several mini-batches
    batches = list(transform.requests(data, "Line", "MultiRecord", max_bytes, "x"))
    assert 4 <= len(batches) < 12 and all(len(b) <= max_bytes for _, b in batches)
    assert sum(len(b.split(b"\n")) for _, b in batches) == 12
    assert len(list(transform.requests(data, "Line", "SingleRecord", max_bytes, "x"))) == 12
    (written,) = transform.run(str(model_dir), tmp_path / "in", tmp_path / "out",
                               split_type="Line", strategy="MultiRecord",
                               max_payload_mb=max_bytes / 2**20, assemble_with="Line")
    assert written == tmp_path / "out" / "batch.jsonl.out"
    lines = written.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ids


def test_transform_whole_files_and_folders(model_dir, tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    history(0).to_csv(tmp_path / "in" / "a.csv", index=False)
    history(50).to_csv(tmp_path / "in" / "sub" / "b.csv", index=False)
    (tmp_path / "in" / ".hidden").write_text("x")
    written = transform.run(str(model_dir), tmp_path / "in", tmp_path / "out")
    assert written == [tmp_path / "out" / "a.csv.out", tmp_path / "out" / "sub" / "b.csv.out"]
    assert len(pd.read_csv(written[1])) == 24


def test_transform_fails_like_a_transform_job(model_dir, tmp_path, capsys):
    write_jsonl(tmp_path / "in.jsonl", 3)
    lines = (tmp_path / "in.jsonl").read_text().splitlines()
    lines[1] = json.dumps({"id": "bad", "history": history(0, 5).to_dict("list")}, default=str)
    (tmp_path / "in.jsonl").write_text("\n".join(lines))
    with pytest.raises(SystemExit) as info:
        transform.main(["--model-dir", str(model_dir), "--input", str(tmp_path / "in.jsonl"),
                        "--output", str(tmp_path / "out"), "--split-type", "Line",
                        "--batch-strategy", "SingleRecord"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "in.jsonl: record 2: HTTP 400: input: 5 rows; expected at least seq_len" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(Exception, match=r"record 1 is \d+ bytes, over MaxPayloadInMB"):
        transform.run(str(model_dir), tmp_path / "in.jsonl", tmp_path / "out",
                      split_type="Line", max_payload_mb=0.001)
