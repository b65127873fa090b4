// What the field page computes from tickets, without the DOM: the deadline that matters now, the
// time left, the order of the task list, and what a crew may do while its actions are queued.
import { language, t } from "./i18n.js";

export const FIELD_ACTIONS = ["accept", "start", "resolve"];
export const WORKING = new Set(["dispatched", "accepted", "in_progress"]);
const BEFORE_ACCEPT = new Set(["new", "dispatched"]);
// What each field action leaves a ticket in, and what a crew may do next from there: the
// server's lifecycle for these three (services/dispatch/lifecycle.py), used only while earlier
// actions wait in the outbox — otherwise the ticket's own `allowed_actions` decide.
const AFTER = { accept: "accepted", start: "in_progress", resolve: "resolved" };
const NEXT = { dispatched: ["accept"], accepted: ["start", "resolve"], in_progress: ["resolve"] };

// The deadline that matters now: accepting before acceptance, else handling.
export function dueOf(ticket) {
  const due = BEFORE_ACCEPT.has(ticket.status) ? ticket.accept_due_at : ticket.handle_due_at;
  return due ? Date.parse(due) : null;
}

// "剩 2小时5分" / "超时 40分" (or English), and whether it is overdue.
export function timeLeft(due, now = Date.now()) {
  if (due === null) return { text: t("field.due.none"), overdue: false };
  const overdue = due < now;
  const minutes = Math.max(1, Math.round(Math.abs(due - now) / 60_000));
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  const mins = minutes % 60;
  const parts = [];
  if (days) parts.push(t("field.unit.d", { n: days }));
  if (hours) parts.push(t("field.unit.h", { n: hours }));
  if (!days && (mins || !hours)) parts.push(t("field.unit.m", { n: mins }));
  const span = parts.join(language() === "zh" ? "" : " ");
  return { text: t(overdue ? "field.due.over" : "field.due.left", { span }), overdue };
}

// Work waiting on the crew first, soonest deadline first (none last); then the rest, latest
// change first.
export function sortTasks(tickets) {
  const working = tickets.filter((ticket) => WORKING.has(ticket.status));
  const rest = tickets.filter((ticket) => !WORKING.has(ticket.status));
  working.sort((a, b) => {
    const da = dueOf(a) ?? Infinity;
    const db = dueOf(b) ?? Infinity;
    return da - db || (a.created_at < b.created_at ? -1 : 1);
  });
  rest.sort((a, b) => (a.updated_at < b.updated_at ? 1 : -1));
  return { working, rest };
}

// The field actions the crew may take now: the ticket's `allowed_actions` as the hub sent them,
// or — while actions on it wait in the outbox — what the lifecycle allows after those.
export function offered(ticket, waiting) {
  if (waiting.length === 0) {
    return FIELD_ACTIONS.filter((action) => ticket.allowed_actions?.includes(action));
  }
  let status = ticket.status;
  for (const item of waiting) status = AFTER[item.body.action] ?? status;
  return NEXT[status] ?? [];
}

// The status the ticket will have once its waiting actions are sent.
export function expectedStatus(ticket, waiting) {
  let status = ticket.status;
  for (const item of waiting) status = AFTER[item.body.action] ?? status;
  return status;
}

export function categoryName(categories, code) {
  const category = categories.get(code);
  if (!category) return code;
  return language() === "en" ? category.name_en : category.name_zh;
}

// A short local time: "14:05", or "12-03 14:05" on another day.
export function clock(iso) {
  const when = new Date(iso);
  const hm = when.toLocaleTimeString(language() === "zh" ? "zh-CN" : "en-GB", {
    hour: "2-digit",
    minute: "2-digit",
  });
  if (when.toDateString() === new Date().toDateString()) return hm;
  const md = `${String(when.getMonth() + 1).padStart(2, "0")}-${String(when.getDate()).padStart(2, "0")}`;
  return `${md} ${hm}`;
}
