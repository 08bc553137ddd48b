// Unit tests of the web UI's formatting helpers (node --test; no browser, no packages).
//   node --test crates/bitpeer/tests/webui/util.test.mjs

import { test } from "node:test";
import assert from "node:assert/strict";
import {
    fmtBytes, fmtRate, fmtDuration, fmtPercent, fmtRatio, fmtLimit, base64Bytes,
} from "../../webui/util.js";

test("bytes use binary units with three significant digits", () => {
    assert.equal(fmtBytes(0), "0 B");
    assert.equal(fmtBytes(1023), "1023 B");
    assert.equal(fmtBytes(1024), "1.00 KiB");
    assert.equal(fmtBytes(1536), "1.50 KiB");
    assert.equal(fmtBytes(315 * 1024), "315 KiB");
    assert.equal(fmtBytes(5.9 * 1024 ** 3), "5.90 GiB");
    assert.equal(fmtBytes(20.25 * 1024 ** 2), "20.3 MiB");
    assert.equal(fmtBytes(3 * 1024 ** 5), "3.00 PiB");
    assert.equal(fmtBytes(-1), "—");
    assert.equal(fmtBytes(NaN), "—");
    assert.equal(fmtBytes("12"), "—");
    assert.equal(fmtBytes(null), "—");
});

test("rates and limits", () => {
    assert.equal(fmtRate(0), "0 B/s");
    assert.equal(fmtRate(undefined), "0 B/s");
    assert.equal(fmtRate(2 * 1024 * 1024), "2.00 MiB/s");
    assert.equal(fmtLimit(0), "unlimited");
    assert.equal(fmtLimit(1024), "1.00 KiB/s");
});

test("durations read like 1h 2m", () => {
    assert.equal(fmtDuration(0), "0s");
    assert.equal(fmtDuration(45), "45s");
    assert.equal(fmtDuration(65), "1m 5s");
    assert.equal(fmtDuration(600), "10m");
    assert.equal(fmtDuration(41 * 60 + 20), "41m");
    assert.equal(fmtDuration(3720), "1h 2m");
    assert.equal(fmtDuration(7200), "2h");
    assert.equal(fmtDuration(3 * 86400 + 4 * 3600 + 59), "3d 4h");
    assert.equal(fmtDuration(86400), "1d");
    assert.equal(fmtDuration(100 * 86400), "∞");
    assert.equal(fmtDuration(null), "∞");
    assert.equal(fmtDuration(-5), "∞");
    assert.equal(fmtDuration(Infinity), "∞");
});

test("percent and ratio", () => {
    assert.equal(fmtPercent(0), "0.0%");
    assert.equal(fmtPercent(0.4237), "42.3%");
    assert.equal(fmtPercent(0.99999), "99.9%");
    assert.equal(fmtPercent(1), "100%");
    assert.equal(fmtPercent(7), "100%");
    assert.equal(fmtPercent(-1), "0.0%");
    assert.equal(fmtPercent(undefined), "—");
    assert.equal(fmtRatio(0.0017), "0.00");
    assert.equal(fmtRatio(1.234), "1.23");
    assert.equal(fmtRatio(59.91), "59.9");
    assert.equal(fmtRatio(106.2), "106");
    assert.equal(fmtRatio(null), "∞");
});

test("base64 bitfields decode, garbage gives no pieces", () => {
    assert.deepEqual([...base64Bytes("gAE=")], [0x80, 0x01]);
    assert.deepEqual([...base64Bytes("")], []);
    assert.deepEqual([...base64Bytes(null)], []);
    assert.deepEqual([...base64Bytes("not base64!")], []);
});
