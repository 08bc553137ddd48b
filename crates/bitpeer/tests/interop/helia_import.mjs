// Imports a file or folder with Helia's UnixFS importer (npm ipfs-unixfs-importer) and
// prints the root CID: the reference the interop tests compare bitpeer's CIDs with.
//
// usage: node helia_import.mjs NPM_DIR PROFILE PATH
//   NPM_DIR  folder whose node_modules holds ipfs-unixfs-importer and blockstore-core
//   PROFILE  unixfs-v1-2025 | unixfs-v0-2015 | v1-256k (the importer's defaults)
//   PATH     a file or a folder; a folder is fed like a directory walk: every file with its
//            content, and every empty folder as an entry without content
// With HELIA_FS_STORE=DIR the blocks are written to Helia's blockstore-fs in DIR (for
// bench/ipfs_add.sh); otherwise they are discarded.
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const [npmDir, profile, target] = process.argv.slice(2)
const mod = (p) => import(pathToFileURL(path.join(npmDir, 'node_modules', p)).href)
const { importer } = await mod('ipfs-unixfs-importer/dist/src/index.js')
const { BlackHoleBlockstore } = await mod('blockstore-core/dist/src/black-hole.js')
let blockstore = new BlackHoleBlockstore()
if (process.env.HELIA_FS_STORE) {
  const { FsBlockstore } = await mod('blockstore-fs/dist/src/index.js')
  blockstore = new FsBlockstore(process.env.HELIA_FS_STORE)
  await blockstore.open()
}

const options = {}
if (profile === 'unixfs-v1-2025' || profile === 'unixfs-v0-2015') {
  options.profile = profile
} else if (profile !== 'v1-256k') {
  throw new Error(`unknown profile ${profile}`)
}

function * walk (abs, rel) {
  const st = fs.lstatSync(abs)
  if (st.isFile()) {
    yield { path: rel, content: fs.createReadStream(abs, { highWaterMark: 1 << 20 }) }
  } else if (st.isDirectory()) {
    const names = fs.readdirSync(abs)
    if (names.length === 0) {
      yield { path: rel }
    }
    for (const name of names) {
      yield * walk(path.join(abs, name), `${rel}/${name}`)
    }
  } else {
    throw new Error(`${abs}: not a file or folder`)
  }
}

const base = path.basename(path.resolve(target))
let root
for await (const entry of importer(walk(path.resolve(target), base), blockstore, options)) {
  if (entry.path === base) {
    root = entry.cid
  }
}
if (root == null) {
  throw new Error('the importer yielded no root entry')
}
console.log(root.toString())
