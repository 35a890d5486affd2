"""The bad-input matrix of docs/reliability.md: one test per row (the parametrize ids are the
table's test names), plus the local-transform interruption and the registry crash faults.

Every row asserts: a non-zero exit (2) or a 4xx status, exactly one line naming what was wrong
and what is expected, no traceback and no stray warning, and nothing overwritten or
half-written (pre-existing outputs unchanged, no temp files left). The console scripts run
in-process through the same wrappers their ``main`` uses (``user_errors``, ``job_errors``, the
argparse ``main`` functions); ``test_console_scripts_answer_one_line`` runs a few of them as real
processes to show the same single line there.
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from informer.artifact import CONFIG, MANIFEST, WEIGHTS
from informer.cli.common import user_errors
from informer.cli.forecast import run_forecast
from informer.data.sources import sha256_file
from mlops import lambda_function as fn
from sagemaker_jobs import serve, transform
from tests.conftest import ETT_DIR, REPO, compose_cfg
from tests.test_forecast import constant_artifact

COLUMNS = ["a", "b", "OT"]  # constant_artifact: freq h, seq_len 16, pred_len 5, mean 10/20/30
EXPECTS = "['a', 'b', 'OT']"


# helpers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return constant_artifact(tmp_path_factory.mktemp("matrix") / "model")[0]


def frame(n: int = 30, start: str = "2018-06-01") -> pd.DataFrame:
    dates = pd.date_range(start, periods=n, freq="h")
    rng = np.random.default_rng(1)
    values = {c: np.round(10 * (i + 1) + rng.normal(size=n), 3) for i, c in enumerate(COLUMNS)}
    return pd.DataFrame({"date": dates.strftime("%Y-%m-%d %H:%M:%S"), **values})


def csv_text(df: pd.DataFrame | None = None) -> str:
    return (frame() if df is None else df).to_csv(index=False)


def with_cell(row: int, column: str, text: str) -> str:
    """The default history with one cell replaced; ``row`` is 0-based (CSV line ``row + 2``)."""
    df = frame().astype(str)
    df.loc[row, column] = text
    return csv_text(df)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (temp files included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def one_error_line(run, capsys) -> str:
    """Run a console-script body; it must exit 2 with exactly one ``error:`` line and emit no
    warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SystemExit) as info:
            run()
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    noisy = [f"{w.category.__name__}: {w.message}" for w in caught
             if w.category is not DeprecationWarning]
    assert not noisy, noisy
    return lines[0]


