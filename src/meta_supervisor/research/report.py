"""The backtest report: one self-contained HTML tearsheet (interactive plotly charts, plotly.js
inlined: no CDN, works offline) and static PNG charts.

The HTML (:func:`render_html`): the metrics of every method before and after a trading cost;
equity and drawdown against the baselines; the default method's monthly returns; rolling
Sharpe; its worst drawdown periods; turnover and costs; per-agent contribution; its top agents
and cash over time; an agents x factors heatmap over time (a menu picks the factor); the
reasons behind each weight at one rebalance; the accounting contract. The analytics are the
pure functions of :mod:`meta_supervisor.research.tearsheet`.

PNG charts (:func:`charts`, matplotlib, Agg backend: no display needed):

* ``equity``: cumulative PnL (bps of capital) of every method by decision time;
* ``drawdown``: each method's fall from its running peak (bps, ≤ 0);
* ``weights``: the default method's weights over time, stacked (largest agents by mean weight,
  the rest summed), with cash on top;
* ``cash``: each method's cash share over time;
* ``factors``: the default method's factor breakdown at a chosen time (each agent's
  multipliers and final weight).

plotly and matplotlib are the ``report`` extra (``pip install 'meta-supervisor[report]'``; also
in ``test``): charts are where people would rather look than read, but a cycle never needs
them.
"""

from __future__ import annotations

import html
import io
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from meta_supervisor.research.backtest import BacktestResult
from meta_supervisor.research.metrics import sharpe
from meta_supervisor.research.tearsheet import (
    contributions,
    drawdown_periods,
    monthly_returns,
    net_pnl,
    period_turnover,
    rolling_sharpe,
)

__all__ = [
    "accounting_html",
    "charts",
    "factor_matrix",
    "factor_rows",
    "render_html",
    "write_report",
]

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


_METRIC_COLUMNS = (
    ("sharpe", "Sharpe", "{:+.2f}"),
    ("total_pnl_bps", "PnL (bps)", "{:+.0f}"),
    ("max_drawdown_bps", "max DD (bps)", "{:.0f}"),
    ("cvar95_bps", "CVaR95 (bps)", "{:.1f}"),
    ("mean_gross", "mean gross", "{:.0%}"),
    ("turnover", "turnover", "{:.3f}"),
    ("derisk_hours", "de-risk (h)", "{:.0f}"),
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_HEATMAP_AGENTS = 15


def _go() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError as err:
        raise ImportError(
            "the HTML report draws interactive charts with plotly: "
            "pip install 'meta-supervisor[report]'"
        ) from err
    return go


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _div(fig: Any, div_id: str) -> str:
    """One figure as a ``<div>`` (plotly.js is inlined once in the page's head)."""
    fig.update_layout(
        template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 40}, height=380
    )
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )


def _line_width(result: BacktestResult, name: str) -> float:
    return 3.0 if name == result.default_method else 1.4


def _equity_figures(result: BacktestResult, pnl: dict[str, np.ndarray]) -> tuple[Any, Any]:
    go = _go()
    equity, drawdown = go.Figure(), go.Figure()
    for name, r in pnl.items():
        eq = np.cumsum(r)
        width = {"width": _line_width(result, name)}
        equity.add_trace(go.Scatter(x=result.times, y=eq, name=name, line=width))
        dd = eq - np.maximum.accumulate(np.maximum(eq, 0.0))
        drawdown.add_trace(go.Scatter(x=result.times, y=dd, name=name, line=width))
    for agent, onset in result.events[:1]:
        equity.add_vline(x=onset, line_dash="dot", line_color="red")
        equity.add_annotation(
            x=onset, y=0.02, yref="paper", text=f"{agent} blows up", xanchor="left"
        )
    equity.update_layout(title="Equity: cumulative PnL by decision time (bps of capital)")
    drawdown.update_layout(title="Drawdown from the running peak (bps of capital)")
    return equity, drawdown


