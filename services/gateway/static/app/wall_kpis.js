// The KPI tiles of the scope in view and the hourly trend of intake and closures.
/* global uPlot */
import { language, t } from "./i18n.js";
import { count, duration, el, rate } from "./wall_phrases.js";

const CHANNELS = ["hotline", "sensor", "grid", "api"];

/** The intake channel a ticket's source counts under (docs/kpis.md). */
export function channelOf(source) {
  return CHANNELS.includes(source) ? source : "api";
}

// Higher is better for these rates; the others are counts or "lower is better".
const TILES = [
  { key: "intake", label: "kpi.intake" },
  { key: "backlog", label: "kpi.backlog" },
  { key: "overdue", label: "kpi.overdue", alarm: true },
  { key: "on_time_close_rate", label: "kpi.on_time", good: true },
  { key: "close_rate", label: "kpi.close_rate", good: true },
  { key: "rework_rate", label: "kpi.rework" },
  { key: "close_time", label: "kpi.close_time" },
  { key: "satisfaction", label: "kpi.satisfaction", good: true },
  { key: "score", label: "kpi.score", good: true },
];

function grading(value) {
  if (value === null || value === undefined) return "none";
  if (value >= 0.9) return "good";
  if (value >= 0.6) return "fair";
  return "poor";
}

export class KpiTiles {
  constructor(container) {
    this.container = container;
    this.figures = null;
    this.tiles = new Map();
    for (const spec of TILES) {
      const tile = el("div", `tile tile-${spec.key}`);
      tile.dataset.kpi = spec.key;
      const label = el("div", "tile-label");
      const value = el("div", "tile-value");
      const sub = el("div", "tile-sub");
      tile.append(label, value, sub);
      container.append(tile);
      this.tiles.set(spec.key, { spec, label, value, sub, tile });
    }
  }

  /** A full `GET /api/v1/kpis` answer (the figures the live messages do not carry included). */
  load(kpis) {
    this.figures = structuredClone(kpis);
    this.render();
  }

  /** A live `kpis` message's headline figures for the scope in view. */
  update(headline) {
    if (!this.figures) return;
    const { intake, by_channel: channels, close_time_s: closing, ...rest } = headline;
    Object.assign(this.figures, rest);
    // The message carries today's intake as one number, its channels and the time to close's
    // count and mean (not its p90: that stays as the REST answer gave it).
    if (typeof intake === "number") this.figures.intake.total = intake;
    if (channels) this.figures.intake.by_channel = { ...channels };
    if (closing) this.figures.close_time_s = { ...this.figures.close_time_s, ...closing };
    this.render();
  }

  /** One event arrived through a channel (a ticket was created or reported again). */
  countIntake(source) {
    if (!this.figures) return;
    const channels = this.figures.intake.by_channel;
    channels[channelOf(source)] = (channels[channelOf(source)] ?? 0) + 1;
    const sum = CHANNELS.reduce((total, c) => total + (channels[c] ?? 0), 0);
    this.figures.intake.total = Math.max(this.figures.intake.total, sum);
    this.render();
  }

  /** A ticket closed in view: fold its time to close into today's mean (docs/kpis.md). */
  countClose(seconds) {
    if (!this.figures || !(seconds >= 0)) return;
    const timing = this.figures.close_time_s;
    const total = (timing.mean ?? 0) * timing.count + seconds;
    timing.count += 1;
    timing.mean = Math.round((total / timing.count) * 10) / 10;
    this.render();
  }

  render() {
    const f = this.figures;
    if (!f) return;
    for (const { spec, label, value, sub, tile } of this.tiles.values()) {
      label.textContent = t(spec.label);
      sub.replaceChildren();
      let grade = "none";
      switch (spec.key) {
        case "intake":
          value.textContent = count(f.intake.total);
          for (const channel of CHANNELS) {
            const chip = el("span", `chip channel-${channel}`);
            chip.dataset.channel = channel;
            const n = count(f.intake.by_channel[channel] ?? 0);
            chip.append(el("span", "", t(`channel.${channel}`)), el("b", "", n));
            sub.append(chip);
          }
          break;
        case "backlog":
          value.textContent = count(f.backlog);
          sub.textContent = [
            t("kpi.filed", { n: count(f.filed) }), t("kpi.parked", { n: count(f.parked) }),
          ].join(" · ");
          break;
        case "overdue":
          value.textContent = count(f.overdue);
          grade = f.overdue > 0 ? "poor" : "good";
          break;
        case "on_time_close_rate":
          value.textContent = rate(f.on_time_close_rate);
          sub.textContent = t("kpi.of_due", { due: count(f.due) });
          grade = grading(f.on_time_close_rate);
          break;
        case "close_rate":
          value.textContent = rate(f.close_rate);
          sub.textContent = t("kpi.closed_n", { n: count(f.closed) });
          grade = grading(f.close_rate);
          break;
        case "rework_rate":
          value.textContent = rate(f.rework_rate);
          sub.textContent = t("kpi.verifications", { n: count(f.verifications) });
          grade = f.rework_rate === null ? "none" : grading(1 - f.rework_rate);
          break;
        case "close_time":
          value.textContent = duration(f.close_time_s?.mean ?? null);
          sub.textContent = t("kpi.closed_n", { n: count(f.close_time_s?.count ?? 0) });
          break;
        case "satisfaction":
          value.textContent = f.satisfaction.mean === null ? "—" : f.satisfaction.mean.toFixed(2);
          sub.textContent = [
            rate(f.satisfaction.satisfied_rate),
            t("kpi.callbacks", { n: count(f.satisfaction.count) }),
          ].join(" · ");
          grade = grading(f.satisfaction.satisfied_rate);
          break;
        case "score":
          value.textContent = f.score === null ? "—" : f.score.toFixed(1);
          if (f.grade) value.append(el("span", `grade grade-${f.grade}`, f.grade));
          grade = f.score === null ? "none" : grading(f.score / 100);
          break;
        default:
          break;
      }
      tile.dataset.grade = grade;
    }
  }
}

