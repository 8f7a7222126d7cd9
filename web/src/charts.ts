// The four activity charts of a VM (uPlot), fed by GET /v1/vms/{name}/history and
// refreshed every `interval_secs` of the daemon's sampler.

import uPlot from "uplot";
import { api } from "./api";
import { errorText, h } from "./dom";
import { bytes, percent, rate } from "./format";
import type { VmHistoryPoint } from "./types";

interface Line {
  label: string;
  value: (point: VmHistoryPoint) => number | null;
}

interface ChartKind {
  id: "cpu" | "memory" | "disk" | "network";
  title: string;
  lines: Line[];
  format: (value: number) => string;
  /** The least top of the y axis, so an idle line lies flat at the bottom instead of filling the chart. */
  floor: number;
}

const KINDS: ChartKind[] = [
  { id: "cpu", title: "CPU", format: percent, floor: 10, lines: [{ label: "CPU", value: (p) => p.cpu_percent }] },
  { id: "memory", title: "Memory", format: bytes, floor: 64 * 1024 * 1024, lines: [{ label: "Resident", value: (p) => p.memory_rss_bytes }] },
  {
    id: "disk",
    title: "Disk",
    format: rate,
    floor: 1024,
    lines: [
      { label: "Read", value: (p) => p.disk_read_bytes_per_sec },
      { label: "Write", value: (p) => p.disk_write_bytes_per_sec },
    ],
  },
  {
    id: "network",
    title: "Network",
    format: rate,
    floor: 1024,
    lines: [
      { label: "Received", value: (p) => p.net_rx_bytes_per_sec },
      { label: "Sent", value: (p) => p.net_tx_bytes_per_sec },
    ],
  },
];

// Two hues that read on light and dark backgrounds alike.
const COLOURS = ["#2f7fd8", "#e07b2a"];
const GRID = "rgba(128, 128, 128, 0.25)";
const HEIGHT = 150;
const FALLBACK_WIDTH = 300;
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

class Chart {
  readonly figure: HTMLElement;
  private readonly caption: HTMLElement;
  private readonly area: HTMLElement;
  private plot: uPlot | null = null;

  constructor(private readonly kind: ChartKind) {
    this.caption = h("span", { class: "latest" }, "no samples yet");
    this.area = h("div", { class: "plot" });
    this.figure = h(
      "figure",
      { "data-testid": `chart-${kind.id}`, "data-points": 0 },
      h("figcaption", {}, h("strong", {}, kind.title), " ", this.caption),
      this.area,
    );
  }

  draw(points: VmHistoryPoint[]): void {
    const data: uPlot.AlignedData = [
      points.map((point) => Date.parse(point.at) / 1000),
      ...this.kind.lines.map((line) => points.map(line.value)),
    ];
    if (this.plot) this.plot.setData(data);
    else this.plot = new uPlot(this.options(), data, this.area);
    this.figure.dataset["points"] = String(points.length);
    this.caption.textContent = this.latest(points);
  }

  resize(): void {
    this.plot?.setSize({ width: this.width(), height: HEIGHT });
  }

  destroy(): void {
    this.plot?.destroy();
    this.plot = null;
  }

  /** The newest value of each line, in words (the canvas says nothing to a screen reader). */
  private latest(points: VmHistoryPoint[]): string {
    const last = points.at(-1);
    if (!last) return "no samples yet";
    const values = this.kind.lines.map((line) => line.value(last));
    if (values.every((value) => value === null)) return `no data while ${last.state}`;
    const words = values.map((value, index) => {
      const text = value === null ? "none" : this.kind.format(value);
      const label = this.kind.lines[index]?.label.toLowerCase();
      return this.kind.lines.length === 1 ? text : `${label} ${text}`;
    });
    return `now ${words.join(", ")}`;
  }

  private width(): number {
    return this.area.clientWidth || FALLBACK_WIDTH;
  }

  private options(): uPlot.Options {
    const ink = getComputedStyle(this.figure).color;
    const lines = { stroke: ink, grid: { stroke: GRID }, ticks: { stroke: GRID } };
    return {
      width: this.width(),
      height: HEIGHT,
      series: [
        {},
        ...this.kind.lines.map((line, index) => ({
          label: line.label,
          stroke: COLOURS[index] ?? ink,
          width: 2,
          value: (_: uPlot, value: number | null) => (value === null ? "–" : this.kind.format(value)),
        })),
      ],
      scales: { y: { range: (_, __, max) => [0, Math.max(max * 1.1, this.kind.floor)] } },
      axes: [
        // One line of clock time per tick: uPlot's default adds a date row whose labels collide in a narrow chart.
        { ...lines, space: 90, values: (_, splits) => splits.map((at) => clock.format(at * 1000)) },
        { ...lines, size: 72, values: (_, splits) => splits.map(this.kind.format) },
      ],
      cursor: { y: false },
    };
  }
}

/** Draws the charts of VM `name` into `container` and keeps them current until `signal` aborts. */
export function mountCharts(container: HTMLElement, name: string, signal: AbortSignal): void {
  const charts = KINDS.map((kind) => new Chart(kind));
  const status = h("p", { class: "hint", role: "status" });
  container.append(...charts.map((chart) => chart.figure), status);

  let timer: ReturnType<typeof setTimeout> | undefined;
  const poll = async () => {
    let intervalSecs = 5;
    try {
      const history = await api.history(name, signal);
      intervalSecs = history.interval_secs;
      for (const chart of charts) chart.draw(history.points);
      status.textContent = "";
    } catch (error) {
      if (signal.aborted) return;
      status.textContent = `Cannot load the history: ${errorText(error)}`;
    }
    if (!signal.aborted) timer = setTimeout(poll, Math.max(1, intervalSecs) * 1000);
  };
  void poll();

  const observer = new ResizeObserver(() => {
    for (const chart of charts) chart.resize();
  });
  observer.observe(container);
  signal.addEventListener("abort", () => {
    clearTimeout(timer);
    observer.disconnect();
    for (const chart of charts) chart.destroy();
  }, { once: true });
}
