"""One self-contained HTML dashboard of forecasts and model versions (QuickSight's role).

Reads a local state directory (or an ``s3://`` prefix, copied locally first): forecast CSVs under
``forecasts/<group>/v<version>/`` (``date``, predictions per variable, ``<var>_actual`` when
known), optional ``*by_step*.csv`` error tables, and the model registry. Writes one HTML file
with plotly.js inlined (no CDN, works offline): a variable picker; per version and variable,
actual against predicted with the forecast horizon shaded and, for a quantile model, its
outermost interval as a band (``<var>_p<level>`` columns); error by horizon step in original
units, and skill against the naive baselines by step on an axis of its own; the table of
versions with their test MSE, skill and interval coverage; the realized MSE of the served
forecasts over time (:mod:`mlops.dashboard_monitoring`). Each version shows its newest report.
"""

from __future__ import annotations

import html
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from informer.columns import quantile_columns
from mlops.dashboard_monitoring import latest, monitoring_html, read_scores

VERSION_DIR = re.compile(r"^v(\d+)$")
KEY_METRICS = {f"regression_metrics.{m}.value": m for m in ("mse", "mae", "mse_original",
                                                             "mae_original")}
KEY_METRICS |= {"skill.value": "skill", "skill.best_baseline": "vs",
                "interval_metrics.coverage_80.value": "coverage_80"}



@dataclass
class VersionForecasts:
    group: str
    version: int
    frames: list[pd.DataFrame] = field(default_factory=list)
    by_step: list[pd.DataFrame] = field(default_factory=list)


@dataclass
class DashboardData:
    versions: list[dict[str, Any]]
    forecasts: list[VersionForecasts]
    scores: list[dict[str, Any]] = field(default_factory=list)  # mlops.dashboard_monitoring


def _read_csv(path: Path) -> pd.DataFrame | None:
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None
    return frame if "date" in frame.columns or "step" in frame.columns else None


def collect(root: str | Path) -> DashboardData:
    """Forecasts and registry rows found under a local state directory."""
    root = Path(root)
    forecasts = []
    for group_dir in sorted((root / "forecasts").glob("*")):
        for version_dir in sorted(group_dir.glob("v*")):
            match = VERSION_DIR.match(version_dir.name)
            if not match or not version_dir.is_dir():
                continue
            item = VersionForecasts(group_dir.name, int(match.group(1)))
            for path in sorted(version_dir.rglob("*")):
                if path.suffix not in (".csv", ".out") or not path.is_file():
                    continue
                frame = _read_csv(path)
                if frame is None:
                    continue
                target = item.by_step if "by_step" in path.name else item.frames
                target.append(frame)
            item.frames = latest(item.frames)  # the version's newest forecast
            forecasts.append(item)
    versions: list[dict[str, Any]] = []
    if (root / "registry.db").is_file():
        from mlops.local.registry import Registry

        versions = Registry(root / "registry.db").packages()
    return DashboardData(versions, forecasts, read_scores(root))


def collect_s3(uri: str, workdir: Path) -> DashboardData:
    """Copy ``s3://bucket/prefix/forecasts/...`` CSVs locally, then :func:`collect`."""
    import boto3

    bucket, _, prefix = uri[len("s3://"):].partition("/")
    s3 = boto3.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            folder = next((f for f in ("forecasts/", "monitoring/") if f in key), None)
            if folder is None or not key.endswith((".csv", ".out")):
                continue
            local = workdir / folder / key.split(folder, 1)[1]
            local.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(local))
    return collect(workdir)


def _levels(frame: pd.DataFrame, variable: str) -> list[str]:
    """``variable``'s quantile columns (``OT_p10``, ``OT_p50``...), by level."""
    return [c for _, c in quantile_columns(frame.columns, variable)]


def _variables(frame: pd.DataFrame) -> list[str]:
    skip = {"date", "origin", "step", "id", "series_id"}
    levels = {c for v in frame.columns for c in _levels(frame, str(v))}
    return [c for c in frame.columns if c not in skip and c not in levels
            and not c.endswith("_actual") and pd.api.types.is_numeric_dtype(frame[c])]


