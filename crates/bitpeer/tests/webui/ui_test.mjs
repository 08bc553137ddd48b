#!/usr/bin/env node
// Browser test of bitpeer's web UI: drives Debian's chromium through playwright-core (no
// downloaded browser). Against a running daemon (or tests/webui/mock_api.py) it adds a
// torrent by file upload, waits until it is complete, pauses, resumes and removes it with
// its data, and takes screenshots at phone and desktop widths in light and dark.
//
//   node ui_test.mjs --url http://127.0.0.1:PORT --torrent FILE.torrent --shots DIR
//                    [--user U --password P] [--timeout SECONDS] [--no-magnet]
//
// Steps: sign in if asked; add FILE through the upload dialog; wait (bounded) until its row
// is Seeding at 100%; screenshots; state, category and tag filters; sort by name; file
// priorities skip/normal; category and tags saved from the Settings tab; global limits set
// and cleared; the theme choice kept across a reload; a dropped file opens the add dialog;
// a magnet link added paused, then removed (skip with --no-magnet); pause; resume; remove
// with data. Any error in the page's console fails the test.
//
// playwright-core comes from scripts/install-webui.sh
// (${XDG_CACHE_HOME:-$HOME/.cache}/bitpeer/npm-webui; PLAYWRIGHT_CORE_DIR overrides).
// Exits 0 when every step passed, else 1 with one `error: ...` line (and a failure
// screenshot in the shots folder).

import { createRequire } from "node:module";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir, homedir } from "node:os";
import { join, resolve } from "node:path";

const CHROMIUM = process.env.BITPEER_CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1440, height: 900 };

function fail(message) {
    console.error(`error: ${message}`);
    process.exit(1);
}

function parseArgs(argv) {
    const out = { timeout: 180, magnet: true };
    const positional = [];
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const value = () => {
            if (i + 1 >= argv.length) fail(`${a} needs a value`);
            return argv[++i];
        };
        if (a === "--url") out.url = value();
        else if (a === "--torrent") out.torrent = value();
        else if (a === "--shots") out.shots = value();
        else if (a === "--user") out.user = value();
        else if (a === "--password") out.password = value();
        else if (a === "--timeout") out.timeout = Number(value());
        else if (a === "--no-magnet") out.magnet = false;
        else if (a === "--cid") out.cid = value();
        else if (a === "--help" || a === "-h") {
            console.log("usage: node ui_test.mjs --url URL --torrent FILE --shots DIR [--user U --password P] [--timeout S] [--no-magnet] [--cid CID]");
            process.exit(0);
        } else if (a.startsWith("--")) fail(`unknown option ${a}`);
        else positional.push(a);
    }
    out.url ??= positional[0];
    out.torrent ??= positional[1];
    out.shots ??= positional[2];
    if (!out.url || !out.torrent || !out.shots) fail("usage: node ui_test.mjs --url URL --torrent FILE --shots DIR");
    if (!Number.isFinite(out.timeout) || out.timeout <= 0) fail("--timeout must be a number of seconds");
    out.password ??= process.env.BITPEER_API_PASSWORD;
    return out;
}

/** The `info.name` of a .torrent file (a minimal bencode walk; enough to find its row). */
function torrentName(buf) {
    let i = 0;
    const next = () => {
        const c = String.fromCharCode(buf[i]);
        if (c === "i") {
            const e = buf.indexOf(0x65, i);
            i = e + 1;
            return null;
        }
        if (c === "l" || c === "d") {
            const dict = c === "d";
            i++;
            const obj = {};
            while (buf[i] !== 0x65) {
                if (i >= buf.length) throw new Error("truncated");
                if (dict) {
                    const k = next().toString("utf8");
                    obj[k] = next();
                } else next();
            }
            i++;
            return dict ? obj : null;
        }
        const colon = buf.indexOf(0x3a, i);
        if (colon < 0) throw new Error("bad string");
        const n = Number(buf.subarray(i, colon).toString());
        const s = buf.subarray(colon + 1, colon + 1 + n);
        i = colon + 1 + n;
        return s;
    };
    const meta = next();
    const name = meta?.info?.name;
    if (!name) throw new Error("no info.name");
    return name.toString("utf8");
}

