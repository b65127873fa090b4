// The desk's rows and filters, without the DOM: one row shape for REST tickets and live messages,
// the filters as a query for GET /api/v1/tickets and as a test on a live row, the two orders.

export const OPEN = ["new", "dispatched", "accepted", "in_progress", "resolved", "parked"];
export const STATUSES = [...OPEN, "closed", "rejected"];
export const PRIORITIES = ["critical", "urgent", "normal"];
export const QUICK = ["new", "unlocated", "returned", "overdue", "verify"];
// Statuses where the accepting deadline is the one that matters (the server's BEFORE_ACCEPT).
const BEFORE_ACCEPT = new Set(["new", "dispatched"]);
// Statuses whose clock runs (parked, resolved and finished tickets wait on nobody's deadline).
const RUNNING = new Set(["new", "dispatched", "accepted", "in_progress"]);
export const PAGE = 100; // tickets per REST page

const time = (iso) => (iso ? Date.parse(iso) : null);
const pad = (n) => String(n).padStart(2, "0");

// A local time as "MM-DD HH:mm" (short) or "YYYY-MM-DD HH:mm" — the same in both languages.
export function clock(ms, { year = false } = {}) {
  if (ms === null || Number.isNaN(ms)) return "—";
  const d = new Date(ms);
  const day = `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return year ? `${d.getFullYear()}-${day}` : day;
}

// An ISO-8601 time from the API as "YYYY-MM-DD HH:mm" local, or "—".
export function when(iso) {
  return iso ? clock(Date.parse(iso), { year: true }) : "—";
}

// A ticket from GET /api/v1/tickets (or a detail, or an action's result) as a row.
export function fromRest(t) {
  return {
    id: t.id,
    category: t.category,
    status: t.status,
    priority: t.priority,
    colour: t.colour,
    overdue: t.overdue,
    reports: t.report_count,
    district: t.district?.code ?? null,
    street: t.street?.code ?? null,
    ownerTier: t.owner_tier,
    ownerCode: t.owner_code,
    department: t.department,
    acceptDue: time(t.accept_due_at),
    handleDue: time(t.handle_due_at),
    created: time(t.created_at),
    updated: time(t.updated_at),
    // Only `return` brings a dispatched ticket back to new (and it keeps dispatched_at).
    returned: t.status === "new" && t.dispatched_at != null,
  };
}

// The `data` of a live `tickets` message as a row; `previous` is the row it replaces, if any
// (the message has no dispatched_at: a returned ticket stays returned while it is new).
export function fromLive(d, previous) {
  const action = d.transition?.action;
  return {
    id: d.id,
    category: d.category,
    categoryName: { zh: d.category_name, en: d.category_name_en },
    status: d.status,
    priority: d.priority,
    colour: d.colour,
    overdue: d.overdue,
    reports: d.report_count,
    district: d.district_code ?? null,
    street: d.street_code ?? null,
    ownerTier: d.owner_tier,
    ownerCode: d.owner_code,
    department: d.department,
    acceptDue: time(d.accept_due_at),
    handleDue: time(d.handle_due_at),
    created: time(d.created_at),
    updated: time(d.updated_at),
    returned: d.status === "new" && (action === "return" || Boolean(previous?.returned)),
  };
}

// The deadline that matters now (null: none), and whether its clock runs.
export function dueOf(row) {
  return BEFORE_ACCEPT.has(row.status) ? row.acceptDue : row.handleDue;
}

export function running(row) {
  return RUNNING.has(row.status);
}

// The user's scope ("city", "district:500103", "street:...") as level and code.
export function parseScope(scope) {
  const [level, code] = String(scope || "city").split(":");
  return { level, code: code ?? null };
}

export function defaultFilters() {
  return {
    quick: new Set(),
    mine: true,
    status: "open", // "open", "all" or one status
    category: "",
    priority: "",
    district: "",
    street: "",
    search: "",
    sort: "deadline",
  };
}

// The statuses the filters ask for: [] for any, null when no status can match (e.g. the quick
// "new" chip with the status filter set to closed).
export function statusesOf(f) {
  const base = f.status === "open" ? OPEN : f.status === "all" ? [] : [f.status];
  const quick = [];
  if (f.quick.has("new") || f.quick.has("returned")) quick.push("new");
  if (f.quick.has("verify")) quick.push("resolved");
  if (!quick.length) return base;
  const both = base.length ? quick.filter((s) => base.includes(s)) : quick;
  return both.length ? both : null;
}

// The query for GET /api/v1/tickets, or null when nothing can match.
export function queryOf(f, scope, cursor) {
  const statuses = statusesOf(f);
  if (statuses === null) return null;
  const q = new URLSearchParams({ sort: f.sort, limit: String(PAGE) });
  for (const s of statuses) q.append("status", s);
  if (f.mine) {
    q.set("tier", scope.level);
    if (scope.code) q.set("centre", scope.code);
  }
  if (f.category) q.set("category", f.category);
  if (f.priority) q.set("priority", f.priority);
  if (f.district) q.set("district", f.district);
  if (f.street) q.set("street", f.street);
  if (f.quick.has("unlocated")) q.set("located", "false");
  if (f.quick.has("returned")) q.set("returned", "true");
  if (f.quick.has("overdue")) q.set("overdue", "true");
  if (cursor) q.set("cursor", cursor);
  return q;
}

// Whether a row belongs in the list the filters describe (for rows arriving live).
export function matches(row, f, scope) {
  const statuses = statusesOf(f);
  if (statuses === null || (statuses.length && !statuses.includes(row.status))) return false;
  if (f.mine) {
    if (row.ownerTier !== scope.level) return false;
    if (scope.code && row.ownerCode !== scope.code) return false;
  }
  if (f.category && row.category !== f.category) return false;
  if (f.priority && row.priority !== f.priority) return false;
  if (f.district && row.district !== f.district) return false;
  if (f.street && row.street !== f.street) return false;
  if (f.quick.has("unlocated") && row.street !== null) return false;
  if (f.quick.has("returned") && !row.returned) return false;
  if (f.quick.has("overdue") && !row.overdue) return false;
  return true;
}

// Whether the id search shows a row: a prefix of the id, dashes optional, any case.
export function searched(row, search) {
  const wanted = search.trim().toLowerCase().replaceAll("-", "");
  return !wanted || row.id.replaceAll("-", "").startsWith(wanted);
}

export const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

// A full ticket id as the API writes it (lower case, dashed), from any spelling UUID accepts.
export function canonicalId(text) {
  const hex = text.trim().toLowerCase().replaceAll("-", "");
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
}

// The server's orders: soonest deadline first (none last, then id), or newest first (then id).
export function comparator(sort) {
  if (sort === "created") {
    return (a, b) => b.created - a.created || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
  }
  return (a, b) => {
    const da = dueOf(a);
    const db = dueOf(b);
    if (da !== db) {
      if (da === null) return 1;
      if (db === null) return -1;
      return da - db;
    }
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  };
}

// A duration as the two largest units, e.g. [[2, "h"], [5, "m"]].
export function spans(ms) {
  const s = Math.floor(Math.abs(ms) / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return [[d, "d"], [h, "h"]];
  if (h) return [[h, "h"], [m, "m"]];
  return [[m, "m"], [s % 60, "s"]];
}
