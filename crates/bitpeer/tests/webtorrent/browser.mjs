// A browser WebTorrent peer for crates/bitpeer/tests/browser_webtorrent.rs: the npm package's
// own `webtorrent.min.js` in a page of Debian's headless chromium (/usr/bin/chromium, never a
// downloaded browser), driven by playwright-core. WebRTC only (a page has no TCP), one
// WebSocket tracker, no STUN (`rtcConfig: {iceServers: []}`). The page is served by this
// script on 127.0.0.1: nothing is fetched from outside. Packages are
// imported from $WT_MODULES (the node_modules folder scripts/install-webtorrent.sh fills).
//   node browser.mjs get  TRACKER TORRENT   prints "done <infohash> <length> <sha256 hex>"
//                                           (the digest is computed in the page)
//   node browser.mjs seed TRACKER FILE TORRENT_OUT
//                                           prints "seeding <infohash>" once announced, then
//                                           seeds until it is killed or its deadline passes
// $BROWSER_DEADLINE (seconds, default 150) bounds the run.
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const modules = process.env.WT_MODULES
const deadline = Number(process.env.BROWSER_DEADLINE || 150)
const [mode, tracker, a, b] = process.argv.slice(2)
if (!modules || !tracker || !a || (mode !== 'get' && mode !== 'seed') || (mode === 'seed' && !b)) {
  console.error('usage: browser.mjs get TRACKER TORRENT | seed TRACKER FILE TORRENT_OUT')
  process.exit(2)
}

const { chromium } = await import(pathToFileURL(path.join(modules, 'playwright-core', 'index.mjs')).href)
const lib = fs.readFileSync(path.join(modules, 'webtorrent', 'dist', 'webtorrent.min.js'))

let browser
const quit = async code => {
  try { await browser?.close() } catch {}
  process.exit(code)
}
setTimeout(() => { console.error(`browser.mjs: deadline of ${deadline} s passed`); quit(3) }, deadline * 1000).unref()
process.on('SIGTERM', () => quit(143))

browser = await chromium.launch({
  executablePath: process.env.BITPEER_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  timeout: 60000,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync']
})
const page = await browser.newPage()
page.on('console', m => console.error(`page ${m.type()}: ${m.text()}`))
page.on('pageerror', e => console.error(`page error: ${e}`))

// The page comes from a server of this script on the namespace's loopback: http://localhost is
// a secure context (crypto.subtle), and a loopback page may open connections to the private
// address of the tracker and of bitpeer (Chromium's local network access checks refuse
// that to a page whose address is unknown, e.g. one made up by request interception).
const files = {
  '/': ['text/html', '<!doctype html><title>bitpeer browser peer</title>' +
    '<script type="module">import WebTorrent from "/webtorrent.min.js"; window.WebTorrent = WebTorrent</script>'],
  '/webtorrent.min.js': ['text/javascript', lib],
  '/favicon.ico': ['image/x-icon', ''],
  '/input': ['application/octet-stream', () => fs.readFileSync(a)]
}
const server = http.createServer((req, res) => {
  const f = files[new URL(req.url, 'http://localhost').pathname]
  if (!f) { res.writeHead(404); res.end(); return }
  res.writeHead(200, { 'content-type': f[0] })
  res.end(typeof f[1] === 'function' ? f[1]() : f[1])
})
await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
server.unref()
const origin = `http://localhost:${server.address().port}`
await page.goto(`${origin}/`, { timeout: 30000 })
await page.waitForFunction(() => window.WebTorrent, null, { timeout: 30000 })

// Runs in the page. Returns once the torrent is complete (get) or announced (seed).
const inPage = async ({ mode, tracker, name }) => {
  const hex = buf => [...new Uint8Array(buf)].map(x => x.toString(16).padStart(2, '0')).join('')
  const input = await (await fetch('/input')).arrayBuffer()
  // No STUN, no public trackers: only the test's tracker and host candidates.
  const client = new window.WebTorrent({ tracker: { rtcConfig: { iceServers: [] } } })
  window.client = client
  return await new Promise((resolve, reject) => {
    client.on('error', e => reject(new Error(`client error: ${e.message || e}`)))
    const watch = t => {
      t.on('wire', w => console.log(`wire ${w.type}`))
      t.on('warning', e => console.log(`warning ${e.message || e}`))
    }
    if (mode === 'get') {
      const t = client.add(new Uint8Array(input), { announce: [tracker] })
      watch(t)
      const progress = setInterval(() => console.log(`progress ${t.downloaded} of ${t.length}, ${t.numPeers} peers`), 2000)
      t.on('done', async () => {
        clearInterval(progress)
        try {
          const file = t.files[0]
          const data = await (typeof file.arrayBuffer === 'function' ? file.arrayBuffer() : (await file.blob()).arrayBuffer())
          const digest = await crypto.subtle.digest('SHA-256', data)
          resolve(`done ${t.infoHash} ${data.byteLength} ${hex(digest)}`)
        } catch (e) { reject(e) }
      })
    } else {
      client.seed(new File([input], name), { announce: [tracker] }, t => {
        watch(t)
        t.on('upload', () => {})
        let bin = ''
        for (const x of new Uint8Array(t.torrentFile)) bin += String.fromCharCode(x)
        const torrent = btoa(bin)
        resolve(`seeding ${t.infoHash} ${torrent}`)
      })
    }
  })
}

try {
  const line = await page.evaluate(inPage, { mode, tracker, name: path.basename(a) })
  if (mode === 'get') {
    console.log(line)
    await quit(0)
  } else {
    const [, infoHash, torrent] = line.split(' ')
    fs.writeFileSync(b, Buffer.from(torrent, 'base64'))
    console.log(`seeding ${infoHash}`)
  }
} catch (e) {
  console.error(`browser.mjs: ${e.message || e}`)
  await quit(1)
}
