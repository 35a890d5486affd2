"""Property-based tests (hypothesis) for the three parsers that take outside input: the CSV
reader (informer.data.csv), the JSON Lines / JSON / CSV payload parser of the serving handlers
(sagemaker_jobs.inference) and the hyperparameter -> Hydra override translation
(sagemaker_jobs.hyperparameters). Valid input round-trips; anything else is refused with the
library's own error type (InformerError, PayloadError), never another exception.

Example counts are bounded so the file runs in well under 20 s on 2 cores.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import string
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from informer.cli.common import compose_conf
from informer.data.csv import load_series
from informer.errors import InformerError
from sagemaker_jobs import inference, serve
from sagemaker_jobs.hyperparameters import (
    _KEY,
    _SHELL_KEY,
    compose_config,
    decode_key,
    encode_key,
    shell_safe,
    to_overrides,
)
from tests.test_forecast import constant_artifact

FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(FAST, max_examples=25)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """One folder for the files every example rewrites."""
    return tmp_path_factory.mktemp("properties")


# CSV files ------------------------------------------------------------------------------------
FREQS = {"h": "h", "15min": "15min", "D": "D"}
FORMATS = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S+01:00"]
finite = st.floats(min_value=-1e30, max_value=1e30, allow_nan=False, allow_infinity=False)
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,7}", fullmatch=True).filter(lambda n: n != "date")


@st.composite
def series(draw):
    """``(frame as written, expected dates, expected values [rows, cols], columns, freq)``."""
    freq = draw(st.sampled_from(sorted(FREQS)))
    columns = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    rows = draw(st.integers(1, 25))
    start = pd.Timestamp(draw(st.datetimes(pd.Timestamp("1990-01-01").to_pydatetime(),
                                           pd.Timestamp("2035-01-01").to_pydatetime())))
    dates = pd.date_range(start.floor("D"), periods=rows, freq=freq)
    fmt = draw(st.sampled_from(FORMATS))
    if fmt.endswith(":%M") and freq != "D":
        dates = dates.floor("min")
    values = np.array(draw(st.lists(st.lists(finite, min_size=len(columns),
                                             max_size=len(columns)),
                                    min_size=rows, max_size=rows)), dtype=np.float64)
    written = pd.DataFrame({"date": dates.strftime(fmt), **{c: values[:, j] for j, c in
                                                            enumerate(columns)}})
    expected = dates - pd.Timedelta(hours=1) if fmt.endswith("+01:00") else dates
    return written, pd.DatetimeIndex(expected), values, columns, FREQS[freq]


@FAST
@given(series())
def test_valid_csv_round_trips(work, data):
    written, dates, values, columns, freq = data
    path = work / "valid.csv"
    written.to_csv(path, index=False)
    got_dates, got, order, source = load_series(path, target=columns[-1], features="M",
                                                freq=freq)
    assert order == columns and source == columns
    assert list(got_dates) == list(dates)
    assert np.array_equal(got, values)  # to_csv writes repr(float): exact


def _mutate(text: str, kind: int, at: float, junk: str) -> str:
    lines = text.split("\n")
    i = min(int(at * len(lines)), len(lines) - 1)
    pos = int(at * len(text))
    if kind == 0:  # one cell replaced by arbitrary text
        cells = lines[i].split(",")
        cells[int(at * 97) % len(cells)] = junk
        lines[i] = ",".join(cells)
    elif kind == 1:  # a line dropped
        del lines[i]
    elif kind == 2:  # a line repeated
        lines.insert(i, lines[i])
    elif kind == 3:  # junk inserted anywhere
        return text[:pos] + junk + text[pos:]
    elif kind == 4:  # cut short
        return text[:pos]
    elif kind == 5:  # two lines swapped
        j = (i + 1) % len(lines)
        lines[i], lines[j] = lines[j], lines[i]
    else:  # another delimiter on one line
        lines[i] = lines[i].replace(",", junk[:1] or ";")
    return "\n".join(lines)


@FAST
@given(series(), st.integers(0, 6), st.floats(0, 0.999), st.text(max_size=12))
@example(data=None, kind=0, at=0.5, junk="1e999")
@example(data=None, kind=0, at=0.5, junk="2018-06-01 00:00:00+05:00")
def test_corrupted_csv_is_refused_with_informer_error(work, data, kind, at, junk):
    if data is None:  # the explicit examples: mixed time zones, overflow
        data = (pd.DataFrame({"date": [f"2020-01-01 0{h}:00:00+0{h % 2}:00" for h in range(4)],
                              "a": [1.0, 2.0, 3.0, 4.0]}), None, None, ["a"], "h")
    written, _, _, columns, freq = data
    path = work / "corrupt.csv"
    path.write_text(_mutate(written.to_csv(index=False), kind, at, junk))
    try:
        dates, values, _, _ = load_series(path, target=columns[-1], features="M", freq=freq)
    except InformerError as err:
        assert "\n" not in str(err).strip() and str(path) in str(err)
    else:  # a corruption that left a valid file: it still satisfies every check
        assert dates.is_monotonic_increasing and dates.is_unique
        assert np.isfinite(values).all()


@FAST
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
@example(b"\xff\xfe" + "date,a\n".encode("utf-16-le"))
@example(b"date,a\n2020-01-01,1\n2020-01-01 01:00:00+05:00,2\n2020-01-01 02:00+01:00,3\n")
def test_arbitrary_bytes_never_crash_the_csv_reader(work, blob):
    path = work / "blob.csv"
    path.write_bytes(blob)
    with contextlib.suppress(InformerError):  # and nothing else
        load_series(path, target="a", features="M", freq="h")


# payloads -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(work):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny forecasts; a shared 2-core machine
    yield inference.model_fn(str(constant_artifact(work / "model")[0]))
    torch.set_num_threads(threads)


ids = st.one_of(st.none(), st.integers(-(2**53), 2**53), st.text(max_size=10),
                st.floats(allow_nan=False, allow_infinity=False))


def a_history(rows: int = 18) -> pd.DataFrame:
    dates = pd.date_range("2018-06-01", periods=rows, freq="h")
    return pd.DataFrame({"date": dates.strftime("%Y-%m-%d %H:%M:%S"),
                         **{c: np.linspace(i, i + 1, rows) for i, c in enumerate("ab")},
                         "OT": np.arange(rows, dtype=float)})


@st.composite
def jsonl_batches(draw):
    records, texts = [], []
    for i in range(draw(st.integers(1, 4))):
        history = a_history(draw(st.integers(16, 20)))
        record = {"history": history.to_dict(orient=draw(st.sampled_from(["list",
                                                                          "records"])))}
        if draw(st.booleans()):
            record["id"] = draw(ids)
        records.append((record.get("id", i + 1), history))
        texts.append(json.dumps(record, ensure_ascii=draw(st.booleans())))
        if draw(st.booleans()):
            texts.append(draw(st.sampled_from(["", " ", "\t"])))  # blank lines are skipped
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return newline.join(texts).encode(), records


@FAST
@given(jsonl_batches())
@example(batch=(json.dumps({"id": "a\u2028b\x85c", "history": a_history().to_dict("list")},
                           ensure_ascii=False).encode(), [("a\u2028b\x85c", a_history())]))
def test_valid_jsonlines_round_trip(model, batch):
    body, records = batch
    request = inference.input_fn(body, "application/jsonlines")
    assert request.ids == [i for i, _ in records]
    for frame, (_, history) in zip(request.histories, records):
        assert list(frame["date"]) == list(history["date"])
        for column in ("a", "b", "OT"):
            assert frame[column].tolist() == history[column].tolist()
    status, answer, kind = serve.invoke(model, body, "application/jsonlines", None)
    assert (status, kind) == (200, "application/jsonlines"), answer
    out = [json.loads(line) for line in answer.decode().split("\n")]
    assert [o["id"] for o in out] == [i for i, _ in records]  # one line per record, in order
    assert all(len(o["forecast"]["OT"]) == 5 for o in out)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=20)


@st.composite
def near_valid(draw):
    """A JSON record whose history is close to valid, with arbitrary values in places."""
    history = a_history(draw(st.integers(0, 20))).to_dict(orient="list")
    for _ in range(draw(st.integers(0, 3))):
        column = draw(st.sampled_from(["date", "a", "b", "OT", "extra"]))
        if draw(st.booleans()) and isinstance(history.get(column), list) and history[column]:
            cells = list(history[column])
            cells[draw(st.integers(0, len(cells) - 1))] = draw(json_values)
            history[column] = cells
        else:
            history[column] = draw(json_values)
    return json.dumps({"id": draw(json_values), "history": history}).encode()


bodies = st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode),
                   json_values.map(lambda v: json.dumps(v).encode()), near_valid())


@FAST
@given(bodies, st.sampled_from(["application/jsonlines", "application/json", "text/csv",
                                "application/x-ndjson", "image/png", None]),
       st.sampled_from([None, "text/csv", "application/json", "application/jsonlines"]))
@example(b"[" * 100_000, "application/json", None)
@example(b'{"id": 1, "history": {"date": ["2018-06-01"], "a": [1e999]}}',
         "application/jsonlines", "text/csv")
def test_arbitrary_payloads_get_a_client_error_never_a_crash(model, body, content_type, accept):
    try:
        inference.input_fn(body, content_type)
    except inference.PayloadError as err:
        assert 400 <= err.status_code < 500
    status, answer, kind = serve.invoke(model, body, content_type, accept)  # raises nothing else
    assert status == 200 or (400 <= status < 500 and kind == "text/plain")
    if status != 200:
        assert answer.startswith(b"error: ") and b"\n" not in answer


# hyperparameters ------------------------------------------------------------------------------
def _leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


LEAVES = sorted(_leaves(OmegaConf.to_container(compose_conf("train", []), resolve=False)))
PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
values = st.one_of(st.integers(-10**6, 10**6).map(str),
                   st.floats(allow_nan=False, allow_infinity=False).map(repr),
                   st.sampled_from(["true", "false", "null", "[1,2]", "{a: 1}", "'quoted'",
                                    "${data.seq_len}", "a,b", "a=b", "x y", ""]),
                   st.text(string.printable, max_size=12))
keys = st.one_of(st.sampled_from(LEAVES), st.sampled_from(LEAVES).map(lambda k: "++" + k),
                 st.from_regex(r"\+?[a-z]{1,6}(\.[a-z_]{1,6}){0,2}", fullmatch=True),
                 st.sampled_from(["experiment", "model", "trainer", "data", "callbacks"]))


@SLOW
@given(keys, values)
@example("data.target", "my col")
@example("data.target", "a'b\\c")
@example("trainer", "gpu")
@example("experiment", "null")  # Hydra raised a bare ValueError for this one
def test_hyperparameters_compose_or_fail_with_one_clear_line(key, value):
    try:
        cfg = compose_config(to_overrides([(key, value)]))
    except InformerError as err:
        assert "\n" not in str(err).strip()
        assert str(err).startswith(("hyperparameter", "hyperparameters:")), err
        return
    path = key.lstrip("+")
    if path in LEAVES and PLAIN.match(value) and value.lower() not in (
            "true", "false", "null", "nan", "inf", "none"):
        assert OmegaConf.select(cfg, path) == value  # a plain word arrives as it was sent


def _surrogates(value: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in value)


@FAST
@given(st.from_regex(_KEY.pattern, fullmatch=True), st.text(max_size=20))
@example("++callbacks.a._target_", "x")
@example("a_.b", "x")
@example("model.my__param", "x")
@example("seed", "\ud800")
def test_shell_safe_spelling_round_trips_or_is_refused(key, value):
    try:
        encoded, sent = shell_safe(key, value)
    except InformerError as err:
        assert "'" in value or "\0" in value or decode_key(encode_key(key)) != key or \
            not _SHELL_KEY.match(encode_key(key)) or _surrogates(value), err
        return
    assert _SHELL_KEY.match(encoded) and decode_key(encoded) == key and sent == value


@settings(FAST, max_examples=10)
@given(st.lists(st.tuples(st.sampled_from(LEAVES),
                          st.text(st.characters(), max_size=20)),
                min_size=1, max_size=8))
def test_shell_safe_values_survive_the_container_drivers_shell(work, pairs):
    """What SDK v3's driver does: ``export SM_HP_<KEY>='<value>'`` lines sourced by bash."""
    exports, expected = [], {}
    for key, value in pairs:
        try:
            encoded, value = shell_safe(key, value)
        except InformerError:
            assert "'" in value or "\0" in value or _surrogates(value)
            continue
        name = f"SM_HP_{encoded.upper().replace('-', '_')}"
        exports.append(f"export {name}='{value}'")
        expected[name] = value
    script = work / "hps.sh"
    script.write_text("\n".join(exports) + "\n")
    dump = "import json, os; print(json.dumps({k: v for k, v in os.environ.items() " \
           "if k.startswith('SM_HP_')}))"
    proc = subprocess.run(["bash", "-c", f"set -e; source {script}; python3 -c \"{dump}\""],
                          capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"]})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == expected