def _rolling_figure(result: BacktestResult, pnl: dict[str, np.ndarray], window: int) -> Any:
    go = _go()
    fig = go.Figure()
    for name, r in pnl.items():
        line = {"width": _line_width(result, name)}
        y = rolling_sharpe(r, result.every_hours, window)
        fig.add_trace(go.Scatter(x=result.times, y=y, name=name, line=line))
    days = window * result.every_hours / 24
    fig.update_layout(title=f"Rolling Sharpe over {window} rebalances ({days:g} days), annualised")
    return fig


def _weights_figure(result: BacktestResult) -> Any:
    go = _go()
    w = result.methods[result.default_method].weights
    order = np.argsort(-w.mean(axis=0), kind="stable")
    top = [int(i) for i in order[:_TOP_AGENTS] if w[:, i].any()]
    rest = np.delete(w, top, axis=1).sum(axis=1)
    fig = go.Figure()
    layers = [(result.agents[i], w[:, i]) for i in top] + [("other agents", rest)]
    layers.append(("cash", 1.0 - w.sum(axis=1)))
    for label, values in layers:
        fig.add_trace(go.Scatter(x=result.times, y=values, name=label, stackgroup="w"))
    fig.update_layout(
        title=f"Weights of the default method ({result.default_method}): top agents and cash",
        yaxis={"range": [0, 1], "tickformat": ".0%"},
    )
    return fig


def factor_matrix(result: BacktestResult) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """The default method's factors over time: ``(agents, factor names, {factor: values})``
    with ``values[a, k]`` the factor of agent ``agents[a]`` at rebalance ``k`` (NaN where the
    agent was gated or absent); agents are the default method's largest by mean weight."""
    decisions = result.methods[result.default_method].decisions or []
    w = result.methods[result.default_method].weights
    order = np.argsort(-w.mean(axis=0), kind="stable")[:_HEATMAP_AGENTS]
    agents = [result.agents[int(i)] for i in order]
    names: list[str] = []
    for first in decisions[:1]:
        for explained in first.agents.values():
            names += [f["factor"] for f in explained["factors"] if f["factor"] not in names]
    values = {n: np.full((len(agents), len(decisions)), np.nan) for n in names}
    for k, d in enumerate(decisions):
        for a, agent in enumerate(agents):
            e = d.agents.get(agent)
            if e is None or not all(g["passed"] for g in e["gates"]):
                continue
            for f in e["factors"]:
                if f["factor"] in values:
                    values[f["factor"]][a, k] = f["value"]
    return agents, names, values


def _heatmap_figure(result: BacktestResult) -> Any | None:
    go = _go()
    agents, names, values = factor_matrix(result)
    shown = [n for n in names if n not in ("alpha", "prior")]  # a base, and a constant 1
    if not shown or not agents:
        return None
    fig = go.Figure()
    for j, name in enumerate(shown):
        v = values[name]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log2(v)
        fig.add_trace(
            go.Heatmap(
                x=result.times,
                y=agents,
                z=z,
                customdata=v,
                zmid=0,
                zmin=-2,
                zmax=2,
                colorscale="RdBu",
                colorbar={
                    "title": "log2 x",
                    "tickvals": [-2, -1, 0, 1, 2],
                    "ticktext": ["x0.25", "x0.5", "x1", "x2", "x4"],
                },
                hovertemplate="%{y} at %{x}<br>" + name + " x%{customdata:.3f}<extra></extra>",
                visible=j == 0,
                name=name,
            )
        )
    buttons = [
        {
            "label": name,
            "method": "update",
            "args": [
                {"visible": [i == j for i in range(len(shown))]},
                {"title": f"Agents x factors over time: {name} (blank: gated)"},
            ],
        }
        for j, name in enumerate(shown)
    ]
    fig.update_layout(
        title=f"Agents x factors over time: {shown[0]} (blank: gated)",
        updatemenus=[{"buttons": buttons, "x": 1.0, "y": 1.18, "xanchor": "right"}],
        height=120 + 24 * len(agents),
    )
    return fig


