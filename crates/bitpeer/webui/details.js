// The details panel of one torrent: summary, pieces bar, files (with priorities), peers and
// trackers. The summary follows the live event stream; the tabs' lists are fetched when the
// panel opens and refreshed every 2 s while it stays open and the page is visible.

import {
    h, icon, setText, fmtBytes, fmtRate, fmtDuration, fmtPercent, fmtRatio, fmtDate,
    STATE_LABEL, base64Bytes, cssColor, setBackgroundInert,
} from "./util.js";

const TABS = ["general", "files", "peers", "trackers", "settings"];
const MAX_ROWS = 2000; // rows of a tab drawn at most (a torrent may hold 100,000 files)

export class Details {
    constructor(root, backdrop, deps) {
        this.root = root;
        this.backdrop = backdrop;
        this.deps = deps;
        this.id = null;
        this.tab = "general";
        this.timer = null;
        this.info = null; // GET /torrents/{id} (static fields)
        this.pieces = null;
        this.returnFocus = null;
        backdrop.addEventListener("click", () => this.close());
        document.addEventListener("visibilitychange", () => {
            if (!document.hidden && this.id !== null) this.refresh();
        });
        new ResizeObserver(() => this.redraw()).observe(root);
    }

    open(id) {
        const t = this.deps.torrents.get(id);
        if (!t) return;
        if (this.id !== id) {
            this.id = id;
            this.info = null;
            this.pieces = null;
            this.filled = false;
            this.tab = "general";
            this.returnFocus = document.activeElement;
            this.build();
        }
        this.root.hidden = false;
        this.backdrop.hidden = false;
        document.body.classList.add("details-open");
        setBackgroundInert(true);
        this.update(t);
        this.refresh();
        this.el.close.focus();
        this.deps.onChange();
    }

    close() {
        if (this.id === null) return;
        this.id = null;
        clearTimeout(this.timer);
        this.root.hidden = true;
        this.backdrop.hidden = true;
        document.body.classList.remove("details-open");
        setBackgroundInert(false);
        this.root.replaceChildren();
        this.deps.onChange();
        if (this.returnFocus && document.contains(this.returnFocus)) this.returnFocus.focus();
    }

