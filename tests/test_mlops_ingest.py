"""``informer-mlops local ingest``: appending new rows (idempotent, conflicts refused with one
line, nothing lost), scoring the stored forecasts, the drift rule starting one execution per
window. The pipeline run and the next forecast's transform are stand-ins here (the scenario
test, tests/test_mlops_drift_scenario.py, runs them for real)."""

from __future__ import annotations

import io
import math
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from informer.errors import InformerError
from mlops.drift_actions import DriftRule
from mlops.local import monitoring
from mlops.local.ingest import ingest
from mlops.local.registry import Registry
from mlops.local.runner import RunSettings
from mlops.local.state import StateDir

GROUP = "informer-models"
START = datetime(2016, 7, 1)
EVALUATION = {"regression_metrics": {"mse": {"value": 0.5}},
              "schema": {"variables": ["OT"], "mean": [10.0], "std": [1.0], "seq_len": 48,
                         "pred_len": 24, "season": 24, "transform_input_rows": 72}}


def rows(first: int, last: int, shift_from: int | None = None, extra: float = 0.0) -> str:
    """Lines ``date,HUFL,OT`` for hours ``first`` .. ``last - 1`` (OT 10 lower from
    ``shift_from``)."""
    out = []
    for h in range(first, last):
        ot = 10 + math.sin(h / 24 * 2 * math.pi) - (10 if shift_from and h >= shift_from else 0)
        out.append(f"{START + timedelta(hours=h):%Y-%m-%d %H:%M:%S},{h % 7 + extra},{ot}\n")
    return "".join(out)