# CSV files through informer-forecast ----------------------------------------------------------
IN = "{in}"  # replaced by the input path
CSV_CASES = {
    "csv_empty_file": (
        b"", f"{IN}: empty file; expected a header with 'date' and numeric columns"),
    "csv_header_only": (
        "date,a,b,OT\n", f"{IN}: 0 rows; expected at least seq_len = 16 rows of history"),
    "csv_no_date_column": (
        csv_text().replace("date,", "time,", 1),
        f"{IN}: no 'date' column; expected 'date' and the model's columns {EXPECTS}, got "
        f"['time', 'a', 'b', 'OT']"),
    "csv_mixed_date_formats": (
        with_cell(4, "date", "01/06/2018 04:00"),
        f"{IN}: column 'date' line 6: '01/06/2018 04:00' is not in the format of line 2 "
        f"('2018-06-01 00:00:00') (expected one consistent format such as 2016-07-01 00:00:00)"),
    "csv_time_zone_mix": (
        with_cell(4, "date", "2018-06-01 04:00:00+02:00"),
        f"{IN}: column 'date' line 6: '2018-06-01 04:00:00+02:00' has a time zone and line 2 "
        f"('2018-06-01 00:00:00') does not (expected one consistent format such as "
        f"2016-07-01 00:00:00)"),
    "csv_utc_offsets_with_a_naive_timestamp": (
        csv_text(frame().assign(date=lambda d: [
            f"{t}+0{1 + (i >= 10)}:00" if i != 20 else t for i, t in enumerate(d["date"])])),
        f"{IN}: column 'date' line 22: '2018-06-01 20:00:00' has no time zone and line 2 "
        f"('2018-06-01 00:00:00+01:00') does (expected one consistent format such as "
        f"2016-07-01 00:00:00)"),
    "csv_duplicate_timestamps": (
        with_cell(7, "date", "2018-06-01 06:00:00"),
        f"{IN}: column 'date' line 9: duplicate timestamp 2018-06-01 06:00:00 after "
        f"2018-06-01 06:00:00 (expected strictly increasing timestamps)"),
    "csv_gap_vs_freq": (
        csv_text(frame(31).drop(index=12)),
        f"{IN}: column 'date' line 14: expected 2018-06-01 12:00:00 one step ('h') after "
        f"2018-06-01 11:00:00, got 2018-06-01 13:00:00"),
    "csv_non_numeric_cell": (
        with_cell(3, "b", "12.5 kW"),
        f"{IN}: column 'b' line 5: expected a finite number, got '12.5 kW'"),
    "csv_nan_cell": (
        with_cell(9, "OT", "NaN"),
        f"{IN}: column 'OT' line 11: expected a finite number, got a missing value"),
    "csv_inf_cell": (
        with_cell(2, "a", "-inf"),
        f"{IN}: column 'a' line 4: expected a finite number, got '-inf'"),
    "csv_missing_column": (
        csv_text(frame().drop(columns="b")),
        f"{IN}: missing column(s) ['b']; the model expects {EXPECTS}"),
    "csv_extra_column": (
        csv_text(frame().assign(humidity=1.0)),
        f"{IN}: unexpected column(s) ['humidity']; the model expects {EXPECTS}"),
    "csv_duplicate_column_name": (
        csv_text().replace("date,a,b,OT", "date,a,a,OT", 1),
        f"{IN}: duplicate column name(s) ['a'] in the header; expected unique names"),
    "csv_wrong_delimiter": (
        csv_text().replace(",", ";"),
        f"{IN}: the header 'date;a;b;OT' is one column; expected comma-separated values, got "
        f"';'-separated ones"),
    "csv_not_utf8": (
        csv_text().replace("date,a,b,OT", "date,a,b,OT\u00e9").encode("latin-1"),
        f"{IN}: not UTF-8 text (byte 0xe9 on line 1); expected a UTF-8 CSV file"),
    "csv_not_utf8_deep_in_the_file": (
        csv_text(frame(3000)).replace("2018-07-30 00:00:00", "2018-07-30 00:00:00\u00b5", 1)
        .encode("latin-1"),
        f"{IN}: not UTF-8 text (byte 0xb5 on line 1418); expected a UTF-8 CSV file"),
    "csv_utf16": (
        csv_text().encode("utf-16"), f"{IN}: UTF-16 text; expected a UTF-8 CSV file"),
    "csv_huge_number": (
        with_cell(20, "a", "1e300"),
        f"{IN}: column 'a' line 22: expected a finite number within float32 range "
        f"(|x| <= 3.403e+38), got '1e300'"),
    "csv_number_out_of_model_range": (
        with_cell(20, "a", "3e38"),
        f"{IN}: column 'a' line 22: 3e+38 is out of range for this model (expected values near "
        f"its training data: mean 10, std 0.5)"),
    "csv_ragged_row": (
        csv_text().replace("\n2018-06-01 03:00:00,", "\n2018-06-01 03:00:00,7,", 1),
        f"{IN}: not a readable CSV file (Error tokenizing data. C error: Expected 4 fields in "
        f"line 5, saw 5)"),
}


def forecast_cfg(model: Path, source: Path, output: Path):
    return compose_cfg("forecast", [f"model_path={model}", f"input={source}",
                                    f"output={output}"])


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_forecast_csv(case, model, tmp_path, capsys):
    content, message = CSV_CASES[case]
    source = tmp_path / "in" / "history.csv"
    source.parent.mkdir()
    if isinstance(content, bytes):
        source.write_bytes(content)
    else:
        source.write_text(content)
    out = tmp_path / "out"
    out.mkdir()
    (out / "forecast.csv").write_text("previous forecast\n")
    before = snapshot(tmp_path)
    cfg = forecast_cfg(model, source, out / "forecast.csv")

    def run():
        with user_errors():
            run_forecast(cfg)

    line = one_error_line(run, capsys)
    assert line == "error: " + message.replace(IN, str(source))
    assert snapshot(tmp_path) == before  # the old output untouched, no temp file


