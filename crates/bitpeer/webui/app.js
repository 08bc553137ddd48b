// bitpeer web UI: the torrent list, filters, dialogs and the live event stream.
// Plain ES modules, no build step; every string from the API reaches the page through
// textContent or an attribute, never as markup.

import { api, ApiError, EventStream, BASE } from "./api.js";
import {
    h, icon, setText, fmtBytes, fmtRate, fmtDuration, fmtPercent, fmtRatio, fmtDate,
    fmtLimit, STATE_LABEL, setBackgroundInert,
} from "./util.js";
import { SpeedGraph } from "./graph.js";
import { Details } from "./details.js";

const $ = (id) => document.getElementById(id);

// ---- state --------------------------------------------------------------------------------

const torrents = new Map(); // id -> Torrent object from the API
let session = null;
let categories = {}; // name -> {name, save_path}
const prefs = loadPrefs();
let shown = 500; // rows rendered before "Show more" (keeps huge lists responsive)
const selected = new Set(); // ids ticked for bulk actions (wide screens)
let visibleIds = []; // ids in the current filtered, sorted page

function loadPrefs() {
    const base = { sort: "added_at", dir: "desc", state: "all", category: null, tag: null };
    try {
        const saved = JSON.parse(localStorage.getItem("bitpeer.prefs") || "{}");
        return { ...base, ...saved };
    } catch {
        return base;
    }
}
function savePrefs() {
    try {
        localStorage.setItem("bitpeer.prefs", JSON.stringify(prefs));
    } catch {
        /* private mode: preferences just are not kept */
    }
}

// ---- API wrapper that shows the login form on 401 -------------------------------------------

const call = (method, path, body) =>
    api(method, path, body, { onUnauthorized: () => showLogin() });

export function toast(message, kind = "info") {
    const node = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
        message);
    $("toasts").append(node);
    setTimeout(() => node.classList.add("leaving"), 4200);
    setTimeout(() => node.remove(), 4600);
}

function reportError(err, what) {
    const msg = err instanceof ApiError ? err.message : String(err);
    if (err instanceof ApiError && err.status === 401) return;
    toast(`${what}: ${msg}`, "error");
}

// ---- filters --------------------------------------------------------------------------------

const STATE_FILTERS = [
    { key: "all", label: "All", test: () => true },
    { key: "downloading", label: "Downloading", test: (t) => t.state === "downloading" || t.state === "metadata" },
    { key: "seeding", label: "Seeding", test: (t) => t.state === "seeding" },
    { key: "completed", label: "Completed", test: (t) => t.progress >= 1 },
    { key: "active", label: "Active", test: (t) => t.download_rate > 0 || t.upload_rate > 0 },
    { key: "paused", label: "Paused", test: (t) => t.state === "paused" },
    { key: "queued", label: "Queued", test: (t) => t.state === "queued" },
    { key: "checking", label: "Checking", test: (t) => t.state === "checking" },
    { key: "error", label: "Error", test: (t) => t.state === "error" },
];

function matchCategory(t) {
    if (prefs.category === null) return true;
    return (t.category || "") === prefs.category;
}
function matchTag(t) {
    if (prefs.tag === null) return true;
    const tags = tagsOf(t);
    return prefs.tag === "" ? tags.length === 0 : tags.includes(prefs.tag);
}
function matchSearch(t, words) {
    if (!words.length) return true;
    const name = String(t.name || "").toLowerCase();
    return words.every((w) => name.includes(w));
}

/** One filter list in the sidebar: buttons with aria-pressed and a count. */
function renderFilterList(ul, items, current, onPick) {
    const key = JSON.stringify(items.map((i) => [i.value, i.label, i.count])) + String(current);
    if (ul.dataset.key === key) return;
    ul.dataset.key = key;
    ul.replaceChildren(...items.map((item) =>
        h("li", {},
            h("button", {
                type: "button",
                class: item.count ? "filter" : "filter none",
                "aria-pressed": String(item.value === current),
                dataset: item.state ? { state: item.state } : {},
                onclick: () => onPick(item.value),
            },
            h("span", { class: "filter-label" }, item.label),
            h("span", { class: "filter-count" }, String(item.count))))));
}

const tagsOf = (t) => (Array.isArray(t.tags) ? t.tags : []);

/**
 * Filter items for a grouping (categories or tags): "All", one for torrents in no group
 * (value ""), then each group by name with its count. `known` lists groups to show even
 * when empty.
 */
