// The operations wall at `/`: the areas of the signed-in user's scope on a map and in the
// 综合评价 ranking, the scope's KPIs, the hourly trend, alerts and the live feed. One REST load per
// view (after the live stream said hello, so nothing falls between the two), then only `/ws/live`;
// drilling down re-subscribes the stream to the narrower scope, which keeps the traffic to it.
import { Session } from "./api.js";
import { language, onLanguage, setLanguage, t, translate } from "./i18n.js";
import { LiveStream } from "./live.js";
import { signIn } from "./signin.js";
import { TicketDrawer } from "./ticket_drawer.js";
import { KpiTiles, TrendChart } from "./wall_kpis.js";
import { WallMap } from "./wall_map.js";
import { AlertsPanel, Feed, RankingTable } from "./wall_panels.js";
import { clock, el } from "./wall_phrases.js";

const OPEN = new Set(["new", "dispatched", "accepted", "in_progress", "resolved", "parked"]);
const MARKERS_PER_VIEW = 200; // open tickets loaded for the map per view (the API's page size)
const FEED_SEED = 12; // recent changes shown before the first live one
const ALERTS_LOADED = 100;
const HELLO_WAIT_MS = 3_000; // load over REST anyway when the stream is slow to say hello
const RESYNCED_SHOWN_MS = 10_000;
const CHILD = { city: "district", district: "street", street: "street" };
const STREAMS = ["tickets", "kpis", "alerts"];

export function scopeOf(view) {
  return view.level === "city" ? "city" : `${view.level}:${view.code}`;
}

function viewOfScope(scope) {
  const [level, code] = scope.split(":");
  return { level, code: code ?? null, name: "" };
}

class Wall {
  constructor(session, root) {
    this.session = session;
    this.root = root;
    this.names = new Map(); // area code -> name, from every outline and ranking loaded
    this.categories = new Map();
    this.path = [viewOfScope(session.user.scope)];
    this.live = null;
    this.pending = null; // live messages held while a view loads over REST
    this.loadSeq = 0;
    this.retries = 0;
    this.resyncDue = false;
    this.kpisAt = 0;
    this.rankingAt = 0;
    this.liveState = "connecting";
    this.resyncTimer = null;
    this.metric = localStorage.getItem("cityhub.wall.metric") === "overdue" ? "overdue" : "backlog";
    this.build();
  }

  get view() {
    return this.path[this.path.length - 1];
  }

  build() {
    const head = el("header", "wall-head");
    const title = el("h1", "wall-title");
    title.dataset.i18n = "wall.title";
    this.crumbs = el("nav", "breadcrumb");
    const tools = el("div", "head-tools");
    this.metricSwitch = el("div", "metric-switch");
    this.metricSwitch.setAttribute("role", "group");
    for (const metric of ["backlog", "overdue"]) {
      const button = el("button", "secondary");
      button.dataset.metric = metric;
      button.dataset.i18n = `wall.metric.${metric}`;
      button.addEventListener("click", () => this.setMetric(metric));
      this.metricSwitch.append(button);
    }
    this.badge = el("span", "live-state");
    this.clock = el("time", "wall-clock");
    const lang = el("button", "secondary lang-toggle");
    lang.dataset.i18n = "lang.toggle";
    lang.addEventListener("click", () => setLanguage(language() === "zh" ? "en" : "zh"));
    const theme = el("button", "secondary theme-toggle");
    theme.dataset.i18n = "wall.theme";
    theme.addEventListener("click", () => this.toggleTheme());
    const user = el("span", "user", this.session.user.username);
    const out = el("button", "secondary sign-out");
    out.dataset.i18n = "signin.out";
    out.addEventListener("click", async () => {
      await this.session.signOut();
      location.reload();
    });
    tools.append(this.metricSwitch, this.badge, this.clock, lang, theme, user, out);
    head.append(title, this.crumbs, tools);

    const kpis = el("section", "kpis");
    const middle = el("section", "middle");
    const mapPanel = el("div", "panel map-panel");
    const mapBox = el("div", "map");
    mapBox.id = "map";
    this.status = el("div", "map-status");
    mapPanel.append(mapBox, this.status);
    const rankingPanel = el("div", "panel ranking-panel");
    middle.append(mapPanel, rankingPanel);
    const bottom = el("section", "bottom");
    const trendPanel = el("div", "panel trend-panel");
    const alertsPanel = el("div", "panel alerts-panel");
    const feedPanel = el("div", "panel feed-panel");
    bottom.append(trendPanel, alertsPanel, feedPanel);
    this.root.replaceChildren(head, kpis, middle, bottom);

    const openTicket = (id) => this.drawer.show(id);
    this.tiles = new KpiTiles(kpis);
    this.map = new WallMap(mapBox, {
      onArea: (code, name) => this.drill(code, name),
      onTicket: openTicket,
    });
    this.map.setMetric(this.metric);
    this.ranking = new RankingTable(rankingPanel, {
      onArea: (code, name) => this.drill(code, name),
      onHover: (code, on) => this.map.highlight(code, on),
      onRender: (rows) => this.map.setFigures(rows),
    });
    this.trend = new TrendChart(trendPanel);
    this.alerts = new AlertsPanel(alertsPanel, {
      onTicket: openTicket, areaName: (code) => this.names.get(code) ?? code,
    });
    this.feed = new Feed(feedPanel, {
      onTicket: openTicket, placeName: (ticket) => this.placeName(ticket),
    });
    this.drawer = new TicketDrawer(this.session, {
      categories: () => this.categories,
      onShow: (ticket) => this.map.focusTicket(ticket.id),
      onHide: () => this.map.unfocus(),
    });
    new ResizeObserver(() => this.map.resize()).observe(mapBox);
    onLanguage(() => this.rerender());
    this.session.onChange((state) => {
      if (!state) location.reload(); // signed out elsewhere or the refresh failed: sign in again
    });
    setInterval(() => { this.clock.textContent = clock(); }, 1_000);
    this.clock.textContent = clock();
    translate(this.root);
    this.showMetric();
    this.showState("connecting");
  }