    build() {
        const el = (this.el = {});
        el.name = h("h2", { id: "d-name", class: "d-name" });
        el.badge = h("span", { class: "badge" });
        el.close = h("button", { type: "button", class: "icon-btn", "aria-label": "Close details", onclick: () => this.close() }, icon("x"));
        el.toggle = h("button", { type: "button", class: "btn", onclick: () => this.deps.togglePause(this.id) });
        el.recheck = h("button", { type: "button", class: "btn", onclick: () => this.deps.torrentAction(this.id, "recheck") }, icon("recheck"), "Recheck");
        el.force = h("button", { type: "button", class: "btn", onclick: () => this.deps.torrentAction(this.id, "force_start") }, icon("play"), "Force start");
        el.remove = h("button", { type: "button", class: "btn danger-ghost", onclick: () => this.deps.askRemove(this.id) }, icon("trash"), "Remove");
        el.pieces = h("canvas", { class: "pieces", role: "img", "aria-label": "Pieces" });
        el.piecesText = h("span", { class: "muted" });
        el.progress = h("strong", { class: "num" });

        el.tabs = {};
        el.panes = {};
        const tablist = h("div", { class: "tabs", role: "tablist", "aria-label": "Details" });
        for (const name of TABS) {
            const tab = h("button", {
                type: "button", role: "tab", id: `d-tab-${name}`, "aria-controls": `d-pane-${name}`,
                onclick: () => this.selectTab(name),
                onkeydown: (ev) => {
                    const i = TABS.indexOf(name);
                    let j = null;
                    if (ev.key === "ArrowRight") j = (i + 1) % TABS.length;
                    if (ev.key === "ArrowLeft") j = (i + TABS.length - 1) % TABS.length;
                    if (j !== null) {
                        this.selectTab(TABS[j]);
                        el.tabs[TABS[j]].focus();
                    }
                },
            }, name[0].toUpperCase() + name.slice(1));
            el.tabs[name] = tab;
            tablist.append(tab);
            el.panes[name] = h("div", { role: "tabpanel", id: `d-pane-${name}`, "aria-labelledby": `d-tab-${name}`, class: `pane pane-${name}` });
        }
        el.general = {};
        const dl = h("dl", { class: "facts" });
        for (const [key, label] of [
            ["progress", "Progress"], ["size", "Size"], ["downloaded", "Downloaded"],
            ["uploaded", "Uploaded"], ["ratio", "Ratio"], ["peers", "Seeds / peers"],
            ["down", "Download speed"], ["up", "Upload speed"], ["eta", "ETA"],
            ["limits", "Speed limits"], ["category", "Category"], ["tags", "Tags"],
            ["added", "Added"], ["completed", "Completed"], ["pieces", "Pieces"],
            ["path", "Saved in"], ["hash", "Info-hash"], ["cid", "IPFS CID"], ["created", "Created"],
            ["comment", "Comment"], ["error", "Error"],
        ]) {
            const dd = h("dd", { class: `f-${key}` });
            el.general[key] = dd;
            dl.append(h("div", { class: `fact fact-${key}` }, h("dt", {}, label), dd));
        }
        el.panes.general.append(dl);
        el.panes.settings.append(this.buildOptions());

        this.root.replaceChildren(
            h("header", { class: "d-head" },
                h("div", { class: "d-title" }, el.name, el.badge),
                el.close),
            h("div", { class: "d-actions" }, el.toggle, el.force, el.recheck, el.remove),
            h("div", { class: "d-pieces" },
                h("div", { class: "d-pieces-row" }, el.progress, el.piecesText),
                el.pieces),
            tablist,
            h("div", { class: "d-body" }, ...TABS.map((n) => el.panes[n])));
        this.selectTab(this.tab, false);
    }

    /** The torrent's settings form: category, tags, limits, sequential, folder, queue. */
    buildOptions() {
        const o = (this.opt = {});
        const field = (label, input) => h("label", { class: "field" }, h("span", {}, label), input);
        o.category = h("input", { type: "text", list: "category-options", placeholder: "None", autocomplete: "off" });
        o.tags = h("input", { type: "text", placeholder: "Comma-separated", autocomplete: "off" });
        o.down = h("input", { type: "number", min: "0", step: "1", inputmode: "numeric", placeholder: "Unlimited" });
        o.up = h("input", { type: "number", min: "0", step: "1", inputmode: "numeric", placeholder: "Unlimited" });
        o.path = h("input", { type: "text", autocomplete: "off", spellcheck: "false" });
        o.sequential = h("input", { type: "checkbox" });
        o.error = h("p", { class: "form-error", role: "alert", hidden: true });
        o.save = h("button", { type: "submit", class: "btn primary" }, "Save");
        const queue = (position, label, name) => h("button", {
            type: "button", class: "icon-btn", "aria-label": label, title: label,
            onclick: () => this.queue(position),
        }, icon(name));
        o.queuePos = h("span", { class: "num" });
        const form = h("form", { class: "options", onsubmit: (ev) => this.saveOptions(ev) },
            h("div", { class: "grid2" },
                field("Category", o.category),
                field("Tags", o.tags),
                field("Download limit (KiB/s)", o.down),
                field("Upload limit (KiB/s)", o.up)),
            field("Folder (changing it moves the data)", o.path),
            h("div", { class: "options-row" },
                h("label", { class: "check" }, o.sequential, h("span", {}, "Download in order (for streaming)")),
                h("span", { class: "queue" }, h("span", { class: "muted" }, "Queue ", o.queuePos),
                    queue("top", "Move to the top of the queue", "top"),
                    queue("up", "Move up in the queue", "up"),
                    queue("down", "Move down in the queue", "down"),
                    queue("bottom", "Move to the bottom of the queue", "bottom"))),
            o.error,
            h("div", { class: "options-foot" }, o.save));
        return form;
    }

