"""Every bad-input case exits non-zero with one clear line and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from informer.cli.common import user_errors
from informer.cli.train import train
from tests.conftest import ETT_DIR, REPO, write_series


def run_train(cfg, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info, user_errors():
        train(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def custom(tmp_path, name="s.csv"):
    return ["data=custom", f"data.data_dir={tmp_path}", f"data.file={name}", "data.seq_len=24",
            "data.label_len=12", "data.pred_len=6"]


def set_cell(path, row: int, column: str, text: str):
    frame = pd.read_csv(path, dtype=str)
    frame.loc[row, column] = text
    frame.to_csv(path, index=False)


def edit_csv(path, old: str, new: str, count: int = 1):
    path.write_text(path.read_text().replace(old, new, count))


CSV_CASES = {
    "missing file": (lambda p: p.unlink(), "s.csv: file not found"),
    "no date column": (lambda p: edit_csv(p, "date,", "time,"), "no 'date' column"),
    "unparsable date": (lambda p: edit_csv(p, "2020-01-01 05:00:00", "yesterday"),
                        "column 'date' line 7: cannot parse 'yesterday' as a timestamp"),
    "duplicate timestamp": (lambda p: edit_csv(p, "2020-01-01 05:00:00", "2020-01-01 04:00:00"),
                            "line 7: duplicate timestamp 2020-01-01 04:00:00"),
    "unsorted timestamps": (lambda p: edit_csv(p, "2020-01-01 05:00:00", "2020-01-01 01:30:00"),
                            "line 7: timestamps out of order"),
    "gap vs freq": (lambda p: edit_csv(p, "2020-01-01 05:00:00", "2020-01-01 05:30:00"),
                    "line 7: expected 2020-01-01 05:00:00 one step ('h') after"),
    "non-numeric": (lambda p: set_cell(p, 3, "a", "abc"),
                    "column 'a' line 5: expected a finite number, got 'abc'"),
    "nan": (lambda p: set_cell(p, 3, "a", "NaN"),
            "column 'a' line 5: expected a finite number, got a missing value"),
    "empty cell": (lambda p: set_cell(p, 9, "OT", ""),
                   "column 'OT' line 11: expected a finite number, got a missing value"),
    "inf": (lambda p: set_cell(p, 3, "b", "inf"),
            "column 'b' line 5: expected a finite number, got 'inf'"),
    "header only": (lambda p: p.write_text("date,a,b,OT\n"), "no data rows"),
    "ragged row": (lambda p: edit_csv(p, "\n2020-01-01 03:00:00,", "\n2020-01-01 03:00:00,1,"),
                   "not a readable CSV file (Error tokenizing data."),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_bad_csv(case, tmp_path, train_cfg, capsys):
    path = write_series(tmp_path / "s.csv", n=300)
    breaker, message = CSV_CASES[case]
    breaker(path)
    out = tmp_path / "run"
    err = run_train(train_cfg(*custom(tmp_path), out=out), capsys)
    assert message in err
    assert not (out / "model").exists() and not (out / "metrics.json").exists()


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.target=FOO"], "data.target: 'FOO' is not a column of"),
    (["data.features=X"], "data.features: expected one of ['M', 'S', 'MS']"),
    (["data.label_len=30"], "data.label_len: expected label_len <= seq_len (24), got 30"),
    (["data.seq_len=250"], "data: the train split has 210 rows but seq_len + pred_len = 256"),
    (["data.batch_size=64", "data.seq_len=150"],
     "data.batch_size: the train split has 55 windows, fewer than one batch of 64"),
    (["data.split=weekly"], "data.split: expected one of ['ett_hour', 'ett_minute', 'ratio']"),
    (["model.net.d_model=30", "model.net.n_heads=4"],
     "model.net.d_model: expected a multiple of n_heads"),
    (["data.freq=nonsense"], "data.freq: expected a pandas offset alias"),
])
def test_bad_settings(overrides, message, tmp_path, train_cfg, capsys):
    write_series(tmp_path / "s.csv", n=300)
    err = run_train(train_cfg(*custom(tmp_path), *overrides), capsys)
    assert message in err


def test_ett_split_needs_the_full_file(tmp_path, train_cfg, capsys):
    write_series(tmp_path / "ETTh1.csv", n=1000)
    err = run_train(train_cfg(f"data.data_dir={tmp_path}"), capsys)
    assert "data.split: 'ett_hour' needs the full ETT file (14400 rows), got 1000 rows" in err


def cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_user_error_is_one_line_without_traceback(tmp_path):
    proc = cli("informer.cli.train", "experiment=etth1_M_24", "data.label_len=100",
               f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: data.label_len: expected label_len <= seq_len (48), got 100")
    assert not (tmp_path / "run" / "model").exists()


def test_cli_missing_data_file(tmp_path):
    proc = cli("informer.cli.train", "data=custom", "data.file=nope.csv",
               f"data.data_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path}/nope.csv: file "
                                                          "not found")


def test_eval_requires_model_path(tmp_path):
    proc = cli("informer.cli.evaluate", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: Missing mandatory value: model_path"


def test_failed_download_leaves_nothing_behind(tmp_path):
    from informer.data.sources import download_ett
    from informer.errors import InformerError

    target = tmp_path / "new" / "dir"
    with pytest.raises(InformerError, match="download failed"):
        download_ett("ETTh1.csv", target, url=f"file://{tmp_path}/missing.csv")
    assert not (tmp_path / "new").exists()


def test_download_is_checksum_verified(tmp_path, ett_dir):
    from informer.data.sources import download_ett, sha256_file
    from informer.errors import InformerError

    good = download_ett("ETTh2.csv", tmp_path / "ok", url=(ett_dir / "ETTh2.csv").as_uri())
    assert sha256_file(good) == sha256_file(ett_dir / "ETTh2.csv")
    with pytest.raises(InformerError, match="sha256 .* does not match the expected"):
        download_ett("ETTh1.csv", tmp_path / "bad", url=(ett_dir / "ETTh2.csv").as_uri())
    assert not (tmp_path / "bad" / "ETTh1.csv").exists()


@pytest.mark.parametrize(("module", "args", "message"), [
    ("informer.cli.train", ["trainer.max_epoch=3"],
     "error: trainer.max_epoch: 'trainer' has no key 'max_epoch'; did you mean 'max_epochs'?"),
    ("informer.cli.train", ["experiment=quickstrat"],
     "error: experiment=quickstrat: no such option in conf/experiment; did you mean "
     "'quickstart'?"),
    ("informer.cli.train", ["experiment=nope"],
     f"error: experiment=nope: no such option in conf/experiment; expected one of the "
     f"{len(list((REPO / 'conf' / 'experiment').glob('*.yaml')))} files in "
     f"{REPO / 'conf' / 'experiment'}"),
    ("informer.cli.train", ["logger=csvv"],
     "error: logger=csvv: no such option in conf/logger; did you mean 'csv'?"),
    ("informer.cli.train", ["model.net.d_modle=8"],
     "error: model.net.d_modle: 'model.net' has no key 'd_modle'; did you mean 'd_model'?"),
    ("informer.cli.forecast", ["model=/m", "input=/i", "output=/o", "foo=1"],
     "error: foo: the config has no key 'foo' (use +foo=... to add one)"),
    ("informer.cli.forecast", ["model=/m", "input=/i", "output=/o", "strid=2"],
     "error: strid: the config has no key 'strid'; did you mean 'stride'?"),
])
def test_unknown_override_is_one_line(module, args, message, tmp_path):
    proc = cli(module, *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == message
    assert not (tmp_path / "run").exists()


def test_local_run_typos_are_one_line_before_any_step(tmp_path):
    """``informer-mlops local run`` checks its training overrides before the first step."""
    for token, message in (
            ("experiment=quickstrat", "error: experiment=quickstrat: no such option in "
                                      "conf/experiment; did you mean 'quickstart'?"),
            ("trainer.max_epoch=1", "error: trainer.max_epoch: 'trainer' has no key "
                                    "'max_epoch'; did you mean 'max_epochs'?")):
        proc = cli("mlops.cli", "local", "run", token, "--state-dir", str(tmp_path / "s"),
                   cwd=tmp_path)
        assert (proc.returncode, proc.stderr, proc.stdout) == (2, message + "\n", "")
        assert not (tmp_path / "s" / "logs").exists()


def test_unwritable_forecast_output_is_one_line(tmp_path, trained):
    """An output that cannot be written stops the command before any work: one line naming
    the field and the path, exit 2, nothing written."""
    model = trained / "model"
    area = tmp_path / "area"  # Hydra's run folder goes next to it
    area.mkdir()
    history = area / "history.csv"
    pd.read_csv(ETT_DIR / "ETTh1.csv").tail(200).to_csv(
        history, index=False)
    blocker = area / "file"
    blocker.write_text("a file, not a folder\n")
    before = sorted(p.name for p in area.iterdir())
    for output, why in (("/proc/nope/x.csv", "(No such file or directory)"),
                        (f"{blocker}/x.csv", f": {blocker} is not a directory"),
                        (str(area), "")):
        proc = cli("informer.cli.forecast", f"model={model}", f"input={history}",
                   f"output={output}", "mode=backtest", f"hydra.run.dir={tmp_path / 'run'}",
                   cwd=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        if output == str(area):
            assert lines[0] == f"error: output: {area} is a directory; expected a file path"
        else:
            assert lines[0].startswith(f"error: output: cannot write {output}"), lines
            assert why in lines[0] and "expected a path in a writable directory" in lines[0]
    assert sorted(p.name for p in area.iterdir()) == before
    assert blocker.read_text() == "a file, not a folder\n"


def test_dashboard_source_must_be_a_state_directory(tmp_path):
    """A missing or wrong dashboard source is one line and exit 2, not a page that says
    "No forecasts yet"; nothing is written."""
    (tmp_path / "empty").mkdir()
    for source, what in ((tmp_path / "missing", "is not a directory"),
                         (tmp_path / "empty", "has no registry.db or forecasts/")):
        proc = cli("mlops.cli", "dashboard", f"source={source}",
                   f"output={tmp_path / 'dash.html'}", cwd=tmp_path)
        assert proc.returncode == 2, proc.stdout
        assert proc.stderr == (f"error: source: {source} {what}; expected a state directory "
                               f"(informer-mlops local run makes one) or s3://bucket/prefix\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_known_third_party_noise_is_filtered(tmp_path):
    """The console scripts' entry filters Lightning's litlogger tip and its ``_pytree``
    deprecation warning, and nothing else."""
    code = (
        "import logging, warnings\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "from informer.cli.common import quiet_console\n"
        "quiet_console()\n"
        "from lightning.fabric.utilities.rank_zero import rank_zero_info\n"
        "rank_zero_info('\\N{ELECTRIC LIGHT BULB} Tip: For seamless cloud logging')\n"
        "rank_zero_info('kept info')\n"
        "warnings.warn('`isinstance(treespec, LeafSpec)` is deprecated, use x', "
        "DeprecationWarning)\n"
        "warnings.warn('kept warning')\n")
    proc = subprocess.run([sys.executable, "-W", "default", "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Tip" not in proc.stderr and "LeafSpec" not in proc.stderr
    assert "kept info" in proc.stderr and "UserWarning: kept warning" in proc.stderr