@pytest.mark.parametrize("case", ["csv_utf8_bom_accepted", "csv_utc_offsets_accepted"])
def test_forecast_csv_accepted(case, model, tmp_path):
    """A BOM is dropped; UTC offsets (even changing ones, as across a DST change) compare as
    UTC instants. Both forecast exactly like the plain UTC file."""
    plain = tmp_path / "plain.csv"
    plain.write_text(csv_text())
    source = tmp_path / "odd.csv"
    if case == "csv_utf8_bom_accepted":
        source.write_bytes(b"\xef\xbb\xbf" + csv_text().encode())
    else:  # the same instants written in +01:00 (first 10 rows) and +02:00 (the rest)
        local = [(pd.Timestamp(t) + pd.Timedelta(hours=1 + (i >= 10))).strftime(
            f"%Y-%m-%d %H:%M:%S+0{1 + (i >= 10)}:00") for i, t in enumerate(frame()["date"])]
        source.write_text(csv_text(frame().assign(date=local)))
    for path in (plain, source):
        run_forecast(forecast_cfg(model, path, tmp_path / f"{path.stem}.out.csv"))
    assert (tmp_path / "odd.out.csv").read_text() == (tmp_path / "plain.out.csv").read_text()


# CSV files through informer-train ------------------------------------------------------------
TRAIN_CASES = {
    "train_csv_wrong_delimiter": (
        lambda text: text.replace(",", "\t"),
        "{in}: the header 'date\\ta\\tb\\tOT' is one column; expected comma-separated values, "
        "got '\\t'-separated ones"),
    "train_csv_utc_offsets_with_a_naive_timestamp": (
        lambda text: "\n".join(line if i in (0, 40) else
                               line.replace(":00,", f":00+0{1 + (i > 9)}:00,", 1)
                               for i, line in enumerate(text.splitlines())) + "\n",
        "{in}: column 'date' line 41: '2020-01-02 15:00:00' has no time zone and line 2 "
        "('2020-01-01 00:00:00+01:00') does (expected one consistent format such as "
        "2016-07-01 00:00:00)"),
    "train_csv_duplicate_column_name": (
        lambda text: text.replace("date,a,b,OT", "date,a,OT,OT", 1),
        "{in}: duplicate column name(s) ['OT'] in the header; expected unique names"),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_csv(case, tmp_path, train_cfg, capsys):
    from informer.cli.train import train
    from tests.conftest import write_series

    path = write_series(tmp_path / "s.csv", n=300)
    breaker, message = TRAIN_CASES[case]
    path.write_text(breaker(path.read_text()))
    out = tmp_path / "run"
    cfg = train_cfg("data=custom", f"data.data_dir={tmp_path}", "data.file=s.csv",
                    "data.seq_len=24", "data.label_len=12", "data.pred_len=6", out=out)

    def run():
        with user_errors():
            train(cfg)

    assert one_error_line(run, capsys) == "error: " + message.replace("{in}", str(path))
    assert not out.exists() or not any(out.rglob("*"))


# Hydra overrides through the SageMaker training entry point ------------------------------------
def opt_ml(root: Path) -> Path:
    channel = root / "input" / "data" / "training"
    channel.mkdir(parents=True)
    (channel / "ETTh1.csv").symlink_to(ETT_DIR / "ETTh1.csv")
    return root


HP_CASES = {
    "hp_unknown_key": (
        ["--trainer.max_epoch", "3"],
        "hyperparameter --trainer.max_epoch: trainer has no key 'max_epoch'; expected one of [",
        "] (use --+trainer.max_epoch to add a key)"),
    "hp_unknown_group_option": (
        ["--model", "informer_big"],
        "hyperparameter --model: unknown model 'informer_big'; expected one of ['informer', "
        "'informer_full', 'informer_stack']", ""),
    "hp_wrong_type": (
        ["--data.seq_len", "abc"], "data.seq_len: expected an integer >= 1, got 'abc'", ""),
    "hp_wrong_type_model": (
        ["--model.net.d_model", "wide"],
        "model.net.d_model: expected a positive integer, got 'wide'", ""),
    "hp_seq_len_lt_label_len": (
        ["--data.seq_len", "24", "--data.label_len", "48"],
        "data.label_len: expected label_len <= seq_len (24), got 48", ""),
    "hp_pred_len_0": (
        ["--data.pred_len", "0"], "data.pred_len: expected an integer >= 1, got 0", ""),
    "hp_sweep": (
        ["--seed", "1,2"], "hyperparameter --seed: expected one value, got the sweep '1,2'; a job "
                           "trains one configuration", ""),
}


@pytest.mark.parametrize("case", list(HP_CASES))
def test_hyperparameters(case, tmp_path, capsys, monkeypatch):
    from sagemaker_jobs.train import main

    argv, head, tail = HP_CASES[case]
    root = opt_ml(tmp_path / "ml")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(root))
    for name in ("SM_HPS", "SM_MODEL_DIR", "SM_OUTPUT_DATA_DIR", "SM_CHANNEL_TRAINING"):
        monkeypatch.delenv(name, raising=False)
    line = one_error_line(lambda: main(["--experiment", "etth1_M_24", *argv]), capsys)
    reason = line.removeprefix("error: ")
    assert reason.startswith(head) and reason.endswith(tail), reason
    if not tail:
        assert reason == head
    assert (root / "output" / "failure").read_text() == reason + "\n"
    written = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert written <= {"output/failure", "output/data/train.log", "input/data/training/ETTh1.csv"}


