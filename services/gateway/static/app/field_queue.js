// The field page's outbox: every action and report goes through a queue kept in IndexedDB (it
// survives a reload or a closed browser, and holds the photos as Blobs, which localStorage
// cannot), each with a key chosen here once: the action's Idempotency-Key, the report's
// source_ref. Sending retries with that same key, so a request whose answer was lost is replayed
// by the hub, never done twice. States: queued → sending → sent, or failed (a 4xx: the reason).
import { ApiError } from "./api.js";

const DB = "cityhub-field";
const STORE = "outbox";
const FIRST_RETRY_MS = 2_000;
const MAX_RETRY_MS = 60_000;
const KEEP_SENT_MS = 24 * 3600_000; // sent items shown for a day, then dropped

// A random UUID; crypto.randomUUID() exists only on https (or localhost) pages.
export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function fileName(blob, i) {
  return `photo-${i + 1}.${blob.type === "image/png" ? "png" : "jpg"}`;
}

function promised(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function openDb() {
  const request = indexedDB.open(DB, 1);
  request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "id" });
  return promised(request);
}

// A 4xx is the hub's final word (the ticket moved on, the body is wrong); a dropped connection,
// a 5xx, 408 and 429 are worth another try. 401 means signed out: the item waits for sign-in.
function final(error) {
  return (
    error instanceof ApiError &&
    error.status >= 400 && error.status < 500 &&
    ![401, 408, 429].includes(error.status)
  );
}

export class Outbox {
  // session: api.js Session; onChange(items) after every change.
  constructor(session, { onChange, onSent } = {}) {
    this.session = session;
    this.onChange = onChange ?? (() => {});
    this.onSent = onSent ?? (() => {});
    this.items = [];
    this.db = null;
    this.running = null;
    this.again = false;
    this.timer = null;
  }

  async open() {
    this.db = await openDb();
    const tx = this.db.transaction(STORE, "readonly");
    this.items = await promised(tx.objectStore(STORE).getAll());
    this.items.sort((a, b) => a.createdAt - b.createdAt);
    const old = Date.now() - KEEP_SENT_MS;
    for (const item of this.items.filter((i) => i.state === "sent" && i.sentAt < old)) {
      await this.remove(item.id);
    }
    // A page closed mid-send left the item "sending": its key makes sending it again safe.
    for (const item of this.items.filter((i) => i.state === "sending")) {
      item.state = "queued";
      await this.save(item);
    }
    window.addEventListener("online", () => this.retryNow());
    this.changed();
    this.flush(); // what an earlier visit left queued
  }

  async save(item) {
    const tx = this.db.transaction(STORE, "readwrite");
    tx.objectStore(STORE).put(item);
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  }

  async remove(id) {
    const tx = this.db.transaction(STORE, "readwrite");
    tx.objectStore(STORE).delete(id);
    await new Promise((resolve) => {
      tx.oncomplete = resolve;
      tx.onerror = resolve; // gone or not, it leaves the list
    });
    this.items = this.items.filter((i) => i.id !== id);
    this.changed();
  }

  // Drop this user's sent items from the list.
  async clearSent() {
    for (const item of this.mine().filter((i) => i.state === "sent")) await this.remove(item.id);
  }

  changed() {
    this.onChange(this.mine());
  }

  // This user's items, oldest first (a shared phone keeps another user's items for them).
  mine() {
    const user = this.session.user?.username;
    return this.items.filter((i) => i.user === user);
  }

  // Queue an action ({action, note}, photos: Blob[]) on a ticket; sends at once when it can.
  addAction(ticketId, body, photos = []) {
    return this.add({ kind: "action", ticketId, body, photos, uploaded: [] });
  }

  // Queue a grid report ({category, description, lon, lat}, photos: Blob[]).
  addReport(fields, photos = []) {
    return this.add({ kind: "report", fields, photos });
  }

  async add(entry) {
    const item = {
      ...entry,
      id: newKey(),
      user: this.session.user?.username,
      state: "queued",
      reason: "",
      attempts: 0,
      createdAt: Date.now(),
      nextAt: 0,
    };
    this.items.push(item);
    await this.save(item);
    this.changed();
    this.flush();
    return item;
  }

  // Send what is due, oldest first, one at a time: a ticket's accept goes before its start.
  flush() {
    if (this.running) {
      this.again = true; // added meanwhile: another pass right after this one
      return this.running;
    }
    this.again = false;
    this.running = this.run().finally(() => {
      this.running = null;
      if (this.again) this.flush();
      else this.schedule();
    });
    return this.running;
  }

  async run() {
    for (const item of this.mine()) {
      if (item.state !== "queued") continue;
      if (!navigator.onLine || item.nextAt > Date.now()) return;
      if (!(await this.send(item))) return; // the connection is down: later items wait too
    }
  }

  // The connection is back: whatever waits goes now, back-off or not.
  retryNow() {
    for (const item of this.mine()) if (item.state === "queued") item.nextAt = 0;
    this.flush();
  }

  schedule() {
    clearTimeout(this.timer);
    const waiting = this.mine().filter((i) => i.state === "queued");
    if (waiting.length === 0) return;
    const next = Math.min(...waiting.map((i) => i.nextAt));
    this.timer = setTimeout(() => this.flush(), Math.max(next - Date.now(), 1_000));
  }

  // Retry a failed item now (same key: if the hub did it after all, it answers as before).
  async retry(id) {
    const item = this.items.find((i) => i.id === id);
    if (!item) return;
    Object.assign(item, { state: "queued", reason: "", nextAt: 0 });
    await this.save(item);
    this.changed();
    this.flush();
  }

  // Whether to go on with later items.
  async send(item) {
    item.state = "sending";
    item.attempts += 1;
    await this.save(item);
    this.changed();
    try {
      item.result = item.kind === "action" ? await this.sendAction(item) : await this.sendReport(item);
      Object.assign(item, { state: "sent", reason: "", sentAt: Date.now(), photos: [] });
      await this.save(item);
      this.changed();
      this.onSent(item);
      return true;
    } catch (error) {
      if (final(error)) {
        Object.assign(item, { state: "failed", reason: error.message });
        await this.save(item);
        this.changed();
        return true;
      }
      const wait = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (item.attempts - 1));
      Object.assign(item, {
        state: "queued",
        reason: error instanceof ApiError ? error.message : "",
        nextAt: Date.now() + wait * (0.75 + Math.random() / 2),
      });
      await this.save(item);
      this.changed();
      return false;
    }
  }

  async sendAction(item) {
    // Photos first (content-addressed: uploading one again stores nothing new).
    for (let i = item.uploaded.length; i < item.photos.length; i += 1) {
      const form = new FormData();
      form.append("photo", item.photos[i], fileName(item.photos[i], i));
      const stored = await this.session.request("POST", "/api/v1/photos", { body: form });
      item.uploaded.push(stored.path);
      await this.save(item);
    }
    const body = { ...item.body };
    if (item.uploaded.length) body.photos = item.uploaded;
    const reply = await this.session.request("POST", `/api/v1/tickets/${item.ticketId}/actions`, {
      json: body,
      headers: { "Idempotency-Key": item.id },
    });
    return { status: reply.ticket.status };
  }

  async sendReport(item) {
    const form = new FormData();
    for (const [name, value] of Object.entries(item.fields)) form.append(name, String(value));
    form.append("source_ref", item.id);
    item.photos.forEach((photo, i) => form.append("photos", photo, fileName(photo, i)));
    const event = await this.session.request("POST", "/api/v1/grid-reports", { body: form });
    return { event: event.id, ticket: event.ticket_id ?? null };
  }
}