def forecast_figure(item: VersionForecasts, frame: pd.DataFrame, variable: str):
    import plotly.graph_objects as go

    frame = frame.assign(date=pd.to_datetime(frame["date"])).sort_values("date")
    fig = go.Figure()
    actual = f"{variable}_actual"
    if actual in frame.columns:
        known = frame[frame[actual].notna()]
        fig.add_trace(go.Scatter(x=known["date"], y=known[actual], name="actual",
                                 mode="lines", line={"color": "#1f77b4"}))
    predicted = frame[frame[variable].notna()]
    levels = _levels(frame, variable)
    if len(levels) >= 2:  # the outermost interval as a band under the forecast
        lo, hi = levels[0], levels[-1]
        fig.add_trace(go.Scatter(x=predicted["date"], y=predicted[hi], mode="lines",
                                 line={"width": 0}, showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=predicted["date"], y=predicted[lo], mode="lines",
                                 line={"width": 0}, fill="tonexty",
                                 fillcolor="rgba(255,127,14,0.25)",
                                 name=f"interval {hi.rsplit('_', 1)[1]}-{lo.rsplit('_', 1)[1]}"))
    fig.add_trace(go.Scatter(x=predicted["date"], y=predicted[variable], name="predicted",
                             mode="lines+markers", marker={"size": 4},
                             line={"color": "#ff7f0e"}))
    future = predicted[predicted["segment"] == "forecast"] if "segment" in frame else predicted
    if len(future):  # the future only: the backtest segment has actuals to compare against
        fig.add_vrect(x0=future["date"].min(), x1=future["date"].max(),
                      fillcolor="#ff7f0e", opacity=0.08, line_width=0,
                      annotation_text="forecast horizon", annotation_position="top left")
    return _dated(fig, f"{item.group} v{item.version}: {variable}", variable)


def overlay_figure(group: str, items: list[VersionForecasts], variable: str):
    """Version against version: each version's prediction of ``variable`` on one chart, with
    the actual values the reports carry."""
    import plotly.graph_objects as go

    fig, actual = go.Figure(), f"{variable}_actual"
    frames = [(item, f.assign(date=pd.to_datetime(f["date"])).sort_values("date"))
              for item in items for f in item.frames if variable in f.columns]
    parts = [f[["date", actual]].dropna() for _, f in frames if actual in f.columns]
    if parts:
        known = pd.concat(parts).drop_duplicates("date").sort_values("date")
        fig.add_trace(go.Scatter(x=known["date"], y=known[actual], name="actual",
                                 mode="lines", line={"color": "#222"}))
    for item, frame in frames:
        shown = frame[frame[variable].notna()]
        fig.add_trace(go.Scatter(x=shown["date"], y=shown[variable], name=f"v{item.version}",
                                 mode="lines"))
    return _dated(fig, f"{group}: {variable}, version against version", variable)


def _dated(fig, title: str, variable: str):
    """The layout of a chart of ``variable`` over dates."""
    fig.update_layout(title=title, height=360, margin={"l": 50, "r": 20, "t": 50, "b": 40},
                      hovermode="x unified", xaxis={"title": "date"}, yaxis={"title": variable})
    return fig