function groupItems(all, groupsOf, noneLabel, known = []) {
    const count = new Map(known.map((k) => [k, 0]));
    let none = 0;
    for (const t of all) {
        const groups = groupsOf(t);
        if (!groups.length) none++;
        for (const g of groups) count.set(g, (count.get(g) || 0) + 1);
    }
    return [
        { value: null, label: "All", count: all.length },
        { value: "", label: noneLabel, count: none },
        ...[...count.keys()].sort().map((g) => ({ value: g, label: g, count: count.get(g) })),
    ];
}

function renderSidebar(all) {
    const pick = (key) => (v) => {
        prefs[key] = v;
        afterFilterChange();
    };
    const stateItems = STATE_FILTERS.map((f) => ({
        value: f.key, label: f.label, state: f.key, count: all.filter(f.test).length,
    }));
    renderFilterList($("f-state"), stateItems, prefs.state, pick("state"));
    // a chosen category or tag stays listed (maybe with 0) so the choice is visible and undoable
    const chosen = (v) => (v ? [v] : []);
    const catItems = groupItems(all, (t) => (t.category ? [t.category] : []), "Uncategorized",
        [...Object.keys(categories), ...chosen(prefs.category)]);
    renderFilterList($("f-category"), catItems, prefs.category, pick("category"));
    renderFilterList($("f-tag"), groupItems(all, tagsOf, "Untagged", chosen(prefs.tag)), prefs.tag, pick("tag"));

    const options = catItems.slice(2).map((i) => i.value);
    const dl = $("category-options");
    if (dl.dataset.key !== options.join("\n")) {
        dl.dataset.key = options.join("\n");
        dl.replaceChildren(...options.map((c) => h("option", { value: c })));
    }
}

function afterFilterChange() {
    savePrefs();
    shown = 500;
    closeSidebar();
    scheduleRender();
}

// ---- sorting --------------------------------------------------------------------------------

const STATE_ORDER = ["downloading", "metadata", "checking", "queued", "seeding", "paused", "error"];

const COLUMNS = [
    { key: "name", label: "Name", value: (t) => String(t.name || "").toLowerCase(), text: true },
    { key: "size", label: "Size", value: (t) => t.wanted_size ?? t.size ?? 0, num: true },
    { key: "progress", label: "Progress", value: (t) => t.progress ?? 0 },
    { key: "state", label: "Status", value: (t) => STATE_ORDER.indexOf(t.state) },
    { key: "download_rate", label: "Down", value: (t) => t.download_rate ?? 0, num: true },
    { key: "upload_rate", label: "Up", value: (t) => t.upload_rate ?? 0, num: true },
    { key: "eta", label: "ETA", value: (t) => (typeof t.eta === "number" ? t.eta : Infinity), num: true },
    { key: "ratio", label: "Ratio", value: (t) => t.ratio ?? 0, num: true },
    { key: "peers", label: "Peers", value: (t) => t.peers ?? 0, num: true },
    { key: "added_at", label: "Added", value: (t) => t.added_at ?? 0, num: true },
];
const COLUMN = Object.fromEntries(COLUMNS.map((c) => [c.key, c]));

function sorted(list) {
    const col = COLUMN[prefs.sort] || COLUMN.added_at;
    const sign = prefs.dir === "asc" ? 1 : -1;
    return list.sort((a, b) => {
        const x = col.value(a);
        const y = col.value(b);
        let r;
        if (col.text) r = x.localeCompare(y);
        else r = x < y ? -1 : x > y ? 1 : 0;
        return r * sign || a.id - b.id;
    });
}

function setSort(key) {
    if (prefs.sort === key) prefs.dir = prefs.dir === "asc" ? "desc" : "asc";
    else {
        prefs.sort = key;
        prefs.dir = COLUMN[key].text ? "asc" : "desc";
    }
    savePrefs();
    renderHead();
    scheduleRender();
}