    /** Fills the settings form from a torrent (on open and after a save, not while editing). */
    fillOptions(t) {
        const o = this.opt;
        const kib = (n) => (n > 0 ? String(Math.round(n / 1024)) : "");
        o.category.value = t.category || "";
        o.tags.value = Array.isArray(t.tags) ? t.tags.join(", ") : "";
        o.down.value = kib(t.download_limit);
        o.up.value = kib(t.upload_limit);
        o.path.value = t.save_path || "";
        o.sequential.checked = Boolean(t.sequential);
        o.error.hidden = true;
        this.filled = true;
    }

    async saveOptions(ev) {
        ev.preventDefault();
        const o = this.opt;
        const id = this.id;
        const t = this.deps.torrents.get(id);
        const limit = (input) => {
            const text = input.value.trim();
            const v = text === "" ? 0 : Number(text);
            return Number.isFinite(v) && v >= 0 ? Math.round(v * 1024) : NaN;
        };
        const body = {
            category: o.category.value.trim(),
            tags: o.tags.value.split(",").map((x) => x.trim()).filter(Boolean),
            download_limit: limit(o.down),
            upload_limit: limit(o.up),
            sequential: o.sequential.checked,
        };
        const showError = (msg) => {
            o.error.hidden = false;
            setText(o.error, msg);
        };
        if (Number.isNaN(body.download_limit) || Number.isNaN(body.upload_limit)) {
            showError("Limits are numbers of KiB/s, 0 or more.");
            return;
        }
        const path = o.path.value.trim();
        o.save.disabled = true;
        try {
            let updated = await this.deps.call("PATCH", `/torrents/${id}`, body);
            if (path && t && path !== t.save_path) {
                updated = await this.deps.call("POST", `/torrents/${id}/move`, { save_path: path });
            }
            this.deps.upsert(updated);
            if (this.id === id) this.fillOptions(updated);
            this.deps.toast("Settings saved");
        } catch (err) {
            showError(err.message);
        } finally {
            o.save.disabled = false;
        }
    }

    async queue(position) {
        try {
            this.deps.upsert(await this.deps.call("POST", `/torrents/${this.id}/queue`, { position }));
        } catch (err) {
            this.deps.reportError(err, "Could not move it in the queue");
        }
    }

    selectTab(name, fetch = true) {
        this.tab = name;
        for (const n of TABS) {
            const on = n === name;
            this.el.tabs[n].setAttribute("aria-selected", String(on));
            this.el.tabs[n].tabIndex = on ? 0 : -1;
            this.el.panes[n].hidden = !on;
        }
        if (fetch) this.refresh();
    }

