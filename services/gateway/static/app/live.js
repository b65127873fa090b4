// `/ws/live` from a page: connects with a fresh token, resumes with `since` after a drop, and
// reports its state (connecting, live, reconnecting, resynced) so screens can show it.

export class LiveStream {
  // session: api.js Session; options: { scope, streams: ["tickets", ...], onMessage(msg),
  // onResync(reason), onState(state) }
  constructor(session, options) {
    this.session = session;
    this.options = options;
    this.since = null;
    this.epoch = null;
    this.socket = null;
    this.attempt = 0;
    this.stopped = false;
    this.state = "connecting";
  }

  setState(state) {
    this.state = state;
    this.options.onState?.(state);
  }

  async start() {
    this.stopped = false;
    let token;
    try {
      token = await this.session.token();
    } catch (error) {
      // Signed out only when the hub said so (401); a refresh that could not reach it (offline)
      // is tried again later.
      if (error?.status === 401) this.setState("signed-out");
      else if (!this.stopped) this.retry();
      return;
    }
    // The token goes in the first message, not the URL: URLs end up in access logs and proxies.
    const params = new URLSearchParams();
    if (this.options.scope) params.set("scope", this.options.scope);
    if (this.options.streams) params.set("streams", this.options.streams.join(","));
    if (this.since !== null) {
      params.set("since", String(this.since));
      if (this.epoch) params.set("epoch", this.epoch);
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/live?${params}`);
    this.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ type: "auth", token }));
    socket.onmessage = (event) => this.receive(JSON.parse(event.data));
    socket.onclose = (event) => this.closed(event);
  }

  receive(message) {
    if (message.type === "hello") {
      this.attempt = 0;
      this.epoch = message.epoch;
      if (this.since === null) this.since = message.seq;
      this.setState("live");
      return;
    }
    if (message.type === "resync") {
      this.since = null;
      this.setState("resynced");
      this.options.onResync?.(message.reason);
      return;
    }
    if (message.type === "pong") return;
    if (typeof message.seq === "number") {
      this.since = message.seq;
      this.epoch = message.epoch;
    }
    this.options.onMessage?.(message);
  }

  closed(event) {
    this.socket = null;
    if (this.stopped) return;
    if (event.code === 4401) {
      // The token expired or the sign-in ended: a refresh tells which.
      this.session.refresh().then(
        () => this.retry(),
        (error) => (error?.status === 401 ? this.setState("signed-out") : this.retry()),
      );
      return;
    }
    if (event.code === 4403 || event.code === 4400) {
      this.setState("refused");
      return;
    }
    if (event.code === 1013) this.since = null; // too slow: start over from a fresh state
    this.retry();
  }

  retry() {
    this.setState("reconnecting");
    const delay = Math.min(30_000, 500 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt += 1;
    setTimeout(() => this.start(), delay);
  }

  stop() {
    this.stopped = true;
    this.socket?.close(1000);
  }
}