function renderHead() {
    const cells = COLUMNS.map((c) => {
        const active = prefs.sort === c.key;
        const th = h("th", {
            scope: "col",
            class: `c-${c.key}`,
            "aria-sort": active ? (prefs.dir === "asc" ? "ascending" : "descending") : "none",
        }, h("button", { type: "button", class: "sort-btn", onclick: () => setSort(c.key) },
            c.label, h("span", { class: "sort-arrow", "aria-hidden": "true" },
                active ? (prefs.dir === "asc" ? "▲" : "▼") : "")));
        return th;
    });
    cells.unshift(h("th", { scope: "col", class: "c-select" }, h("input", {
        type: "checkbox", id: "select-all", class: "select", "aria-label": "Select every torrent shown",
        onchange: (ev) => {
            for (const id of visibleIds) {
                if (ev.target.checked) selected.add(id);
                else selected.delete(id);
            }
            scheduleRender();
        },
    })));
    cells.push(h("th", { scope: "col", class: "c-actions" }, h("span", { class: "visually-hidden" }, "Actions")));
    $("list-head").replaceChildren(...cells);
    const sel = $("sort");
    if (!sel.options.length) {
        sel.append(...COLUMNS.map((c) => h("option", { value: c.key }, c.label)));
        sel.addEventListener("change", () => {
            prefs.sort = sel.value;
            savePrefs();
            renderHead();
            scheduleRender();
        });
    }
    sel.value = prefs.sort;
    $("sort-dir").setAttribute("aria-label",
        prefs.dir === "asc" ? "Ascending; switch to descending" : "Descending; switch to ascending");
    $("sort-dir").dataset.dir = prefs.dir;
}

// ---- rows -----------------------------------------------------------------------------------

const rows = new Map(); // id -> {tr, parts}

function makeRow(id) {
    const p = {};
    const cell = (key, ...kids) => h("td", { class: `c-${key}` }, ...kids);
    p.name = h("button", { type: "button", class: "name-btn", onclick: () => details.open(id) });
    p.chips = h("span", { class: "chips" });
    p.size = h("span", { class: "num" });
    p.fill = h("span", { class: "fill" });
    p.bar = h("span", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" }, p.fill);
    p.pct = h("span", { class: "pct num" });
    p.badge = h("span", { class: "badge" });
    p.down = h("span", { class: "num" });
    p.up = h("span", { class: "num" });
    p.eta = h("span", { class: "num" });
    p.ratio = h("span", { class: "num" });
    p.peers = h("span", { class: "num" });
    p.added = h("span", { class: "num" });
    p.select = h("input", {
        type: "checkbox", class: "select",
        onchange: (ev) => {
            if (ev.target.checked) selected.add(id);
            else selected.delete(id);
            scheduleRender();
        },
    });
    p.err = h("span", { class: "row-error" });
    p.toggle = h("button", { type: "button", class: "icon-btn row-btn", onclick: () => togglePause(id) });
    p.toggleIcon = icon("pause");
    p.toggle.append(p.toggleIcon);
    p.remove = h("button", { type: "button", class: "icon-btn row-btn danger-hover", title: "Remove", onclick: () => askRemove(id) }, icon("trash"));
    const tr = h("tr", { dataset: { id: String(id) } },
        cell("select", p.select),
        cell("name", p.name, p.chips, p.err),
        cell("size", p.size),
        cell("progress", p.bar, p.pct),
        cell("state", p.badge),
        h("td", { class: "c-download_rate", dataset: { label: "↓" } }, p.down),
        h("td", { class: "c-upload_rate", dataset: { label: "↑" } }, p.up),
        h("td", { class: "c-eta", dataset: { label: "ETA" } }, p.eta),
        h("td", { class: "c-ratio", dataset: { label: "Ratio" } }, p.ratio),
        h("td", { class: "c-peers", title: "Seeds / peers", dataset: { label: "Peers" } }, p.peers),
        cell("added_at", p.added),
        cell("actions", p.toggle, p.remove));
    tr.addEventListener("click", (ev) => {
        if (ev.target.closest("button, a, input, select, td.c-select")) return;
        details.open(id);
    });
    return { tr, p, chipsKey: null };
}

function isPaused(t) {
    return t.state === "paused" || t.state === "error";
}

function updateRow(row, t) {
    const p = row.p;
    const name = String(t.name || t.info_hash || `#${t.id}`);
    setText(p.name, name);
    p.name.title = name;
    p.name.setAttribute("aria-label", `${name}: open details`);
    const chipsKey = JSON.stringify([t.category || "", t.tags || []]);
    if (row.chipsKey !== chipsKey) {
        row.chipsKey = chipsKey;
        const chips = [];
        if (t.category) chips.push(h("span", { class: "chip cat" }, t.category));
        for (const tag of tagsOf(t)) chips.push(h("span", { class: "chip" }, tag));
        p.chips.replaceChildren(...chips);
    }
    setText(p.size, fmtBytes(t.wanted_size ?? t.size));
    const pct = Math.max(0, Math.min(1, Number(t.progress) || 0));
    p.fill.style.width = `${(pct * 100).toFixed(2)}%`;
    p.bar.setAttribute("aria-valuenow", (pct * 100).toFixed(1));
    p.bar.setAttribute("aria-label", `${name} progress`);
    p.bar.dataset.state = t.state;
    setText(p.pct, fmtPercent(pct));
    p.badge.dataset.state = t.state;
    setText(p.badge, STATE_LABEL[t.state] || String(t.state));
    p.badge.title = t.state === "error" && t.error ? String(t.error) : "";
    setText(p.down, fmtRate(t.download_rate));
    setText(p.up, fmtRate(t.upload_rate));
    setText(p.eta, t.state === "downloading" ? fmtDuration(t.eta) : "—");
    setText(p.ratio, fmtRatio(t.ratio));
    setText(p.peers, `${t.seeds ?? 0} / ${t.peers ?? 0}`);
    setText(p.added, fmtDate(t.added_at));
    const paused = isPaused(t);
    if (row.paused !== paused) {
        row.paused = paused;
        p.toggleIcon.firstChild.setAttribute("href", paused ? "#i-play" : "#i-pause");
    }
    p.toggle.setAttribute("aria-label", `${paused ? "Resume" : "Pause"} ${name}`);
    p.toggle.title = paused ? "Resume" : "Pause";
    p.remove.setAttribute("aria-label", `Remove ${name}`);
    p.select.setAttribute("aria-label", `Select ${name}`);
    setText(p.err, t.state === "error" && t.error ? String(t.error) : "");
    row.tr.dataset.state = t.state;
}

/** The marks that do not come from the torrent: ticked for bulk actions, open in details. */
function updateMarks(row, id) {
    const ticked = selected.has(id);
    const open = details.id === id;
    if (row.ticked === ticked && row.open === open) return;
    row.ticked = ticked;
    row.open = open;
    row.p.select.checked = ticked;
    row.tr.classList.toggle("ticked", ticked);
    row.tr.classList.toggle("selected", open);
}

// ---- render ---------------------------------------------------------------------------------

let renderQueued = false;
export function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
        renderQueued = false;
        render();
    });
}