# artifacts ---------------------------------------------------------------------------------------
def _rewrite_manifest(model: Path, **changes) -> None:
    manifest = json.loads((model / MANIFEST).read_text())
    manifest.update(changes)
    (model / MANIFEST).write_text(json.dumps(manifest))


def flip_last_byte(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))


class Payload:
    """Pickles as a call to ``os.mkdir(marker)``: what a malicious weights file would run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _pickled_object(model: Path) -> None:
    torch.save({"projection.weight": Payload(str(model.parent / "pwned"))}, model / WEIGHTS)
    files = {name: sha256_file(model / name) for name in (WEIGHTS, CONFIG)}
    _rewrite_manifest(model, files=files)  # an attacker can rewrite the manifest as well


ARTIFACT_CASES = {
    "artifact_missing_weights": (
        lambda m: (m / WEIGHTS).unlink(), "{m}/weights.pt: missing; the manifest lists it"),
    "artifact_missing_manifest": (
        lambda m: (m / MANIFEST).unlink(),
        "{m}/manifest.json: missing; expected a model artifact directory (weights.pt, "
        "config.json, manifest.json)"),
    "artifact_tampered_weights": (
        lambda m: flip_last_byte(m / WEIGHTS),
        "{m}/weights.pt: sha256 does not match manifest.json; the artifact was modified or "
        "corrupted"),
    "artifact_newer_format": (
        lambda m: _rewrite_manifest(m, format_version=2),
        "{m}/manifest.json: artifact format 2 is newer than this library reads (1); upgrade "
        "informer-mlops"),
    "artifact_pickled_object": (
        _pickled_object,
        "{m}/weights.pt: not a loadable tensor state dict (it holds objects other than tensors "
        "and plain containers; refused unread)"),
    "artifact_not_a_directory": (
        lambda m: __import__("shutil").rmtree(m), "{m}: not a model artifact directory"),
}


@pytest.mark.parametrize("entry", ["forecast", "serve", "transform"])
@pytest.mark.parametrize("case", list(ARTIFACT_CASES))
def test_artifact(case, entry, tmp_path, capsys):
    model, _ = constant_artifact(tmp_path / "model")
    breaker, message = ARTIFACT_CASES[case]
    breaker(model)
    source = tmp_path / "history.csv"
    source.write_text(csv_text())
    out = tmp_path / "out"
    out.mkdir()
    (out / "history.csv.out").write_text("previous\n")
    before = snapshot(out)
    if entry == "forecast":
        cfg = forecast_cfg(model, source, out / "history.csv.out")

        def run():
            with user_errors():
                run_forecast(cfg)
    elif entry == "serve":
        def run():
            serve.main(["--model-dir", str(model), "--port", "0"])
    else:
        def run():
            transform.main(["--model-dir", str(model), "--input", str(source), "--output",
                            str(out)])
    line = one_error_line(run, capsys)
    expected = "error: " + message.replace("{m}", str(model))
    assert line == expected
    assert snapshot(out) == before
    assert not (tmp_path / "pwned").exists()  # the pickled call never ran


# inference payloads over HTTP (informer-serve) -------------------------------------------------
@pytest.fixture(scope="module")
def server(model):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAGEMAKER_MAX_PAYLOAD_IN_MB", "0.02")  # 20 971 bytes
        patch.setenv("SAGEMAKER_MODEL_SERVER_TIMEOUT", "5")
        httpd = serve.make_server(str(model), port=0, verbose=False)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def post(port: int, body: bytes | None, headers: dict[str, str], path: str = "/invocations",
         chunked: bool = False) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


def record(i: int, rows: int = 20) -> str:
    return json.dumps({"id": f"s{i}", "history": frame(rows).to_dict(orient="list")})


def jsonl(*lines: str) -> bytes:
    return "\n".join(lines).encode()


TYPES = "['application/json', 'application/jsonlines', 'text/csv']"
PAYLOAD_CASES = {
    "payload_empty_body": (
        b"", {"Content-Type": "text/csv"}, 400,
        "body: empty; expected a history with a header and rows"),
    "payload_wrong_content_type": (
        csv_text().encode(), {"Content-Type": "application/x-parquet"}, 415,
        f"content type: 'application/x-parquet' is not supported; expected one of {TYPES}"),
    "payload_missing_content_type": (
        csv_text().encode(), {}, 415, f"content type: missing; expected one of {TYPES}"),
    "payload_wrong_accept": (
        csv_text().encode(), {"Content-Type": "text/csv", "Accept": "image/png"}, 406,
        f"accept: 'image/png' is not supported; expected one of {TYPES}"),
    "payload_malformed_json_line_mid_batch": (
        jsonl(record(1), record(2), record(3)[:-40], record(4), record(5)),
        {"Content-Type": "application/jsonlines"}, 400,
        "line 3: not valid JSON ("),
    "payload_short_history_mid_batch": (
        jsonl(record(1), record(2), "", record(3, rows=5), record(4)),
        {"Content-Type": "application/jsonlines"}, 400,
        "line 4: 5 rows; expected at least seq_len = 16 rows of history"),
    "payload_id_not_a_scalar": (
        jsonl(record(1), json.dumps({"id": [1, 2], "history": frame().to_dict("list")})),
        {"Content-Type": "application/jsonlines", "Accept": "text/csv"}, 400,
        "line 2: id: expected a string or a number, got list"),
    "payload_csv_wrong_delimiter": (
        csv_text().replace(",", ";").encode(), {"Content-Type": "text/csv"}, 400,
        "body: the header 'date;a;b;OT' is one column; expected comma-separated values, got "
        "';'-separated ones"),
    "payload_over_limit": (
        csv_text(frame(600)).encode(), {"Content-Type": "text/csv"}, 413,
        "payload of {n} bytes exceeds SAGEMAKER_MAX_PAYLOAD_IN_MB (0.02 MB)"),
    "payload_without_content_length": (
        [csv_text().encode()], {"Content-Type": "text/csv", "Transfer-Encoding": "chunked"},
        411, "Content-Length: required"),
}


@pytest.mark.parametrize("case", list(PAYLOAD_CASES))
def test_payload(case, server):
    body, headers, status, message = PAYLOAD_CASES[case]
    chunked = isinstance(body, list)
    got, kind, answer = post(server, iter(body) if chunked else body, headers, chunked=chunked)
    text = answer.decode()
    expected = "error: " + message.replace("{n}", str(0 if chunked else len(body)))
    assert (got, kind) == (status, "text/plain")
    assert "\n" not in text and "Traceback" not in text
    assert text.startswith(expected) if expected.endswith("(") else text == expected, text
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    conn.request("GET", "/ping")
    assert conn.getresponse().status == 200  # the server keeps serving
    conn.close()


# local Batch Transform ------------------------------------------------------------------------
def test_transform_malformed_json_line_names_the_file_line(model, tmp_path, capsys):
    source = tmp_path / "in" / "batch.jsonl"
    source.parent.mkdir()
    lines = [record(1), "", record(2), record(3), record(4)[:-40], record(5)]
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "batch.jsonl.out").write_text("previous run\n")
    before = snapshot(out)
    line = one_error_line(lambda: transform.main([
        "--model-dir", str(model), "--input", str(source.parent), "--output", str(out),
        "--split-type", "Line", "--batch-strategy", "MultiRecord", "--assemble-with", "Line"]),
        capsys)
    # records 1-5 in one request; the 4th record is on line 5 of the file (line 2 is blank)
    assert line.startswith(f"error: {source}: records 1-5: HTTP 400: line 5: not valid JSON ("), \
        line
    assert snapshot(out) == before


# events: the approval Lambda -------------------------------------------------------------------
class NoCalls:
    def __getattr__(self, name):
        raise AssertionError(f"no AWS call expected, got {name}")


ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/informer-models/3"
EVENT = {"version": "0", "id": "e1", "detail-type": "SageMaker Model Package State Change",
         "source": "aws.sagemaker", "account": "123456789012", "region": "us-east-1",
         "detail": {"ModelPackageGroupName": "informer-models", "ModelPackageVersion": 3,
                    "ModelPackageArn": ARN, "ModelApprovalStatus": "Approved"}}
LAMBDA_ENV = {"SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/r", "BUCKET": "b"}
EVENT_CASES = {
    "event_missing_detail_fields": (
        lambda d: [d.pop("ModelPackageVersion"), d.pop("ModelApprovalStatus")],
        "event.detail: missing ModelPackageVersion, ModelApprovalStatus"),
    "event_unknown_status": (
        lambda d: d.update(ModelApprovalStatus="Approve"),
        "event.detail.ModelApprovalStatus: expected one of ['Approved', 'PendingManualApproval', "
        "'Rejected'], got 'Approve'"),
}


@pytest.mark.parametrize("case", list(EVENT_CASES))
def test_event(case, capsys):
    event = copy.deepcopy(EVENT)
    breaker, message = EVENT_CASES[case]
    breaker(event["detail"])
    with pytest.raises(fn.MalformedEvent) as info:
        fn.lambda_handler(event, None, client=NoCalls(), environ=LAMBDA_ENV)
    assert str(info.value) == message
    logged = capsys.readouterr().out.splitlines()
    assert len(logged) == 1
    assert json.loads(logged[0]) == {"level": "ERROR", "logger": "informer.approval",
                                     "message": "malformed event", "error": message}


# the same single line from the real console scripts -------------------------------------------
def test_console_scripts_answer_one_line(model, tmp_path):
    source = tmp_path / "history.csv"
    source.write_text(csv_text().replace(",", ";"))
    tampered = tmp_path / "tampered"
    constant_artifact(tampered)
    flip_last_byte(tampered / WEIGHTS)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    commands = {
        "informer.cli.forecast": ([f"model={model}", f"input={source}",
                                   f"output={tmp_path / 'f.csv'}",
                                   f"hydra.run.dir={tmp_path / 'run'}"],
                                  f"{source}: the header 'date;a;b;OT' is one column"),
        "sagemaker_jobs.serve": (["--model-dir", str(tampered), "--port", "0"],
                                 f"{tampered}/weights.pt: sha256 does not match"),
    }
    procs = {name: subprocess.Popen([sys.executable, "-m", name, *args], cwd=tmp_path, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (args, _) in commands.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (name, err)
        assert len(err.splitlines()) == 1 and err.startswith(f"error: {commands[name][1]}"), err
    assert not (tmp_path / "f.csv").exists()


# fault: a local Batch Transform killed halfway ------------------------------------------------
def _transform_inputs(folder: Path, files: int, records: int) -> dict[str, list[str]]:
    folder.mkdir(parents=True)
    ids = {}
    history = frame(20).to_dict(orient="list")
    for f in range(files):
        ids[f"part{f}.jsonl"] = [f"p{f}-{i}" for i in range(records)]
        (folder / f"part{f}.jsonl").write_text("".join(
            json.dumps({"id": i, "history": history}) + "\n" for i in ids[f"part{f}.jsonl"]))
    return ids


def _check_outputs(out: Path, ids: dict[str, list[str]], complete: bool) -> None:
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith(".")], names  # no temp file
    if complete:
        assert names == sorted(f"{n}.out" for n in ids)
    for name in names:
        lines = (out / name).read_text().splitlines()
        assert [json.loads(line)["id"] for line in lines] == ids[name.removesuffix(".out")]


@pytest.fixture
def one_thread():
    """Tiny forecasts are much faster on one intra-op thread on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {**os.environ, "OMP_NUM_THREADS": "1"}
    torch.set_num_threads(threads)