const npmDir = process.env.PLAYWRIGHT_CORE_DIR ||
    join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "bitpeer", "npm-webui");
const requireNpm = createRequire(join(npmDir, "package.json"));

function loadPlaywright() {
    try {
        return requireNpm("playwright-core");
    } catch {
        fail(`playwright-core not found in ${npmDir}; run scripts/install-webui.sh`);
    }
}

/** axe-core's source (run inside the page), or null when it is not installed. */
function loadAxe() {
    try {
        return readFileSync(requireNpm.resolve("axe-core/axe.min.js"), "utf8");
    } catch {
        return null;
    }
}

const opts = parseArgs(process.argv.slice(2));
if (!existsSync(CHROMIUM)) fail(`${CHROMIUM} is missing; run scripts/install-webui.sh (apt-get install chromium)`);
let name;
try {
    name = torrentName(readFileSync(opts.torrent));
} catch (e) {
    fail(`cannot read the torrent name from ${opts.torrent}: ${e.message}`);
}
const shots = resolve(opts.shots);
mkdirSync(shots, { recursive: true });
const { chromium } = loadPlaywright();
const axeSource = loadAxe();
if (!axeSource) fail(`axe-core not found in ${npmDir}; run scripts/install-webui.sh`);
const profile = mkdtempSync(join(tmpdir(), "bitpeer-ui-test-"));
const deadline = Date.now() + opts.timeout * 1000;
const left = () => Math.max(1000, deadline - Date.now());

let context;
let page;
let step = "starting chromium";
const pageErrors = [];

function log(msg) {
    console.log(`ui_test: ${msg}`);
}

/** A screenshot of the viewport; phone ones at the device's 2x pixels, desktop ones at 1x. */
async function shot(file) {
    await page.evaluate(() => document.activeElement?.blur()); // no focus ring in the pictures
    await page.waitForTimeout(350); // let transitions and the canvas settle
    const phone = page.viewportSize().width < 600;
    await page.screenshot({ path: join(shots, file), scale: phone ? "device" : "css" });
    log(`screenshot ${file}`);
}

async function setTheme(theme) {
    await page.emulateMedia({ colorScheme: theme });
    await page.waitForFunction((t) => document.documentElement.dataset.theme === t, theme, { timeout: 5000 });
}

/** Polls `check` every 200 ms until it is true; after `ms` throws the message of `why`. */
async function until(check, ms, why) {
    const end = Date.now() + ms;
    while (!(await check())) {
        if (Date.now() > end) throw new Error(await why());
        await new Promise((r) => setTimeout(r, 200));
    }
}

/** The button of one filter in a sidebar list (#f-state, #f-category, #f-tag), by exact label. */
const filterButton = (list, label) => page.locator(`#${list} button`, {
    has: page.locator(".filter-label", { hasText: new RegExp(`^${label.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`) }),
});

/**
 * Runs axe-core's WCAG 2.1 A/AA rules on the page as it is now. Serious and critical
 * violations fail the test; others are printed.
 */
async function checkAccessibility(where) {
    step = `checking accessibility (${where})`;
    await page.waitForTimeout(300); // let the panel's or dialog's animation finish (colour checks)
    // ...and wait for any that has not (a loaded machine runs them late): colours read
    // mid-transition fail the contrast rule. Finite animations only, bounded.
    await page.evaluate(() => Promise.race([
        Promise.all(document.getAnimations()
            .filter((a) => a.effect?.getTiming().iterations !== Infinity)
            .map((a) => a.finished.catch(() => {}))),
        new Promise((r) => setTimeout(r, 5000)),
    ]));
    if (!(await page.evaluate(() => Boolean(window.axe)))) await page.evaluate(axeSource);
    const found = await page.evaluate(async () => {
        const r = await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
        return r.violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")),
        }));
    });
    for (const v of found) log(`accessibility (${where}): ${v.impact} ${v.id}: ${v.help} at ${v.nodes.join(", ")}`);
    const bad = found.filter((v) => v.impact === "serious" || v.impact === "critical");
    if (bad.length) throw new Error(`${bad.length} serious accessibility problem(s) (${where}): ${bad.map((v) => v.id).join(", ")}`);
    a11yChecks++;
}
let a11yChecks = 0;

