// Small helpers shared by the web UI: a DOM builder that never parses HTML (every string
// from the API goes through textContent or an attribute), and human units.

/**
 * Creates an element. `attrs` keys: `class`, `text` (textContent), `on<event>` (listener),
 * `dataset` (object), booleans set or remove the attribute, anything else is setAttribute.
 * Children are nodes or strings (strings become text nodes, never markup).
 */
export function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
        if (value === undefined || value === null || value === false) continue;
        if (key === "class") node.className = value;
        else if (key === "text") node.textContent = String(value);
        else if (key === "dataset") Object.assign(node.dataset, value);
        else if (key.startsWith("on") && typeof value === "function") {
            node.addEventListener(key.slice(2), value);
        } else if (value === true) node.setAttribute(key, "");
        else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
        if (child === null || child === undefined || child === false) continue;
        node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
}

/** An inline SVG icon from the sprite in index.html (`#i-NAME`), hidden from screen readers. */
export function icon(name) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "icon");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const use = document.createElementNS(ns, "use");
    use.setAttribute("href", `#i-${name}`);
    svg.append(use);
    return svg;
}

/** Sets textContent only when it changed (keeps live updates cheap). */
export function setText(node, text) {
    const s = String(text);
    if (node.textContent !== s) node.textContent = s;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** 1536 -> "1.5 KiB"; binary units, three significant digits. */
export function fmtBytes(n) {
    if (typeof n !== "number" || !Number.isFinite(n) || n < 0) return "—";
    let i = 0;
    while (n >= 1024 && i < UNITS.length - 1) {
        n /= 1024;
        i++;
    }
    if (i === 0) return `${Math.round(n)} B`;
    return `${n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)} ${UNITS[i]}`;
}

/** Bytes per second; "0 B/s" for 0. */
export function fmtRate(n) {
    return n > 0 ? `${fmtBytes(n)}/s` : "0 B/s";
}

/** Seconds -> "1h 2m", "3d 4h", "45s"; "∞" when unknown. */
export function fmtDuration(s) {
    if (typeof s !== "number" || !Number.isFinite(s) || s < 0) return "∞";
    s = Math.round(s);
    if (s < 60) return `${s}s`;
    const d = Math.floor(s / 86400);
    const hr = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d >= 100) return "∞";
    if (d > 0) return hr ? `${d}d ${hr}h` : `${d}d`;
    if (hr > 0) return m ? `${hr}h ${m}m` : `${hr}h`;
    const sec = s % 60;
    return sec && m < 10 ? `${m}m ${sec}s` : `${m}m`;
}

export function fmtPercent(p) {
    if (typeof p !== "number" || !Number.isFinite(p)) return "—";
    // rounded down, so "100%" means complete and never 99.96%
    const v = Math.floor(Math.max(0, Math.min(1, p)) * 1000) / 10;
    return v >= 100 ? "100%" : `${v.toFixed(1)}%`;
}

export function fmtRatio(r) {
    if (typeof r !== "number" || !Number.isFinite(r)) return "∞";
    return r.toFixed(r >= 100 ? 0 : r >= 10 ? 1 : 2);
}

/** A short local date: "Nov 29, 14:02" this year, "Nov 29, 2025" before. */
export function fmtDate(unix) {
    if (typeof unix !== "number" || unix <= 0) return "—";
    const d = new Date(unix * 1000);
    const thisYear = d.getFullYear() === new Date().getFullYear();
    return d.toLocaleString(undefined, thisYear
        ? { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }
        : { year: "numeric", month: "short", day: "numeric" });
}

/** A speed limit in bytes/s for display; 0 means none. */
export function fmtLimit(n) {
    return n > 0 ? fmtRate(n) : "unlimited";
}

/** Human labels for the API's states. */
export const STATE_LABEL = {
    metadata: "Metadata",
    checking: "Checking",
    queued: "Queued",
    paused: "Paused",
    downloading: "Downloading",
    seeding: "Seeding",
    error: "Error",
};

/** Decodes base64 into bytes; an empty array when the input is not base64. */
export function base64Bytes(text) {
    try {
        const bin = atob(String(text || ""));
        const out = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
        return out;
    } catch {
        return new Uint8Array(0);
    }
}

/** Reads a CSS custom property as a resolved colour (canvas needs real colours). */
export function cssColor(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

/**
 * Makes everything but an overlay (details panel, filter drawer) unreachable by keyboard and
 * screen readers while it is open: `inert` on the page's top-level parts.
 */
export function setBackgroundInert(on) {
    for (const id of ["topbar", "layout"]) document.getElementById(id)?.toggleAttribute("inert", on);
}
