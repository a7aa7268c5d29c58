// The managers' analytics dashboard: reads /console/analytics.json with the filters in the
// page's address, draws plain SVG charts and writes every number as text as well.
// Everything that comes from the data is set with textContent, never as HTML.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  const pct = (r) => (r === null || r === undefined ? "–" : (r * 100).toFixed(1) + " %");
  const num = (n) => (n === null || n === undefined ? "–" : String(n));

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 90) return Math.round(seconds) + " s";
    if (seconds < 5400) return Math.round(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }

  function table(headers, rows, testid) {
    const t = el("table", testid ? { "data-testid": testid } : {});
    const head = el("tr");
    headers.forEach((h, i) => head.appendChild(el("th", i ? { class: "n" } : {}, h)));
    t.appendChild(el("thead")).appendChild(head);
    const body = t.appendChild(el("tbody"));
    if (!rows.length) {
      const tr = body.appendChild(el("tr"));
      tr.appendChild(el("td", { colspan: String(headers.length) }, "nothing in this period"));
    }
    for (const row of rows) {
      const tr = body.appendChild(el("tr"));
      row.forEach((cell, i) => tr.appendChild(el("td", i ? { class: "n" } : {}, cell)));
    }
    return t;
  }

  function fill(id, node) {
    const box = $(id);
    box.replaceChildren(node);
  }

  // Label every n-th bar so that labels (about 40 units wide) never overlap.
  const every = (step) => Math.max(1, Math.ceil(40 / step));
  const short = (label) => (/^\d{4}-\d{2}-\d{2}$/.test(label) ? label.slice(5) : label);

  // Drawn at the box's own width (one SVG unit a pixel), so text stays readable on a phone.
  const chartWidth = (id) => Math.max(280, Math.min(900, $(id).clientWidth || 720));

  function barChart(id, labels, series, maxValue, title) {
    // series: [{values, cls, name}] stacked
    const width = chartWidth(id), height = 180, base = 150, left = 30;
    const s = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
    s.appendChild(svg("title", {}, title));
    const top = Math.max(1, maxValue);
    const step = (width - left - 10) / Math.max(1, labels.length);
    s.appendChild(svg("text", { x: 0, y: 12 }, top));
    s.appendChild(svg("text", { x: 0, y: base }, 0));
    labels.forEach((label, i) => {
      let y = base;
      for (const one of series) {
        const v = one.values[i] || 0;
        const h = (v / top) * (base - 15);
        if (h > 0) {
          const rect = svg("rect", { x: left + i * step + 2, y: y - h, width: Math.max(2, step - 4), height: h, class: one.cls });
          rect.appendChild(svg("title", {}, `${label}: ${one.name} ${v}`));
          s.appendChild(rect);
        }
        y -= h;
      }
      if (i % every(step) === 0) {
        s.appendChild(svg("text", { x: left + i * step + step / 2, y: base + 14, "text-anchor": "middle" }, short(label)));
      }
    });
    const box = $(id);
    const legend = el("p", { class: "legend" });
    for (const one of series) {
      legend.appendChild(el("i", { class: "swatch-" + one.cls }));
      legend.appendChild(document.createTextNode(one.name));
    }
    box.replaceChildren(legend, s);
  }

  function lineChart(id, labels, values, title) {
    const width = chartWidth(id), height = 160, base = 130, left = 30;
    const s = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
    s.appendChild(svg("title", {}, title));
    const step = (width - left - 10) / Math.max(1, labels.length);
    const y = (v) => base - ((v - 1) / 4) * (base - 15);
    for (const mark of [1, 3, 5]) s.appendChild(svg("text", { x: 0, y: y(mark) + 4 }, mark));
    let path = "";
    labels.forEach((label, i) => {
      const v = values[i];
      const x = left + i * step + step / 2;
      if (v !== null && v !== undefined) {
        path += (path ? " L" : "M") + x + " " + y(v);
        const dot = svg("circle", { cx: x, cy: y(v), r: 3, class: "bar-csat" });
        dot.appendChild(svg("title", {}, `${label}: ${v}`));
        s.appendChild(dot);
      }
      if (i % every(step) === 0) {
        s.appendChild(svg("text", { x: x, y: base + 14, "text-anchor": "middle" }, short(label)));
      }
    });
    if (path) s.appendChild(svg("path", { d: path, class: "line-csat" }));
    const box = $(id);
    box.replaceChildren(el("p", { class: "legend" }, "average score per period (1-5)"), s);
  }

  function nestedRows(nested) {
    const rows = [];
    for (const [group, items] of Object.entries(nested || {})) {
      for (const [item, count] of Object.entries(items)) rows.push([group, item, String(count)]);
    }
    return rows;
  }

  function render(r) {
    const t = r.totals;
    $("zone").textContent = `Days and times in ${r.zone} (UTC${r.utc_offset.slice(0, 3)}:${r.utc_offset.slice(3)}), ` +
      `${r.from} to ${r.to}, per ${r.period}; generated ${r.generated_at.replace("T", " ")} (${r.zone}). ` +
      `Containment: ${r.containment_definition}.`;
    const cards = [
      ["conversations", t.conversations, "conversations"],
      ["containment", pct(t.containment), `settled by the bot (${t.contained} of ${t.conversations})`],
      ["handoffs", t.handoffs, "handed to a person"],
      ["first-response", duration(t.first_response.median_seconds),
        `median first response; ${pct(t.first_response.share_within_sla)} within ${r.sla.first_response_minutes} min`],
      ["resolution", duration(t.resolution.median_seconds),
        `median resolution; ${pct(t.resolution.share_within_sla)} within ${r.sla.resolution_hours} h`],
      ["csat", t.csat.average === null ? "–" : t.csat.average.toFixed(2), `average CSAT of ${t.csat.answers} answers`],
      ["returns", t.returns.total, "returns and exchanges"],
      ["complaints", t.complaints.total, "complaints"],
    ];
    $("cards").replaceChildren(...cards.map(([id, value, label]) => {
      const c = el("div", { class: "card", "data-testid": "card-" + id });
      c.appendChild(el("b", {}, value));
      c.appendChild(el("span", {}, label));
      return c;
    }));

    const labels = r.periods.map((p) => p.period);
    const maxConv = Math.max(0, ...r.periods.map((p) => p.conversations));
    barChart("chart-conversations", labels, [
      { values: r.periods.map((p) => p.contained), cls: "bar-contained", name: "settled by the bot" },
      { values: r.periods.map((p) => p.handed_off_conversations), cls: "bar-handed", name: "handed to a person" },
    ], maxConv, "Conversations per period");
    fill("table-periods", table(["period", "conversations", "settled by the bot", "containment", "handoffs", "CSAT average"],
      r.periods.map((p) => [p.period, num(p.conversations), num(p.contained), pct(p.containment), num(p.handoffs),
        p.csat.average === null ? "–" : p.csat.average.toFixed(2)]), "periods"));

    fill("table-reasons", table(["reason", "handoffs", "rate (of conversations)"],
      Object.entries(t.handoffs_by_reason).map(([reason, v]) => [reason, String(v.count), pct(v.rate)]), "reasons"));

    const sla = (name, f) => [name, String(f.count), duration(f.median_seconds), duration(f.p90_seconds),
      String(f.within_sla), String(f.breached), pct(f.share_within_sla)];
    fill("table-sla", table(["", "count", "median", "p90", "within SLA", "breached", "share within SLA"],
      [sla(`first response (SLA ${r.sla.first_response_minutes} min)`, t.first_response),
        sla(`resolution (SLA ${r.sla.resolution_hours} h)`, t.resolution)], "sla"));

    const counts = t.csat.counts;
    barChart("chart-csat", ["1", "2", "3", "4", "5"],
      [{ values: [1, 2, 3, 4, 5].map((s) => counts[String(s)]), cls: "bar-csat", name: "answers per score" }],
      Math.max(0, ...Object.values(counts)), "CSAT answers per score");
    lineChart("chart-csat-trend", labels, r.periods.map((p) => p.csat.average), "CSAT average per period");
    fill("table-csat", table(["score", "answers"], [1, 2, 3, 4, 5].map((s) => [String(s), String(counts[String(s)])])
      .concat([["average", t.csat.average === null ? "–" : t.csat.average.toFixed(2)]]), "csat"));

    fill("table-returns", table(["product category", "reason", "returns"], nestedRows(t.returns.by_category), "returns"));
    const refusals = table(["product category", "refusal reason", "refused"], nestedRows(t.refusals.by_category), "refusals");
    fill("table-refusals", refusals);
    fill("table-complaints", table(["product category", "about", "complaints"], nestedRows(t.complaints.by_category),
      "complaints"));
  }

  function currentQuery() {
    const form = $("filters");
    const params = new URLSearchParams();
    for (const name of ["period", "from", "to", "channel", "language"]) {
      const v = form.elements[name].value;
      if (v) params.set(name, v);
    }
    return params;
  }

  async function load(params) {
    $("csv").href = "/console/analytics.csv?" + params.toString();
    $("error").textContent = "";
    let response;
    try {
      response = await fetch("/console/analytics.json?" + params.toString(), { credentials: "same-origin" });
    } catch (e) {
      $("error").textContent = "The gateway cannot be reached; try again.";
      return;
    }
    if (response.status === 401) { window.location.href = "/console"; return; }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      $("error").textContent = body.message || body.error || ("error " + response.status);
      return;
    }
    const form = $("filters");
    form.elements.period.value = body.period;
    form.elements.from.value = body.from;
    form.elements.to.value = body.to;
    const channel = form.elements.channel;
    if (channel.options.length === 1) {
      for (const c of body.channels) channel.appendChild(el("option", { value: c }, c));
    }
    channel.value = body.channel || "";
    form.elements.language.value = body.language || "";
    render(body);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const params = new URLSearchParams(window.location.search);
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      const q = currentQuery();
      history.replaceState(null, "", "/console/analytics?" + q.toString());
      load(q);
    });
    load(params);
  });
})();
