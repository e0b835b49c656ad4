/* hgbench report.html: draws the figure specs embedded in #hg-data with plotly.js and makes the
   tables sortable. Every number drawn comes from the specs (hgbench/report/html_specs.py), which
   come from the tables report.md is written from; nothing is computed here but axis ranges. */
(function () {
  "use strict";
  var FAMILIES = ["baseline", "black-box", "implicit", "unrolled", "reversal", "marglik", "other"];
  var PLOT_CONFIG = {
    responsive: true,
    displaylogo: false,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"],
    toImageButtonOptions: { format: "png", scale: 2 },
  };

  function fmt(v, digits) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
    return String(Number(v.toPrecision(digits || 3)));
  }
  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function interval(t) {
    if (!t || t[0] === null) return "–";
    return t[1] === null ? fmt(t[0]) : fmt(t[0]) + " [" + fmt(t[1]) + ", " + fmt(t[2]) + "]";
  }
  function rgba(hex, alpha) {
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }
  function familyRank(f) {
    var i = FAMILIES.indexOf(f);
    return i < 0 ? FAMILIES.length : i;
  }
  function byFamily(configs) {
    return configs
      .map(function (c, i) { return { c: c, i: i }; })
      .sort(function (a, b) { return familyRank(a.c.family) - familyRank(b.c.family) || a.i - b.i; })
      .map(function (x) { return x.c; });
  }
  function head(c) {
    var s = c.settings || "";
    return "<b>" + esc(c.label) + "</b><br>" + esc(c.method) + " (" + esc(c.family) + ")" +
      (s ? "<br>settings: " + esc(s.length > 90 ? s.slice(0, 87) + "…" : s) : "");
  }
  function finite(values) {
    return values.filter(function (v) { return v !== null && isFinite(v); });
  }

  /* --- controls ---------------------------------------------------------------------------- */
  function control(box, text, node) {
    var label = document.createElement("label");
    label.textContent = text + " ";
    label.appendChild(node);
    box.appendChild(label);
    return node;
  }
  function choice(box, text, options, value, onChange) {
    var sel = document.createElement("select");
    options.forEach(function (o) {
      var opt = document.createElement("option");
      opt.value = o.key;
      opt.textContent = o.name;
      sel.appendChild(opt);
    });
    sel.value = value;
    sel.addEventListener("change", function () { onChange(sel.value); });
    return control(box, text, sel);
  }
  function toggle(box, text, checked, onChange) {
    var input = document.createElement("input");
    input.type = "checkbox";
    input.checked = checked;
    input.addEventListener("change", function () { onChange(input.checked); });
    var label = document.createElement("label");
    label.appendChild(input);
    label.appendChild(document.createTextNode(" " + text));
    box.appendChild(label);
    return input;
  }
  /* One box per method family present: unticking hides the family's configs (legend clicks
     hide single configs). */
  function familyBoxes(box, configs, state, redraw) {
    var present = FAMILIES.filter(function (f) {
      return configs.some(function (c) { return c.family === f; });
    });
    if (present.length < 2) return;
    var group = document.createElement("span");
    group.className = "families";
    group.appendChild(document.createTextNode("families: "));
    present.forEach(function (f) {
      /* the swatch runs through the family's shades: its darkest alone reads alike across
         families (dark orange and dark red) */
      var shades = [];
      configs.forEach(function (c) {
        if (c.family === f && shades.indexOf(c.color) < 0) shades.push(c.color);
      });
      var input = document.createElement("input");
      input.type = "checkbox";
      input.checked = !state.hidden.has(f);
      input.addEventListener("change", function () {
        if (input.checked) state.hidden.delete(f); else state.hidden.add(f);
        redraw();
      });
      var label = document.createElement("label");
      var swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = shades.length > 1
        ? "linear-gradient(to right, " + shades.join(", ") + ")" : shades[0];
      label.appendChild(input);
      label.appendChild(swatch);
      label.appendChild(document.createTextNode(f));
      group.appendChild(label);
    });
    box.appendChild(group);
  }
  function shown(state, c) { return !state.hidden.has(c.family); }

  /* Keep the configs a reader hid through the legend when the figure is redrawn. */
  function legendOnly(plot) {
    var names = new Set();
    (plot.data || []).forEach(function (t) {
      if (t.visible === "legendonly" && t.legendgroup) names.add(t.legendgroup);
    });
    return names;
  }
  function draw(plot, traces, layout) {
    var hidden = legendOnly(plot);
    traces.forEach(function (t) {
      if (t.legendgroup && hidden.has(t.legendgroup) && t.visible !== false) t.visible = "legendonly";
    });
    return window.Plotly.react(plot, traces, layout, PLOT_CONFIG);
  }
  /* A legend grouped by family: the first config of each family carries its family's title. */
  function titled(configs) {
    var seen = new Set();
    var titles = {};
    byFamily(configs).forEach(function (c) {
      if (!seen.has(c.family)) { seen.add(c.family); titles[c.label] = c.family; }
    });
    return titles;
  }
  function legendProps(c, titles, rank) {
    // each family a block of 1000 ranks: wider than any figure's configs, so that families never
    // interleave (a step of 10 did, past 10 configs: ift_cg listed under black-box)
    var t = { legendgroup: c.label, legendrank: 1000 + 1000 * familyRank(c.family) + rank };
    if (titles[c.label]) t.legendgrouptitle = { text: titles[c.label], font: { size: 11 } };
    return t;
  }
  /* Tall enough for a legend of every config and family title without a scroll bar. */
  function legendHeight(configs) {
    var families = new Set(configs.map(function (c) { return c.family; })).size;
    return Math.max(520, 140 + 19.5 * (configs.length + families + 1));
  }
  function layout(spec, extra) {
    var base = {
      title: { text: esc(spec.title), font: { size: 15 }, x: 0.01, xanchor: "left" },
      margin: { l: 70, r: 20, t: 45, b: 60 },
      hovermode: "closest",
      hoverlabel: { align: "left", font: { size: 11 } },
      legend: { font: { size: 11 }, tracegroupgap: 2, itemdoubleclick: "toggleothers" },
      plot_bgcolor: "#fff",
      paper_bgcolor: "#fff",
    };
    Object.keys(extra).forEach(function (k) { base[k] = extra[k]; });
    return base;
  }
  function axis(title, log, extra) {
    var a = { title: { text: title }, type: log ? "log" : "linear", gridcolor: "#e6e6e6",
      zeroline: false, showline: true, linecolor: "#999", automargin: true };
    Object.keys(extra || {}).forEach(function (k) { a[k] = extra[k]; });
    return a;
  }
  /* Plain-number ticks on a log axis (1, 2, 5 per decade; decades only past four), as report.md's
     figures: plotly's own label minor ticks with a bare digit ("2" beside "1000"). */
  function logTicks(values) {
    var v = finite(values).filter(function (x) { return x > 0; });
    if (!v.length) return {};
    var lo = Math.min.apply(null, v) / 1.5, hi = Math.max.apply(null, v) * 1.5;
    var decades = Math.log10(hi / lo);
    var subs = decades > 4 ? [1] : decades > 1.5 ? [1, 2, 5] : [1, 1.5, 2, 3, 5, 7];
    var ticks = [];
    for (var e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      subs.forEach(function (m) {
        var t = m * Math.pow(10, e);
        if (t >= lo && t <= hi) ticks.push(Number(t.toPrecision(3)));
      });
    }
    return { tickmode: "array", tickvals: ticks, ticktext: ticks.map(function (t) {
      return t >= 1e5 || t < 1e-3 ? t.toExponential(0) : fmt(t);
    }) };
  }
  function logAxis(title, log, values, extra) {
    var a = axis(title, log, extra);
    if (log) Object.assign(a, logTicks(values));
    return a;
  }
  function errorBar(t) {
    if (!t || t[1] === null || t[2] === null) return { visible: false };
    return { type: "data", symmetric: false, array: [t[2] - t[0]], arrayminus: [t[0] - t[1]],
      thickness: 1, width: 2 };
  }

  /* --- Pareto: final metric against cost, IQM [95% CI] and every seed ---------------------- */
  function pareto(fig, spec) {
    var state = { metric: spec.metrics[0].key, cost: spec.costs[0].key, xlog: true,
      ylog: false, hidden: new Set() };
    var box = fig.querySelector(".hg-controls");
    var plot = fig.querySelector(".hg-plot");
    var titles = titled(spec.configs);
    function redraw() {
      var m = spec.metrics.filter(function (x) { return x.key === state.metric; })[0];
      var cost = spec.costs.filter(function (x) { return x.key === state.cost; })[0];
      var front = spec.fronts[state.metric + "|" + state.cost] || [];
      var traces = [];
      var fx = [], fy = [];
      spec.configs.forEach(function (c, k) {
        var y = c.iqm[state.metric], x = c.iqm[state.cost];
        if (!y || !x || y[0] === null || x[0] === null) return;
        var onFront = front.indexOf(c.label) >= 0;
        var seeds = c.seeds.map(function (s, i) {
          return "seed " + esc(s) + ": " + fmt(c.values[state.metric][i]) + " at " +
            fmt(c.values[state.cost][i]) + (c.seed_noisy[i] ? " †" : "");
        });
        var text = head(c) + "<br>" + esc(m.name) + ": " + interval(y) + "<br>" + esc(cost.name) +
          ": " + interval(x) + (c.noisy ? " †" : "") + (onFront ? "<br><i>on the Pareto front</i>" : "") +
          "<br>" + seeds.join("<br>");
        var vis = shown(state, c) ? true : false;
        traces.push(Object.assign({
          type: "scatter", mode: "markers", name: c.label, x: [x[0]], y: [y[0]],
          error_x: Object.assign(errorBar(x), { color: c.color }),
          error_y: Object.assign(errorBar(y), { color: c.color }),
          marker: { symbol: c.symbol, color: c.color, size: onFront ? 13 : 9,
            line: { color: onFront ? "#000" : "#fff", width: onFront ? 1.5 : 0.5 } },
          text: [text], hovertemplate: "%{text}<extra></extra>", visible: vis,
        }, legendProps(c, titles, k)));
        traces.push({
          type: "scatter", mode: "markers", name: c.label + " (seeds)", legendgroup: c.label,
          showlegend: false, x: c.values[state.cost], y: c.values[state.metric], visible: vis,
          marker: { symbol: c.symbol, color: c.color, size: 5, opacity: 0.35 },
          text: seeds.map(function (s) { return "<b>" + esc(c.label) + "</b><br>" + s; }),
          hovertemplate: "%{text}<extra></extra>",
        });
        if (onFront && vis) { fx.push(x[0]); fy.push(y[0]); }
      });
      traces.push({ type: "scatter", mode: "lines", name: "Pareto front", x: fx, y: fy,
        line: { shape: "hv", color: "rgba(0,0,0,0.55)", width: 1.2 }, hoverinfo: "skip",
        legendrank: 1 });
      var shapes = [];
      spec.configs.forEach(function (c) {
        if (c.label !== spec.baseline || !shown(state, c)) return;
        var y = c.iqm[state.metric];
        if (y && y[0] !== null) shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: y[0],
          y1: y[0], line: { color: c.color, dash: "dot", width: 1 } });
      });
      var range = m.range && m.range[0] !== null && !state.ylog ? m.range.slice() : undefined;
      var xs = [], ys = [];
      spec.configs.forEach(function (c) {
        if (!shown(state, c)) return;
        xs = xs.concat(c.values[state.cost], c.iqm[state.cost]);
        ys = ys.concat(c.values[state.metric], c.iqm[state.metric]);
      });
      return draw(plot, traces, layout(spec, {
        height: spec.compact ? 460 : legendHeight(spec.configs),
        showlegend: !spec.compact,
        xaxis: logAxis(cost.name + ", final", state.xlog, xs),
        yaxis: logAxis(m.name + " (final)", state.ylog, ys,
          range ? { range: range } : { autorange: true }),
        shapes: shapes,
      }));
    }
    choice(box, "metric", spec.metrics, state.metric, function (v) { state.metric = v; redraw(); });
    choice(box, "cost", spec.costs, state.cost, function (v) { state.cost = v; redraw(); });
    toggle(box, "log cost", state.xlog, function (v) { state.xlog = v; redraw(); });
    toggle(box, "log metric", state.ylog, function (v) { state.ylog = v; redraw(); });
    familyBoxes(box, spec.configs, state, redraw);
    return redraw();
  }

  /* --- anytime curves: median and 25–75% band over seeds, and time to target --------------- */
  function curveRange(values, target) {
    var v = finite(values).sort(function (a, b) { return a - b; });
    if (!v.length) return undefined;
    var lo = v[0], hi = v[Math.min(v.length - 1, Math.floor(0.9 * (v.length - 1)))];
    if (target !== null) { lo = Math.min(lo, target); hi = Math.max(hi, target); }
    return { lo: lo, hi: hi, pad: 0.05 * (hi - lo || Math.abs(hi) || 1) };
  }
  function anytime(fig, spec) {
    var state = { cost: spec.costs[0].key, xlog: true, ylog: null, hidden: new Set() };
    var box = fig.querySelector(".hg-controls");
    var plot = fig.querySelector(".hg-plot");
    var titles = titled(spec.configs);
    function redraw() {
      var cost = spec.costs.filter(function (x) { return x.key === state.cost; })[0];
      var traces = [], medians = [], xs = [];
      spec.configs.forEach(function (c, k) {
        var cv = c.curves[state.cost];
        if (!cv || !cv.x.length) return;
        var vis = shown(state, c);
        var group = { legendgroup: c.label, visible: vis };
        traces.push(Object.assign({ type: "scatter", mode: "lines", x: cv.x, y: cv.q25,
          line: { width: 0, shape: "hv", color: c.color }, showlegend: false, hoverinfo: "skip",
          name: c.label + " 25%" }, group));
        traces.push(Object.assign({ type: "scatter", mode: "lines", x: cv.x, y: cv.q75,
          line: { width: 0, shape: "hv", color: c.color }, fill: "tonexty",
          fillcolor: rgba(c.color, 0.14), showlegend: false, hoverinfo: "skip",
          name: c.label + " 75%" }, group));
        var text = cv.x.map(function (x, i) {
          return head(c) + "<br>" + esc(cost.name) + ": " + fmt(x) + "<br>test NLL median " +
            fmt(cv.med[i]) + " [" + fmt(cv.q25[i]) + ", " + fmt(cv.q75[i]) + "] over " + cv.n + " seeds";
        });
        var base = c.label === spec.baseline;
        traces.push(Object.assign({ type: "scatter", mode: "lines", name: c.label, x: cv.x, y: cv.med,
          line: { shape: "hv", color: c.color, width: base ? 2.2 : 1.6, dash: base ? "dash" : "solid" },
          text: text, hovertemplate: "%{text}<extra></extra>" }, legendProps(c, titles, k), group));
        if (vis) { medians = medians.concat(cv.med); xs = xs.concat(cv.x); }
        var t = c.ttt;
        if (t && t.cost === state.cost && t.median !== null && spec.target !== null) {
          traces.push(Object.assign({ type: "scatter", mode: "markers", x: [t.median], y: [spec.target],
            marker: { symbol: c.symbol, size: 10, color: c.color, line: { color: "#000", width: 1 } },
            showlegend: false, name: c.label + " target",
            text: ["<b>" + esc(c.label) + "</b><br>reaches the baseline's NLL (" + fmt(spec.target) +
              ") at " + fmt(t.median) + " (median; " + t.reached + "/" + t.n + " seeds)"],
            hovertemplate: "%{text}<extra></extra>" }, group));
        }
      });
      if (spec.target !== null && xs.length) {
        var fx = finite(xs);
        traces.push({ type: "scatter", mode: "lines", name: "target: baseline's final NLL",
          x: [Math.min.apply(null, fx), Math.max.apply(null, fx)], y: [spec.target, spec.target],
          line: { color: "#000", dash: "dot", width: 1 }, hoverinfo: "skip", legendrank: 1 });
      }
      var range = curveRange(medians, spec.target);
      // as report.md's figure: log y when the medians span more than 3x, so the end game reads
      if (state.ylog === null) state.ylog = !!range && range.lo > 0 && range.hi / range.lo > 3;
      ylog.checked = state.ylog;
      var y = !range ? {} : state.ylog ? { range: [Math.log10(range.lo / 1.05), Math.log10(range.hi * 1.05)] }
        : { range: [range.lo - range.pad, range.hi + range.pad] };
      return draw(plot, traces, layout(spec, {
        height: legendHeight(spec.configs),
        xaxis: logAxis(cost.name, state.xlog, xs),
        yaxis: logAxis("test NLL (median over seeds, 25–75% band)", state.ylog,
          range ? [range.lo / 1.05, range.hi * 1.05] : [], y),
      }));
    }
    choice(box, "cost", spec.costs, state.cost, function (v) { state.cost = v; redraw(); });
    toggle(box, "log cost", state.xlog, function (v) { state.xlog = v; redraw(); });
    var ylog = toggle(box, "log NLL", false, function (v) { state.ylog = v; redraw(); });
    familyBoxes(box, spec.configs, state, redraw);
    return redraw();
  }

  /* --- critical-difference diagram as a dot plot: rank ± CD/2, Nemenyi's cliques as bars ---- */
  function ranks(fig, spec) {
    var plot = fig.querySelector(".hg-plot");
    var configs = spec.configs;
    var labels = configs.map(function (c) { return c.label; });
    var y = labels.map(function (_, i) { return i; });
    var tied = {};
    spec.cliques.forEach(function (q) {
      q.forEach(function (a) {
        tied[a] = tied[a] || new Set();
        q.forEach(function (b) { if (a !== b) tied[a].add(b); });
      });
    });
    var half = spec.cd !== null ? spec.cd / 2 : null;
    var traces = [{
      type: "scatter", mode: "markers", x: configs.map(function (c) { return c.rank; }), y: y,
      error_x: half !== null ? { type: "constant", value: half, color: "#bbb", thickness: 1 } : undefined,
      marker: { color: configs.map(function (c) { return c.color; }), size: 10,
        symbol: configs.map(function (c) { return c.symbol; }), line: { color: "#000", width: 0.6 } },
      text: configs.map(function (c) {
        var t = tied[c.label] ? Array.from(tied[c.label]) : [];
        return head(c) + "<br>average rank " + fmt(c.rank, 4) + "<br>not separated from: " +
          (t.length ? esc(t.join(", ")) : "none");
      }),
      hovertemplate: "%{text}<extra></extra>", showlegend: false,
    }];
    spec.cliques.forEach(function (q, k) {
      var idx = q.map(function (l) { return labels.indexOf(l); });
      traces.push({ type: "scatter", mode: "lines", x: [k + 1, k + 1], xaxis: "x2",
        y: [Math.min.apply(null, idx) - 0.2, Math.max.apply(null, idx) + 0.2],
        line: { color: "#333", width: 4 }, hoverinfo: "text", showlegend: false,
        text: "not separated (Nemenyi): " + esc(q.join(", ")) });
    });
    var sub = "average rank over " + spec.blocks + " (task, seed) blocks of " + spec.tasks +
      " tasks; Friedman p = " + fmt(spec.friedman_p, 2) + "; bars: ± half Nemenyi's critical " +
      "difference (" + fmt(spec.cd) + "); a black bar on the right joins configs Nemenyi's test does not separate";
    return window.Plotly.newPlot(plot, traces, layout(spec, {
      title: { text: esc(spec.title) + "<br><sub>" + esc(sub) + "</sub>", font: { size: 15 }, x: 0.01, xanchor: "left" },
      margin: { l: 200, r: 20, t: 70, b: 50 },
      height: Math.max(320, 90 + 24 * configs.length),
      xaxis: axis("average rank (1 = best)", false, { domain: [0, 0.8] }),
      xaxis2: axis("not separated", false, { domain: [0.83, 1], range: [0, spec.cliques.length + 1],
        showticklabels: false, showgrid: false, anchor: "y" }),
      yaxis: axis("", false, { tickmode: "array", tickvals: y, ticktext: labels.map(esc),
        autorange: "reversed", showgrid: false }),
    }), PLOT_CONFIG);
  }

  /* --- gains: paired Δ test NLL against the baseline, one panel per task ------------------- */
  function gains(fig, spec) {
    if (!spec.tasks.length) return Promise.resolve();
    var state = { hidden: new Set() };
    var box = fig.querySelector(".hg-controls");
    var plot = fig.querySelector(".hg-plot");
    var n = spec.tasks.length, gap = 0.02;
    function redraw() {
      var traces = [], shapes = [], extra = {};
      var labels = spec.labels.filter(function (l) {
        return spec.tasks.some(function (t) {
          return t.configs.some(function (c) { return c.label === l && shown(state, c); });
        });
      });
      spec.tasks.forEach(function (t, i) {
        var ax = i ? "x" + (i + 1) : "x";
        var hi = t.range[1];
        t.configs.forEach(function (c) {
          if (!shown(state, c)) return;
          var x = c.far && hi !== null ? hi : c.diff[0];
          traces.push({ type: "scatter", mode: "markers", x: [x], y: [c.label], xaxis: ax,
            showlegend: false, name: c.label, cliponaxis: !c.far,
            error_x: c.far ? { visible: false } : Object.assign(errorBar(c.diff), { color: c.color }),
            marker: { symbol: c.far ? "triangle-right" : c.symbol + (c.separated ? "" : "-open"),
              size: 10, color: c.color },
            text: [head(c) + "<br>" + esc(t.task) + ": Δ test NLL vs " + esc(t.baseline) + ": " +
              interval(c.diff) + " over " + c.n + " seeds<br>" +
              (c.separated ? "separated" : "not separated") + (c.far ? "<br><i>far off: drawn at the edge</i>" : "")],
            hovertemplate: "%{text}<extra></extra>" });
        });
        var key = i ? "xaxis" + (i + 1) : "xaxis";
        extra[key] = axis("Δ vs " + t.baseline, false, {
          domain: [i / n + (i ? gap : 0), (i + 1) / n - (i < n - 1 ? gap : 0)],
          range: t.range[0] !== null ? t.range.slice() : undefined, anchor: "y" });
        extra[key].title.text = esc(t.task) + ": Δ test NLL vs " + esc(t.baseline);
        shapes.push({ type: "line", xref: ax, yref: "paper", y0: 0, y1: 1, x0: 0, x1: 0,
          line: { color: "#000", dash: "dot", width: 1 } });
      });
      extra.yaxis = axis("", false, { type: "category", categoryorder: "array",
        categoryarray: labels.slice().reverse(), showgrid: true, tickfont: { size: 11 } });
      extra.margin = { l: 190, r: 20, t: 50, b: 60 };
      extra.height = Math.max(320, 110 + 20 * labels.length);
      extra.shapes = shapes;
      extra.title = { text: esc(spec.title) + "<br><sub>left of the dotted line: better; filled: " +
        "separated from the baseline, hollow: not; ▶ far off (hover for its value)</sub>",
        font: { size: 15 }, x: 0.01, xanchor: "left" };
      return draw(plot, traces, layout(spec, extra));
    }
    familyBoxes(box, [].concat.apply([], spec.tasks.map(function (t) { return t.configs; })), state, redraw);
    return redraw();
  }

  /* --- probe: hypergradient error against time per hypergradient ---------------------------- */
  function probe(fig, spec) {
    var state = { metric: spec.metrics[0].key, xlog: true, ylog: true, hidden: new Set() };
    var box = fig.querySelector(".hg-controls");
    var plot = fig.querySelector(".hg-plot");
    var titles = titled(spec.configs);
    function redraw() {
      var m = spec.metrics.filter(function (x) { return x.key === state.metric; })[0];
      var positive = [];
      spec.configs.forEach(function (c) {
        finite(c.points[state.metric]).concat(finite([c.summary[state.metric][0]])).forEach(
          function (v) { if (v > 0) positive.push(v); });
      });
      var floor = state.ylog && positive.length ? Math.min.apply(null, positive) / 10 : null;
      function shownY(v) { return v === null ? null : floor !== null && v <= floor ? floor : v; }
      var traces = [];
      var methods = [];
      spec.configs.forEach(function (c) { if (methods.indexOf(c.method) < 0) methods.push(c.method); });
      methods.forEach(function (method) {
        var cs = spec.configs.filter(function (c) {
          return c.method === method && c.summary.hg_time_s[0] !== null && c.summary[state.metric][0] !== null;
        }).sort(function (a, b) { return a.summary.hg_time_s[0] - b.summary.hg_time_s[0]; });
        if (cs.length > 1 && shown(state, cs[0])) traces.push({ type: "scatter", mode: "lines",
          x: cs.map(function (c) { return c.summary.hg_time_s[0]; }),
          y: cs.map(function (c) { return shownY(c.summary[state.metric][0]); }),
          line: { color: cs[0].color, width: 1 }, opacity: 0.6, showlegend: false, hoverinfo: "skip" });
      });
      spec.configs.forEach(function (c, k) {
        var t = c.summary.hg_time_s, v = c.summary[state.metric];
        if (t[0] === null || v[0] === null) return;
        var vis = shown(state, c);
        var text = head(c) + "<br>time per hypergradient: " + interval(t) + " s<br>" + esc(m.name) +
          ": " + interval(v) + " (median [25%, 75%] over " + c.points.hg_time_s.length + " measurements)";
        var atFloor = floor !== null && v[0] <= floor;
        traces.push(Object.assign({ type: "scatter", mode: "markers", name: c.label, x: [t[0]], y: [shownY(v[0])],
          error_x: Object.assign(errorBar(t), { color: c.color }),
          error_y: atFloor ? { visible: false } : Object.assign(errorBar(v), { color: c.color }),
          marker: { symbol: c.symbol, color: c.color, size: 9, line: { color: "#fff", width: 0.5 } },
          text: [text + (atFloor ? "<br><i>drawn on the zero-error line</i>" : "")],
          hovertemplate: "%{text}<extra></extra>", visible: vis }, legendProps(c, titles, k)));
        traces.push({ type: "scatter", mode: "markers", legendgroup: c.label, showlegend: false,
          x: c.points.hg_time_s, y: c.points[state.metric].map(shownY), visible: vis,
          marker: { symbol: c.symbol, color: c.color, size: 5, opacity: 0.3 },
          text: c.points[state.metric].map(function (v, i) {
            return "<b>" + esc(c.label) + "</b><br>" + fmt(c.points.hg_time_s[i]) + " s, " + esc(m.name) + " " + fmt(v, 4);
          }), hovertemplate: "%{text}<extra></extra>", name: c.label + " (measurements)" });
      });
      var shapes = floor === null ? [] : [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: floor, y1: floor,
        line: { color: "#888", dash: "dot", width: 1 } }];
      return draw(plot, traces, layout(spec, {
        height: legendHeight(spec.configs),
        xaxis: logAxis("time per hypergradient (s)", state.xlog, [].concat.apply([],
          spec.configs.map(function (c) { return c.points.hg_time_s; }))),
        yaxis: logAxis(m.name + (floor !== null ? " (dotted: zero, drawn here)" : ""), state.ylog,
          [].concat.apply([], spec.configs.map(function (c) { return c.points[state.metric]; }))
            .map(shownY)),
        shapes: shapes,
      }));
    }
    choice(box, "error", spec.metrics, state.metric, function (v) {
      state.metric = v;
      state.ylog = v !== "hg_cos";
      ylog.checked = state.ylog;
      redraw();
    });
    toggle(box, "log time", state.xlog, function (v) { state.xlog = v; redraw(); });
    var ylog = toggle(box, "log error", state.ylog, function (v) { state.ylog = v; redraw(); });
    familyBoxes(box, spec.configs, state, redraw);
    return redraw();
  }

  /* --- scaling: time and memory per hypergradient against the swept size ------------------- */
  function scaling(fig, spec) {
    // one family at first, as report.md's figure has a row per family: colours repeat across
    // families (a palette within each), so all at once would mix them up
    var families = FAMILIES.filter(function (f) {
      return spec.configs.some(function (c) { return c.family === f; });
    });
    var state = { metric: spec.metrics[0].key, hidden: new Set(families.slice(1)) };
    var box = fig.querySelector(".hg-controls");
    var plot = fig.querySelector(".hg-plot");
    var titles = titled(spec.configs);
    function redraw() {
      var m = spec.metrics.filter(function (x) { return x.key === state.metric; })[0];
      var all = [];
      spec.configs.forEach(function (s) { all = all.concat(finite(s[state.metric])); });
      var top = all.length ? Math.max.apply(null, all) * 3 : 1;
      var traces = [];
      spec.configs.forEach(function (s, k) {
        var vis = shown(state, s);
        traces.push(Object.assign({ type: "scatter", mode: "lines+markers", name: s.label,
          x: s.size, y: s[state.metric], visible: vis,
          line: { color: s.color, dash: s.dash, width: 1.4 }, marker: { symbol: s.symbol, size: 6, color: s.color },
          text: s.size.map(function (x, i) {
            return head(s) + "<br>size " + fmt(x, 4) + ": " + fmt(s[state.metric][i]) + " (" + esc(m.name) + ")";
          }), hovertemplate: "%{text}<extra></extra>" }, legendProps(s, titles, k)));
        if (s.bad_size.length) traces.push({ type: "scatter", mode: "markers", legendgroup: s.label,
          showlegend: false, visible: vis, x: s.bad_size, y: s.bad_size.map(function () { return top; }),
          marker: { symbol: s.bad_outcome.map(function (o) {
            return spec.cost_failures.indexOf(o) >= 0 ? "x" : "circle-open"; }), size: 8, color: s.color },
          text: s.bad_size.map(function (x, i) {
            return "<b>" + esc(s.label) + "</b><br>size " + fmt(x, 4) + ": " + esc(s.bad_outcome[i]);
          }), hovertemplate: "%{text}<extra></extra>" });
      });
      return draw(plot, traces, layout(spec, {
        height: legendHeight(spec.configs),
        xaxis: logAxis(spec.xlabel, true, [].concat.apply([], spec.configs.map(function (s) {
          return s.size.concat(s.bad_size); }))),
        yaxis: logAxis(m.name + " (top edge: out of time or memory ×, n/a or error ○)", true,
          all.concat([top])),
      }));
    }
    choice(box, "metric", spec.metrics, state.metric, function (v) { state.metric = v; redraw(); });
    familyBoxes(box, spec.configs, state, redraw);
    return redraw();
  }

  /* --- ranks per budget (the budget study) ------------------------------------------------- */
  function budgetRanks(fig, spec) {
    var state = { hidden: new Set() };
    var box = fig.querySelector(".hg-controls");
    var plot = fig.querySelector(".hg-plot");
    var titles = titled(spec.configs);
    function redraw() {
      var traces = spec.configs.map(function (c, k) {
        return Object.assign({ type: "scatter", mode: "lines+markers", name: c.label, x: c.budgets,
          y: c.ranks, visible: shown(state, c), line: { color: c.color, width: 1.5 },
          marker: { color: c.color, size: 6 },
          text: c.budgets.map(function (b, i) {
            return "<b>" + esc(c.label) + "</b> (" + esc(c.family) + ")<br>B = " + fmt(b) +
              ": average rank " + fmt(c.ranks[i]);
          }), hovertemplate: "%{text}<extra></extra>" }, legendProps(c, titles, k));
      });
      return draw(plot, traces, layout(spec, {
        xaxis: logAxis("total budget B (× one fixed run)", true, [].concat.apply([],
          spec.configs.map(function (c) { return c.budgets; }))),
        yaxis: axis("average rank over tasks (1 = best)", false, { autorange: "reversed" }),
      }));
    }
    familyBoxes(box, spec.configs, state, redraw);
    return redraw();
  }

  /* --- sortable tables -------------------------------------------------------------------- */
  function sortKey(text) {
    var m = text.replace(/\u2212/g, "-").match(/^[\s(]*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)/i);
    return m ? parseFloat(m[1]) : null;
  }
  function sortable(table) {
    var ths = table.querySelectorAll("thead th");
    ths.forEach(function (th, col) {
      th.classList.add("sort");
      th.title = "sort by this column";
      th.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        ths.forEach(function (o) { o.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var ta = a.cells[col] ? a.cells[col].textContent.trim() : "";
          var tb = b.cells[col] ? b.cells[col].textContent.trim() : "";
          var ka = sortKey(ta), kb = sortKey(tb);
          var r;
          if (ka !== null && kb !== null) r = ka - kb;
          else if (ka !== null) return -1;  // numbers before dashes and words, either way
          else if (kb !== null) return 1;
          else r = ta.localeCompare(tb);
          return asc ? r : -r;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  var BUILDERS = { pareto: pareto, anytime: anytime, ranks: ranks, gains: gains, probe: probe,
    scaling: scaling, budget_ranks: budgetRanks };

  function main() {
    document.querySelectorAll("table.sortable").forEach(sortable);
    var specs = JSON.parse(document.getElementById("hg-data").textContent);
    Object.keys(specs).forEach(function (id) {
      var fig = document.getElementById(id);
      var spec = specs[id];
      try {
        Promise.resolve(BUILDERS[spec.kind](fig, spec)).then(function () {
          fig.setAttribute("data-rendered", "true");
        }, function (err) {
          fig.setAttribute("data-error", String(err));
          console.error("hgbench figure " + id + ": " + err);
        });
      } catch (err) {
        fig.setAttribute("data-error", String(err));
        console.error("hgbench figure " + id + " (" + spec.kind + "): " + (err && err.stack || err));
      }
    });
  }
  // a page with no interactive figure (a paper report's) comes without plotly.js
  if (!window.Plotly && document.querySelector("figure.hg-fig")) {
    console.error("hgbench: plotly.js did not load; the figures cannot be drawn");
  } else {
    main();
  }
})();
