"""The consistency report as a terminal table, JSON and a self-contained HTML page."""

from __future__ import annotations

import html
import json

from serving.consistency import ConsistencyReport, FeatureResult


def _fmt(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.3g}"


def text_table(report: ConsistencyReport) -> str:
    """Views (compared, missing, extra), then one line per feature."""
    lines = [f"consistency {report.pipeline} [{report.start}, {report.end}): "
             f"match rate {report.match_rate:.6%} over {report.compared} rows", "",
             f"{'view':<22}{'entities':>10}{'compared':>10}{'missing':>9}{'extra':>7}"]
    for v in report.views:
        lines.append(f"{v.view:<22}{v.entities:>10}{v.compared:>10}{v.missing:>9}{v.extra:>7}")
    lines += ["", f"{'view':<22}{'feature':<18}{'compared':>10}{'match rate':>12}"
                  f"{'max |diff|':>12}  example mismatch"]
    for f in report.features:
        example = ""
        if f.examples:
            e = f.examples[0]
            example = f"{e['entity']}@{e['event_ms']}: online {e['online']} offline {e['offline']}"
        lines.append(f"{f.view:<22}{f.feature:<18}{f.compared:>10}{f.match_rate:>12.4%}"
                     f"{_fmt(f.max_abs_diff):>12}  {example}")
    return "\n".join(lines)


def to_json(report: ConsistencyReport) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str, allow_nan=True)


def _bar_chart(features: list[FeatureResult]) -> str:
    """An SVG bar per feature: its match rate (green part) and mismatch share (red part)."""
    row, width, label = 18, 360, 240
    height = row * len(features) + 20
    parts = [f'<svg width="{label + width + 80}" height="{height}" '
             'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="12">']
    for i, f in enumerate(features):
        y = 10 + i * row
        good = width * f.match_rate
        parts.append(f'<text x="0" y="{y + 12}">{html.escape(f"{f.view}:{f.feature}")}</text>')
        parts.append(f'<rect x="{label}" y="{y}" width="{good:.1f}" height="{row - 4}" '
                     'fill="#2e7d32"/>')
        parts.append(f'<rect x="{label + good:.1f}" y="{y}" width="{width - good:.1f}" '
                     f'height="{row - 4}" fill="#c62828"/>')
        parts.append(f'<text x="{label + width + 6}" y="{y + 12}">{f.match_rate:.4%}</text>')
    parts.append("</svg>")
    return "".join(parts)


def to_html(report: ConsistencyReport) -> str:
    views = "".join(
        f"<tr><td>{html.escape(v.view)}</td><td>{v.entities}</td><td>{v.compared}</td>"
        f"<td>{v.missing}</td><td>{v.extra}</td></tr>" for v in report.views)
    mismatches = "".join(
        f"<tr><td>{html.escape(f.view)}</td><td>{html.escape(f.feature)}</td>"
        f"<td>{html.escape(str(e['entity']))}</td><td>{e['event_ms']}</td>"
        f"<td>{html.escape(str(e['online']))}</td><td>{html.escape(str(e['offline']))}</td></tr>"
        for f in report.features for e in f.examples)
    features = "".join(
        f"<tr><td>{html.escape(f.view)}</td><td>{html.escape(f.feature)}</td><td>{f.compared}"
        f"</td><td>{f.match_rate:.4%}</td><td>{_fmt(f.max_abs_diff)}</td></tr>"
        for f in report.features)
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Braid consistency: {html.escape(report.pipeline)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;text-align:right}}
td:first-child,td:nth-child(2){{text-align:left}}</style></head><body>
<h1>Online/offline consistency: {html.escape(report.pipeline)}</h1>
<p>[{html.escape(report.start)}, {html.escape(report.end)}): match rate
<b>{report.match_rate:.6%}</b> over {report.compared} rows (|diff| &le; 1e-9; NaN = NaN).</p>
<h2>Views</h2><table><tr><th>view</th><th>entities</th><th>compared</th><th>missing</th>
<th>extra</th></tr>{views}</table>
<h2>Match rate per feature</h2>{_bar_chart(report.features)}
<h2>Features</h2><table><tr><th>view</th><th>feature</th><th>compared</th><th>match rate</th>
<th>max |diff|</th></tr>{features}</table>
<h2>Example mismatches</h2><table><tr><th>view</th><th>feature</th><th>entity</th>
<th>event ms</th><th>online</th><th>offline</th></tr>{mismatches}</table>
</body></html>
"""
