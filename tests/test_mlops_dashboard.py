"""The dashboard renders in a real (headless) Chromium; the QuickSight manifest is valid."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.dashboard import (
    VersionForecasts,
    build,
    error_figure,
    forecast_figure,
    quicksight_manifest,
)
from mlops.local.registry import Registry

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HOW = "set CHROME=<path> or install one (Debian/Ubuntu: apt-get install -y chromium)"


def find_chromium() -> str | None:
    """``$CHROME``, else the first of :data:`BROWSERS` on ``PATH`` (never installs anything)."""
    chosen = os.environ.get("CHROME")
    if chosen:
        return shutil.which(chosen) or (chosen if os.access(chosen, os.X_OK) else None)
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


@pytest.fixture(scope="session")
def chromium() -> str:
    """A Chromium found on this machine, or a skip saying how to get one."""
    path = find_chromium()
    if path is None:
        if os.environ.get("CHROME"):
            pytest.fail(f"CHROME={os.environ['CHROME']} is not an executable")
        pytest.skip(f"no Chromium found ({', '.join(BROWSERS)}); {HOW}")
    return path


def test_tests_never_run_a_package_manager():
    """The test suite finds Chromium or skips; it installs nothing itself."""
    managers = re.compile(r"\b(apt-get|apt|dnf|yum|brew|apk|pacman|zypper)\b['\"]\s*,")
    here = Path(__file__).parent
    found = [f"{p.name}: {m.group(0)}" for p in sorted(here.rglob("*.py"))
             for m in managers.finditer(p.read_text())]
    assert not found, found


def state_dir(root):
    folder = root / "forecasts" / "informer-etth1" / "v1"
    folder.mkdir(parents=True)
    dates = pd.date_range("2018-06-20", periods=120, freq="h")
    history = pd.DataFrame({"date": dates[:96], "HUFL_actual": np.cos(np.arange(96) / 7) + 5,
                            "OT_actual": np.sin(np.arange(96) / 5) + 10})
    ot = np.sin(np.arange(96, 120) / 5) + 10.2
    future = pd.DataFrame({"date": dates[96:], "HUFL": np.cos(np.arange(96, 120) / 7) + 5,
                           "OT": ot, "OT_p10": ot - 0.5, "OT_p50": ot, "OT_p90": ot + 0.5})
    pd.concat([history, future]).to_csv(folder / "forecast.csv", index=False)
    pd.DataFrame({"step": range(1, 25), "mse": np.linspace(0.5, 1, 24),
                  "mse_original": np.linspace(1, 3, 24),
                  "skill_seasonal_naive": np.linspace(0.2, -0.1, 24)}) \
        .to_csv(folder / "backtest_by_step.csv", index=False)
    registry = Registry(root / "registry.db")
    registry.register("informer-etth1", "s3://b/m.tar.gz", {
        "regression_metrics": {"mse": {"value": 0.61}},
        "skill": {"value": 0.12, "best_baseline": "seasonal_naive"},
        "interval_metrics": {"coverage_80": {"value": 0.79}}})
    registry.set_status("informer-etth1", 1, "Approved")
    registry.register("informer-etth1", "s3://b/m2.tar.gz", {"mse": 0.7})
    return root


def test_dashboard_renders_in_chromium(tmp_path, chromium):
    output = build(state_dir(tmp_path / "state"), tmp_path / "dashboard.html")
    text = output.read_text()
    assert "Plotly.newPlot" in text and len(text) > 1_000_000  # plotly.js inlined
    assert not re.search(r"<script[^>]+src=", text) and "<link" not in text  # nothing fetched
    profile = tmp_path / "profile"
    dom = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}",
                          "--virtual-time-budget=8000", "--dump-dom", output.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('class="main-svg"') >= 2  # both charts drawn as SVG
    assert dom.stdout.count('class="scatterlayer') >= 2
    assert "PendingManualApproval" in dom.stdout and "Approved" in dom.stdout
    assert "skill=0.12" in dom.stdout and "coverage_80=0.79" in dom.stdout
    shot = tmp_path / "dashboard.png"
    run = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}-2",
                          "--enable-logging=stderr", "--v=0", "--virtual-time-budget=8000",
                          "--window-size=1200,1400", f"--screenshot={shot}", output.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    assert shot.stat().st_size > 20_000


def test_variable_picker_bands_and_skill_axis(tmp_path):
    text = build(state_dir(tmp_path / "state"), tmp_path / "d.html").read_text()
    # one chart per variable (quantile columns are bands, not variables), OT shown first
    assert re.findall(r'data-variable="([^"]*)"', text) == ["HUFL", "OT", ""]
    assert '<option selected>OT</option>' in text and "<option>HUFL</option>" in text
    assert re.search(r'data-variable="HUFL" style="display:none"', text)
    assert text.count('"fill":"tonexty"') == 1 and "interval p90-p10" in text
    # error in original units on the left axis, skill on its own right axis
    by_step = pd.read_csv(tmp_path / "state" / "forecasts" / "informer-etth1" / "v1" /
                          "backtest_by_step.csv")
    fig = error_figure(VersionForecasts("informer-etth1", 1), by_step)
    assert [(t.name, t.yaxis) for t in fig.data] == [("mse_original", None),
                                                      ("skill_seasonal_naive", "y2")]
    assert fig.layout.yaxis2.title.text == "skill (1 - MSE / MSE_baseline)"
    assert fig.layout.yaxis.title.text == "error (original units)"


def test_the_horizon_shading_covers_the_forecast_segment_not_the_backtest():
    # the transform's report: a backtest segment (actual and prediction), then the forecast
    dates = pd.date_range("2018-06-20", periods=10, freq="h")
    frame = pd.DataFrame({"date": dates, "model_version": "v1",
                          "segment": ["backtest"] * 6 + ["forecast"] * 4,
                          "OT_actual": [*np.arange(6.0), *[np.nan] * 4], "OT": np.arange(10.0)})
    fig = forecast_figure(VersionForecasts("informer-etth1", 1), frame, "OT")
    (shade,) = fig.layout.shapes
    assert (pd.Timestamp(shade.x0), pd.Timestamp(shade.x1)) == (dates[6], dates[9])


def test_versions_overlay_when_a_group_has_several(tmp_path):
    root = state_dir(tmp_path / "state")
    text = build(root, tmp_path / "one.html").read_text()
    assert "version against version" not in text
    v1 = root / "forecasts" / "informer-etth1" / "v1"
    (v2 := v1.with_name("v2")).mkdir()
    frame = pd.read_csv(v1 / "forecast.csv")
    frame.assign(OT=frame["OT"] + 1).to_csv(v2 / "forecast.csv", index=False)
    text = build(root, tmp_path / "two.html").read_text()
    # one overlay per variable, in the picker like the others, both versions' lines on it
    assert re.findall(r'data-variable="([^"]*)"', text) == ["HUFL", "OT", "", "HUFL", "OT",
                                                             "HUFL", "OT"]
    assert text.count("informer-etth1: OT, version against version") == 1
    assert '"name":"v1"' in text and '"name":"v2"' in text


def test_quicksight_manifest():
    manifest = quicksight_manifest("s3://bucket/forecasts/informer-etth1")
    assert manifest == {"fileLocations": [{"URIPrefixes": ["s3://bucket/forecasts/"
                                                            "informer-etth1/"]}],
                        "globalUploadSettings": {"format": "CSV", "delimiter": ",",
                                                 "textqualifier": '"', "containsHeader": "true"}}
    json.dumps(manifest)
    with pytest.raises(ValueError, match="expected an s3:// URI"):
        quicksight_manifest("/local/path")
