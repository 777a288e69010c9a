/* The dashboard: polls /v1/allocation and redraws the page when a new decision is committed.
   The browser revalidates the answer with its ETag (Cache-Control: no-cache), so an unchanged
   allocation costs the server a 304 and the page sees the same ETag: nothing is redrawn. Pages: #/ (the fleet) and
   #/agent/NAME (one agent's factors over time). Everything it loads ships in the package. */
"use strict";
const POLL_MS = 2000;
const state = { etag: null, current: null, token: sessionStorage.getItem("ms-token") || "" };

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c == null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
const pct = (v) => (v == null ? "–" : `${(100 * v).toFixed(2)}%`);

async function api(path) {
  const headers = {};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, { headers, cache: "no-cache" });
  if (response.status === 401) {
    document.getElementById("token-box").hidden = false;
    throw new Error("a read token is needed");
  }
  return response;
}
async function json(path) {
  const response = await api(path);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function firstGate(explanation) {
  return (explanation.gates || []).find((g) => !g.passed) || null;
}

function agentOrder(decision) {
  return Object.keys(decision.agents).sort((a, b) =>
    (decision.agents[b].weight - decision.agents[a].weight) || a.localeCompare(b));
}

function section(title, cls, ...body) {
  return h("section", { class: cls || "" }, h("h2", {}, title), ...body);
}

function allocationTable(decision) {
  const rows = agentOrder(decision).map((name) => {
    const e = decision.agents[name];
    const gate = firstGate(e);
    return h("tr", { class: gate ? "gated" : "", "data-agent": name },
      h("td", {}, h("a", { href: `#/agent/${encodeURIComponent(name)}` }, name)),
      h("td", {}, e.strategy || ""),
      h("td", { class: "num" }, pct(e.weight)),
      h("td", {}, e.summary || ""));
  });
  rows.push(h("tr", { class: "cash" }, h("td", {}, h("b", {}, "cash")), h("td"),
              h("td", { class: "num" }, h("b", {}, pct(decision.cash))),
              h("td", { class: "muted" }, decision.portfolio?.reason || "")));
  return h("table", { id: "allocation" },
    h("thead", {}, h("tr", {}, h("th", {}, "agent"), h("th", {}, "strategy"),
                     h("th", { class: "num" }, "weight"), h("th", {}, "why"))),
    h("tbody", {}, rows));
}

function weightsChart(points, decision) {
  const names = new Set();
  points.forEach((p) => Object.keys(p.weights).forEach((n) => names.add(n)));
  const order = agentOrder(decision).filter((n) => names.has(n));
  names.forEach((n) => { if (!order.includes(n)) order.push(n); });
  const svg = Charts.stacked(points, order);
  svg.id = "weights-chart";
  const legend = Charts.legend([...order.map((n, i) => [n, Charts.color(i)]),
                                ["cash", Charts.CASH]]);
  return [svg, legend];
}

function grossCashChart(points) {
  const times = points.map((p) => Date.parse(p.as_of));
  const svg = Charts.lines(times, [
    { name: "gross", color: "#3366cc", values: points.map((p) => p.gross) },
    { name: "cash", color: "#888f9c", values: points.map((p) => p.cash) },
  ], 1, (v) => `${Math.round(v * 100)}%`);
  svg.id = "gross-chart";
  return [svg, Charts.legend([["gross", "#3366cc"], ["cash", "#888f9c"]])];
}

function gatedList(decision) {
  const items = agentOrder(decision).map((n) => [n, firstGate(decision.agents[n])])
    .filter(([, g]) => g);
  if (!items.length) return h("p", { class: "muted" }, "no agent is gated");
  return h("ul", { class: "plain", id: "gated" },
    items.map(([n, g]) => h("li", {}, h("b", {}, n), ` ${g.gate}: ${g.detail}`)));
}

function overridesTable(overrides) {
  if (!overrides.length) return h("p", { class: "muted" }, "no override");
  return h("table", { id: "overrides" },
    h("thead", {}, h("tr", {}, ["agent", "action", "until", "by", "reason", ""]
      .map((t) => h("th", {}, t)))),
    h("tbody", {}, overrides.map((o) => h("tr", {},
      h("td", {}, o.agent),
      h("td", {}, o.action === "cap" ? `cap ${pct(o.cap)}` : "exclude"),
      h("td", {}, o.expires_at),
      h("td", {}, o.created_by),
      h("td", {}, o.reason),
      h("td", { class: o.active ? "bad" : "muted" }, o.active ? "in force" : "expired")))));
}

function changes(diff) {
  if (!diff) return h("p", { class: "muted" }, "first decision: nothing to compare");
  const entries = Object.entries(diff.agents);
  const moved = entries.filter(([, a]) => Math.abs(a.change) > 1e-9)
    .sort((a, b) => Math.abs(b[1].change) - Math.abs(a[1].change));
  const head = h("p", {}, `decision ${diff.old.seq} (${diff.old.as_of}) → ${diff.new.seq} ` +
    `(${diff.new.as_of}): cash ${pct(diff.cash.old)} → ${pct(diff.cash.new)}, ` +
    `turnover ${pct(diff.turnover)}; ${entries.length - moved.length} agents unchanged`);
  return h("div", { id: "changes" }, head, h("ul", { class: "plain" }, moved.map(([n, a]) =>
    h("li", {}, h("b", {}, n), ` ${pct(a.old_weight)} → ${pct(a.new_weight)}`,
      a.text ? ` — ${a.text}` : ""))));
}

async function fleetPage(current) {
  const [latest, history, overrides] = await Promise.all([
    json("/v1/decisions/latest"), json("/v1/history?limit=500"), json("/v1/overrides")]);
  const diff = current.seq > 1 ? await json("/v1/diff") : null;
  const d = latest.decision;
  const points = history.points;
  return [
    section("Current allocation", "wide",
      h("div", { class: "kpis" },
        h("div", { class: "kpi" }, "gross", h("b", { id: "gross" }, pct(d.gross))),
        h("div", { class: "kpi" }, "cash", h("b", { id: "cash" }, pct(d.cash))),
        h("div", { class: "kpi" }, "as of", h("b", { id: "as-of" }, d.as_of)),
        h("div", { class: "kpi" }, "decision", h("b", {}, `#${latest.seq}`))),
      allocationTable(d)),
    section("Weights over time (cash on top)", "", ...weightsChart(points, d)),
    section("Gross and cash", "", ...grossCashChart(points)),
    section("Gated agents", "", gatedList(d)),
    section("Overrides", "", overridesTable(overrides.overrides)),
    section("What changed since the previous decision", "wide", changes(diff)),
  ];
}

async function agentPage(name) {
  const [history, latest] = await Promise.all([
    json(`/v1/history?agent=${encodeURIComponent(name)}&limit=500`),
    json(`/v1/agents/${encodeURIComponent(name)}`)]);
  const points = history.points;
  const times = points.map((p) => Date.parse(p.as_of));
  const factorNames = [...new Set(points.flatMap((p) => Object.keys(p.factors)))];
  const factorSeries = factorNames.map((f, i) => ({ name: f, color: Charts.color(i),
    values: points.map((p) => (f in p.factors ? p.factors[f] : null)) }));
  const factors = Charts.lines(times, factorSeries, null, (v) => `×${v.toFixed(2)}`);
  factors.id = "factors-chart";
  const weight = Charts.lines(times, [{ name: "weight", color: "#3366cc",
    values: points.map((p) => p.weight) }], null, (v) => pct(v));
  const gate = firstGate(latest);
  return [
    section(`${name} (${latest.strategy || "no strategy"})`, "wide",
      h("p", {}, h("b", {}, pct(latest.weight)), ` as of ${latest.as_of}: ${latest.summary || ""}`),
      gate ? h("p", { class: "bad" }, `gated by ${gate.gate}: ${gate.detail}`) : null,
      h("table", {}, h("tbody", {}, (latest.factors || []).map((f) =>
        h("tr", {}, h("td", {}, f.factor), h("td", { class: "num" }, `×${f.value.toFixed(3)}`),
          h("td", { class: "muted" }, f.reason)))))),
    section("Weight over time", "", weight),
    section("Factors over time", "", factors,
      Charts.legend(factorSeries.map((s) => [s.name, s.color]))),
  ];
}

async function render() {
  const view = document.getElementById("view");
  const route = location.hash.match(/^#\/agent\/(.+)$/);
  const current = state.current;
  if (!current) {
    view.replaceChildren(h("section", { class: "wide" }, h("p", {}, "no decision yet")));
    return;
  }
  document.getElementById("headline").textContent =
    `decision #${current.seq} as of ${current.as_of} · ${current.profile} profile · ` +
    `gross ${pct(current.gross)} · cash ${pct(current.cash)}`;
  const parts = route ? await agentPage(decodeURIComponent(route[1])) : await fleetPage(current);
  view.replaceChildren(...parts);
  document.body.dataset.seq = String(current.seq);
}

async function poll() {
  try {
    const response = await api("/v1/allocation");
    if (response.status === 200 && response.headers.get("ETag") !== state.etag) {
      state.current = await response.json();
      state.etag = response.headers.get("ETag");
      await render();
    } else if (response.status === 404 && state.current === null) {
      await render();
    }
    document.getElementById("status").textContent =
      `checked ${new Date().toISOString().slice(11, 19)} UTC`;
  } catch (err) {
    document.getElementById("status").textContent = `not updated: ${err.message}`;
  }
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = document.getElementById("token-input").value.trim();
  sessionStorage.setItem("ms-token", state.token);
  document.getElementById("token-box").hidden = true;
  state.etag = null;
  poll();
});
window.addEventListener("hashchange", () => { render().catch(() => {}); });
document.getElementById("period").textContent = String(POLL_MS / 1000);
poll();
setInterval(poll, POLL_MS);