def test_transform_killed_halfway_then_rerun_has_no_duplicate_lines(model, tmp_path, one_thread):
    """SIGKILL while files remain, with the output folder inside the input folder: complete
    ``.out`` files or none; the rerun writes every file once, line for line."""
    source = tmp_path / "in"
    ids = _transform_inputs(source, files=5, records=60)
    out = source / "out"  # inside the input folder: must not be read back as input
    args = [sys.executable, "-m", "sagemaker_jobs.transform", "--model-dir", str(model),
            "--input", str(source), "--output", str(out), "--split-type", "Line",
            "--batch-strategy", "SingleRecord", "--assemble-with", "Line"]
    proc = subprocess.Popen(args, cwd=REPO, env=one_thread, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "part0.jsonl.out").exists() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in out.iterdir())
    assert "part4.jsonl.out" not in done, "the run finished before it was killed"
    _check_outputs(out, ids, complete=False)
    (out / ".part4.jsonl.out.x1y2z3").write_text('{"id": "p4-0"}\n')  # killed mid-write

    again = subprocess.run(args, cwd=REPO, env=one_thread, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    _check_outputs(out, ids, complete=True)
    assert not (out / "out").exists()


def test_transform_crash_mid_file_leaves_no_partial_output(model, tmp_path, monkeypatch,
                                                            one_thread):
    """An exception in the middle of a file (here the 7th request): earlier files complete,
    that file absent; a rerun completes every file once."""
    source = tmp_path / "in"
    ids = _transform_inputs(source, files=3, records=4)
    out = tmp_path / "out"
    calls = {"n": 0}
    real = serve.invoke

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(serve, "invoke", flaky)
    with pytest.raises(KeyboardInterrupt):
        transform.run(str(model), source, out, split_type="Line", strategy="SingleRecord",
                      assemble_with="Line")
    assert sorted(p.name for p in out.iterdir()) == ["part0.jsonl.out"]
    _check_outputs(out, ids, complete=False)
    monkeypatch.setattr(serve, "invoke", real)
    transform.run(str(model), source, out, split_type="Line", strategy="SingleRecord",
                  assemble_with="Line")
    _check_outputs(out, ids, complete=True)


# fault: the local registry crashes between the status change and the event --------------------
class FakeSageMaker:
    """The five calls the approval Lambda makes, in memory."""

    def __init__(self) -> None:
        self.models: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}

    def create_model(self, **request):
        if request["ModelName"] in self.models:
            raise RuntimeError("ValidationException: model already exists")
        self.models[request["ModelName"]] = request

    def create_transform_job(self, **request):
        if request["TransformJobName"] in self.jobs:
            raise RuntimeError("ValidationException: job already exists")
        self.jobs[request["TransformJobName"]] = request

    def describe_model_package(self, ModelPackageName):  # noqa: N803 - boto3's names
        return {"ModelPackageArn": ModelPackageName, "CustomerMetadataProperties": {
            "TransformInput": "s3://b/batch-input/informer-models/"}}

    def describe_model(self, ModelName):  # noqa: N803
        if ModelName not in self.models:
            raise RuntimeError(f"Could not find model {ModelName}")
        return self.models[ModelName]

    def describe_transform_job(self, TransformJobName):  # noqa: N803
        if TransformJobName not in self.jobs:
            raise RuntimeError(f"Could not find job {TransformJobName}")
        return self.jobs[TransformJobName]


