"""A sweep's files: `sweep.json` (the table), `sweep.png` (each metric against the training step) and
`report.html` (both, self-contained, the chart inlined as a data URI). matplotlib is imported only here."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Any

SWEEP_JSON = "sweep.json"
CHART = "sweep.png"
REPORT = "report.html"


def series(points: list[Any]) -> dict[str, list[tuple[float, float]]]:
    """"dataset · metric" -> [(x, value)], x the training step, or the checkpoint's position when it has none."""
    use_steps = all(p.step is not None for p in points)
    out: dict[str, list[tuple[float, float]]] = {}
    for position, point in enumerate(points):
        x = float(point.step if use_steps else position)
        for dataset in point.summary["datasets"]:
            for metric, value in dataset["metrics"].items():
                if isinstance(value, (int, float)):
                    out.setdefault(f"{dataset['name']} · {metric}", []).append((x, float(value)))
    return out


def table(sweep: Any) -> dict[str, Any]:
    rows = []
    for point in sweep.points:
        rows.append({
            "checkpoint": point.name,
            "path": point.path,
            "step": point.step,
            "run_dir": str(point.run_dir),
            "resumed": point.resumed,
            "score": None if point.score() is None else round(point.score(), 4),
            "datasets": {d["name"]: d["metrics"] for d in point.summary["datasets"]},
            "counts": point.summary.get("counts"),
        })
    return {"best": sweep.best, "score": "mean of each dataset's main metric", "engines_started":
            sweep.engines_started, "seconds": round(sweep.seconds, 3), "checkpoints": rows}


def learning_curve_figure(sweep: Any) -> Any:
    """One panel per dataset metric, a point per checkpoint, the best one ringed."""
    import matplotlib  # deferred: matplotlib loads only when needed (a light start-up)

    matplotlib.use("Agg")  # no display: files only
    from matplotlib.figure import Figure  # deferred: matplotlib loads only when needed (a light start-up)

    curves = series(sweep.points)
    use_steps = all(p.step is not None for p in sweep.points)
    columns = min(3, max(1, len(curves)))
    rows = max(1, -(-len(curves) // columns))
    figure = Figure(figsize=(4.2 * columns, 3.2 * rows), layout="constrained")
    best_index = next((i for i, p in enumerate(sweep.points) if p.name == sweep.best), None)
    for n, (label, values) in enumerate(curves.items()):
        axes = figure.add_subplot(rows, columns, n + 1)
        xs, ys = [v[0] for v in values], [v[1] for v in values]
        axes.plot(xs, ys, marker="o", label=label)
        if best_index is not None and best_index < len(values):
            axes.scatter([xs[best_index]], [ys[best_index]], s=160, facecolors="none", edgecolors="#c62828",
                         zorder=3)
        axes.set_title(label, fontsize=10)
        axes.set_xlabel("training step" if use_steps else "checkpoint")
        axes.grid(alpha=0.3)
        if not use_steps:
            axes.set_xticks(xs, [p.name for p in sweep.points], rotation=30, fontsize=7)
    figure.suptitle(f"swiftcli eval sweep: best {sweep.best or '-'}", fontsize=11)
    return figure


def write_sweep_files(sweep: Any) -> dict[str, str]:
    """Write sweep.json, sweep.png and report.html into the sweep folder (each replaced atomically)."""
    out = Path(sweep.output_dir)
    data = table(sweep)
    _replace(out / SWEEP_JSON, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())

    buffer = io.BytesIO()
    learning_curve_figure(sweep).savefig(buffer, format="png", dpi=110)
    png = buffer.getvalue()
    _replace(out / CHART, png)
    _replace(out / REPORT, render_html(data, png).encode())
    return {"json": str(out / SWEEP_JSON), "chart": str(out / CHART), "html": str(out / REPORT)}


def _replace(path: Path, content: bytes) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temp.write_bytes(content)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def render_html(data: dict[str, Any], png: bytes) -> str:
    e = html.escape
    metrics: list[tuple[str, str]] = []
    for row in data["checkpoints"]:
        for dataset, values in row["datasets"].items():
            for metric in values:
                if (dataset, metric) not in metrics:
                    metrics.append((dataset, metric))
    head = "".join(f"<th>{e(d)}<br>{e(m)}</th>" for d, m in metrics)
    body = []
    for row in data["checkpoints"]:
        cells = "".join(f"<td>{_num(row['datasets'].get(d, {}).get(m))}</td>" for d, m in metrics)
        mark = ' class="best"' if row["checkpoint"] == data["best"] else ""
        body.append(f"<tr{mark}><td>{e(row['checkpoint'])}</td><td>{'' if row['step'] is None else row['step']}</td>"
                    f"<td>{_num(row['score'])}</td>{cells}</tr>")
    image = base64.b64encode(png).decode("ascii")
    best = e(data["best"] or "none (no checkpoint was scored)")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>swiftcli eval sweep</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}tr.best td{{background:#e8f5e9;font-weight:600}}
img{{max-width:100%}}
</style></head><body>
<h1>Checkpoint sweep</h1>
<p>Best checkpoint: <b>{best}</b> (score: {e(data["score"])}).</p>
<img alt="each metric against the training step" src="data:image/png;base64,{image}">
<table><tr><th>checkpoint</th><th>step</th><th>score</th>{head}</tr>{"".join(body)}</table>
</body></html>
"""


def _num(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.2f}"
