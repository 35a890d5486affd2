"""SageMaker processing scripts in temporary /opt/ml/processing trees: preprocessing (validation,
dataset, profile) and evaluation (model.tar.gz -> evaluation.json)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
import torch

from informer.artifact import load_model, save_artifact
from informer.config import InformerConfig
from informer.data.series import SeriesData
from informer.errors import InformerError
from informer.evaluation import evaluate
from informer.nn.model import Informer
from sagemaker_jobs import evaluate as sm_evaluate
from sagemaker_jobs import preprocess
from sagemaker_jobs.package import package_model
from tests.conftest import ETT_DIR, write_series

WINDOWS = {"seq_len": 48, "label_len": 48, "pred_len": 24}


def make_model_tar(directory: Path, split: str = "ett_hour") -> Path:
    """``model.tar.gz`` as a training job leaves it: an (untrained) tiny artifact + code/."""
    series = SeriesData.fit(ETT_DIR / "ETTh1.csv", split=split, **WINDOWS)
    torch.manual_seed(0)
    net = Informer(InformerConfig(enc_in=7, dec_in=7, c_out=7, d_model=16, n_heads=2, d_ff=32,
                                  factor=3, **WINDOWS))
    artifact = save_artifact(directory / "artifact", net.eval(), series.schema,
                             run_config={"data": {"file": "ETTh1.csv", "split": split}})
    model_dir = package_model(artifact, directory / "model_dir")
    directory.joinpath("model").mkdir()
    with tarfile.open(directory / "model" / "model.tar.gz", "w:gz") as tar:
        for item in sorted(model_dir.iterdir()):
            tar.add(item, arcname=item.name)
    return directory / "model"


# preprocessing ---------------------------------------------------------------------------------
def test_preprocess_writes_the_validated_dataset_and_a_profile(tmp_path, capsys):
    (tmp_path / "input").mkdir()
    shutil.copy(ETT_DIR / "ETTh1.csv", tmp_path / "input")
    out = tmp_path / "output"
    profile = preprocess.run(["--experiment", "etth1_M_24", "--input-dir",
                              str(tmp_path / "input"), "--output-dir", str(out)])
    dataset = out / "dataset" / "ETTh1.csv"
    assert dataset.read_bytes() == (ETT_DIR / "ETTh1.csv").read_bytes()
    saved = json.loads((out / "profile" / "profile.json").read_text())
    assert saved == json.loads(json.dumps(profile))
    assert (saved["rows"], saved["freq"], saved["date_start"], saved["date_end"]) == \
        (17420, "h", "2016-07-01 00:00:00", "2018-06-26 19:00:00")
    assert {k: v["windows"] for k, v in saved["splits"].items()} == \
        {"train": 8569, "val": 2857, "test": 2857}
    assert saved["train_scaler"]["OT"]["std"] == pytest.approx(9.1765, abs=1e-4)
    assert set(saved["stats"]["OT"]) == {"mean", "std", "min", "max"}
    assert "validated ETTh1.csv: 17420 rows" in capsys.readouterr().out


def test_preprocess_picks_the_only_csv_for_custom_data(tmp_path):
    (tmp_path / "input").mkdir()
    write_series(tmp_path / "input" / "sales.csv", n=300, freq="d")
    result = preprocess.run(["--data", "custom", "--data.freq", "d", "--data.seq_len", "24",
                             "--data.label_len", "12", "--data.pred_len", "6",
                             "--data.batch_size", "8", "--input-dir", str(tmp_path / "input"),
                             "--output-dir", str(tmp_path / "output")])
    assert result["file"] == "sales.csv" and result["splits"]["train"]["rows"] == 210
    assert (tmp_path / "output" / "dataset" / "sales.csv").is_file()


def test_bad_raw_data_exits_2_with_the_exit_message_and_no_outputs(tmp_path, capsys):
    (tmp_path / "input").mkdir()
    path = write_series(tmp_path / "input" / "s.csv", n=200)
    lines = path.read_text().splitlines()
    lines[50] = lines[50].split(",")[0] + ",1,oops,3"
    path.write_text("\n".join(lines) + "\n")
    message = tmp_path / "output_msg" / "message"
    message.parent.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        preprocess.main(["--data", "custom", "--data.seq_len", "24", "--data.label_len", "12",
                         "--data.pred_len", "6", "--input-dir", str(tmp_path / "input"),
                         "--output-dir", str(tmp_path / "output"), "--message-file",
                         str(message)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}: column 'b' line 51: expected a finite number, got 'oops'"
    assert message.read_text().strip() == err.removeprefix("error: ")
    assert not (tmp_path / "output").exists()


# evaluation ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_tar(tmp_path_factory) -> Path:
    return make_model_tar(tmp_path_factory.mktemp("model"))


def test_evaluation_json_in_model_quality_form_matches_informer_eval(model_tar, tmp_path):
    data = tmp_path / "test"
    data.mkdir()
    (data / "ETTh1.csv").symlink_to(ETT_DIR / "ETTh1.csv")
    out = tmp_path / "evaluation"
    report = sm_evaluate.run(["--model-dir", str(model_tar), "--data-dir", str(data),
                              "--output-dir", str(out), "--batch_size", "512",
                              "--batch-input-dir", str(tmp_path / "batch-input")])
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved == json.loads(json.dumps(report))
    metrics = saved["regression_metrics"]
    assert {"mse", "mae", "rmse", "mape"} <= set(metrics)
    assert {"mse_original", "mae_original", "rmse_original", "mape_original"} <= set(metrics)
    assert saved["split"] == "test" and saved["windows"] == 2857
    for entry in metrics.values():
        assert set(entry) == {"value", "standard_deviation"}
        assert entry["standard_deviation"] is None or entry["standard_deviation"] >= 0
    # the same figures as informer-eval's evaluate() on the extracted artifact
    extracted = tmp_path / "x"
    extracted.mkdir()
    with tarfile.open(model_tar / "model.tar.gz") as tar:
        tar.extractall(extracted, filter="data")
    loaded = load_model(extracted)
    series = SeriesData.with_schema(ETT_DIR / "ETTh1.csv", loaded.schema, split="ett_hour")
    reference = evaluate(loaded.net, loaded.schema, series.dataset("test"), 512)
    for key in ("mse", "mae", "rmse", "mse_original", "mae_original", "rmse_original"):
        assert metrics[key]["value"] == pytest.approx(reference[key], rel=1e-9), key
    assert metrics["rmse"]["value"] == pytest.approx(metrics["mse"]["value"] ** 0.5)
    assert 0 < metrics["mse"]["standard_deviation"] < metrics["mse"]["value"] * 10
    # skill against both naive baselines; the condition reads the better baseline's
    skill = saved["skill"]
    for name in ("seasonal_naive", "window_mean"):
        assert skill[name]["value"] == pytest.approx(reference[f"skill_{name}"], rel=1e-9)
        assert skill[name]["baseline_mse"] == pytest.approx(reference[f"mse_{name}"], rel=1e-9)
        assert len(skill[name]["by_step"]) == 24
    best = min(("seasonal_naive", "window_mean"), key=lambda n: skill[n]["baseline_mse"])
    assert skill["best_baseline"] == best and skill["value"] == skill[best]["value"]
    assert "interval_metrics" not in saved  # a point model


def test_evaluate_writes_the_transform_input_of_the_version(model_tar, tmp_path):
    """The version's Batch Transform input comes out of the evaluation job: the data file's
    header and its latest seq_len + windows x pred_len rows, byte for byte."""
    data = tmp_path / "test"
    data.mkdir()
    (data / "ETTh1.csv").symlink_to(ETT_DIR / "ETTh1.csv")
    batch = tmp_path / "batch-input"
    sm_evaluate.run(["--model-dir", str(model_tar), "--data-dir", str(data), "--output-dir",
                     str(tmp_path / "ev"), "--batch-input-dir", str(batch),
                     "--backtest-windows", "3"])
    assert [p.name for p in batch.iterdir()] == ["ETTh1.csv"]
    source = (ETT_DIR / "ETTh1.csv").read_text().splitlines(keepends=True)
    rows = WINDOWS["seq_len"] + 3 * WINDOWS["pred_len"]
    assert (batch / "ETTh1.csv").read_text() == "".join([source[0], *source[-rows:]])
    with pytest.raises(InformerError, match="backtest-windows: expected an integer >= 0"):
        sm_evaluate.run(["--model-dir", str(model_tar), "--data-dir", str(data),
                         "--output-dir", str(tmp_path / "ev2"), "--backtest-windows", "-1"])
    assert not (tmp_path / "ev2").exists()


def test_evaluate_refuses_a_missing_model_a_missing_file_and_unsafe_archives(model_tar,
                                                                            tmp_path, capsys):
    args = ["--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "ev"),
            "--message-file", str(tmp_path / "message")]
    with pytest.raises(SystemExit):
        sm_evaluate.main(["--model-dir", str(tmp_path / "none"), *args])
    assert "no model.tar.gz and no artifact" in (tmp_path / "message").read_text()
    with pytest.raises(SystemExit):
        sm_evaluate.main(["--model-dir", str(model_tar), *args])
    assert "file: 'ETTh1.csv' not found in" in (tmp_path / "message").read_text()
    evil = tmp_path / "evil"
    evil.mkdir()
    with tarfile.open(evil / "model.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(SystemExit):
        sm_evaluate.main(["--model-dir", str(evil), *args])
    assert "unsafe member '../escape.txt'" in (tmp_path / "message").read_text()
    assert not (tmp_path / "escape.txt").exists()
    assert capsys.readouterr().err.count("error: ") == 3
