// The ticket drawer: a ticket's detail and timeline, a button for each action the server offers
// the signed-in user on it (`allowed_actions`, never more), and the open action's form. The
// detail is reloaded after every action and whenever the ticket changes live; an open form is
// kept through a reload (the user may be half-way through it).
import { t } from "./i18n.js";
import { actionForm, firstControl } from "./desk_actions.js";
import { when } from "./desk_model.js";

const SHORTCUT = { dispatch: "d", return: "r", verify: "v", comment: "c" };

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

export class Drawer {
  // root: the <aside>; ctx: { session, departments (DepartmentPicker), names: {category(code),
  // area(code), owner(tier, code)}, onTicket(detail) after each load or action, onClose() }
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.detail = null;
    this.id = null;
    this.form = null;
    this.queued = null; // a form asked for while the detail was still loading
    this.loads = 0;
    root.innerHTML = `
      <header><h2 class="title"></h2>
        <button type="button" class="secondary close" data-i18n="drawer.close"></button></header>
      <p class="notice" role="status"></p>
      <dl class="facts"></dl>
      <section class="actions"><h3 data-i18n="drawer.actions"></h3><div class="buttons"></div></section>
      <section class="form-host"></section>
      <section class="events"><h3 data-i18n="drawer.events"></h3><ul></ul></section>
      <section class="timeline"><h3 data-i18n="drawer.timeline"></h3><ol></ol></section>`;
    this.part = (selector) => root.querySelector(selector);
    this.part(".close").addEventListener("click", () => this.close());
    this.translate();
  }

  translate() {
    for (const node of this.root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    if (this.detail) this.render(this.detail);
  }

  get isOpen() {
    return !this.root.hidden;
  }

  // Show ticket `id`; then open the form of `action` when the ticket offers it.
  async open(id, { action = null, preset = null } = {}) {
    if (this.id !== id) {
      this.closeForm();
      this.queued = null;
      this.detail = null;
      this.part(".title").textContent = id.slice(0, 8);
      this.part(".facts").replaceChildren();
      this.part(".actions .buttons").replaceChildren();
    }
    this.id = id;
    this.root.hidden = false;
    this.root.dataset.id = id;
    this.notice("");
    if (action) this.queued = { action, preset };
    await this.load();
  }

  // Reload the detail (keeping an open form); false when it could not be loaded.
  async load() {
    const id = this.id;
    const mine = ++this.loads;
    try {
      const detail = await this.ctx.session.get(`/api/v1/tickets/${id}`);
      if (mine !== this.loads || id !== this.id) return false;
      this.show(detail);
      return true;
    } catch (error) {
      if (mine === this.loads) this.notice(t("desk.failed", { message: error.message }), true);
      return false;
    }
  }

  show(detail) {
    this.detail = detail;
    this.render(detail);
    this.ctx.onTicket(detail);
    const queued = this.queued;
    this.queued = null;
    if (queued) this.openForm(queued.action, queued.preset);
  }

  // The ticket changed live: reload what the drawer shows (an open form stays as typed).
  async changed(id) {
    if (this.isOpen && id === this.id && (await this.load()) && this.form) this.notice(t("desk.changed"));
  }

  notice(text, error = false) {
    const node = this.part(".notice");
    node.textContent = text;
    node.classList.toggle("error", error);
  }

  render(d) {
    const names = this.ctx.names;
    const title = this.part(".title");
    title.replaceChildren(
      el("span", { class: `dot ${d.colour}`, title: t(`colour.${d.colour}`) }),
      " ",
      el("span", { class: "mono", title: d.id, text: d.id.slice(0, 8) }),
      " ",
      names.category(d.category),
      " ",
      el("span", { class: `status s-${d.status}`, text: t(`status.${d.status}`) }),
    );
    const place = [d.city?.name, d.district?.name, d.street?.name].filter(Boolean).join(" / ");
    const facts = [
      ["drawer.priority", d.priority ? t(`priority.${d.priority}`) : "—"],
      ["drawer.place", place || t("desk.unlocated")],
      ["drawer.owner", names.owner(d.owner_tier, d.owner_code)],
      ["drawer.department", d.department_name ?? d.department ?? "—"],
      ["drawer.reports", String(d.report_count)],
      ["drawer.accept_due", when(d.accept_due_at)],
      ["drawer.handle_due", when(d.handle_due_at)],
      ["drawer.rework", String(d.rework_count)],
      ["drawer.source", t(`source.${d.source}`)],
      ["drawer.created", when(d.created_at)],
    ];
    if (d.merged_into) facts.push(["drawer.merged_into", d.merged_into]);
    if (d.emergency) facts.push(["drawer.emergency", d.emergency]);
    if (d.description) facts.push(["drawer.description", d.description]);
    this.part(".facts").replaceChildren(
      ...facts.flatMap(([key, value]) => [el("dt", { text: t(key) }), el("dd", { text: value })]),
    );

    const buttons = this.part(".actions .buttons");
    buttons.replaceChildren();
    for (const action of d.allowed_actions) {
      const key = SHORTCUT[action];
      const button = el("button", { type: "button", class: "secondary", "data-action": action,
        title: key ? `${t(`desk.action.${action}`)} (${key})` : null }, t(`desk.action.${action}`));
      if (key) button.append(el("kbd", { text: key }));
      button.addEventListener("click", () => this.openForm(action));
      buttons.append(button);
    }
    if (!d.allowed_actions.length) buttons.append(el("span", { class: "muted", text: t("drawer.no_actions") }));
    if (this.form && !d.allowed_actions.includes(this.form.dataset.action)) this.form.markStale();

    this.part(".events ul").replaceChildren(
      ...d.events.map((e) =>
        el("li", {}, el("span", { class: "mono", title: e.id, text: e.id.slice(0, 8) }),
          ` ${t(`source.${e.source}`)} · ${names.category(e.category)} · ${when(e.reported_at)}`)),
    );
    this.part(".timeline ol").replaceChildren(...d.timeline.map((entry) => this.entry(entry)));
  }

  entry(e) {
    const change = e.from_status && e.from_status !== e.to_status
      ? `${t(`status.${e.from_status}`)} → ${t(`status.${e.to_status}`)}`
      : t(`status.${e.to_status}`);
    const item = el("li", { "data-action": e.action },
      el("time", { datetime: e.at, text: when(e.at) }),
      el("b", { text: ` ${t(`desk.action.${e.action}`)} ` }),
      el("span", { class: "muted", text: `${e.actor} · ${change}` }));
    const data = e.data || {};
    const extra = [];
    if (data.department) extra.push(`→ ${data.department}`);
    if (data.until) extra.push(`→ ${when(data.until)}`);
    if (data.passed !== undefined) extra.push(data.passed ? t("form.pass") : t("form.fail"));
    if (data.into) extra.push(`→ ${String(data.into).slice(0, 8)}`);
    if (data.new_ticket) extra.push(`→ ${String(data.new_ticket).slice(0, 8)}`);
    if (extra.length) item.append(el("span", { text: ` ${extra.join(" ")}` }));
    if (e.note) item.append(el("q", { text: e.note }));
    return item;
  }

  // Open the form of `action` if the ticket offers it now; true when it is open.
  openForm(action, preset = null) {
    const d = this.detail;
    if (!d) {
      if (this.isOpen) this.queued = { action, preset }; // opened once the detail arrives
      return false;
    }
    if (!d.allowed_actions.includes(action)) {
      this.notice(t("desk.not_offered", { action: t(`desk.action.${action}`) }), true);
      return false;
    }
    this.closeForm();
    this.notice("");
    this.form = actionForm(action, d, {
      departments: this.ctx.departments,
      preset,
      submit: (body) => this.submit(body),
      cancel: () => this.closeForm(),
    });
    this.part(".form-host").append(this.form);
    for (const button of this.part(".actions .buttons").children) {
      button.classList.toggle("active", button.dataset?.action === action);
    }
    const focus = preset?.passed ? this.form.querySelector("button[type=submit]") : firstControl(this.form);
    focus?.focus();
    return true;
  }

  closeForm() {
    this.form?.remove();
    this.form = null;
    for (const button of this.part(".actions .buttons").children) button.classList.remove("active");
  }

  // POST the action; success closes the form and shows the ticket as it is now; a refusal is
  // thrown back to the form (which shows it) after the detail is reloaded around it.
  async submit(body) {
    const id = this.id;
    try {
      const result = await this.ctx.session.post(`/api/v1/tickets/${id}/actions`, body);
      if (id !== this.id) return;
      this.closeForm();
      this.show(result.ticket);
      await this.load(); // the same detail, re-read: allowed actions as the server sees them now
    } catch (error) {
      if (id === this.id) await this.load();
      throw error;
    }
  }

  close() {
    this.closeForm();
    this.queued = null;
    this.root.hidden = true;
    this.id = null;
    this.detail = null;
    delete this.root.dataset.id;
    this.ctx.onClose();
  }
}
