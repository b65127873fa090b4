// The field page's task list, a task's card and the outbox entries, as DOM.
import { t } from "./i18n.js";
import {
  WORKING, categoryName, clock, dueOf, expectedStatus, offered, sortTasks, timeLeft,
} from "./field_model.js";

export function el(tag, className = "", text = "") {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

const WAITING_STATES = new Set(["queued", "sending"]);

// The outbox items of a ticket that have not reached the hub yet, oldest first.
export function waitingOn(items, ticketId) {
  return items.filter(
    (item) => item.kind === "action" && item.ticketId === ticketId && WAITING_STATES.has(item.state),
  );
}

function dueBadge(ticket) {
  const left = timeLeft(dueOf(ticket));
  const badge = el("span", `time-left${left.overdue ? " overdue" : ""}`, left.text);
  return badge;
}

function taskItem(ticket, ctx) {
  const li = el("li", "task");
  li.dataset.ticket = ticket.id;
  li.dataset.status = ticket.status;
  const waiting = waitingOn(ctx.items, ticket.id);
  const status = expectedStatus(ticket, waiting);
  const main = el("div", "task-main");
  const head = el("div", "task-head");
  head.append(
    el("b", "task-category", categoryName(ctx.categories, ticket.category)),
    el("span", "task-status", t(`status.${status}`)),
  );
  const where = el("div", "task-where", ticket.street?.name ?? ticket.district?.name ?? "");
  if (ticket.description) where.append(el("span", "task-desc", ` · ${ticket.description}`));
  main.append(head, where);
  const side = el("div", "task-side");
  if (status === ticket.status && ["dispatched", "accepted", "in_progress"].includes(status)) {
    side.append(dueBadge(ticket));
  } else {
    side.append(el("span", "time-left", clock(ticket.updated_at)));
  }
  if (waiting.length) side.append(el("span", "pending", t("field.waiting", { n: waiting.length })));
  li.append(el("span", `dot ${ticket.colour}`), main, side);
  li.addEventListener("click", () => ctx.open(ticket.id));
  return li;
}

export function renderTasks(working, rest, ctx) {
  const { working: now, rest: done } = sortTasks([...ctx.tasks.values()]);
  working.replaceChildren(...now.map((ticket) => taskItem(ticket, ctx)));
  if (now.length === 0) working.append(el("li", "empty", t("field.none")));
  rest.replaceChildren(...done.slice(0, 30).map((ticket) => taskItem(ticket, ctx)));
  return now.length;
}

// One outbox entry (in a card or in the outbox view).
export function outboxItem(item, ctx) {
  const li = el("li", "outbox-item");
  li.dataset.key = item.id;
  li.dataset.state = item.state;
  li.dataset.kind = item.kind;
  if (item.kind === "action") {
    li.dataset.action = item.body.action;
    li.dataset.ticket = item.ticketId;
  }
  const category = categoryName(
    ctx.categories,
    item.kind === "report" ? item.fields.category : ctx.tasks.get(item.ticketId)?.category ?? "",
  );
  const label =
    item.kind === "report"
      ? t("field.outbox.report", { category })
      : t("field.outbox.action", { action: t(`field.action.${item.body.action}`), category });
  const head = el("div", "outbox-head");
  head.append(
    el("span", "outbox-label", label),
    el("span", `state ${item.state}`, t(`field.state.${item.state}`)),
  );
  li.append(head);
  const meta = el("div", "outbox-meta", clock(new Date(item.createdAt).toISOString()));
  if (item.attempts > 1) meta.append(` · ${t("field.outbox.attempts", { n: item.attempts })}`);
  li.append(meta);
  if (item.reason) li.append(el("div", "reason", item.reason));
  if (item.state === "failed") {
    const buttons = el("div", "outbox-buttons");
    const retry = el("button", "small", t("field.retry"));
    retry.type = "button";
    retry.dataset.retry = item.id;
    retry.addEventListener("click", (event) => {
      event.stopPropagation();
      ctx.outbox.retry(item.id);
    });
    const remove = el("button", "small secondary", t("field.remove"));
    remove.type = "button";
    remove.addEventListener("click", (event) => {
      event.stopPropagation();
      ctx.outbox.remove(item.id);
    });
    buttons.append(retry, remove);
    li.append(buttons);
  }
  return li;
}

// A task's card: the parts that change (facts, buttons, outbox entries, history); the note and
// photo inputs are built once by the page and kept while the user types.
export function renderCard(card, ticket, detail, ctx) {
  const waiting = waitingOn(ctx.items, ticket.id);
  const status = expectedStatus(ticket, waiting);
  card.dataset.ticket = ticket.id;
  card.dataset.status = ticket.status;
  const title = card.querySelector(".card-title");
  title.replaceChildren(
    el("span", `dot ${ticket.colour}`),
    el("span", "", categoryName(ctx.categories, ticket.category)),
  );
  const state = card.querySelector(".card-status");
  state.dataset.status = status;
  state.textContent = t(`status.${status}`);
  const facts = card.querySelector(".facts");
  const rows = [
    ["field.place", [ticket.district?.name, ticket.street?.name].filter(Boolean).join(" ")],
    ["field.deadline", null],
    ["field.department", ticket.department_name ?? ticket.department ?? ""],
    ["field.description", ticket.description],
    ["field.reports", String(ticket.report_count)],
  ];
  facts.replaceChildren();
  for (const [key, value] of rows) {
    const dd = el("dd");
    if (key === "field.deadline") {
      const due = dueOf(ticket);
      if (WORKING.has(ticket.status)) dd.append(dueBadge(ticket), " · ");
      dd.append(due === null ? t("field.due.none") : clock(new Date(due).toISOString()));
    } else {
      dd.textContent = value || "—";
    }
    facts.append(el("dt", "", t(key)), dd);
  }
  const actions = offered(ticket, waiting);
  const buttons = card.querySelector(".actions");
  buttons.replaceChildren(
    ...actions.map((action) => {
      const button = el("button", `action ${action}`, t(`field.action.${action}`));
      button.type = "button";
      button.dataset.action = action;
      button.addEventListener("click", () => ctx.act(ticket, action, button));
      return button;
    }),
  );
  if (actions.length === 0) buttons.append(el("p", "muted", t("field.no_action")));
  card.querySelector(".resolve-form").hidden = !actions.includes("resolve");
  const mine = ctx.items.filter((item) => item.kind === "action" && item.ticketId === ticket.id);
  card.querySelector(".card-outbox").replaceChildren(...mine.map((item) => outboxItem(item, ctx)));
  const history = card.querySelector(".timeline");
  history.replaceChildren(
    ...(detail?.timeline ?? [])
      .slice()
      .reverse()
      .map((entry) => {
        const li = el("li");
        li.dataset.action = entry.action;
        const key = `field.tl.${entry.action}`;
        li.append(
          el("time", "", clock(entry.at)),
          el("span", "tl-action", t(key) === key ? entry.action : t(key)),
          " → ",
          el("span", "tl-status", t(`status.${entry.to_status}`)),
          el("span", "tl-actor", entry.actor),
        );
        if (entry.note) li.append(el("div", "tl-note", entry.note));
        for (const photo of entry.data?.photos ?? []) {
          if (!photo.startsWith("/files/")) continue;
          const img = el("img", "tl-photo");
          img.src = photo;
          img.alt = "";
          img.loading = "lazy";
          li.append(img);
        }
        return li;
      }),
  );
}