def test_registry_crash_before_delivery_resends_once(tmp_path, capsys):
    """The status change and its event commit together; the event stays pending until it was
    handled, so the next command re-sends it, and the Lambda's idempotency keeps a re-send
    (or a duplicate) to one model and one transform job."""
    from mlops.local.registry import Registry

    def event_for(package):
        return {**EVENT, "detail": {k: package[k] for k in EVENT["detail"]}}

    registry = Registry(tmp_path / "registry.db")
    registry.register("informer-models", "s3://b/m.tar.gz", {"mse": 0.4})
    registry.set_status("informer-models", 1, "Approved", event_for)
    # crash here: the event was never delivered; a new process opens the registry
    sagemaker = FakeSageMaker()
    results, delivered = [], set()
    for _ in range(2):  # the next command, and a second one racing it
        for event_id, event in Registry(tmp_path / "registry.db").pending_events():
            results.append(fn.lambda_handler(event, None, client=sagemaker,
                                             environ=LAMBDA_ENV)["status"])
            delivered.add(event_id)
    for event_id in delivered:
        Registry(tmp_path / "registry.db").mark_delivered(event_id)
    assert results == ["started", "already_started"]
    assert list(sagemaker.jobs) == ["informer-models-v1"] and list(sagemaker.models) == \
        ["informer-models-v1"]
    assert Registry(tmp_path / "registry.db").pending_events() == []
    capsys.readouterr()


