// The speed graph: download and upload rates of the whole session over the last minutes,
// one sample per `session` event, drawn on a canvas (no library).

import { fmtRate, cssColor } from "./util.js";

export class SpeedGraph {
    /** `seconds` of history are kept (one sample a second). */
    constructor(canvas, seconds = 300) {
        this.canvas = canvas;
        this.capacity = seconds;
        this.down = [];
        this.up = [];
        this.pending = false;
        new ResizeObserver(() => this.draw()).observe(canvas);
    }

    push(download, upload) {
        this.down.push(Math.max(0, Number(download) || 0));
        this.up.push(Math.max(0, Number(upload) || 0));
        if (this.down.length > this.capacity) {
            this.down.shift();
            this.up.shift();
        }
        this.draw();
    }

    /** Draws at the next frame (coalesces bursts of samples and resizes). */
    draw() {
        if (this.pending) return;
        this.pending = true;
        requestAnimationFrame(() => {
            this.pending = false;
            this.paint();
        });
    }

    paint() {
        const c = this.canvas;
        const w = c.clientWidth;
        const hgt = c.clientHeight;
        if (!w || !hgt) return;
        const dpr = window.devicePixelRatio || 1;
        if (c.width !== Math.round(w * dpr) || c.height !== Math.round(hgt * dpr)) {
            c.width = Math.round(w * dpr);
            c.height = Math.round(hgt * dpr);
        }
        const g = c.getContext("2d");
        g.setTransform(dpr, 0, 0, dpr, 0, 0);
        g.clearRect(0, 0, w, hgt);

        const top = 16;
        const bottom = hgt - 2;
        const peak = Math.max(1024, ...this.down, ...this.up);
        const scale = niceCeiling(peak);
        const y = (v) => bottom - (v / scale) * (bottom - top);
        // the window grows from one minute to `capacity` seconds as samples arrive, so a
        // freshly opened page shows a useful graph at once
        const span = Math.max(60, Math.min(this.capacity, this.down.length));
        const x = (i) => w - (span - 1 - i) * (w / (span - 1));
        const offset = span - this.down.length;

        // grid: three horizontal lines with the top value labelled
        g.strokeStyle = cssColor("--grid");
        g.lineWidth = 1;
        g.beginPath();
        for (let k = 0; k <= 2; k++) {
            const yy = Math.round(top + (k * (bottom - top)) / 2) + 0.5;
            g.moveTo(0, yy);
            g.lineTo(w, yy);
        }
        g.stroke();
        g.fillStyle = cssColor("--muted");
        g.font = "11px system-ui, sans-serif";
        g.textBaseline = "top";
        g.fillText(fmtRate(scale), 4, 1);
        g.textAlign = "right";
        g.fillText(`${Math.round(span / 60)} min`, w - 4, 1);
        g.textAlign = "left";

        const series = (values, color, fill) => {
            if (values.length < 2) return;
            g.beginPath();
            values.forEach((v, i) => {
                const px = x(i + offset);
                if (i === 0) g.moveTo(px, y(v));
                else g.lineTo(px, y(v));
            });
            g.strokeStyle = color;
            g.lineWidth = 1.75;
            g.lineJoin = "round";
            g.stroke();
            if (fill) {
                g.lineTo(x(values.length - 1 + offset), bottom);
                g.lineTo(x(offset), bottom);
                g.closePath();
                g.globalAlpha = 0.18;
                g.fillStyle = color;
                g.fill();
                g.globalAlpha = 1;
            }
        };
        series(this.down, cssColor("--down"), true);
        series(this.up, cssColor("--up"), true);
    }
}

/** The smallest 1, 2 or 5 times a power of 1024-ish step above v (so axis labels read well). */
function niceCeiling(v) {
    let unit = 1;
    while (v > unit * 1024) unit *= 1024;
    for (const m of [1, 2, 5, 10, 20, 50, 100, 200, 500, 1024]) {
        if (v <= unit * m) return unit * m;
    }
    return unit * 1024;
}