function hourLabel(seconds) {
  const hour = new Date(seconds * 1000).getHours();
  return language() === "zh" ? `${hour}时` : `${String(hour).padStart(2, "0")}:00`;
}

/** Local midnight of today, as epoch seconds (uPlot's time axis), until a REST answer says. */
function midnight() {
  const day = new Date();
  day.setHours(0, 0, 0, 0);
  return day.getTime() / 1000;
}

const DAY_S = 24 * 3600;

// Intake and closures per hour of today: the REST answer's `hourly` (local hours of the hub's
// zone since midnight), then what the wall sees live after it (a ticket created or reported
// again = one event in; a transition to closed = one closure) on top.
export class TrendChart {
  constructor(container) {
    this.container = container;
    this.title = el("div", "panel-title");
    this.plotBox = el("div", "trend-plot");
    container.append(this.title, this.plotBox);
    this.plot = null;
    this.day = midnight();
    this.clear();
    this.render();
    new ResizeObserver(() => this.resize()).observe(this.plotBox);
  }

  clear() {
    this.intake = new Array(24).fill(0);
    this.closed = new Array(24).fill(0);
  }

  /** `hourly` of a `GET /api/v1/kpis?window=today` answer: the chart starts over from it. */
  load(hourly) {
    this.clear();
    if (hourly?.length) this.day = Date.parse(hourly[0].hour) / 1000; // the hub's midnight
    for (const entry of hourly ?? []) {
      const hour = Math.round((Date.parse(entry.hour) / 1000 - this.day) / 3600);
      if (hour < 0 || hour >= 24) continue;
      this.intake[hour] = entry.intake;
      this.closed[hour] = entry.closed;
    }
    this.plot?.setData(this.data());
  }

  hourOf(iso) {
    const at = iso ? Date.parse(iso) / 1000 : Date.now() / 1000;
    if (at >= this.day + DAY_S) {
      // A new day starts an empty chart (until the next REST answer brings its history).
      this.day += Math.floor((at - this.day) / DAY_S) * DAY_S;
      this.clear();
      if (this.plot) this.render();
    }
    const hour = Math.floor((at - this.day) / 3600);
    return hour >= 0 && hour < 24 ? hour : null;
  }

  add(kind, iso) {
    const hour = this.hourOf(iso);
    if (hour === null) return;
    this[kind][hour] += 1;
    this.plot?.setData(this.data());
  }

  data() {
    const hours = Array.from({ length: 24 }, (_, h) => this.day + h * 3600);
    return [hours, this.intake, this.closed];
  }

  size() {
    const box = this.plotBox.getBoundingClientRect();
    return { width: Math.max(200, Math.floor(box.width)), height: Math.max(80, Math.floor(box.height)) };
  }

  render() {
    // The legend goes in the title (uPlot's own would need room below the plot).
    const legend = el("span", "trend-legend");
    legend.append(
      el("span", "key key-intake", t("trend.intake")), el("span", "key key-closed", t("trend.closed")),
    );
    this.title.replaceChildren(el("span", "", t("trend.title")), legend);
    this.plot?.destroy();
    const style = getComputedStyle(document.documentElement);
    const ink = style.getPropertyValue("--muted").trim() || "#a9b7c9";
    const grid = style.getPropertyValue("--line").trim() || "#24344d";
    const size = Math.round(parseFloat(getComputedStyle(document.body).fontSize) * 0.8) || 14;
    const font = `${size}px ${style.fontFamily}`;
    const axis = { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, font };
    const bars = uPlot.paths.bars({ size: [0.7, 60], align: 1 });
    this.plot = new uPlot(
      {
        ...this.size(),
        legend: { show: false },
        cursor: { show: false },
        scales: {
          x: { time: true, range: [this.day, this.day + 24 * 3600] },
          y: { range: (_, _min, max) => [0, Math.max(4, Math.ceil(max * 1.1))] },
        },
        axes: [
          { ...axis, size: size * 2.2, values: (_, ticks) => ticks.map((s) => hourLabel(s)) },
          { ...axis, size: size * 3.5, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000] },
        ],
        series: [
          {},
          {
            label: t("trend.intake"), stroke: style.getPropertyValue("--accent").trim(),
            fill: "rgba(77,171,247,.45)", paths: bars, points: { show: false },
          },
          {
            label: t("trend.closed"), stroke: style.getPropertyValue("--green").trim(), width: 3,
            points: { show: false },
          },
        ],
      },
      this.data(),
      this.plotBox,
    );
  }

  resize() {
    this.plot?.setSize(this.size());
  }
}
