// Small SVG line charts for the Shoal console: no library, built through
// the DOM (the page's Content-Security-Policy allows no inline code).
// A chart shows the last `windowMs` of each series; a null value is a gap
// (no sample, e.g. no produce in that interval, so no latency to show).
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 640, H = 190, L = 56, R = 10, T = 10, B = 22;

  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // A round upper bound for the y axis (1, 2 or 5 times a power of ten).
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // container: an element to fill; opts: {series: [{name, points: [[t_ms, v|null]]}],
  // windowMs, format: value -> label, now: t_ms}
  function line(container, opts) {
    const now = opts.now || Date.now();
    const from = now - opts.windowMs;
    const fmt = opts.format || String;
    let max = 0;
    for (const s of opts.series)
      for (const [t, v] of s.points) if (t >= from && v !== null && v > max) max = v;
    const top = niceMax(max);
    const x = (t) => L + ((t - from) / opts.windowMs) * (W - L - R);
    const y = (v) => T + (1 - v / top) * (H - T - B);
    const svg = el("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
    for (const f of [0, 0.5, 1]) {
      svg.appendChild(el("line", { class: "axis", x1: L, x2: W - R, y1: y(top * f), y2: y(top * f) }));
      svg.appendChild(el("text", { x: L - 4, y: y(top * f) + 4, "text-anchor": "end" }, fmt(top * f)));
    }
    const span = opts.windowMs >= 60000 ? `-${Math.round(opts.windowMs / 60000)} min` : `-${Math.round(opts.windowMs / 1000)} s`;
    svg.appendChild(el("text", { x: L, y: H - 6 }, span));
    svg.appendChild(el("text", { x: W - R, y: H - 6, "text-anchor": "end" }, "now"));
    opts.series.forEach((s, i) => {
      let d = "", pen = false;
      for (const [t, v] of s.points) {
        if (t < from || v === null) { pen = false; continue; }
        d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      }
      if (d) svg.appendChild(el("path", { class: `line s${i % 6}`, d }));
      // A series with one sample so far shows as a dot, not as nothing.
      const seen = s.points.filter(([t, v]) => t >= from && v !== null);
      if (seen.length === 1) {
        const [t, v] = seen[0];
        svg.appendChild(el("circle", { class: `dot-point s${i % 6}`, cx: x(t), cy: y(v), r: 2.5 }));
      }
    });
    const legend = document.createElement("div");
    legend.className = "legend";
    opts.series.forEach((s, i) => {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.className = `s${i % 6}`;
      item.appendChild(swatch);
      const last = s.points.length ? s.points[s.points.length - 1][1] : null;
      item.appendChild(document.createTextNode(`${s.name}: ${last === null ? "–" : fmt(last)}`));
      legend.appendChild(item);
    });
    container.replaceChildren(svg, legend);
    container.dataset.points = String(opts.series.reduce((n, s) => n + s.points.length, 0));
  }

  // The q-quantile (0..1) of a bucketed histogram: counts per bucket with
  // upper bounds `bounds`; linear inside a bucket, null for no samples.
  // Samples above the last bound are reported at the last bound.
  function quantile(bounds, counts, total, q) {
    if (!(total > 0)) return null;
    const rank = q * total;
    let seen = 0, lower = 0;
    for (let i = 0; i < bounds.length; i++) {
      const n = counts[i];
      if (seen + n >= rank && n > 0) return lower + ((rank - seen) / n) * (bounds[i] - lower);
      seen += n;
      lower = bounds[i];
    }
    return bounds[bounds.length - 1];
  }

  window.ShoalCharts = { line, quantile };
})();
