"""The drift scenario, end to end and for real (mlops/local/scenario.py; docs/mlops.md,
"Retraining on drift"): a tiny RevIN model trained and approved on ETTh1 up to 2016-10-14 23:00,
then eight daily ingests. LULL drops by about five train-split standard deviations on
2016-10-18: the forecast from 10-17 23:00 misses it, the rule (window 2, k 2) fires once when
that day's rows arrive, and not before; the pipeline registers v2, which is approved the next
day, and the forecasts go on from the new end of the data with both versions."""

from __future__ import annotations

import io

import pytest

from mlops.local.monitoring import scores, triggers
from mlops.local.registry import Registry
from mlops.local.scenario import Scenario, figure, run
from mlops.local.state import StateDir
from tests.conftest import ETT_DIR

GROUP = "informer-models"


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift")
    state = StateDir.resolve(root / "state")
    log = io.StringIO()
    records = run(Scenario(ETT_DIR / "ETTh1.csv"), state, root / "work", log)
    return state, records, log.getvalue()


def test_the_rule_fires_once_when_the_level_shift_arrives(played):
    state, records, log = played
    assert [r["end"] for r in records][:4] == [f"2016-10-{d} 23:00:00" for d in (15, 16, 17, 18)]
    assert [r["step"] for r in records if r["fired"]] == [4], log[-3000:]
    registry = Registry(state.registry)
    [fired] = triggers(registry, GROUP)
    assert (fired["version"], fired["window_end"], fired["status"], fired["registered_version"]) \
        == (1, "2016-10-17T23:00:00", "registered", 2)
    assert fired["data_end"] == "2016-10-18T23:00:00"
    figures = fired["figures"]
    assert figures["origins"] == ["2016-10-16T23:00:00", "2016-10-17T23:00:00"]
    assert figures["ratio"] > 2 and figures["realized_mse"] > 2 * figures["evaluation_mse"]
    assert fired["reason"].startswith("realized MSE ")
    # each forecast before the shift within 2x the evaluation MSE, the one across it above
    evaluation = figures["evaluation_mse"]
    realized = {r["origin"]: r["mse"] for r in scores(registry, GROUP, 1)}
    assert all(realized[f"2016-10-{d}T23:00:00"] < 2 * evaluation for d in (14, 15, 16))
    assert realized["2016-10-17T23:00:00"] > 2 * evaluation
    assert "drift informer-models v1: fired: realized MSE" in log


def test_the_new_version_is_registered_approved_and_forecasts_continue(played):
    state, records, _ = played
    assert records[3]["registered"] == 2 and records[4]["approved"] == 2
    registry = Registry(state.registry)
    assert [(p["ModelPackageVersion"], p["ModelApprovalStatus"]) for p in
            registry.packages(GROUP)] == [(1, "Approved"), (2, "Approved")]
    v2 = [r["origin"] for r in scores(registry, GROUP, 2)]
    assert v2[0] == "2016-10-18T23:00:00" and len(v2) >= 2  # its first forecast, then more
    for version in (1, 2):
        latest = state.forecasts(GROUP, version) / "ETTh1-o20161022230000.csv.out"
        assert latest.is_file(), sorted(p.name for p in latest.parent.iterdir())
    assert records[-1]["end"] == "2016-10-22 23:00:00" and not records[-1]["fired"]


def test_the_figure_and_the_dashboard(played, tmp_path):
    from mlops.dashboard import build

    state, _, _ = played
    png = figure(state, GROUP, tmp_path / "drift.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = build(state.root, tmp_path / "dashboard.html").read_text()
    for text in ("<h2>Monitoring</h2>", "v1 realized MSE", "v2 realized MSE",
                 "v2 evaluation MSE"):
        assert text in page
