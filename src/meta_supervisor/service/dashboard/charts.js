/* Small SVG charts drawn by hand (no library, no CDN): a stacked area chart of weights with
   cash on top, and a line chart. Both take points in time order. */
"use strict";
const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6",
                   "#dd4477", "#66aa00", "#b82e2e", "#316395", "#994499", "#22aa99",
                   "#aaaa11", "#6633cc", "#e67300", "#8b0707"];
  const CASH = "#c9ced8";

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function color(index) { return PALETTE[index % PALETTE.length]; }

  function frame(width, height) {
    const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%",
                            role: "img", preserveAspectRatio: "none" });
    return svg;
  }

  function xScale(times, left, right) {
    const lo = times[0], hi = times[times.length - 1];
    if (hi === lo) return () => (left + right) / 2;
    return (t) => left + (right - left) * (t - lo) / (hi - lo);
  }

  function axes(svg, box, times, yMax, fmt) {
    const { left, right, top, bottom } = box;
    el("line", { x1: left, x2: right, y1: bottom, y2: bottom, stroke: "#dfe3ea" }, svg);
    for (const f of [0, 0.5, 1]) {
      const y = bottom - (bottom - top) * f;
      el("line", { x1: left, x2: right, y1: y, y2: y, stroke: "#eef0f4" }, svg);
      el("text", { x: left - 4, y: y + 4, "text-anchor": "end" }, svg).textContent =
        fmt(yMax * f);
    }
    const label = (t) => new Date(t).toISOString().slice(0, 16).replace("T", " ");
    el("text", { x: left, y: bottom + 14 }, svg).textContent = label(times[0]);
    if (times.length > 1) {
      el("text", { x: right, y: bottom + 14, "text-anchor": "end" }, svg).textContent =
        label(times[times.length - 1]);
    }
  }

  /* points: [{as_of, weights: {agent: w}, cash}]; agents: names in stacking order. */
  function stacked(points, agents) {
    const W = 720, H = 260;
    const box = { left: 40, right: W - 8, top: 8, bottom: H - 22 };
    const svg = frame(W, H);
    svg.setAttribute("aria-label", "weights over time, stacked, cash on top");
    if (!points.length) return svg;
    const times = points.map((p) => Date.parse(p.as_of));
    const x = xScale(times, box.left, box.right);
    const y = (v) => box.bottom - (box.bottom - box.top) * Math.min(1, Math.max(0, v));
    const series = [...agents.map((a, i) => ({ name: a, fill: color(i),
                                               value: (p) => p.weights[a] || 0 })),
                    { name: "cash", fill: CASH, value: (p) => p.cash }];
    const base = points.map(() => 0);
    const halfStep = points.length > 1 ? 0 : 30;
    for (const s of series) {
      const upper = points.map((p, i) => base[i] + s.value(p));
      const top = points.map((p, i) => `${x(times[i]) - halfStep},${y(upper[i])}` +
                                        (halfStep ? ` ${x(times[i]) + halfStep},${y(upper[i])}` : ""));
      const bottom = points.map((p, i) => (halfStep ? `${x(times[i]) + halfStep},${y(base[i])} ` : "") +
                                           `${x(times[i]) - halfStep},${y(base[i])}`).reverse();
      const path = el("polygon", { points: [...top, ...bottom].join(" "), fill: s.fill,
                                   "fill-opacity": s.name === "cash" ? 0.9 : 0.85,
                                   class: "series", "data-series": s.name }, svg);
      el("title", {}, path).textContent = s.name;
      upper.forEach((v, i) => { base[i] = v; });
    }
    axes(svg, box, times, 1, (v) => `${Math.round(v * 100)}%`);
    return svg;
  }

  /* lines: [{name, color, values: [number|null]}] over times (ms). */
  function lines(times, series, yMax, fmt) {
    const W = 720, H = 200;
    const box = { left: 40, right: W - 8, top: 8, bottom: H - 22 };
    const svg = frame(W, H);
    if (!times.length) return svg;
    const top = yMax || Math.max(1e-9, ...series.flatMap((s) => s.values.filter((v) => v != null)));
    const x = xScale(times, box.left, box.right);
    const y = (v) => box.bottom - (box.bottom - box.top) * Math.min(1, Math.max(0, v / top));
    for (const s of series) {
      const pts = s.values.map((v, i) => (v == null ? null : `${x(times[i])},${y(v)}`))
        .filter(Boolean);
      if (pts.length === 1) {
        const [cx, cy] = pts[0].split(",");
        el("circle", { cx, cy, r: 3, fill: s.color, class: "series" }, svg);
      } else if (pts.length) {
        el("polyline", { points: pts.join(" "), fill: "none", stroke: s.color,
                         "stroke-width": 2, class: "series", "data-series": s.name }, svg);
      }
    }
    axes(svg, box, times, top, fmt);
    return svg;
  }

  function legend(names) {
    const div = document.createElement("div");
    div.className = "legend";
    names.forEach(([name, fill]) => {
      const span = document.createElement("span");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = fill;
      span.append(sw, document.createTextNode(name));
      div.appendChild(span);
    });
    return div;
  }

  return { stacked, lines, legend, color, CASH };
})();
