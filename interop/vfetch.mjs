// @helia/verified-fetch against one trustless gateway, offline:
//   node --import ./polyfill.mjs vfetch.mjs GATEWAY_URL CID OUT_FILE [TIMEOUT_MS]
// Helia (without libp2p) asks GATEWAY_URL for every block (GET /ipfs/CID?format=raw), checks
// each against its CID, and verified-fetch writes the UnixFS file's bytes to OUT_FILE. Exit 1
// with the reason on any failure.
import { createWriteStream } from 'node:fs'
import { Writable } from 'node:stream'
import { createHeliaLight } from 'helia'
import { withHTTP } from '@helia/http'
import { createVerifiedFetch } from '@helia/verified-fetch'

const [gateway, cid, out, timeoutMs = '60000'] = process.argv.slice(2)
const helia = withHTTP(createHeliaLight(), {
  delegatedRouters: [], // nothing on the internet
  recursiveGateways: [gateway], // the gateway under test answers for every CID
  allowInsecure: true, // http://
  allowLocal: true // 127.0.0.1
})
// Helia 7 never reaches its fallback (gateway) router when no other router exists: one that
// finds nothing.
helia.addRouter({ name: 'none', async * findProviders () {} })
await helia.start()
const fetch = await createVerifiedFetch(helia)
// The abort timer below does not keep Node alive; this does, so a stall ends as a timeout.
const alive = setInterval(() => {}, 1 << 30)
let code = 0
try {
  const response = await fetch(`ipfs://${cid}`, { signal: AbortSignal.timeout(Number(timeoutMs)) })
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`)
  await response.body.pipeTo(Writable.toWeb(createWriteStream(out)))
} catch (error) {
  console.error(`FAIL ${error.name}: ${error.message}`)
  code = 1
} finally {
  clearInterval(alive)
  await fetch.stop()
  await helia.stop()
}
process.exit(code)
