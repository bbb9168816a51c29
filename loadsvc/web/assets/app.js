// loadsvc's status page and HTML report: the same charts, from /api/series (live) or
// from the data inlined in the report. No network beyond this service's own API.
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const charts = new Map(); // title -> uPlot
  const state = { scenario: null, updates: 0, errors: [] };
  // What the browser tests read: every chart's title, data points and threshold line.
  // latencyCap: the latency axis's rule, for the browser tests to probe with their own data.
  window.loadsvc = { charts: () => describeCharts(), state, latencyCap: (cols, th) => latencyCap(cols, th) };

  // The state words and colours come from the server (loadsvc/headline.py): one source.
  const WORDS = JSON.parse(document.getElementById("state-words").textContent);
  const word = (st) => (WORDS[st] ? WORDS[st][0] : String(st).toUpperCase());
  const colour = (st) => (WORDS[st] ? WORDS[st][1] : "grey");
  const RANK = { red: 3, amber: 2, green: 1, grey: 0 };
  const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;
  // Every time is shown with its zone: the page's, or the scenario's for cron schedules.
  function when(date, zone) {
    if (!date || isNaN(date.getTime())) return "–";
    return date.toLocaleString("en-GB", { timeZone: zone || ZONE, timeZoneName: "short",
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }
  const fmt = {
    ms: (s) => (s == null ? "–" : (s * 1000).toFixed(1) + " ms"),
    pct: (r) => (r == null ? "–" : (r * 100).toFixed(2) + " %"),
    time: (iso, zone) => (iso ? when(new Date(iso), zone) : "–"),
    unix: (ts, zone) => (ts ? when(new Date(ts * 1000), zone) : "–"),
  };
  function badge(st, text) {
    return el("span", { class: "state state-" + colour(st) }, text || word(st));
  }
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
  // The error ratio over the trailing ROLLING_S seconds: a per-second ratio at 15 req/s
  // swings 0-27 % on noise; the per-second counts are in "Errors per second".
  const ROLLING_S = 30;
  function rollingRatio(p, i) {
    let errors = 0, requests = 0;
    for (let k = i; k >= 0 && p.t[i] - p.t[k] < ROLLING_S; k--) { errors += p.errors[k]; requests += p.requests[k]; }
    return requests > 0 ? (100 * errors) / requests : null;
  }
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
        title: `Latency ${e.endpoint}` + (e.kind === "ws" ? " (delivery)" : ""), unit: "ms", latency: true,
        lines: [
          { label: "p50", ep: e, value: ms("p50_s") },
          { label: "p95", ep: e, value: ms("p95_s") },
          { label: "p99", ep: e, value: ms("p99_s") },
        ],
        threshold: th.max_s != null ? { label: `threshold ${q} ≤ ${th.max_s * 1000} ms`, value: th.max_s * 1000 } : null,
      });
    }
    if (eps.length) {
      specs.push({ title: "Errors per second", unit: "/s", lines: eps.map((e) => ({ label: e.endpoint, ep: e, value: rate("errors") })) });
      specs.push({
        title: `Error ratio (rolling ${ROLLING_S} s)`, unit: "%",
        lines: eps.map((e) => ({ label: e.endpoint, ep: e, value: rollingRatio })),
        threshold: eps[0].thresholds && eps[0].thresholds.error_ratio != null
          ? { label: `threshold ${eps[0].thresholds.error_ratio * 100} %`, value: eps[0].thresholds.error_ratio * 100 } : null,
      });
    }
    if (ws.length) {
      specs.push({ title: "Open connections", unit: "conns", lines: ws.map((e) => ({ label: e.endpoint, ep: e, value: (p, i) => p.connections[i] })) });
      // Drops that reconnect within a second never show in the open count: the connects do.
      if (ws.some((e) => e.points.connects)) {
        specs.push({ title: "Connects per second", unit: "/s", lines: ws.map((e) => ({ label: e.endpoint, ep: e, value: rate("connects") })) });
      }
      // Drawn once there was a reconnect: an empty chart says nothing.
      const reconnecting = ws.filter((e) => e.points.reconnect_p95_s.some((v) => v != null));
      if (reconnecting.length) specs.push({ title: "Reconnect time p95", unit: "ms", lines: reconnecting.map((e) => ({ label: e.endpoint, ep: e, value: ms("reconnect_p95_s") })) });
      specs.push({ title: "Missed frames per second", unit: "/s", lines: ws.map((e) => ({ label: e.endpoint, ep: e, value: rate("missed") })) });
    }
    return specs;
  }

  function dataOf(spec, times) {
    const cols = spec.lines.map((l) => column(times, l.ep, l.value));
    if (spec.latency) spec.cap = latencyCap(cols, spec.threshold && spec.threshold.value);
    if (spec.threshold) cols.push(times.map(() => spec.threshold.value));
    return withGaps(times, cols);
  }

  // A latency axis that keeps the threshold and today's values readable: the axis tops at
  // 3x the 98th percentile of the shown values (and at least 1.25x the threshold once the
  // values come within half of it), so an old spike is clipped (and said so) and a healthy
  // series far under its threshold is scaled to its data (the threshold is said to be above).
  function latencyCap(cols, threshold) {
    const values = [];
    for (const c of cols) for (const v of c) if (v != null) values.push(v);
    if (!values.length) return null;
    values.sort((a, b) => a - b);
    const max = values[values.length - 1];
    const p98 = values[Math.min(values.length - 1, Math.floor(values.length * 0.98))];
    const near = threshold != null && max >= threshold * 0.5;
    let top = Math.max(p98 * 3, near ? threshold * 1.25 : 0);
    const above = top < max ? values.filter((v) => v > top).length : 0;
    if (!above) top = Math.max(max, near ? threshold * 1.25 : 0) * 1.1; // room above the data
    return { value: top, above, max, thresholdOff: threshold != null && top < threshold };
  }

  function capNote(spec) {
    const c = spec.cap;
    if (!c) return "";
    const parts = [];
    if (c.above) parts.push(`${c.above} point(s) above the axis, up to ${c.max.toFixed(1)} ms`);
    if (c.thresholdOff) parts.push(`threshold ${spec.threshold.value} ms is above the axis`);
    return parts.length ? " — " + parts.join("; ") : "";
  }

  // Legends show the latest values, not "--", until the cursor points elsewhere.
  function showLatest(u) {
    const xs = u.data[0];
    for (let i = xs.length - 1; i >= 0; i--) {
      // The last point with a measured value (the threshold line is always there).
      if (u.data.slice(1, 1 + u._spec.lines.length).some((c) => c[i] != null)) { u.setLegend({ idx: i }); return; }
    }
  }

  function optionsOf(spec, width) {
    const series = [{}];
    spec.lines.forEach((l, i) => series.push({ label: l.label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false }));
    if (spec.threshold) series.push({ label: spec.threshold.label, stroke: "#e377c2", width: 2, dash: [6, 4], points: { show: false } });
    const y = spec.latency
      ? { range: (u, min, max) => {
          const c = (u._spec || spec).cap;
          return [0, c ? c.value : Math.max(max, 1e-3)];
        } }
      : {};
    return {
      width, height: 220, series,
      axes: [{}, { label: spec.unit, size: 60 }],
      scales: { x: { time: true }, y },
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      hooks: { setCursor: [(u) => { if (u.cursor.idx == null && u._spec) showLatest(u); }] },
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
        existing._box.querySelector("figcaption").textContent = spec.title + capNote(spec);
        existing.setData(data);
        showLatest(existing);
        continue;
      }
      if (existing) { existing.destroy(); existing._box.remove(); }
      const box = el("figure", { class: "chart", "data-title": spec.title }, el("figcaption", {}, spec.title + capNote(spec)));
      container.append(box);
      const u = new uPlot(optionsOf(spec, width), data, box);
      u._box = box;
      u._spec = spec;  // (the setCursor hook may run before this: showLatest is called below)
      charts.set(spec.title, u);
      showLatest(u);
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

  // A finished run or window in one state: a regression fails it, a window cut short by a
  // stop is not a verdict on the backend (too little seen) unless a threshold it measured
  // breached: a breach seen before the stop is one.
  function finalOf(run) {
    if (!run) return "idle";
    const breached = (run.thresholds || []).some((t) => t.state === "breached");
    if (run.stopped_early && verdictOf(run) !== "passed" && !breached) return "stopped_early";
    if (run.regression && run.regression.state === "regressed") return "regressed";
    return run.final || verdictOf(run);
  }

  // What a scenario is now: judged live while it runs, else its last verdict.
  function nowOf(s) {
    if (s.running && s.live) return s.live.result;
    return finalOf(s.last_run);
  }

  function runName(r) {
    return r.run_id + (r.window != null ? " #" + r.window : "");
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

  const zoneOf = (s) => (s.schedule_kind === "cron" ? s.timezone : null);

  function scenarioRows(status) {
    return status.scenarios.map((s) => {
      const st = s.running ? (s.stopping ? "stopping" : `running (${s.users} users)`) : s.held ? "held" : "idle";
      const link = el("a", { href: "#" + encodeURIComponent(s.name) }, s.name);
      const now = s.running && s.live ? s.live.result : null;
      const last = s.last_run ? finalOf(s.last_run) : null;
      return {
        cls: "",
        cells: [link, s.schedule, st,
          now ? { text: badge(now), title: s.live.headline } : "–",
          fmt.time(s.next_run, zoneOf(s)),
          last ? { text: badge(last), title: (s.last_run.thresholds || []).filter((t) => !t.passed).map((t) => t.description).join("; ") } : "–",
          baselineCell(s.last_run)],
      };
    });
  }

  function thresholdRows(thresholds) {
    return thresholds.map((t) => {
      const unit = t.unit === "ratio" ? fmt.pct : (v) => (v == null ? "–" : v + " " + t.unit);
      const q = t.quantile ? " p" + t.quantile * 100 : "";
      return { cls: "verdict-" + (t.passed ? "passed" : "failed"), cells: [t.endpoint, t.name + q, unit(t.limit), unit(t.value), { text: t.state, cls: "verdict" }] };
    });
  }

  function line(st, ...parts) {
    return el("p", { class: "headline state-" + colour(st) }, ...parts);
  }

  // The page's first lines: an overall state, then each scenario's own words (from the server).
  function headlines(status) {
    const out = [];
    let worst = "idle", failing = [];
    for (const s of status.scenarios) {
      const now = nowOf(s);
      if (RANK[colour(now)] > RANK[colour(worst)]) worst = now;
      if (colour(now) === "red" || colour(now) === "amber") failing.push(s.name);
      if (s.running && s.live) out.push(line(s.live.result, el("b", {}, s.name + " now: "), s.live.headline));
      const last = s.last_run;
      if (last) {
        const reasons = (last.thresholds || []).filter((t) => !t.passed).map((t) => t.description);
        const ended = last.ended_at ? " ended " + fmt.unix(last.ended_at, zoneOf(s)) : "";
        const st = finalOf(last);
        let text = `last verdict (run ${runName(last)}${ended}): ${word(st)}`;
        if (st === "stopped_early") text += " — the window was cut short by a stop, not judged a failure";
        if (reasons.length) text += ": " + reasons.join("; ");
        out.push(line(st, el("b", {}, s.name + " "), text));
        if (last.regression && last.regression.headline) {
          out.push(line(last.regression.state === "regressed" ? "regressed" : "idle", el("b", {}, s.name + " "), "against the baseline: " + last.regression.headline));
        }
      }
    }
    // The generator now: /api/status's one `generator` section (loadsvc.lag.is_busy over the
    // last 10 s), not a scenario's live window, so the page, the gauge and the alert agree.
    const g = status.generator || {};
    const generator = el("span", { id: "generator", class: "state-" + (g.busy ? "amber" : g.loop_lag_p99_ms == null || g.loop_lag_limit_ms == null ? "grey" : "green") },
      g.headline || "generator: not watched");
    const summary = failing.length
      ? `${failing.length} of ${status.scenarios.length} scenario(s) not healthy: ${failing.join(", ")}`
      : status.scenarios.some((s) => s.running) ? "every running scenario within its thresholds" : "nothing running";
    const overall = $("#overall");
    overall.className = "overall state-" + colour(worst);
    overall.replaceChildren(el("b", {}, word(worst)), " — " + summary + " · ", generator);
    $("#headlines").replaceChildren(...out);
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
    headlines(status);
    $("#scenarios").replaceChildren(table(["scenario", "schedule", "state", "now (live)", "next run", "last verdict", "vs baseline"], scenarioRows(status)));
    const names = status.scenarios.map((s) => s.name);
    const fromHash = decodeURIComponent(location.hash.slice(1));
    const running = status.scenarios.find((s) => s.running);
    state.scenario = names.includes(fromHash) ? fromHash : state.scenario && names.includes(state.scenario) ? state.scenario : running ? running.name : names[0];
    $("#chosen").textContent = state.scenario || "";
    $("#zone").textContent = `(times in ${ZONE})`;
    if (state.scenario) {
      const since = Date.now() / 1000 - 900;
      const doc = await getJson(`api/series?scenario=${encodeURIComponent(state.scenario)}&since=${since}`);
      drawCharts(doc, $("#charts"));
    }
    const runs = await getJson("api/runs?limit=10");
    $("#runs").replaceChildren(table(["scenario", "run", "ended", "result", "vs baseline"], runs.runs.map((r) => ({
      cls: "",
      cells: [r.scenario, runName(r), fmt.unix(r.ended_at), { text: badge(finalOf(r)) }, baselineCell(r)],
    }))));
    state.updates += 1;
    $("#updated").textContent = "updated " + when(new Date());
  }

  async function live() {
    for (;;) {
      try { await refresh(); $("#problem").textContent = ""; }
      catch (e) { $("#problem").textContent = "cannot reach the service: " + e.message; }
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  // -- report -----------------------------------------------------------------------------

  function endpointRows(s) {
    const breaches = s.first_breach || {};
    return s.endpoints.map((e) => {
      const ts = s.thresholds.filter((t) => t.endpoint === e.endpoint);
      const latency = ts.find((t) => t.unit === "ms" && t.limit != null && t.name !== "clock_skew");
      const failed = Object.entries(e.outcomes || {}).filter(([k, n]) => n && k !== "ok" && k !== "status").map(([k, n]) => `${k} ×${n}`);
      if (e.connection_errors) failed.push(`connection errors ×${e.connection_errors}`);
      const details = (e.diagnostics || []).map((d) => `${d.reason}: ${d.detail} ×${d.count}`);
      const first = Object.entries(breaches[e.endpoint] || {}).map(([name, t]) => `${name} ${fmt.unix(t)}`);
      const bad = ts.some((t) => !t.passed);
      return {
        cls: bad ? "verdict-failed" : "",
        cells: [e.endpoint, e.kind, String(e.count), (e.per_second || 0).toFixed(1), String(e.errors),
          { text: [...failed, ...details].join("; ") || "–", cls: "reasons" },
          e.p50_ms == null ? "–" : e.p50_ms.toFixed(1), e.p95_ms == null ? "–" : e.p95_ms.toFixed(1), e.p99_ms == null ? "–" : e.p99_ms.toFixed(1),
          latency ? `p${latency.quantile * 100} ≤ ${latency.limit} ms` : "–",
          ts.filter((t) => t.excess != null).map((t) => t.excess_text).join("; ") || "–",
          first.join("; ") || "–"],
      };
    });
  }

  function report(data) {
    const s = data.summary, env = data.environment;
    const final = finalOf(s);
    document.title = `loadsvc report: ${s.scenario} ${word(final)}`;
    $("#chosen").textContent = "";
    const planned = s.planned_s ? ` of ${s.planned_s} s planned` : "";
    $("#environment").textContent = `target ${env.target} · shard ${env.shard} · loadsvc ${env.version} · run ${s.run_id} · started ${fmt.unix(s.started_at)} · ran ${s.duration_s} s${planned}`;
    const overall = $("#overall");
    overall.className = "overall state-" + colour(final);
    overall.replaceChildren(el("b", {}, word(final)), " — " + (s.final_line || s.scenario) + " · " + (s.generator || ""));
    $("#headlines").replaceChildren(...s.thresholds.filter((t) => !t.passed).map((t) => line(t.state, t.headline || t.description)));
    const parts = [el("p", { class: "verdict-" + s.result }, `verdict: ${s.result}`),
      table(["endpoint", "threshold", "limit", "measured", "state"], thresholdRows(s.thresholds)),
      el("h3", {}, "Endpoints"),
      el("div", { id: "endpoints" }, table(["endpoint", "kind", "count", "/s", "errors", "errors by reason", "p50 ms", "p95 ms", "p99 ms", "limit", "excess", "first breach"], endpointRows(s))),
      el("h3", {}, "Against the baseline")];
    if (s.regression) {
      parts.push(el("p", { id: "baseline", class: "baseline baseline-" + s.regression.state }, "against the baseline: " + s.regression.headline));
      if (s.regression.findings.length) {
        parts.push(table(["endpoint", "metric", "baseline", "this run", "limit", "verdict"], findingRows(s.regression.findings)));
      }
    } else {
      parts.push(el("p", { class: "baseline baseline-off" }, "not compared with a baseline (loadsvc run --baseline FILE|DIR)"));
    }
    $("#scenarios").replaceChildren(...parts);
    $("#zone").textContent = `(times in ${ZONE})`;
    drawCharts(data.series, $("#charts"));
    $("#runs").replaceChildren(el("pre", {}, JSON.stringify(data.config, null, 2)));
    $("#runs-title").textContent = `Configuration of the scenario (this run lasted ${s.duration_s} s${planned})`;
    $("#updated").textContent = "";
    state.updates += 1;
  }

  const inline = document.getElementById("report-data");
  if (inline) report(JSON.parse(inline.textContent));
  else live();
})();