let lastOrder = "";
function render() {
    const all = [...torrents.values()];
    renderSidebar(all);
    const stateTest = (STATE_FILTERS.find((f) => f.key === prefs.state) || STATE_FILTERS[0]).test;
    const words = $("search").value.toLowerCase().split(/\s+/).filter(Boolean);
    const visible = sorted(all.filter((t) =>
        stateTest(t) && matchCategory(t) && matchTag(t) && matchSearch(t, words)));
    const page = visible.slice(0, shown);

    const keep = new Set(page.map((t) => t.id));
    for (const [id, row] of rows) {
        if (!keep.has(id)) {
            row.tr.remove();
            rows.delete(id);
        }
    }
    for (const t of page) {
        let row = rows.get(t.id);
        if (!row) {
            row = makeRow(t.id);
            rows.set(t.id, row);
        }
        // an unchanged torrent keeps its object (upsert replaces changed ones), so only
        // changed rows touch the DOM
        if (row.t !== t) {
            row.t = t;
            updateRow(row, t);
        }
        updateMarks(row, t.id);
    }
    visibleIds = page.map((t) => t.id);
    renderBulk();
    const order = page.map((t) => t.id).join(",");
    if (order !== lastOrder) {
        lastOrder = order;
        $("rows").replaceChildren(...page.map((t) => rows.get(t.id).tr));
    }

    $("more").hidden = visible.length <= shown;
    setText($("more"), `Show ${Math.min(500, visible.length - shown)} more`);
    const filtered = visible.length !== all.length;
    setText($("count"), filtered ? `${visible.length} of ${all.length}` : `${all.length} torrent${all.length === 1 ? "" : "s"}`);
    const empty = visible.length === 0;
    $("empty").hidden = !empty || !session;
    $("list").classList.toggle("is-empty", empty);
    if (empty) {
        setText($("empty-title"), all.length ? "Nothing matches" : "No torrents yet");
        setText($("empty-text"), all.length
            ? "No torrent matches these filters. Choose “All” in the sidebar or clear the search."
            : "Add a .torrent file, a magnet link or a URL. You can also drop .torrent files anywhere on this page.");
        $("empty-add").hidden = all.length > 0;
    }
}

function renderBulk() {
    const all = $("select-all");
    const ticked = visibleIds.filter((id) => selected.has(id)).length;
    all.checked = ticked > 0 && ticked === visibleIds.length;
    all.indeterminate = ticked > 0 && ticked < visibleIds.length;
    $("bulk").hidden = selected.size === 0;
    setText($("bulk-count"), `${selected.size} selected`);
}