    /** A new Torrent object from the stream or an action. */
    update(t) {
        if (t.id !== this.id || !this.el) return;
        const el = this.el;
        setText(el.name, t.name || t.info_hash);
        el.badge.dataset.state = t.state;
        setText(el.badge, STATE_LABEL[t.state] || t.state);
        const paused = this.deps.isPaused(t);
        el.toggle.replaceChildren(icon(paused ? "play" : "pause"), paused ? "Resume" : "Pause");
        el.force.hidden = t.state !== "queued" && t.state !== "paused";
        setText(el.progress, fmtPercent(t.progress));
        const g = el.general;
        setText(g.progress, fmtPercent(t.progress));
        setText(g.size, t.wanted_size !== t.size
            ? `${fmtBytes(t.wanted_size)} wanted of ${fmtBytes(t.size)}`
            : fmtBytes(t.size));
        setText(g.downloaded, fmtBytes(t.downloaded));
        setText(g.uploaded, fmtBytes(t.uploaded));
        setText(g.ratio, fmtRatio(t.ratio));
        setText(g.down, fmtRate(t.download_rate));
        setText(g.up, fmtRate(t.upload_rate));
        setText(g.eta, t.state === "downloading" ? fmtDuration(t.eta) : "—");
        setText(g.peers, `${t.seeds ?? 0} / ${t.peers ?? 0}`);
        setText(g.limits, `↓ ${t.download_limit > 0 ? fmtRate(t.download_limit) : "none"} · ↑ ${t.upload_limit > 0 ? fmtRate(t.upload_limit) : "none"}`);
        setText(g.path, t.content_path || t.save_path || "—");
        setText(g.category, t.category || "—");
        setText(g.tags, Array.isArray(t.tags) && t.tags.length ? t.tags.join(", ") : "—");
        setText(g.added, fmtDate(t.added_at));
        setText(g.completed, fmtDate(t.completed_at));
        setText(g.hash, t.info_hash || "—");
        // Known once the daemon imported the completed torrent into its IPFS store.
        setText(g.cid, t.ipfs_cid || "");
        g.cid.parentElement.hidden = !t.ipfs_cid;
        setText(g.error, t.error || "");
        setText(this.opt.queuePos, t.queue_position ?? "—");
        if (!this.filled) this.fillOptions(t);
        g.error.parentElement.hidden = !t.error;
        this.renderInfo();
        // the pieces bar follows progress between fetches only when complete
        if (t.progress >= 1 && this.pieces && this.pieces.complete !== true) this.refresh();
    }

    renderInfo() {
        const info = this.info;
        const g = this.el.general;
        if (!info) return;
        setText(g.pieces, info.piece_count ? `${info.piece_count} × ${fmtBytes(info.piece_length)}` : "—");
        const created = [info.created_by, info.creation_date ? fmtDate(info.creation_date) : ""].filter(Boolean).join(", ");
        setText(g.created, created || "—");
        setText(g.comment, info.comment || "—");
        g.comment.parentElement.hidden = !info.comment;
    }

    async refresh() {
        clearTimeout(this.timer);
        const id = this.id;
        if (id === null) return;
        const base = `/torrents/${id}`;
        const jobs = [this.deps.call("GET", `${base}/pieces`).then((p) => this.setPieces(id, p))];
        if (!this.info) {
            jobs.push(this.deps.call("GET", base).then((info) => {
                if (this.id !== id) return;
                this.info = info;
                this.renderInfo();
                if (Array.isArray(info.files) && this.tab === "files") this.renderFiles(info.files);
                if (Array.isArray(info.trackers) && this.tab === "trackers") this.renderTrackers(info.trackers);
            }));
        }
        if (this.tab === "files") jobs.push(this.deps.call("GET", `${base}/files`).then((f) => this.id === id && this.renderFiles(f)));
        if (this.tab === "peers") jobs.push(this.deps.call("GET", `${base}/peers`).then((p) => this.id === id && this.renderPeers(p)));
        if (this.tab === "trackers") jobs.push(this.deps.call("GET", `${base}/trackers`).then((t) => this.id === id && this.renderTrackers(t)));
        const results = await Promise.allSettled(jobs);
        if (this.id !== id) return;
        const failed = results.find((r) => r.status === "rejected");
        if (failed && failed.reason?.status === 404) {
            this.close();
            return;
        }
        if (!document.hidden) this.timer = setTimeout(() => this.refresh(), 2000);
    }

    // ---- pieces bar -------------------------------------------------------------------------

    setPieces(id, p) {
        if (this.id !== id || !p) return;
        const count = Math.max(0, Math.min(Number(p.piece_count) || 0, 1 << 24));
        const bits = base64Bytes(p.have);
        let have = 0;
        for (let i = 0; i < count; i++) if (bits[i >> 3] & (0x80 >> (i & 7))) have++;
        this.pieces = { count, bits, have, complete: count > 0 && have === count };
        setText(this.el.piecesText, count ? `${have} of ${count} pieces` : "no pieces yet");
        this.el.pieces.setAttribute("aria-label", `Pieces: ${have} of ${count} verified`);
        this.redraw();
    }