/** The torrent's id, read from its row (data-id). */
const torrentId = async () => Number(await row().getAttribute("data-id"));

const row = () => page.locator("#rows tr", { has: page.locator(".name-btn", { hasText: name }) }).first();

async function waitRowState(states, what, timeout = left()) {
    step = `waiting until the torrent is ${what}`;
    await page.waitForFunction(([n, s]) => {
        for (const tr of document.querySelectorAll("#rows tr")) {
            if (tr.querySelector(".name-btn")?.textContent === n) return s.includes(tr.dataset.state);
        }
        return false;
    }, [name, states], { timeout, polling: 250 });
}

async function run() {
    context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, viewport: DESKTOP, deviceScaleFactor: 2,
        colorScheme: "light", timeout: 60000,
    });
    page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(20000);
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    page.on("console", (m) => {
        if (m.type() === "error" && !/Failed to load resource|EventSource/.test(m.text())) pageErrors.push(m.text());
    });

    step = `opening ${opts.url}`;
    await page.goto(opts.url, { waitUntil: "domcontentloaded", timeout: 30000 });
    step = "waiting for the live event stream (or the login form)";
    await page.waitForSelector('#conn[data-state="live"], #login:not([hidden])', { timeout: 30000 });
    if (await page.locator("#login").isVisible()) {
        if (!opts.user) throw new Error("the UI asks to sign in; pass --user and --password");
        await checkAccessibility("login form");
        step = "signing in";
        await page.fill("#login-user", opts.user);
        await page.fill("#login-pass", opts.password || "");
        await page.click('#login-form button[type="submit"]');
        await page.waitForSelector('#conn[data-state="live"], #login-error:not([hidden])', { timeout: 20000 });
        if (await page.locator("#login-error").isVisible()) {
            throw new Error(`the daemon refused the login: ${await page.locator("#login-error").textContent()}`);
        }
        log("signed in");
    }
    log("event stream live");
    if ((await page.locator("#rows tr").count()) === 0) await shot("desktop-light-empty.png");

    step = "checking the theme toggle";
    const before = await page.evaluate(() => document.documentElement.dataset.theme);
    await page.click("#btn-theme");
    const after = await page.evaluate(() => document.documentElement.dataset.theme);
    if (before === after) throw new Error("the theme button did not switch the theme");
    await page.click("#btn-theme");
    await page.evaluate(() => localStorage.removeItem("bitpeer.theme"));

    step = "adding the torrent by file upload";
    await page.click("#btn-add");
    await page.waitForSelector("#dlg-add[open]");
    await page.setInputFiles("#add-file", opts.torrent);
    await page.waitForSelector("#add-files li");
    await shot("desktop-light-add.png");
    await checkAccessibility("add dialog");
    await page.click("#add-submit");
    await page.waitForFunction(() => !document.getElementById("dlg-add").open ||
        !document.getElementById("add-error").hidden, null, { timeout: 20000 });
    if (await page.evaluate(() => document.getElementById("dlg-add").open)) {
        const err = await page.locator("#add-error").textContent();
        throw new Error(`the daemon refused the torrent: ${err}`);
    }
    step = "waiting for the new row";
    await row().waitFor({ timeout: 20000 });
    log(`row of ${name} is there`);

    await waitRowState(["seeding"], "complete (seeding)");
    const pct = (await row().locator(".pct").textContent()).trim();
    if (pct !== "100%") throw new Error(`the torrent is seeding but its row shows ${pct}`);
    log("download complete: row shows Seeding, 100%");

    // screenshots: list (desktop, phone) x (light, dark), details panel at both sizes
    step = "taking screenshots";
    for (const theme of ["light", "dark"]) {
        await setTheme(theme);
        await page.setViewportSize(DESKTOP);
        await shot(`desktop-${theme}.png`);
        await checkAccessibility(`desktop list, ${theme}`);
        await row().locator(".name-btn").click();
        await page.waitForSelector("#details:not([hidden]) .pieces");
        if (opts.cid && theme === "light") {
            // the daemon imports the completed torrent into its IPFS store (add_on_complete)
            await page.waitForFunction((cid) => {
                const dd = document.querySelector("#details .f-cid");
                return dd && !dd.parentElement.hidden && dd.textContent === cid;
            }, opts.cid, { timeout: 60000 });
            log(`details show the IPFS CID ${opts.cid}`);
        }
        await page.click("#d-tab-files");
        await page.waitForSelector("#d-pane-files tbody tr");
        await shot(`desktop-${theme}-details.png`);
        await checkAccessibility(`details, ${theme}`);
        await page.keyboard.press("Escape");
        await page.waitForSelector("#details", { state: "hidden" });

        await page.setViewportSize(PHONE);
        await shot(`phone-${theme}.png`);
        await checkAccessibility(`phone list, ${theme}`);
        await row().locator(".name-btn").click();
        await page.waitForSelector("#details:not([hidden])");
        await page.click("#d-tab-general");
        await shot(`phone-${theme}-details.png`);
        await page.keyboard.press("Escape");
        await page.click("#nav-toggle");
        await page.waitForTimeout(300);
        await shot(`phone-${theme}-filters.png`);
        await checkAccessibility(`filter drawer, ${theme}`);
        await page.keyboard.press("Escape");
    }
    await setTheme("light");
    await page.setViewportSize(DESKTOP);

    step = "filtering by state";
    await filterButton("f-state", "Paused").click();
    await row().waitFor({ state: "detached", timeout: 5000 });
    await filterButton("f-state", "Seeding").click();
    await row().waitFor({ timeout: 5000 });
    await filterButton("f-state", "All").click();
    log("state filters hide and show the row");

    step = "sorting by name";
    await page.click("#list-head th.c-name button");
    const sortState = await page.getAttribute("#list-head th.c-name", "aria-sort");
    if (sortState !== "ascending") throw new Error(`the Name header says aria-sort=${sortState} after a click`);
    const names = () => page.locator("#rows .name-btn").allTextContents();
    const inOrder = (list) => list.every((n, i) => i === 0 || list[i - 1].toLowerCase().localeCompare(n.toLowerCase()) <= 0);
    await until(async () => inOrder(await names()), 5000,
        async () => `rows are not in name order after sorting by name: ${(await names()).join(" | ")}`);
    await page.click("#list-head th.c-added_at button").catch(() => {}); // back to newest first (hidden column on narrow widths)
    log("sorted by name");

    step = "setting a file priority";
    await row().locator(".name-btn").click();
    await page.click("#d-tab-files");
    const firstSelect = page.locator("#d-pane-files tbody tr").first().locator("select");
    const id = await torrentId();
    const firstPriority = async () => page.evaluate(async (tid) =>
        (await (await fetch(`api/v1/torrents/${tid}/files`)).json())[0].priority, id);
    for (const priority of ["skip", "normal"]) {
        await firstSelect.selectOption(priority);
        await until(async () => (await firstPriority()) === priority, 5000,
            async () => `file 0 has priority ${await firstPriority()} after choosing ${priority}`);
    }
    log("file priority skip/normal reached the daemon");

    step = "setting the torrent's category and tags";
    await page.click("#d-tab-settings");
    const settings = page.locator("#d-pane-settings");
    await checkAccessibility("settings tab");
    await settings.getByLabel("Category").fill("uitest");
    await settings.getByLabel("Tags").fill("first, second");
    await settings.getByRole("button", { name: "Save" }).click();
    const apiTorrent = async () => page.evaluate(async (tid) => (await fetch(`api/v1/torrents/${tid}`)).json(), id);
    await until(async () => {
        const t = await apiTorrent();
        return t.category === "uitest" && JSON.stringify(t.tags) === '["first","second"]';
    }, 5000, async () => `after saving, the daemon has ${JSON.stringify((({ category, tags }) => ({ category, tags }))(await apiTorrent()))}`);
    await page.keyboard.press("Escape");
    await page.waitForSelector("#details", { state: "hidden" });
    await row().locator(".chip.cat", { hasText: "uitest" }).waitFor({ timeout: 5000 });
    await filterButton("f-category", "uitest").click();
    await row().waitFor({ timeout: 5000 });
    await filterButton("f-tag", "second").click();
    await row().waitFor({ timeout: 5000 });
    await filterButton("f-category", "All").click();
    await filterButton("f-tag", "All").click();
    await waitRowState(["seeding"], "seeding after the priority changes");
    log("category and tags saved, shown and filterable");

    step = "setting global speed limits";
    const session = () => page.evaluate(async () => (await fetch("api/v1/session")).json());
    await page.click("#btn-limits");
    await page.fill("#lim-down", "1000");
    await page.fill("#lim-up", "");
    await page.click('#lim-form button[type="submit"]');
    await page.waitForSelector("#dlg-limits:not([open])", { state: "attached" });
    const s = await session();
    if (s.download_limit !== 1000 * 1024 || s.upload_limit !== 0) {
        throw new Error(`session limits are ${s.download_limit}/${s.upload_limit} after setting 1000 KiB/s down, none up`);
    }
    await page.waitForFunction(() => document.getElementById("limit-down").textContent.includes("1000 KiB/s"), null, { timeout: 5000 });
    await page.click("#btn-limits");
    await page.fill("#lim-down", "0");
    await page.click('#lim-form button[type="submit"]');
    await page.waitForSelector("#dlg-limits:not([open])", { state: "attached" });
    const cleared = (await session()).download_limit;
    if (cleared !== 0) throw new Error(`download limit is ${cleared} after setting 0`);
    log("global limits set and cleared");

    step = "checking that the theme choice is kept";
    await page.click("#btn-theme"); // light -> dark, saved
    await page.reload({ waitUntil: "domcontentloaded" });
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 20000 });
    const kept = await page.evaluate(() => document.documentElement.dataset.theme);
    if (kept !== "dark") throw new Error(`after a reload the theme is ${kept}, not the chosen dark`);
    await page.evaluate(() => localStorage.removeItem("bitpeer.theme"));
    await page.reload({ waitUntil: "domcontentloaded" });
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 20000 });
    await row().waitFor({ timeout: 10000 });
    log("theme choice kept across a reload; the list came back from the snapshot");

    step = "using the keyboard shortcuts";
    await page.evaluate(() => document.activeElement?.blur()); // nothing focused
    await page.keyboard.press("/");
    if (!(await page.evaluate(() => document.activeElement?.id === "search"))) throw new Error("'/' did not focus the search box");
    await page.keyboard.type(name.slice(0, 12));
    await until(async () => (await page.locator("#rows tr").count()) >= 1 &&
        (await page.locator("#rows .name-btn").allTextContents()).every((n) => n.includes(name.slice(0, 12))), 5000,
        async () => "typing in the search box did not filter the rows");
    await page.keyboard.press("Escape");
    await page.fill("#search", "");
    await page.locator("#search").blur();
    await page.keyboard.press("a");
    await page.waitForSelector("#dlg-add[open]", { timeout: 5000 });
    await page.keyboard.press("Escape");
    await page.waitForSelector("#dlg-add:not([open])", { state: "attached", timeout: 5000 });
    await row().locator(".name-btn").focus();
    await page.keyboard.press("Enter");
    await page.waitForSelector("#details:not([hidden])", { timeout: 5000 });
    if (!(await page.evaluate(() => document.getElementById("details").contains(document.activeElement)))) {
        throw new Error("opening the details with Enter left the focus outside the panel");
    }
    await page.keyboard.press("Escape");
    await page.waitForSelector("#details", { state: "hidden", timeout: 5000 });
    log("keyboard: / searches, a adds, Enter opens details, Escape closes");

    step = "dropping a .torrent file on the page";
    const bytes = [...readFileSync(opts.torrent)];
    await page.evaluate((data) => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(data)], "dropped.torrent", { type: "application/x-bittorrent" }));
        for (const type of ["dragenter", "dragover", "drop"]) {
            document.body.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
        }
    }, bytes);
    await page.waitForSelector("#dlg-add[open] #add-files li", { timeout: 5000 });
    const dropped = (await page.locator("#add-files li .picked-name").textContent()).trim();
    if (dropped !== "dropped.torrent") throw new Error(`the add dialog lists ${dropped} after a drop`);
    await page.locator("#dlg-add").getByRole("button", { name: "Cancel" }).click();
    await page.waitForSelector("#dlg-add:not([open])", { state: "attached" });
    log("a dropped file opens the add dialog with it");

    if (opts.magnet) {
        step = "adding a magnet link, paused";
        const hash = [...crypto.getRandomValues(new Uint8Array(20))].map((x) => x.toString(16).padStart(2, "0")).join("");
        const magnetName = `bitpeer-ui-magnet-${hash.slice(0, 8)}`;
        await page.click("#btn-add");
        await page.click("#add-tab-link");
        await page.fill("#add-links", `magnet:?xt=urn:btih:${hash}&dn=${magnetName}`);
        await page.check("#add-paused");
        await page.click("#add-submit");
        await page.waitForFunction(() => !document.getElementById("dlg-add").open ||
            !document.getElementById("add-error").hidden, null, { timeout: 20000 });
        if (await page.evaluate(() => document.getElementById("dlg-add").open)) {
            throw new Error(`the daemon refused the magnet link: ${await page.locator("#add-error").textContent()}`);
        }
        const magnetRow = page.locator("#rows tr", { has: page.locator(".name-btn", { hasText: hash.slice(0, 8) }) }).first();
        await magnetRow.waitFor({ timeout: 20000 });
        const magnetState = await magnetRow.getAttribute("data-state");
        if (magnetState !== "paused") throw new Error(`a magnet added paused is in state ${magnetState}`);
        await magnetRow.getByRole("button", { name: /^Remove / }).click();
        await page.waitForSelector("#dlg-remove[open]");
        await page.click("#rm-submit");
        await magnetRow.waitFor({ state: "detached", timeout: 20000 });
        log("a magnet link added paused, then removed (without data)");
    }

    step = "pausing and resuming through the selection";
    await page.setViewportSize(DESKTOP);
    await row().locator("input.select").check();
    await page.waitForSelector("#bulk:not([hidden])", { timeout: 5000 });
    const count = (await page.locator("#bulk-count").textContent()).trim();
    if (count !== "1 selected") throw new Error(`the selection bar says "${count}" with one row ticked`);
    await page.click("#bulk-pause");
    await waitRowState(["paused"], "paused from the selection bar", Math.min(left(), 20000));
    await page.click("#bulk-resume");
    await waitRowState(["seeding"], "resumed from the selection bar");
    await page.click("#bulk-clear");
    await page.waitForSelector("#bulk", { state: "hidden", timeout: 5000 });
    log("selection bar pauses and resumes");

    step = "pausing the torrent";
    await row().getByRole("button", { name: `Pause ${name}` }).click();
    await waitRowState(["paused"], "paused", Math.min(left(), 20000));
    log("paused");

    step = "resuming the torrent";
    await row().getByRole("button", { name: `Resume ${name}` }).click();
    await waitRowState(["seeding", "checking", "queued"], "resumed", Math.min(left(), 20000));
    await waitRowState(["seeding"], "seeding again");
    log("resumed");

    step = "removing the torrent with its data";
    await row().getByRole("button", { name: `Remove ${name}` }).click();
    await page.waitForSelector("#dlg-remove[open]");
    await checkAccessibility("remove dialog");
    await page.check("#rm-data");
    await page.click("#rm-submit");
    await page.waitForSelector("#dlg-remove:not([open])", { state: "attached" });
    await page.waitForFunction((n) =>
        ![...document.querySelectorAll("#rows .name-btn")].some((b) => b.textContent === n), name, { timeout: 20000 });
    const still = await page.evaluate(async (n) => {
        const res = await fetch("api/v1/torrents");
        return (await res.json()).some((t) => t.name === n);
    }, name);
    if (still) throw new Error("the row is gone but GET /api/v1/torrents still lists the torrent");
    log("removed with data");

    if (pageErrors.length) throw new Error(`errors in the page: ${pageErrors.join(" | ")}`);
}

const watchdog = setTimeout(() => {
    console.error(`error: timed out after ${opts.timeout} s while ${step}`);
    process.exit(1);
}, opts.timeout * 1000 + 30000);

try {
    await run();
    log(`passed (${a11yChecks} accessibility checks); screenshots in ${shots}`);
} catch (e) {
    const msg = String(e?.message || e).split("\n")[0];
    if (page) await page.screenshot({ path: join(shots, "failure.png") }).catch(() => {});
    console.error(`error: web UI test failed while ${step}: ${msg}`);
    process.exitCode = 1;
} finally {
    clearTimeout(watchdog);
    if (context) await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
}
