// Charts of a window of series (an instance's from its host, a host's from the control plane), drawn with
// uPlot (vendor/uplot). A page describes its charts; each chart picks the series it draws by name, so a
// disk or a NIC that appears gets its line without the page knowing it in advance.
//
// Data: {start, step, series: {name: [value or null, ...]}}: every series has a point every `step` seconds
// from `start` (unix seconds); null is a gap.
(() => {
  "use strict";

  const PALETTE = ["#1a5fb4", "#c01c28", "#26a269", "#e66100", "#613583", "#986a44", "#0d7e8c", "#a51d2d"];

  function scaled(value, base, names) {
    let unit = 0;
    while (Math.abs(value) >= base && unit < names.length - 1) { value /= base; unit += 1; }
    return `${value >= 100 || unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${names[unit]}`;
  }

  const UNITS = {
    percent: (v) => `${v.toFixed(0)} %`,
    mib: (v) => scaled(v, 1024, ["MiB", "GiB", "TiB"]),
    bytes_per_second: (v) => scaled(v, 1024, ["B/s", "KiB/s", "MiB/s", "GiB/s"]),
    per_second: (v) => scaled(v, 1000, ["/s", "k/s", "M/s"]),
    count: (v) => v.toFixed(Number.isInteger(v) ? 0 : 1),
    seconds: (v) => `${v.toFixed(v >= 10 || Number.isInteger(v) ? 0 : v >= 1 ? 1 : 2)} s`,
  };
  // Things counted whole (vCPUs, instances) get whole ticks.
  const WHOLE = new Set(["count"]);
  const WHOLE_INCREMENTS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000];

  // The series of `data` a chart draws: [{name, label}] in name order.
  function picked(chart, names) {
    const lines = [];
    for (const name of [...names].sort()) {
      const label = chart.pick(name);
      if (label) lines.push({ name, label });
    }
    return lines;
  }

  class GraphPanel {
    // root: an element; charts: [{key, title, unit, pick(name) -> label or null, max?}]
    constructor(root, charts) {
      this.root = root;
      this.charts = charts.map((chart) => ({ ...chart, plot: null, signature: "" }));
      this.root.replaceChildren();
      for (const chart of this.charts) {
        const figure = document.createElement("figure");
        figure.className = "graph";
        figure.dataset.graph = chart.key;
        const caption = document.createElement("figcaption");
        caption.textContent = chart.title;
        const area = document.createElement("div");
        area.className = "graph-area";
        const empty = document.createElement("p");
        empty.className = "muted graph-empty";
        empty.textContent = "No data in this range yet.";
        figure.append(caption, area, empty);
        this.root.append(figure);
        chart.figure = figure;
        chart.area = area;
        chart.empty = empty;
      }
      window.addEventListener("resize", () => this.resize());
    }

    width(chart) {
      return Math.max(240, chart.area.clientWidth || this.root.clientWidth || 600);
    }

    resize() {
      for (const chart of this.charts) {
        if (chart.plot) chart.plot.setSize({ width: this.width(chart), height: 180 });
      }
    }

    update(data) {
      const names = Object.keys(data.series || {});
      const length = names.length ? data.series[names[0]].length : 0;
      const times = Array.from({ length }, (_, i) => data.start + i * data.step);
      for (const chart of this.charts) {
        const lines = picked(chart, names);
        chart.empty.hidden = lines.length > 0;
        chart.figure.dataset.lines = String(lines.length);
        const columns = [times, ...lines.map((line) => data.series[line.name])];
        const signature = lines.map((line) => line.name).join("|") + `@${data.step}`;
        if (chart.plot && chart.signature === signature) {
          chart.plot.setData(columns);
          continue;
        }
        if (chart.plot) chart.plot.destroy();
        chart.plot = null;
        chart.signature = signature;
        if (!lines.length) continue;
        const format = UNITS[chart.unit] || UNITS.count;
        const options = {
          width: this.width(chart),
          height: 180,
          series: [
            {},
            ...lines.map((line, i) => ({
              label: line.label,
              stroke: PALETTE[i % PALETTE.length],
              width: 1.5,
              fill: lines.length === 1 ? `${PALETTE[0]}22` : undefined,
              value: (_u, v) => (v == null ? "—" : format(v)),
              spanGaps: false,
            })),
          ],
          axes: [
            {},
            {
              // Wide enough for the longest tick label ("1023.5 KiB/s"): about 7 px a character at uPlot's font.
              size: (_u, values) => (values && values.length ? Math.max(...values.map((v) => String(v).length)) * 7 + 18 : 50),
              values: (_u, ticks) => ticks.map((v) => format(v)),
              ...(WHOLE.has(chart.unit) ? { incrs: WHOLE_INCREMENTS } : {}),
            },
          ],
          scales: { y: { range: (_u, min, max) => [0, Math.max(chart.max || 0, max || 1) * (chart.max ? 1 : 1.1)] } },
          legend: { live: true },
        };
        chart.plot = new uPlot(options, columns, chart.area);
      }
    }
  }

  // Fetches `url` (with ?range=) now and every `every(data)` seconds while the page is visible, and draws it.
  function follow({ url, panel, status, range, every }) {
    let timer = null;
    let current = range;
    async function load() {
      clearTimeout(timer);
      try {
        const response = await fetch(`${url}?range=${encodeURIComponent(current)}`, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        const body = await response.json().catch(() => ({}));
        if (!response.ok) {
          status.textContent = body.error || `The graphs could not be loaded (${response.status}).`;
        } else {
          panel.update(body);
          status.textContent = body.no_history ? "No figures yet: the host samples every few seconds." : "";
          panel.root.dataset.loaded = String(Date.now());
        }
      } catch (error) {
        status.textContent = "The graphs could not be loaded; retrying.";
      }
      schedule();
    }
    function schedule() {
      clearTimeout(timer);
      // A page nobody looks at asks nothing; it catches up when it is shown again.
      timer = setTimeout(() => (document.visibilityState === "visible" ? load() : schedule()), every(current) * 1000);
    }
    document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") load(); });
    load();
    return {
      show(range) { current = range; load(); },
      stop() { clearTimeout(timer); },
    };
  }

  window.CloudGraphs = { GraphPanel, follow, UNITS };
})();