  async start() {
    await this.enter();
  }

  // ---- views -------------------------------------------------------------------------------

  drill(code, name) {
    const view = this.view;
    if (view.level === "street") return;
    this.path.push({
      level: CHILD[view.level], code, name, district: view.level === "district" ? view.code : null,
    });
    this.enter();
  }

  up(index) {
    if (index >= this.path.length - 1) return;
    this.path = this.path.slice(0, index + 1);
    this.enter();
  }

  inView(ticket) {
    const view = this.view;
    if (view.level === "city") return true;
    if (view.level === "district") return ticket.district_code === view.code;
    return ticket.street_code === view.code;
  }

  alertInView(alert) {
    const view = this.view;
    if (view.level === "city" || !alert.district) return true;
    if (view.level === "district") return alert.district === view.code;
    return !alert.street ? alert.district === view.district : alert.street === view.code;
  }

  /** Open the view at the end of the path: subscribe, wait for hello, load over REST, draw. */
  async enter() {
    const seq = ++this.loadSeq;
    const view = this.view;
    const started = performance.now();
    document.body.dataset.view = scopeOf(view);
    document.body.dataset.ready = "false";
    this.drawer.hide();
    this.renderCrumbs();
    this.pending = [];
    this.resyncDue = false;
    // What does not change live (outlines, the catalogue) is asked for at once; the rest after
    // the stream's hello, so every change after the REST answers also reaches the stream.
    const early = {
      outlines: this.outlines(view),
      categories: this.categories.size ? null : this.session.get("/api/v1/categories"),
    };
    early.outlines.catch(() => undefined);
    early.categories?.catch(() => undefined);
    await this.subscribe(scopeOf(view));
    if (seq !== this.loadSeq) return;
    try {
      await this.load(view, seq, { fresh: true, ...early });
    } catch (error) {
      if (seq !== this.loadSeq) return;
      this.failed(error);
      // A wall runs unattended: try the view again (a new stream, a new load) after a while.
      this.retries += 1;
      setTimeout(() => {
        if (seq === this.loadSeq) this.enter();
      }, Math.min(30_000, 1_000 * 2 ** this.retries));
      return;
    }
    this.retries = 0;
    if (seq !== this.loadSeq) return;
    this.flush();
    if (this.resyncDue) this.resync();
    document.body.dataset.ready = "true";
    const ready = performance.now();
    window.__wallLoads = [...(window.__wallLoads ?? []), { scope: scopeOf(view), started, ready }];
    if (window.__wallReady === undefined) window.__wallReady = ready;
  }