def error_figure(item: VersionForecasts, by_step: pd.DataFrame):
    """Error by horizon step in original units (left axis) and, where the table has them, the
    skill against the naive baselines (right axis: 0 is the baseline's own error)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    errors = [c for c in by_step.columns if c.endswith("_original")] or \
        [c for c in by_step.columns if c != "step" and not c.startswith("skill_")]
    for column in errors:
        fig.add_trace(go.Scatter(x=by_step["step"], y=by_step[column], name=column,
                                 mode="lines+markers"))
    skills = [c for c in by_step.columns if c.startswith("skill_")]
    for column in skills:
        fig.add_trace(go.Scatter(x=by_step["step"], y=by_step[column], name=column,
                                 mode="lines", line={"dash": "dot"}, yaxis="y2"))
    layout: dict[str, Any] = {"yaxis": {"title": "error (original units)" if errors and
                                        errors[0].endswith("_original") else "error"}}
    if skills:
        layout["yaxis2"] = {"title": "skill (1 - MSE / MSE_baseline)", "overlaying": "y",
                            "side": "right", "zeroline": True}
    fig.update_layout(title=f"{item.group} v{item.version}: error by horizon step", height=360,
                      xaxis={"title": "horizon step"},
                      margin={"l": 50, "r": 60, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.3}, **layout)
    return fig


def versions_table(versions: list[dict[str, Any]]) -> str:
    head = ("<tr><th>group</th><th>version</th><th>status</th><th>created</th>"
            "<th>metrics</th></tr>")
    rows = []
    for v in versions:
        flat = _flat(v.get("ModelMetrics") or {})
        shown = {name: flat[k] for k, name in KEY_METRICS.items() if k in flat} or flat
        metrics = ", ".join(f"{k}={val:.4g}" if isinstance(val, (int, float)) else f"{k}={val}"
                            for k, val in shown.items())
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in (
            v["ModelPackageGroupName"], v["ModelPackageVersion"], v["ModelApprovalStatus"],
            v["CreationTime"], metrics)) + "</tr>")
    body = "".join(rows) or "<tr><td colspan=5>no registered versions</td></tr>"
    return f'<table id="versions">{head}{body}</table>'


def _flat(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        elif not isinstance(value, (list, tuple)):
            out[f"{prefix}{key}"] = value
    return out


def render(data: DashboardData, output: str | Path, title: str = "Informer forecasts") -> Path:
    """Write the dashboard; returns its path. The file is complete or absent (temp + rename)."""
    from plotly.offline import get_plotlyjs

    from informer.files import atomic_write_text

    figures = []  # (variable or "" for every variable, figure)
    for item in data.forecasts:
        for frame in item.frames:
            if "date" in frame.columns:
                figures += [(v, forecast_figure(item, frame, v)) for v in _variables(frame)]
        figures += [("", error_figure(item, b)) for b in item.by_step if "step" in b.columns]
    groups: dict[str, list[VersionForecasts]] = {}
    for item in data.forecasts:
        groups.setdefault(item.group, []).append(item)
    for group, items in groups.items():
        dated = [i for i in items if any("date" in f.columns for f in i.frames)]
        if len(dated) > 1:
            names = {v for i in dated for f in i.frames if "date" in f.columns
                     for v in _variables(f)}
            figures += [(v, overlay_figure(group, dated, v)) for v in sorted(names)]
    variables = list(dict.fromkeys(v for v, _ in figures if v))
    shown = "OT" if "OT" in variables else (variables[-1] if variables else "")
    divs = []
    for i, (variable, fig) in enumerate(figures):
        spec = fig.to_json()  # plotly's encoder: numpy and pandas dates included
        hidden = ' style="display:none"' if variable and variable != shown else ""
        divs.append(f'<div class="chart" id="chart-{i}" data-variable="{html.escape(variable)}"'
                    f'{hidden}></div><script>Plotly.newPlot('
                    f'"chart-{i}", ...(s => [s.data, s.layout])({spec}), '
                    '{"responsive": true, "displaylogo": false});</script>')
    charts = "\n".join(divs) or "<p>No forecasts yet.</p>"
    picker = "" if len(variables) < 2 else (
        '<p><label>variable <select id="variable" onchange="pick(this.value)">' +
        "".join(f'<option{" selected" if v == shown else ""}>{html.escape(v)}</option>'
                for v in variables) + "</select></label></p>" + PICK_SCRIPT)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:24px;color:#222}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:left}}
.chart{{max-width:1100px}}</style>
<script>{get_plotlyjs()}</script></head>
<body><h1>{html.escape(title)}</h1>
<h2>Model versions</h2>{versions_table(data.versions)}
{monitoring_html(data.scores, data.versions)}
<h2>Forecasts</h2>{picker}{charts}
</body></html>
"""
    return atomic_write_text(output, page)


# shows the charts of one variable (and those of every variable); plotly resizes the shown ones
PICK_SCRIPT = """<script>function pick(v) {
  document.querySelectorAll("div.chart[data-variable]").forEach(d => {
    const mine = d.dataset.variable === "" || d.dataset.variable === v;
    d.style.display = mine ? "" : "none";
    if (mine) Plotly.Plots.resize(d);
  });
}</script>"""


def build(source: str | Path, output: str | Path) -> Path:
    """Dashboard from a local state directory or an ``s3://`` prefix."""
    if str(source).startswith("s3://"):
        with tempfile.TemporaryDirectory() as tmp:
            return render(collect_s3(str(source), Path(tmp)), output)
    return render(collect(source), output)


def quicksight_manifest(prefix_uri: str) -> dict[str, Any]:
    """QuickSight S3 data-source manifest for every forecast CSV under ``prefix_uri``."""
    if not prefix_uri.startswith("s3://"):
        raise ValueError(f"prefix: expected an s3:// URI, got {prefix_uri!r}")
    prefix = prefix_uri if prefix_uri.endswith("/") else prefix_uri + "/"
    return {"fileLocations": [{"URIPrefixes": [prefix]}],
            "globalUploadSettings": {"format": "CSV", "delimiter": ",", "textqualifier": '"',
                                     "containsHeader": "true"}}
