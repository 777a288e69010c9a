"""The backtest report: one self-contained HTML file (inline SVG charts, no CDN) and PNG charts.

Charts (matplotlib, Agg backend: no display needed):

* ``equity``: cumulative PnL (bps of capital) of every method by decision time;
* ``drawdown``: each method's fall from its running peak (bps, ≤ 0);
* ``weights``: the default method's weights over time, stacked (largest agents by mean weight,
  the rest summed), with cash on top;
* ``cash``: each method's cash share over time;
* ``factors``: the default method's factor breakdown at a chosen time (each agent's
  multipliers and final weight).

matplotlib is the ``report`` extra (``pip install 'meta-supervisor[report]'``; also in ``test``):
charts are where people would rather look than read, but a cycle never needs them.
"""

from __future__ import annotations

import html
import io
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from meta_supervisor.research.backtest import BacktestResult

__all__ = ["charts", "factor_rows", "render_html", "write_report"]

_TOP_AGENTS = 10


def _plt() -> Any:
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            "the HTML report draws its charts with matplotlib: "
            "pip install 'meta-supervisor[report]'"
        ) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _closest(result: BacktestResult, at: datetime | None) -> int:
    """Index of the rebalance at or just before ``at`` (default: the deepest drawdown of the
    default method, where an operator most wants to know why)."""
    if at is None:
        eq = result.equity(result.default_method)
        return int(np.argmin(eq - np.maximum.accumulate(np.maximum(eq, 0.0))))
    k = max((i for i, t in enumerate(result.times) if t <= at), default=0)
    return k


def factor_rows(result: BacktestResult, k: int) -> list[dict[str, Any]]:
    """The default method's per-agent factors at rebalance ``k`` (agents with a weight or gated)."""
    decisions = result.methods[result.default_method].decisions or []
    if not decisions:
        return []
    decision = decisions[k]
    rows = []
    for name, e in sorted(decision.agents.items()):
        failed = [g["gate"] for g in e["gates"] if not g["passed"]]
        rows.append(
            {
                "agent": name,
                "weight": e["weight"],
                "gated": ", ".join(failed),
                "factors": {f["factor"]: f["value"] for f in e["factors"]},
                "reasons": {f["factor"]: f["reason"] for f in e["factors"]},
                "summary": e["summary"],
            }
        )
    return rows


def charts(result: BacktestResult, at: datetime | None = None) -> dict[str, Any]:
    """Build the figures; returns ``{name: matplotlib Figure}``."""
    plt = _plt()
    times = result.times
    figs: dict[str, Any] = {}
    methods = list(result.methods)

    def style(name: str) -> dict[str, Any]:
        return {"linewidth": 2.4 if name == result.default_method else 1.2}

    fig, ax = plt.subplots(figsize=(10, 4))
    for name in methods:
        ax.plot(times, result.equity(name), label=name, **style(name))
    for _, onset in result.events[:1]:
        ax.axvline(onset, color="red", linestyle=":", linewidth=1, label="first blow-up")
    ax.set_title("Equity: cumulative PnL by decision time (bps of capital)")
    ax.set_ylabel("bps")
    ax.legend(fontsize=8, ncol=3)
    ax.grid(alpha=0.3)
    figs["equity"] = fig

    fig, ax = plt.subplots(figsize=(10, 3.2))
    for name in methods:
        eq = result.equity(name)
        ax.plot(times, eq - np.maximum.accumulate(np.maximum(eq, 0.0)), label=name, **style(name))
    ax.set_title("Drawdown from running peak (bps of capital)")
    ax.legend(fontsize=8, ncol=3)
    ax.grid(alpha=0.3)
    figs["drawdown"] = fig

    w = result.methods[result.default_method].weights
    order = np.argsort(-w.mean(axis=0), kind="stable")
    top = [i for i in order[:_TOP_AGENTS] if w[:, i].any()]
    rest = np.delete(w, top, axis=1).sum(axis=1)
    layers = [w[:, i] for i in top] + [rest, 1.0 - w.sum(axis=1)]
    labels = [result.agents[i] for i in top] + ["other agents", "cash"]
    fig, ax = plt.subplots(figsize=(10, 4))
    palette = [plt.get_cmap("tab20")(i % 20) for i in range(len(top))]
    colors = [*palette, (0.55, 0.55, 0.55, 1.0), (0.93, 0.93, 0.93, 1.0)]
    ax.stackplot(times, np.vstack(layers), labels=labels, colors=colors, alpha=0.9)
    ax.set_ylim(0, 1)
    ax.set_title(f"Weights of the default method ({result.default_method}), stacked; cash on top")
    ax.legend(fontsize=7, ncol=4, loc="lower left")
    figs["weights"] = fig

    fig, ax = plt.subplots(figsize=(10, 3))
    for name in methods:
        ax.plot(times, 1.0 - result.methods[name].weights.sum(axis=1), label=name, **style(name))
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Cash share")
    ax.legend(fontsize=8, ncol=3)
    ax.grid(alpha=0.3)
    figs["cash"] = fig

    k = _closest(result, at)
    rows = [r for r in factor_rows(result, k) if not r["gated"]]
    if rows:
        names = sorted({f for r in rows for f in r["factors"]})
        fig, ax = plt.subplots(figsize=(10, 0.3 * len(rows) + 1.6))
        y = np.arange(len(rows))
        height = 0.8 / max(1, len(names))
        for j, fname in enumerate(names):
            vals = [r["factors"].get(fname, 1.0) for r in rows]
            ax.barh(y + j * height, vals, height=height, label=fname)
        ax.set_yticks(y + 0.4 - height / 2, [f"{r['agent']} ({r['weight']:.1%})" for r in rows])
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")  # multipliers: x0.5 and x2 are equally far from 1
        ax.set_title(f"Factors of the default method at {times[k]:%Y-%m-%d %H:%M} UTC")
        ax.legend(fontsize=8)
        figs["factors"] = fig
    for f in figs.values():
        f.tight_layout()
    return figs


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})  # same inputs, same bytes
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _fmt(value: float, fmt: str) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "never"
    return fmt.format(value)


