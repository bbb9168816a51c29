// loadsvc's status page and HTML report: the same charts, from /api/series (live) or
// from the data inlined in the report. No network beyond this service's own API.
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const charts = new Map(); // title -> uPlot
  const state = { scenario: null, updates: 0, errors: [] };
  // What the browser tests read: every chart's title, data points and threshold line.
  window.loadsvc = { charts: () => describeCharts(), state };

  const fmt = {
    ms: (s) => (s == null ? "–" : (s * 1000).toFixed(1) + " ms"),
    pct: (r) => (r == null ? "–" : (r * 100).toFixed(2) + " %"),
    time: (iso) => (iso ? new Date(iso).toLocaleString() : "–"),
  };
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"];

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) e.append(c == null ? "" : c);
    return e;
  }

  // -- the series document -> uPlot data ----------------------------------------------

  function unionTimes(endpoints) {
    const all = new Set();
    for (const ep of endpoints) for (const t of ep.points.t) all.add(t);
    return Array.from(all).sort((a, b) => a - b);
  }

  // One column per endpoint aligned on the shared times, null where it has no point
  // and at gaps between runs (so no line is drawn across a gap).
  function column(times, ep, value) {
    const at = new Map();
    const p = ep.points;
    p.t.forEach((t, i) => at.set(t, i));
    return times.map((t) => {
      const i = at.get(t);
      if (i === undefined) return null;
      return value(p, i);
    });
  }

  function withGaps(times, columns) {
    const xs = [], cols = columns.map(() => []);
    for (let i = 0; i < times.length; i++) {
      if (i > 0 && times[i] - times[i - 1] > 30) {
        xs.push((times[i] + times[i - 1]) / 2);
        cols.forEach((c) => c.push(null));
      }
      xs.push(times[i]);
      cols.forEach((c, j) => c.push(columns[j][i]));
    }
    return [xs, ...cols];
  }

  const rate = (field) => (p, i) => (p.span_s[i] > 0 ? p[field][i] / p.span_s[i] : null);
  const ms = (field) => (p, i) => (p[field][i] == null ? null : p[field][i] * 1000);

  function chartSpecs(doc) {
    const eps = doc.endpoints;
    const ws = eps.filter((e) => e.kind === "ws");
    const specs = [];
    if (eps.length) {
      specs.push({ title: "Users", unit: "users", lines: [{ label: "users", ep: eps[0], value: (p, i) => p.users[i] }] });
      specs.push({
        title: "Requests and messages per second", unit: "/s",
        lines: eps.map((e) => ({ label: e.endpoint, ep: e, value: rate("requests") })),
      });
    }
    for (const e of eps) {
      const th = e.thresholds || {};
      const q = th.quantile ? "p" + Math.round(th.quantile * 1000) / 10 : "";
      specs.push({
        title: `Latency ${e.endpoint}` + (e.kind === "ws" ? " (delivery)" : ""), unit: "ms",
        lines: [
          { label: "p50", ep: e, value: ms("p50_s") },
          { label: "p95", ep: e, value: ms("p95_s") },
          { label: "p99", ep: e, value: ms("p99_s") },
        ],
        threshold: th.max_s != null ? { label: `threshold ${q} ≤ ${th.max_s * 1000} ms`, value: th.max_s * 1000 } : null,
      });
    }
    if (eps.length) {
      specs.push({
        title: "Error ratio", unit: "%",
        lines: eps.map((e) => ({
          label: e.endpoint, ep: e,
          value: (p, i) => (p.requests[i] > 0 ? (100 * p.errors[i]) / p.requests[i] : 0),
        })),
        threshold: eps[0].thresholds && eps[0].thresholds.error_ratio != null
          ? { label: `threshold ${eps[0].thresholds.error_ratio * 100} %`, value: eps[0].thresholds.error_ratio * 100 } : null,
      });
    }
    if (ws.length) {
      specs.push({ title: "Open connections", unit: "conns", lines: ws.map((e) => ({ label: e.endpoint, ep: e, value: (p, i) => p.connections[i] })) });
      // Drawn once there was a reconnect: an empty chart says nothing.
      const reconnecting = ws.filter((e) => e.points.reconnect_p95_s.some((v) => v != null));
      if (reconnecting.length) specs.push({ title: "Reconnect time p95", unit: "ms", lines: reconnecting.map((e) => ({ label: e.endpoint, ep: e, value: ms("reconnect_p95_s") })) });
      specs.push({ title: "Missed frames per second", unit: "/s", lines: ws.map((e) => ({ label: e.endpoint, ep: e, value: rate("missed") })) });
    }
    return specs;
  }

  function dataOf(spec, times) {
    const cols = spec.lines.map((l) => column(times, l.ep, l.value));
    if (spec.threshold) cols.push(times.map(() => spec.threshold.value));
    return withGaps(times, cols);
  }

  function optionsOf(spec, width) {
    const series = [{}];
    spec.lines.forEach((l, i) => series.push({ label: l.label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false }));
    if (spec.threshold) series.push({ label: spec.threshold.label, stroke: "#e377c2", width: 2, dash: [6, 4], points: { show: false } });
    return {
      width, height: 220, series,
      axes: [{}, { label: spec.unit, size: 60 }],
      scales: { x: { time: true } },
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
    };
  }

  function drawCharts(doc, container) {
    const times = unionTimes(doc.endpoints);
    const specs = chartSpecs(doc);
    const width = Math.max(360, Math.min(720, container.clientWidth / 2 - 24));
    const wanted = new Set(specs.map((s) => s.title));
    for (const [title, u] of charts) {
      if (!wanted.has(title)) { u.destroy(); charts.get(title)._box.remove(); charts.delete(title); }
    }
    for (const spec of specs) {
      const data = dataOf(spec, times);
      const existing = charts.get(spec.title);
      if (existing && existing.series.length === data.length) {
        existing._spec = spec;
        existing.setData(data);
        continue;
      }
      if (existing) { existing.destroy(); existing._box.remove(); }
      const box = el("figure", { class: "chart", "data-title": spec.title }, el("figcaption", {}, spec.title));
      container.append(box);
      const u = new uPlot(optionsOf(spec, width), data, box);
      u._box = box;
      u._spec = spec;
      charts.set(spec.title, u);
    }
  }

  function describeCharts() {
    return Array.from(charts.values()).map((u) => {
      const lines = u._spec.lines.length;
      let points = 0;
      for (let s = 1; s <= lines; s++) points += u.data[s].filter((v) => v != null).length;
      const th = u._spec.threshold ? u.data[lines + 1].filter((v) => v != null).length : null;
      return { title: u._spec.title, points, thresholdPoints: th, width: u.width, height: u.height };
    });
  }

  // -- tables ----------------------------------------------------------------------------

  // A cell is a string or node, or {text, cls, title}.
  function cell(c) {
    if (c != null && typeof c === "object" && !(c instanceof Node)) {
      return el("td", { class: c.cls || "", title: c.title || "" }, c.text);
    }
    return el("td", {}, c);
  }

  function table(head, rows) {
    return el("table", {}, el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows.map((r) => el("tr", { class: r.cls || "" }, ...r.cells.map(cell)))));
  }

  function verdictOf(last) {
    if (!last) return "–";
    return last.result || (last.passed ? "passed" : "failed");
  }

  // A run against its baseline: the state in a word, the one-line verdict as its tooltip.
  const BASELINE_WORDS = { regressed: "REGRESSED", ok: "ok", no_baseline: "no baseline yet", off: "off" };
  function baselineCell(run) {
    const r = run && run.regression;
    if (!r) return { text: "–" };
    return { text: BASELINE_WORDS[r.state] || r.state, cls: "baseline baseline-" + r.state, title: r.headline || "" };
  }

  function findingRows(findings) {
    const show = (f, v) => (f.unit === "ms" ? v.toFixed(1) + " ms" : f.unit === "ratio" ? fmt.pct(v) : v.toFixed(2) + " " + f.unit);
    return findings.map((f) => ({
      cls: "verdict-" + (f.regressed ? "failed" : "passed"),
      cells: [f.endpoint, f.metric, show(f, f.baseline), show(f, f.value), show(f, f.limit),
        { text: f.regressed ? "REGRESSED" : "ok", cls: "verdict", title: f.description }],
    }));
  }

  function scenarioRows(status) {
    return status.scenarios.map((s) => {
      const st = s.running ? (s.stopping ? "stopping" : `running (${s.users} users)`) : s.held ? "held" : "idle";
      const link = el("a", { href: "#" + encodeURIComponent(s.name) }, s.name);
      const v = verdictOf(s.last_run);
      return { cls: "verdict-" + v, cells: [link, s.schedule, st, fmt.time(s.next_run), { text: v, cls: "verdict" }, baselineCell(s.last_run)] };
    });
  }

  function thresholdRows(thresholds) {
    return thresholds.map((t) => {
      const unit = t.unit === "ratio" ? fmt.pct : (v) => (v == null ? "–" : v + " " + t.unit);
      const q = t.quantile ? " p" + t.quantile * 100 : "";
      return { cls: "verdict-" + (t.passed ? "passed" : "failed"), cells: [t.endpoint, t.name + q, unit(t.limit), unit(t.value), { text: t.state, cls: "verdict" }] };
    });
  }

  // -- live page ------------------------------------------------------------------------

  async function getJson(path) {
    const r = await fetch(path, { cache: "no-store" });
    if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
    return r.json();
  }

  async function refresh() {
    const status = await getJson("api/status");
    const svc = status.service;
    $("#environment").textContent = `target ${svc.target} · shard ${svc.shard} · config ${svc.config} · ${svc.ready ? "ready" : "not ready"}`;
    $("#scenarios").replaceChildren(table(["scenario", "schedule", "state", "next run", "last verdict", "vs baseline"], scenarioRows(status)));
    const names = status.scenarios.map((s) => s.name);
    const fromHash = decodeURIComponent(location.hash.slice(1));
    const running = status.scenarios.find((s) => s.running);
    state.scenario = names.includes(fromHash) ? fromHash : state.scenario && names.includes(state.scenario) ? state.scenario : running ? running.name : names[0];
    $("#chosen").textContent = state.scenario || "";
    if (state.scenario) {
      const since = Date.now() / 1000 - 900;
      const doc = await getJson(`api/series?scenario=${encodeURIComponent(state.scenario)}&since=${since}`);
      drawCharts(doc, $("#charts"));
    }
    const runs = await getJson("api/runs?limit=10");
    $("#runs").replaceChildren(table(["scenario", "run", "ended", "result", "vs baseline"], runs.runs.map((r) => ({
      cls: "verdict-" + verdictOf(r),
      cells: [r.scenario, r.run_id, r.ended_at ? new Date(r.ended_at * 1000).toLocaleString() : "–", { text: verdictOf(r), cls: "verdict" }, baselineCell(r)],
    }))));
    state.updates += 1;
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  async function live() {
    for (;;) {
      try { await refresh(); $("#problem").textContent = ""; }
      catch (e) { $("#problem").textContent = "cannot reach the service: " + e.message; }
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  // -- report -----------------------------------------------------------------------------

  function report(data) {
    const s = data.summary, env = data.environment;
    document.title = `loadsvc report: ${s.scenario} ${s.result}`;
    $("#chosen").textContent = s.scenario;
    $("#environment").textContent = `target ${env.target} · shard ${env.shard} · loadsvc ${env.version} · run ${s.run_id} · ${new Date(s.started_at * 1000).toLocaleString()} for ${s.duration_s} s`;
    const parts = [el("p", { class: "verdict-" + s.result }, `verdict: ${s.result}`),
      table(["endpoint", "threshold", "limit", "measured", "state"], thresholdRows(s.thresholds))];
    if (s.regression) {
      parts.push(el("p", { id: "baseline", class: "baseline baseline-" + s.regression.state }, "against the baseline: " + s.regression.headline));
      if (s.regression.findings.length) {
        parts.push(table(["endpoint", "metric", "baseline", "this run", "limit", "verdict"], findingRows(s.regression.findings)));
      }
    }
    $("#scenarios").replaceChildren(...parts);
    drawCharts(data.series, $("#charts"));
    $("#runs").replaceChildren(el("pre", {}, JSON.stringify(data.config, null, 2)));
    $("#runs-title").textContent = "Configuration of the scenario";
    $("#updated").textContent = "";
    state.updates += 1;
  }

  const inline = document.getElementById("report-data");
  if (inline) report(JSON.parse(inline.textContent));
  else live();
})();
