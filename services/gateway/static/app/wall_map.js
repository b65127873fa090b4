// The wall's map: the hub's own area outlines (no tile layer: nothing leaves the hub), each area
// shaded by its backlog or overdue count, and the open tickets as dots in their warning colour.
// Colours are CSS classes (wall.css), so the dark and light themes restyle them without redrawing.
/* global L */
import { count, el } from "./wall_phrases.js";
import { t } from "./i18n.js";

const BUCKETS = 5; // shades above "none"
const MAX_MARKERS = 1500; // dots kept on the map; the oldest go first beyond this
const COLOURS = ["red", "orange", "yellow", "blue", "green"];

// Shade 0 for nothing, 1..BUCKETS on a square-root scale of the largest value in view (a few
// busy areas would otherwise leave every other area in the palest shade).
export function bucket(value, max) {
  if (!value || !max) return 0;
  return Math.min(BUCKETS, Math.max(1, Math.ceil(BUCKETS * Math.sqrt(value / max))));
}

export class WallMap {
  constructor(container, { onArea, onTicket }) {
    this.onArea = onArea;
    this.onTicket = onTicket;
    this.map = L.map(container, {
      zoomControl: false, attributionControl: false, zoomSnap: 0.1, zoomDelta: 0.5,
      minZoom: 4, maxZoom: 17, boxZoom: false,
    });
    this.map.setView([29.56, 106.55], 8);
    // Areas, then their names, then the ticket dots on top (own panes, so a name never hides a dot).
    this.map.createPane("labels").style.zIndex = "450";
    this.map.createPane("tickets").style.zIndex = "500";
    this.renderer = L.svg({ padding: 0.5 });
    this.dotRenderer = L.svg({ padding: 0.5, pane: "tickets" });
    this.areaLayer = L.geoJSON(null, {
      renderer: this.renderer,
      style: () => ({ className: "area b0", weight: 1.2 }),
      onEachFeature: (feature, layer) => this.bindArea(feature, layer),
    }).addTo(this.map);
    this.labelLayer = L.layerGroup().addTo(this.map);
    this.labels = new Map(); // area code -> its name's element
    this.markerLayer = L.layerGroup().addTo(this.map);
    this.markers = new Map(); // ticket id -> {marker, ticket}
    this.figures = new Map(); // area code -> ranking row
    this.metric = "backlog";
    this.drillable = true;
    this.legend = el("div", "map-legend");
    container.append(this.legend);
    this.map.on("zoomend", () => this.fitLabels());
  }

  // Names go only on areas wide enough to hold them (the central districts are small at city
  // scale); the ranking list and the tooltip on hover name the others.
  fitLabels() {
    const size = parseFloat(getComputedStyle(this.container()).fontSize) || 16;
    this.areaLayer.eachLayer((layer) => {
      const label = this.labels.get(layer.feature.properties.code);
      if (!label) return;
      const bounds = layer.getBounds();
      const west = this.map.latLngToContainerPoint(bounds.getSouthWest());
      const east = this.map.latLngToContainerPoint(bounds.getNorthEast());
      const wide = Math.abs(east.x - west.x);
      const tall = Math.abs(east.y - west.y);
      const needed = layer.feature.properties.name.length * size * 0.8;
      label.classList.toggle("squeezed", wide < needed || tall < size * 1.6);
    });
  }

  bindArea(feature, layer) {
    const { code } = feature.properties;
    layer.on("click", () => {
      if (this.drillable) this.onArea(code, name);
    });
    layer.on("mouseover", () => this.highlight(code, true));
    layer.on("mouseout", () => this.highlight(code, false));
    layer.on("add", () => {
      const path = layer.getElement();
      path.dataset.area = code;
      path.classList.toggle("drillable", this.drillable);
    });
  }

  /** Outline an area and show its name (hovered here or in the ranking list). */
  highlight(code, on) {
    this.areaLayer.eachLayer((layer) => {
      if (layer.feature.properties.code !== code) return;
      layer.getElement()?.classList.toggle("hover", on);
      this.labels.get(code)?.classList.toggle("shown", on);
    });
  }

  /** Draw the areas of a view (a GeoJSON FeatureCollection) and fit the map to them. */
  showAreas(collection, { drillable }) {
    this.drillable = drillable;
    this.areaLayer.clearLayers();
    this.labelLayer.clearLayers();
    this.labels.clear();
    this.areaLayer.addData(collection);
    const bounds = this.areaLayer.getBounds();
    if (bounds.isValid()) this.map.fitBounds(bounds, { padding: [24, 24], animate: false });
    // Names as plain positioned elements centred by CSS: nothing is measured while drawing.
    this.areaLayer.eachLayer((layer) => {
      const { code, name } = layer.feature.properties;
      const label = el("div", "area-label");
      label.append(el("span", "", name));
      this.labels.set(code, label);
      const icon = L.divIcon({ html: label, className: "area-label-anchor", iconSize: null });
      L.marker(layer.getCenter(), { icon, pane: "labels", interactive: false, keyboard: false })
        .addTo(this.labelLayer);
    });
    this.container().dataset.areas = String(collection.features.length);
    this.recolour();
    this.fitLabels();
  }

