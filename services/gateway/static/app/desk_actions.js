// One form per lifecycle action: the fields each action's body needs (services/dispatch/schemas.py
// ActionRequest), a department picker limited to the departments serving the ticket's area, and
// the server's refusal (409/422/...) shown in words inside the form.
import { t } from "./i18n.js";
import { when } from "./desk_model.js";

// The fields of each action's form, in order; a trailing "!" marks a required one.
const FIELDS = {
  dispatch: ["department!", "note"],
  reassign: ["department!", "note"],
  return: ["reason!"],
  park: ["reason!"],
  reject: ["reason!"],
  escalate: ["note"],
  defer: ["until!", "note"],
  verify: ["passed!", "note"],
  merge: ["into!", "note"],
  split: ["event_ids!", "note"],
  comment: ["note!"],
  callback: ["score!", "note"],
};
const DEFAULT_FIELDS = ["note"]; // accept, start, resolve: a note is all they take here

const HOUR_MS = 3_600_000;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value == null) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children);
  return node;
}

function labelled(key, control) {
  return el("label", { class: "field" }, el("span", { text: t(key) }), control);
}

// A local "YYYY-MM-DDTHH:mm" for <input type=datetime-local>.
function localInput(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// Departments that serve a place (the server's Directory.serving): its street office, its
// district's bureaus, the city bureaus — fetched once per place.
export class DepartmentPicker {
  constructor(session) {
    this.session = session;
    this.cache = new Map();
  }

  serving(district, street) {
    const key = `${district ?? ""}/${street ?? ""}`;
    if (!this.cache.has(key)) {
      const get = (query) => this.session.get(`/api/v1/departments?${query}`);
      const asked = [
        street ? get(`area=${encodeURIComponent(street)}`) : Promise.resolve([]),
        district ? get(`area=${encodeURIComponent(district)}`) : Promise.resolve([]),
        get("level=city"),
      ];
      const found = Promise.all(asked).then(([s, d, c]) => ({
        street: s.filter((x) => x.group !== "dispatch"),
        district: d.filter((x) => x.group !== "dispatch" && x.level === "district"),
        city: c.filter((x) => x.group !== "dispatch"),
      }));
      found.catch(() => this.cache.delete(key)); // a failed fetch is tried again next time
      this.cache.set(key, found);
    }
    return this.cache.get(key);
  }

  // A <select> filled once the departments arrive; the ticket's suggested one preselected.
  select(ticket, { exclude } = {}) {
    const select = el("select", { name: "department", required: true, "data-loading": "" });
    select.append(el("option", { value: "", text: t("form.loading_departments") }));
    this.serving(ticket.district?.code, ticket.street?.code).then(
      (groups) => {
        select.replaceChildren(el("option", { value: "", text: t("form.pick") }));
        for (const level of ["street", "district", "city"]) {
          const items = groups[level].filter((d) => d.code !== exclude);
          if (!items.length) continue;
          const group = el("optgroup", { label: t(`form.group.${level}`) });
          for (const d of items) group.append(el("option", { value: d.code, text: `${d.name} (${d.code})` }));
          select.append(group);
        }
        const suggested = ticket.department;
        if (suggested && suggested !== exclude && select.querySelector(`option[value="${CSS.escape(suggested)}"]`)) {
          select.value = suggested;
        }
        select.removeAttribute("data-loading");
      },
      (error) => {
        select.replaceChildren(el("option", { value: "", text: error.message }));
        select.removeAttribute("data-loading");
      },
    );
    return select;
  }
}

function control(field, ticket, ctx) {
  switch (field) {
    case "department":
      return labelled(
        "form.department",
        ctx.departments.select(ticket, { exclude: ctx.action === "reassign" ? ticket.department : null }),
      );
    case "reason":
      return labelled("form.reason", el("textarea", { name: "reason", rows: "2", maxlength: "4000", required: true }));
    case "note":
      return labelled("form.note", el("textarea", { name: "note", rows: "2", maxlength: "4000", required: ctx.required }));
    case "until": {
      const from = Math.max(Date.parse(ticket.handle_due_at ?? "") || 0, Date.now());
      return labelled("form.until", el("input", { type: "datetime-local", name: "until", required: true, value: localInput(from + 24 * HOUR_MS) }));
    }
    case "passed": {
      const box = el("fieldset", { class: "choice" }, el("legend", { text: t("form.result") }));
      for (const [value, key] of [["true", "form.pass"], ["false", "form.fail"]]) {
        box.append(el("label", {}, el("input", { type: "radio", name: "passed", value, required: true, checked: ctx.preset?.passed === value }), t(key)));
      }
      return box;
    }
    case "into": {
      const input = el("input", { name: "into", required: true, list: "desk-merge-targets", autocomplete: "off", spellcheck: "false", size: "38" });
      return labelled("form.into", input);
    }
    case "event_ids": {
      const box = el("fieldset", { class: "choice" }, el("legend", { text: t("form.events") }));
      for (const e of ticket.events) {
        box.append(el("label", {}, el("input", { type: "checkbox", name: "event_ids", value: e.id }),
          `${e.id.slice(0, 8)} · ${t(`source.${e.source}`)} · ${when(e.reported_at)}`));
      }
      return box;
    }
    case "score": {
      const select = el("select", { name: "score", required: true }, el("option", { value: "", text: t("form.pick") }));
      for (const n of [5, 4, 3, 2, 1]) select.append(el("option", { value: String(n), text: String(n) }));
      return labelled("form.score", select);
    }
    default:
      throw new Error(`no control for ${field}`);
  }
}

// The action's body from its form's values.
function bodyOf(action, form) {
  const data = new FormData(form);
  const body = { action };
  for (const [name, value] of data.entries()) {
    if (name === "event_ids") continue;
    const text = String(value).trim();
    if (!text) continue;
    if (name === "passed") body.passed = text === "true";
    else if (name === "score") body.score = Number(text);
    else if (name === "until") body.until = new Date(text).toISOString();
    else body[name] = text;
  }
  if (FIELDS[action]?.includes("event_ids!")) body.event_ids = data.getAll("event_ids").map(String);
  return body;
}

// A form for `action` on `ticket` (a TicketDetail). ctx: { departments: DepartmentPicker,
// preset: {passed}, submit(body) → Promise (rejects with an ApiError), cancel() }.
export function actionForm(action, ticket, ctx) {
  const form = el("form", { class: "action-form", "data-action": action });
  form.append(el("h3", { text: t(`desk.action.${action}`) }));
  const stale = el("p", { class: "stale", hidden: true, text: t("form.stale") });
  form.append(stale);
  for (const spec of FIELDS[action] ?? DEFAULT_FIELDS) {
    const field = spec.replace("!", "");
    form.append(control(field, ticket, { ...ctx, action, required: spec.endsWith("!") }));
  }
  const error = el("p", { class: "error", role: "alert" });
  const submit = el("button", { type: "submit", text: t("form.submit") });
  const cancel = el("button", { type: "button", class: "secondary", text: t("form.cancel") });
  form.append(error, el("div", { class: "buttons" }, submit, cancel));
  cancel.addEventListener("click", () => ctx.cancel());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    submit.textContent = t("form.sending");
    try {
      await ctx.submit(bodyOf(action, form));
    } catch (failure) {
      const key = [403, 404, 409, 422].includes(failure.status) ? `error.${failure.status}` : "error.other";
      error.textContent = t(key) + failure.message;
      error.dataset.status = String(failure.status ?? "");
    } finally {
      submit.disabled = false;
      submit.textContent = t("form.submit");
    }
  });
  // Mark the form when the ticket changed under it (the server still decides on submit).
  form.markStale = () => {
    stale.hidden = false;
  };
  return form;
}

// The first control to focus when a form opens.
export function firstControl(form) {
  return form.querySelector("select, textarea, input:not([type=radio]):not([type=checkbox])")
    ?? form.querySelector("input, button[type=submit]");
}
