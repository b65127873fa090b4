// The wall's lists: the 综合评价 ranking of the areas in view, the alerts panel and the live feed
// of ticket changes. Each is built from data with textContent only (names and notes are data).
import { language, t } from "./i18n.js";
import { actionName, clock, count, el, rate } from "./wall_phrases.js";

const FEED_MAX = 40; // entries kept in the feed
const ALERTS_MAX = 60; // alerts kept in the panel

/** Best score first, areas without a score last by code: the order the ranking API uses. */
export function byScore(a, b) {
  if ((a.score === null) !== (b.score === null)) return a.score === null ? 1 : -1;
  if (a.score !== b.score) return b.score - a.score;
  return a.code < b.code ? -1 : a.code > b.code ? 1 : 0;
}

export class RankingTable {
  // onRender(rows): after every redraw (the map shades its areas from the same rows)
  constructor(container, { onArea, onHover, onRender }) {
    this.onArea = onArea;
    this.onHover = onHover;
    this.onRender = onRender;
    this.scheduled = false;
    this.title = el("div", "panel-title");
    this.table = el("table", "ranking");
    this.head = el("thead");
    this.body = el("tbody");
    this.table.append(this.head, this.body);
    const scroller = el("div", "ranking-scroll");
    scroller.append(this.table);
    container.append(this.title, scroller);
    this.rows = [];
    this.level = "district";
    this.drillable = true;
  }

  /** The rows of a `GET /api/v1/kpis/ranking` answer. */
  load(ranking, { drillable }) {
    this.level = ranking.level;
    this.rows = ranking.items.map((row) => ({ ...row }));
    this.drillable = drillable;
    this.render();
  }

  /** A live `kpis` message for one of the listed areas; false when it is not listed. */
  update(code, headline) {
    const row = this.rows.find((r) => r.code === code);
    if (!row) return false;
    const { intake, ...rest } = headline;
    Object.assign(row, rest, { intake: typeof intake === "number" ? intake : row.intake });
    // A city view receives up to one message per district a second: redraw once per frame.
    if (!this.scheduled) {
      this.scheduled = true;
      requestAnimationFrame(() => {
        this.scheduled = false;
        this.render();
      });
    }
    return true;
  }

  render() {
    this.rows.sort(byScore);
    this.rows.forEach((row, i) => { row.rank = i + 1; });
    this.title.replaceChildren(
      el("span", "", t("rank.title")),
      el("span", "panel-note", `${t(`rank.level.${this.level}`)} · ${this.rows.length}`),
    );
    const head = el("tr");
    for (const key of ["rank", "name", "backlog", "overdue", "on_time", "score", "grade"]) {
      head.append(el("th", `col-${key}`, t(`rank.${key}`)));
    }
    this.head.replaceChildren(head);
    this.body.replaceChildren(...this.rows.map((row) => this.rowOf(row)));
    this.onRender?.(this.rows);
  }

  rowOf(row) {
    const tr = el("tr", this.drillable ? "drillable" : "");
    tr.dataset.code = row.code;
    tr.append(
      el("td", "col-rank", row.rank),
      el("td", "col-name", row.name),
      el("td", "col-backlog num", count(row.backlog)),
      el("td", `col-overdue num${row.overdue > 0 ? " alarm" : ""}`, count(row.overdue)),
      el("td", "col-on_time num", rate(row.on_time_close_rate)),
      el("td", "col-score num", row.score === null ? "—" : row.score.toFixed(1)),
    );
    const grade = el("td", "col-grade");
    if (row.grade) grade.append(el("span", `grade grade-${row.grade}`, row.grade));
    else grade.textContent = "—";
    tr.append(grade);
    if (this.drillable) tr.addEventListener("click", () => this.onArea(row.code, row.name));
    tr.addEventListener("mouseenter", () => this.onHover(row.code, true));
    tr.addEventListener("mouseleave", () => this.onHover(row.code, false));
    return tr;
  }
}

/** An alert's title in the language shown. */
function titleOf(alert) {
  return language() === "en" && alert.title_en ? alert.title_en : alert.title;
}

export class AlertsPanel {
  constructor(container, { onTicket, areaName }) {
    this.onTicket = onTicket;
    this.areaName = areaName;
    this.title = el("div", "panel-title");
    this.banner = el("div", "emergency-banner");
    this.summary = el("div", "alert-summary");
    this.list = el("ul", "alerts");
    container.append(this.title, this.banner, this.summary, this.list);
    this.alerts = [];
    this.emergencies = new Map(); // id -> {area, area_name, incident}
    this.inView = () => true;
  }

  /** Alerts of the caller's scope (newest first) and the active emergency modes. */
  load(alerts, emergencies, inView) {
    this.inView = inView;
    this.alerts = alerts.slice(0, ALERTS_MAX);
    this.emergencies = new Map(emergencies.map((mode) => [mode.id, mode]));
    this.render();
  }