    redraw() {
        if (this.id === null || !this.el || !this.pieces) return;
        const c = this.el.pieces;
        const w = c.clientWidth;
        const hgt = c.clientHeight;
        if (!w || !hgt) return;
        const dpr = window.devicePixelRatio || 1;
        c.width = Math.round(w * dpr);
        c.height = Math.round(hgt * dpr);
        const g = c.getContext("2d");
        g.setTransform(1, 0, 0, 1, 0, 0);
        const W = c.width;
        g.fillStyle = cssColor("--track");
        g.fillRect(0, 0, W, c.height);
        const { count, bits } = this.pieces;
        if (!count) return;
        const color = cssColor("--accent");
        g.fillStyle = color;
        // one column per device pixel; its opacity is the share of its pieces we have
        const per = count / W;
        for (let x = 0; x < W; x++) {
            const from = Math.floor(x * per);
            const to = Math.max(from + 1, Math.floor((x + 1) * per));
            let got = 0;
            for (let i = from; i < to && i < count; i++) if (bits[i >> 3] & (0x80 >> (i & 7))) got++;
            const share = got / (to - from);
            if (share > 0) {
                g.globalAlpha = 0.25 + 0.75 * share;
                g.fillRect(x, 0, 1, c.height);
            }
        }
        g.globalAlpha = 1;
    }

    // ---- lists ------------------------------------------------------------------------------

    renderFiles(files) {
        const pane = this.el.panes.files;
        if (!Array.isArray(files)) return;
        if (!pane.firstChild) {
            this.fileRows = new Map();
            this.el.fileBody = h("tbody");
            this.el.fileNote = h("p", { class: "muted note" });
            const all = h("select", {
                "aria-label": "Priority of every file",
                onchange: (ev) => {
                    const pr = ev.target.value;
                    ev.target.value = "";
                    if (!pr) return;
                    const map = {};
                    for (const f of this.lastFiles || []) map[String(f.index)] = pr;
                    this.setPriorities(map);
                },
            }, h("option", { value: "" }, "Set all…"), ...priorityOptions());
            pane.append(
                h("div", { class: "pane-tools" }, h("span", { class: "muted", "data-files-summary": "" }), all),
                h("div", { class: "table-scroll" },
                    h("table", { class: "sub files" },
                        h("thead", {}, h("tr", {},
                            h("th", { scope: "col" }, "File"), h("th", { scope: "col", class: "r" }, "Size"),
                            h("th", { scope: "col" }, "Progress"), h("th", { scope: "col" }, "Priority"))),
                        this.el.fileBody)),
                this.el.fileNote);
        }
        this.lastFiles = files;
        const summary = pane.querySelector("[data-files-summary]");
        setText(summary, `${files.length} file${files.length === 1 ? "" : "s"}`);
        const shown = files.slice(0, MAX_ROWS);
        setText(this.el.fileNote, files.length > MAX_ROWS ? `The first ${MAX_ROWS} of ${files.length} files are shown.` : "");
        const order = [];
        for (const f of shown) {
            let row = this.fileRows.get(f.index);
            if (!row) {
                const select = h("select", {
                    "aria-label": `Priority of ${f.path}`,
                    onchange: (ev) => this.setPriorities({ [String(f.index)]: ev.target.value }),
                }, ...priorityOptions());
                const fill = h("span", { class: "fill" });
                row = {
                    tr: h("tr", {},
                        h("td", { class: "path" }, h("span", { text: f.path, title: f.path })),
                        h("td", { class: "r num" }, fmtBytes(f.size)),
                        h("td", { class: "prog" }, h("span", { class: "bar" }, fill), h("span", { class: "pct num" })),
                        h("td", {}, select)),
                    select, fill,
                };
                this.fileRows.set(f.index, row);
            }
            const pct = Math.max(0, Math.min(1, Number(f.progress) || 0));
            row.fill.style.width = `${(pct * 100).toFixed(1)}%`;
            setText(row.tr.querySelector(".pct"), fmtPercent(pct));
            row.tr.dataset.priority = f.priority;
            if (document.activeElement !== row.select) row.select.value = f.priority;
            order.push(row.tr);
        }
        if (this.el.fileBody.childElementCount !== order.length) this.el.fileBody.replaceChildren(...order);
    }