async function bulk(action) {
    const ids = [...selected].filter((id) => torrents.has(id));
    const failures = [];
    for (const id of ids) {
        try {
            upsert(await call("POST", `/torrents/${id}/${action}`));
        } catch (err) {
            failures.push(`${torrents.get(id)?.name}: ${err.message}`);
        }
    }
    if (failures.length) toast(`Could not ${action} ${failures.length}: ${failures[0]}`, "error");
}

function renderSession() {
    if (!session) return;
    setText($("rate-down"), fmtRate(session.download_rate));
    setText($("rate-up"), fmtRate(session.upload_rate));
    setText($("limit-down"), session.download_limit > 0 ? ` / ${fmtRate(session.download_limit)}` : "");
    setText($("limit-up"), session.upload_limit > 0 ? ` / ${fmtRate(session.upload_limit)}` : "");
    setText($("g-down"), fmtRate(session.download_rate));
    setText($("g-up"), fmtRate(session.upload_rate));
    setText($("g-downloaded"), fmtBytes(session.downloaded));
    setText($("g-uploaded"), fmtBytes(session.uploaded));
    setText($("g-dht"), session.dht_nodes ?? "—");
    document.title = session.download_rate > 0 || session.upload_rate > 0
        ? `↓ ${fmtRate(session.download_rate)} ↑ ${fmtRate(session.upload_rate)} · bitpeer`
        : "bitpeer";
}

// ---- actions --------------------------------------------------------------------------------

function upsert(t) {
    if (t && typeof t.id === "number") {
        torrents.set(t.id, t);
        details.update(t);
        scheduleRender();
    }
}

export async function togglePause(id) {
    const t = torrents.get(id);
    if (!t) return;
    const action = isPaused(t) ? "resume" : "pause";
    try {
        upsert(await call("POST", `/torrents/${id}/${action}`));
    } catch (err) {
        reportError(err, action === "pause" ? "Could not pause" : "Could not resume");
    }
}

export async function torrentAction(id, action) {
    try {
        upsert(await call("POST", `/torrents/${id}/${action}`));
    } catch (err) {
        reportError(err, `Could not ${action.replace("_", " ")}`);
    }
}

let removeIds = [];
/** Asks before removing one torrent (`id`) or several (an array of ids). */
export function askRemove(ids) {
    removeIds = (Array.isArray(ids) ? ids : [ids]).filter((id) => torrents.has(id));
    if (!removeIds.length) return;
    const first = torrents.get(removeIds[0]);
    setText($("rm-title"), removeIds.length === 1 ? "Remove torrent?" : `Remove ${removeIds.length} torrents?`);
    setText($("rm-text"), removeIds.length === 1
        ? `“${first.name}” will be removed from the list.`
        : `“${first.name}” and ${removeIds.length - 1} more will be removed from the list.`);
    $("rm-data").checked = false;
    setText($("rm-submit"), "Remove");
    $("rm-error").hidden = true;
    $("dlg-remove").showModal();
}

async function doRemove(ev) {
    ev.preventDefault();
    const withData = $("rm-data").checked;
    const failures = [];
    let done = 0;
    let name = "";
    for (const id of removeIds) {
        try {
            name = torrents.get(id)?.name || "torrent";
            await call("DELETE", `/torrents/${id}${withData ? "?delete_data=true" : ""}`);
            removed(id);
            done++;
        } catch (err) {
            failures.push(`${name}: ${err.message}`);
        }
    }
    if (failures.length) {
        $("rm-error").hidden = false;
        setText($("rm-error"), failures.join("\n"));
        removeIds = removeIds.filter((id) => torrents.has(id));
        return;
    }
    $("dlg-remove").close();
    const what = done === 1 ? `“${name}”` : `${done} torrents`;
    const data = done === 1 ? "its data" : "their data";
    toast(withData ? `Removed ${what} and ${data}` : `Removed ${what}`);
}

function removed(id) {
    torrents.delete(id);
    selected.delete(id);
    if (details.id === id) details.close();
    scheduleRender();
}

// ---- add dialog -----------------------------------------------------------------------------

let pickedFiles = [];

function setAddTab(which) {
    const file = which === "file";
    $("add-tab-file").setAttribute("aria-selected", String(file));
    $("add-tab-link").setAttribute("aria-selected", String(!file));
    $("add-tab-file").tabIndex = file ? 0 : -1;
    $("add-tab-link").tabIndex = file ? -1 : 0;
    $("add-pane-file").hidden = !file;
    $("add-pane-link").hidden = file;
}

