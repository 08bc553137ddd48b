// The daemon's HTTP API v1 (docs/api.md): JSON requests and the live event stream.

export const BASE = "api/v1";

/** An API error carrying the HTTP status and the server's one-line message. */
export class ApiError extends Error {
    constructor(status, message) {
        super(message);
        this.status = status;
    }
}

/**
 * Calls the API. `body` may be a plain object (sent as JSON) or FormData. Resolves to the
 * parsed JSON (or null for 204); rejects with ApiError. A 401 also calls `onUnauthorized`.
 */
export async function api(method, path, body, { onUnauthorized } = {}) {
    const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body instanceof FormData) {
        init.body = body;
    } else if (body !== undefined) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
    }
    let res;
    try {
        res = await fetch(`${BASE}${path}`, init);
    } catch {
        throw new ApiError(0, "the daemon does not answer");
    }
    if (res.status === 401 && onUnauthorized) onUnauthorized();
    if (res.status === 204) return null;
    const text = await res.text();
    let data = null;
    if (text) {
        try {
            data = JSON.parse(text);
        } catch {
            data = null;
        }
    }
    if (!res.ok) {
        const msg = data && typeof data.error === "string" ? data.error : `HTTP ${res.status}`;
        throw new ApiError(res.status, msg);
    }
    return data;
}

/**
 * Follows `GET /api/v1/events` and calls handlers.{snapshot,torrents,removed,session}.
 * On a broken stream it asks `probe()` (a cheap request) whether the API wants a login;
 * otherwise it reconnects with exponential backoff (1 s doubling to 30 s, with jitter).
 * handlers.status(state) receives "connecting" | "live" | "offline" | "unauthorized".
 */
export class EventStream {
    constructor(handlers, probe) {
        this.handlers = handlers;
        this.probe = probe;
        this.source = null;
        this.delay = 1000;
        this.timer = null;
        this.stopped = true;
    }

    /** Reconnects at once (not at the end of the backoff) when the network or tab is back. */
    wake() {
        if (this.stopped || this.source || !this.timer) return;
        clearTimeout(this.timer);
        this.timer = null;
        this.connect();
    }

    start() {
        this.stopped = false;
        clearTimeout(this.timer);
        this.connect();
    }

    stop() {
        this.stopped = true;
        clearTimeout(this.timer);
        if (this.source) this.source.close();
        this.source = null;
    }

    connect() {
        if (this.source) this.source.close();
        this.handlers.status("connecting");
        const source = new EventSource(`${BASE}/events`);
        this.source = source;
        const on = (name, fn) =>
            source.addEventListener(name, (ev) => {
                let data;
                try {
                    data = JSON.parse(ev.data);
                } catch {
                    return; // a malformed event is ignored, the next one fixes the view
                }
                fn(data);
            });
        on("snapshot", (d) => {
            this.delay = 1000;
            this.handlers.status("live");
            this.handlers.snapshot(d);
        });
        on("torrents", (d) => this.handlers.torrents(d));
        on("removed", (d) => this.handlers.removed(d));
        on("session", (d) => this.handlers.session(d));
        source.onerror = () => {
            // EventSource retries by itself only for some failures; take over for all of
            // them so the backoff and the login check are ours.
            source.close();
            if (this.source !== source || this.stopped) return;
            this.source = null;
            this.retry();
        };
    }

    async retry() {
        const status = await this.probe();
        if (this.stopped) return;
        if (status === 401) {
            this.handlers.status("unauthorized");
            this.stopped = true;
            return;
        }
        this.handlers.status("offline");
        const wait = this.delay * (0.75 + Math.random() * 0.5);
        this.delay = Math.min(this.delay * 2, 30000);
        this.timer = setTimeout(() => {
            this.timer = null;
            this.connect();
        }, wait);
    }
}
