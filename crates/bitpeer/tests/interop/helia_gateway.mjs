// A real IPFS gateway of someone else's code for bitpeer to fetch from: a Helia 7 node
// (no network: memory blockstore, no libp2p, no routers) holding PATH, served through
// @helia/verified-fetch behind a Node http server on 127.0.0.1.
//
// usage: node helia_gateway.mjs NPM_DIR PATH
// prints "gateway http://127.0.0.1:PORT ROOT_CID" once listening; runs until killed.
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { Readable } from 'node:stream'
import { pathToFileURL } from 'node:url'

const [npmDir, target] = process.argv.slice(2)
const mod = (p) => import(pathToFileURL(path.join(npmDir, 'node_modules', p)).href)
const { createHeliaLight } = await mod('helia/dist/src/index.js')
const { unixfs } = await mod('@helia/unixfs/dist/src/index.js')
const { createVerifiedFetch } = await mod('@helia/verified-fetch/dist/src/index.js')
const { trustlessGateway } = await mod('@helia/block-brokers/dist/src/index.js')
const { httpGatewayRouting } = await mod('@helia/routers/dist/src/index.js')

// verified-fetch insists on a block broker; this one has no gateway to ask, so every
// block served comes from what was imported here.
const helia = createHeliaLight({
  blockBrokers: [trustlessGateway()],
  routers: [httpGatewayRouting({ gateways: [] })]
})
await helia.start()
const fsys = unixfs(helia)

function * walk (abs, rel) {
  const st = fs.lstatSync(abs)
  if (st.isFile()) {
    yield { path: rel, content: fs.readFileSync(abs) }
  } else if (st.isDirectory()) {
    const names = fs.readdirSync(abs)
    if (names.length === 0) yield { path: rel }
    for (const name of names) yield * walk(path.join(abs, name), `${rel}/${name}`)
  }
}
const base = path.basename(path.resolve(target))
let root
for await (const entry of fsys.addAll(walk(path.resolve(target), base))) {
  if (entry.path === base) root = entry.cid
}

const verifiedFetch = await createVerifiedFetch(helia)
const server = http.createServer(async (req, res) => {
  try {
    const headers = {}
    if (req.headers.accept) headers.accept = req.headers.accept
    // A path-gateway request /ipfs/CID/path?query is verified-fetch's ipfs://CID/path?query.
    if (!req.url.startsWith('/ipfs/')) {
      res.writeHead(404)
      res.end()
      return
    }
    const resp = await verifiedFetch(`ipfs://${req.url.slice(6)}`, { headers, signal: AbortSignal.timeout(30_000) })
    const out = {}
    resp.headers.forEach((v, k) => { out[k] = v })
    res.writeHead(resp.status, out)
    if (resp.body && req.method !== 'HEAD') {
      Readable.fromWeb(resp.body).pipe(res)
    } else {
      res.end()
    }
  } catch (e) {
    res.writeHead(500)
    res.end(String(e))
  }
})
server.listen(0, '127.0.0.1', () => {
  console.log(`gateway http://127.0.0.1:${server.address().port} ${root.toString()}`)
})