def render_html(result: BacktestResult, title: str = "backtest", at: datetime | None = None) -> str:
    """The whole report as one HTML string (inline SVG; nothing fetched)."""
    plt = _plt()
    figs = charts(result, at)
    cols = [
        ("sharpe", "Sharpe", "{:+.2f}"),
        ("total_pnl_bps", "PnL (bps)", "{:+.0f}"),
        ("max_drawdown_bps", "max DD (bps)", "{:.0f}"),
        ("cvar95_bps", "CVaR95 (bps)", "{:.1f}"),
        ("mean_gross", "mean gross", "{:.0%}"),
        ("turnover", "turnover", "{:.3f}"),
        ("derisk_hours", "de-risk (h)", "{:.0f}"),
    ]
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in cols)
    body = []
    for name, m in result.metrics.items():
        mark = " (default)" if name == result.default_method else ""
        desc = html.escape(result.methods[name].description)
        cells = "".join(f"<td>{_fmt(m[key], fmt)}</td>" for key, _, fmt in cols)
        body.append(f"<tr><td title='{desc}'><b>{html.escape(name)}</b>{mark}</td>{cells}</tr>")
    k = _closest(result, at)
    factor_html = []
    for r in factor_rows(result, k):
        if r["gated"] and r["weight"] == 0:
            continue
        factor_html.append(
            f"<tr><td>{html.escape(r['agent'])}</td><td>{r['weight']:.2%}</td>"
            f"<td>{html.escape(r['summary'])}</td></tr>"
        )
    sections = "".join(
        f"<h2>{name}</h2><div class='chart'>{_svg(fig)}</div>" for name, fig in figs.items()
    )
    for fig in figs.values():
        plt.close(fig)
    from meta_supervisor.research import backtest as bt

    accounting = html.escape((bt.__doc__ or "").split("Accounting", 1)[-1])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 3px 9px; border-bottom: 1px solid #ddd;
text-align: right; }} td:first-child {{ text-align: left; }}
.chart svg {{ max-width: 100%; height: auto; }} pre {{ white-space: pre-wrap; font-size: 12px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{len(result.times)} rebalances every {result.every_hours:g} h from
{result.times[0]:%Y-%m-%d %H:%M} UTC; {len(result.agents)} agents; default method:
<b>{html.escape(result.default_method)}</b>. Every profile ran through
<code>cycle.decide</code>, the live cycle.</p>
<table><tr><th>method</th>{head}</tr>{"".join(body)}</table>
{sections}
<h2>Why, at {result.times[k]:%Y-%m-%d %H:%M} UTC (default method)</h2>
<table><tr><th>agent</th><th>weight</th><th>reason</th></tr>{"".join(factor_html)}</table>
<h2>Accounting</h2><pre>{accounting}</pre>
</body></html>
"""


def write_report(
    result: BacktestResult,
    path: Path | str,
    *,
    title: str = "backtest",
    at: datetime | None = None,
    png: bool = True,
) -> Path:
    """Write the HTML report to ``path`` and (``png=True``) each chart as ``<stem>-<chart>.png``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(result, title, at), encoding="utf-8")
    if png:
        plt = _plt()
        for name, fig in charts(result, at).items():
            fig.savefig(path.with_name(f"{path.stem}-{name}.png"), dpi=110)
            plt.close(fig)
    return path
