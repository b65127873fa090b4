// The field page (/field) for street crews on their phones: sign in once (the session keeps its
// refresh token), my tasks by deadline with the time left and the warning colour, a task's card
// with the actions the hub allows (签收, 开始处置, 处置完成 with a note and photos), "report a
// problem" with the phone's position, and an outbox that holds every action and report until
// the hub has it (field_queue.js). Kept current by /ws/live; installable (manifest, service
// worker) and usable offline with the tasks as last synced.
import { ApiError, Session } from "./api.js";
import { LiveStream } from "./live.js";
import { setLanguage, language, onLanguage, t, translate } from "./i18n.js";
import { signIn } from "./signin.js";
import "./field_phrases.js";
import { Outbox } from "./field_queue.js";
import { previewPhotos, preparePhotos } from "./field_photos.js";
import { ReportForm } from "./field_report.js";
import { outboxItem, renderCard, renderTasks } from "./field_tasks.js";

const RELOAD_DEBOUNCE_MS = 400; // live messages come in bursts: one REST load per burst
const REFRESH_MS = 60_000; // a REST load now and then, in case a live message was missed
const TICK_MS = 30_000; // time left is redrawn this often
const CATEGORIES = "cityhub.field.categories";
const TASKS = "cityhub.field.tasks:";

const session = new Session();
const app = document.getElementById("app");
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/field-sw.js", { scope: "/field" }).catch(() => undefined);
}
await signIn(session, app);
session.onChange((state) => {
  if (state === null) location.reload(); // signed out (or the sign-in ended): the form again
});

app.innerHTML = `
  <header class="fbar">
    <h1 data-i18n="field.title"></h1>
    <span class="live-state" data-state="connecting"></span>
    <span class="net" data-i18n="field.offline" hidden></span>
    <span class="spacer"></span>
    <button type="button" class="secondary small" id="lang" data-i18n="lang.toggle"></button>
    <button type="button" class="secondary small" id="signout" data-i18n="signin.out"></button>
  </header>
  <div class="who"></div>
  <div class="views">
    <section class="view" id="view-tasks">
      <p class="banner" hidden></p>
      <ul class="tasks" id="tasks"><li class="empty" data-i18n="field.loading"></li></ul>
      <h2 class="done-title" data-i18n="field.done"></h2>
      <ul class="tasks done" id="done"></ul>
    </section>
    <section class="view card" id="view-card" hidden>
      <button type="button" class="secondary small back" data-i18n="field.back"></button>
      <h2 class="card-title"></h2>
      <p class="card-status"></p>
      <dl class="facts"></dl>
      <div class="resolve-form" hidden>
        <label><span data-i18n="field.note"></span>
          <textarea name="note" rows="3" maxlength="4000" data-i18n-placeholder="field.note_hint"></textarea></label>
        <label><span data-i18n="field.photos"></span>
          <input type="file" name="photo" accept="image/*" capture="environment" multiple></label>
        <div class="previews"></div>
      </div>
      <div class="actions"></div>
      <ul class="outbox card-outbox"></ul>
      <h3 data-i18n="field.timeline"></h3>
      <ol class="timeline"></ol>
    </section>
    <section class="view" id="view-report" hidden>
      <form class="report" autocomplete="off">
        <h2 data-i18n="field.report.title"></h2>
        <label><span data-i18n="field.report.category"></span>
          <select name="category" required></select></label>
        <label><span data-i18n="field.report.description"></span>
          <textarea name="description" rows="3" maxlength="4000" data-i18n-placeholder="field.report.description_hint"></textarea></label>
        <div class="where"><span data-i18n="field.report.where"></span>
          <span class="position"></span>
          <button type="button" class="secondary small locate" data-i18n="field.report.locate"></button></div>
        <label><span data-i18n="field.report.photos"></span>
          <input type="file" name="photos" accept="image/*" capture="environment" multiple></label>
        <div class="previews"></div>
        <p class="message"></p>
        <button type="submit" data-i18n="field.report.submit"></button>
      </form>
    </section>
    <section class="view" id="view-outbox" hidden>
      <ul class="outbox" id="outbox"></ul>
      <button type="button" class="secondary small" id="clear-sent" data-i18n="field.clear_sent"></button>
    </section>
  </div>
  <nav class="tabs">
    <button type="button" data-tab="tasks"><span data-i18n="field.tab.tasks"></span><b class="badge" id="n-tasks"></b></button>
    <button type="button" data-tab="report"><span data-i18n="field.tab.report"></span></button>
    <button type="button" data-tab="outbox"><span data-i18n="field.tab.outbox"></span><b class="badge" id="n-outbox"></b></button>
  </nav>`;
