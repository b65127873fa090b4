// The hub's REST API from a page: tokens kept in localStorage, refreshed before they expire and
// on a 401, errors turned into words. One Session per page.

const STORE = "cityhub.session";

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : describe(detail));
    this.status = status;
    this.detail = detail;
  }
}

// A 422's list of validation issues as one readable line.
function describe(detail) {
  if (Array.isArray(detail)) {
    return detail
      .map((d) => {
        const where = (d.loc || []).slice(1).join(".");
        return where ? `${where}: ${d.msg}` : d.msg;
      })
      .join("; ");
  }
  return JSON.stringify(detail);
}

async function errorOf(reply) {
  let detail = reply.statusText;
  try {
    detail = (await reply.json()).detail ?? detail;
  } catch {
    /* not JSON: keep the status text */
  }
  return new ApiError(reply.status, detail);
}

export class Session {
  constructor(storage = window.localStorage) {
    this.storage = storage;
    this.state = JSON.parse(storage.getItem(STORE) || "null");
    this.refreshing = null;
    this.listeners = new Set();
  }

  get signedIn() {
    return this.state !== null;
  }

  get user() {
    return this.state && { username: this.state.username, role: this.state.role, scope: this.state.scope };
  }

  onChange(listener) {
    this.listeners.add(listener);
  }

  save(tokens, username) {
    this.state = {
      username: username ?? this.state?.username,
      access: tokens.access_token,
      refresh: tokens.refresh_token,
      role: tokens.role,
      scope: tokens.scope,
      expires: Date.now() + tokens.expires_in * 1000,
    };
    this.storage.setItem(STORE, JSON.stringify(this.state));
    for (const listener of this.listeners) listener(this.state);
  }

  forget() {
    this.state = null;
    this.storage.removeItem(STORE);
    for (const listener of this.listeners) listener(null);
  }

  async signIn(username, password) {
    const reply = await fetch("/auth/token", {
      method: "POST",
      body: new URLSearchParams({ username, password }),
    });
    if (!reply.ok) throw await errorOf(reply);
    this.save(await reply.json(), username);
  }

  async signOut() {
    if (this.state) {
      await fetch("/auth/logout", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ refresh_token: this.state.refresh }),
      }).catch(() => undefined);
    }
    this.forget();
  }

  // A fresh access token (refreshed when it expires within a minute); one refresh at a time, since
  // a refresh token presented twice ends the whole sign-in.
  async token() {
    if (!this.state) throw new ApiError(401, "not signed in");
    if (Date.now() < this.state.expires - 60_000) return this.state.access;
    return this.refresh();
  }

  refresh() {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  async doRefresh() {
    const reply = await fetch("/auth/refresh", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: this.state.refresh }),
    });
    if (reply.status === 401) {
      this.forget();
      throw await errorOf(reply);
    }
    if (!reply.ok) throw await errorOf(reply);
    this.save(await reply.json());
    return this.state.access;
  }

  // fetch() with the bearer token; JSON in and out. Throws ApiError for any non-2xx answer.
  async request(method, path, { json, body, headers = {} } = {}) {
    const send = async (token) => {
      const init = { method, headers: { ...headers, authorization: `Bearer ${token}` } };
      if (json !== undefined) {
        init.headers["content-type"] = "application/json";
        init.body = JSON.stringify(json);
      } else if (body !== undefined) {
        init.body = body;
      }
      return fetch(path, init);
    };
    let reply = await send(await this.token());
    if (reply.status === 401 && this.state) reply = await send(await this.refresh());
    if (!reply.ok) throw await errorOf(reply);
    return reply.status === 204 ? null : reply.json();
  }

  get(path) {
    return this.request("GET", path);
  }

  post(path, json, headers) {
    return this.request("POST", path, { json, headers });
  }
}
