// The dispatcher's desk (/desk): the centre's tickets (open ones by default) in a dense table,
// quick and further filters, sorted by deadline or creation; loaded once over REST, then kept
// current by /ws/live alone (a `resync` reloads over REST); the ticket drawer with the actions
// the server offers; keyboard shortcuts.
import { Session } from "./api.js";
import { LiveStream } from "./live.js";
import { language, onLanguage, setLanguage, t, translate } from "./i18n.js";
import { signIn } from "./signin.js";
import "./desk_phrases.js";
import { DepartmentPicker } from "./desk_actions.js";
import { Drawer } from "./desk_drawer.js";
import {
  PRIORITIES, QUICK, STATUSES, UUID, canonicalId, clock, comparator, defaultFilters, dueOf,
  fromLive, fromRest, matches, parseScope, queryOf, running, searched, spans,
} from "./desk_model.js";

const FLASH_MS = 2_000; // how long a row changed live stays highlighted
const SHORTCUT_ACTIONS = { d: "dispatch", r: "return", v: "verify", c: "comment" };

const session = new Session();
const app = document.getElementById("app");
await signIn(session, app);

const scope = parseScope(session.user.scope);
const filters = defaultFilters();
const categories = new Map(); // code → {zh, en}
const areas = new Map(); // code → {name, level, parent}
const rows = new Map(); // id → row
const trs = new Map(); // id → <tr>
let order = []; // ids in the list's order
let nextCursor = null;
let loading = true; // until the first REST load: live messages wait in `pending`
let pending = []; // live messages that arrived during a REST load
let loads = 0;
let selected = null;

app.innerHTML = `
  <header class="bar">
    <h1 data-i18n="desk.title"></h1>
    <span class="live-state" data-state="connecting"></span>
    <span class="spacer"></span>
    <span class="user"></span>
    <button type="button" class="secondary" id="lang" data-i18n="lang.toggle"></button>
    <button type="button" class="secondary" id="signout" data-i18n="signin.out"></button>
  </header>
  <section class="toolbar">
    <div class="chips" role="group">
      ${QUICK.map((q) => `<button type="button" class="chip" data-quick="${q}" aria-pressed="false" data-i18n="desk.quick.${q}"></button>`).join("")}
    </div>
    <label><span data-i18n="desk.filter.owner"></span> <select id="f-owner"></select></label>
    <label><span data-i18n="desk.filter.status"></span> <select id="f-status"></select></label>
    <label><span data-i18n="desk.filter.category"></span> <select id="f-category"></select></label>
    <label><span data-i18n="desk.filter.priority"></span> <select id="f-priority"></select></label>
    <label class="f-district"><span data-i18n="desk.filter.district"></span> <select id="f-district"></select></label>
    <label class="f-street"><span data-i18n="desk.filter.street"></span> <select id="f-street"></select></label>
    <label><span data-i18n="desk.filter.search"></span>
      <input id="f-search" type="search" autocomplete="off" spellcheck="false" data-i18n-placeholder="desk.filter.search_hint"></label>
    <label><span data-i18n="desk.sort"></span> <select id="f-sort"></select></label>
  </section>
  <p class="help" data-i18n="desk.help"></p>
  <div class="body">
    <div class="list">
      <table class="tickets">
        <thead><tr>
          <th data-i18n="desk.col.id"></th><th data-i18n="desk.col.category"></th>
          <th data-i18n="desk.col.place"></th><th data-i18n="desk.col.status"></th>
          <th data-i18n="desk.col.colour"></th><th data-i18n="desk.col.deadline"></th>
          <th data-i18n="desk.col.left"></th><th class="num" data-i18n="desk.col.reports"></th>
        </tr></thead>
        <tbody></tbody>
      </table>
      <p class="count" role="status"></p>
      <button type="button" class="secondary" id="more" hidden data-i18n="desk.more"></button>
    </div>
    <aside id="drawer" hidden></aside>
  </div>
  <datalist id="desk-merge-targets"></datalist>`;

const $ = (selector) => app.querySelector(selector);
const tbody = $("tbody");
const badge = $(".live-state");

// ---- names -------------------------------------------------------------------------------

function categoryName(code, row) {
  const lang = language() === "en" ? "en" : "zh";
  return row?.categoryName?.[lang] ?? categories.get(code)?.[lang] ?? code;
}

function areaName(code) {
  return areas.get(code)?.name ?? code;
}

function placeOf(row) {
  if (row.street) return areaName(row.street);
  if (row.district) return areaName(row.district);
  return t("desk.unlocated");
}