function renderPicked() {
    $("add-files").replaceChildren(...pickedFiles.map((f, i) =>
        h("li", {}, icon("file"), h("span", { class: "picked-name" }, f.name),
            h("span", { class: "muted num" }, fmtBytes(f.size)),
            h("button", {
                type: "button", class: "icon-btn", "aria-label": `Do not add ${f.name}`,
                onclick: () => {
                    pickedFiles.splice(i, 1);
                    renderPicked();
                },
            }, icon("x")))));
}

export function openAdd(files = []) {
    pickedFiles = [...files];
    renderPicked();
    $("add-error").hidden = true;
    $("add-links").value = "";
    setAddTab("file");
    if (!$("dlg-add").open) $("dlg-add").showModal();
}

function addOptions() {
    const tags = $("add-tags").value.split(",").map((s) => s.trim()).filter(Boolean);
    return {
        save_path: $("add-path").value.trim(),
        category: $("add-category").value.trim(),
        tags,
        paused: $("add-paused").checked,
    };
}

async function doAdd(ev) {
    ev.preventDefault();
    const opts = addOptions();
    const links = $("add-links").value.split("\n").map((s) => s.trim()).filter(Boolean);
    if (!pickedFiles.length && !links.length) {
        $("add-error").hidden = false;
        setText($("add-error"), "Choose a .torrent file, or paste a magnet link or URL.");
        return;
    }
    const bad = links.find((l) => !/^(magnet:\?|https?:\/\/)/i.test(l));
    if (bad) {
        $("add-error").hidden = false;
        setText($("add-error"), `Not a magnet link or http(s) URL: ${bad.slice(0, 80)}`);
        return;
    }
    $("add-submit").disabled = true;
    const failures = [];
    let added = 0;
    for (const file of pickedFiles) {
        const form = new FormData();
        form.append("torrent", file, file.name);
        if (opts.save_path) form.append("save_path", opts.save_path);
        if (opts.category) form.append("category", opts.category);
        if (opts.tags.length) form.append("tags", opts.tags.join(","));
        form.append("paused", String(opts.paused));
        try {
            await call("POST", "/torrents", form);
            added++;
        } catch (err) {
            failures.push(`${file.name}: ${err.message}`);
        }
    }
    for (const link of links) {
        const body = { paused: opts.paused, tags: opts.tags };
        if (opts.save_path) body.save_path = opts.save_path;
        if (opts.category) body.category = opts.category;
        if (link.toLowerCase().startsWith("magnet:")) body.magnet = link;
        else body.url = link;
        try {
            await call("POST", "/torrents", body);
            added++;
        } catch (err) {
            failures.push(`${link.slice(0, 60)}: ${err.message}`);
        }
    }
    $("add-submit").disabled = false;
    if (added) toast(added === 1 ? "Torrent added" : `${added} torrents added`);
    if (failures.length) {
        $("add-error").hidden = false;
        setText($("add-error"), failures.join("\n"));
        pickedFiles = [];
        renderPicked();
        return;
    }
    $("dlg-add").close();
}

// ---- speed limits ---------------------------------------------------------------------------

function openLimits() {
    const kib = (n) => (n > 0 ? String(Math.round(n / 1024)) : "");
    $("lim-down").value = kib(session?.download_limit);
    $("lim-up").value = kib(session?.upload_limit);
    $("lim-error").hidden = true;
    $("dlg-limits").showModal();
}

async function saveLimits(ev) {
    ev.preventDefault();
    const parse = (s) => {
        const v = s.trim() === "" ? 0 : Number(s);
        return Number.isFinite(v) && v >= 0 ? Math.round(v * 1024) : NaN;
    };
    const body = { download_limit: parse($("lim-down").value), upload_limit: parse($("lim-up").value) };
    if (Number.isNaN(body.download_limit) || Number.isNaN(body.upload_limit)) {
        $("lim-error").hidden = false;
        setText($("lim-error"), "Limits are numbers of KiB/s, 0 or more.");
        return;
    }
    try {
        session = { ...session, ...(await call("PATCH", "/session", body)) };
        renderSession();
        $("dlg-limits").close();
        toast(`Limits: ↓ ${fmtLimit(body.download_limit)}, ↑ ${fmtLimit(body.upload_limit)}`);
    } catch (err) {
        $("lim-error").hidden = false;
        setText($("lim-error"), err.message);
    }
}

// ---- theme ----------------------------------------------------------------------------------