    async setPriorities(map) {
        try {
            const files = await this.deps.call("PATCH", `/torrents/${this.id}/files`, { priorities: map });
            this.renderFiles(files);
        } catch (err) {
            this.deps.reportError(err, "Could not set the priority");
            this.refresh();
        }
    }

    renderPeers(peers) {
        if (!Array.isArray(peers)) return;
        const pane = this.el.panes.peers;
        if (!peers.length) {
            pane.replaceChildren(h("p", { class: "muted note" }, "No connected peers."));
            return;
        }
        const list = [...peers].sort((a, b) => (b.download_rate + b.upload_rate) - (a.download_rate + a.upload_rate)).slice(0, MAX_ROWS);
        pane.replaceChildren(h("div", { class: "table-scroll" }, h("table", { class: "sub peers" },
            h("thead", {}, h("tr", {},
                h("th", { scope: "col" }, "Address"), h("th", { scope: "col" }, "Client"),
                h("th", { scope: "col" }, "Flags"), h("th", { scope: "col", class: "r" }, "Progress"),
                h("th", { scope: "col", class: "r" }, "Down"), h("th", { scope: "col", class: "r" }, "Up"))),
            h("tbody", {}, ...list.map((p) => h("tr", {},
                h("td", { class: "mono" }, String(p.address ?? "")),
                h("td", {}, String(p.client || "—")),
                h("td", { class: "mono", title: "transport, encryption and peer flags" },
                    [p.transport, p.encrypted ? "enc" : "", p.flags].filter(Boolean).join(" ")),
                h("td", { class: "r num" }, fmtPercent(p.progress)),
                h("td", { class: "r num" }, fmtRate(p.download_rate)),
                h("td", { class: "r num" }, fmtRate(p.upload_rate))))))));
    }

    renderTrackers(trackers) {
        if (!Array.isArray(trackers)) return;
        const pane = this.el.panes.trackers;
        if (!trackers.length) {
            pane.replaceChildren(h("p", { class: "muted note" }, "No trackers: peers come from the DHT and peer exchange."));
            return;
        }
        const label = { working: "Working", updating: "Updating", not_contacted: "Not contacted", error: "Error" };
        pane.replaceChildren(h("div", { class: "table-scroll" }, h("table", { class: "sub trackers" },
            h("thead", {}, h("tr", {},
                h("th", { scope: "col" }, "Tracker"), h("th", { scope: "col" }, "Status"),
                h("th", { scope: "col", class: "r" }, "Seeds"), h("th", { scope: "col", class: "r" }, "Leechers"),
                h("th", { scope: "col", class: "r" }, "Next"))),
            h("tbody", {}, ...trackers.slice(0, MAX_ROWS).map((t) => h("tr", {},
                h("td", { class: "mono url" }, h("span", { title: String(t.url) }, String(t.url)),
                    t.message ? h("div", { class: "muted small" }, String(t.message)) : null),
                h("td", {}, h("span", { class: "tstatus", dataset: { status: String(t.status) } }, label[t.status] || String(t.status))),
                h("td", { class: "r num" }, t.seeds ?? "—"),
                h("td", { class: "r num" }, t.leechers ?? "—"),
                h("td", { class: "r num" }, typeof t.next_announce === "number" ? fmtDuration(t.next_announce) : "—")))))));
    }
}

function priorityOptions() {
    return [
        h("option", { value: "skip" }, "Skip"),
        h("option", { value: "normal" }, "Normal"),
        h("option", { value: "high" }, "High"),
    ];
}
