// A Node WebTorrent peer for crates/bitpeer/tests/interop_webtorrent.rs, WebRTC only (no DHT,
// no LSD, no TCP/uTP peers, no STUN: iceServers empty), one WebSocket tracker. The packages
// are imported from $WT_MODULES (the node_modules folder scripts/install-webtorrent.sh fills).
//   node peer.mjs seed TRACKER FILE TORRENT_OUT   prints "seeding <infohash>" once announced
//   node peer.mjs get  TRACKER TORRENT OUT_DIR     prints "done <infohash>" when complete
//   node peer.mjs tracker HOST                     runs npm bittorrent-tracker (ws only),
//                                                  prints "tracker ws://HOST:PORT"
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const modules = process.env.WT_MODULES
const load = name => import(pathToFileURL(path.join(modules, name, 'index.js')).href)

const [mode, a, b, c] = process.argv.slice(2)

if (mode === 'tracker') {
  const { Server } = await load('bittorrent-tracker')
  const server = new Server({ udp: false, http: false, ws: true, stats: false })
  server.on('error', e => { console.error('tracker error', e.message); process.exit(1) })
  server.on('warning', e => console.error('tracker warning', e.message))
  server.listen(0, a, () => {
    console.log(`tracker ws://${a}:${server.ws.address().port}`)
  })
} else {
  const { default: WebTorrent } = await load('webtorrent')
  const client = new WebTorrent({
    dht: false, lsd: false, utp: false, natUpnp: false, natPmp: false, utPex: false,
    torrentPort: 0, tracker: { rtcConfig: { iceServers: [] } }
  })
  client.on('error', e => { console.error('client error', e.message); process.exit(1) })
  const opts = { announce: [a], private: false }
  if (mode === 'seed') {
    client.seed(b, opts, t => {
      fs.writeFileSync(c, t.torrentFile)
      console.log(`seeding ${t.infoHash}`)
      t.on('wire', w => console.error('wire', w.remoteAddress ?? w.type))
      t.on('upload', () => {})
    })
  } else if (mode === 'get') {
    const t = client.add(fs.readFileSync(b), { ...opts, path: c })
    t.on('wire', w => console.error('wire', w.type))
    t.on('warning', e => console.error('warning', e.message ?? e))
    t.on('done', () => {
      console.log(`done ${t.infoHash}`)
      setTimeout(() => process.exit(0), 200)
    })
  } else {
    console.error('usage: peer.mjs seed|get|tracker ...')
    process.exit(2)
  }
}