const names = {
  category: (code) => categoryName(code),
  area: areaName,
  owner: (tier, code) => `${t(`tier.${tier}`)} · ${areaName(code)}`,
};

// ---- filters -----------------------------------------------------------------------------

function fill(select, options) {
  const value = select.value;
  select.replaceChildren(...options.map(([v, label]) => new Option(label, v)));
  if (options.some(([v]) => v === value)) select.value = value;
}

function fillFilters() {
  fill($("#f-owner"), [["mine", t("desk.mine")], ["all", t("desk.all_in_scope")]]);
  fill($("#f-status"), [
    ["open", t("desk.filter.open")], ["all", t("desk.filter.any_status")],
    ...STATUSES.map((s) => [s, t(`status.${s}`)]),
  ]);
  fill($("#f-category"), [
    ["", t("desk.filter.any_category")],
    ...[...categories.keys()].sort().map((code) => [code, `${code} ${categoryName(code)}`]),
  ]);
  fill($("#f-priority"), [["", t("desk.filter.any_priority")], ...PRIORITIES.map((p) => [p, t(`priority.${p}`)])]);
  const districts = [...areas.entries()].filter(([, a]) => a.level === "district");
  fill($("#f-district"), [["", t("desk.filter.any_district")], ...districts.map(([code, a]) => [code, a.name])]);
  const parent = scope.level === "district" ? scope.code : filters.district;
  const streets = parent ? [...areas.entries()].filter(([, a]) => a.level === "street" && a.parent === parent) : [];
  fill($("#f-street"), [["", t("desk.filter.any_street")], ...streets.map(([code, a]) => [code, a.name])]);
  fill($("#f-sort"), [["deadline", t("desk.sort.deadline")], ["created", t("desk.sort.created")]]);
  $(".f-district").hidden = scope.level !== "city";
  $(".f-street").hidden = scope.level === "street" || !parent;
}

function bindFilters() {
  for (const chip of app.querySelectorAll(".chip")) {
    chip.addEventListener("click", () => {
      const q = chip.dataset.quick;
      if (filters.quick.has(q)) filters.quick.delete(q);
      else filters.quick.add(q);
      chip.setAttribute("aria-pressed", String(filters.quick.has(q)));
      reload();
    });
  }
  const on = (id, apply) => $(id).addEventListener("change", (event) => {
    apply(event.target.value);
    reload();
  });
  on("#f-owner", (v) => { filters.mine = v === "mine"; });
  on("#f-status", (v) => { filters.status = v; });
  on("#f-category", (v) => { filters.category = v; });
  on("#f-priority", (v) => { filters.priority = v; });
  on("#f-district", (v) => {
    filters.district = v;
    filters.street = "";
    fillFilters();
  });
  on("#f-street", (v) => { filters.street = v; });
  on("#f-sort", (v) => { filters.sort = v; });
  const search = $("#f-search");
  search.addEventListener("input", () => {
    filters.search = search.value;
    for (const [id, tr] of trs) tr.hidden = !searched(rows.get(id), filters.search);
    showCount();
  });
  search.addEventListener("keydown", (event) => {
    const wanted = search.value.trim();
    if (event.key === "Enter" && UUID.test(wanted)) {
      event.preventDefault();
      openTicket(canonicalId(wanted));
    }
  });
}

// ---- the table ---------------------------------------------------------------------------