translate(app);
document.body.classList.add("field");

const $ = (selector) => app.querySelector(selector);
const card = $("#view-card");
const note = card.querySelector("textarea[name=note]");
const photoInput = card.querySelector("input[name=photo]");
const livePill = $(".live-state");
livePill.textContent = t("live.connecting");
const banner = $(".banner");

const categories = new Map(JSON.parse(localStorage.getItem(CATEGORIES) || "[]").map((c) => [c.code, c]));
const tasks = new Map(); // id → TicketRead
const details = new Map(); // id → TicketDetail (for the card's history)
const departments = new Set(); // the crew's department(s), learnt from its tasks
let items = []; // this user's outbox items
let syncedAt = null;
let reloadTimer = null;

const outbox = new Outbox(session, {
  onChange(list) {
    items = list;
    render();
  },
  onSent(item) {
    if (item.kind === "action") details.delete(item.ticketId);
    reloadSoon();
  },
});
const ctx = {
  get tasks() {
    return tasks;
  },
  get items() {
    return items;
  },
  categories,
  outbox,
  open: (id) => {
    location.hash = `#/task/${id}`;
  },
  act,
};
const report = new ReportForm($("form.report"), { outbox, categories });

function who() {
  const named = [...tasks.values()].find((task) => departments.has(task.department));
  const where = named?.department_name ?? session.user.scope;
  $(".who").textContent = `${session.user.username} · ${where}`;
}

function setNet() {
  $(".net").hidden = navigator.onLine;
}

// The page's state into the DOM (cheap: a crew has tens of tasks, not thousands).
function render() {
  const working = renderTasks($("#tasks"), $("#done"), ctx);
  $("#n-tasks").textContent = working ? String(working) : "";
  const open = items.filter((i) => i.state !== "sent").length;
  $("#n-outbox").textContent = open ? String(open) : "";
  const list = $("#outbox");
  list.replaceChildren(...items.slice().reverse().map((item) => outboxItem(item, ctx)));
  if (items.length === 0) {
    const empty = document.createElement("li");
    empty.className = "empty";
    empty.textContent = t("field.outbox.none");
    list.append(empty);
  }
  const id = currentTask();
  if (id && tasks.has(id)) renderCard(card, tasks.get(id), details.get(id), ctx);
  if (syncedAt && !navigator.onLine) {
    banner.hidden = false;
    banner.textContent = t("field.cached", { at: new Date(syncedAt).toLocaleString() });
  }
  who();
}

function remember() {
  const cached = { at: syncedAt, tasks: [...tasks.values()] };
  localStorage.setItem(TASKS + session.user.username, JSON.stringify(cached));
}

function restore() {
  const cached = JSON.parse(localStorage.getItem(TASKS + session.user.username) || "null");
  if (!cached) return;
  syncedAt = cached.at;
  for (const task of cached.tasks) {
    tasks.set(task.id, task);
    if (task.department) departments.add(task.department);
  }
}

async function loadCategories() {
  const list = await session.get("/api/v1/categories");
  categories.clear();
  for (const category of list) categories.set(category.code, category);
  localStorage.setItem(CATEGORIES, JSON.stringify(list));
  report.fill();
}

