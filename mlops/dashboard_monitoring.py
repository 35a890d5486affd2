"""The dashboard's monitoring part: realized MSE of the served forecasts over time, and the
"latest" view of each version's forecasts.

Scores come from the local registry (``drift_scores``, :mod:`mlops.local.monitoring`) or, for an
``s3://`` source, from the drift Lambda's objects ``monitoring/<group>/scores/v<n>/*.csv``
(:func:`mlops.drift.scores_csv`); both are rows of :data:`mlops.drift.SCORE_FIELDS` with a
``group``. The chart: one line per version (realized scaled MSE by forecast origin, step 0 =
the whole horizon), and per version the MSE it was registered with
(``regression_metrics.mse.value``) as a dashed reference line.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pandas as pd

SCORES_KEY = re.compile(r"monitoring/(?P<group>[^/]+)/scores/v(?P<version>\d+)/[^/]+\.csv$")


def read_scores(root: Path) -> list[dict[str, Any]]:
    """Step-0 score rows under a state directory: the registry's table, else the drift
    Lambda's CSV objects copied under ``root/monitoring/``."""
    from mlops import drift

    rows: list[dict[str, Any]] = []
    if (root / "registry.db").is_file():
        from mlops.local.monitoring import scores
        from mlops.local.registry import Registry

        registry = Registry(root / "registry.db")
        if registry.query("SELECT name FROM sqlite_master WHERE name = 'drift_scores'"):
            rows = scores(registry)
    for path in sorted((root / "monitoring").rglob("*.csv")):
        match = SCORES_KEY.search(path.relative_to(root).as_posix())
        if match:
            rows += [{**r, "group": match["group"]} for r in drift.read_scores_csv(
                path.read_text()) if r["step"] == 0]
    return rows


def monitoring_lines(rows: list[dict[str, Any]], versions: list[dict[str, Any]]
                     ) -> list[dict[str, Any]]:
    """Per (group, version): ``origins`` (sorted datetimes), ``mse`` (realized, scaled), and
    ``evaluation_mse`` from the registry rows (DescribeModelPackage fields), None without."""
    from mlops import drift

    registered = {(v["ModelPackageGroupName"], f"v{v['ModelPackageVersion']}"):
                  drift.evaluation_mse(v.get("ModelMetrics") or {}) for v in versions}
    lines: dict[tuple[str, str], list[tuple[Any, float]]] = {}
    for row in rows:
        if row.get("step", 0) == 0 and row.get("mse") is not None:
            lines.setdefault((row["group"], row["version"]), []).append(
                (drift.parse_time(row["origin"], "origin"), row["mse"]))
    out = []
    for (group, version), points in sorted(lines.items(), key=lambda kv: (
            kv[0][0], int(kv[0][1].lstrip("v") or 0))):
        points.sort()
        out.append({"group": group, "version": version, "origins": [p[0] for p in points],
                    "mse": [p[1] for p in points],
                    "evaluation_mse": registered.get((group, version))})
    return out


def monitoring_figure(group: str, lines: list[dict[str, Any]]):
    """Plotly: realized MSE by origin per version, evaluation MSE as dashed lines."""
    import plotly.graph_objects as go
    from plotly.colors import DEFAULT_PLOTLY_COLORS as COLORS

    fig = go.Figure()
    for i, line in enumerate(lines):
        color = COLORS[i % len(COLORS)]
        fig.add_trace(go.Scatter(x=line["origins"], y=line["mse"], mode="lines+markers",
                                 name=f"{line['version']} realized MSE",
                                 line={"color": color}, marker={"size": 5}))
        if line["evaluation_mse"] is not None and line["origins"]:
            fig.add_trace(go.Scatter(
                x=[min(x for ln in lines for x in ln["origins"]),
                   max(x for ln in lines for x in ln["origins"])],
                y=[line["evaluation_mse"]] * 2, mode="lines",
                name=f"{line['version']} evaluation MSE", line={"color": color, "dash": "dash"}))
    fig.update_layout(title=f"{group}: realized MSE of the served forecasts (scaled), by "
                            f"forecast origin", height=360, hovermode="x unified",
                      margin={"l": 50, "r": 20, "t": 50, "b": 40},
                      xaxis={"title": "forecast origin"}, yaxis={"title": "MSE"})
    return fig


def monitoring_html(rows: list[dict[str, Any]], versions: list[dict[str, Any]]) -> str:
    """The dashboard's "Monitoring" section (empty when nothing is scored yet)."""
    lines = monitoring_lines(rows, versions)
    if not lines:
        return ""
    parts = ["<h2>Monitoring</h2>"]
    for n, group in enumerate(dict.fromkeys(line["group"] for line in lines)):
        spec = monitoring_figure(group, [ln for ln in lines if ln["group"] == group]).to_json()
        parts.append(f'<div class="chart" id="monitoring-{n}" data-group="{html.escape(group)}">'
                     f'</div><script>Plotly.newPlot("monitoring-{n}", ...(s => [s.data, '
                     f's.layout])({spec}), {{"responsive": true, "displaylogo": false}});'
                     f"</script>")
    return "\n".join(parts)


def latest(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """The "latest" view of a version's forecast files: of the reports (a ``segment``
    column), the one that forecasts furthest ahead; other tables as they are."""
    reports = [f for f in frames if "segment" in f.columns and "date" in f.columns and len(f)]
    if len(reports) < 2:
        return frames
    newest = max(reports, key=lambda f: pd.to_datetime(f["date"]).max())
    return [f for f in frames if f is newest or not any(f is r for r in reports)]