def _turnover_figure(result: BacktestResult) -> Any:
    go = _go()
    fig = go.Figure()
    for name, run in result.methods.items():
        fig.add_trace(
            go.Scatter(
                x=result.times,
                y=period_turnover(run.weights),
                name=name,
                line={"width": _line_width(result, name)},
            )
        )
    fig.update_layout(title="Turnover per rebalance (fraction of capital traded, two-sided)")
    return fig


def _contribution_figure(result: BacktestResult, contrib: np.ndarray) -> Any:
    go = _go()
    order = np.argsort(-np.abs(contrib), kind="stable")[: _TOP_AGENTS * 2]
    fig = go.Figure(
        go.Bar(
            x=[result.agents[int(i)] for i in order],
            y=contrib[order],
            marker_color=["#2a7" if contrib[i] >= 0 else "#c33" for i in order],
        )
    )
    fig.update_layout(
        title=f"PnL contribution by agent, default method (bps of capital; Σ = "
        f"{float(contrib.sum()):+.1f})"
    )
    return fig


def _cell(value: float, scale: float) -> str:
    if math.isnan(value):
        return "<td></td>"
    alpha = 0 if scale <= 0 else min(1.0, abs(value) / scale) * 0.6
    color = f"rgba(34,139,34,{alpha:.2f})" if value >= 0 else f"rgba(200,30,30,{alpha:.2f})"
    return f"<td style='background:{color}'>{value:+.1f}</td>"


def _monthly_table(result: BacktestResult, r: np.ndarray) -> str:
    months = monthly_returns(result.times, r)
    years = sorted({y for y, _ in months})
    scale = max((abs(v) for v in months.values()), default=0.0)
    head = "".join(f"<th>{m}</th>" for m in _MONTHS)
    rows = []
    for y in years:
        cells = "".join(_cell(months.get((y, m), math.nan), scale) for m in range(1, 13))
        total = math.fsum(v for (yy, _), v in months.items() if yy == y)
        rows.append(f"<tr><td>{y}</td>{cells}<td><b>{total:+.1f}</b></td></tr>")
    return f"<table class='grid'><tr><th>year</th>{head}<th>year</th></tr>{''.join(rows)}</table>"