async function loadTasks() {
  try {
    const list = await session.get("/api/v1/tasks/mine?limit=200");
    tasks.clear();
    for (const task of list) {
      tasks.set(task.id, task);
      if (task.department) departments.add(task.department);
    }
    syncedAt = Date.now();
    banner.hidden = true;
    remember();
  } catch (error) {
    banner.hidden = false;
    banner.textContent =
      error instanceof ApiError
        ? t("field.load_failed", { reason: error.message })
        : t("field.cached", { at: syncedAt ? new Date(syncedAt).toLocaleString() : "—" });
  }
  const id = currentTask();
  if (id) await loadDetail(id);
  render();
}

async function loadDetail(id) {
  try {
    const detail = await session.get(`/api/v1/tickets/${id}`);
    details.set(id, detail);
    if (!tasks.has(id)) tasks.set(id, detail);
  } catch {
    /* offline or gone: the card shows what the list has */
  }
}

function reloadSoon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(loadTasks, RELOAD_DEBOUNCE_MS);
}

// Queue one action (with the note and photos for 处置完成); the outbox sends it when it can.
async function act(ticket, action, button) {
  for (const b of card.querySelectorAll(".actions button")) b.disabled = true;
  try {
    const body = { action };
    let photos = [];
    if (action === "resolve") {
      body.note = note.value.trim();
      photos = await preparePhotos(photoInput);
    }
    await outbox.addAction(ticket.id, body, photos);
    if (action === "resolve") {
      note.value = "";
      photoInput.value = "";
      previewPhotos(photoInput, card.querySelector(".previews"));
    }
  } finally {
    if (button.isConnected) button.disabled = false;
    render();
  }
}

// Views by URL hash, so a phone's back button leaves a card.
function currentTask() {
  const match = location.hash.match(/^#\/task\/([0-9a-f-]{36})$/);
  return match ? match[1] : null;
}

function show() {
  const id = currentTask();
  const view = id ? "card" : (location.hash.match(/^#\/(report|outbox)$/)?.[1] ?? "tasks");
  for (const section of app.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  for (const tab of app.querySelectorAll(".tabs button")) {
    tab.classList.toggle("on", tab.dataset.tab === view || (view === "card" && tab.dataset.tab === "tasks"));
  }
  if (view === "report") report.shown();
  if (id) {
    if (tasks.has(id)) renderCard(card, tasks.get(id), details.get(id), ctx);
    loadDetail(id).then(render);
  }
  window.scrollTo(0, 0);
}

window.addEventListener("hashchange", show);
for (const tab of app.querySelectorAll(".tabs button")) {
  tab.addEventListener("click", () => {
    location.hash = tab.dataset.tab === "tasks" ? "#/" : `#/${tab.dataset.tab}`;
  });
}
card.querySelector(".back").addEventListener("click", () => {
  location.hash = "#/";
});
photoInput.addEventListener("change", () => previewPhotos(photoInput, card.querySelector(".previews")));
$("#clear-sent").addEventListener("click", () => outbox.clearSent());
$("#lang").addEventListener("click", () => setLanguage(language() === "zh" ? "en" : "zh"));
$("#signout").addEventListener("click", async () => {
  await session.signOut();
});
onLanguage(() => {
  livePill.textContent = t(`live.${livePill.dataset.state}`);
  report.fill();
  render();
});
window.addEventListener("online", () => {
  setNet();
  loadTasks();
});
window.addEventListener("offline", () => {
  setNet();
  render();
});

const live = new LiveStream(session, {
  streams: ["tickets"],
  onMessage(message) {
    if (message.stream !== "tickets") return;
    const data = message.data;
    // The crew's own tickets; before its department is known, any ticket in its scope.
    if (tasks.has(data.id) || departments.size === 0 || departments.has(data.department)) {
      reloadSoon();
    }
  },
  onResync: () => loadTasks(),
  onState(state) {
    livePill.dataset.state = state;
    livePill.textContent = t(`live.${state}`);
    if (state === "live") reloadSoon(); // back after a drop: what changed meanwhile
  },
});

restore();
setNet();
report.fill();
show();
render();
await outbox.open();
live.start();
loadCategories().catch(() => undefined);
await loadTasks();
setInterval(loadTasks, REFRESH_MS);
setInterval(render, TICK_MS);
document.body.dataset.ready = "true";