function applyTheme(theme) {
    document.documentElement.dataset.theme = theme;
    const next = theme === "dark" ? "light" : "dark";
    $("btn-theme").setAttribute("aria-label", `Switch to ${next} theme`);
    $("theme-icon").setAttribute("href", theme === "dark" ? "#i-sun" : "#i-moon");
    graph.draw();
    details.redraw();
}

function setupTheme() {
    applyTheme(document.documentElement.dataset.theme === "dark" ? "dark" : "light");
    $("btn-theme").addEventListener("click", () => {
        const theme = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
        try {
            localStorage.setItem("bitpeer.theme", theme);
        } catch {
            /* not kept */
        }
        applyTheme(theme);
    });
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", (e) => {
        let saved = null;
        try {
            saved = localStorage.getItem("bitpeer.theme");
        } catch {
            saved = null;
        }
        if (!saved) applyTheme(e.matches ? "dark" : "light");
    });
}

// ---- sidebar on narrow screens ---------------------------------------------------------------

function openSidebar() {
    document.body.classList.add("sidebar-open");
    setBackgroundInert(true);
    $("layout").removeAttribute("inert"); // the drawer lives in the layout: only the list goes inert
    $("main").inert = true;
    $("sidebar-backdrop").hidden = false;
    $("nav-toggle").setAttribute("aria-expanded", "true");
    $("nav-close").focus();
    graph.draw();
}
function closeSidebar() {
    if (!document.body.classList.contains("sidebar-open")) return;
    document.body.classList.remove("sidebar-open");
    setBackgroundInert(false);
    $("main").inert = false;
    $("sidebar-backdrop").hidden = true;
    $("nav-toggle").setAttribute("aria-expanded", "false");
}

// ---- login and the live stream ---------------------------------------------------------------

function setConn(state) {
    const conn = $("conn");
    conn.dataset.state = state;
    setText($("conn-text"), {
        connecting: "Connecting…", live: "Live", offline: "Reconnecting…", unauthorized: "Signed out",
    }[state] || state);
    if (state === "unauthorized") showLogin();
}

function showLogin() {
    stream.stop();
    if (!$("login").hidden) return;
    $("login").hidden = false;
    document.body.classList.add("locked");
    $("login-user").focus();
}

async function doLogin(ev) {
    ev.preventDefault();
    const body = { username: $("login-user").value, password: $("login-pass").value };
    try {
        await api("POST", "/login", body);
        $("login").hidden = true;
        document.body.classList.remove("locked");
        $("login-pass").value = "";
        $("login-error").hidden = true;
        loadCategories();
        stream.start();
    } catch (err) {
        $("login-error").hidden = false;
        setText($("login-error"), err.status === 401 ? "Wrong user or password." : err.message);
    }
}

async function probe() {
    try {
        const res = await fetch(`${BASE}/session`, { headers: { Accept: "application/json" } });
        return res.status;
    } catch {
        return 0;
    }
}

async function loadCategories() {
    try {
        const c = await call("GET", "/categories");
        if (c && typeof c === "object") categories = c;
        scheduleRender();
    } catch {
        /* categories are a nicety; the list still works */
    }
}

const stream = new EventStream({
    status: setConn,
    snapshot(data) {
        torrents.clear();
        for (const t of Array.isArray(data.torrents) ? data.torrents : []) upsert(t);
        if (data.session) {
            session = data.session;
            renderSession();
        }
        for (const id of selected) if (!torrents.has(id)) selected.delete(id);
        if (details.id !== null && !torrents.has(details.id)) details.close();
        scheduleRender();
    },
    torrents(list) {
        if (Array.isArray(list)) list.forEach(upsert);
    },
    removed(data) {
        if (data && typeof data.id === "number") removed(data.id);
    },
    session(s) {
        session = s;
        renderSession();
        graph.push(s.download_rate, s.upload_rate);
    },
}, probe);

// ---- wiring ---------------------------------------------------------------------------------

const graph = new SpeedGraph($("graph"));
const details = new Details($("details"), $("details-backdrop"), {
    call, torrents, askRemove, togglePause, torrentAction, reportError, isPaused, upsert, toast,
    onChange: () => scheduleRender(),
});