# fault: `informer-mlops local approve` killed while its transform job runs ---------------------
def _local_loop_with_a_registered_model(model: Path, state: Path, histories: int) -> None:
    """A state directory holding ``model`` as ``informer-models`` v1 (pending approval) and
    ``histories`` CSV histories as the group's transform input."""
    import tarfile

    from mlops.local.registry import Registry
    from mlops.local.state import StateDir

    local = StateDir(state)
    uri = local.s3_uri("informer/models/e1/model.tar.gz")
    local.s3_path(uri).parent.mkdir(parents=True)
    with tarfile.open(local.s3_path(uri), "w:gz") as tar:
        for path in model.iterdir():
            tar.add(path, arcname=path.name)
    inputs = local.s3_path(local.s3_uri("batch-input/informer-models/x"))
    inputs.parent.mkdir(parents=True)
    for i in range(histories):
        frame(20, start=f"2018-06-{1 + i % 28:02d}").to_csv(inputs.parent / f"h{i:03d}.csv",
                                                              index=False)
    Registry(local.registry).register("informer-models", uri, {"mse": 0.4}, customer_metadata={
        "TransformInput": local.s3_uri("batch-input/informer-models/")})


def _jobs(state: Path) -> list[tuple[str, str]]:
    from mlops.local.registry import Registry

    return [(r["name"], r["status"]) for r in Registry(state / "registry.db").query(
        "SELECT name, status FROM transform_jobs ORDER BY created")]


