// A Node WebTorrent peer for bench/webtorrent.py (npm webtorrent on node-datachannel, from
// $WT_MODULES, the node_modules folder scripts/install-webtorrent.sh fills). WebRTC only: no
// DHT, no LSD, no TCP/uTP, no STUN (iceServers empty), one WebSocket tracker.
//   node webtorrent_peer.mjs seed TRACKER TORRENT DATA_DIR
//       checks the data in DATA_DIR, prints "seeding <infohash>" when it has it all, then
//       seeds until killed
//   node webtorrent_peer.mjs get TRACKER TORRENT OUT_DIR
//       prints "wire <ms>" at its first peer connection and "done <ms> <bytes>" when complete
//       (ms since the process started)
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const [mode, tracker, torrentPath, dir] = process.argv.slice(2)
if ((mode !== 'seed' && mode !== 'get') || !dir) {
  console.error('usage: webtorrent_peer.mjs seed|get TRACKER TORRENT DIR')
  process.exit(2)
}
const ms = () => Math.round(performance.now())
const modules = process.env.WT_MODULES
const { default: WebTorrent } = await import(pathToFileURL(path.join(modules, 'webtorrent', 'index.js')).href)
const client = new WebTorrent({
  dht: false, lsd: false, utp: false, natUpnp: false, natPmp: false, utPex: false,
  torrentPort: 0, tracker: { rtcConfig: { iceServers: [] } }
})
client.on('error', e => { console.error('client error', e.message); process.exit(1) })
const t = client.add(fs.readFileSync(torrentPath), { announce: [tracker], path: dir })
t.on('warning', e => console.error('warning', e.message ?? e))
if (mode === 'seed') {
  const ready = () => console.log(`seeding ${t.infoHash}`)
  t.on('done', ready)
  t.on('ready', () => { if (t.done) ready() })
} else {
  let first = true
  t.on('wire', () => { if (first) { first = false; console.log(`wire ${ms()}`) } })
  t.on('done', () => {
    console.log(`done ${ms()} ${t.length}`)
    setTimeout(() => process.exit(0), 200)
  })
}