function leftText(row, now) {
  const due = dueOf(row);
  if (due === null) return ["—", ""];
  if (!running(row)) return [t("desk.stopped"), "stopped"];
  const parts = spans(due - now).map(([n, unit]) => `${n}${t(`unit.${unit}`)}`);
  const text = parts.join(language() === "en" ? " " : "");
  return due >= now ? [t("due.left", { t: text }), due - now < 3_600_000 ? "soon" : ""] : [t("due.over", { t: text }), "over"];
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function fillRow(tr, row) {
  const status = cell(t(`status.${row.status}`), `status s-${row.status}`);
  if (row.returned) status.append(tag(t("desk.tag.returned"), "returned"));
  if (row.overdue) status.append(tag(t("desk.tag.overdue"), "overdue"));
  const colour = cell("");
  const dot = document.createElement("span");
  dot.className = `dot ${row.colour}`;
  dot.title = t(`colour.${row.colour}`);
  colour.append(dot);
  const [left, leftClass] = leftText(row, Date.now());
  const id = cell(row.id.slice(0, 8), "mono");
  id.title = row.id;
  tr.replaceChildren(
    id, cell(categoryName(row.category, row)), cell(placeOf(row), row.street ? "" : "muted"), status,
    colour, cell(clock(dueOf(row))), cell(left, `left ${leftClass}`), cell(String(row.reports), "num"),
  );
  tr.dataset.id = row.id;
  tr.dataset.status = row.status;
  tr.classList.toggle("selected", row.id === selected);
  tr.hidden = !searched(row, filters.search);
}

function tag(text, kind) {
  const span = document.createElement("span");
  span.className = `tag ${kind}`;
  span.textContent = text;
  return span;
}

function rowElement(row) {
  let tr = trs.get(row.id);
  if (!tr) {
    tr = document.createElement("tr");
    tr.addEventListener("click", () => {
      select(tr.dataset.id);
      openTicket(tr.dataset.id);
    });
    trs.set(row.id, tr);
  }
  fillRow(tr, row);
  return tr;
}

function resetRows(list) {
  rows.clear();
  trs.clear();
  for (const row of list) rows.set(row.id, row);
  order = [...rows.values()].sort(comparator(filters.sort)).map((r) => r.id);
  tbody.replaceChildren(...order.map((id) => rowElement(rows.get(id))));
}

// Where `row` goes in `order` (binary search with the list's comparator).
function positionOf(row) {
  const cmp = comparator(filters.sort);
  let lo = 0;
  let hi = order.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cmp(rows.get(order[mid]), row) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function upsert(row, flash) {
  const at = order.indexOf(row.id);
  if (at >= 0) order.splice(at, 1);
  rows.set(row.id, row);
  const index = positionOf(row);
  order.splice(index, 0, row.id);
  const tr = rowElement(row);
  const next = order[index + 1];
  const before = next ? trs.get(next) : null;
  if (tr.nextSibling !== before || tr.parentNode !== tbody) tbody.insertBefore(tr, before);
  if (flash) {
    tr.classList.remove("flash");
    void tr.offsetWidth; // restart the animation
    tr.classList.add("flash");
    setTimeout(() => tr.classList.remove("flash"), FLASH_MS);
  }
}

function removeRow(id) {
  trs.get(id)?.remove();
  trs.delete(id);
  rows.delete(id);
  order = order.filter((x) => x !== id);
  if (selected === id) selected = null;
}

function showCount() {
  const count = $(".count");
  const shown = order.filter((id) => !trs.get(id)?.hidden).length;
  count.classList.remove("error");
  if (loading && !order.length) count.textContent = t("desk.loading");
  else if (!shown) count.textContent = t("desk.empty");
  else count.textContent = t(nextCursor ? "desk.count_more" : "desk.count", { shown });
  $("#more").hidden = !nextCursor;
}

function tick() {
  const now = Date.now();
  for (const [id, tr] of trs) {
    const row = rows.get(id);
    const left = tr.querySelector("td.left");
    if (!row || !left || tr.hidden) continue;
    const [text, kind] = leftText(row, now);
    if (left.textContent !== text) left.textContent = text;
    left.className = `left ${kind}`;
  }
}

// ---- loading over REST, updates over /ws/live -------------------------------------------

async function reload() {
  await loadPage(null);
}

async function loadPage(cursor) {
  const mine = ++loads;
  loading = true;
  if (!cursor) pending = [];
  showCount();
  const query = queryOf(filters, scope, cursor);
  let failure = null;
  try {
    const page = query === null ? { items: [], next_cursor: null } : await session.get(`/api/v1/tickets?${query}`);
    if (mine !== loads) return;
    const got = page.items.map(fromRest);
    if (cursor) {
      for (const row of got) if (!rows.has(row.id)) upsert(row, false);
    } else {
      resetRows(got);
    }
    nextCursor = page.next_cursor;
  } catch (error) {
    failure = error;
  } finally {
    if (mine === loads) {
      loading = false;
      const waiting = pending;
      pending = [];
      for (const message of waiting) applyLive(message);
    }
  }
  if (mine !== loads) return;
  showCount();
  if (failure) {
    $(".count").textContent = t("desk.failed", { message: failure.message });
    $(".count").classList.add("error");
  }
}

function onLive(message) {
  if (message.stream !== "tickets" || !message.data?.id) return;
  if (loading) pending.push(message);
  else applyLive(message);
}

function applyLive(message) {
  const previous = rows.get(message.data.id);
  const row = fromLive(message.data, previous);
  if (previous && previous.updated > row.updated) return; // older than what the row shows
  if (matches(row, filters, scope)) {
    const last = rows.get(order[order.length - 1]);
    // Beyond the loaded part of a longer list: "load more" will bring it in its place.
    const beyond = !previous && nextCursor && last && comparator(filters.sort)(row, last) > 0;
    if (!beyond) upsert(row, true);
  } else if (previous) {
    if (drawer.id === row.id) upsert(row, true); // the open ticket stays until closed
    else removeRow(row.id);
  }
  showCount();
  drawer.changed(row.id);
}

function onTicket(detail) {
  const row = fromRest(detail);
  const previous = rows.get(row.id);
  if (!previous || previous.updated <= row.updated) {
    if (previous || matches(row, filters, scope)) {
      upsert(row, false);
      showCount();
    }
  }
  const targets = $("#desk-merge-targets");
  targets.replaceChildren(
    ...order
      .filter((id) => id !== detail.id)
      .map((id) => new Option(`${categoryName(rows.get(id).category, rows.get(id))} · ${placeOf(rows.get(id))}`, id)),
  );
}

// ---- selection, drawer, keys -------------------------------------------------------------

const drawer = new Drawer($("#drawer"), {
  session,
  departments: new DepartmentPicker(session),
  names,
  onTicket,
  onClose: () => {
    for (const id of [...rows.keys()]) {
      if (!matches(rows.get(id), filters, scope)) removeRow(id);
    }
    showCount();
  },
});

function select(id) {
  trs.get(selected)?.classList.remove("selected");
  selected = id;
  const tr = trs.get(id);
  tr?.classList.add("selected");
  tr?.scrollIntoView({ block: "nearest" });
}

function move(delta) {
  // Moving through the rows takes the focus off a clicked button, so Enter opens the ticket.
  if (document.activeElement instanceof HTMLButtonElement) document.activeElement.blur();
  const visible = order.filter((id) => !trs.get(id)?.hidden);
  if (!visible.length) return;
  const at = visible.indexOf(selected);
  const next = at < 0 ? (delta > 0 ? 0 : visible.length - 1) : Math.min(visible.length - 1, Math.max(0, at + delta));
  select(visible[next]);
  if (drawer.isOpen && !drawer.form) openTicket(visible[next]);
}

function openTicket(id, options) {
  return drawer.open(id, options);
}

function typing(target) {
  return target instanceof HTMLElement
    && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

function shortcut(action) {
  const preset = action === "verify" ? { passed: "true" } : null;
  if (drawer.isOpen && drawer.id === (selected ?? drawer.id)) {
    drawer.openForm(action, preset);
  } else if (selected) {
    openTicket(selected, { action, preset });
  }
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "Escape") {
    if (drawer.form) drawer.closeForm();
    else if (drawer.isOpen) drawer.close();
    else return;
    event.preventDefault();
    return;
  }
  if (typing(event.target)) return;
  const key = event.key;
  if (key === "j" || key === "ArrowDown") move(1);
  else if (key === "k" || key === "ArrowUp") move(-1);
  else if (key === "Enter") {
    if (event.target instanceof HTMLButtonElement || !selected) return;
    openTicket(selected);
  } else if (SHORTCUT_ACTIONS[key]) shortcut(SHORTCUT_ACTIONS[key]);
  else return;
  event.preventDefault();
});

// ---- start -------------------------------------------------------------------------------

function translatePage() {
  translate(app);
  document.documentElement.lang = language() === "zh" ? "zh-CN" : "en";
  document.title = `cityhub · ${t("desk.title")}`;
  badge.textContent = t(`live.${badge.dataset.state}`);
  fillFilters();
  for (const id of order) fillRow(trs.get(id), rows.get(id));
  showCount();
  drawer.translate();
}

$(".user").textContent = `${session.user.username} · ${session.user.scope}`;
$("#lang").addEventListener("click", () => setLanguage(language() === "zh" ? "en" : "zh"));
$("#signout").addEventListener("click", async () => {
  await session.signOut();
  location.reload();
});
$("#more").addEventListener("click", () => {
  if (nextCursor && !loading) loadPage(nextCursor);
});
onLanguage(translatePage);
bindFilters();

const live = new LiveStream(session, {
  streams: ["tickets"],
  onMessage: onLive,
  onResync: () => reload(),
  onState: (state) => {
    badge.dataset.state = state;
    badge.textContent = t(`live.${state}`);
  },
});
live.start(); // first, so nothing that changes during the REST load is missed
const [catalogue, places] = await Promise.all([
  session.get("/api/v1/categories").catch(() => []),
  session.get("/api/v1/areas").catch(() => []),
]);
for (const c of catalogue) categories.set(c.code, { zh: c.name_zh, en: c.name_en });
for (const a of places) areas.set(a.code, { name: a.name, level: a.level, parent: a.parent });
translatePage();
await reload();
setInterval(tick, 1_000);
