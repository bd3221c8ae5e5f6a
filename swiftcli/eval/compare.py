"""Two runs side by side: every metric with its delta, and the samples that flipped between right and wrong."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any

from swiftcli.eval.report import Run

PERCENT_METRICS = ("accuracy", "rouge_l", "bleu", "exact_match")


@dataclass
class MetricRow:
    dataset: str
    metric: str
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass
class Flips:
    """Samples of one dataset matched by file line; "right" is a correct answer (exact match for generation)."""

    dataset: str
    matched: int = 0
    wrong_to_right: int = 0
    right_to_wrong: int = 0
    both_right: int = 0
    both_wrong: int = 0
    unmatched: int = 0


@dataclass
class Comparison:
    a: Run
    b: Run
    metrics: list[MetricRow]
    flips: list[Flips]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The comparison as `eval compare --output json` prints it."""
        return {
            "a": str(self.a.path), "b": str(self.b.path),
            "metrics": [{**asdict(row), "delta": row.delta} for row in self.metrics],
            "flips": [asdict(f) for f in self.flips],
            "warnings": list(self.warnings),
        }


def _datasets(run: Run) -> dict[str, dict]:
    return {d["name"]: d for d in run.summary["datasets"] if isinstance(d, dict) and "name" in d}


def compare_runs(a: Run, b: Run) -> Comparison:
    da, db = _datasets(a), _datasets(b)
    names = [*da, *(n for n in db if n not in da)]
    rows: list[MetricRow] = []
    flips: list[Flips] = []
    warnings: list[str] = []
    for name in names:
        ma = da.get(name, {}).get("metrics", {})
        mb = db.get(name, {}).get("metrics", {})
        for metric in [*ma, *(m for m in mb if m not in ma)]:
            rows.append(MetricRow(name, metric, ma.get(metric), mb.get(metric)))
        if name in da and name in db:
            if da[name].get("sha256") != db[name].get("sha256"):
                warnings.append(f"{name}: the two runs read different files (sha256 differs)")
            flips.append(_flips(name, a, b))
        else:
            warnings.append(f"{name}: only in {'A' if name in da else 'B'}")
    return Comparison(a, b, rows, flips, warnings)


def _flips(name: str, a: Run, b: Run) -> Flips:
    right_a = {s.get("line"): s.get("correct") is True for s in a.samples if s.get("dataset") == name}
    right_b = {s.get("line"): s.get("correct") is True for s in b.samples if s.get("dataset") == name}
    out = Flips(name)
    out.unmatched = len(right_a.keys() ^ right_b.keys())
    for line in right_a.keys() & right_b.keys():
        ra, rb = right_a[line], right_b[line]
        out.matched += 1
        if ra and rb:
            out.both_right += 1
        elif ra:
            out.right_to_wrong += 1
        elif rb:
            out.wrong_to_right += 1
        else:
            out.both_wrong += 1
    return out


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{round(value, 2) + 0.0:+.2f}" if signed else f"{value:.2f}"


def render_html(comparison: Comparison) -> str:
    """A self-contained page (inline CSS, no scripts) with a bar chart of the 0-100 metrics."""
    e = html.escape
    label_a, label_b = e(comparison.a.label), e(comparison.b.label)
    bars = []
    for row in comparison.metrics:
        if row.metric not in PERCENT_METRICS:
            continue
        delta = row.delta
        shown = round(delta or 0.0, 2)
        tone = "up" if shown > 0 else "down" if shown < 0 else ""
        bars.append(
            f'<div class="metric"><div class="name">{e(row.dataset)} · {e(row.metric)} '
            f'<span class="{tone}">{_fmt(delta, True)}</span></div>'
            f'<div class="bar"><span class="a" style="width:{_width(row.a)}%"></span><em>{_fmt(row.a)}</em></div>'
            f'<div class="bar"><span class="b" style="width:{_width(row.b)}%"></span><em>{_fmt(row.b)}</em></div>'
            "</div>"
        )
    table = "".join(
        f"<tr><td>{e(r.dataset)}</td><td>{e(r.metric)}</td><td>{_fmt(r.a)}</td><td>{_fmt(r.b)}</td>"
        f"<td>{_fmt(r.delta, True)}</td></tr>"
        for r in comparison.metrics
    )
    flips = "".join(
        f"<tr><td>{e(f.dataset)}</td><td>{f.matched}</td><td>{f.wrong_to_right}</td><td>{f.right_to_wrong}</td>"
        f"<td>{f.both_right}</td><td>{f.both_wrong}</td></tr>"
        for f in comparison.flips
    )
    notes = "".join(f"<li>{e(w)}</li>" for w in comparison.warnings)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>swiftcli eval: {label_a} vs {label_b}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:900px;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child,td:nth-child(2),th{{text-align:left}}
.metric{{margin:12px 0}}.name{{font-weight:600}}.bar{{display:flex;align-items:center;gap:8px;height:18px}}
.bar span{{display:block;height:14px;min-width:1px}}.a{{background:#4e79a7}}.b{{background:#f28e2b}}
.bar em{{font-style:normal;font-size:12px}}.up{{color:#1a7f37}}.down{{color:#c62828}}
.key span{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}}
</style></head><body>
<h1>Evaluation: {label_a} vs {label_b}</h1>
<p class="key"><span class="a"></span>A: {e(str(comparison.a.path))}
<span class="b"></span>B: {e(str(comparison.b.path))}</p>
{f"<ul>{notes}</ul>" if notes else ""}
<h2>Metrics (0-100)</h2>
{"".join(bars)}
<table><tr><th>dataset</th><th>metric</th><th>A</th><th>B</th><th>B - A</th></tr>{table}</table>
<h2>Samples that flipped</h2>
<table><tr><th>dataset</th><th>matched</th><th>wrong → right</th><th>right → wrong</th><th>both right</th>
<th>both wrong</th></tr>{flips}</table>
</body></html>
"""


def _width(value: float | None) -> float:
    return 0.0 if value is None else round(max(0.0, min(100.0, value)), 2)