function wire() {
    $("btn-add").addEventListener("click", () => openAdd());
    $("empty-add").addEventListener("click", () => openAdd());
    $("btn-limits").addEventListener("click", openLimits);
    $("nav-toggle").addEventListener("click", () =>
        document.body.classList.contains("sidebar-open") ? closeSidebar() : openSidebar());
    $("sidebar-backdrop").addEventListener("click", closeSidebar);
    $("nav-close").addEventListener("click", () => {
        closeSidebar();
        $("nav-toggle").focus();
    });
    $("search").addEventListener("input", () => {
        shown = 500;
        scheduleRender();
    });
    $("sort-dir").addEventListener("click", () => {
        prefs.dir = prefs.dir === "asc" ? "desc" : "asc";
        savePrefs();
        renderHead();
        scheduleRender();
    });
    $("bulk-resume").addEventListener("click", () => bulk("resume"));
    $("bulk-pause").addEventListener("click", () => bulk("pause"));
    $("bulk-remove").addEventListener("click", () => askRemove([...selected]));
    $("bulk-clear").addEventListener("click", () => {
        selected.clear();
        scheduleRender();
    });
    $("more").addEventListener("click", () => {
        shown += 500;
        scheduleRender();
    });
    for (const dlg of document.querySelectorAll("dialog")) {
        dlg.addEventListener("click", (ev) => {
            if (ev.target.closest("[data-close]") || ev.target === dlg) dlg.close();
        });
    }
    $("add-form").addEventListener("submit", doAdd);
    $("rm-form").addEventListener("submit", doRemove);
    $("rm-data").addEventListener("change", () =>
        setText($("rm-submit"), $("rm-data").checked ? "Remove and delete data" : "Remove"));
    $("lim-form").addEventListener("submit", saveLimits);
    $("login-form").addEventListener("submit", doLogin);
    $("add-tab-file").addEventListener("click", () => setAddTab("file"));
    $("add-tab-link").addEventListener("click", () => {
        setAddTab("link");
        $("add-links").focus();
    });
    for (const tab of [$("add-tab-file"), $("add-tab-link")]) {
        tab.addEventListener("keydown", (ev) => {
            if (ev.key !== "ArrowLeft" && ev.key !== "ArrowRight") return;
            const other = tab.id === "add-tab-file" ? $("add-tab-link") : $("add-tab-file");
            other.click();
            other.focus();
        });
    }
    $("add-category").addEventListener("input", () => {
        const folder = categories[$("add-category").value.trim()]?.save_path;
        $("add-path").placeholder = folder ? `${folder} (the category's folder)` : "Default folder";
    });
    $("add-file").addEventListener("change", () => {
        pickedFiles.push(...$("add-file").files);
        $("add-file").value = "";
        renderPicked();
    });

    // drag and drop: anywhere on the page, and onto the dialog's drop target
    let depth = 0;
    const hasFiles = (ev) => [...(ev.dataTransfer?.types || [])].includes("Files");
    window.addEventListener("dragenter", (ev) => {
        if (!hasFiles(ev)) return;
        ev.preventDefault();
        depth++;
        if (!$("dlg-add").open) $("dropzone").hidden = false;
        $("drop-target").classList.add("over");
    });
    window.addEventListener("dragover", (ev) => {
        if (hasFiles(ev)) ev.preventDefault();
    });
    window.addEventListener("dragleave", () => {
        depth = Math.max(0, depth - 1);
        if (!depth) {
            $("dropzone").hidden = true;
            $("drop-target").classList.remove("over");
        }
    });
    window.addEventListener("drop", (ev) => {
        if (!hasFiles(ev)) return;
        ev.preventDefault();
        depth = 0;
        $("dropzone").hidden = true;
        $("drop-target").classList.remove("over");
        const files = [...ev.dataTransfer.files].filter((f) => /\.torrent$/i.test(f.name) || f.type === "application/x-bittorrent");
        if (!files.length) {
            toast("Only .torrent files can be dropped here", "error");
            return;
        }
        if ($("dlg-add").open) {
            pickedFiles.push(...files);
            renderPicked();
        } else openAdd(files);
    });

    document.addEventListener("keydown", (ev) => {
        if (ev.key === "Escape") {
            if (document.body.classList.contains("sidebar-open")) closeSidebar();
            else if (details.id !== null && !document.querySelector("dialog[open]")) details.close();
        }
        const typing = ev.target.closest("input, textarea, select, [contenteditable]");
        if (typing || ev.ctrlKey || ev.metaKey || ev.altKey || document.querySelector("dialog[open]")) return;
        if (ev.key === "/") {
            ev.preventDefault();
            $("search").focus();
        } else if (ev.key === "a" || ev.key === "n") {
            ev.preventDefault();
            openAdd();
        }
    });
}

window.addEventListener("online", () => stream.wake());
document.addEventListener("visibilitychange", () => {
    if (!document.hidden) stream.wake();
});

renderHead();
setupTheme();
wire();
loadCategories();
stream.start();
