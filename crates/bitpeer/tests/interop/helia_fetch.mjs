// Fetches a CID with Helia 7 whose only block source is one trustless gateway, and writes
// the file or folder to OUT: the client side of the gateway interop tests.
//
// usage: node helia_fetch.mjs NPM_DIR GATEWAY_URL CID OUT [flip]
//   NPM_DIR  folder whose node_modules holds helia, @helia/unixfs, @helia/block-brokers,
//            @helia/routers (run with Node >= 22.19)
//   flip     put a proxy between Helia and the gateway that flips one byte of every block it
//            passes on; Helia must refuse the blocks (exit 3, the error on stderr)
//
// Helia talks to no one else: no libp2p, no delegated routing, no public gateways.
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const [npmDir, gatewayArg, cidText, out, mode] = process.argv.slice(2)
const mod = (p) => import(pathToFileURL(path.join(npmDir, 'node_modules', p)).href)
const { createHeliaLight } = await mod('helia/dist/src/index.js')
const { unixfs } = await mod('@helia/unixfs/dist/src/index.js')
const { trustlessGateway } = await mod('@helia/block-brokers/dist/src/index.js')
const { httpGatewayRouting } = await mod('@helia/routers/dist/src/index.js')

let gateway = gatewayArg
let proxy
if (mode === 'flip') {
  // A gateway of ours made dishonest: the same answers with the last byte of each body
  // flipped (the probe's empty body passes unchanged).
  const upstream = new URL(gatewayArg)
  proxy = http.createServer((req, res) => {
    const fwd = http.request({
      host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers
    }, (up) => {
      const chunks = []
      up.on('data', (c) => chunks.push(c))
      up.on('end', () => {
        const body = Buffer.concat(chunks)
        if (body.length > 0) body[body.length - 1] ^= 0x01
        const headers = { ...up.headers }
        delete headers['content-length']
        delete headers['transfer-encoding']
        res.writeHead(up.statusCode, headers)
        res.end(body)
      })
    })
    fwd.on('error', (e) => { res.writeHead(502); res.end(String(e)) })
    req.pipe(fwd)
  })
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  gateway = `http://127.0.0.1:${proxy.address().port}`
}

const helia = createHeliaLight({
  blockBrokers: [trustlessGateway({ allowInsecure: true, allowLocal: true })],
  routers: [httpGatewayRouting({ gateways: [gateway] })]
})
await helia.start()
const fsys = unixfs(helia)
const signal = AbortSignal.timeout(60_000)

async function save (cid, dest) {
  const st = await fsys.stat(cid, { signal })
  if (st.type === 'directory') {
    fs.mkdirSync(dest)
    for await (const entry of fsys.ls(cid, { signal })) {
      await save(entry.cid.toString(), path.join(dest, entry.name))
    }
  } else {
    const fd = fs.openSync(dest, 'wx')
    for await (const chunk of fsys.cat(cid, { signal })) {
      fs.writeSync(fd, chunk)
    }
    fs.closeSync(fd)
  }
}

let code = 0
try {
  await save(cidText, out)
  console.log('fetched')
} catch (e) {
  console.error(`helia refused: ${e.name}: ${e.message}`)
  code = 3
}
await helia.stop()
proxy?.close()
process.exit(code)