  /** Narrow or widen to the view (the list is filtered here, not refetched). */
  setView(inView) {
    this.inView = inView;
    this.render();
  }

  add(alert) {
    if (this.alerts.some((a) => a.id === alert.id)) return; // a repeat delivery (docs/alerts.md)
    this.alerts.unshift(alert);
    this.alerts.length = Math.min(this.alerts.length, ALERTS_MAX);
    const id = alert.details?.emergency_id;
    if (alert.kind === "emergency_started" && id) {
      this.emergencies.set(id, {
        id, area: alert.details.area, area_name: this.areaName(alert.details.area),
        incident: alert.details.incident, city_wide: alert.district === null,
      });
    }
    if (alert.kind === "emergency_ended" && id) this.emergencies.delete(id);
    this.render();
  }

  render() {
    const shown = this.alerts.filter(this.inView);
    this.title.replaceChildren(
      el("span", "", t("alerts.title")), el("span", "panel-note", count(shown.length)),
    );
    const modes = [...this.emergencies.values()];
    this.banner.hidden = modes.length === 0;
    this.banner.textContent = modes
      .map((m) => {
        const text = t("alerts.emergency_on", { area: m.area_name || m.area });
        return m.incident ? `${text} · ${m.incident}` : text;
      })
      .join("；");
    // Sensors offline now: those whose latest alert (newest first) is an offline one.
    const sensors = new Map();
    for (const alert of shown) {
      const sensor = alert.details?.sensor_id;
      if (sensor && !sensors.has(sensor) && alert.kind.startsWith("sensor_")) {
        sensors.set(sensor, alert.kind === "sensor_offline");
      }
    }
    const tally = (kind) => shown.filter((a) => a.kind === kind).length;
    const chips = [
      ["breach", tally("breach")],
      ["supervision", tally("supervision")],
      ["emergency", modes.length],
      ["sensors", [...sensors.values()].filter(Boolean).length],
      ["dead_letters", tally("dead_letter_spike")],
    ];
    this.summary.replaceChildren(...chips.map(([key, n]) => {
      const chip = el("span", `chip${n > 0 ? " lit" : ""}`);
      chip.dataset.alertKind = key;
      chip.append(el("span", "", t(`alerts.${key}`)), el("b", "", count(n)));
      return chip;
    }));
    if (shown.length === 0) {
      this.list.replaceChildren(el("li", "empty", t("alerts.none")));
      return;
    }
    this.list.replaceChildren(...shown.map((alert) => {
      const li = el("li", `alert severity-${alert.severity}`);
      li.dataset.kind = alert.kind;
      li.append(el("time", "", clock(alert.at)), el("span", "alert-title", titleOf(alert)));
      if (alert.ticket_id) {
        li.classList.add("clickable");
        li.addEventListener("click", () => this.onTicket(alert.ticket_id));
      }
      return li;
    }));
  }
}

export class Feed {
  constructor(container, { onTicket, placeName }) {
    this.onTicket = onTicket;
    this.placeName = placeName;
    this.title = el("div", "panel-title");
    this.list = el("ul", "feed");
    container.append(this.title, this.list);
    this.entries = [];
  }

  clear() {
    this.entries = [];
    this.render();
  }

  /** A ticket change: {ticket, action, at, seq, live}. */
  add(entry) {
    this.addAll([entry]);
  }

  addAll(entries) {
    for (const entry of entries) {
      const key = `${entry.ticket.id}:${entry.seq ?? entry.at}`;
      if (!this.entries.some((e) => e.key === key)) this.entries.push({ ...entry, key });
    }
    this.entries.sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
    this.entries.length = Math.min(this.entries.length, FEED_MAX);
    this.render();
  }

  render() {
    this.title.replaceChildren(el("span", "", t("feed.title")));
    if (this.entries.length === 0) {
      this.list.replaceChildren(el("li", "empty", t("feed.none")));
      return;
    }
    this.list.replaceChildren(...this.entries.map((entry) => this.itemOf(entry)));
  }

  itemOf({ ticket, action, at, live, key }) {
    const li = el("li", `feed-entry${live ? " live" : ""}`);
    li.dataset.ticket = ticket.id;
    li.dataset.street = ticket.street_code ?? "";
    li.dataset.district = ticket.district_code ?? "";
    li.dataset.key = key;
    const name = language() === "en" ? ticket.category_name_en : ticket.category_name;
    li.append(
      el("time", "", clock(at)),
      el("span", `dot ${ticket.colour}`),
      el("span", "feed-category", name || ticket.category),
      el("span", "feed-place", this.placeName(ticket)),
      el("span", "feed-action", action ? actionName(action) : t(`status.${ticket.status}`)),
    );
    li.addEventListener("click", () => this.onTicket(ticket.id));
    return li;
  }
}