def test_approve_killed_during_transform_is_found_failed_and_retried(model, tmp_path,
                                                                      one_thread):
    """SIGKILL to ``local approve`` while its transform job runs: the job's record names the
    dead process, so the next ``local status`` marks it Failed with the reason and the
    re-delivered event starts it again under a new name (``-r2``), which writes every
    forecast; ``--json`` prints the JSON report and nothing else."""
    state = tmp_path / "state"
    _local_loop_with_a_registered_model(model, state, histories=150)
    env = {**one_thread, "INFORMER_MLOPS_HOME": str(state)}
    approve = subprocess.Popen([sys.executable, "-m", "mlops.cli", "local", "approve",
                                "informer-models"], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (state / "registry.db").is_file() or not _jobs(state):
        assert approve.poll() is None and time.monotonic() < deadline, approve.stderr.read()
        time.sleep(0.01)
    approve.send_signal(signal.SIGKILL)
    approve.wait()
    assert _jobs(state) == [("informer-models-v1", "InProgress")], "finished before the kill"
    forecasts = state / "forecasts" / "informer-models" / "v1"

    status = subprocess.run([sys.executable, "-m", "mlops.cli", "local", "status", "--json"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)  # JSON only: the Lambda's log lines are not on stdout
    jobs = {j["TransformJobName"]: j for j in report["transform_jobs"]}
    assert list(jobs) == ["informer-models-v1", "informer-models-v1-r2"]
    killed = jobs["informer-models-v1"]
    assert killed["TransformJobStatus"] == "Failed"
    assert killed["FailureReason"].startswith(
        f"the process running the job (pid {approve.pid} on host ")
    assert jobs["informer-models-v1-r2"]["TransformJobStatus"] == "Completed"
    assert [r["transform_job_name"] for r in report["redelivered"]] == ["informer-models-v1-r2"]
    assert report["undelivered_events"] == 0
    assert sorted(p.name for p in forecasts.glob("h*.csv.out")) == [f"h{i:03d}.csv.out"
                                                               for i in range(150)]
    again = subprocess.run([sys.executable, "-m", "mlops.cli", "local", "approve",
                            "informer-models"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert _jobs(state) == [("informer-models-v1", "Failed"),
                            ("informer-models-v1-r2", "Completed")]  # no third job