def report(origin: int, version: int = 1) -> str:
    """A served forecast of the unshifted OT from hour ``origin`` (the serving report)."""
    lines = ["date,model_version,segment,OT_actual,OT"]
    for h in range(origin - 23, origin + 25):
        truth, served = 10 + math.sin(h / 24 * 2 * math.pi), h > origin
        lines.append(f"{START + timedelta(hours=h):%Y-%m-%dT%H:%M:%S},v{version},"
                     f"{'forecast' if served else 'backtest'},{'' if served else truth},{truth}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def state(tmp_path, monkeypatch) -> StateDir:
    """Stored data (hours 0..199), an approved v1 and its first served forecast (origin 199);
    the next forecast is a stand-in that stores its report as the transform would."""
    state = StateDir.resolve(tmp_path / "state")
    stored = state.s3_path(state.s3_uri("data/ETTh1.csv"))
    stored.parent.mkdir(parents=True)
    stored.write_text("date,HUFL,OT\n" + rows(0, 200))
    Registry(state.registry).register(GROUP, "s3://informer-mlops/m.tar.gz", EVALUATION,
                                      status="Approved")
    folder = state.forecasts(GROUP, 1)
    folder.mkdir(parents=True)
    (folder / "ETTh1.csv.out").write_text(report(199))

    def next_forecast(state, registry, package, series, name):
        origin = (series.dates[-1] - START) // timedelta(hours=1)
        target = folder / f"ETTh1-o{origin}.csv.out"
        if target.exists():
            return {"job": target.name, "status": "Completed", "new": False}
        target.write_text(report(origin))
        return {"job": target.name, "status": "Completed", "new": True}

    monkeypatch.setattr(monitoring, "next_forecast", next_forecast)
    return state


@pytest.fixture
def runs(monkeypatch) -> list[RunSettings]:
    """``run_pipeline`` stand-in: records its settings (and the data it was given), registers
    the next version."""
    calls = []

    def run_pipeline(state, settings, out):
        calls.append((settings, settings.data.read_text()))
        package = Registry(state.registry).register(GROUP, "s3://informer-mlops/m2.tar.gz",
                                                    EVALUATION)
        return {"execution": f"exec-{len(calls)}", "package": package}

    monkeypatch.setattr("mlops.local.runner.run_pipeline", run_pipeline)
    return calls


def settings(state: StateDir) -> RunSettings:
    return RunSettings(data=state.root / "unused.csv", experiment="drift_scenario", group=GROUP)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text("date,HUFL,OT\n" + text)
    return path


RULE = DriftRule(window=1, k=2.0)


def test_rows_are_appended_once_and_forecasts_scored_once_covered(state, runs, tmp_path):
    stored = state.s3_path(state.s3_uri("data/ETTh1.csv"))
    out = io.StringIO()
    first = ingest(state, write(tmp_path, "a.csv", rows(190, 212)), settings(state), RULE,
                   out=out)
    assert first["added"] == 12 and first["scored"] == {1: []}  # 12 of the 24 hours: not yet
    assert stored.read_text() == "date,HUFL,OT\n" + rows(0, 212)
    second = ingest(state, write(tmp_path, "b.csv", rows(212, 230)), settings(state), RULE,
                    out=out)
    [scored] = second["scored"][1]
    assert scored["origin"] == "2016-07-09T07:00:00" and scored["mse"] == pytest.approx(0)
    again = ingest(state, write(tmp_path, "b.csv", rows(200, 230)), settings(state), RULE,
                   out=out)
    assert again["added"] == 0 and again["scored"] == {1: []}
    assert stored.read_text() == "date,HUFL,OT\n" + rows(0, 230)
    assert not second["decision"].fire and runs == []
    table = monitoring.scores(Registry(state.registry), GROUP)
    assert [r["origin"] for r in table] == ["2016-07-09T07:00:00"]  # 19:00's covers to 235
    assert len(monitoring.scores(Registry(state.registry), GROUP, 1, step=24)) == 1
    assert "s3://informer-mlops/data/ETTh1.csv: 12 new rows (2016-07-09 08:00:00 .. " \
           "2016-07-09 19:00:00), 212 in all" in out.getvalue()


def test_the_rule_starts_one_execution_and_records_its_figures(state, runs, tmp_path):
    shifted = write(tmp_path, "s.csv", rows(200, 224, shift_from=200))
    result = ingest(state, shifted, settings(state), RULE, out=io.StringIO())
    assert result["decision"].fire and result["trigger"] == {
        "status": "registered", "execution": "exec-1", "version": 2}
    [(given, data)] = runs
    assert given.data.name == "ETTh1.csv" and given.experiment == "drift_scenario"
    assert data == state.s3_path(state.s3_uri("data/ETTh1.csv")).read_text()
    [trigger] = monitoring.triggers(Registry(state.registry), GROUP)
    assert trigger["status"] == "registered" and trigger["registered_version"] == 2
    assert trigger["window_end"] == "2016-07-09T07:00:00"
    assert trigger["figures"]["ratio"] == pytest.approx(200, rel=0.05)
    assert trigger["reason"].startswith("realized MSE 100")
    # the same data again, and a command after it: no second execution
    for _ in range(2):
        ingest(state, shifted, settings(state), RULE, out=io.StringIO())
    assert len(runs) == 1 and len(monitoring.triggers(Registry(state.registry))) == 1


@pytest.mark.parametrize(("text", "message"), [
    (rows(150, 160, extra=0.5),
     r"^{}: 2016-07-07 06:00:00: HUFL is 3\.5, the stored data has 3\.0; expected the stored "
     r"value for a stored timestamp \(nothing written\)$"),
    (rows(200, 203) + rows(204, 205),
     r"^{}: 2016-07-09 12:00:00: expected 2016-07-09 11:00:00 next \(rows every 1:00:00, no "
     r"gaps; nothing written\)$"),
    ("2016-06-30 23:00:00,1,2\n", r"^{}: 2016-06-30 23:00:00: not in the stored data, which "
                                  r"ends at 2016-07-09 07:00:00; expected only rows after it"),
])
def test_conflicting_rows_are_refused_with_one_line_and_nothing_written(state, runs, tmp_path,
                                                                        text, message):
    stored = state.s3_path(state.s3_uri("data/ETTh1.csv"))
    before = stored.read_bytes()
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(InformerError, match=message.format(re.escape(str(path)))):
        ingest(state, path, settings(state), RULE, out=io.StringIO())
    assert stored.read_bytes() == before and runs == []


def test_other_columns_and_a_missing_file_are_refused(state, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("date,OT\n2016-07-09 08:00:00,1\n")
    with pytest.raises(InformerError, match=r"other\.csv: columns date,OT; expected those of "
                                            r"the stored data: date,HUFL,OT$"):
        ingest(state, other, settings(state), RULE, out=io.StringIO())
    with pytest.raises(InformerError, match=r"^csv: .*missing\.csv not found"):
        ingest(state, tmp_path / "missing.csv", settings(state), RULE, out=io.StringIO())
    with pytest.raises(InformerError, match=r"^into: x\.csv: not stored under "
                                            r"s3://informer-mlops/data/ \(\['ETTh1\.csv'\]\)"):
        ingest(state, other, settings(state), RULE, into="x.csv", out=io.StringIO())


def test_the_command_line(state, tmp_path, capsys, monkeypatch):
    from mlops.cli import main

    monkeypatch.setenv("INFORMER_MLOPS_HOME", str(state.root))
    path = write(tmp_path, "bad.csv", rows(150, 151, extra=0.5))
    with pytest.raises(SystemExit) as exit_info:
        main(["local", "ingest", str(path), "drift.window=2", "experiment=drift_scenario"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: 2016-07-07 06:00:00: HUFL")
    with pytest.raises(SystemExit):
        main(["local", "ingest", str(path), "drift.k=-1"])
    assert capsys.readouterr().err == "error: drift.k: expected a positive number, got '-1'\n"
    main(["local", "ingest", str(write(tmp_path, "ok.csv", rows(200, 201))),
          "experiment=drift_scenario"])
    assert "1 new rows" in capsys.readouterr().out


def test_the_dashboard_plots_realized_mse_and_shows_the_latest_forecast(state, runs, tmp_path):
    from mlops.dashboard import build, collect

    for first, last in ((200, 224), (224, 248)):
        ingest(state, write(tmp_path, f"{first}.csv", rows(first, last, shift_from=200)),
               settings(state), DriftRule(window=5), out=io.StringIO())
    data = collect(state.root)
    [v1] = data.forecasts
    assert len(list(state.forecasts(GROUP, 1).glob("*.out"))) == 3
    [latest] = v1.frames  # the newest report only: from the data's end, hour 247
    assert latest["date"].iloc[-1] == f"{START + timedelta(hours=247 + 24):%Y-%m-%dT%H:%M:%S}"
    assert [(r["version"], r["origin"]) for r in data.scores] == [
        ("v1", "2016-07-09T07:00:00"), ("v1", "2016-07-10T07:00:00")]
    page = build(state.root, tmp_path / "dashboard.html").read_text()
    assert "<h2>Monitoring</h2>" in page and "v1 realized MSE" in page
    assert "v1 evaluation MSE" in page and "by forecast origin" in page


def test_a_failed_execution_is_recorded_and_not_retried_for_the_same_window(state, tmp_path,
                                                                           monkeypatch):
    def run_pipeline(state, settings, out):
        raise InformerError("CheckMse: test MSE 3 is above the threshold 1")

    monkeypatch.setattr("mlops.local.runner.run_pipeline", run_pipeline)
    shifted = write(tmp_path, "s.csv", rows(200, 224, shift_from=200))
    result = ingest(state, shifted, settings(state), RULE, out=io.StringIO())
    assert result["trigger"] == {"status": "failed",
                                 "error": "CheckMse: test MSE 3 is above the threshold 1"}
    [trigger] = monitoring.triggers(Registry(state.registry), GROUP)
    assert trigger["status"] == "failed" and trigger["error"].startswith("CheckMse")
    assert ingest(state, shifted, settings(state), RULE, out=io.StringIO())["trigger"] is None
