// The Shoal web console: a single page over the broker's JSON API.
//
// Routes live in the URL fragment (#/topics/orders), so the broker serves
// one HTML file. A timer polls /stats on every page (the overview's rates
// and latency need consecutive snapshots) and then refreshes the page on
// view. The broker keeps totals, not history: charts show what this page
// has sampled since it was opened (kept for HISTORY_MS).
//
// For the browser test, <main> carries data-page (the page on view),
// data-loaded ("true" once its data arrived) and data-refreshes (counts
// refreshes, so a test can see the page update by itself); tables and
// figures carry ids and data-field attributes.
"use strict";
(function () {
  const HISTORY_MS = 10 * 60 * 1000;
  const CHART_MS = 5 * 60 * 1000;
  const GROUPS_SAMPLED_MAX = 50;

  const state = { stats: [], lag: {}, page: null, timer: null, refreshes: 0, busy: false };
  const main = document.getElementById("page");

  // ---- DOM and formatting helpers -------------------------------------

  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      const v = attrs[k];
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      e.appendChild(typeof kid === "string" || typeof kid === "number" ? document.createTextNode(String(kid)) : kid);
    }
    return e;
  }
  const $ = (sel, root) => (root || document).querySelector(sel);

  const nf = new Intl.NumberFormat("en-US");
  function num(n) { return n === null || n === undefined ? "–" : nf.format(n); }
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
  }
  function duration(ms) {
    if (ms === null || ms === undefined) return "–";
    if (ms < 1000) return `${Math.round(ms)} ms`;
    // One decimal at most, none when whole: 1.5 s, 5 min, 7 d (as the CLI).
    const short = (v) => String(Number(v.toFixed(1)));
    const s = ms / 1000;
    if (s < 60) return `${short(s)} s`;
    if (s < 3600) return `${short(s / 60)} min`;
    if (s < 86400) return `${short(s / 3600)} h`;
    return `${short(s / 86400)} d`;
  }
  function seconds(s) { return s === null || s === undefined ? "–" : `${s.toFixed(1)} s`; }
  function rate(r) { return r === null || r === undefined ? "–" : `${r < 10 ? r.toFixed(1) : nf.format(Math.round(r))}/s`; }
  function latency(s) { return s === null || s === undefined ? "–" : s < 0.001 ? `${(s * 1e6).toFixed(0)} µs` : `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms`; }
  function time(ms) { return ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "–"; }
  function circuitBadge(c) {
    const cls = c === "closed" ? "ok" : c === "open" ? "bad" : "warn";
    return h("span", { class: `badge ${cls}`, "data-field": "circuit" }, c);
  }
  function cell(field, value, cls) { return h("td", { class: cls === undefined ? "num" : cls, "data-field": field }, value); }

  async function api(method, path, body) {
    const init = { method, headers: {} };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    const resp = await fetch(path, init);
    const text = await resp.text();
    let doc = null;
    try { doc = text ? JSON.parse(text) : null; } catch (_) { doc = null; }
    if (!resp.ok) {
      const msg = doc && doc.message ? `${doc.code}: ${doc.message}` : `${resp.status} ${text}`;
      const err = new Error(msg);
      err.status = resp.status;
      throw err;
    }
    return doc;
  }
  const enc = encodeURIComponent;

  function table(id, headers, rows, empty) {
    const head = h("tr", {}, headers.map((t) => h("th", { class: t.endsWith(" ") ? "num" : "" }, t.trim())));
    const t = h("table", { id }, h("thead", {}, head), h("tbody", {}, rows));
    if (!rows.length) return h("div", {}, t, h("div", { class: "empty", "data-empty": id }, empty || "nothing yet"));
    return t;
  }
  function replace(id, node) {
    const old = document.getElementById(id);
    if (old) old.replaceWith(node);
  }
  // Rebuilds a <select>'s options only when they changed, so a refresh
  // does not close a list the operator has open.
  function setOptions(sel, pairs, selected) {
    const key = JSON.stringify(pairs);
    if (sel.dataset.options !== key) {
      sel.replaceChildren(...pairs.map(([v, label]) => h("option", { value: v }, label)));
      sel.dataset.options = key;
    }
    sel.value = selected;
  }
  function slot(id) { return h("div", { id }); }
  function fill(id, ...kids) {
    const e = document.getElementById(id);
    if (e) e.replaceChildren(...kids.flat().filter((k) => k));
  }
  function panel(title, ...kids) { return h("section", { class: "panel" }, title ? h("h2", {}, title) : null, ...kids); }
  function card(label, id, value) {
    return h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value", id }, value));
  }

  // ---- samples kept by the page ---------------------------------------

  function sampleStats(s) {
    state.stats.push(s);
    while (state.stats.length && state.stats[0].at_ms < s.at_ms - HISTORY_MS) state.stats.shift();
  }
  function sampleLag(group, g) {
    const now = Date.now();
    const series = state.lag[group] || (state.lag[group] = {});
    for (const p of g.partitions) {
      const key = `${p.topic}/${p.partition}`;
      const pts = series[key] || (series[key] = []);
      pts.push([now, p.lag_records, p.lag_seconds]);
      while (pts.length && pts[0][0] < now - HISTORY_MS) pts.shift();
    }
  }

  const sum = (xs, f) => xs.reduce((n, x) => n + f(x), 0);

  // Per-second rate of f(snapshot) between consecutive snapshots; a drop
  // (broker restarted) is a gap.
  function rateSeries(f) {
    const out = [];
    for (let i = 1; i < state.stats.length; i++) {
      const a = state.stats[i - 1], b = state.stats[i];
      const dt = (b.at_ms - a.at_ms) / 1000;
      const d = f(b) - f(a);
      out.push([b.at_ms, dt > 0 && d >= 0 ? d / dt : null]);
    }
    return out;
  }

  // Produce ack latency quantile of each interval, from the difference of
  // consecutive cumulative histograms (all shards added up).
  function mergedLatency(s) {
    const bounds = s.shards.length ? s.shards[0].produce_ack_latency.bounds_s : [];
    const cum = bounds.map((_, i) => sum(s.shards, (x) => x.produce_ack_latency.buckets[i] || 0));
    return { bounds, cum, count: sum(s.shards, (x) => x.produce_ack_latency.count) };
  }
  function intervalQuantile(a, b, q) {
    const A = mergedLatency(a), B = mergedLatency(b);
    if (!B.bounds.length || B.count < A.count) return null;
    const per = B.cum.map((c, i) => (c - (A.cum[i] || 0)) - (i ? B.cum[i - 1] - (A.cum[i - 1] || 0) : 0));
    return ShoalCharts.quantile(B.bounds, per, B.count - A.count, q);
  }
  function latencySeries(q) {
    const out = [];
    for (let i = 1; i < state.stats.length; i++) {
      const v = intervalQuantile(state.stats[i - 1], state.stats[i], q);
      out.push([state.stats[i].at_ms, v === null ? null : v * 1000]);
    }
    return out;
  }
  // The overview's charts span what the page has sampled, from 30 s up to
  // CHART_MS, so a freshly opened page does not draw a sliver at the edge.
  function overviewWindow() {
    const oldest = state.stats.length ? state.stats[0].at_ms : Date.now();
    return Math.min(CHART_MS, Math.max(30000, Date.now() - oldest));
  }
  function lastRate(f) {
    const r = rateSeries(f);
    return r.length ? r[r.length - 1][1] : null;
  }

  // ---- overview -------------------------------------------------------

  const overview = {
    name: "overview",
    mount() {
      return [
        h("h1", {}, "Overview"),
        h("div", { class: "cards" },
          card("version", "ov-version", "–"), card("shards", "ov-shards", "–"),
          card("topics", "ov-topics", "–"), card("groups", "ov-groups", "–"),
          card("produce", "ov-produce-rate", "–"), card("consume", "ov-consume-rate", "–"),
          card("ack latency p50", "ov-ack-p50", "–"), card("ack latency p99", "ov-ack-p99", "–"),
          card("data on disk", "ov-size", "–"), card("fenced partitions", "ov-fenced", "–")),
        h("div", { class: "grid two" },
          panel("Records per second", slot("ov-rate-chart")),
          panel("Produce ack latency (ms)", slot("ov-latency-chart"))),
        panel("Shards", slot("ov-shards-table")),
        panel("Consumer groups", slot("ov-groups-table")),
      ];
    },
    async refresh() {
      const s = state.stats[state.stats.length - 1];
      if (!s) return;
      const allIn = (x) => sum(x.shards, (y) => y.records_in);
      const allOut = (x) => sum(x.shards, (y) => y.records_out);
      const delivered = (x) => sum(x.groups, (g) => g.deliveries_total);
      fill("ov-version", s.version);
      fill("ov-shards", `${s.shards.length} / ${s.shards_configured}`);
      fill("ov-topics", num(s.topics));
      fill("ov-groups", num(s.groups.length));
      fill("ov-produce-rate", rate(lastRate(allIn)));
      fill("ov-consume-rate", rate(lastRate(allOut)));
      const n = state.stats.length;
      fill("ov-ack-p50", n > 1 ? latency(intervalQuantile(state.stats[n - 2], s, 0.5)) : "–");
      fill("ov-ack-p99", n > 1 ? latency(intervalQuantile(state.stats[n - 2], s, 0.99)) : "–");
      fill("ov-size", bytes(sum(s.shards, (x) => x.size_bytes)));
      fill("ov-fenced", num(sum(s.shards, (x) => x.fenced_partitions)));
      ShoalCharts.line($("#ov-rate-chart"), {
        windowMs: overviewWindow(), format: (v) => (v >= 10 || Number.isInteger(v) ? nf.format(Math.round(v)) : v.toFixed(1)),
        series: [
          { name: "produced", points: rateSeries(allIn) },
          { name: "read", points: rateSeries(allOut) },
          { name: "delivered to groups", points: rateSeries(delivered) },
        ],
      });
      ShoalCharts.line($("#ov-latency-chart"), {
        windowMs: overviewWindow(), format: (v) => (v === 0 ? "0" : v.toFixed(v < 10 ? 2 : 0)),
        series: [{ name: "p50", points: latencySeries(0.5) }, { name: "p99", points: latencySeries(0.99) }],
      });
      const rows = s.shards.map((x) => {
        const rin = lastRate((t) => (t.shards.find((y) => y.shard === x.shard) || { records_in: 0 }).records_in);
        return h("tr", { "data-shard": x.shard },
          cell("shard", x.shard), cell("partitions", num(x.partitions)), cell("fenced_partitions", num(x.fenced_partitions)),
          cell("size_bytes", bytes(x.size_bytes)), cell("records_in", num(x.records_in)), cell("records_out", num(x.records_out)),
          cell("produce_rate", rate(rin)),
          cell("connections", `${x.native_connections_open} native · ${x.http_connections_open} http`),
          cell("hops", `${num(x.cross_core_hops_in)} in · ${num(x.cross_core_hops_out)} out`));
      });
      fill("ov-shards-table", table("shards-table",
        ["shard ", "partitions ", "fenced ", "size ", "records in ", "records out ", "produce ", "connections ", "cross-core hops "], rows));
      const grows = s.groups.map((g) => h("tr", { class: "clickable", "data-group": g.group, onclick: () => go(`#/groups/${enc(g.group)}`) },
        cell("group", g.group, "mono"), cell("state", g.state, ""), cell("members", num(g.members)),
        cell("lag_records", num(g.lag_records)), cell("lag_seconds_max", seconds(g.lag_seconds_max)),
        cell("retry_backlog", num(g.retry_backlog)), cell("quarantine_depth", num(g.quarantine_depth)),
        h("td", {}, circuitBadge(g.circuit))));
      fill("ov-groups-table", table("overview-groups-table",
        ["group", "state", "members ", "lag ", "lag (oldest) ", "retry backlog ", "quarantined ", "breaker"], grows, "no consumer groups"));
    },
  };

  // ---- topics ---------------------------------------------------------

  function retentionText(c) {
    const parts = [];
    if (c.retention_ms !== null && c.retention_ms !== undefined) parts.push(duration(c.retention_ms));
    if (c.retention_bytes !== null && c.retention_bytes !== undefined) parts.push(`${bytes(c.retention_bytes)} per partition`);
    return parts.length ? parts.join(" or ") : "forever";
  }
  function flushText(c) { return c.flush === "interval" ? `every ${duration(c.flush_interval_ms)}` : c.flush; }

  const topicsPage = {
    name: "topics",
    mount() {
      return [h("h1", {}, "Topics"), panel(null, slot("topics-slot"))];
    },
    async refresh() {
      const list = await api("GET", "/topics");
      const described = await Promise.all(list.topics.slice(0, 200).map((t) => api("GET", `/topics/${enc(t.name)}`).catch(() => null)));
      const rows = described.filter((d) => d).map((d) => h("tr", { class: "clickable", "data-topic": d.name, onclick: () => go(`#/topics/${enc(d.name)}`) },
        cell("name", d.name, "mono"), cell("partitions", num(d.config.partitions)),
        cell("records", num(sum(d.partitions, (p) => p.high_watermark - p.log_start))),
        cell("size_bytes", bytes(sum(d.partitions, (p) => p.size_bytes))),
        cell("retention", retentionText(d.config), ""), cell("flush", flushText(d.config), ""),
        cell("compacted", d.config.compacted ? "compacted" : "", ""),
        cell("fenced", d.partitions.some((p) => p.fenced) ? "fenced" : "", "")));
      fill("topics-slot", table("topics-table", ["topic", "partitions ", "records ", "size ", "retention", "flush", "", ""], rows, "no topics: create one with shoal topic create NAME"));
    },
  };

  function topicPage(name) {
    let partitions = 0;
    let nextOffset = null;
    return {
      name: "topic",
      mount() {
        return [
          h("h1", {}, "Topic ", h("span", { class: "mono", id: "topic-name" }, name)),
          h("div", { class: "grid two" }, panel("Configuration", slot("topic-config")), panel("Group lag on this topic", slot("topic-groups"))),
          panel("Partitions", slot("topic-partitions")),
          panel("Records",
            h("div", { class: "row" },
              h("label", {}, "partition", h("select", { id: "rec-partition" })),
              h("label", {}, "seek by", h("select", { id: "rec-mode" },
                h("option", { value: "offset" }, "offset"), h("option", { value: "time" }, "time"), h("option", { value: "latest" }, "latest"))),
              h("label", {}, "offset", h("input", { id: "rec-offset", type: "number", min: "0", value: "0" })),
              h("label", {}, "time (UTC)", h("input", { id: "rec-time", type: "datetime-local", step: "1" })),
              h("label", {}, "max", h("input", { id: "rec-max", type: "number", min: "1", max: "1000", value: "20" })),
              h("label", {}, "encoding", h("select", { id: "rec-encoding" },
                h("option", { value: "utf8" }, "text (base64 when binary)"), h("option", { value: "base64" }, "base64"))),
              h("button", { id: "rec-read", class: "primary", onclick: () => this.read(false) }, "Read"),
              h("button", { id: "rec-next", onclick: () => this.read(true), disabled: true }, "Next page")),
            slot("rec-result")),
          panel("Publish a test record",
            h("div", { class: "row" },
              h("label", {}, "key", h("input", { id: "pub-key", placeholder: "optional" })),
              h("label", {}, "value", h("textarea", { id: "pub-value", cols: "40" })),
              h("label", {}, "headers (k=v per line)", h("textarea", { id: "pub-headers", cols: "24" })),
              h("label", {}, "partition", h("input", { id: "pub-partition", type: "number", min: "0", placeholder: "by key" })),
              h("label", {}, "encoding", h("select", { id: "pub-encoding" }, h("option", { value: "utf8" }, "utf8"), h("option", { value: "base64" }, "base64"))),
              h("button", { id: "pub-send", class: "primary", onclick: () => this.publish() }, "Publish")),
            h("div", { class: "result", id: "pub-result" })),
        ];
      },
      async refresh() {
        const [d, st] = await Promise.all([api("GET", `/topics/${enc(name)}`), api("GET", `/topics/${enc(name)}/stats`)]);
        const c = d.config, r = c.retry;
        fill("topic-config", h("div", { class: "detail" }, h("dl", { id: "topic-config-list" },
          h("dt", {}, "partitions"), h("dd", { "data-field": "partitions" }, num(c.partitions)),
          h("dt", {}, "retention"), h("dd", { "data-field": "retention" }, retentionText(c)),
          h("dt", {}, "flush"), h("dd", { "data-field": "flush" }, flushText(c)),
          h("dt", {}, "compacted"), h("dd", {}, c.compacted ? `yes (tombstones kept ${duration(c.tombstone_retention_ms)})` : "no"),
          h("dt", {}, "dedup window"), h("dd", {}, c.dedup_window_ms ? duration(c.dedup_window_ms) : "off"),
          h("dt", {}, "retries"), h("dd", {}, `${r.max_attempts} attempts, backoff ${duration(r.backoff_base_ms)} to ${duration(r.backoff_max_ms)}${r.ordered_retry ? ", ordered per key" : ""}`),
          h("dt", {}, "dead letters"), h("dd", {}, r.dead_letter ? "quarantined" : "dropped"))));
        const extra = new Map(st.partitions.map((p) => [p.partition, p]));
        const rows = d.partitions.map((p) => {
          const x = extra.get(p.partition) || {};
          return h("tr", { "data-partition": p.partition },
            cell("partition", p.partition), cell("shard", p.shard), cell("log_start", num(p.log_start)),
            cell("high_watermark", num(p.high_watermark)), cell("log_end", num(p.log_end)),
            cell("size_bytes", bytes(p.size_bytes)), cell("segments", num(x.segments)),
            cell("last_append", x.last_append_at_ms ? time(x.last_append_at_ms) : "–", "mono"),
            cell("quarantine_depth", num(x.quarantine_depth)),
            h("td", { "data-field": "fenced" }, p.fenced ? h("span", { class: "badge bad" }, `fenced: ${p.fenced}`) : h("span", { class: "badge ok" }, "ok")));
        });
        fill("topic-partitions", table("partitions-table",
          ["partition ", "owner shard ", "log start ", "high watermark ", "log end ", "size ", "segments ", "last append", "quarantined ", "state"], rows));
        const grows = st.groups.map((g) => h("tr", { class: "clickable", "data-group": g.group, onclick: () => go(`#/groups/${enc(g.group)}`) },
          cell("group", g.group, "mono"), cell("lag_records", num(g.lag_records)), cell("lag_seconds", seconds(g.lag_seconds))));
        fill("topic-groups", table("topic-groups-table", ["group", "lag ", "lag (oldest) "], grows, "no group consumes this topic"));
        const sel = $("#rec-partition");
        if (partitions !== c.partitions) {
          partitions = c.partitions;
          sel.replaceChildren(...Array.from({ length: partitions }, (_, i) => h("option", { value: i }, String(i))));
        }
      },
      async read(next) {
        const partition = Number($("#rec-partition").value || 0);
        const max = Math.max(1, Math.min(1000, Number($("#rec-max").value) || 20));
        const mode = $("#rec-mode").value;
        const body = { partition, max, encoding: $("#rec-encoding").value };
        if (next && nextOffset !== null) body.offset = nextOffset;
        else if (mode === "time") {
          const t = $("#rec-time").value;
          if (!t) { fill("rec-result", h("div", { class: "error" }, "choose a time to seek to")); return; }
          body.timestamp_ms = Date.parse(`${t}Z`);
        } else if (mode === "latest") {
          const d = await api("GET", `/topics/${enc(name)}`);
          const p = d.partitions.find((q) => q.partition === partition);
          body.offset = Math.max(p.log_start, p.high_watermark - max);
        } else body.offset = Number($("#rec-offset").value) || 0;
        try {
          const r = await api("POST", `/topics/${enc(name)}/replay`, body);
          const part = r.partitions[0];
          nextOffset = part.next_offset;
          $("#rec-next").disabled = part.records.length === 0;
          const rows = part.records.map((rec) => h("tr", { "data-offset": rec.offset },
            cell("offset", rec.offset), cell("timestamp", time(rec.timestamp_ms), "mono"),
            cell("key", rec.key === null ? "–" : rec.key, "mono value-cell"),
            cell("value", rec.value === null ? "(tombstone)" : rec.value, "mono value-cell"),
            cell("headers", Object.entries(rec.headers).map(([k, v]) => `${k}=${v}`).join(", "), "mono"),
            h("td", { "data-field": "encoding" }, rec.encoding === "base64" ? h("span", { class: "badge warn" }, "base64") : "")));
          fill("rec-result",
            h("div", { class: "muted" }, `partition ${partition}: log start ${num(part.log_start)}, high watermark ${num(part.high_watermark)}, next offset ${num(part.next_offset)}`),
            table("records-table", ["offset ", "time", "key", "value", "headers", ""], rows, "no records from there"));
        } catch (e) {
          fill("rec-result", h("div", { class: "error" }, e.message));
        }
      },
      async publish() {
        const headers = {};
        for (const line of $("#pub-headers").value.split("\n")) {
          const i = line.indexOf("=");
          if (i > 0) headers[line.slice(0, i).trim()] = line.slice(i + 1);
        }
        const rec = { value: $("#pub-value").value, headers };
        const key = $("#pub-key").value;
        if (key) rec.key = key;
        const p = $("#pub-partition").value;
        if (p !== "") rec.partition = Number(p);
        try {
          const r = await api("POST", `/topics/${enc(name)}/messages`, { records: [rec], encoding: $("#pub-encoding").value });
          const out = r.records[0];
          fill("pub-result", h("span", { class: "badge ok" }, "published"), ` partition ${out.partition} at offset ${out.offset} (${out.durability})`);
          await this.refresh();
        } catch (e) {
          fill("pub-result", h("span", { class: "error" }, e.message));
        }
      },
    };
  }

  // ---- groups ---------------------------------------------------------

  const groupsPage = {
    name: "groups",
    mount() { return [h("h1", {}, "Consumer groups"), panel(null, slot("groups-slot"))]; },
    async refresh() {
      const list = await api("GET", "/groups");
      const described = await Promise.all(list.groups.slice(0, GROUPS_SAMPLED_MAX).map((g) => api("GET", `/groups/${enc(g.group)}`).catch(() => null)));
      const rows = described.filter((g) => g).map((g) => {
        sampleLag(g.group, g);
        return h("tr", { class: "clickable", "data-group": g.group, onclick: () => go(`#/groups/${enc(g.group)}`) },
          cell("group", g.group, "mono"), cell("state", g.state, ""), cell("generation", num(g.generation)),
          cell("members", num(g.members.length)),
          cell("topics", [...new Set(g.partitions.map((p) => p.topic))].join(", "), ""),
          cell("lag_records", num(sum(g.partitions, (p) => p.lag_records))),
          cell("lag_seconds", seconds(Math.max(0, ...g.partitions.map((p) => p.lag_seconds)))),
          cell("in_flight", num(sum(g.partitions, (p) => p.in_flight))),
          cell("retry_backlog", num(sum(g.partitions, (p) => p.retry_backlog))),
          cell("quarantine_depth", num(sum(g.partitions, (p) => p.quarantine_depth))),
          h("td", {}, circuitBadge(g.circuit)),
          cell("retry_budget", `${(g.retry_budget_used_permille / 10).toFixed(1)}% of ${(g.retry_budget_permille / 10).toFixed(0)}%`));
      });
      fill("groups-slot", table("groups-table",
        ["group", "state", "generation ", "members ", "topics", "lag ", "lag (oldest) ", "in flight ", "retry backlog ", "quarantined ", "breaker", "retry budget used "],
        rows, "no consumer groups yet: they appear when a consumer joins"));
    },
  };

  function groupPage(group) {
    return {
      name: "group",
      mount() {
        return [
          h("h1", {}, "Group ", h("span", { class: "mono", id: "group-name" }, group)),
          h("div", { class: "cards" },
            card("state", "g-state", "–"), card("generation", "g-generation", "–"), card("members", "g-members", "–"),
            card("breaker", "g-circuit", "–"), card("retry budget used", "g-budget", "–"),
            card("lag (records)", "g-lag", "–"), card("in flight", "g-inflight", "–"), card("retry backlog", "g-retry", "–")),
          h("div", { class: "grid two" },
            panel("Lag per partition (records)", slot("g-lag-records-chart")),
            panel("Lag per partition (seconds)", slot("g-lag-seconds-chart"))),
          panel("Partitions", slot("g-partitions")),
          panel("Members", slot("g-members-table")),
          panel("Deliveries since the broker started", slot("g-totals")),
        ];
      },
      async refresh() {
        const g = await api("GET", `/groups/${enc(group)}`);
        sampleLag(group, g);
        fill("g-state", g.state);
        fill("g-generation", num(g.generation));
        fill("g-members", num(g.members.length));
        fill("g-circuit", circuitBadge(g.circuit));
        const used = g.retry_budget_used_permille, cap = Math.max(1, g.retry_budget_permille);
        const bar = h("span", { class: "bar" }, h("span", {}));
        bar.firstChild.style.width = `${Math.min(100, (used / cap) * 100)}%`;
        fill("g-budget", `${(used / 10).toFixed(1)}% / ${(cap / 10).toFixed(0)}% `, bar);
        fill("g-lag", num(sum(g.partitions, (p) => p.lag_records)));
        fill("g-inflight", num(sum(g.partitions, (p) => p.in_flight)));
        fill("g-retry", num(sum(g.partitions, (p) => p.retry_backlog)));
        const hist = state.lag[group] || {};
        const keys = Object.keys(hist).sort();
        ShoalCharts.line($("#g-lag-records-chart"), {
          windowMs: CHART_MS, format: (v) => (Number.isInteger(v) ? nf.format(v) : v.toFixed(1)),
          series: keys.map((k) => ({ name: k, points: hist[k].map((p) => [p[0], p[1]]) })),
        });
        ShoalCharts.line($("#g-lag-seconds-chart"), {
          windowMs: CHART_MS, format: (v) => `${v.toFixed(1)} s`,
          series: keys.map((k) => ({ name: k, points: hist[k].map((p) => [p[0], p[2]]) })),
        });
        const rows = g.partitions.map((p) => h("tr", { "data-topic": p.topic, "data-partition": p.partition },
          cell("topic", p.topic, "mono"), cell("partition", p.partition), cell("owner", p.owner || "–", "mono"),
          cell("committed_offset", num(p.committed_offset)), cell("log_end", num(p.log_end)),
          cell("lag_records", num(p.lag_records)), cell("lag_seconds", seconds(p.lag_seconds)),
          cell("in_flight", num(p.in_flight)), cell("retry_backlog", num(p.retry_backlog)),
          cell("quarantine_depth", num(p.quarantine_depth))));
        fill("g-partitions", table("group-partitions-table",
          ["topic", "partition ", "owner", "committed ", "log end ", "lag ", "lag (oldest) ", "in flight ", "retry backlog ", "quarantined "], rows, "no partitions assigned"));
        const mrows = g.members.map((m) => h("tr", { "data-member": m.member },
          cell("member", m.member, "mono"), cell("member_name", m.member_name, ""),
          cell("assignment", m.assignment.map((a) => `${a.topic} [${a.partitions.join(", ")}]`).join("; "), "mono"),
          cell("heartbeat", `${duration(m.last_heartbeat_age_ms)} ago`)));
        fill("g-members-table", table("group-members-table", ["member", "name", "assignment", "last heartbeat "], mrows, "no live members"));
        fill("g-totals", h("div", { class: "detail" }, h("dl", {},
          ["deliveries_total", "acks_total", "nacks_total", "retries_total", "quarantined_total"].flatMap((k) =>
            [h("dt", {}, k.replace("_total", "")), h("dd", { "data-field": k }, num(g[k]))]))));
      },
    };
  }

  // ---- quarantine -----------------------------------------------------

  function quarantinePage(params) {
    const q = { topic: params.topic || "", group: params.group || "", reason: params.reason || "", cursor: null, selected: null, entries: [] };
    function filterBody() {
      const b = {};
      if (q.group) b.group = q.group;
      if (q.reason) b.reason_contains = q.reason;
      return b;
    }
    function queryString(extra) {
      const p = new URLSearchParams();
      if (q.group) p.set("group", q.group);
      if (q.reason) p.set("reason", q.reason);
      for (const k in extra || {}) p.set(k, extra[k]);
      return p.toString();
    }
    function scopeText() {
      const only = $("#q-only-selected");
      if (only && only.checked && q.selected) return `entry #${q.selected.entry_id} of topic ${q.topic}`;
      const parts = [`every entry of topic ${q.topic}`];
      if (q.group) parts.push(`failed by group ${q.group}`);
      if (q.reason) parts.push(`whose reason contains "${q.reason}"`);
      return parts.join(" ");
    }
    function syncActions() {
      const hasGroup = !!q.group;
      $("#q-dry-run").disabled = !q.topic || !hasGroup;
      $("#q-redrive").disabled = !q.topic || !hasGroup;
      fill("q-redrive-hint", hasGroup ? `entries go back to group ${q.group} only` : "choose a group: entries go back to the group that failed them");
      const only = $("#q-only-selected");
      only.disabled = !q.selected;
      if (!q.selected) only.checked = false;
      fill("q-only-label", q.selected ? `only entry #${q.selected.entry_id}` : "only the selected entry");
      fill("q-purge-scope", q.topic ? `Purge deletes ${scopeText()}. Type the topic name to confirm.` : "choose a topic");
      $("#q-purge").disabled = !q.topic || $("#q-purge-confirm").value !== q.topic;
    }
    return {
      name: "quarantine",
      mount() {
        return [
          h("h1", {}, "Quarantine"),
          panel(null, h("div", { class: "row" },
            h("label", {}, "topic", h("select", { id: "q-topic", onchange: (e) => { q.topic = e.target.value; q.group = ""; q.cursor = null; q.selected = null; this.refresh(); } })),
            h("label", {}, "group", h("select", { id: "q-group", onchange: (e) => { q.group = e.target.value; q.cursor = null; this.refresh(); } })),
            h("label", {}, "reason contains", h("input", { id: "q-reason", value: q.reason })),
            h("button", { id: "q-apply", onclick: () => { q.reason = $("#q-reason").value; q.cursor = null; this.refresh(); } }, "Apply"))),
          h("div", { class: "grid two" },
            panel("Entries by group and reason", slot("q-counts")),
            panel("Entry", h("div", { id: "q-detail", class: "detail" }, h("div", { class: "empty" }, "select an entry")))),
          panel("Entries", slot("q-entries"), h("div", { class: "row" },
            h("button", { id: "q-first", onclick: () => { q.cursor = null; this.refresh(); } }, "First page"),
            h("button", { id: "q-more", disabled: true, onclick: () => { q.cursor = q.next; this.refresh(); } }, "Next page"))),
          h("div", { class: "grid two" },
            panel("Redrive",
              h("div", { class: "muted", id: "q-redrive-hint" }),
              h("div", { class: "row" },
                h("label", {}, "rate (entries/s, 0 = unpaced)", h("input", { id: "q-rate", type: "number", min: "0", value: "10" })),
                h("label", {}, "at most (0 = all)", h("input", { id: "q-max", type: "number", min: "0", value: "0" })),
                h("button", { id: "q-dry-run", onclick: () => this.redrive(true) }, "Dry run"),
                h("button", { id: "q-redrive", class: "primary", onclick: () => this.redrive(false) }, "Redrive")),
              h("div", { class: "result", id: "q-redrive-result" })),
            panel("Purge",
              h("div", { class: "muted", id: "q-purge-scope" }),
              h("div", { class: "row" },
                h("label", {}, h("span", { id: "q-only-label" }, "only the selected entry"), h("input", { id: "q-only-selected", type: "checkbox", onchange: () => syncActions() })),
                h("label", {}, "type the topic name", h("input", { id: "q-purge-confirm", autocomplete: "off", oninput: () => syncActions() })),
                h("button", { id: "q-purge", class: "danger", disabled: true, onclick: () => this.purge() }, "Purge")),
              h("div", { class: "result", id: "q-purge-result" }))),
        ];
      },
      async refresh() {
        const topics = (await api("GET", "/topics")).topics.map((t) => t.name);
        if (!q.topic && topics.length) q.topic = topics[0];
        setOptions($("#q-topic"), topics.map((t) => [t, t]), q.topic);
        if (!q.topic) { fill("q-entries", h("div", { class: "empty" }, "no topics")); syncActions(); return; }
        const t = enc(q.topic);
        const all = await api("GET", `/topics/${t}/quarantine/counts`);
        const groups = [...new Set(all.by_reason.map((c) => c.group))].sort();
        if (q.group && !groups.includes(q.group)) groups.push(q.group);
        setOptions($("#q-group"), [["", "any group"], ...groups.map((g) => [g, g])], q.group);
        const counts = await api("GET", `/topics/${t}/quarantine/counts?${queryString()}`);
        const crows = counts.by_reason.map((c) => h("tr", { class: "clickable", "data-group": c.group, "data-reason": c.reason,
          onclick: () => { q.group = c.group; q.reason = c.reason; $("#q-reason").value = c.reason; q.cursor = null; this.refresh(); } },
        cell("group", c.group, "mono"), cell("reason", c.reason, ""), cell("count", num(c.count))));
        fill("q-counts", h("div", { class: "muted", id: "q-total", "data-total": counts.total }, `${num(counts.total)} entries match`),
          table("q-counts-table", ["group", "reason", "entries "], crows, "the quarantine is empty"));
        const page = await api("GET", `/topics/${t}/quarantine?${queryString(Object.assign({ limit: 50 }, q.cursor !== null ? { cursor: q.cursor } : {}))}`);
        q.entries = page.entries;
        q.next = page.next_cursor;
        $("#q-more").disabled = page.next_cursor === null || page.next_cursor === undefined;
        if (q.selected) q.selected = page.entries.find((e) => e.entry_id === q.selected.entry_id) || null;
        const rows = page.entries.map((e) => h("tr", {
          class: `clickable${q.selected && q.selected.entry_id === e.entry_id ? " selected" : ""}`, "data-entry-id": e.entry_id,
          onclick: () => { q.selected = e; this.showDetail(); this.renderSelection(); syncActions(); } },
        cell("entry_id", `#${e.entry_id}`), cell("coordinates", `${e.partition}@${e.offset}`), cell("group", e.group, "mono"),
        cell("attempts", num(e.attempts)), cell("reason", e.reason, ""), cell("last_failure", time(e.last_failure_at_ms), "mono"),
        cell("redrive_count", num(e.redrive_count))));
        fill("q-entries", table("q-entries-table", ["entry ", "partition@offset ", "group", "attempts ", "last error", "last failure", "redriven "], rows, "no entries match"));
        this.showDetail();
        syncActions();
      },
      renderSelection() {
        for (const tr of document.querySelectorAll("#q-entries-table tbody tr"))
          tr.classList.toggle("selected", q.selected !== null && Number(tr.dataset.entryId) === q.selected.entry_id);
      },
      showDetail() {
        const e = q.selected;
        if (!e) { fill("q-detail", h("div", { class: "empty" }, "select an entry")); return; }
        const hdrs = Object.entries(e.headers).map(([k, v]) => `${k}=${v}`).join(", ") || "–";
        fill("q-detail", h("dl", { id: "q-detail-list", "data-entry-id": e.entry_id },
          h("dt", {}, "entry"), h("dd", {}, `#${e.entry_id}`),
          h("dt", {}, "record"), h("dd", { class: "mono" }, `${e.topic}/${e.partition}@${e.offset} (${time(e.timestamp_ms)})`),
          h("dt", {}, "group"), h("dd", { class: "mono" }, e.group),
          h("dt", {}, "attempts"), h("dd", { "data-field": "attempts" }, num(e.attempts)),
          h("dt", {}, "last error"), h("dd", { "data-field": "reason" }, e.reason),
          h("dt", {}, "first failure"), h("dd", { class: "mono" }, time(e.first_failure_at_ms)),
          h("dt", {}, "last failure"), h("dd", { class: "mono" }, time(e.last_failure_at_ms)),
          h("dt", {}, "quarantined"), h("dd", { class: "mono" }, time(e.quarantined_at_ms)),
          h("dt", {}, "redriven"), h("dd", {}, `${num(e.redrive_count)} times`),
          h("dt", {}, "key"), h("dd", { class: "mono", "data-field": "key" }, e.key === null ? "–" : e.key),
          h("dt", {}, "value"), h("dd", { class: "mono", "data-field": "value" }, e.value === null ? "(tombstone)" : e.value),
          h("dt", {}, "headers"), h("dd", { class: "mono" }, hdrs),
          h("dt", {}, "encoding"), h("dd", {}, e.encoding),
          e.message_id ? [h("dt", {}, "message id"), h("dd", { class: "mono" }, e.message_id)] : null));
      },
      // Paced redrive: the broker paces each call at rate_per_sec and stops
      // after timeout_ms with a cursor; the console resumes from it until
      // the matching entries are done (the CLI does the same).
      async redrive(dryRun) {
        const rate = Math.max(0, Number($("#q-rate").value) || 0);
        const max = Math.max(0, Number($("#q-max").value) || 0);
        const total = { matched: 0, redriven: 0, skipped_loop_guard: 0 };
        let cursor = null;
        fill("q-redrive-result", dryRun ? "counting…" : "redriving…");
        try {
          for (let round = 0; round < 1000; round++) {
            const left = max === 0 ? 0 : max - total.redriven;
            const body = Object.assign(filterBody(), { dry_run: dryRun, rate_per_sec: rate, max_entries: left, timeout_ms: 5000 });
            if (cursor !== null) body.cursor = cursor;
            const r = await api("POST", `/topics/${enc(q.topic)}/quarantine/redrive`, body);
            total.matched += r.matched; total.redriven += r.redriven; total.skipped_loop_guard += r.skipped_loop_guard;
            cursor = r.next_cursor;
            if (!dryRun) fill("q-redrive-result", `redriving… ${num(total.redriven)} so far`);
            if (cursor === null || cursor === undefined || r.matched === 0 || (max !== 0 && total.redriven >= max)) break;
          }
          const text = dryRun
            ? `dry run: would redrive ${num(total.matched)} entries to group ${q.group}`
            : `redrove ${num(total.redriven)} entries to group ${q.group}`;
          fill("q-redrive-result", h("span", { id: "q-redrive-outcome", "data-dry-run": String(dryRun), "data-matched": total.matched, "data-redriven": total.redriven }, text),
            ` (${num(total.skipped_loop_guard)} refused by the loop guard)`);
          if (!dryRun) await this.refresh();
        } catch (e) {
          fill("q-redrive-result", h("span", { class: "error" }, e.message));
        }
      },
      async purge() {
        if ($("#q-purge-confirm").value !== q.topic) return;
        const body = filterBody();
        if ($("#q-only-selected").checked && q.selected) body.entry_ids = [q.selected.entry_id];
        try {
          const r = await api("POST", `/topics/${enc(q.topic)}/quarantine/purge`, body);
          fill("q-purge-result", h("span", { id: "q-purge-outcome", "data-purged": r.purged }, `purged ${num(r.purged)} entries`));
          $("#q-purge-confirm").value = "";
          q.selected = null;
          q.cursor = null;
          await this.refresh();
        } catch (e) {
          fill("q-purge-result", h("span", { class: "error" }, e.message));
        }
      },
    };
  }

  // ---- routing and the refresh loop -----------------------------------

  function route() {
    const hash = location.hash || "#/";
    const [path, query] = hash.slice(1).split("?");
    const params = Object.fromEntries(new URLSearchParams(query || ""));
    const segs = path.split("/").filter((s) => s).map(decodeURIComponent);
    if (segs.length === 0) return overview;
    if (segs[0] === "topics" && segs.length === 1) return topicsPage;
    if (segs[0] === "topics" && segs.length === 2) return topicPage(segs[1]);
    if (segs[0] === "groups" && segs.length === 1) return groupsPage;
    if (segs[0] === "groups" && segs.length === 2) return groupPage(segs[1]);
    if (segs[0] === "quarantine") return quarantinePage(params);
    return { name: "not-found", mount: () => [h("h1", {}, "No such page"), h("p", {}, h("a", { href: "#/" }, "Overview"))], refresh: async () => {} };
  }

  function go(hash) { location.hash = hash; }

  function mount() {
    state.page = route();
    main.dataset.page = state.page.name;
    main.dataset.loaded = "false";
    main.replaceChildren(...state.page.mount().flat());
    for (const a of document.querySelectorAll("#nav a")) {
      const p = state.page.name;
      const section = p === "topic" ? "topics" : p === "group" ? "groups" : p;
      a.classList.toggle("active", a.dataset.page === section);
    }
    tick();
  }

  function setStatus(ok, text) {
    $("#status-dot").className = `dot ${ok ? "ok" : "bad"}`;
    $("#status-text").textContent = text;
  }

  // One refresh: a /stats sample (for the overview's history), then the
  // page's own data. A refresh still running is not started twice.
  async function tick() {
    if (state.busy) { state.again = true; return; }
    state.busy = true;
    state.again = false;
    const page = state.page;
    try {
      sampleStats(await api("GET", "/stats"));
      await page.refresh();
      if (page === state.page) {
        state.refreshes++;
        main.dataset.loaded = "true";
        main.dataset.refreshes = String(state.refreshes);
      }
      setStatus(true, `updated ${new Date().toLocaleTimeString()}`);
    } catch (e) {
      setStatus(false, e.message);
    } finally {
      state.busy = false;
    }
    // A page mounted while the last refresh ran gets its data now, not a
    // whole interval later (or never, with refresh off).
    if (state.again) tick();
  }

  function schedule() {
    clearInterval(state.timer);
    const ms = Number($("#refresh-ms").value);
    if (ms > 0) state.timer = setInterval(tick, ms);
  }

  $("#refresh-ms").addEventListener("change", schedule);
  window.addEventListener("hashchange", mount);
  mount();
  schedule();
})();
