// Helia's bitswap client against ONE provider (tcp + noise + yamux, identify), offline:
//   node --import ./polyfill.mjs bitswap-fetch.mjs MULTIADDR/p2p/PEER_ID CID OUT_FILE|- TIMEOUT_MS [file|block]
// file (default): a Helia session (@helia/bitswap, protocol /ipfs/bitswap/1.2.0) asks the peer for
//   every block of the UnixFS DAG under CID (WANT_BLOCK, send-dont-have); Helia hashes each block
//   against its CID and ipfs-unixfs-exporter walks the DAG. A directory holding exactly one entry
//   (ipfs-car's wrapping) is followed to it. The file's bytes go to OUT_FILE ('-': not written).
// block: the one block CID, its bytes to OUT_FILE.
// Prints one JSON line: {"ok":true,"bytes":N,"blocks":M,"ms":T}, or {"ok":false,"error":"...",
// "ms":T,"wanted":W} and exit 1. A DONT_HAVE evicts the peer from the session and, with no other
// provider, ends the fetch at once in InsufficientProvidersError (so does a dial failure, or a
// peer that refuses the protocol); "wanted" says whether a WANT_BLOCK was sent to the connected
// peer (false: it never connected). A stall ends at TIMEOUT_MS with "timeout after ...".
import { setMaxListeners } from 'node:events'
import { createWriteStream } from 'node:fs'
import { Writable } from 'node:stream'
import { BlackHoleBlockstore } from 'blockstore-core/black-hole'
import { createHeliaLight } from 'helia'
import { withLibp2pLight } from '@helia/libp2p'
import { withBitswap } from '@helia/bitswap'
import { tcp } from '@libp2p/tcp'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { multiaddr } from '@multiformats/multiaddr'
import { exporter } from 'ipfs-unixfs-exporter'
import { CID } from 'multiformats/cid'

const [addr, cidText, out, timeoutMs, mode = 'file'] = process.argv.slice(2)
if (timeoutMs == null || !['file', 'block'].includes(mode)) {
  console.error('usage: bitswap-fetch.mjs MULTIADDR/p2p/PEER_ID CID OUT_FILE|- TIMEOUT_MS [file|block]')
  process.exit(2)
}
const started = Date.now()
const signal = AbortSignal.timeout(Number(timeoutMs))
setMaxListeners(Infinity, signal) // one signal for every block read
// Helia with no routers: the session's only provider is the one given; it has no other peers.
// Blocks are not kept (black hole): each is checked against its CID and handed on, so memory
// does not grow with the file (a block met twice in the DAG is asked for twice).
const helia = withBitswap(withLibp2pLight(createHeliaLight({ blockstore: new BlackHoleBlockstore() }), {
  addresses: { listen: [] }, // dial only (bitswap still handles inbound streams on the connection)
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify() }
}))
// The abort timer does not keep Node alive; this does, so a stall ends as a timeout.
const alive = setInterval(() => {}, 1 << 30)
let wanted = false
const fetched = new Set() // distinct CIDs read through the session: the "blocks" reported
let result
try {
  await helia.start()
  const root = CID.parse(cidText)
  const session = helia.blockstore.createSession(root, { providers: [multiaddr(addr)], signal })
  const onProgress = (event) => { if (event.type === 'bitswap:send-wantlist') wanted = true }
  // The exporter reads blocks through this: each one comes from the peer over bitswap.
  const blocks = {
    get (cid, options) {
      fetched.add(cid.toString())
      return session.get(cid, { ...options, signal, onProgress })
    }
  }
  let chunks
  if (mode === 'block') {
    chunks = blocks.get(root)
  } else {
    // (the exporter is given the CID as text: its multiformats is 14, the CID class here is 13's)
    let entry = await exporter(cidText, blocks, { signal })
    if (entry.type === 'directory') {
      const children = []
      for await (const child of entry.entries({ signal })) children.push(child)
      if (children.length !== 1) throw new Error(`directory with ${children.length} entries, not one file`)
      entry = await exporter(children[0].cid.toString(), blocks, { signal })
    }
    if (!['file', 'raw', 'identity'].includes(entry.type)) throw new Error(`not a file: ${entry.type}`)
    // at most 16 leaves wanted at once (the exporter's default is all links of a node: up to 1024)
    chunks = entry.content({ signal, blockReadConcurrency: 16 })
  }
  let bytes = 0
  const sink = out === '-' ? null : createWriteStream(out)
  const writer = sink == null ? null : Writable.toWeb(sink).getWriter()
  for await (const chunk of chunks) {
    bytes += chunk.byteLength
    await writer?.write(chunk)
  }
  await writer?.close()
  result = { ok: true, bytes, blocks: fetched.size, ms: Date.now() - started }
} catch (error) {
  // Helia's LoadBlockFailedError is an AggregateError: name its causes (e.g. InsufficientProvidersError)
  const causes = (error.errors ?? []).map((e) => `${e.name}: ${e.message}`).join('; ')
  const text = `${error.name}: ${error.message}${causes === '' ? '' : ` (${causes})`}`
  result = { ok: false, error: signal.aborted ? `timeout after ${timeoutMs} ms: ${text}` : text, ms: Date.now() - started, wanted }
} finally {
  clearInterval(alive)
  await helia.stop().catch(() => {})
}
console.log(JSON.stringify(result))
process.exit(result.ok ? 0 : 1)