def _drawdown_table(result: BacktestResult, r: np.ndarray) -> str:
    def when(k: int | None) -> str:
        if k is None:
            return "not recovered"
        return "start" if k < 0 else f"{result.times[k]:%Y-%m-%d %H:%M}"

    rows = []
    for i, e in enumerate(drawdown_periods(r, top=5), 1):
        days = e["periods"] * result.every_hours / 24
        rows.append(
            f"<tr><td>{i}</td><td>{e['depth_bps']:.1f}</td><td>{when(e['peak'])}</td>"
            f"<td>{when(e['trough'])}</td><td>{when(e['recovery'])}</td><td>{days:g}</td></tr>"
        )
    if not rows:
        return "<p>No drawdown: the equity never fell below a previous peak.</p>"
    head = (
        "<tr><th>#</th><th>depth (bps)</th><th>peak</th><th>trough</th><th>recovered</th>"
        "<th>length (days)</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _costs_table(result: BacktestResult, cost_bps: float) -> str:
    rows = []
    for name, run in result.methods.items():
        traded = period_turnover(run.weights)
        gross = float(run.period_pnl.sum())
        cost = cost_bps * float(traded.sum())
        net = net_pnl(run.period_pnl, run.weights, cost_bps)
        rows.append(
            f"<tr><td><b>{html.escape(name)}</b></td><td>{float(traded.mean()):.3f}</td>"
            f"<td>{float(traded.sum()):.2f}</td><td>{gross:+.1f}</td><td>{cost:.1f}</td>"
            f"<td>{float(net.sum()):+.1f}</td>"
            f"<td>{sharpe(net, result.every_hours):+.2f}</td></tr>"
        )
    head = (
        "<tr><th>method</th><th>turnover / rebalance (entry included)</th>"
        "<th>traded (x capital)</th>"
        "<th>PnL gross (bps)</th><th>cost (bps)</th><th>PnL net (bps)</th>"
        "<th>Sharpe net</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _contribution_table(result: BacktestResult, contrib: np.ndarray) -> str:
    w = result.methods[result.default_method].weights
    order = np.argsort(-contrib, kind="stable")
    rows = [
        f"<tr><td>{html.escape(result.agents[int(i)])}</td><td>{float(w[:, i].mean()):.2%}</td>"
        f"<td>{float(contrib[i]):+.1f}</td></tr>"
        for i in order[:_TOP_AGENTS]
    ]
    rest = order[_TOP_AGENTS:]
    if rest.size:
        rows.append(
            f"<tr><td>{rest.size} other agents</td><td>{float(w[:, rest].mean(axis=0).sum()):.2%}"
            f"</td><td>{float(contrib[rest].sum()):+.1f}</td></tr>"
        )
    rows.append(
        f"<tr><td>cash</td><td>{float(1 - w.sum(axis=1).mean()):.2%}</td><td>+0.0</td></tr>"
    )
    head = "<tr><th>agent</th><th>mean weight</th><th>contribution (bps)</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def accounting_html(doc: str) -> str:
    """The backtest module's "Accounting" section as HTML: its bullet list, with ``**bold**``
    and double-backquoted code rendered (the page showed the docstring's raw markup)."""
    text = doc.split("Accounting", 1)[-1]
    lines = text.splitlines()
    heading = html.escape(lines[0].strip()) if lines else ""
    body = "\n".join(line for line in lines[1:] if not set(line.strip()) <= {"-"})
    items = [" ".join(part.split()) for part in body.split("\n* ") if part.strip()]

    def inline(t: str) -> str:
        t = html.escape(t.strip().removeprefix("* "))
        t = re.sub(r"``(.+?)``", r"<code>\1</code>", t)
        t = re.sub(r":\w+:`~?([^`]+)`", r"<code>\1</code>", t)
        t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
        return re.sub(r"\*([^*<>]+)\*", r"<i>\1</i>", t)

    lis = "".join(f"<li>{inline(item)}</li>" for item in items)
    return f"<p><i>{heading}</i></p><ul>{lis}</ul>"


def render_html(
    result: BacktestResult,
    title: str = "backtest",
    at: datetime | None = None,
    cost_bps: float = 0.0,
) -> str:
    """The whole report as one HTML string: a tearsheet with interactive charts (plotly, its
    JavaScript inlined once: nothing is fetched, it works offline).

    ``cost_bps``: trading cost in bps of the notional traded; every method's PnL after costs
    is ``r_k − cost_bps · turnover_k`` (:func:`~meta_supervisor.research.tearsheet.net_pnl`)
    and the charts and tables use it (0: costs left out, said in the header).
    """
    default = result.default_method
    pnl = {
        name: net_pnl(run.period_pnl, run.weights, cost_bps) for name, run in result.methods.items()
    }
    r = pnl[default]
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in _METRIC_COLUMNS)
    body = []
    for name, m in result.metrics.items():
        mark = " (default)" if name == default else ""
        desc = html.escape(result.methods[name].description)
        cells = "".join(f"<td>{_fmt(m[key], fmt)}</td>" for key, _, fmt in _METRIC_COLUMNS)
        net = sharpe(pnl[name], result.every_hours)
        body.append(
            f"<tr><td title='{desc}'><b>{html.escape(name)}</b>{mark}</td>{cells}"
            f"<td>{net:+.2f}</td></tr>"
        )
    k = _closest(result, at)
    factor_html = []
    for row in factor_rows(result, k):
        if row["gated"] and row["weight"] == 0:
            continue
        factor_html.append(
            f"<tr><td>{html.escape(row['agent'])}</td><td>{row['weight']:.2%}</td>"
            f"<td>{html.escape(row['summary'])}</td></tr>"
        )
    periods = len(result.times)
    window = max(2, min(periods // 3 or 2, round(30 * 24 / result.every_hours)))
    equity, drawdown = _equity_figures(result, pnl)
    contrib = contributions(result.methods[default].weights, result.agent_pnl)
    heatmap = _heatmap_figure(result)
    charts_html = {
        "equity": _div(equity, "equity"),
        "drawdown": _div(drawdown, "drawdown"),
        "rolling": _div(_rolling_figure(result, pnl, window), "rolling-sharpe"),
        "weights": _div(_weights_figure(result), "weights"),
        "turnover": _div(_turnover_figure(result), "turnover"),
        "contribution": _div(_contribution_figure(result, contrib), "contribution"),
        "heatmap": "" if heatmap is None else _div(heatmap, "factors-heatmap"),
    }
    costs = (
        f"after a trading cost of {cost_bps:g} bps of the notional traded"
        if cost_bps
        else "before trading costs (<code>--cost-bps</code> sets one)"
    )
    from meta_supervisor.research import backtest as bt

    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<script type="text/javascript">{_plotly_js()}</script>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; }}
td, th {{ padding: 3px 9px; border-bottom: 1px solid #ddd; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
table.grid td {{ min-width: 3.2em; }} h2 {{ margin-top: 1.6em; }}
table.why td:last-child, table.why th:last-child {{ text-align: left; }}
.note {{ color: #555; font-size: 0.92em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{periods} rebalances every {result.every_hours:g} h from
{result.times[0]:%Y-%m-%d %H:%M} UTC; {len(result.agents)} agents; default method:
<b>{html.escape(default)}</b>. Every profile ran through <code>cycle.decide</code>, the live
cycle; the baselines ran on the same inputs. PnL in bps of capital, {costs}.</p>
<table><tr><th>method</th>{head}<th>Sharpe net</th></tr>{"".join(body)}</table>
<p class="note">Metrics before costs; "Sharpe net" after them. Sharpe of overlapping periods
(a 24 h horizon booked over shorter periods): for ranking methods, not for quoting.</p>
<h2>Equity and drawdown against the baselines</h2>
{charts_html["equity"]}{charts_html["drawdown"]}
<h2>Monthly returns ({html.escape(default)}, bps of capital)</h2>
{_monthly_table(result, r)}
<h2>Rolling Sharpe</h2>{charts_html["rolling"]}
<h2>Worst drawdowns ({html.escape(default)})</h2>{_drawdown_table(result, r)}
<h2>Turnover and costs</h2>{charts_html["turnover"]}{_costs_table(result, cost_bps)}
<h2>Per-agent contribution ({html.escape(default)})</h2>
{charts_html["contribution"]}{_contribution_table(result, contrib)}
<h2>Top agents and cash</h2>{charts_html["weights"]}
<h2>Agents x factors over time ({html.escape(default)})</h2>
<p class="note">Each factor's multiplier per agent and rebalance on a log scale (red below x1,
blue above); pick the factor with the menu. Blank: the agent was gated.</p>
{charts_html["heatmap"]}
<h2>Why, at {result.times[k]:%Y-%m-%d %H:%M} UTC (default method)</h2>
<table class="why"><tr><th>agent</th><th>weight</th><th>reason</th></tr>{"".join(factor_html)}
</table>
<h2>Accounting</h2>{accounting_html(bt.__doc__ or "")}
</body></html>
"""


def write_report(
    result: BacktestResult,
    path: Path | str,
    *,
    title: str = "backtest",
    at: datetime | None = None,
    png: bool = True,
    cost_bps: float = 0.0,
) -> Path:
    """Write the HTML report to ``path`` and (``png=True``) the static charts as
    ``<stem>-<chart>.png`` (matplotlib, for slides and e-mail)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(result, title, at, cost_bps), encoding="utf-8")
    if png:
        plt = _plt()
        for name, fig in charts(result, at).items():
            fig.savefig(path.with_name(f"{path.stem}-{name}.png"), dpi=110)
            plt.close(fig)
    return path