  /** Everything a view shows, over REST. `fresh`: a new view (else a resync of the same one);
   * `outlines` and `categories`: requests already under way. */
  async load(view, seq, { fresh, outlines: drawing = null, categories: catalogue = null }) {
    this.status.textContent = t("wall.loading");
    this.status.hidden = false;
    const scope = scopeOf(view);
    const child = CHILD[view.level];
    const atRoot = this.path.length === 1;
    const parent = atRoot ? "" : `&parent=${view.code}`;
    const ranking = `/api/v1/kpis/ranking?level=${child}&window=today${parent}`;
    const tickets = new URLSearchParams({ located: "true", limit: String(MARKERS_PER_VIEW) });
    for (const status of OPEN) tickets.append("status", status);
    if (view.level !== "city") tickets.set(view.level, view.code);
    const first = this.categories.size === 0;
    const [kpis, rows, outlines, page, categories, alerts, modes] = await Promise.all([
      this.session.get(`/api/v1/kpis?scope=${encodeURIComponent(scope)}&window=today`),
      this.session.get(ranking),
      drawing ?? this.outlines(view),
      this.session.get(`/api/v1/tickets?${tickets}`),
      catalogue ?? (first ? this.session.get("/api/v1/categories") : null),
      fresh && !first ? null : this.session.get(`/api/v1/alerts?limit=${ALERTS_LOADED}`),
      fresh && !first ? null : this.session.get("/api/v1/emergency"),
    ]);
    if (seq !== this.loadSeq) return;
    if (categories) this.categories = new Map(categories.map((c) => [c.code, c]));
    for (const row of rows.items) this.names.set(row.code, row.name);
    for (const feature of outlines.features) {
      this.names.set(feature.properties.code, feature.properties.name);
    }
    if (view.code) this.names.set(view.code, kpis.name);
    if (!view.name) {
      view.name = kpis.name;
      this.renderCrumbs();
    }
    this.kpisAt = Date.parse(kpis.end);
    this.rankingAt = Date.parse(rows.end);
    this.tiles.load(kpis);
    this.trend.load(kpis.hourly);
    const drillable = view.level !== "street";
    if (fresh) this.map.showAreas(outlines, { drillable });
    this.ranking.load(rows, { drillable });
    this.map.clearTickets();
    const loaded = page.items.map((item) => this.fromRest(item));
    for (const ticket of loaded) this.map.upsertTicket(ticket);
    if (fresh) {
      this.feed.clear();
      const recent = [...loaded].sort((a, b) => (a.updated_at < b.updated_at ? 1 : -1));
      this.feed.addAll(recent.slice(0, FEED_SEED).map((ticket) => ({
        ticket, action: null, at: ticket.updated_at, live: false,
      })));
    }
    if (alerts) this.alerts.load(alerts.items, modes, (alert) => this.alertInView(alert));
    else this.alerts.setView((alert) => this.alertInView(alert));
    this.status.hidden = true;
  }

  /** A FeatureCollection of the areas a view draws: its children, or a street itself. */
  async outlines(view) {
    if (view.level === "street") {
      const area = await this.session.get(`/api/v1/areas/${encodeURIComponent(view.code)}`);
      view.district = view.district ?? area.parent;
      return { type: "FeatureCollection", features: [featureOf(area)] };
    }
    const query = `level=${CHILD[view.level]}${view.code ? `&parent=${view.code}` : ""}`;
    return this.session.get(`/api/v1/areas/outlines?${query}`);
  }

  failed(error) {
    this.status.textContent = t("wall.failed", { message: error.message });
    this.status.hidden = false;
  }

  // ---- live --------------------------------------------------------------------------------

  /** (Re)subscribe `/ws/live` to a scope; resolves at its hello (or after HELLO_WAIT_MS). */
  subscribe(scope) {
    this.live?.stop();
    let greeted;
    const hello = new Promise((resolve) => {
      greeted = resolve;
      setTimeout(resolve, HELLO_WAIT_MS);
    });
    const stream = new LiveStream(this.session, {
      scope,
      streams: STREAMS,
      onMessage: (message) => {
        if (stream === this.live) this.receive(message);
      },
      onResync: () => {
        if (stream === this.live) this.resync();
      },
      onState: (state) => {
        if (stream !== this.live) return;
        if (state !== "connecting" && state !== "reconnecting") greeted();
        this.showState(state);
      },
    });
    this.live = stream;
    stream.start();
    return hello;
  }

  receive(message) {
    if (this.pending) this.pending.push(message);
    else this.apply(message);
  }

  flush() {
    const held = this.pending ?? [];
    this.pending = null;
    for (const message of held) this.apply(message);
  }

  /** The server could not replay a gap: reload the view over REST, holding live messages. */
  async resync() {
    if (this.pending) {
      this.resyncDue = true; // a load is under way: read the view again once it is drawn
      return;
    }
    this.resyncDue = false;
    const seq = this.loadSeq;
    this.pending = [];
    try {
      await this.load(this.view, seq, { fresh: false });
    } catch (error) {
      if (seq === this.loadSeq) this.failed(error);
    }
    if (seq !== this.loadSeq) return;
    this.flush();
    if (this.resyncDue) this.resync();
  }

  apply(message) {
    if (message.stream === "tickets") this.applyTicket(message);
    else if (message.stream === "kpis") this.applyKpis(message);
    else if (message.stream === "alerts") this.alerts.add(message.data);
  }

