// A ticket's details in a drawer over the wall: category, location (a small map of its street and
// the point), reporter channel, photos, deadlines with the time left, and the timeline.
// Read-only: the desk has its own drawer with the actions.
/* global L */
import { language, t } from "./i18n.js";
import { actionName, el, timeLeft, when } from "./wall_phrases.js";

const MAX_EVENT_LOOKUPS = 5; // linked events read for their photos (a ticket can gather hundreds)
const OWN_FILE = /^\/files\/[0-9a-f]{64}\.(jpg|png)$/;

export class TicketDrawer {
  // session: api.js Session; categories(): Map code -> category; onShow(ticket) / onHide()
  constructor(session, { categories, onShow, onHide }) {
    this.session = session;
    this.categories = categories;
    this.onShow = onShow;
    this.onHide = onHide;
    this.root = el("aside", "drawer");
    this.root.hidden = true;
    this.root.setAttribute("aria-live", "polite");
    document.body.append(this.root);
    this.ticket = null;
    this.miniMap = null;
    this.ticker = null;
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.hide();
    });
  }

  async show(id) {
    this.root.hidden = false;
    this.root.dataset.ticket = id;
    this.root.replaceChildren(this.header(null), el("p", "muted", t("wall.loading")));
    let ticket;
    try {
      ticket = await this.session.get(`/api/v1/tickets/${encodeURIComponent(id)}`);
    } catch (error) {
      this.root.replaceChildren(this.header(null), el("p", "error", error.message));
      return;
    }
    if (this.root.dataset.ticket !== id) return; // another ticket was opened meanwhile
    this.ticket = ticket;
    this.render();
    this.onShow?.(ticket);
    this.loadPhotos(ticket);
  }

  hide() {
    if (this.root.hidden) return;
    this.root.hidden = true;
    this.ticket = null;
    delete this.root.dataset.ticket;
    clearInterval(this.ticker);
    this.miniMap?.remove();
    this.miniMap = null;
    this.onHide?.();
  }

  /** Re-read the open ticket when a live message says it changed (no "loading" flash). */
  async changed(id) {
    if (!this.ticket || this.ticket.id !== id) return;
    try {
      const ticket = await this.session.get(`/api/v1/tickets/${encodeURIComponent(id)}`);
      if (this.ticket?.id !== id) return;
      this.ticket = ticket;
      this.render();
      this.loadPhotos(ticket);
    } catch {
      /* keep what is shown; the next change tries again */
    }
  }

  categoryName(code) {
    const category = this.categories().get(code);
    if (!category) return code;
    return language() === "en" ? category.name_en : category.name_zh;
  }

  header(ticket) {
    const head = el("header", "drawer-head");
    if (ticket) {
      head.append(
        el("span", `dot ${ticket.colour}`),
        el("h2", "drawer-category", this.categoryName(ticket.category)),
        el("span", `status status-${ticket.status}`, t(`status.${ticket.status}`)),
      );
    } else {
      head.append(el("h2", "drawer-category", ""));
    }
    const close = el("button", "secondary drawer-close", t("drawer.close"));
    close.addEventListener("click", () => this.hide());
    head.append(close);
    return head;
  }

  render() {
    const ticket = this.ticket;
    clearInterval(this.ticker);
    this.miniMap?.remove();
    this.miniMap = null;
    const body = el("div", "drawer-body");
    body.append(
      this.facts(ticket),
      this.location(ticket),
      this.deadlines(ticket),
      this.photoSection(),
      this.timeline(ticket),
    );
    this.root.replaceChildren(this.header(ticket), body);
    this.drawMiniMap(ticket);
    // Time left ticks while the drawer is open.
    this.ticker = setInterval(() => this.tick(), 15_000);
  }

  facts(ticket) {
    const list = el("dl", "facts");
    const add = (label, value) => {
      if (value === null || value === undefined || value === "") return;
      list.append(el("dt", "", t(label)), el("dd", "", value));
    };
    const reports = t("drawer.reports", { n: ticket.report_count });
    add("drawer.channel", `${t(`channel.${ticket.source}`)} · ${reports}`);
    add("drawer.priority", ticket.priority ? t(`priority.${ticket.priority}`) : null);
    add("drawer.department", ticket.department_name ?? ticket.department);
    const areas = [ticket.city, ticket.district, ticket.street].filter(Boolean);
    const owner = areas.find((area) => area.code === ticket.owner_code)?.name ?? ticket.owner_code;
    add("drawer.owner", `${t(`tier.${ticket.owner_tier}`)} · ${owner}`);
    add("drawer.emergency", ticket.emergency);
    add("drawer.description", ticket.description);
    return list;
  }

  location(ticket) {
    const section = el("section", "drawer-location");
    section.append(el("h3", "", t("drawer.location")));
    const names = [ticket.district?.name, ticket.street?.name].filter(Boolean).join(" · ");
    const where = ticket.lon === null
      ? t("drawer.unlocated")
      : `${ticket.lat.toFixed(5)}, ${ticket.lon.toFixed(5)}`;
    section.append(el("p", "place", names || "—"), el("p", "muted", where));
    if (ticket.lon !== null) section.append(el("div", "mini-map"));
    return section;
  }

  async drawMiniMap(ticket) {
    const box = this.root.querySelector(".mini-map");
    if (!box) return;
    const map = L.map(box, {
      zoomSnap: 0.1, zoomControl: false, attributionControl: false, dragging: false, scrollWheelZoom: false,
      doubleClickZoom: false, boxZoom: false, keyboard: false, touchZoom: false,
    });
    this.miniMap = map;
    const point = [ticket.lat, ticket.lon];
    map.setView(point, 14);
    const className = `ticket-marker c-${ticket.colour} focused`;
    L.circleMarker(point, { radius: 9, weight: 3, className }).addTo(map);
    if (!ticket.street) return;
    try {
      const area = await this.session.get(`/api/v1/areas/${encodeURIComponent(ticket.street.code)}`);
      if (this.miniMap !== map) return;
      const outline = L.geoJSON(area.geometry, { style: { className: "area b0", weight: 2 } }).addTo(map);
      outline.bringToBack();
      map.fitBounds(outline.getBounds(), { padding: [8, 8], animate: false });
    } catch {
      /* the point alone still says where */
    }
  }

  deadlines(ticket) {
    const section = el("section", "drawer-deadlines");
    section.append(el("h3", "", t("drawer.deadlines")));
    const list = el("dl", "facts");
    const deadlines = [
      ["drawer.accept_due", ticket.accept_due_at], ["drawer.handle_due", ticket.handle_due_at],
    ];
    for (const [label, due] of deadlines) {
      if (!due) continue;
      const left = el("span", "time-left");
      left.dataset.due = due;
      const value = el("dd", "");
      value.append(el("span", "", when(due)), left);
      list.append(el("dt", "", t(label)), value);
    }
    section.append(list);
    this.sectionTick(section);
    return section;
  }

  sectionTick(root) {
    for (const left of root.querySelectorAll(".time-left")) {
      const closed = ["closed", "rejected"].includes(this.ticket?.status);
      left.textContent = closed ? "" : timeLeft(left.dataset.due);
      left.classList.toggle("over", !closed && Date.parse(left.dataset.due) < Date.now());
    }
  }

  tick() {
    this.sectionTick(this.root);
  }

  photoSection() {
    const section = el("section", "drawer-photos");
    section.append(el("h3", "", t("drawer.photos")), el("div", "photos"));
    return section;
  }

  // Photos are the linked events' attachments (grid reports keep theirs under /files/) and any a
  // timeline step carries. Only the hub's own files are shown inline: other URLs are listed, never
  // fetched (a wall makes no request beyond the hub).
  async loadPhotos(ticket) {
    const urls = new Set();
    for (const step of ticket.timeline) {
      for (const photo of step.data?.photos ?? []) urls.add(photo);
    }
    const events = ticket.events.slice(0, MAX_EVENT_LOOKUPS);
    const reads = await Promise.allSettled(
      events.map((event) => this.session.get(`/api/v1/events/${encodeURIComponent(event.id)}`)),
    );
    for (const read of reads) {
      if (read.status === "fulfilled") for (const url of read.value.attachments ?? []) urls.add(url);
    }
    if (this.ticket?.id !== ticket.id) return;
    const box = this.root.querySelector(".photos");
    if (!box) return;
    const own = [...urls].filter((url) => OWN_FILE.test(url));
    const other = [...urls].filter((url) => !OWN_FILE.test(url));
    box.replaceChildren();
    for (const url of own) {
      const link = el("a", "photo");
      link.href = url;
      link.target = "_blank";
      const img = el("img");
      img.src = url;
      img.alt = "";
      img.loading = "lazy";
      link.append(img);
      box.append(link);
    }
    if (other.length) {
      const list = el("ul", "external");
      for (const url of other) list.append(el("li", "", url));
      box.append(el("p", "muted", t("drawer.links")), list);
    }
    if (!urls.size) box.append(el("p", "muted", t("drawer.no_photos")));
  }

  timeline(ticket) {
    const section = el("section", "drawer-timeline");
    section.append(el("h3", "", t("drawer.timeline")));
    const list = el("ol", "timeline");
    for (const step of ticket.timeline) {
      const li = el("li", `step step-${step.action}`);
      const change = step.from_status && step.from_status !== step.to_status
        ? `${t(`status.${step.from_status}`)} → ${t(`status.${step.to_status}`)}`
        : t(`status.${step.to_status}`);
      li.append(
        el("time", "", when(step.at)),
        el("b", "", actionName(step.action)),
        el("span", "muted", `${change} · ${step.actor}`),
      );
      if (step.note) li.append(el("p", "note", step.note));
      list.append(li);
    }
    section.append(list);
    return section;
  }
}