  container() {
    return this.map.getContainer();
  }

  /** The figures (ranking rows by code) that shade the areas. */
  setFigures(rows) {
    this.figures = new Map(rows.map((row) => [row.code, row]));
    this.recolour();
  }

  setMetric(metric) {
    this.metric = metric;
    this.recolour();
  }

  recolour() {
    const values = [...this.figures.values()].map((row) => row[this.metric] ?? 0);
    const max = Math.max(0, ...values);
    this.areaLayer.eachLayer((layer) => {
      const path = layer.getElement();
      if (!path) return;
      const row = this.figures.get(layer.feature.properties.code);
      const shade = bucket(row?.[this.metric] ?? 0, max);
      for (let i = 0; i <= BUCKETS; i++) path.classList.toggle(`b${i}`, i === shade);
      path.classList.toggle(this.metric === "overdue" ? "by-overdue" : "by-backlog", true);
      path.classList.toggle(this.metric === "overdue" ? "by-backlog" : "by-overdue", false);
    });
    this.drawLegend(max);
  }

  drawLegend(max) {
    this.legend.replaceChildren(el("div", "legend-title", t(`wall.metric.${this.metric}`)));
    const scale = el("div", `legend-scale by-${this.metric}`);
    // The smallest whole value of each shade; shades no whole value reaches are left out.
    const lows = [0];
    for (let i = 1; i <= BUCKETS; i++) lows.push(Math.floor(max * ((i - 1) / BUCKETS) ** 2) + 1);
    for (let i = 0; i <= BUCKETS; i++) {
      if (i > 0 && (lows[i] > max || (i < BUCKETS && lows[i + 1] <= lows[i]))) continue;
      const step = el("span", `legend-step b${i}`);
      step.append(el("i", "swatch"), el("b", "", i === 0 ? "0" : `≥${count(lows[i])}`));
      scale.append(step);
    }
    this.legend.append(scale);
  }

  /** Add or move a ticket's dot (open tickets only; a closed one is removed). */
  upsertTicket(ticket) {
    const found = this.markers.get(ticket.id);
    if (!ticket.open || !ticket.location) {
      if (found) this.removeTicket(ticket.id);
      return;
    }
    const at = [ticket.location.lat, ticket.location.lon];
    if (found) {
      found.marker.setLatLng(at);
      found.ticket = ticket;
      this.paint(found.marker, ticket, false);
      return;
    }
    const marker = L.circleMarker(at, {
      renderer: this.dotRenderer, radius: 7, weight: 2, className: "ticket-marker",
      bubblingMouseEvents: false,
    });
    marker.on("click", () => this.onTicket(ticket.id));
    marker.addTo(this.markerLayer);
    this.markers.set(ticket.id, { marker, ticket });
    this.paint(marker, ticket, true);
    if (this.markers.size > MAX_MARKERS) this.evict();
  }

  paint(marker, ticket, fresh) {
    const path = marker.getElement();
    if (!path) return;
    path.dataset.ticket = ticket.id;
    path.dataset.street = ticket.street_code ?? "";
    path.dataset.district = ticket.district_code ?? "";
    path.dataset.colour = ticket.colour;
    for (const colour of COLOURS) path.classList.toggle(`c-${colour}`, colour === ticket.colour);
    if (fresh && ticket.live) {
      path.classList.add("fresh");
      path.addEventListener("animationend", () => path.classList.remove("fresh"), { once: true });
    }
  }

  evict() {
    const oldest = [...this.markers.values()].sort((a, b) =>
      a.ticket.updated_at < b.ticket.updated_at ? -1 : 1);
    for (const { ticket } of oldest.slice(0, this.markers.size - MAX_MARKERS)) {
      this.removeTicket(ticket.id);
    }
  }

  removeTicket(id) {
    const found = this.markers.get(id);
    if (!found) return;
    this.markerLayer.removeLayer(found.marker);
    this.markers.delete(id);
  }

  clearTickets() {
    this.markerLayer.clearLayers();
    this.markers.clear();
  }

  ticket(id) {
    return this.markers.get(id)?.ticket;
  }

  /** Centre on a ticket and ring its dot (the drawer's "location on the map"). */
  focusTicket(id) {
    for (const { marker } of this.markers.values()) {
      marker.getElement()?.classList.remove("focused");
    }
    const found = this.markers.get(id);
    if (!found) return;
    found.marker.getElement()?.classList.add("focused");
    found.marker.bringToFront();
    const at = found.marker.getLatLng();
    if (!this.map.getBounds().pad(-0.1).contains(at)) this.map.panTo(at, { animate: true });
  }

  unfocus() {
    for (const { marker } of this.markers.values()) {
      marker.getElement()?.classList.remove("focused");
    }
  }

  resize() {
    this.map.invalidateSize({ animate: false });
  }
}