  applyTicket(message) {
    const data = message.data;
    const ticket = { ...data, open: OPEN.has(data.status) && !data.merged_into, live: true };
    if (!this.inView(ticket)) return;
    const known = this.map.ticket(ticket.id);
    if (!known || known.updated_at <= ticket.updated_at) this.map.upsertTicket(ticket);
    const step = data.transition;
    const at = step?.at ?? data.updated_at;
    // A new ticket comes as one `ticket.created` carrying its last step (often the dispatch).
    const change = message.type.replace("ticket.", "");
    const action = change === "created" ? "create" : step?.action ?? change;
    this.feed.add({ ticket, action, at, seq: step?.seq, live: true });
    // Counted into the trend and the tiles when the REST answer could not have counted them
    // yet (the next live `kpis` message for the scope brings the tiles' exact figures).
    const after = Date.parse(message.at) > this.kpisAt;
    if (after && (message.type === "ticket.created" || message.type === "ticket.report")) {
      this.trend.add("intake", message.at);
      this.tiles.countIntake(data.source);
    }
    const closes = step?.to === "closed" && step.from !== "closed" && step.action !== "merge";
    if (after && closes) {
      this.trend.add("closed", step.at);
      this.tiles.countClose((Date.parse(step.at) - Date.parse(data.created_at)) / 1000);
    }
    this.drawer.changed(ticket.id);
  }

  applyKpis(message) {
    const data = message.data;
    const at = Date.parse(message.at);
    if (data.scope === scopeOf(this.view) && at >= this.kpisAt) this.tiles.update(data);
    const [level, code] = data.scope.split(":");
    if (level === CHILD[this.view.level] && at >= this.rankingAt) this.ranking.update(code, data);
  }

  // ---- what the tickets look like -------------------------------------------------------------

  fromRest(item) {
    const category = this.categories.get(item.category);
    return {
      id: item.id, status: item.status, open: OPEN.has(item.status) && !item.merged_into,
      category: item.category, category_name: category?.name_zh ?? item.category,
      category_name_en: category?.name_en ?? item.category, priority: item.priority,
      source: item.source, city_code: item.city?.code ?? null,
      district_code: item.district?.code ?? null, street_code: item.street?.code ?? null,
      colour: item.colour, overdue: item.overdue, report_count: item.report_count,
      location: item.lon === null ? null : { lon: item.lon, lat: item.lat },
      created_at: item.created_at, updated_at: item.updated_at, live: false,
    };
  }

  placeName(ticket) {
    const names = [ticket.district_code, ticket.street_code].map((code) => this.names.get(code));
    return names.filter(Boolean).join(" ") || "—";
  }

  // ---- header ----------------------------------------------------------------------------------

  renderCrumbs() {
    const crumbs = this.path.map((view, index) => {
      const name = view.name || "…";
      if (index === this.path.length - 1) return el("span", "crumb current", name);
      const button = el("button", "crumb", name);
      button.addEventListener("click", () => this.up(index));
      return button;
    });
    const parts = [];
    crumbs.forEach((crumb, i) => {
      if (i) parts.push(el("span", "crumb-sep", "›"));
      parts.push(crumb);
    });
    this.crumbs.replaceChildren(...parts);
  }

  showState(state) {
    this.liveState = state;
    this.badge.dataset.state = state;
    this.badge.textContent = t(`live.${state}`);
    clearTimeout(this.resyncTimer);
    if (state === "resynced") {
      // Once reloaded, the stream is simply live again; the badge says so after a while.
      this.resyncTimer = setTimeout(() => {
        if (this.liveState === "resynced") this.showState("live");
      }, RESYNCED_SHOWN_MS);
    }
  }

  setMetric(metric) {
    this.metric = metric;
    localStorage.setItem("cityhub.wall.metric", metric);
    this.map.setMetric(metric);
    this.showMetric();
  }

  showMetric() {
    for (const button of this.metricSwitch.querySelectorAll("button")) {
      button.setAttribute("aria-pressed", String(button.dataset.metric === this.metric));
    }
  }

  toggleTheme() {
    const dark = !document.documentElement.classList.contains("dark");
    document.documentElement.classList.toggle("dark", dark);
    localStorage.setItem("cityhub.wall.theme", dark ? "dark" : "light");
    this.trend.render();
  }

  rerender() {
    translate(this.root);
    this.renderCrumbs();
    this.showState(this.liveState);
    this.tiles.render();
    this.ranking.render();
    this.map.recolour();
    this.trend.render();
    this.alerts.render();
    this.feed.render();
    if (this.drawer.ticket) this.drawer.render();
  }
}

function featureOf(area) {
  return {
    type: "Feature",
    properties: { code: area.code, name: area.name, level: area.level, parent: area.parent },
    geometry: area.geometry,
  };
}

if (localStorage.getItem("cityhub.wall.theme") === "light") {
  document.documentElement.classList.remove("dark");
}
document.documentElement.lang = language() === "zh" ? "zh-CN" : "en";
const session = new Session();
const app = document.getElementById("app");
await signIn(session, app);
const wall = new Wall(session, app);
window.__wall = wall;
await wall.start();
